"""Where one training step spends its time, per backend (a benchmark, not a test).

For each backend and precision, in a fresh process (importing IPEX changes stock
torch's kernels for the whole process), the training loop's step is rebuilt as
``train`` runs it: the model from :func:`~nervana_lstm.train.autotune.build_for`,
the recurrent state carried from batch to batch, autocast for bf16, loss,
backward, clipping, the optimizer update. After ``--warmup`` steps it reports:

    step_ms        median wall time of ``--steps`` steps, no profiler attached
    recurrence     share of the profiled CPU time spent in the recurrent kernels
                   (self time of ops whose name has rnn or lstm: oneDNN's
                   mkldnn_rnn_layer and its backward, IPEX's ipex_lstm, ATen's
                   per-step cells), the rest being embedding, head, loss,
                   autograd bookkeeping, clipping and the update
    top ops        the ops with the most self time
    onednn         with ``--verbose``: one step rerun under ``ONEDNN_VERBOSE=all``,
                   oneDNN primitive time by primitive kind and implementation

    python perf/train_profile.py                                   # default charlm config
    python perf/train_profile.py --backends onednn,ipex --precisions bf16 --verbose
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from nervana_lstm.perf.run_config import load_run_config, shipped_config

__all__ = ["is_recurrence", "main", "profile_step"]

_RECURRENT_WORDS = ("rnn", "lstm", "gru")


def is_recurrence(op: str) -> bool:
    """Whether profiler op ``op`` computes the recurrence (oneDNN, IPEX or ATen cells)."""
    name = op.lower()
    return any(word in name for word in _RECURRENT_WORDS)


def _step_fn(backend: str, precision: str, cfg: Any) -> Any:
    """The training loop's step for ``backend``: state carried, clipped, updated."""
    import math

    import torch

    from nervana_lstm.data import make_task
    from nervana_lstm.precision import autocast
    from nervana_lstm.train.autotune import build_for
    from nervana_lstm.train.progress import map_carry

    task = make_task(cfg.task.name, **cfg.task.options)
    model, optimizer, _ = build_for(backend, task, cfg, precision=precision)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    carry: list[Any] = [None]
    count = [0]

    def step() -> None:
        batch = task.train_batch(count[0], cfg.train.batch_size)
        count[0] += 1
        with autocast(precision):
            out, state = model(batch.x, carry[0], batch.lengths)
            loss = task.loss(out.float(), batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.optim.clip_norm or math.inf, foreach=True)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if task.spec.stateful:
            carry[0] = map_carry(state, torch.Tensor.detach)

    return step


def profile_step(backend: str, precision: str, cfg: Any, warmup: int, steps: int) -> dict[str, Any]:
    """Wall time and the profiler's breakdown of ``steps`` training steps (this process)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    step = _step_fn(backend, precision, cfg)
    for _ in range(warmup):
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    ops = [(e.key, e.self_cpu_time_total) for e in prof.key_averages()]
    total = sum(t for _, t in ops) or 1.0
    recurrent = sum(t for name, t in ops if is_recurrence(name))
    top = sorted(ops, key=lambda x: -x[1])[:12]
    return {
        "backend": backend,
        "precision": precision,
        "threads": torch.get_num_threads(),
        "step_ms": statistics.median(times) * 1e3,
        "recurrence_share": recurrent / total,
        "profiled_ms_per_step": total / steps / 1e3,
        "top_ops": [
            {"op": name, "ms_per_step": t / steps / 1e3, "share": t / total} for name, t in top
        ],
    }


def _verbose_step(backend: str, precision: str, cfg: Any, warmup: int) -> None:
    """Warm up quietly, then one step between markers (run with ONEDNN_VERBOSE=all)."""
    step = _step_fn(backend, precision, cfg)
    for _ in range(warmup):
        step()
    sys.stdout.flush()
    print("nervana_profile_begin", flush=True)
    step()
    sys.stdout.flush()
    print("nervana_profile_end", flush=True)


def _onednn_summary(text: str) -> dict[str, float]:
    from nervana_lstm.perf.verbose import parse_verbose

    inside = text.split("nervana_profile_begin", 1)[-1].split("nervana_profile_end", 1)[0]
    by_kind: dict[str, float] = defaultdict(float)
    for ex in parse_verbose(inside).execs:
        by_kind[f"{ex.primitive} {ex.impl} {ex.prop_kind}"] += ex.time_ms or 0.0
    return dict(sorted(by_kind.items(), key=lambda kv: -kv[1]))


def _child(args: argparse.Namespace, backend: str, precision: str, verbose: bool) -> Any:
    with tempfile.TemporaryDirectory(prefix="nervana-lstm-profile-") as tmp:
        out = Path(tmp) / "profile.json"
        cmd = [
            sys.executable, "-m", "nervana_lstm.perf.train_profile", "--config", str(args.config),
            "--worker", f"{backend}:{precision}", "--warmup", str(args.warmup),
            "--steps", str(args.steps), "--json", str(out), *[f"--set={o}" for o in args.set],
        ]  # fmt: skip
        env = dict(os.environ)
        if verbose:
            cmd.append("--verbose-worker")
            env["ONEDNN_VERBOSE"] = "all"
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1]}
        if verbose:
            return _onednn_summary(proc.stdout)
        return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config", type=Path, default=None, help="default: the shipped charlm.yaml"
    )
    parser.add_argument("--backends", default="onednn,ipex,ipex-stock-lstm,ipex-o0")
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--set", action="append", default=[], help="config override")
    parser.add_argument("--verbose", action="store_true", help="also oneDNN primitive times")
    parser.add_argument("--json", type=Path, default=None, help="write all figures here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--verbose-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        if args.config is None:
            args.config = shipped_config(stack)
        cfg = load_run_config(args.config, args.set)
        if args.worker:
            backend, precision = args.worker.split(":")
            if args.verbose_worker:
                _verbose_step(backend, precision, cfg, args.warmup)
                return 0
            result = profile_step(backend, precision, cfg, args.warmup, args.steps)
            args.json.write_text(json.dumps(result))
            return 0
        from nervana_lstm.platform_info import collect_info

        machine = collect_info()
        print(f"CPU: {machine['cpu']['model']}; torch {machine['torch']['version']}")
        results = []
        for precision in args.precisions.split(","):
            for backend in args.backends.split(","):
                row = _child(args, backend, precision, verbose=False)
                if args.verbose and "error" not in row:
                    row["onednn_ms"] = _child(args, backend, precision, verbose=True)
                row.setdefault("backend", backend)
                row.setdefault("precision", precision)
                results.append(row)
                _print(row)
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "rows": results}, indent=2) + "\n")
    return 0


def _print(row: dict[str, Any]) -> None:
    head = f"{row['backend']:>16s} {row['precision']}"
    if "error" in row:
        print(f"{head}: failed: {row['error']}", flush=True)
        return
    print(
        f"{head}: step {row['step_ms']:.1f} ms, recurrence {row['recurrence_share']:.0%} of "
        f"{row['profiled_ms_per_step']:.1f} profiled ms",
        flush=True,
    )
    for op in row["top_ops"][:8]:
        print(f"{'':20s}{op['ms_per_step']:7.2f} ms {op['share']:5.0%}  {op['op']}")
    for kind, ms in list(row.get("onednn_ms", {}).items())[:6]:
        print(f"{'':20s}{ms:7.2f} ms  oneDNN {kind}")


if __name__ == "__main__":
    sys.exit(main())
