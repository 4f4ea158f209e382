"""Time from command start to first output: an exported IR against its checkpoint.

    python -m nervana_lstm.perf.startup --run runs/charlm --model models/charlm/1
    python -m nervana_lstm.perf.startup --run runs/sines --model models/sines/1 \\
        --input configs/data/sines.csv --repeats 9 --json startup.json

Each measurement starts a fresh ``python -m nervana_lstm ...`` process and
takes the wall time from just before the process is started to the first byte
it writes on stdout (the first output a user sees), and to its exit. Every
command is run ``--repeats`` times, interleaved (A B C A B C ...) so a change in
the machine's load touches all of them alike, and the median and the spread
(min..max) are reported. One untimed run of each comes first, so every timed run
finds the files in the page cache.

The commands compared, by the exported model's task:

- charlm: ``sample CHECKPOINT`` against ``sample MODEL_DIR`` (f32 and bf16),
  greedy, ``--length`` characters;
- other tasks: ``infer MODEL_DIR`` (``--input FILE``, or ``--example N`` for
  adding/copy) against the checkpoint path, a fresh process that rebuilds the
  model with ``load_trained`` and prints its output on the same sequences
  (there is no ``infer`` on checkpoints; this is the least a torch user runs).

Run it on an otherwise idle machine: figures taken while other jobs share the
cores measure the other jobs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["first_output_seconds", "main"]

#: the checkpoint path for infer: rebuild the model, run it on the same inputs, print
_TORCH_INFER = """
import sys
from nervana_lstm.export.metadata import read_meta
from nervana_lstm.export.predict import example_inputs, read_inputs
import torch
from nervana_lstm.train.checkpoint import load_trained
model_dir, checkpoint, source = sys.argv[1:4]
meta = read_meta(model_dir)
inputs = example_inputs(meta, int(source[1:])) if source.startswith("#") else read_inputs(source, meta)
model = load_trained(checkpoint, "fused").model
with torch.no_grad():
    for sid, s in zip(inputs.ids, inputs.seqs):
        x = torch.from_numpy(s).unsqueeze(1)
        out = model(x, lengths=torch.tensor([len(s)])) if meta.input("lengths") else model(x)
        print(sid, out[0].reshape(-1)[:4].tolist(), flush=True)
"""


def first_output_seconds(argv: list[str]) -> tuple[float, float]:
    """Seconds from start to the first stdout byte, and to exit, of one fresh process."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    first = proc.stdout.read(1)
    t1 = time.perf_counter()
    _, err = proc.communicate()
    t2 = time.perf_counter()
    if proc.returncode != 0 or not first:
        tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise SystemExit(f"startup: {' '.join(argv[:6])} ... failed: {tail[0]}")
    return t1 - t0, t2 - t0


def _commands(args: argparse.Namespace) -> dict[str, list[str]]:
    from nervana_lstm.export.exporter import resolve_checkpoint
    from nervana_lstm.export.metadata import read_meta

    py = [sys.executable]
    meta = read_meta(args.model)
    checkpoint = str(resolve_checkpoint(args.run))
    model = str(args.model)
    if meta.task == "charlm":
        common = ["--length", str(args.length), "--temperature", "0"]
        return {
            "sample checkpoint": [*py, "-m", "nervana_lstm", "sample", checkpoint, *common],
            "sample IR f32": [*py, "-m", "nervana_lstm", "sample", model, *common],
            "sample IR bf16": [
                *py, "-m", "nervana_lstm", "sample", model, *common, "--precision", "bf16",
            ],
        }  # fmt: skip
    if args.input is not None:
        given, source = ["--input", str(args.input)], str(args.input)
    else:
        given, source = ["--example", str(args.example)], f"#{args.example}"
    return {
        "checkpoint (load_trained + forward)": [*py, "-c", _TORCH_INFER, model, checkpoint, source],
        "infer IR f32": [*py, "-m", "nervana_lstm", "infer", model, *given],
        "infer IR bf16": [*py, "-m", "nervana_lstm", "infer", model, *given, "--precision", "bf16"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m nervana_lstm.perf.startup", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--run", type=Path, required=True, help="run directory or checkpoint")
    parser.add_argument("--model", type=Path, required=True, help="its export directory")
    parser.add_argument("--input", type=Path, help="a .csv/.npz file for a files model")
    parser.add_argument("--example", type=int, default=8, help="examples for adding/copy")
    parser.add_argument("--length", type=int, default=50, help="characters for charlm")
    parser.add_argument("--repeats", type=int, default=7, help="timed runs of each command")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats expects >= 1")
    commands = _commands(args)
    for argv_ in commands.values():  # warm the page cache; not timed
        first_output_seconds(argv_)
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
    for _ in range(args.repeats):
        for name, argv_ in commands.items():
            times[name].append(first_output_seconds(argv_))
    rows = []
    print(f"time to first output, fresh processes, {args.repeats} runs each, {os.cpu_count()} CPUs")
    print(f"{'command':40s} {'first output s (min..max)':>28s} {'exit s':>8s}")
    for name, samples in times.items():
        firsts, exits = [s[0] for s in samples], [s[1] for s in samples]
        row = {
            "command": name,
            "first_output_median_s": statistics.median(firsts),
            "first_output_min_s": min(firsts),
            "first_output_max_s": max(firsts),
            "exit_median_s": statistics.median(exits),
            "argv": commands[name],
        }
        rows.append(row)
        spread = f"{row['first_output_median_s']:.3f} ({min(firsts):.3f}..{max(firsts):.3f})"
        print(f"{name:40s} {spread:>28s} {row['exit_median_s']:8.3f}")
    if args.json is not None:
        from nervana_lstm.atomic import write_text_atomic

        write_text_atomic(
            args.json, json.dumps({"repeats": args.repeats, "rows": rows}, indent=2) + "\n"
        )
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
