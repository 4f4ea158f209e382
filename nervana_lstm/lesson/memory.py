"""The memory sweep: every kind trained on a memory task at every lag, through ``train``.

    for each kind in kinds, each lag T in lengths:
        config = the task's shipped config (configs/<task>.yaml)
                 + the sweep's defaults (train.accel=onednn, train.precision=fp32)
                 + the task's sweep settings (TASK_SETTINGS: adding's lr and schedule)
                 + the user's --set overrides
                 + this cell's kind, hidden size, T and steps
        run_training(config, OUT/runs/<kind>-T<T>)        a run directory like train's
        record = the final evaluation's metric and its ratio to the task's baseline

A cell is an ordinary run directory, so each can be resumed, sampled, inspected
or exported later. With ``budget="hidden"`` every kind has the same hidden size;
with ``budget="params"`` the LSTM has it and every other kind the hidden size
that gives the LSTM's parameter count (:mod:`~nervana_lstm.lesson.budget`).

The baselines are the tasks' own: adding ``MSE_BASELINE`` (1/6, always answering
1), copy ``copy_baseline(T)`` (blanks, then a uniform guess among the 8 symbols),
charlm the bits per character of the training text's character frequencies on
the held-out text (a model that remembers nothing). charlm has no lag: its
cells are the kinds alone, at equal parameter budget by default.

A finished cell leaves ``memory-cell.json`` (its record) in its run directory;
a cell stopped by a signal stops the sweep (:class:`SweepInterrupted`), and
``resume=True`` reuses the finished cells and continues the others from their
last checkpoint. A cell whose loss turns non-finite is a finished cell: that
kind diverged, which its record says. :mod:`~nervana_lstm.lesson.memory_report` writes ``memory.json``,
``memory.md`` and ``memory.png`` from the records.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from rich.console import Console

from nervana_lstm.atomic import write_text_atomic
from nervana_lstm.choices import KINDS, has_cell_state
from nervana_lstm.config import (
    RunConfig,
    apply_overrides,
    config_from_dict,
    load_config,
    parse_override,
)
from nervana_lstm.errors import UsageError
from nervana_lstm.lesson.budget import matched_hidden_size, model_params

__all__ = [
    "BUDGETS",
    "CELL_FILE",
    "DEFAULT_LENGTHS",
    "MEMORY_TASKS",
    "METRICS",
    "SWEEP_DEFAULTS",
    "TASK_SETTINGS",
    "Cell",
    "MemoryPlan",
    "SweepInterrupted",
    "plan_cells",
    "run_memory",
    "sweep_overrides",
    "task_baseline",
    "unigram_bpc",
]

Budget = Literal["hidden", "params"]
BUDGETS: tuple[Budget, ...] = ("hidden", "params")
#: the tasks the sweep knows, and the evaluation figure it compares for each
METRICS: dict[str, str] = {"adding": "mse", "copy": "ce", "charlm": "bpc"}
MEMORY_TASKS: tuple[str, ...] = tuple(METRICS)
DEFAULT_LENGTHS: tuple[int, ...] = (50, 100, 200)
#: applied over the shipped config, before the user's --set overrides
SWEEP_DEFAULTS: tuple[str, ...] = ("train.accel=onednn", "train.precision=fp32")
#: per task, applied after SWEEP_DEFAULTS: settings under which every gated kind solves
#: the task at every default lag within the default steps (adding: an LSTM at T=200 left
#: the baseline after 1,500-3,300 steps at the shipped constant 3e-3, after 1,500-2,400
#: at 1e-2; the cosine decay lets every kind settle, a plain RNN near its baseline)
TASK_SETTINGS: dict[str, tuple[str, ...]] = {
    "adding": (
        "optim.lr=1e-2",
        "optim.schedule=cosine",
        "optim.min_lr_ratio=0.1",
        "train.steps=3000",
    ),
}
#: config keys each cell sets itself, and the flag that chooses them
CELL_KEYS: dict[str, str] = {
    "task.name": "--task",
    "task.options.T": "--lengths",
    "model.kind": "--kinds",
    "model.hidden_size": "--hidden-size",
    "train.steps": "--steps",
}
#: the record a finished cell leaves in its run directory
CELL_FILE = "memory-cell.json"
#: the kind whose hidden size sets the parameter budget
BUDGET_KIND = "lstm"


class SweepInterrupted(Exception):
    """A cell stopped on a signal: the sweep stops there, to be continued with ``resume``."""

    def __init__(self, exit_code: int, why: str, run_dir: Path) -> None:
        super().__init__(f"{why} during {run_dir}; continue the sweep with --resume")
        self.exit_code = exit_code


@dataclass(frozen=True)
class MemoryPlan:
    """What to sweep. ``None`` takes the shipped config's value (hidden size, steps)."""

    task: str
    kinds: tuple[str, ...] = KINDS
    #: lags T; ignored (must be empty) for charlm
    lengths: tuple[int, ...] = DEFAULT_LENGTHS
    budget: Budget = "hidden"
    hidden_size: int | None = None
    steps: int | None = None
    #: ``section.key=value`` applied to every cell
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class Cell:
    """One run of the sweep."""

    kind: str
    length: int | None  # None: charlm
    config: RunConfig
    params: int

    @property
    def name(self) -> str:
        """The run directory's name under ``OUT/runs``."""
        return self.kind if self.length is None else f"{self.kind}-T{self.length}"


# ---------------------------------------------------------------------- planning


def _base_config(task: str, overrides: Sequence[str]) -> RunConfig:
    """The task's shipped config with ``overrides`` applied, read as ``train --config`` does."""
    from importlib.resources import as_file, files

    with as_file(files("nervana_lstm.configs").joinpath(f"{task}.yaml")) as path:
        return load_config(path, overrides)


def sweep_overrides(plan: MemoryPlan) -> list[str]:
    """Every override a cell gets over the shipped config, in the order they apply."""
    return [*SWEEP_DEFAULTS, *TASK_SETTINGS.get(plan.task, ()), *plan.overrides]


def _check_plan(plan: MemoryPlan) -> None:
    if plan.task not in METRICS:
        raise UsageError(f"--task expects one of {', '.join(METRICS)}, got {plan.task!r}")
    if not plan.kinds:
        raise UsageError(f"--kinds expects one or more of {', '.join(KINDS)}")
    bad = [k for k in plan.kinds if k not in KINDS]
    if bad:
        raise UsageError(f"--kinds expects names from {', '.join(KINDS)}, got {', '.join(bad)}")
    if len(set(plan.kinds)) != len(plan.kinds):
        raise UsageError(f"--kinds names a kind twice: {','.join(plan.kinds)}")
    if plan.task == "charlm":
        if plan.lengths:
            raise UsageError(
                "charlm has no lag: leave out --lengths (its cells are the kinds alone)"
            )
    else:
        if not plan.lengths:
            raise UsageError(f"--lengths expects one or more lags T for task {plan.task!r}")
        if any(t < 2 for t in plan.lengths) or len(set(plan.lengths)) != len(plan.lengths):
            raise UsageError(
                f"--lengths expects distinct lags >= 2, got {','.join(map(str, plan.lengths))}"
            )
    if plan.budget not in BUDGETS:
        raise UsageError(f"--budget expects one of {', '.join(BUDGETS)}, got {plan.budget!r}")
    if plan.hidden_size is not None and plan.hidden_size < 1:
        raise UsageError(f"--hidden-size expects a positive integer, got {plan.hidden_size}")
    if plan.steps is not None and plan.steps < 1:
        raise UsageError(f"--steps expects a positive integer, got {plan.steps}")
    for text in plan.overrides:
        key = ".".join(parse_override(text)[0])
        if key in CELL_KEYS:
            raise UsageError(
                f"--set {text!r}: the sweep sets {key} for every cell; use {CELL_KEYS[key]}"
            )


def _cell_config(
    base: dict[str, Any], kind: str, length: int | None, hidden: int, steps: int
) -> RunConfig:
    data = apply_overrides(base, [f"model.kind={kind}", f"model.hidden_size={hidden}"])
    data.setdefault("train", {})["steps"] = steps
    if length is not None:
        data["task"].setdefault("options", {})["T"] = length
    if not has_cell_state(kind):  # rnn, gru: no forget gate, a shipped forget_bias does not apply
        data["model"]["forget_bias"] = None
    return config_from_dict(data, f"memory sweep cell {kind}")


def plan_cells(plan: MemoryPlan) -> list[Cell]:
    """Every cell's validated config and parameter count, kinds outer, lags inner.

    Nothing is trained or written; a bad flag or override is a UsageError here.
    """
    _check_plan(plan)
    shipped = _base_config(plan.task, sweep_overrides(plan))
    # only what the file and the overrides set: defaults the cells derive (the task's
    # seed from train.seed) stay derived
    base = shipped.model_dump(mode="json", exclude_unset=True)
    hidden = plan.hidden_size or shipped.model.hidden_size
    steps = plan.steps or shipped.train.steps
    spec = _spec(shipped)
    sizes = {kind: hidden for kind in plan.kinds}
    if plan.budget == "params":
        reference = shipped.model.model_copy(update={"kind": BUDGET_KIND, "hidden_size": hidden})
        target = model_params(spec, reference)
        sizes = {
            kind: matched_hidden_size(spec, shipped.model, kind, target) for kind in plan.kinds
        }
    lengths: Sequence[int | None] = plan.lengths if plan.task != "charlm" else (None,)
    cells = []
    for kind in plan.kinds:
        for length in lengths:
            cfg = _cell_config(base, kind, length, sizes[kind], steps)
            cells.append(Cell(kind, length, cfg, model_params(spec, cfg.model)))
    return cells


def _spec(cfg: RunConfig) -> Any:
    from nervana_lstm.data import make_task

    return make_task(cfg.task.name, **cfg.task.options).spec


# --------------------------------------------------------------------- baselines


def unigram_bpc(train_ids: Any, eval_ids: Any, vocab_size: int) -> float:
    """Bits per character on ``eval_ids`` of the character frequencies of ``train_ids``.

    The frequencies are add-one smoothed over the vocabulary, so a character
    unseen in training costs a finite amount. This is the best a model that
    remembers nothing of the text before can do (on frequencies alone).
    """
    import torch

    counts = torch.bincount(train_ids, minlength=vocab_size).double() + 1.0
    log_p = torch.log2(counts / counts.sum())
    targets = eval_ids[1:]  # every held-out character after the first is predicted
    return float(-log_p[targets].mean())


def task_baseline(task: Any) -> float:
    """The task's memoryless baseline of :data:`METRICS`' figure (see the module docstring)."""
    name = task.spec.name
    if name == "adding":
        from nervana_lstm.data.adding import MSE_BASELINE

        return MSE_BASELINE
    if name == "copy":
        from nervana_lstm.data.copying import copy_baseline

        return copy_baseline(task.T)
    if name == "charlm":
        return unigram_bpc(task.train_ids, task.eval_ids, task.vocab.size)
    raise UsageError(f"the memory sweep has no baseline for task {name!r}")


# ---------------------------------------------------------------------- running


def _check_out(out: Path, cells: list[Cell], resume: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory; choose another --out")
    if resume:
        return
    taken = [c.name for c in cells if (out / "runs" / c.name).exists()]
    if taken or (out / "memory.json").exists():
        what = f"runs/{taken[0]}" if taken else "memory.json"
        raise UsageError(
            f"{out} already holds a memory sweep ({what}); pass --resume to continue it or "
            "choose another --out"
        )


def _final_eval(run_dir: Path) -> dict[str, Any] | None:
    from nervana_lstm.train.report import read_metrics

    evals = [r for r in read_metrics(run_dir / "metrics.jsonl") if r.get("split") == "eval"]
    return evals[-1] if evals else None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _record(
    cell: Cell, run_dir: Path, out: Path, baseline: float, result: Any, wall: float
) -> dict[str, Any]:
    metric = METRICS[cell.config.task.name]
    final = _final_eval(run_dir) or {}
    value = _number(final.get(metric))
    extra = {}
    if "recall_accuracy" in final:
        extra["recall_accuracy"] = _number(final["recall_accuracy"])
    return {
        "kind": cell.kind,
        "length": cell.length,
        "hidden_size": cell.config.model.hidden_size,
        "num_layers": cell.config.model.num_layers,
        "parameters": cell.params,
        "metric": metric,
        "value": value,
        "baseline": baseline,
        "ratio": None if value is None else value / baseline,
        **extra,
        "eval_step": final.get("step"),
        "steps": result.step,
        "stopped_because": result.stopped_because,
        "wall_s": round(wall, 2),
        "backend": result.backend,
        "precision": result.precision,
        "run_dir": str(run_dir.relative_to(out)),
    }


def run_memory(
    plan: MemoryPlan,
    out: Path,
    *,
    resume: bool = False,
    console: Console | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train every cell of ``plan`` under ``out/runs`` and return the ``memory.json`` document.

    The documents' files are written by
    :func:`~nervana_lstm.lesson.memory_report.write_reports`.
    """
    from nervana_lstm.data import make_task
    from nervana_lstm.train.loop import EXIT_NONFINITE, EXIT_OK, run_training

    console = console or Console(soft_wrap=True)
    cells = plan_cells(plan)
    _check_out(out, cells, resume)
    first = next((c.config for c in cells if c.kind in ("lstm", "dglstm")), cells[0].config)
    baselines: dict[int | None, float] = {}
    records = []
    for n, cell in enumerate(cells, 1):
        run_dir = out / "runs" / cell.name
        title = (
            f"[{n}/{len(cells)}] {cell.kind}"
            + ("" if cell.length is None else f" T={cell.length}")
            + f" H={cell.config.model.hidden_size} ({cell.params:,} parameters) -> {run_dir}"
        )
        done = run_dir / CELL_FILE
        if resume and done.is_file():
            console.print(f"{title}: finished earlier, reusing its record", markup=False)
            records.append(json.loads(done.read_text(encoding="utf-8")))
            continue
        console.print(title, markup=False)
        if cell.length not in baselines:
            baselines[cell.length] = task_baseline(
                make_task(cell.config.task.name, **cell.config.task.options)
            )
        start = time.perf_counter()
        result = run_training(
            cell.config,
            run_dir,
            resume=resume and (run_dir / "checkpoints" / "last.pt").is_file(),
            console=console,
            progress=progress,
        )
        wall = time.perf_counter() - start
        if result.exit_code not in (EXIT_OK, EXIT_NONFINITE):  # a signal: stop the sweep here
            raise SweepInterrupted(result.exit_code, result.stopped_because, run_dir)
        record = _record(cell, run_dir, out, baselines[cell.length], result, wall)
        write_text_atomic(done, json.dumps(record, indent=2) + "\n")
        records.append(record)
    return {
        "task": plan.task,
        "metric": METRICS[plan.task],
        "budget": plan.budget,
        "budget_kind": BUDGET_KIND if plan.budget == "params" else None,
        "kinds": list(plan.kinds),
        "lengths": list(plan.lengths) if plan.task != "charlm" else None,
        "steps": first.train.steps,
        "precision": first.train.precision,
        "accel": first.train.accel,
        "threads": first.train.threads,
        "overrides": sweep_overrides(plan),
        "settings": _shared_settings(first),
        "records": records,
    }


def _shared_settings(cfg: RunConfig) -> dict[str, Any]:
    """The config the cells share: they differ in kind, hidden size and T only (and rnn
    and gru, which have no forget gate, in ``model.forget_bias``)."""
    data = cfg.to_dict()
    data["model"].pop("kind")
    data["model"].pop("hidden_size")
    data["task"]["options"].pop("T", None)
    return data
