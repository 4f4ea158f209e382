"""``nervana-lstm params``: how many parameters each cell kind has for given sizes.

The lecture's claim, checked with numbers: an LSTM costs about 4x the
parameters of a plain RNN of the same sizes (a GRU 3x); a Depth-Gated LSTM adds
a depth gate to every layer above the first.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

#: kind -> the name shown in the table
LABELS = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU", "dglstm": "DG-LSTM"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--input-size", type=int, required=True, metavar="I", help="input features")
    parser.add_argument(
        "--hidden-size", type=int, required=True, metavar="H", help="hidden (and cell) features"
    )
    parser.add_argument("--layers", type=int, default=1, metavar="L", help="stacked layers (1)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def param_table(input_size: int, hidden_size: int, layers: int) -> list[dict[str, Any]]:
    """One row per kind: count, ratio to the plain RNN, formula (biases on, one direction)."""
    from nervana_lstm.cells import KINDS, count_params, param_formula

    base = count_params("rnn", input_size, hidden_size, layers)
    rows = []
    for kind in KINDS:
        n = count_params(kind, input_size, hidden_size, layers)
        rows.append(
            {
                "kind": kind,
                "name": LABELS[kind],
                "params": n,
                "ratio_to_rnn": round(n / base, 4),
                "formula": param_formula(kind, layers),
            }
        )
    return rows


def format_table(input_size: int, hidden_size: int, layers: int, rows: list[dict[str, Any]]) -> str:
    header = ["kind", "parameters", "ratio to RNN", "formula"]
    body = [
        [r["name"], f"{r['params']:,}", f"{r['ratio_to_rnn']:.2f}x", r["formula"]] for r in rows
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        padded = [
            c.rjust(w) if i in (1, 2) else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = (
        "|"
        + "|".join(
            ("-" * (w + 1) + ":") if i in (1, 2) else "-" * (w + 2) for i, w in enumerate(widths)
        )
        + "|"
    )
    title = (
        f"Parameters for I={input_size}, H={hidden_size}, L={layers} "
        "(biases b_ih and b_hh, one direction)"
    )
    note = (
        "DG-LSTM: layer 0 has no lower cell and so no depth gate; each layer above adds "
        "W_xd (H x H), w_cd, w_ld and b_d (H each)."
    )
    return "\n".join([title, "", line(header), rule, *(line(b) for b in body), "", note])


def run(args: argparse.Namespace) -> int:
    from nervana_lstm.errors import UsageError

    for flag, value in (
        ("--input-size", args.input_size),
        ("--hidden-size", args.hidden_size),
        ("--layers", args.layers),
    ):
        if value <= 0:
            raise UsageError(f"{flag} must be a positive integer, got {value}")
    rows = param_table(args.input_size, args.hidden_size, args.layers)
    if args.json:
        doc = {
            "input_size": args.input_size,
            "hidden_size": args.hidden_size,
            "layers": args.layers,
            "bias": True,
            "bidirectional": False,
            "kinds": rows,
        }
        print(json.dumps(doc, indent=2))
    else:
        print(format_table(args.input_size, args.hidden_size, args.layers, rows))
    return 0
