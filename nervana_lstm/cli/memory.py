"""``nervana-lstm memory``: which kinds remember across a lag, from real training runs.

    nervana-lstm memory --task adding [--lengths 50,100,200] [--kinds rnn,lstm,gru,dglstm]
                        [--budget hidden|params] [--hidden-size H] [--steps N]
                        [--set section.key=value ...] [--out DIR] [--resume]

Each kind is trained at each lag from the task's shipped config, one run
directory per cell under ``DIR/runs``; ``DIR`` then holds ``memory.json``,
``memory.md`` and ``memory.png``. The library code is
:mod:`nervana_lstm.lesson.memory` and :mod:`nervana_lstm.lesson.memory_report`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from nervana_lstm.errors import UsageError

_TASKS = ("adding", "copy", "charlm")
_KINDS = ("rnn", "lstm", "gru", "dglstm")


def _int_list(text: str, flag: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise UsageError(f"{flag} expects comma-separated integers, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--task", required=True, choices=_TASKS, help="the memory task")
    parser.add_argument(
        "--lengths",
        metavar="T,T,...",
        help="lags to train at (default 50,100,200; charlm has none)",
    )
    parser.add_argument(
        "--kinds", default=",".join(_KINDS), metavar="K,K,...", help="kinds (default: all four)"
    )
    parser.add_argument(
        "--budget",
        choices=("hidden", "params"),
        help="equal hidden size, or the LSTM's parameter count for every kind "
        "(default: hidden; params for charlm)",
    )
    parser.add_argument(
        "--hidden-size",
        type=int,
        metavar="H",
        help="hidden size (with --budget params, the LSTM's); default: the shipped config's",
    )
    parser.add_argument(
        "--steps",
        type=int,
        metavar="N",
        help="training steps per cell (default: adding 3000, else the shipped config's)",
    )
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config key in every cell (e.g. train.threads=1); repeatable",
    )
    parser.add_argument(
        "--out", type=Path, help="output directory (default: runs/memory-<task>-<time>)"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue the sweep in --out: reuse finished cells, resume the others",
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="plain log lines instead of progress bars"
    )


def run(args: argparse.Namespace) -> int:
    from nervana_lstm.lesson.memory import DEFAULT_LENGTHS, MemoryPlan

    if args.resume and args.out is None:
        raise UsageError("--resume needs --out, the sweep directory to continue")
    if args.lengths is not None:
        lengths = _int_list(args.lengths, "--lengths")
    else:
        lengths = () if args.task == "charlm" else DEFAULT_LENGTHS
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    budget = args.budget or ("params" if args.task == "charlm" else "hidden")
    plan = MemoryPlan(
        task=args.task,
        kinds=kinds,
        lengths=lengths,
        budget=budget,
        hidden_size=args.hidden_size,
        steps=args.steps,
        overrides=tuple(args.overrides),
    )
    out = args.out or Path("runs") / f"memory-{args.task}-{time.strftime('%Y%m%d-%H%M%S')}"

    from rich.console import Console

    from nervana_lstm.lesson.memory import SweepInterrupted, run_memory
    from nervana_lstm.lesson.memory_report import format_markdown, write_reports

    console = Console(soft_wrap=True)
    try:
        doc = run_memory(
            plan, out, resume=args.resume, console=console, progress=not args.no_progress
        )
    except SweepInterrupted as stop:
        print(f"nervana-lstm memory: {stop}", file=sys.stderr)
        return stop.exit_code
    paths = write_reports(doc, out)
    print()
    print(format_markdown(doc))
    for name, path in paths.items():
        print(f"{name + ':':6} {path}")
    return 0
