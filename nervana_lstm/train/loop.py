"""The training loop, top to bottom.

    1. set up: processes, threads, seeds, task and resolved config
    2. restore: the last checkpoint, if asked  (checked against the config)
    3. precision and backend                   (named, or ``auto``: precision from the CPU,
                                                the backend by a short measurement)
    4. model, optimizer, backend applied       (weights and progress restored on resume)
    5. the steps: batch -> forward -> loss -> backward -> clip -> update -> log,
       with evaluation, checkpoints, early stopping, NaN stop, signals
    6. the end: last checkpoint, loss-curve PNG, a summary of where things are

Every batch is a pure function of (seed, step, rank, world_size), and the
learning rate a pure function of the step, so a checkpoint needs only weights,
optimizer state, RNG states, the step and (charlm) the carried recurrent state
for ``--resume`` to reproduce the uninterrupted run exactly. What a checkpoint
holds lives in :mod:`~nervana_lstm.train.checkpoint`, what the run prints and
writes in :mod:`~nervana_lstm.train.report`.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from rich.console import Console
from torch import nn

from nervana_lstm.choices import PRECISIONS, TRAIN_BACKENDS, Precision
from nervana_lstm.config import RunConfig, resolve_config
from nervana_lstm.data import Batch, Task, TaskSpec, make_task
from nervana_lstm.errors import UsageError
from nervana_lstm.thread_plan import ThreadPlan, plan_threads, recheck
from nervana_lstm.train import accel, checkpoint, report
from nervana_lstm.train.autotune import build_for, measure_backends
from nervana_lstm.train.budget import check_training_memory
from nervana_lstm.train.distributed import (
    DistContext,
    broadcast_flag,
    combine,
    init_distributed,
    shutdown,
)
from nervana_lstm.train.progress import Progress, map_carry, process_seed, reset_rows
from nervana_lstm.train.report import MetricsLog, ProgressDisplay, RunPaths, ThroughputWindow
from nervana_lstm.train.schedule import lr_at, set_lr
from nervana_lstm.train.signals import StopRequest

__all__ = ["RunResult", "evaluate", "resolve_config", "run_training"]

EXIT_OK, EXIT_NONFINITE = 0, 1


@dataclass
class RunResult:
    exit_code: int
    run_dir: Path
    step: int
    stopped_because: str  # "completed", "early stopping", "stop-at", "SIGINT", "non-finite loss"
    backend: str
    precision: str
    best_eval: float | None


# --------------------------------------------------------------------- the run


def run_training(
    cfg: RunConfig,
    out_dir: Path,
    *,
    resume: bool = False,
    stop_at: int | None = None,
    console: Console | None = None,
    progress: bool = True,
    allow_pickle: bool = False,
    threads: ThreadPlan | None = None,
) -> RunResult:
    """Train ``cfg`` into ``out_dir``; see the module docstring for the order of things.

    ``allow_pickle`` lets a ``files`` task unpickle a ragged NPZ (a file you trust);
    it is a permission of this call, never written to the run's config. ``threads``
    is the plan the CLI made before importing torch
    (:func:`~nervana_lstm.thread_plan.plan_threads`); without it the run plans here,
    where torch is running already and only the thread count can still change.
    """
    ctx = init_distributed()
    paths = RunPaths(out_dir)
    fresh = not resume and report.is_empty_or_absent(paths.out)
    existed = paths.out.exists()
    try:
        # soft_wrap: a log line piped to a file stays one line
        console = console or Console(soft_wrap=True)
        return _train(cfg, paths, resume, stop_at, console, progress, ctx, allow_pickle, threads)
    except BaseException:
        if ctx.is_main and fresh:  # a new run that failed leaves no half-made run dir
            report.remove_unfinished(paths, keep_dir=existed)
        raise
    finally:
        shutdown(ctx)


def _train(
    cfg: RunConfig,
    paths: RunPaths,
    resume: bool,
    stop_at: int | None,
    console: Console,
    show_progress: bool,
    ctx: DistContext,
    allow_pickle: bool = False,
    plan: ThreadPlan | None = None,
) -> RunResult:
    say = console.print if ctx.is_main else _quiet

    # 1. set up ------------------------------------------------------------------------
    report.check_run_dir(paths, resuming=resume)  # before any work: a taken --out is refused
    if plan is None:
        plan = plan_threads(cfg.train.threads, "train.threads", ctx.local_world_size)
    torch.set_num_threads(plan.threads)
    _check_batch_split(cfg, ctx)
    memory = {"world_size": ctx.world_size, "local_processes": ctx.local_world_size}
    check_training_memory(cfg, **memory)  # before any data or weights exist
    cfg = resolve_config(cfg)
    tc, oc = cfg.train, cfg.optim
    task: Task = make_task(cfg.task.name, allow_pickle=allow_pickle, **cfg.task.options)
    check_training_memory(cfg, task, **memory)  # with the task's real sizes, before the model
    spec, vocab = task.spec, checkpoint.vocab_of(task)
    _check_task_and_backend(cfg, spec)

    # 2. restore -----------------------------------------------------------------------
    resumed = checkpoint.restore(paths.last, cfg, vocab, say) if resume else None

    # 3. precision and backend ---------------------------------------------------------
    if cfg.train.accel == "auto" and not resumed:  # auto times backends: look at the CPUs again
        plan = recheck(plan)
        torch.set_num_threads(plan.threads)
    threads = plan.threads
    precision, choice = _choose_precision_and_backend(cfg, task, ctx, resumed, threads)
    prec = precision.precision

    # 4. model, optimizer, progress ----------------------------------------------------
    net, optimizer, _ = build_for(
        choice.backend, task, cfg, resumed.load_weights if resumed else None, prec
    )
    model = ctx.wrap(net)  # DistributedDataParallel over several processes
    params = [p for p in model.parameters() if p.requires_grad]
    torch.manual_seed(process_seed(tc.seed, ctx.rank))
    progress = resumed.progress(cfg, ctx, spec.stateful, say) if resumed else Progress()
    save = _Saver(cfg, ctx, choice.backend, prec, net, optimizer, vocab)
    report.print_setup(say, choice, precision, cfg, threads, ctx, plan.threads_from)
    for line in plan.lines():
        say(line)
    if ctx.is_main:
        # Written only now that the run is set up: a refused config, model or checkpoint
        # leaves no run dir behind and never replaces the config of a run being resumed.
        report.write_run_files(
            paths, cfg, choice, precision, threads, ctx,
            thread_plan={**plan.as_dict(), "torch_num_threads": torch.get_num_threads()},
        )  # fmt: skip

    # 5. the steps ---------------------------------------------------------------------
    metrics = MetricsLog(paths.metrics, progress.step if resumed else None) if ctx.is_main else None
    display = ProgressDisplay(
        console, tc.steps, progress.step, show_progress, silent=not ctx.is_main
    )
    window = ThroughputWindow(tc.steps)
    every_ckpt = tc.checkpoint_every or cfg.eval.every
    exit_code = EXIT_OK
    model.train()
    stopped = _stopped_before_start(cfg, progress, say)
    with StopRequest() as signals:
        while progress.step < tc.steps and stopped == "completed":
            step = progress.step
            batch = task.train_batch(step, tc.batch_size, ctx.rank, ctx.world_size)
            lr = lr_at(step, oc, tc.steps)
            set_lr(optimizer, lr)
            if spec.stateful:
                progress.carry = reset_rows(progress.carry, batch.reset)

            with accel.autocast(prec):
                out, new_state = model(batch.x, progress.carry, batch.lengths)
                loss = task.loss(out.float(), batch)

            loss_sum, tokens, stop_asked = _share(ctx, loss, batch, signals.requested)
            loss_value = loss_sum / ctx.world_size
            if not math.isfinite(loss_value):
                stopped, exit_code = "non-finite loss", EXIT_NONFINITE
                break

            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(
                params, oc.clip_norm or math.inf, foreach=True
            )
            if not torch.isfinite(grad_norm):
                stopped, exit_code = "non-finite gradient", EXIT_NONFINITE
                break
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if spec.stateful:
                progress.carry = map_carry(new_state, torch.Tensor.detach)  # truncated BPTT
            step += 1
            progress.step = step

            window.add(loss_value, tc.batch_size, tokens)
            display.advance(step)
            if step % tc.log_every == 0 or step == tc.steps:
                report.log_train(display, metrics, step, tc.steps, window.take(step), lr, grad_norm)

            stop_early = False
            with window.paused():  # evaluation and saving are not training time
                if step % cfg.eval.every == 0 or step == tc.steps:
                    improved, stop_early = _eval_round(
                        net, task, cfg, prec, ctx, progress, metrics, display
                    )
                    if improved:
                        save(paths.best, progress)
                if step % every_ckpt == 0 and step < tc.steps:
                    save(paths.last, progress)
            if stop_early:
                stopped = "early stopping"
                break
            if stop_asked:
                stopped = signals.name or "signal"
                exit_code = signals.exit_code if signals.requested else 143
                break
            if stop_at is not None and step >= stop_at:
                stopped = "stop-at"
                break
        display.close()

        # 6. the end -----------------------------------------------------------------------
        if exit_code == EXIT_NONFINITE:
            if ctx.is_main:
                report.print_nonfinite(stopped, progress.step + 1, lr, paths.last)
        elif not resumed or progress.step > resumed.step:
            # a resumed run with nothing to do keeps its checkpoint: a lowered train.steps
            # saved beside a later step would make it a checkpoint past its own end
            save(paths.last, progress)
    if metrics:
        metrics.close()
        title = (
            f"{cfg.task.name}: {cfg.model.kind} H={cfg.model.hidden_size} "
            f"({choice.backend}, {prec})"
        )
        report.plot_losses(report.read_metrics(paths.metrics), paths.plot, title)
    report.print_summary(say, paths, stopped, progress.step, cfg, choice.backend, prec)
    return RunResult(
        exit_code, paths.out, progress.step, stopped, choice.backend, prec, progress.best
    )


# ---------------------------------------------------------- the driver's steps


def _quiet(*_: object, **__: object) -> None:
    """What a process other than rank 0 prints: nothing."""


def _check_batch_split(cfg: RunConfig, ctx: DistContext) -> None:
    if cfg.train.batch_size % ctx.world_size:
        raise UsageError(
            f"train.batch_size {cfg.train.batch_size} must be divisible by the number of "
            f"processes ({ctx.world_size})"
        )


def _check_task_and_backend(cfg: RunConfig, spec: TaskSpec) -> None:
    """Refuse what cannot train before anything is written to the run dir."""
    if spec.stateful and cfg.model.bidirectional:
        # the backward direction would read the next characters, which are the targets
        raise UsageError(
            f"model.bidirectional=true cannot train task {cfg.task.name!r}: it predicts the "
            "next token, which a backward direction would already have read"
        )
    if cfg.train.accel != "auto":
        accel.choose_backend(cfg.train.accel)  # a named backend that cannot run here


def _choose_precision_and_backend(
    cfg: RunConfig,
    task: Task,
    ctx: DistContext,
    resumed: checkpoint.Resumed | None,
    threads: int,
) -> tuple[accel.PrecisionChoice, accel.AccelChoice]:
    """What every process trains with; with several processes rank 0's choices win."""
    tc = cfg.train
    precision = accel.choose_precision(tc.precision, resumed=resumed.precision if resumed else None)
    precision = _rank0_precision(ctx, precision)
    prec = precision.precision
    first = task.train_batch(0, tc.batch_size, ctx.rank, ctx.world_size)  # (auto times it)
    if resumed and tc.accel == "auto":
        choice = resumed.backend_choice()
    else:
        choice = accel.choose_backend(
            tc.accel,
            lambda names, limit: measure_backends(
                names, task, cfg, first, limit, precision=prec, threads=threads,
                rank=ctx.rank, world_size=ctx.world_size,
            ),
        )  # fmt: skip
    if ctx.active:
        index = torch.tensor([float(TRAIN_BACKENDS.index(choice.backend))])
        torch.distributed.broadcast(index, src=0)
        picked = TRAIN_BACKENDS[int(index.item())]
        if picked != choice.backend:
            choice = accel.AccelChoice(picked, f"rank 0's choice ({choice.reason})")
    return precision, choice


def _rank0_precision(ctx: DistContext, precision: accel.PrecisionChoice) -> accel.PrecisionChoice:
    """Every process trains in rank 0's precision (machines of a job may differ)."""
    if not ctx.active:
        return precision
    index = torch.tensor([float(PRECISIONS.index(precision.precision))])
    torch.distributed.broadcast(index, src=0)
    picked: Precision = PRECISIONS[int(index.item())]
    if picked != precision.precision:
        return accel.PrecisionChoice(picked, f"rank 0's choice ({precision.reason})")
    return precision


@dataclass(frozen=True)
class _Saver:
    """Writes one checkpoint: every process takes the snapshot, rank 0 writes it."""

    cfg: RunConfig
    ctx: DistContext
    backend: str
    precision: Precision
    model: nn.Module  # without the DistributedDataParallel wrapper
    optimizer: torch.optim.Optimizer
    vocab: list[str] | None

    def __call__(self, path: Path, progress: Progress) -> None:
        state = checkpoint.snapshot(
            self.cfg, progress, backend=self.backend, precision=self.precision, model=self.model,
            optimizer=self.optimizer, ctx=self.ctx, vocab=self.vocab,
        )  # fmt: skip
        if self.ctx.is_main:
            try:
                checkpoint.save_checkpoint(path, state)
            except OSError as exc:  # the previous file at ``path`` is intact (atomic write)
                raise report.save_failed(path, progress.step, exc) from None


def _stopped_before_start(cfg: RunConfig, progress: Progress, say: report.Say) -> str:
    """``"completed"`` when steps remain, else why the run has nothing left to do."""
    if progress.step >= cfg.train.steps:
        say(
            f"nothing to do: the checkpoint is at step {progress.step} of "
            f"train.steps={cfg.train.steps}"
        )
    elif 0 < cfg.eval.patience <= progress.evals_since_best:
        # the run had stopped early; the uninterrupted run would not train on either
        say(
            f"nothing to do: the run stopped early at step {progress.step} "
            f"({progress.evals_since_best} evals without improvement, "
            f"eval.patience={cfg.eval.patience})"
        )
        return "early stopping"
    return "completed"


def _share(
    ctx: DistContext, loss: torch.Tensor, batch: Batch, stop_requested: bool
) -> tuple[float, int, bool]:
    """(loss summed over processes, valid tokens in the global batch, any process asked to
    stop): one small all-reduce."""
    steps, rows = batch.x.shape[0], batch.x.shape[1]
    tokens = int(batch.lengths.sum()) if batch.lengths is not None else steps * rows
    shared = combine(
        ctx,
        torch.tensor(
            [loss.detach().float().item(), tokens, float(stop_requested)], dtype=torch.float64
        ),
    )
    return float(shared[0]), int(shared[1]), bool(shared[2] > 0)


def _eval_round(
    model: nn.Module,
    task: Task,
    cfg: RunConfig,
    precision: Precision,
    ctx: DistContext,
    progress: Progress,
    metrics: MetricsLog | None,
    display: ProgressDisplay,
) -> tuple[bool, bool]:
    """Evaluate and track the best loss: (improved, stop early), as rank 0 decides both."""
    figures = evaluate(model, task, cfg, precision)
    improved = progress.best is None or figures["loss"] < progress.best - cfg.eval.min_delta
    improved = broadcast_flag(ctx, improved)  # every process saves, or none
    if improved:
        progress.best, progress.evals_since_best = figures["loss"], 0
    else:
        progress.evals_since_best += 1
    if metrics:
        metrics.write({"step": progress.step, "split": "eval", **figures, "time": time.time()})
    shown = "  ".join(f"{k} {v:.4g}" for k, v in figures.items())
    display.print(f"eval @ {progress.step}: {shown}" + ("  (best)" if improved else ""))
    patience = cfg.eval.patience
    stop = broadcast_flag(ctx, patience > 0 and progress.evals_since_best >= patience)
    return improved, stop


def evaluate(
    model: nn.Module, task: Task, cfg: RunConfig, precision: Precision | None = None
) -> dict[str, float]:
    """The task's figures on its held-out set, averaged over sequences.

    ``precision`` is the one the model trains in; by default ``train.precision``,
    with ``auto`` resolved for this CPU.

    ``model`` is the plain module (not DistributedDataParallel): every process
    evaluates the whole held-out set. A stateful task carries the recurrent state
    from batch to batch, zeroed where a batch says ``reset``. The model is back in
    training mode afterwards.
    """
    stateful = task.spec.stateful
    model.eval()
    totals: dict[str, float] = {}
    count = 0
    state = None
    if precision is None:
        precision = accel.choose_precision(cfg.train.precision).precision
    with torch.no_grad(), accel.autocast(precision):
        for batch in task.eval_batches(cfg.eval.batch_size or cfg.train.batch_size):
            state = reset_rows(state, batch.reset) if stateful else None
            out, new_state = model(batch.x, state, batch.lengths)
            state = new_state if stateful else None
            n = int(batch.x.shape[1])
            figures = {"loss": float(task.loss(out.float(), batch))}
            figures.update(task.metrics(out.float(), batch))
            for k, v in figures.items():
                totals[k] = totals.get(k, 0.0) + float(v) * n
            count += n
    model.train()
    return {k: v / max(count, 1) for k, v in totals.items()}
