"""What the memory sweep writes: ``memory.json``, ``memory.md`` and ``memory.png``.

``memory.json`` is the document :func:`~nervana_lstm.lesson.memory.run_memory`
returns, one record per kind x lag. ``memory.md`` holds two tables: the ratio
of each kind's final metric to the task's baseline by lag (the lesson at a
glance), then every record. ``memory.png`` plots that ratio against the lag T,
one line per kind, on a log scale with the baseline (ratio 1) drawn across;
for charlm, which has no lag, one bar per kind. All three are written
atomically.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nervana_lstm.atomic import atomic_path, write_text_atomic

__all__ = ["BASELINE_WORDS", "SOLVED_MSE", "format_markdown", "plot_memory", "write_reports"]

#: what each task's baseline is, in words
BASELINE_WORDS: dict[str, str] = {
    "adding": "MSE of always answering 1, the mean of the sum (1/6): a model that remembers "
    "nothing of the marked values",
    "copy": "cross-entropy per step of writing blanks and then guessing among the 8 symbols, "
    "10 ln 8 / (T + 20): a model that remembers nothing of the symbols",
    "charlm": "bits per character of the training text's character frequencies on the "
    "held-out text: a model that remembers nothing of what came before",
}
#: the adding problem counts as solved below this MSE
SOLVED_MSE = 0.01
_LABELS = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU", "dglstm": "DG-LSTM"}
_METRIC_NAMES = {"mse": "MSE", "ce": "cross-entropy (nats/step)", "bpc": "bits per char"}


def _fmt(value: Any, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}g}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def format_markdown(doc: dict[str, Any]) -> str:
    """``memory.md``: what was compared, the ratio by kind and lag, then every record."""
    task, metric, records = doc["task"], doc["metric"], doc["records"]
    settings = doc["settings"]
    optim, train, model = settings["optim"], settings["train"], settings["model"]
    lag = task != "charlm"
    if doc["budget"] == "params":
        budget = (
            f"equal parameter count: every kind has about as many parameters as the "
            f"{_LABELS[doc['budget_kind']]} (within 2%)"
        )
    else:
        budget = "equal hidden size"
    lines = [
        f"# Memory: {task}",
        "",
        f"Final held-out {_METRIC_NAMES[metric]} after {doc['steps']} training steps, divided by "
        f"the task's baseline, the {BASELINE_WORDS[task]}. A ratio near 1 means the model "
        "remembers nothing; far below 1, it remembers.",
        "",
        f"- budget: {budget}",
        f"- shared settings: {optim['name']} lr {optim['lr']:g}, schedule {optim['schedule']}, "
        f"clip {optim['clip_norm']}, batch {train['batch_size']}, layers {model['num_layers']}, "
        f"forget-gate bias {model['forget_bias']} (lstm and dglstm), seed {train['seed']}, "
        f"precision {doc['precision']}, accel {doc['accel']}, "
        f"threads {doc['threads'] or 'all'}",
    ]
    if task == "adding":
        lines.append(f"- solved: MSE below {SOLVED_MSE} (ratio {SOLVED_MSE * 6:.2f})")
    if model["num_layers"] == 1 and any(r["kind"] == "dglstm" for r in records):
        lines.append(
            "- with one layer a DG-LSTM is an LSTM: its depth gate joins a layer to the one "
            "below (try --set model.num_layers=2)"
        )
    lines.append("")
    if lag:
        lengths = sorted({r["length"] for r in records})
        by = {(r["kind"], r["length"]): r for r in records}
        kinds = list(dict.fromkeys(r["kind"] for r in records))
        header = ["ratio to baseline", *(f"T={t}" for t in lengths)]
        rows = [
            [_LABELS[k], *(_fmt(by[(k, t)]["ratio"], 3) if (k, t) in by else "" for t in lengths)]
            for k in kinds
        ]
        lines += [*_table(header, rows), ""]
    header = ["kind", *(["T"] if lag else []), "H", "parameters", metric, "baseline", "ratio"]
    copy = task == "copy"
    if copy:
        header.append("recall accuracy")
    header += ["steps", "wall s", "backend", "precision", "run"]
    rows = []
    for r in records:
        row = [_LABELS[r["kind"]], *([str(r["length"])] if lag else [])]
        row += [
            str(r["hidden_size"]),
            f"{r['parameters']:,}",
            _fmt(r["value"]),
            _fmt(r["baseline"]),
            _fmt(r["ratio"], 3),
        ]
        if copy:
            row.append(_fmt(r.get("recall_accuracy"), 3))
        stopped = "" if r["stopped_because"] == "completed" else f" ({r['stopped_because']})"
        row += [
            f"{r['steps']}{stopped}",
            f"{r['wall_s']:.1f}",
            r["backend"],
            r["precision"],
            f"`{r['run_dir']}`",
        ]
        rows.append(row)
    lines += _table(header, rows)
    return "\n".join(lines) + "\n"


def plot_memory(doc: dict[str, Any], path: Path) -> None:
    """``memory.png``: ratio to baseline against T per kind (bars per kind for charlm)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    task, records = doc["task"], doc["records"]
    fig, ax = plt.subplots(figsize=(7, 4.2), dpi=110)
    kinds = list(dict.fromkeys(r["kind"] for r in records))
    if task == "charlm":
        ratios = [next(r["ratio"] for r in records if r["kind"] == k) for k in kinds]
        shown = [v if v is not None else 0.0 for v in ratios]
        bars = ax.bar(
            [_LABELS[k] for k in kinds], shown, color=[f"C{i}" for i in range(len(kinds))]
        )
        for bar, r in zip(bars, ratios, strict=True):
            ax.annotate(_fmt(r, 3), (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                        ha="center", va="bottom", fontsize=8)  # fmt: skip
        ax.set_ylabel("bits per char / baseline")
    else:
        for i, kind in enumerate(kinds):
            points = sorted(
                (r["length"], r["ratio"])
                for r in records
                if r["kind"] == kind and r["ratio"] is not None and r["ratio"] > 0
            )
            if points:
                ax.plot(*zip(*points, strict=True), "o-", color=f"C{i}", label=_LABELS[kind])
        ax.set_yscale("log")
        ax.set_xlabel("lag T")
        ax.set_ylabel(f"final {doc['metric']} / baseline")
        lengths = sorted({r["length"] for r in records})
        ax.set_xticks(lengths)
        if task == "adding":
            ax.axhline(SOLVED_MSE * 6, ls=":", color="grey", lw=1, label=f"MSE {SOLVED_MSE}")
    ax.axhline(1.0, ls="--", color="black", lw=1, label="baseline (remembers nothing)")
    budget = "equal parameters" if doc["budget"] == "params" else "equal hidden size"
    ax.set_title(f"{task}: {doc['steps']} steps, {budget}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp)
    finally:
        plt.close(fig)


def write_reports(doc: dict[str, Any], out: Path) -> dict[str, Path]:
    """Write ``memory.json``, ``memory.md`` and ``memory.png`` into ``out``; return their paths."""
    paths = {name: out / f"memory.{name}" for name in ("json", "md", "png")}
    plot_memory(doc, paths["png"])
    write_text_atomic(paths["md"], format_markdown(doc))
    write_text_atomic(paths["json"], json.dumps(doc, indent=2) + "\n")
    return paths
