"""The training loop, top to bottom.

    1. processes, threads, seeds          (torchrun or one process)
    2. task and resolved config           (saved in the run dir)
    3. resume state, if asked             (checkpoint verified against the config)
    4. backend and precision              (named, or ``auto`` by a short measurement)
    5. model, optimizer, backend applied  (weights restored on resume)
    6. the steps: batch -> forward -> loss -> backward -> clip -> update,
       with evaluation, checkpoints, early stopping, NaN stop, signals
    7. the end: last checkpoint, loss-curve PNG, a summary of where things are

Every batch is a pure function of (seed, step, rank, world_size), and the
learning rate a pure function of the step, so a checkpoint needs only weights,
optimizer state, RNG states, the step and (charlm) the carried recurrent state
for ``--resume`` to reproduce the uninterrupted run exactly.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from rich.console import Console
from torch import nn

from nervana_lstm.atomic import write_text_atomic
from nervana_lstm.config import RunConfig, resolve_config
from nervana_lstm.data import Batch, Task, make_task, shard_slice
from nervana_lstm.errors import UsageError
from nervana_lstm.models import build_model
from nervana_lstm.train import accel, checkpoint
from nervana_lstm.train.autotune import measure_backend
from nervana_lstm.train.distributed import (
    DistContext,
    all_gather_rows,
    broadcast_flag,
    combine,
    init_distributed,
    shutdown,
)
from nervana_lstm.train.report import (
    MetricsLog,
    ProgressDisplay,
    plot_losses,
    read_metrics,
)
from nervana_lstm.train.schedule import lr_at, make_optimizer, set_lr
from nervana_lstm.train.signals import StopRequest

__all__ = ["RunResult", "resolve_config", "run_training"]

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None

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


# ----------------------------------------------------------------- small helpers


def _threads(cfg: RunConfig, ctx: DistContext) -> int:
    if cfg.train.threads is not None:
        return cfg.train.threads
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cpus or 1) // ctx.local_world_size)


def _process_seed(seed: int, rank: int) -> int:
    # Dropout draws differ per process (each holds other rows); init stays seeded by `seed`.
    return (seed * 1_000_003 + 7_919 * (rank + 1)) % (2**63)


def _map_state(state: State, fn: Callable[[torch.Tensor], torch.Tensor]) -> State:
    if state is None:
        return None
    if isinstance(state, tuple | list):
        return tuple(fn(s) for s in state)  # type: ignore[return-value]
    return fn(state)


def _reset_rows(state: State, reset: torch.Tensor | None) -> State:
    """Zero the carried state of streams that start over in this batch."""
    if state is None or reset is None or not bool(reset.any()):
        return state
    keep = (~reset).to(torch.float32).view(1, -1, 1)  # (1, N, 1)
    return _map_state(state, lambda s: s * keep.to(s.dtype))


def _tokens(batch: Batch) -> int:
    if batch.lengths is not None:
        return int(batch.lengths.sum())
    return int(batch.x.shape[0] * batch.x.shape[1])


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


# --------------------------------------------------------------------- the run


def run_training(
    cfg: RunConfig,
    out_dir: Path,
    *,
    resume: bool = False,
    stop_at: int | None = None,
    console: Console | None = None,
    progress: bool = True,
) -> RunResult:
    """Train ``cfg`` into ``out_dir``; see the module docstring for the order of things."""
    ctx = init_distributed()
    try:
        # soft_wrap: a log line piped to a file stays one line
        console = console or Console(soft_wrap=True)
        return _run(cfg, out_dir, resume, stop_at, console, progress, ctx)
    finally:
        shutdown(ctx)


def _run(
    cfg: RunConfig,
    out_dir: Path,
    resume: bool,
    stop_at: int | None,
    console: Console,
    progress: bool,
    ctx: DistContext,
) -> RunResult:
    say = console.print if ctx.is_main else (lambda *a, **k: None)

    # 1. threads and seeds -------------------------------------------------------
    threads = _threads(cfg, ctx)
    torch.set_num_threads(threads)
    tc, oc = cfg.train, cfg.optim
    if tc.batch_size % ctx.world_size:
        raise UsageError(
            f"train.batch_size {tc.batch_size} must be divisible by the number of processes "
            f"({ctx.world_size})"
        )

    # 2. task and resolved config --------------------------------------------------
    cfg = resolve_config(cfg)
    task: Task = make_task(cfg.task.name, **cfg.task.options)
    spec = task.spec
    if spec.stateful and cfg.model.bidirectional:
        # the backward direction would read the next characters, which are the targets
        raise UsageError(
            f"model.bidirectional=true cannot train task {cfg.task.name!r}: it predicts the "
            "next token, which a backward direction would already have read"
        )
    if tc.accel != "auto":
        # refuse an unavailable backend before anything is written to the run dir
        accel.choose_backend(tc.accel)
    ckpt_dir = out_dir / "checkpoints"
    last_path, best_path = ckpt_dir / "last.pt", ckpt_dir / "best.pt"

    # 3. resume state ----------------------------------------------------------------
    saved: dict[str, Any] | None = None
    if resume:
        saved = checkpoint.load_checkpoint(last_path)
        checkpoint.check_compatible(saved["config"], cfg.to_dict(), last_path)
        changed = checkpoint.changed_keys(saved["config"], cfg.to_dict())
        if changed:
            say(f"resume: config differs from the checkpoint in {', '.join(changed)}")
    elif last_path.exists():
        raise UsageError(
            f"{out_dir} already holds a run (checkpoints/last.pt); pass --resume to continue it "
            "or choose another --out"
        )
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"--out {out_dir} exists and is not a directory; choose another --out")
    start_step = int(saved["step"]) if saved else 0

    # 4 + 5. backend, model, optimizer ---------------------------------------------
    first = task.train_batch(0, tc.batch_size, ctx.rank, ctx.world_size)

    def measure(backend: str, give_up_after: float | None) -> float:
        return measure_backend(backend, task, cfg, first, give_up_after)

    if saved and tc.accel == "auto":
        choice = accel.AccelChoice(saved["backend"], "auto: the backend this run started with")
        accel.backends.require(choice.backend)
    else:
        choice = accel.choose_backend(tc.accel, measure)
    if ctx.active:  # every process must run the same backend; rank 0's measurement decides
        index = torch.tensor([float(accel.TRAIN_BACKENDS.index(choice.backend))])
        torch.distributed.broadcast(index, src=0)
        picked = accel.TRAIN_BACKENDS[int(index.item())]
        if picked != choice.backend:
            choice = accel.AccelChoice(picked, f"rank 0's choice ({choice.reason})")

    torch.manual_seed(tc.seed)
    plain = build_model(spec, cfg.model, accel.impl_for(choice.backend))
    optimizer = make_optimizer(plain.parameters(), oc)
    if saved:
        chars = getattr(getattr(task, "vocab", None), "chars", None)
        if saved.get("vocab") is not None and list(chars or []) != saved["vocab"]:
            raise UsageError(
                f"checkpoint {last_path} was trained on another text: its vocabulary differs "
                "from this corpus's"
            )
        try:
            plain.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            first_line = str(exc).strip().splitlines()[0]
            raise UsageError(
                f"checkpoint {last_path} does not fit this task and model: {first_line}"
            ) from None
    model, optimizer = accel.apply_backend(choice.backend, plain, optimizer, tc.precision)
    model = ctx.wrap(model)
    params = [p for p in model.parameters() if p.requires_grad]

    torch.manual_seed(_process_seed(tc.seed, ctx.rank))
    carry: State = None
    rows = shard_slice(tc.batch_size, ctx.rank, ctx.world_size)
    if saved:
        rng = saved.get("rng")
        if isinstance(rng, torch.Tensor) and rng.shape[0] == ctx.world_size:
            torch.set_rng_state(rng[ctx.rank].clone())
        else:
            say("resume: process count changed; dropout RNG reseeded from (seed, step, rank)")
            torch.manual_seed(_process_seed(tc.seed + start_step, ctx.rank))
        if spec.stateful and saved.get("carry") is not None:
            full = saved["carry"]
            full = tuple(full) if isinstance(full, list | tuple) else full
            carry = _map_state(full, lambda s: s[:, rows].clone())  # this process's rows
    best: float | None = saved.get("best") if saved else None
    evals_since_best = int(saved.get("evals_since_best", 0)) if saved else 0

    what_ran = accel.describe(choice.backend, cfg.model.kind)
    prec_text = "bf16 (CPU autocast, fp32 master weights)" if tc.precision == "bf16" else "fp32"
    say(f"backend: {choice.backend} - {what_ran}")
    say(f"  chosen because: {choice.reason}")
    say(
        f"precision: {prec_text}; threads: {threads} per process; processes: {ctx.world_size}"
        + (f" ({ctx.backend})" if ctx.active else "")
    )
    if ctx.is_main:
        # Written only now that the run is set up: a refused config, model or checkpoint
        # leaves no run dir behind and never replaces the config of a run being resumed.
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create the run directory --out {out_dir}: {exc}") from None
        write_text_atomic(out_dir / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
        write_text_atomic(
            out_dir / "run.json",
            json.dumps(
                {
                    "backend": choice.backend,
                    "backend_detail": what_ran,
                    "backend_reason": choice.reason,
                    "auto_timings_s": choice.timings,
                    "precision": tc.precision,
                    "threads_per_process": threads,
                    "processes": ctx.world_size,
                    "comm_backend": ctx.backend,
                    "torch": torch.__version__,
                },
                indent=2,
            )
            + "\n",
        )

    # checkpoint contents (collectives: every process calls this, rank 0 writes) --------
    def state_at(step: int) -> dict[str, Any]:
        rng = all_gather_rows(ctx, torch.get_rng_state().unsqueeze(0), dim=0)  # (P, S)
        full_carry = _map_state(carry, lambda s: all_gather_rows(ctx, s.detach(), dim=1))
        chars = getattr(getattr(task, "vocab", None), "chars", None)  # charlm: rebuild its vocab
        return {
            "config": cfg.to_dict(),
            "step": step,
            "backend": choice.backend,
            "precision": tc.precision,
            "world_size": ctx.world_size,
            "model": accel.master_state_dict(_unwrap(model), optimizer),
            "optimizer": optimizer.state_dict(),
            "rng": rng,
            "carry": list(full_carry) if isinstance(full_carry, tuple) else full_carry,
            "vocab": list(chars) if chars is not None else None,
            "best": best,
            "evals_since_best": evals_since_best,
        }

    def save(path: Path, step: int) -> None:
        state = state_at(step)
        if ctx.is_main:
            checkpoint.save_checkpoint(path, state)

    def evaluate() -> dict[str, float]:
        net = _unwrap(model)
        net.eval()
        totals: dict[str, float] = {}
        count = 0
        state: State = None
        with torch.no_grad(), accel.autocast(tc.precision):
            for batch in task.eval_batches(cfg.eval.batch_size or tc.batch_size):
                state = _reset_rows(state, batch.reset) if spec.stateful else None
                out, new_state = net(batch.x, state, batch.lengths)
                state = new_state if spec.stateful else None
                n = int(batch.x.shape[1])
                figures = {"loss": float(task.loss(out.float(), batch))}
                figures.update(task.metrics(out.float(), batch))
                for k, v in figures.items():
                    totals[k] = totals.get(k, 0.0) + float(v) * n
                count += n
        net.train()
        return {k: v / max(count, 1) for k, v in totals.items()}

    # 6. the steps ----------------------------------------------------------------------
    metrics = (
        MetricsLog(out_dir / "metrics.jsonl", start_step if saved else None)
        if (ctx.is_main)
        else None
    )
    display = ProgressDisplay(console, tc.steps, start_step, progress, silent=not ctx.is_main)
    every_ckpt = tc.checkpoint_every or cfg.eval.every
    step = start_step
    stopped = "completed"
    exit_code = EXIT_OK
    window_loss, window_steps, window_rows, window_tokens = 0.0, 0, 0, 0
    window_start = time.perf_counter()
    model.train()
    if start_step >= tc.steps:
        say(f"nothing to do: the checkpoint is at step {start_step} of train.steps={tc.steps}")
    elif saved and 0 < cfg.eval.patience <= evals_since_best:
        # the run had stopped early; the uninterrupted run would not train on either
        stopped = "early stopping"
        say(
            f"nothing to do: the run stopped early at step {start_step} ({evals_since_best} "
            f"evals without improvement, eval.patience={cfg.eval.patience})"
        )
    with StopRequest() as signals:
        while step < tc.steps and stopped == "completed":
            batch = task.train_batch(step, tc.batch_size, ctx.rank, ctx.world_size)
            lr = lr_at(step, oc, tc.steps)
            set_lr(optimizer, lr)
            if spec.stateful:
                carry = _reset_rows(carry, batch.reset)

            with accel.autocast(tc.precision):
                out, new_state = model(batch.x, carry, batch.lengths)
                loss = task.loss(out.float(), batch)

            # One small all-reduce shares loss, tokens and stop requests between processes.
            shared = combine(
                ctx,
                torch.tensor(
                    [loss.detach().float().item(), _tokens(batch), float(signals.requested)],
                    dtype=torch.float64,
                ),
            )
            loss_value = float(shared[0]) / ctx.world_size
            if not math.isfinite(loss_value):
                stopped, exit_code = "non-finite loss", EXIT_NONFINITE
                break

            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, oc.clip_norm or math.inf)
            if not torch.isfinite(grad_norm):
                stopped, exit_code = "non-finite gradient", EXIT_NONFINITE
                break
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if spec.stateful:
                carry = _map_state(new_state, torch.Tensor.detach)  # truncated BPTT
            step += 1

            window_loss += loss_value
            window_steps += 1
            window_rows += tc.batch_size
            window_tokens += int(shared[1])
            display.advance(step)
            if step % tc.log_every == 0 or step == tc.steps:
                elapsed = max(time.perf_counter() - window_start, 1e-9)
                sps, tps = window_rows / elapsed, window_tokens / elapsed
                mean_loss = window_loss / window_steps
                eta = (tc.steps - step) * elapsed / window_steps
                display.log(step, tc.steps, mean_loss, sps, tps, eta)
                if metrics:
                    metrics.write(
                        {"step": step, "split": "train", "loss": mean_loss, "lr": lr,
                         "grad_norm": float(grad_norm), "samples_per_s": sps,
                         "tokens_per_s": tps, "time": time.time()}
                    )  # fmt: skip
                window_loss, window_steps, window_rows, window_tokens = 0.0, 0, 0, 0
                window_start = time.perf_counter()

            stop_early = False
            paused = time.perf_counter()  # evaluation and saving are not training time
            if step % cfg.eval.every == 0 or step == tc.steps:
                figures = evaluate()
                improved = best is None or figures["loss"] < best - cfg.eval.min_delta
                improved = broadcast_flag(ctx, improved)  # every process saves, or none
                if improved:
                    best, evals_since_best = figures["loss"], 0
                else:
                    evals_since_best += 1
                if metrics:
                    metrics.write({"step": step, "split": "eval", **figures, "time": time.time()})
                shown = "  ".join(f"{k} {v:.4g}" for k, v in figures.items())
                display.print(f"eval @ {step}: {shown}" + ("  (best)" if improved else ""))
                if improved:
                    save(best_path, step)
                patience = cfg.eval.patience
                stop_early = broadcast_flag(ctx, patience > 0 and evals_since_best >= patience)
            if step % every_ckpt == 0 and step < tc.steps:
                save(last_path, step)
            window_start += time.perf_counter() - paused
            if stop_early:
                stopped = "early stopping"
                break
            if bool(shared[2] > 0):
                stopped = signals.name or "signal"
                exit_code = signals.exit_code if signals.requested else 143
                break
            if stop_at is not None and step >= stop_at:
                stopped = "stop-at"
                break
        display.close()

        # 7. the end ---------------------------------------------------------------------
        if exit_code == EXIT_NONFINITE and ctx.is_main:
            kept = (
                f"the last good checkpoint, {last_path}, is kept"
                if last_path.exists()
                else "no checkpoint had been saved yet"
            )
            Console(stderr=True, soft_wrap=True).print(
                f"error: {stopped} at step {step + 1} (lr {lr:.3g}); training stopped without "
                f"saving the diverged weights; {kept}. Try a lower optim.lr, a smaller "
                "optim.clip_norm, or precision fp32.",
                highlight=False,
            )
        else:
            save(last_path, step)
    if metrics:
        metrics.close()
        plot_losses(
            read_metrics(out_dir / "metrics.jsonl"),
            out_dir / "loss.png",
            f"{cfg.task.name}: {cfg.model.kind} H={cfg.model.hidden_size} "
            f"({choice.backend}, {tc.precision})",
        )
    if stopped in ("SIGINT", "SIGTERM", "signal"):
        say(f"stopped by {stopped} after step {step}; saved {last_path}; continue with --resume")
    elif stopped == "stop-at":
        say(f"stopped at step {step} as asked; saved {last_path}; continue with --resume")
    elif stopped == "early stopping":
        say(f"early stopping at step {step}: no eval improvement in {cfg.eval.patience} evals")
    say(f"run dir:     {out_dir}")
    say(f"metrics:     {out_dir / 'metrics.jsonl'}")
    say(f"plot:        {out_dir / 'loss.png'}")
    saved_files = [str(p) for p in (last_path, best_path) if p.exists()]
    say(f"checkpoints: {', '.join(saved_files) or '(none)'}")
    say(f"ran on: {choice.backend} / {tc.precision}")
    return RunResult(exit_code, out_dir, step, stopped, choice.backend, tc.precision, best)
