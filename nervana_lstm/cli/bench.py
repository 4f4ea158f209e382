"""``nervana-lstm bench``: time fused oneDNN RNN primitives against unfused versions.

Two sibling sub-commands, and one trained model instead of a suite::

    nervana-lstm bench run [--suite quick|deepbench|FILE.yaml] [--kinds lstm,gru] [--impls ...]
                           [--modes infer,train] [--dtypes fp32,bf16] [--threads 1,2]
                           [--instances K] [--out DIR] [--no-probe] [--quiet-wait SECONDS]
    nervana-lstm bench compare A.json B.json [--threshold 5%]
    nervana-lstm bench --model RUN_DIR|CHECKPOINT [--out DIR] [--threads N] [--warmup N]
                       [--repeats N] [--time-cap S] [--seq-len T] [--batch N] [--ov-settings]
                       [--quiet-wait SECONDS]

``--model`` times the checkpoint on torch (fused, bf16 autocast, IPEX) against
its exported IR (f32, bf16, int8, stateful) on the same inputs
(:mod:`nervana_lstm.perf.model_bench`), in the same report format, with the
ratios against their targets.
``run`` writes ``results.json``, ``report.md``, ``speedup.png`` and
``gflops_vs_hidden.png`` into ``--out``; ``nervana-lstm bench [options]``
without a sub-command is the same as ``bench run [options]``. ``compare`` only
reads two results files, so it runs on any CPU; it exits 1 when B is slower
than A by more than the threshold on any row. A ``run`` option given to
``compare`` is refused (exit 2).

Every run records how busy the machine was around each group of rows and marks
rows measured under contention (:mod:`nervana_lstm.perf.quiet`);
``--quiet-wait SECONDS`` first waits for a quiet machine, or exits 2 saying what
was running.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import Any

from nervana_lstm.choices import BENCH_DTYPES, BENCH_IMPLS, KINDS, MODES
from nervana_lstm.errors import UsageError, short_repr

EPILOG = """\
examples:
  nervana-lstm bench                                     # quick suite -> bench-out/
  nervana-lstm bench --suite deepbench --kinds lstm --modes infer
  nervana-lstm bench --impls onednn,unfused,compiled --dtypes fp32 --threads 1,2
  nervana-lstm bench --instances 2                       # pinned processes, summed throughput
  nervana-lstm bench compare A/results.json B/results.json --threshold 5%
  nervana-lstm bench --model runs/charlm --out bench-charlm      # torch against the IR
  nervana-lstm bench --model runs/charlm --warmup 0 --repeats 1  # a quick check that it runs
  nervana-lstm bench --quiet-wait 120     # wait up to 2 min for other work to stop first
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
    "model": None,
    "warmup": None,
    "repeats": None,
    "time_cap": None,
    "seq_len": None,
    "batch": None,
    "ov_settings": False,
    "quiet_wait": None,
}

#: options that choose what a suite measures: a --model run measures one model instead
SUITE_ONLY = ("suite", "kinds", "impls", "modes", "dtypes", "instances", "no_probe")
#: options of a --model run only (a suite sets its warm-up and repeats in its YAML)
MODEL_ONLY = ("warmup", "repeats", "time_cap", "seq_len", "batch", "ov_settings")


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
    parser.add_argument(
        "--quiet-wait",
        default=argparse.SUPPRESS,
        metavar="SECONDS",
        help="before measuring, wait up to SECONDS for other work on this process's CPUs to "
        "stop; exit 2 naming what still runs (default: do not wait; rows measured under "
        "contention are marked either way)",
    )
    model = parser.add_argument_group(
        "one trained model (--model): torch fused/IPEX against its exported OpenVINO IR"
    )
    model.add_argument(
        "--model",
        default=argparse.SUPPRESS,
        metavar="RUN_DIR|CHECKPOINT",
        help="time this trained model end to end instead of a suite: throughput (batch 64), "
        "batch-1 latency and per-step streaming, torch against its IR (f32, bf16, int8)",
    )
    for option, what in (
        ("--warmup", "untimed calls per row before timing (default 3)"),
        (
            "--repeats",
            "timed calls per row (default 30); e.g. --warmup 0 --repeats 1 for a quick run",
        ),
        ("--time-cap", "seconds per row, warm-up included, before repeats stop early (default 4)"),
        (
            "--seq-len",
            "sequence length (default: the task's: T, T+20, seq_len, median file length)",
        ),
        ("--batch", "batch of the throughput rows (default 64)"),
    ):
        model.add_argument(option, default=argparse.SUPPRESS, help=what)
    model.add_argument(
        "--ov-settings",
        action="store_true",
        default=argparse.SUPPRESS,
        help="also time the f32 IR under each OpenVINO compile setting "
        "(hints, threads, pinning, streams, shared inputs, static shapes)",
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
        raise UsageError(
            f"{flag} got {short_repr(value)}; expected a comma list of: {', '.join(allowed)}"
        )
    return items


def _int_csv(value: str | None, flag: str) -> list[int] | None:
    if value is None:
        return None
    try:
        items = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        items = []
    if not items or any(v < 1 for v in items):
        raise UsageError(
            f"{flag} got {short_repr(value)}; expected a comma list of positive integers"
        )
    return items


def _threads_csv(value: str | None) -> list[int] | None:
    """``--threads``: positive counts, none above the CPUs this process may use."""
    from nervana_lstm.resources import check_threads

    counts = _int_csv(value, "--threads")
    for n in counts or []:
        check_threads(n, "--threads")
    return counts


def _check_suite_threads(suite: Any, chosen: list[int] | None) -> None:
    """The suite's own thread counts, when --threads does not replace them, must fit too."""
    from nervana_lstm.resources import usable_cpus

    if chosen is not None:
        return
    cpus = usable_cpus()
    over = [n for n in suite.defaults.threads if n > cpus]
    if over:
        raise UsageError(
            f"suite {short_repr(suite.name)} asks for threads {suite.defaults.threads}, but "
            f"this process may use {cpus} CPU(s); pass --threads with counts in 1..{cpus}"
        )


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


def _flags(names: list[str]) -> str:
    return ", ".join("--" + n.replace("_", "-") for n in names)


def _positive(value: str | None, flag: str, default: float, kind: type = int) -> float:
    if value is None:
        return default
    try:
        number = kind(value)
    except ValueError:
        number = -1
    if not math.isfinite(number) or number < (0 if flag == "--warmup" else 1e-9):
        positive = "a finite positive float" if kind is float else f"a positive {kind.__name__}"
        expected = "an integer >= 0" if flag == "--warmup" else positive
        raise UsageError(f"{flag} got {short_repr(value)}; expected {expected}")
    return number


def _quiet_wait(value: str | None) -> dict[str, Any] | None:
    """``--quiet-wait SECONDS``: wait for a quiet machine (nothing when not given)."""
    if value is None:
        return None
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not math.isfinite(seconds) or not 0 <= seconds <= 86400:
        raise UsageError(
            f"--quiet-wait got {short_repr(value)}; expected seconds to wait, 0..86400"
        )
    from nervana_lstm.perf.quiet import CONTENDED_AT, wait_for_quiet

    print(
        f"bench: waiting up to {seconds:g} s for other work to drop under {CONTENDED_AT:g} CPU",
        file=sys.stderr,
    )
    found = wait_for_quiet(seconds)
    print(f"bench: quiet after {found['waited_s']:g} s", file=sys.stderr)
    return found


def _run_model(args: argparse.Namespace, given: list[str]) -> int:
    """``bench --model``: one trained model, torch against its IR; see perf.model_bench."""
    clash = [name for name in SUITE_ONLY if name in given]
    if clash:
        raise UsageError(
            f"{_flags(clash)} cannot be combined with --model: a --model run times one trained "
            "model on its own shapes; expected: nervana-lstm bench --model RUN_DIR [--out DIR] "
            "[--threads N] [--warmup N] [--repeats N] [--time-cap S] [--seq-len T] [--batch N] "
            "[--ov-settings]"
        )
    args = run_options(args)
    threads = _threads_csv(args.threads)
    if threads is not None and len(threads) != 1:
        raise UsageError(
            f"--threads got {short_repr(args.threads)}; --model takes one thread count"
        )
    from nervana_lstm.perf.model_bench import ModelBenchSettings, default_threads

    settings = ModelBenchSettings(
        threads=threads[0] if threads else default_threads(),
        warmup=int(_positive(args.warmup, "--warmup", 3)),
        repeats=int(_positive(args.repeats, "--repeats", 30)),
        time_cap_s=float(_positive(args.time_cap, "--time-cap", 4.0, float)),
        batch=int(_positive(args.batch, "--batch", 64)),
        seq_len=None if args.seq_len is None else int(_positive(args.seq_len, "--seq-len", 0)),
        ov_settings=bool(args.ov_settings),
    )
    out = Path(args.out)
    _check_out_dir(out)
    from nervana_lstm.export.exporter import resolve_checkpoint
    from nervana_lstm.perf.model_bench import run_model_bench
    from nervana_lstm.perf.report import write_report

    resolve_checkpoint(args.model)  # a missing path is refused before anything is imported
    command = " ".join(["nervana-lstm", *sys.argv[1:]]) if sys.argv else None
    waited = _quiet_wait(args.quiet_wait)
    results = run_model_bench(args.model, settings, command=command, quiet_wait=waited)
    paths = write_report(results, out)
    _print_counts(results, results["suite"]["name"])
    for ratio in results["model"]["ratios"]:
        print(f"  {ratio['name']} ({ratio['dtype']}): {ratio['detail']}", file=sys.stderr)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0


def _print_counts(results: dict[str, Any], name: str) -> None:
    """One stderr line: how many rows ended in each status, and the run's wall time."""
    counts: dict[str, int] = {}
    for row in results["rows"]:
        counts[row["status"]] = counts.get(row["status"], 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    load = results.get("load") or {}
    if load.get("contended_rows"):
        summary += f"; {len(load['contended_rows'])} measured under contention"
    if load.get("noisy"):
        summary += "; noisy (GEMM peaks before and after disagree)"
    print(f"bench {name}: {summary} in {results['wall_s']} s", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """``bench run`` (also ``bench`` with no sub-command): measure a suite, write the report."""
    given = [name for name in RUN_DEFAULTS if name in vars(args)]
    if "model" in given:
        return _run_model(args, given)
    lone = [name for name in MODEL_ONLY if name in given]
    if lone:
        raise UsageError(
            f"{_flags(lone)} {'applies' if len(lone) == 1 else 'apply'} to bench --model only; "
            "a suite sets its warm-up and repeats in its YAML (defaults: warmup, repeats, "
            "time_cap_s)"
        )
    args = run_options(args)
    from nervana_lstm.perf.harness import Selection, run_suite
    from nervana_lstm.perf.report import write_report
    from nervana_lstm.perf.suites import load_suite

    try:
        instances = int(args.instances)
    except ValueError:
        raise UsageError(
            f"--instances got {short_repr(args.instances)}; expected an integer >= 1"
        ) from None
    if instances < 1:
        raise UsageError(f"--instances got {short_repr(args.instances)}; expected an integer >= 1")
    sel = Selection(
        kinds=_csv(args.kinds, KINDS, "--kinds"),
        impls=_csv(args.impls, BENCH_IMPLS, "--impls"),
        modes=_csv(args.modes, MODES, "--modes"),
        dtypes=_csv(args.dtypes, BENCH_DTYPES, "--dtypes"),
        threads=_threads_csv(args.threads),
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
    if instances == 1:  # K instances run on their own cores' worth of threads instead
        _check_suite_threads(suite, sel.threads)
    out = Path(args.out)
    _check_out_dir(out)
    command = " ".join(["nervana-lstm", *sys.argv[1:]]) if sys.argv else None
    waited = _quiet_wait(args.quiet_wait)
    results = run_suite(suite, sel, command=command, quiet_wait=waited)
    paths = write_report(results, out)
    _print_counts(results, suite.name)
    for name, path in paths.items():
        print(f"{name}: {path}")
    return 0
