"""What a run tells its user: the progress bar, ``metrics.jsonl`` and the loss-curve PNG."""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from nervana_lstm.atomic import atomic_path, write_text_atomic

__all__ = [
    "MetricsLog",
    "ProgressDisplay",
    "plot_losses",
    "read_metrics",
]


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Records of a ``metrics.jsonl`` file; a torn last line (a killed run) is skipped."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


class MetricsLog:
    """Append-only JSON lines, one record per log or eval event, flushed as written.

    On resume, records past the checkpoint's step are dropped: those steps will
    run again and log again.
    """

    def __init__(self, path: Path, keep_until_step: int | None = None) -> None:
        self.path = path
        if keep_until_step is None:
            write_text_atomic(path, "")
        else:
            kept = [r for r in read_metrics(path) if int(r.get("step", 0)) <= keep_until_step]
            write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in kept))
        self._fh = path.open("a", encoding="utf-8")

    def write(self, record: dict[str, Any]) -> None:
        record = {k: _jsonable(v) for k, v in record.items()}
        self._fh.write(json.dumps(record) + "\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no nan/inf
    return value


class ProgressDisplay:
    """A rich progress bar on a terminal; plain lines every ``log_every`` steps otherwise."""

    def __init__(
        self, console: Console, total: int, start: int, enabled: bool, silent: bool = False
    ) -> None:
        self.console = console
        self.silent = silent
        self.live = enabled and not silent and console.is_terminal
        self._progress: Progress | None = None
        if self.live:
            self._progress = Progress(
                TextColumn("[bold]train"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("loss {task.fields[loss]}"),
                TextColumn("{task.fields[sps]} samples/s"),
                TextColumn("{task.fields[tps]} tokens/s"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=console,
                refresh_per_second=4,
                transient=False,
            )
            self._task = self._progress.add_task(
                "train", total=total, completed=start, loss="-", sps="-", tps="-"
            )
            self._progress.start()

    def print(self, *parts: object) -> None:
        if not self.silent:
            self.console.print(*parts, highlight=False)

    def advance(self, step: int) -> None:
        if self._progress is not None:
            self._progress.update(self._task, completed=step)

    def log(self, step: int, total: int, loss: float, sps: float, tps: float, eta: float) -> None:
        if self._progress is not None:
            self._progress.update(
                self._task, completed=step, loss=f"{loss:.4g}", sps=f"{sps:,.0f}", tps=f"{tps:,.0f}"
            )
        else:
            self.print(
                f"step {step}/{total}  loss {loss:.4g}  {sps:,.0f} samples/s  "
                f"{tps:,.0f} tokens/s  ETA {_clock(eta)}"
            )

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "-"
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def plot_losses(records: Iterable[dict[str, Any]], path: Path, title: str) -> None:
    """Training and evaluation loss against step, with any ``*_baseline`` as a dashed line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = list(records)
    train = [(r["step"], r["loss"]) for r in records if r.get("split") == "train"]
    evals = [(r["step"], r["loss"]) for r in records if r.get("split") == "eval"]
    baselines = {
        k: v
        for r in records
        if r.get("split") == "eval"
        for k, v in r.items()
        if k.endswith("_baseline") and isinstance(v, int | float)
    }
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    train, evals = _finite(train), _finite(evals)
    if train:
        ax.plot(*zip(*train, strict=True), label="train loss", lw=1.2)
    if evals:
        ax.plot(*zip(*evals, strict=True), "o-", label="eval loss", lw=1.2, ms=3)
    for name, value in baselines.items():
        ax.axhline(value, ls="--", color="grey", lw=1, label=name)
    values = [v for _, v in train + evals] + list(baselines.values())
    if values and min(values) > 0:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if train or evals:
        ax.legend()
    fig.tight_layout()
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp)
    finally:
        plt.close(fig)


def _finite(points: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    return [(s, v) for s, v in points if isinstance(v, int | float) and math.isfinite(v)]
