"""``nervana-lstm inspect``: every gate of a trained model over one sequence, plotted.

    nervana-lstm inspect RUN_DIR|CHECKPOINT [--input FILE | --example [N]]
                         [--out gates.png] [--json [FILE|-]] [--layer K] [--units N]

The model runs through the reference cells (the textbook per-gate code), which
record every gate at every step; the plot shows the input, the gates, the
candidate and the cell state of the units the prediction rests on. ``--json``
writes every traced value (default: beside the PNG, ``-``: stdout). The library
code is :mod:`nervana_lstm.lesson.inspect`, :mod:`nervana_lstm.lesson.trace` and
:mod:`nervana_lstm.lesson.gate_plot`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from nervana_lstm.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source", type=Path, help="a run directory (its checkpoints/best.pt) or a checkpoint file"
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--input",
        metavar="FILE",
        help="the sequence: a files-format .csv/.npz (feature models; its first sequence), "
        "a text file (charlm), a line of digits (copy)",
    )
    source.add_argument(
        "--example",
        type=int,
        nargs="?",
        const=0,
        default=0,
        metavar="N",
        help="the N-th held-out sequence of the model's task (the default, N=0)",
    )
    parser.add_argument(
        "--out", type=Path, help="the gate plot, a PNG (default: gates.png in the run directory)"
    )
    parser.add_argument(
        "--json",
        nargs="?",
        const="",
        metavar="FILE",
        help="also write every traced value as JSON (default FILE: the PNG's name with .json; "
        "'-': stdout)",
    )
    parser.add_argument(
        "--layer", type=int, metavar="K", help="the layer to plot (default: the last)"
    )
    parser.add_argument(
        "--units", type=int, default=4, metavar="N", help="units to plot (default 4)"
    )


def _run_dir(checkpoint: Path) -> Path:
    parent = checkpoint.parent
    return parent.parent if parent.name == "checkpoints" else parent


def run(args: argparse.Namespace) -> int:
    from nervana_lstm.export.exporter import resolve_checkpoint

    checkpoint = resolve_checkpoint(args.source)  # a missing path is refused before torch loads
    out = args.out or _run_dir(checkpoint) / "gates.png"
    if out.suffix.lower() != ".png":
        raise UsageError(f"--out expects a .png file name, got {out}")
    if args.json == "":
        json_out: Path | None = out.with_suffix(".json")
    elif args.json in (None, "-"):
        json_out = None
    else:
        json_out = Path(args.json)

    from nervana_lstm.atomic import write_text_atomic
    from nervana_lstm.lesson.gate_plot import plot_gates
    from nervana_lstm.lesson.inspect import inspect_model, inspection_document

    ins = inspect_model(
        checkpoint,
        input_path=args.input,
        example=args.example,
        layer=args.layer,
        units=args.units,
    )
    plot_gates(ins, out)
    doc = inspection_document(ins) if args.json is not None else None
    if doc is not None and json_out is not None:
        write_text_atomic(json_out, json.dumps(doc) + "\n")
    elif doc is not None:
        sys.stdout.write(json.dumps(doc) + "\n")
        return 0  # stdout holds the JSON alone
    lt = ins.trace.layer(ins.layer)
    print(f"traced: {ins.config.model.kind} layer {ins.layer}, {ins.about}, {ins.x.shape[0]} steps")
    print(f"units shown: {', '.join(map(str, ins.units))} ({ins.unit_rule})")
    print(f"gates: {', '.join(lt.gates) or 'none (a plain RNN)'}")
    print(
        "check: traced final state vs the fused model's, max |difference| "
        f"{ins.fused_state_diff:.2e}"
    )
    print(f"plot:  {out}")
    if json_out is not None:
        print(f"json:  {json_out}")
    return 0
