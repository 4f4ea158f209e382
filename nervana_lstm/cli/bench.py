"""``nervana-lstm bench``: time fused oneDNN RNN primitives against unfused versions.

Two sibling sub-commands::

    nervana-lstm bench run [--suite quick|deepbench|FILE.yaml] [--kinds lstm,gru] [--impls ...]
                           [--modes infer,train] [--dtypes fp32,bf16] [--threads 1,2]
                           [--instances K] [--out DIR] [--no-probe]
    nervana-lstm bench compare A.json B.json [--threshold 5%]

``run`` writes ``results.json``, ``report.md``, ``speedup.png`` and
``gflops_vs_hidden.png`` into ``--out``; ``nervana-lstm bench [options]``
without a sub-command is the same as ``bench run [options]``. ``compare`` only
reads two results files, so it runs on any CPU; it exits 1 when B is slower
than A by more than the threshold on any row. A ``run`` option given to
``compare`` is refused (exit 2).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from nervana_lstm.choices import BENCH_DTYPES, BENCH_IMPLS, KINDS, MODES
from nervana_lstm.errors import UsageError

EPILOG = """\
examples:
  nervana-lstm bench                                     # quick suite -> bench-out/
  nervana-lstm bench --suite deepbench --kinds lstm --modes infer
  nervana-lstm bench --impls onednn,unfused,compiled --dtypes fp32 --threads 1,2
  nervana-lstm bench --instances 2                       # pinned processes, summed throughput
  nervana-lstm bench compare A/results.json B/results.json --threshold 5%
"""

#: the options of ``bench run`` and their defaults; also accepted before the sub-command
RUN_DEFAULTS: dict[str, object] = {
    "suite": "quick",
    "kinds": None,
    "impls": None,
    "modes": None,
    "dtypes": None,
    "threads": None,
    "instances": "1",
    "out": "bench-out",
    "no_probe": False,
}


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    """Add the measuring options, all defaulting to "not given".

    :func:`run_options` fills in :data:`RUN_DEFAULTS` afterwards, so an option
    given before ``run`` and one given after it are both kept, and an option
    given before ``compare`` can be told apart from one left out.
    """
    parser.add_argument(
        "--suite",
        default=argparse.SUPPRESS,
        help="quick (about a minute on 2 cores), deepbench, or a suite YAML file "
        "(see configs/bench/example.yaml); default: quick",
    )
    for option, choices in (
        ("--kinds", KINDS),
        ("--impls", BENCH_IMPLS),
        ("--modes", MODES),
        ("--dtypes", BENCH_DTYPES),
    ):
        parser.add_argument(
            option,
            default=argparse.SUPPRESS,
            help=f"comma list of {','.join(choices)} (default: the suite's)",
        )
    parser.add_argument(
        "--threads", default=argparse.SUPPRESS, help="comma list of thread counts, e.g. 1,2"
    )
    parser.add_argument(
        "--instances",
        default=argparse.SUPPRESS,
        help="run K pinned processes on disjoint cores and sum their throughput (default 1)",
    )
    parser.add_argument(
        "--out", default=argparse.SUPPRESS, help="output directory (default bench-out)"
    )
    parser.add_argument(
        "--no-probe",
        action="store_true",
        default=argparse.SUPPRESS,
        help="skip the ONEDNN_VERBOSE rerun that proves which oneDNN primitives ran",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EPILOG
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    _add_run_options(parser)  # `bench [options]`: the short spelling of `bench run [options]`
    sub = parser.add_subparsers(dest="bench_command", metavar="{run,compare}")
    run_parser = sub.add_parser(
        "run",
        help="measure a suite and write results.json, report.md and charts (the default)",
        description="Measure a suite; write results.json, report.md and two charts into --out.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_run_options(run_parser)
    cmp = sub.add_parser(
        "compare",
        help="compare two results.json files; exit 1 on a regression",
        description="Print what got slower or faster from A to B; exit 1 on a regression. "
        "Reads JSON only, so it runs on any CPU.",
    )
    cmp.add_argument("a", metavar="A.json")
    cmp.add_argument("b", metavar="B.json")
    cmp.add_argument(
        "--threshold", default="5%", help="slowdown that counts as a regression (default 5%%)"
    )
    # compare reads JSON only: the CPU check of the computing commands does not apply
    cmp.set_defaults(_run=_run_compare, _checks_cpu=False)


def run_options(args: argparse.Namespace) -> argparse.Namespace:
    """``args`` with every ``run`` option present: the given value, else its default."""
    return argparse.Namespace(**{**RUN_DEFAULTS, **vars(args)})


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
    given = [
        "--" + name.replace("_", "-")
        for name in RUN_DEFAULTS
        if name in vars(args)  # only set when typed: run options default to SUPPRESS
    ]
    if given:
        raise UsageError(
            f"{', '.join(given)} {'applies' if len(given) == 1 else 'apply'} to bench run, "
            "not to bench compare; expected: nervana-lstm bench compare A.json B.json "
            "[--threshold 5%]"
        )
    from nervana_lstm.perf.compare import compare, format_comparison, load_results, parse_threshold

    threshold = parse_threshold(args.threshold)
    a, b = load_results(args.a), load_results(args.b)
    result = compare(a, b, threshold)
    print(format_comparison(result, args.a, args.b))
    return 1 if result.regressed else 0


def run(args: argparse.Namespace) -> int:
    """``bench run`` (also ``bench`` with no sub-command): measure a suite, write the report."""
    args = run_options(args)
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
        impls=_csv(args.impls, BENCH_IMPLS, "--impls"),
        modes=_csv(args.modes, MODES, "--modes"),
        dtypes=_csv(args.dtypes, BENCH_DTYPES, "--dtypes"),
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
    command = " ".join(["nervana-lstm", *sys.argv[1:]]) if sys.argv else None
    results = run_suite(suite, sel, command=command)
    paths = write_report(results, out)
    counts: dict[str, int] = {}
    for row in results["rows"]:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    print(f"bench {suite.name}: {summary} in {results['wall_s']} s", file=sys.stderr)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0
