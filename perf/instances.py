"""Throughput mode: K instances of a measurement, each pinned to its own cores, run together.

This is how Xeon throughput figures are taken (``torch.backends.xeon.run_cpu``
launches one process per core group): K processes, disjoint core sets set
with ``os.sched_setaffinity``, the same work in each, their throughputs summed.
The processes start every measurement together (a barrier), so they really
share the machine while they are timed.
"""

from __future__ import annotations

import os
import queue
import statistics
from typing import Any

from nervana_lstm.errors import UsageError
from nervana_lstm.perf.results import Row
from nervana_lstm.perf.spec import Spec, Unavailable, quiet_known_warnings

__all__ = ["core_sets", "run_instances"]

_BARRIER_TIMEOUT_S = 900.0


def core_sets(k: int, cpus: list[int] | None = None) -> list[list[int]]:
    """Split the CPUs this process may use into ``k`` disjoint, equal, contiguous sets."""
    if cpus is None:
        cpus = sorted(os.sched_getaffinity(0))
    if k < 1:
        raise UsageError(f"--instances must be at least 1, got {k}")
    if k > len(cpus):
        raise UsageError(
            f"--instances {k} needs {k} cores but this process may use {len(cpus)} "
            f"({cpus}); expected 1..{len(cpus)}"
        )
    per = len(cpus) // k
    return [cpus[i * per : (i + 1) * per] for i in range(k)]


def _worker(
    index: int,
    cores: list[int],
    specs: list[dict[str, Any]],
    settings: dict[str, Any],
    barrier: Any,
    out: Any,
) -> None:
    os.sched_setaffinity(0, cores)
    import torch

    torch.set_num_threads(len(cores))
    with quiet_known_warnings():
        _measure_all(index, specs, settings, barrier, out)


def _measure_all(
    index: int, specs: list[dict[str, Any]], settings: dict[str, Any], barrier: Any, out: Any
) -> None:
    """Build and time each spec in step with the other instances (two barriers per spec)."""
    from nervana_lstm.perf.impls import build
    from nervana_lstm.perf.runner import time_callable

    for idx, raw in enumerate(specs):
        spec = Spec(**raw)
        variant, error = None, None
        try:
            variant = build(spec)
        except Unavailable as exc:
            error = f"n/a: {exc}"
        except Exception as exc:  # reported per spec, the others still run
            error = f"error: {type(exc).__name__}: {exc}"
        barrier.wait(_BARRIER_TIMEOUT_S)  # everyone built: start timing together
        result: dict[str, Any] = {"error": error}
        if variant is not None:
            try:
                timing = time_callable(
                    variant.call,
                    warmup=settings["warmup"],
                    repeats=settings["repeats"],
                    time_cap_s=settings["time_cap_s"],
                )
                result.update(timing=timing.as_dict(), backend=variant.backend)
            except Exception as exc:
                result["error"] = f"error: {type(exc).__name__}: {exc}"
        barrier.wait(_BARRIER_TIMEOUT_S)  # nobody runs alone while others are still timed
        out.put((index, idx, result))
        del variant


def run_instances(pending: list[tuple[Row, Spec]], k: int, settings: Any, log: Any) -> None:
    """Measure each ``(row, spec)`` in ``k`` pinned processes; fill the rows in place."""
    import multiprocessing as mp

    if not pending:
        return
    cores = core_sets(k)
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(k)
    results: Any = ctx.Queue()
    specs = [spec.as_dict() for _, spec in pending]
    knobs = {
        "warmup": settings.warmup,
        "repeats": settings.repeats,
        "time_cap_s": settings.time_cap_s,
    }
    procs = [
        ctx.Process(target=_worker, args=(i, cores[i], specs, knobs, barrier, results))
        for i in range(k)
    ]
    for proc in procs:
        proc.start()
    got: dict[tuple[int, int], dict[str, Any]] = {}
    expected = k * len(specs)
    while len(got) < expected:
        try:
            i, idx, result = results.get(timeout=_BARRIER_TIMEOUT_S)
        except queue.Empty:
            break
        got[(i, idx)] = result
    for proc in procs:
        proc.join(timeout=30)
    for idx, (row, spec) in enumerate(pending):
        parts = [got.get((i, idx)) for i in range(k)]
        if any(p is None for p in parts):
            row.fail("error", "an instance process died before reporting")
            continue
        errors = [p["error"] for p in parts if p["error"]]
        if errors:
            status, _, reason = errors[0].partition(": ")
            row.fail("n/a" if status == "n/a" else "error", reason)
            continue
        medians = [p["timing"]["median_ms"] for p in parts]
        sum_gflops = sum(row.flops / (m / 1e3) for m in medians) / 1e9
        sum_seq = sum(spec.batch / (m / 1e3) for m in medians)
        timing = dict(parts[0]["timing"])
        timing["median_ms"] = statistics.median(medians)
        row.status, row.timing, row.backend = "ok", timing, parts[0]["backend"]
        row.instances = {
            "count": k,
            "cores": cores,
            "medians_ms": medians,
            "sum_gflops": sum_gflops,
            "sum_seq_per_s": sum_seq,
        }
        log(f"ok    {spec.key} x{k}: {sum_seq:.1f} sequences/s summed")
