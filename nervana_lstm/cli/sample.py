"""``nervana-lstm sample``: generate text from a character-LM checkpoint or exported model.

    nervana-lstm sample runs/NAME/checkpoints/best.pt --prompt "def " --length 300 --temperature 0.8
    nervana-lstm sample models/charlm/1 --prompt "def " --temperature 0

The prompt is read by the model first; each next character is drawn from
``softmax(logits / temperature)`` (temperature 0 takes the most likely one).
A directory holding ``nervana_lstm.json`` (written by ``nervana-lstm export``)
runs on OpenVINO and numpy alone (:mod:`nervana_lstm.export.sampling`), without
importing torch; its random draws differ from a checkpoint's, its greedy text not.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from nervana_lstm.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "checkpoint",
        type=Path,
        help="a charlm checkpoint (last.pt or best.pt), or a directory written by "
        "'nervana-lstm export'",
    )
    parser.add_argument(
        "--prompt", default="The ", help="text to start from (default: %(default)r)"
    )
    parser.add_argument("--length", type=int, default=200, help="characters to generate")
    parser.add_argument(
        "--temperature", type=float, default=0.8, help="sampling temperature; 0 = greedy"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed for sampling")
    parser.add_argument(
        "--precision",
        choices=("f32", "bf16"),
        help="an exported model's inference precision on the CPU (default f32)",
    )


def run(args: argparse.Namespace) -> int:
    if not 1 <= args.length <= 1_000_000:
        raise UsageError(f"--length expects 1..1000000 characters, got {args.length}")
    if not 0.0 <= args.temperature < math.inf:  # also refuses nan
        raise UsageError(f"--temperature expects a finite number >= 0, got {args.temperature}")
    if not 0 <= args.seed < 2**63:
        raise UsageError(f"--seed expects an integer in 0..2**63-1, got {args.seed}")
    if not args.prompt:
        raise UsageError("--prompt must not be empty")
    if args.checkpoint.is_dir():
        return _run_exported(args)
    if args.precision is not None:
        raise UsageError(
            "--precision chooses an exported model's inference precision; "
            f"{args.checkpoint} is a checkpoint, which samples in fp32"
        )

    # threads and OpenMP's wait policy are chosen before torch starts (see thread_plan)
    from nervana_lstm.thread_plan import apply_plan, plan_threads

    plan = plan_threads(None, "threads")
    apply_plan(plan)

    import torch

    from nervana_lstm.train.checkpoint import load_trained
    from nervana_lstm.train.sampling import generate

    trained = load_trained(args.checkpoint, "fused")
    vocab = trained.vocab
    if vocab is None:
        raise UsageError(
            f"{args.checkpoint} holds a {trained.config.task.name!r} model; sampling needs a "
            "charlm checkpoint"
        )
    model = trained.model
    unknown = sorted({c for c in args.prompt if c not in set(vocab.chars)})
    if unknown:
        raise UsageError(
            f"--prompt has characters the model never saw in training: {''.join(unknown)!r}"
        )
    torch.set_num_threads(plan.threads)
    gen = torch.Generator().manual_seed(args.seed)
    text = generate(model, vocab, args.prompt, args.length, args.temperature, gen)
    sys.stdout.write(args.prompt + text + "\n")
    return 0


def _run_exported(args: argparse.Namespace) -> int:
    """An export directory: OpenVINO and numpy, no torch."""
    import numpy as np

    from nervana_lstm.export.metadata import read_meta
    from nervana_lstm.export.runtime import load_exported
    from nervana_lstm.export.sampling import check_charlm, generate
    from nervana_lstm.thread_plan import openvino_threads

    read_meta(args.checkpoint)  # a clear error for a directory that is not an export
    model = load_exported(args.checkpoint, args.precision or "f32", threads=openvino_threads())
    check_charlm(model)
    unknown = sorted({c for c in args.prompt if c not in set(model.meta.vocab or [])})
    if unknown:
        raise UsageError(
            f"--prompt has characters the model never saw in training: {''.join(unknown)!r}"
        )
    rng = np.random.default_rng(args.seed)
    text = generate(model, args.prompt, args.length, args.temperature, rng)
    sys.stdout.write(args.prompt + text + "\n")
    return 0
