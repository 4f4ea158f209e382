"""Run a suite: expand it into specs, measure each implementation alike, collect result rows.

Order of work in :func:`run_suite`:

1. machine info (``collect_info``), the runner's own overhead on a no-op;
2. the GEMM peak for every (dtype, threads) pair the suite needs;
3. each spec: build, warm up, time (or record why it cannot run: ``n/a`` where the
   path cannot run here, ``error`` where it failed or computes something else), the
   machine's load read before, during and after each group (:mod:`~nervana_lstm.perf.quiet`);
4. the GEMM peak again; rows of contended groups and disagreeing peaks are marked;
5. oneDNN-backed rows rerun once under ``ONEDNN_VERBOSE`` in a subprocess;
6. speedups over ``unfused`` and ``native`` of the same shape, mode, dtype, threads.

Rows are :class:`~nervana_lstm.perf.results.Row` objects, written out as
``results.json``'s rows. :func:`run_suite` takes everything it uses as
arguments (the suite, the selection, the command line to record) and returns
the results document; it changes neither its arguments nor global state.
"""

from __future__ import annotations

import dataclasses
import gc
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nervana_lstm.choices import BENCH_IMPLS
from nervana_lstm.perf.flops import mode_flops
from nervana_lstm.perf.results import Row
from nervana_lstm.perf.spec import Spec, Unavailable, WrongResult, quiet_known_warnings
from nervana_lstm.perf.suites import Suite
from nervana_lstm.resources import MemoryLimit, available_memory, format_bytes

__all__ = [
    "EFFICIENCY",
    "Planned",
    "Selection",
    "estimate_call_s",
    "new_row",
    "one_line",
    "plan",
    "run_suite",
]

#: rough fraction of the GEMM peak each implementation reaches; only used to
#: skip, before running it, a call that would take longer than ``max_call_s``
EFFICIENCY: dict[str, float] = {
    "onednn": 0.5,
    "ipex": 0.5,
    "openvino": 0.5,
    "native": 0.3,
    "compiled": 0.2,
    "premul": 0.15,
    "unfused": 0.1,
}


@dataclass(frozen=True)
class Selection:
    """Command-line narrowing of a suite; None keeps the suite's choice."""

    kinds: list[str] | None = None
    impls: list[str] | None = None
    modes: list[str] | None = None
    dtypes: list[str] | None = None
    threads: list[int] | None = None
    instances: int = 1
    probe: bool = True


@dataclass
class Planned:
    """One row to come: the spec, its shape's label, and why it is skipped (if it is)."""

    spec: Spec
    label: str
    skip: str | None = None  # reason it is not measured
    note: str | None = None


def _narrow(shape_value: list[Any] | None, cli: list[Any] | None, default: list[Any]) -> list[Any]:
    base = shape_value if shape_value is not None else default
    if cli is None:
        return list(base)
    return [v for v in base if v in cli] if shape_value is not None else list(cli)


def plan(suite: Suite, sel: Selection) -> list[Planned]:
    """Every (shape, mode, dtype, threads, implementation) of the suite, measured or not.

    Implementations left out by the selection still get a row (``skip`` says
    why), so a report lists every implementation.
    """
    d = suite.defaults
    out: list[Planned] = []
    for entry in suite.shapes:
        if sel.kinds is not None and entry.kind not in sel.kinds:
            continue
        impls = _narrow(entry.impls, sel.impls, d.impls)
        modes = _narrow(entry.modes, sel.modes, d.modes)
        dtypes = _narrow(entry.dtypes, sel.dtypes, d.dtypes)
        threads = list(sel.threads) if sel.threads is not None else list(d.threads)
        for mode in modes:
            for dtype in dtypes:
                if dtype == "int8" and mode == "train":
                    continue  # int8 is an inference-only OpenVINO path
                for nthreads in threads:
                    for impl in BENCH_IMPLS:
                        if dtype == "int8" and impl != "openvino":
                            continue  # torch paths have no int8 RNN; OpenVINO + NNCF does
                        spec = Spec(
                            kind=entry.kind,
                            impl=impl,
                            mode=mode,
                            dtype=dtype,
                            threads=nthreads,
                            seq_len=entry.seq_len,
                            batch=entry.batch,
                            input_size=entry.input_size,
                            hidden_size=entry.hidden_size,
                            num_layers=entry.num_layers,
                        )
                        skip = None
                        if impl not in impls:
                            skip = _not_selected_reason(impl)
                        out.append(Planned(spec, entry.label, skip, entry.note))
    return out


def _not_selected_reason(impl: str) -> str:
    if impl == "compiled":
        return (
            "not selected: torch.compile spends about a minute compiling each new shape; "
            "add it with --impls ...,compiled"
        )
    return "not selected for this run (suite impls / --impls)"


def estimate_call_s(spec: Spec, count: str, peak_gflops: float | None) -> float | None:
    """A pessimistic guess of one call's seconds from the FLOPs and the measured peak."""
    if not peak_gflops:
        return None
    flops = mode_flops("full", spec.kind, spec.shape, spec.mode)
    return flops / (peak_gflops * 1e9 * EFFICIENCY.get(spec.impl, 0.1))


def new_row(planned: Planned, count: str) -> Row:
    """The row of a planned measurement: ``skipped`` with its reason, or ``pending``."""
    return Row.for_spec(
        planned.spec,
        id=planned.spec.key,
        label=planned.label,
        status="skipped" if planned.skip else "pending",
        count=count,
        reason=planned.skip,
        notes=[planned.note] if planned.note else [],
    )


def one_line(exc: BaseException, limit: int = 400) -> str:
    """An exception as one line for a report cell (native errors span many lines)."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _peak_key(dtype: str, threads: int) -> str:
    return f"{dtype}/t{threads}"


def _peak_dtype(dtype: str) -> str:
    """The GEMM peak a row is compared with: int8 rows have none of their own, bf16 is nearest."""
    return "bf16" if dtype == "int8" else dtype


def _measure_peaks(
    rows: list[Row],
    size: int,
    threads_per_instance: int | None,
    log: Callable[[str], None],
    only: set[str] | None = None,
) -> dict[str, dict[str, Any]]:
    from nervana_lstm.perf.peak import measure_gemm_peak

    wanted = sorted(
        {
            (_peak_dtype(r.dtype), threads_per_instance or r.threads)
            for r in rows
            if r.status in ("pending", "ok")
        }
    )
    if only is not None:
        wanted = [(d, t) for d, t in wanted if _peak_key(d, t) in only]
    peaks: dict[str, dict[str, Any]] = {}
    for dtype, threads in wanted:
        peak = measure_gemm_peak(dtype, threads, size=size)
        peaks[_peak_key(dtype, threads)] = peak.as_dict()
        log(f"GEMM peak {dtype} {threads} thread(s): {peak.gflops:.1f} GFLOP/s")
    return peaks


def _time_each(
    calls: dict[str, Callable[[], object]], members: dict[str, Row], threads: int, d: Any, log: Any
) -> dict[str, Any]:
    """Time each call alone, so that one failing call spares the others (its row says why)."""
    from nervana_lstm.perf.runner import pinned_threads, time_interleaved

    timings = {}
    for rid, fn in calls.items():
        try:
            with pinned_threads(threads):
                timings.update(
                    time_interleaved(
                        {rid: fn}, warmup=d.warmup, repeats=d.repeats, time_cap_s=d.time_cap_s
                    )
                )
        except Exception as exc:
            members[rid].fail("error", one_line(exc))
            log(f"error {rid}: {members[rid].reason}")
    return timings


def _measure_group(members: list[tuple[Row, Planned]], d: Any, log: Callable[[str], None]) -> None:
    """Build every implementation of one (shape, mode, dtype, threads), then time them interleaved."""
    from nervana_lstm.perf.impls import build
    from nervana_lstm.perf.runner import pinned_threads, time_interleaved

    variants = {}
    for row, p in members:
        try:
            variants[row.id] = build(p.spec)
        except Unavailable as exc:
            row.fail("n/a", " ".join(str(exc).split()))
        except WrongResult as exc:  # it runs here but computes something else: an error
            row.fail("error", " ".join(str(exc).split()))
            log(f"error {p.spec.key}: {row.reason}")
        except Exception as exc:  # a failure is a result too; keep measuring the rest
            row.fail("error", one_line(exc))
            log(f"error {p.spec.key}: {row.reason}")
    if variants:
        threads = members[0][1].spec.threads
        calls = {rid: v.call for rid, v in variants.items()}
        try:
            with pinned_threads(threads):
                timings = time_interleaved(
                    calls, warmup=d.warmup, repeats=d.repeats, time_cap_s=d.time_cap_s
                )
        except Exception:  # find the culprit: time each alone so one failure spares the rest
            timings = _time_each(calls, {r.id: r for r, _ in members}, threads, d, log)
        for row, _ in members:
            if row.id not in timings:
                continue
            timing = timings[row.id].as_dict()
            row.record(variants[row.id], timing)
            log(f"ok    {row.id}: {timing['median_ms']:.3f} ms (IQR {timing['iqr_pct']:.1f}%)")
    variants.clear()
    gc.collect()


def _too_big(spec: Spec, limit: MemoryLimit | None) -> str | None:
    """Why ``spec`` cannot be built in the memory this process may use, or None."""
    from nervana_lstm.train.budget import stack_call_bytes  # imports torch

    need = stack_call_bytes(
        spec.kind, spec.seq_len, spec.batch, spec.input_size, spec.hidden_size,
        spec.num_layers, training=spec.mode == "train",
    )  # fmt: skip
    if limit is None or need <= limit.bytes:
        return None
    return (
        f"needs about {format_bytes(need)} of memory; this process can use about "
        f"{format_bytes(limit.bytes)} ({limit.source})"
    )


def _schedule(
    rows: list[Row],
    planned: list[Planned],
    peaks: dict[str, dict[str, Any]],
    per_instance: int | None,
    d: Any,
    instances: int = 1,
) -> dict[tuple[Any, ...], list[tuple[Row, Planned]]]:
    """Skip the calls that would not fit in memory (see
    :func:`nervana_lstm.train.budget.stack_call_bytes`) or are estimated to run past
    ``max_call_s``; group the rest by what they share.

    A group is one (kind, shape, mode, dtype, threads): its implementations are
    built together and timed interleaved.
    """
    groups: dict[tuple[Any, ...], list[tuple[Row, Planned]]] = {}
    limit = available_memory(instances)
    for row, p in zip(rows, planned, strict=True):
        if row.status != "pending":
            continue
        too_big = _too_big(p.spec, limit)
        if too_big is not None:
            row.fail("skipped", too_big)
            continue
        peak = peaks.get(_peak_key(_peak_dtype(p.spec.dtype), per_instance or p.spec.threads))
        est = estimate_call_s(p.spec, d.count, peak["gflops"] if peak else None)
        if est is not None and est > d.max_call_s:
            row.fail(
                "skipped",
                f"estimated {est:.1f} s per call (FLOPs / {EFFICIENCY[p.spec.impl]:.0%} of the "
                f"measured peak) exceeds this suite's max_call_s={d.max_call_s:g}",
            )
            continue
        gkey = (p.spec.kind, tuple(p.spec.shape.items()), p.spec.mode, p.spec.dtype, p.spec.threads)
        groups.setdefault(gkey, []).append((row, p))
    return groups


def _stderr_log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_suite(
    suite: Suite,
    sel: Selection,
    log: Callable[[str], None] | None = None,
    command: str | None = None,
    quiet_wait: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Measure the suite; return the results document (machine, peaks, load, rows).

    ``log`` receives one line per step (default: stderr); ``command`` is the
    command line recorded in the document (``None`` when there is none);
    ``quiet_wait`` what ``--quiet-wait`` found before the run, recorded too.
    """
    from nervana_lstm.perf.quiet import LoadLog, load_section, log_load
    from nervana_lstm.perf.runner import timer_overhead

    log = log or _stderr_log
    d = suite.defaults
    started = time.time()
    per_instance = None
    if sel.instances > 1:
        from nervana_lstm.perf.instances import core_sets

        per_instance = len(core_sets(sel.instances)[0])
        # each instance gets its own cores' worth of threads
        sel = dataclasses.replace(sel, threads=[per_instance])
    planned = plan(suite, sel)
    if not planned:
        from nervana_lstm.errors import UsageError

        raise UsageError(
            f"nothing to measure: suite {suite.name!r} has no shape of kind(s) {sel.kinds}"
        )
    rows = [new_row(p, d.count) for p in planned]
    phases: dict[str, float] = {}
    mark = time.perf_counter()
    peaks = _measure_peaks(rows, d.peak_size, per_instance, log)
    overhead = timer_overhead()
    phases["peaks_s"] = round(time.perf_counter() - mark, 1)
    mark = time.perf_counter()

    groups = _schedule(rows, planned, peaks, per_instance, d, sel.instances)
    load = LoadLog()
    with quiet_known_warnings():
        if sel.instances == 1:
            for members in groups.values():
                with load.group([r for r, _ in members]):
                    _measure_group(members, d, log)
        else:
            from nervana_lstm.perf.instances import run_instances

            pending = [
                (r, p.spec) for r, p in zip(rows, planned, strict=True) if r.status == "pending"
            ]
            # the instances are other processes: no "during" reading, only before and after
            with load.group([r for r, _ in pending], during=False):
                run_instances(pending, sel.instances, d, log)
    load.finish()

    phases["measure_s"] = round(time.perf_counter() - mark, 1)
    mark = time.perf_counter()
    # the peak again after the measurements: on a shared machine the first one may have
    # caught a busy moment; the better of the two is the ceiling
    again = _measure_peaks(rows, d.peak_size, per_instance, log, only=set(peaks))
    for key, late in again.items():
        early = peaks[key]
        best = late if late["gflops"] > early["gflops"] else early
        peaks[key] = {**best, "start_gflops": early["gflops"], "end_gflops": late["gflops"]}
    phases["peaks_s"] += round(time.perf_counter() - mark, 1)
    load_doc = load_section(load, peaks, quiet_wait)
    log_load(load_doc, log)
    mark = time.perf_counter()
    _fill_rates(rows, peaks, per_instance)
    _fill_speedups(rows)
    if sel.probe:
        _probe_onednn(rows, planned, log)
    phases["probe_s"] = round(time.perf_counter() - mark, 1)

    return {
        "schema": 1,
        "suite": {"name": suite.name, "description": suite.description, "source": suite.source},
        "settings": {
            **d.model_dump(),
            "instances": sel.instances,
            "selection": {
                k: getattr(sel, k) for k in ("kinds", "impls", "modes", "dtypes", "threads")
            },
        },
        **run_record(overhead, peaks, started, phases, command, load_doc),
        "rows": [row.to_dict() for row in rows],
    }


def run_record(
    overhead: Any,
    peaks: dict[str, dict[str, Any]],
    started: float,
    phases: dict[str, Any],
    command: str | None,
    load: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What every ``results.json`` says about its run: the machine, its threads and
    allocator, the timer's overhead, the GEMM peaks, how busy the machine was
    (:func:`nervana_lstm.perf.quiet.load_section`), when, how long and how it was run."""
    from nervana_lstm.perf.runner import affinity
    from nervana_lstm.platform_info import allocator, collect_info

    return {
        "machine": collect_info(),
        "affinity": affinity(),
        "allocator": allocator(),
        "timer_overhead": overhead.as_dict(),
        "peaks": peaks,
        "load": load,
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "wall_s": round(time.time() - started, 1),
        "phases": phases,
        "command": command,
    }


def _fill_rates(
    rows: list[Row], peaks: dict[str, dict[str, Any]], per_instance: int | None
) -> None:
    for row in rows:
        if row.status != "ok" or row.timing is None:
            continue
        median_s = row.timing["median_ms"] / 1e3
        total = row.flops / median_s
        if row.instances:
            total = row.instances["sum_gflops"] * 1e9
        row.gflops = total / 1e9
        if row.dtype == "int8":
            row.notes.append("no int8 GEMM peak is measured: % of peak left empty")
            continue
        peak = peaks.get(_peak_key(row.dtype, per_instance or row.threads))
        if peak:
            k = row.instances["count"] if row.instances else 1
            row.peak_gflops = peak["gflops"] * k
            row.pct_peak = 100.0 * row.gflops / row.peak_gflops


def _group_key(row: Row, dtype: str) -> tuple[Any, ...]:
    return (row.kind, tuple(sorted(row.shape.items())), row.mode, dtype, row.threads)


def _fill_speedups(rows: list[Row]) -> None:
    ok = {(_group_key(r, r.dtype), r.impl): r for r in rows if r.status == "ok"}
    for row in rows:
        if row.status != "ok" or row.timing is None:
            continue
        for base in ("unfused", "native"):
            ref = ok.get((_group_key(row, row.dtype), base))
            base_dtype = row.dtype
            if ref is None and row.dtype != "fp32":
                ref = ok.get((_group_key(row, "fp32"), base))
                base_dtype = "fp32"
            if ref is not None and ref.timing is not None:
                speedup = ref.timing["median_ms"] / row.timing["median_ms"]
                setattr(row, f"speedup_vs_{base}", speedup)
                if base_dtype != row.dtype:
                    row.speedup_baseline_dtype = base_dtype


def _probe_onednn(rows: list[Row], planned: list[Planned], log: Callable[[str], None]) -> None:
    from nervana_lstm.perf.impls import ONEDNN_BACKED
    from nervana_lstm.perf.verbose import probe

    specs = []
    for row, p in zip(rows, planned, strict=True):
        # native is rerun for LSTMs only, where it shows mkldnn-disabled avoided the primitive
        wanted = row.impl in ONEDNN_BACKED and (row.impl != "native" or row.kind == "lstm")
        if row.status == "ok" and wanted:
            specs.append({"id": row.id, **p.spec.as_dict()})
    if not specs:
        return
    log(f"rerunning {len(specs)} oneDNN-backed measurement(s) under ONEDNN_VERBOSE")
    found = probe(specs)
    by_id = {r.id: r for r in rows}
    for sid, result in found.items():
        row = by_id[sid]
        row.proof["onednn"] = result.get("summary")
        if result.get("error"):
            row.proof["onednn_error"] = result["error"]
        if result.get("flag"):
            row.proof["onednn_flag"] = result["flag"]
            row.notes.append("FLAG: " + result["flag"])
