"""``nervana-lstm train``: train a model from a YAML config.

    nervana-lstm train --config configs/charlm.yaml [--set section.key=value ...]
                       [--out runs/NAME] [--resume] [--stop-at STEP] [--allow-pickle]

The same command under ``torchrun --nproc-per-node N`` trains with
DistributedDataParallel; only rank 0 prints and writes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from nervana_lstm.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", required=True, help="YAML run config (see configs/)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config key (YAML value rules); repeatable",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="run directory (default: runs/<config name>-<time>)",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in --out from checkpoints/last.pt"
    )
    parser.add_argument(
        "--stop-at",
        type=int,
        default=None,
        metavar="STEP",
        help="save and stop after this step, as if interrupted (continue later with --resume)",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="plain log lines instead of a progress bar"
    )
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="let a files task's NPZ with a ragged object array be unpickled, which can run "
        "code from the file: for files you trust only; never saved with the run, so give "
        "it again with --resume",
    )


def run(args: argparse.Namespace) -> int:
    from nervana_lstm.config import load_config

    cfg = load_config(args.config, args.overrides)
    if args.resume and args.out is None:
        raise UsageError("--resume needs --out, the run directory to continue")
    if args.stop_at is not None and args.stop_at < 1:
        raise UsageError(f"--stop-at expects a step >= 1, got {args.stop_at}")
    out = args.out
    if out is None:
        stem = Path(args.config).stem
        out = Path("runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"

    # threads and OpenMP's wait policy are decided, and written to the environment, before
    # anything imports torch: OpenMP reads its environment once, when torch loads it
    from nervana_lstm.thread_plan import apply_plan, local_processes, plan_threads

    plan = plan_threads(cfg.train.threads, "train.threads", local_processes())
    apply_plan(plan)

    from nervana_lstm.train.loop import run_training

    result = run_training(
        cfg,
        out,
        resume=args.resume,
        stop_at=args.stop_at,
        progress=not args.no_progress,
        allow_pickle=args.allow_pickle,
        threads=plan,
    )
    return result.exit_code
