"""``nervana-lstm export``: a trained run as an OpenVINO model directory.

    nervana-lstm export runs/charlm --out models/charlm/1
    nervana-lstm export runs/sines --out models/sines-int8/1 --precision int8
    nervana-lstm export runs/charlm --out models/charlm-stream/1 --stateful

The directory gets ``model.xml``/``model.bin`` (OpenVINO IR, inputs batch first)
and ``nervana_lstm.json`` (what the model is and how it was checked). A
``<name>/<version>/`` path is the layout OpenVINO Model Server serves. The
library function is :func:`nervana_lstm.export.exporter.export_model`.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source", type=Path, help="a run directory (its checkpoints/best.pt) or a checkpoint file"
    )
    parser.add_argument("--out", type=Path, required=True, help="directory to create")
    parser.add_argument(
        "--precision",
        choices=("fp32", "fp16", "int8"),
        default="fp32",
        help="weights: fp32 (default), fp16 (compressed) or int8 (NNCF, calibrated on the "
        "task's training data)",
    )
    parser.add_argument(
        "--stateful",
        action="store_true",
        help="carry the recurrent state inside the model between calls (streaming)",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=1,
        help="fixed batch of a --stateful model (default: %(default)s)",
    )
    parser.add_argument(
        "--max-metric-drop",
        type=float,
        default=0.01,
        metavar="FRACTION",
        help="int8: largest relative loss of the task metric against fp32 (default: 0.01)",
    )
    parser.add_argument("--force", action="store_true", help="replace an existing --out")
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="a files model's data file may be an NPZ with a ragged object array, which is "
        "unpickled to read it: for files you trust only",
    )


def run(args: argparse.Namespace) -> int:
    from nervana_lstm.export.exporter import export_model

    export_model(
        args.source,
        args.out,
        precision=args.precision,
        stateful=args.stateful,
        batch=args.batch,
        force=args.force,
        max_metric_drop=args.max_metric_drop,
        allow_pickle=args.allow_pickle,
    )
    return 0
