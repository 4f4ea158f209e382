"""What a run tells its user: the setup lines, the run files, the progress bar, throughput,
``metrics.jsonl``, the loss-curve PNG and the closing summary.

A run directory holds::

    config.yaml           the resolved config (rebuilds the run by itself)
    run.json              backend, why it was chosen, precision, threads (the CPUs granted,
                          the load seen, the wait policy and why), processes
    metrics.jsonl         one record per log line and per evaluation
    loss.png              training and evaluation loss against step
    checkpoints/last.pt   the latest state (``--resume`` continues from it)
    checkpoints/best.pt   the state at the best evaluation loss

A new run starts only in a directory that is absent or empty, and a new run that
fails before its first checkpoint removes what it wrote; a failed write (a full
disk, a read-only folder, a directory where a file goes) is a UsageError saying
what to do, and leaves every file written before it intact.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import torch
import yaml
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
from nervana_lstm.config import RunConfig
from nervana_lstm.errors import UsageError
from nervana_lstm.paths import write_problem
from nervana_lstm.train import accel
from nervana_lstm.train.distributed import DistContext

__all__ = [
    "MetricsLog",
    "ProgressDisplay",
    "RunPaths",
    "ThroughputWindow",
    "WindowFigures",
    "check_run_dir",
    "is_empty_or_absent",
    "log_train",
    "plot_losses",
    "print_nonfinite",
    "print_setup",
    "print_summary",
    "read_metrics",
    "remove_unfinished",
    "save_failed",
    "write_run_files",
]

Say = Callable[[str], object]


@dataclass(frozen=True)
class RunPaths:
    """The files of one run directory (see the module docstring)."""

    out: Path

    @property
    def last(self) -> Path:
        return self.out / "checkpoints" / "last.pt"

    @property
    def best(self) -> Path:
        return self.out / "checkpoints" / "best.pt"

    @property
    def metrics(self) -> Path:
        return self.out / "metrics.jsonl"

    @property
    def plot(self) -> Path:
        return self.out / "loss.png"

    @property
    def files(self) -> tuple[Path, ...]:
        """Every file a run writes, checkpoints last."""
        out = self.out
        return (
            out / "config.yaml",
            out / "run.json",
            self.metrics,
            self.plot,
            self.last,
            self.best,
        )


def is_empty_or_absent(path: Path) -> bool:
    """True when ``path`` does not exist or is a directory with nothing in it."""
    try:
        return not any(path.iterdir())
    except FileNotFoundError:
        return True
    except OSError:  # a file, or a folder that cannot be listed
        return False


def check_run_dir(paths: RunPaths, resuming: bool) -> None:
    """Refuse an ``--out`` a run cannot use, before any work is done.

    A new run needs a directory that is absent or empty (so it never replaces
    another run's files, even one killed before its first ``last.pt``), inside a
    folder it can write. A resumed run needs its directory writable and each run
    file, where present, to be a file.
    """
    out = paths.out
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory; choose another --out")
    if not resuming:
        if paths.last.exists():
            raise UsageError(
                f"{out} already holds a run (checkpoints/last.pt); pass --resume to continue "
                "it or choose another --out"
            )
        if not is_empty_or_absent(out):
            held = sorted(p.name for p in out.iterdir()) if os.access(out, os.R_OK) else []
            shown = ", ".join(held[:6]) + (", ..." if len(held) > 6 else "")
            raise UsageError(
                f"--out {out} is not empty ({shown or 'it cannot be listed'}) and holds no "
                "checkpoints/last.pt to resume from; a new run needs an empty or new directory, "
                "so it never replaces another run's files: choose another --out, or move "
                "those files away"
            )
    base = out
    while not base.exists() and base != base.parent:  # the folder the run dir is made in
        base = base.parent
    if not os.access(base, os.W_OK | os.X_OK):
        raise UsageError(
            f"--out {out}: {base} is not writable (a run writes its config, metrics and "
            "checkpoints there); make it writable or choose another --out"
        )
    if resuming:
        for path in (*paths.files, paths.last.parent):
            wanted_dir = path == paths.last.parent
            if path.exists() and path.is_dir() != wanted_dir:
                kind = "is a directory" if path.is_dir() else "is not a directory"
                raise UsageError(
                    f"{path} {kind}; the run needs it as a {'directory' if wanted_dir else 'file'}"
                    ": move it away and resume again"
                )


def remove_unfinished(paths: RunPaths, keep_dir: bool) -> None:
    """Remove what a new run wrote before it failed, unless a checkpoint was saved.

    Only the run's own file names are removed, then the empty ``checkpoints``
    folder, then the run directory itself when the run created it.
    """
    if paths.last.exists() or paths.best.exists():
        return  # a checkpoint is worth keeping, with the files that explain it
    for path in paths.files:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
    folders = [paths.last.parent] + ([] if keep_dir else [paths.out])
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()  # only when empty


def save_failed(path: Path, step: int, exc: OSError) -> UsageError:
    """A checkpoint that could not be written: why, what is kept, what to do."""
    kept = (
        f"the previous {path.name} is intact; fix that and continue with --resume"
        if path.exists()
        else "fix that and run again"
    )
    return UsageError(
        f"cannot save the checkpoint of step {step} to {path}: {write_problem(exc, path)}; {kept}"
    )


def print_setup(
    say: Say,
    choice: accel.AccelChoice,
    precision: accel.PrecisionChoice,
    cfg: RunConfig,
    threads: int,
    ctx: DistContext,
    threads_from: str = "",
) -> None:
    """What will run, why, and on how many threads (and where that number comes from) and
    processes."""
    say(f"backend: {choice.backend} - {accel.describe(choice.backend, cfg.model.kind)}")
    say(f"  chosen because: {choice.reason}")
    say(f"precision: {accel.precision_text(precision.precision)}")
    say(f"  chosen because: {precision.reason}")
    source = f" ({threads_from})" if threads_from else ""
    say(
        f"threads: {threads} per process{source}; processes: {ctx.world_size}"
        + (f" ({ctx.backend})" if ctx.active else "")
    )


def write_run_files(
    paths: RunPaths,
    cfg: RunConfig,
    choice: accel.AccelChoice,
    precision: accel.PrecisionChoice,
    threads: int,
    ctx: DistContext,
    thread_plan: dict[str, Any] | None = None,
) -> None:
    """Create the run directory and write ``config.yaml`` and ``run.json``; rank 0 calls this.

    ``thread_plan`` (:meth:`nervana_lstm.thread_plan.ThreadPlan.as_dict`) is kept under
    ``threads``: the CPUs granted, the load seen and what was decided.
    """
    out = paths.out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        problem = write_problem(exc, out)
        raise UsageError(f"cannot create the run directory --out {out}: {problem}") from None
    info = {
        "backend": choice.backend,
        "backend_detail": accel.describe(choice.backend, cfg.model.kind),
        "backend_reason": choice.reason,
        "auto_timings_s": choice.timings,
        "auto_seconds": round(choice.seconds, 3),
        "precision": precision.precision,
        "precision_reason": precision.reason,
        "threads_per_process": threads,
        "threads": thread_plan,
        "processes": ctx.world_size,
        "comm_backend": ctx.backend,
        "torch": torch.__version__,
    }
    files = {
        out / "config.yaml": yaml.safe_dump(cfg.to_dict(), sort_keys=False),
        out / "run.json": json.dumps(info, indent=2) + "\n",
    }
    for path, text in files.items():
        try:
            write_text_atomic(path, text)
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {write_problem(exc, path)}") from None


class WindowFigures(NamedTuple):
    """Training figures over the steps since the last log line."""

    loss: float  # mean training loss
    samples_per_s: float
    tokens_per_s: float
    eta_s: float  # seconds to the last step at this pace


class ThroughputWindow:
    """Loss and throughput between two log lines; evaluating and saving are not training time.

    Over a window of ``k`` steps that trained for ``elapsed`` seconds::

        loss          = sum of step losses / k
        samples_per_s = rows / elapsed          (sequences, every process's rows)
        tokens_per_s  = tokens / elapsed        (valid time steps)
        eta_s         = (total_steps - step) * elapsed / k
    """

    def __init__(self, total_steps: int) -> None:
        self.total_steps = total_steps
        self._restart()

    def _restart(self) -> None:
        self.loss, self.steps, self.rows, self.tokens = 0.0, 0, 0, 0
        self.start = time.perf_counter()

    def add(self, loss: float, rows: int, tokens: int) -> None:
        """One training step of ``rows`` sequences and ``tokens`` valid steps (all processes)."""
        self.loss += loss
        self.steps += 1
        self.rows += rows
        self.tokens += tokens

    def take(self, step: int) -> WindowFigures:
        """The window's figures at ``step``; a new window starts."""
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        figures = WindowFigures(
            loss=self.loss / self.steps,
            samples_per_s=self.rows / elapsed,
            tokens_per_s=self.tokens / elapsed,
            eta_s=(self.total_steps - step) * elapsed / self.steps,
        )
        self._restart()
        return figures

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Time spent inside is left out of the window."""
        paused = time.perf_counter()
        try:
            yield
        finally:
            self.start += time.perf_counter() - paused


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
        try:
            if keep_until_step is None:
                write_text_atomic(path, "")
            else:
                kept = [r for r in read_metrics(path) if _step(r) <= keep_until_step]
                write_text_atomic(path, "".join(json.dumps(r) + "\n" for r in kept))
            self._fh = path.open("a", encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"cannot write {path}: {write_problem(exc, path)}") from None

    def write(self, record: dict[str, Any]) -> None:
        record = {k: _jsonable(v) for k, v in record.items()}
        try:
            self._fh.write(json.dumps(record) + "\n")
            self._fh.flush()
        except OSError as exc:
            raise UsageError(
                f"cannot append to {self.path}: {write_problem(exc, self.path)}; the last "
                "checkpoint is intact: fix that and continue with --resume"
            ) from None

    def close(self) -> None:
        self._fh.close()


def _step(record: dict[str, Any]) -> int:
    """A record's step; one without a usable step sorts first (it is kept)."""
    step = record.get("step", 0)
    return step if isinstance(step, int) and not isinstance(step, bool) else 0


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
    except OSError as exc:  # the plot only draws metrics.jsonl: the run itself is saved
        Console(stderr=True, soft_wrap=True).print(
            f"warning: loss plot not written to {path}: {write_problem(exc, path)}",
            highlight=False,
        )
    finally:
        plt.close(fig)


def _finite(points: list[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    return [(s, v) for s, v in points if isinstance(v, int | float) and math.isfinite(v)]


def log_train(
    display: ProgressDisplay,
    metrics: MetricsLog | None,
    step: int,
    total: int,
    figures: WindowFigures,
    lr: float,
    grad_norm: torch.Tensor | float,
) -> None:
    """One training log event: the progress line (or bar) and a ``metrics.jsonl`` record."""
    display.log(
        step, total, figures.loss, figures.samples_per_s, figures.tokens_per_s, figures.eta_s
    )
    if metrics:
        metrics.write(
            {"step": step, "split": "train", "loss": figures.loss, "lr": lr,
             "grad_norm": float(grad_norm), "samples_per_s": figures.samples_per_s,
             "tokens_per_s": figures.tokens_per_s, "time": time.time()}
        )  # fmt: skip


def print_nonfinite(stopped: str, step: int, lr: float, last: Path) -> None:
    """On stderr: training diverged at ``step``; what was kept and what to try."""
    kept = (
        f"the last good checkpoint, {last}, is kept"
        if last.exists()
        else f"no checkpoint had been saved yet (to start again, remove {last.parent.parent} "
        "or choose another --out)"
    )
    Console(stderr=True, soft_wrap=True).print(
        f"error: {stopped} at step {step} (lr {lr:.3g}); training stopped without "
        f"saving the diverged weights; {kept}. Try a lower optim.lr, a smaller "
        "optim.clip_norm, or precision fp32.",
        highlight=False,
    )


def print_summary(
    say: Say,
    paths: RunPaths,
    stopped: str,
    step: int,
    cfg: RunConfig,
    backend: str,
    precision: str,
) -> None:
    """Why the run ended, and where its files are."""
    if stopped in ("SIGINT", "SIGTERM", "signal"):
        say(f"stopped by {stopped} after step {step}; saved {paths.last}; continue with --resume")
    elif stopped == "stop-at":
        say(f"stopped at step {step} as asked; saved {paths.last}; continue with --resume")
    elif stopped == "early stopping":
        say(f"early stopping at step {step}: no eval improvement in {cfg.eval.patience} evals")
    say(f"run dir:     {paths.out}")
    say(f"metrics:     {paths.metrics}")
    say(f"plot:        {paths.plot}")
    saved_files = [str(p) for p in (paths.last, paths.best) if p.exists()]
    say(f"checkpoints: {', '.join(saved_files) or '(none)'}")
    say(f"ran on: {backend} / {precision}")
