"""``nervana-lstm bench``: time fused oneDNN RNN primitives against unfused versions.

Two forms::

    nervana-lstm bench [--suite quick|deepbench|FILE.yaml] [--kinds lstm,gru] [--impls ...]
                       [--modes infer,train] [--dtypes fp32,bf16] [--threads 1,2]
                       [--instances K] [--out DIR] [--no-probe]
    nervana-lstm bench compare A.json B.json [--threshold 5%]

The first writes ``results.json``, ``report.md``, ``speedup.png`` and
``gflops_vs_hidden.png`` into ``--out``; the second exits 1 when B is slower
than A by more than the threshold on any row.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from nervana_lstm.errors import UsageError

KINDS = ("rnn", "lstm", "gru", "dglstm")
IMPLS = ("onednn", "native", "unfused", "premul", "compiled", "ipex", "openvino")
MODES = ("infer", "train")
DTYPES = ("fp32", "bf16", "int8")


EPILOG = """\
examples:
  nervana-lstm bench                                     # quick suite -> bench-out/
  nervana-lstm bench --suite deepbench --kinds lstm --modes infer
  nervana-lstm bench --impls onednn,unfused,compiled --dtypes fp32 --threads 1,2
  nervana-lstm bench --instances 2                       # pinned processes, summed throughput
  nervana-lstm bench compare A/results.json B/results.json --threshold 5%
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument(
        "--suite",
        default="quick",
        help="quick (about a minute on 2 cores), deepbench, or a suite YAML file "
        "(see configs/bench/example.yaml); default: quick",
    )
    parser.add_argument("--kinds", help=f"comma list of {','.join(KINDS)} (default: the suite's)")
    parser.add_argument("--impls", help=f"comma list of {','.join(IMPLS)} (default: the suite's)")
    parser.add_argument("--modes", help="comma list of infer,train (default: the suite's)")
    parser.add_argument("--dtypes", help="comma list of fp32,bf16,int8 (default: the suite's)")
    parser.add_argument("--threads", help="comma list of thread counts, e.g. 1,2")
    parser.add_argument(
        "--instances",
        default="1",
        help="run K pinned processes on disjoint cores and sum their throughput (default 1)",
    )
    parser.add_argument("--out", default="bench-out", help="output directory (default bench-out)")
    parser.add_argument(
        "--no-probe",
        action="store_true",
        help="skip the ONEDNN_VERBOSE rerun that proves which oneDNN primitives ran",
    )
    sub = parser.add_subparsers(dest="bench_command", metavar="compare")
    cmp = sub.add_parser(
        "compare",
        help="compare two results.json files; exit 1 on a regression",
        description="Print what got slower or faster from A to B; exit 1 on a regression.",
    )
    cmp.add_argument("a", metavar="A.json")
    cmp.add_argument("b", metavar="B.json")
    cmp.add_argument(
        "--threshold", default="5%", help="slowdown that counts as a regression (default 5%%)"
    )


def _csv(value: str | None, allowed: tuple[str, ...], flag: str) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    bad = [v for v in items if v not in allowed]
    if bad or not items:
        raise UsageError(f"{flag} got {value!r}; expected a comma list of: {', '.join(allowed)}")
    return items


def _int_csv(value: str | None, flag: str) -> list[int] | None:
    if value is None:
        return None
    try:
        items = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        items = []
    if not items or any(v < 1 for v in items):
        raise UsageError(f"{flag} got {value!r}; expected a comma list of positive integers")
    return items


def _check_out_dir(out: Path) -> None:
    """Refuse an --out that cannot be written now, not after minutes of measuring."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a directory")
    base = out.absolute()
    while not base.exists():  # the nearest existing folder is where the report is created
        base = base.parent
    if not base.is_dir():
        raise UsageError(f"--out {out}: {base} is not a directory; expected a folder path")
    if not os.access(base, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: {base} is not writable; expected a writable folder")


def _run_compare(args: argparse.Namespace) -> int:
    from nervana_lstm.perf.compare import compare, format_comparison, load_results, parse_threshold

    threshold = parse_threshold(args.threshold)
    a, b = load_results(args.a), load_results(args.b)
    result = compare(a, b, threshold)
    print(format_comparison(result, args.a, args.b))
    return 1 if result.regressed else 0


def run(args: argparse.Namespace) -> int:
    if args.bench_command == "compare":
        return _run_compare(args)

    from nervana_lstm.perf.harness import Selection, run_suite
    from nervana_lstm.perf.report import write_report
    from nervana_lstm.perf.suites import load_suite

    try:
        instances = int(args.instances)
    except ValueError:
        raise UsageError(f"--instances got {args.instances!r}; expected an integer >= 1") from None
    if instances < 1:
        raise UsageError(f"--instances got {args.instances!r}; expected an integer >= 1")
    sel = Selection(
        kinds=_csv(args.kinds, KINDS, "--kinds"),
        impls=_csv(args.impls, IMPLS, "--impls"),
        modes=_csv(args.modes, MODES, "--modes"),
        dtypes=_csv(args.dtypes, DTYPES, "--dtypes"),
        threads=_int_csv(args.threads, "--threads"),
        instances=instances,
        probe=not args.no_probe,
    )
    if instances > 1:
        from nervana_lstm.perf.instances import core_sets

        core_sets(instances)  # refuses K larger than the usable cores, before any work
        if sel.threads is not None:
            raise UsageError(
                "--threads and --instances exclude each other: each instance "
                "uses its own cores' worth of threads"
            )
    suite = load_suite(args.suite)
    out = Path(args.out)
    _check_out_dir(out)
    results = run_suite(suite, sel)
    paths = write_report(results, out)
    counts: dict[str, int] = {}
    for row in results["rows"]:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    print(f"bench {suite.name}: {summary} in {results['wall_s']} s", file=sys.stderr)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0
