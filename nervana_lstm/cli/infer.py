"""``nervana-lstm infer``: predictions of an exported model, with OpenVINO and numpy alone.

    nervana-lstm infer models/sines/1 --input new.csv --out predictions.csv
    nervana-lstm infer models/adding/1 --example 5 --out predictions.json
    nervana-lstm infer models/sines-stream/1 --input - --stream --chunk 4 < rows.csv

``--input`` reads the ``files`` task's CSV or NPZ formats (the target column or
``y`` may be absent); ``--example N`` draws N inputs of an adding or copy model's
task with numpy (see :mod:`nervana_lstm.export.examples`). Predictions go to
stdout, or atomically to ``--out`` (CSV, or JSON for a ``.json`` name). With
``--stream`` a stateful model reads ``--chunk`` steps at a time (``--input -``
reads a long-format CSV from stdin as it arrives) and prints the output after
each chunk. The library code is :mod:`nervana_lstm.export.predict`; torch is
never imported.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nervana_lstm.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="a directory written by 'nervana-lstm export'")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--input", metavar="FILE", help="a .csv or .npz file of sequences ('-': CSV on stdin)"
    )
    source.add_argument(
        "--example", type=int, metavar="N", help="N drawn examples of an adding or copy model"
    )
    parser.add_argument(
        "--precision",
        choices=("f32", "bf16"),
        default="f32",
        help="inference precision on the CPU (default f32, the precision checked at export)",
    )
    parser.add_argument("--out", type=Path, help="write predictions here (.csv, or .json)")
    parser.add_argument(
        "--format", choices=("csv", "json"), help="output format (default: by --out, else csv)"
    )
    parser.add_argument(
        "--stream", action="store_true", help="feed a stateful model --chunk steps at a time"
    )
    parser.add_argument(
        "--chunk", type=int, default=1, metavar="K", help="steps per call with --stream (default 1)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of --example's draws")
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="let an NPZ with a ragged object array be unpickled (trusted files only)",
    )


def run(args: argparse.Namespace) -> int:
    from nervana_lstm.export import predict as p
    from nervana_lstm.export.metadata import read_meta
    from nervana_lstm.paths import regular_file

    if args.chunk < 1:
        raise UsageError(f"--chunk expects a number of steps >= 1, got {args.chunk}")
    if not 0 <= args.seed < 2**63:
        raise UsageError(f"--seed expects an integer in 0..2**63-1, got {args.seed}")
    if args.input == "-" and not args.stream:
        raise UsageError("--input - (stdin) is read with --stream; give a file otherwise")
    if args.input not in (None, "-"):  # read whole: a regular file, not a directory or FIFO
        regular_file(args.input, "--input", "a .csv or .npz file")
    meta = read_meta(args.model)  # a clear error for a non-export directory, before compiling
    if args.stream and not meta.stateful:
        raise UsageError(
            "--stream needs a stateful model (one exported with 'nervana-lstm export --stateful'); "
            f"{args.model} takes whole sequences"
        )
    fmt = p.output_format(args.out, args.format)
    if args.input == "-":
        inputs = None
    elif args.input is not None:
        inputs = p.read_inputs(args.input, meta, allow_pickle=args.allow_pickle)
    else:
        inputs = p.example_inputs(meta, args.example, args.seed)

    from nervana_lstm.export.runtime import load_exported
    from nervana_lstm.thread_plan import openvino_threads

    model = load_exported(args.model, args.precision, threads=openvino_threads())
    if not args.stream:
        assert inputs is not None
        records = p.predict(model, inputs)
        text = (
            p.json_text(meta, records, str(args.model))
            if fmt == "json"
            else p.csv_rows(meta, records)
        )
        if args.out is None:
            sys.stdout.write(text)
        else:
            p.write_records(text, args.out)
        return 0

    ids: list[str] = []
    if inputs is None:
        chunks = p.stdin_chunks(sys.stdin, meta, args.chunk, ids)
    else:
        p.check_stream_inputs(meta, inputs)
        ids = inputs.ids
        chunks = p.file_chunks(inputs, args.chunk)
    kept: list[dict] = []
    first = True
    for records in p.stream_records(model, chunks, ids):
        if args.out is not None:
            kept += records
            continue
        if fmt == "json":
            for rec in records:
                sys.stdout.write(p.json_line(rec))
        else:
            sys.stdout.write(p.csv_rows(meta, records, header=first))
        first = False
        sys.stdout.flush()
    if args.out is not None:
        text = p.json_text(meta, kept, str(args.model)) if fmt == "json" else p.csv_rows(meta, kept)
        p.write_records(text, args.out)
    return 0
