"""Training-loop overhead and the ``accel: auto`` choice, measured (a benchmark, not a test).

Loop overhead::

    ratio = tokens/s of ``nervana-lstm train``'s loop  /  tokens/s of the bare fused step

for the same model (the default charlm config on the ``onednn`` backend), measured in
the same process, alternating the two ``--rounds`` times; the median ratio is
reported. The loop's figure comes from its own metrics.jsonl windows (batch
generation, LR schedule, carried state, NaN check, clipping, logging included;
the final evaluation and checkpoint excluded); the bare step is forward, loss,
backward, clip and update on one fixed batch. Both are timed in windows of
``--warmup`` steps and summarised by the median window, which a shared machine's
bursts disturb least.

Auto choice: for each shape, ``auto`` decides with its own short measurement,
then every available backend's training step is timed at length (the same
warm-up, median of ``--repeats``; stock torch's backends in this process, the
IPEX ones in a child process as ``auto`` does, since importing IPEX changes
stock torch's kernels); the table shows whether ``auto`` picked the fastest.

    python perf/train_overhead.py                 # both parts, default charlm config
    python perf/train_overhead.py --part overhead --steps 100 --rounds 5
    python -m nervana_lstm.perf.train_overhead --part auto --json out.json   # installed

The default config is the shipped ``charlm.yaml`` (package ``nervana_lstm.configs``).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from nervana_lstm.perf.run_config import load_run_config, shipped_config

#: (label, config overrides) for the auto-choice table; chosen so that different
#: backends win on this kind of CPU (see the README's train section for results).
AUTO_SHAPES: list[tuple[str, list[str]]] = [
    ("lstm H=256 N=32 T=64 fp32 (charlm.yaml)", ["train.precision=fp32"]),
    ("lstm H=256 N=32 T=64 bf16 (charlm.yaml)", ["train.precision=bf16"]),
    ("lstm H=512 N=64 T=25 bf16", [
        "model.hidden_size=512", "train.batch_size=64", "task.options.seq_len=25",
        "train.precision=bf16"]),
    ("gru H=512 N=64 T=32 bf16", ["model.kind=gru", "model.hidden_size=512",
                                   "model.forget_bias=null", "train.batch_size=64",
                                   "task.options.seq_len=32", "train.precision=bf16"]),
    ("lstm H=32 N=4 T=16 bf16", ["model.hidden_size=32", "train.batch_size=4",
                                 "task.options.seq_len=16", "train.precision=bf16"]),
    ("dglstm H=64 N=16 T=32 fp32", ["model.kind=dglstm", "model.hidden_size=64",
                                     "train.batch_size=16", "task.options.seq_len=32",
                                     "train.precision=fp32"]),
    ("rnn H=512 N=16 T=16 fp32", ["model.kind=rnn", "model.hidden_size=512",
                                  "model.forget_bias=null", "train.batch_size=16",
                                  "task.options.seq_len=16", "train.precision=fp32"]),
]  # fmt: skip


def _tokens(batch: Any) -> int:
    return int(batch.x.shape[0] * batch.x.shape[1])


def bare_tokens_per_s(cfg: Any, steps: int, warmup: int) -> float:
    """Tokens/s of the bare fused training step on one fixed batch (median window)."""
    from nervana_lstm.data import make_task
    from nervana_lstm.train.autotune import build_for, train_step

    task = make_task(cfg.task.name, **cfg.task.options)
    batch = task.train_batch(0, cfg.train.batch_size)
    model, optimizer, _ = build_for("onednn", task, cfg)
    model.train()
    step = train_step(model, optimizer, task, batch, cfg.train.precision, cfg.optim.clip_norm)
    for _ in range(warmup):
        step()
    windows = []  # the loop reports windows of `warmup` steps; time the bare step alike
    for _ in range(steps // warmup):
        start = time.perf_counter()
        for _ in range(warmup):
            step()
        windows.append(warmup * _tokens(batch) / (time.perf_counter() - start))
    return statistics.median(windows)


def loop_tokens_per_s(cfg_path: Path, overrides: list[str], steps: int, warmup: int) -> float:
    """Tokens/s of the training loop: the median of its metrics windows after the first."""
    from rich.console import Console

    from nervana_lstm.config import load_config
    from nervana_lstm.train.loop import run_training
    from nervana_lstm.train.report import read_metrics

    cfg = load_config(
        cfg_path,
        [*overrides, f"train.steps={warmup + steps}", f"train.log_every={warmup}",
         "eval.every=1000000000", "train.checkpoint_every=1000000000"],
    )  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        run_training(cfg, out, console=Console(file=io.StringIO()), progress=False)
        records = [r for r in read_metrics(out / "metrics.jsonl") if r["split"] == "train"]
    timed = records[1:]  # the first window is the warm-up
    return statistics.median(r["tokens_per_s"] for r in timed)


def overhead(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    overrides = ["train.accel=onednn", *args.set]
    if args.threads:
        overrides.append(f"train.threads={args.threads}")
    cfg = load_run_config(args.config, overrides, resolve_precision=True)
    torch.set_num_threads(args.threads or torch.get_num_threads())
    steps = (args.steps // args.warmup) * args.warmup
    rounds = []
    for r in range(args.rounds):
        bare = bare_tokens_per_s(cfg, steps, args.warmup)
        loop = loop_tokens_per_s(args.config, overrides, steps, args.warmup)
        rounds.append({"bare_tokens_per_s": bare, "loop_tokens_per_s": loop, "ratio": loop / bare})
        print(
            f"round {r + 1}: bare {bare:,.0f} tokens/s  loop {loop:,.0f} tokens/s  "
            f"ratio {loop / bare:.3f}",
            flush=True,
        )
    ratio = statistics.median(x["ratio"] for x in rounds)
    print(f"loop overhead ratio (median of {args.rounds}): {ratio:.3f}  (target >= 0.95)")
    return {
        "config": str(args.config),
        "overrides": overrides,
        "steps_per_measurement": steps,
        "threads": torch.get_num_threads(),
        "rounds": rounds,
        "median_ratio": ratio,
    }


def auto_choice(args: argparse.Namespace) -> list[dict[str, Any]]:
    import torch

    from nervana_lstm.data import make_task
    from nervana_lstm.train.accel import available_backends, choose_backend, measurement_groups
    from nervana_lstm.train.autotune import measure_backends

    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    rows = []
    pool = available_backends()
    print(f"backends available: {', '.join(pool)}; threads {threads}")
    for label, shape in AUTO_SHAPES:
        cfg = load_run_config(args.config, [*shape, *args.set], resolve_precision=True)
        task = make_task(cfg.task.name, **cfg.task.options)
        batch = task.train_batch(0, cfg.train.batch_size)
        prec = cfg.train.precision

        def measure(names, limit, c=cfg, t=task, x=batch, p=prec, **kw):  # type: ignore[no-untyped-def]
            return measure_backends(names, t, c, x, limit, precision=p, threads=threads, **kw)

        choice = choose_backend("auto", measure, pool)
        times: dict[str, float] = {}
        for group in measurement_groups(pool):
            for name, value in measure(group, None, repeats=args.repeats).items():
                if isinstance(value, float):
                    times[name] = value
        fastest = min(times, key=times.__getitem__)
        row = {
            "shape": label,
            "ms_per_step": {b: round(t * 1e3, 2) for b, t in times.items()},
            "fastest": fastest,
            "auto": choice.backend,
            "auto_reason": choice.reason,
            "agree": fastest == choice.backend,
        }
        rows.append(row)
        shown = "  ".join(f"{b} {t * 1e3:.1f} ms" for b, t in times.items())
        print(f"{label:40s} {shown}  fastest={fastest}  auto={choice.backend}", flush=True)
    winners = {r["fastest"] for r in rows}
    agree = sum(r["agree"] for r in rows)
    print(f"auto picked the fastest on {agree}/{len(rows)} shapes; winners seen: {sorted(winners)}")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config", type=Path, default=None, help="run config (default: the shipped charlm.yaml)"
    )
    parser.add_argument("--part", choices=["all", "overhead", "auto"], default="all")
    parser.add_argument("--steps", type=int, default=60, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps (and log window)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=7, help="timed steps per auto-table cell")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--set", action="append", default=[], help="config override")
    parser.add_argument("--json", type=Path, default=None, help="write the figures here")
    args = parser.parse_args(argv)

    from nervana_lstm.platform_info import collect_info

    result: dict[str, Any] = {"machine": collect_info()}
    with contextlib.ExitStack() as stack:
        if args.config is None:
            args.config = shipped_config(stack)
        if args.part in ("all", "overhead"):
            result["overhead"] = overhead(args)
        if args.part in ("all", "auto"):
            result["auto"] = auto_choice(args)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
