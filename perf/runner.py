"""Time a callable the same way for every implementation: warm up, repeat, take the median.

The loop around the measured call is two ``perf_counter_ns`` reads and a list
append, so the harness itself costs well under a microsecond per call
(:func:`timer_overhead` measures it on a no-op; reports print it next to the
smallest measured time).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

__all__ = [
    "Timing",
    "affinity",
    "pinned_threads",
    "time_callable",
    "time_interleaved",
    "timer_overhead",
]


@dataclass(frozen=True)
class Timing:
    """Per-call wall-clock times of one measurement, in milliseconds."""

    median_ms: float
    q1_ms: float  # 25th percentile
    q3_ms: float  # 75th percentile
    min_ms: float
    max_ms: float
    repeats: int
    warmup: int
    capped: bool  # stopped early because the time cap was reached

    @property
    def iqr_pct(self) -> float:
        """Interquartile range as a percentage of the median (the spread reports show)."""
        return 100.0 * (self.q3_ms - self.q1_ms) / self.median_ms if self.median_ms else 0.0

    def as_dict(self) -> dict[str, float | int | bool]:
        out: dict[str, float | int | bool] = asdict(self)
        out["iqr_pct"] = round(self.iqr_pct, 2)
        return out


def _quartiles(samples: list[float]) -> tuple[float, float]:
    if len(samples) < 2:
        return samples[0], samples[0]
    q = statistics.quantiles(samples, n=4, method="inclusive")
    return q[0], q[2]


def time_callable(
    fn: Callable[[], object],
    *,
    warmup: int = 2,
    repeats: int = 10,
    min_repeats: int = 3,
    time_cap_s: float | None = None,
) -> Timing:
    """Call ``fn`` ``warmup`` times untimed, then up to ``repeats`` times timed.

    ``time_cap_s`` bounds the whole measurement (warm-up included): once it is
    spent the loop stops after at least ``min_repeats`` timed calls (and after
    one when a single warm-up call already used the cap), and the result is
    marked ``capped``. ``fn`` must finish its work before returning (torch on
    CPU is synchronous).
    """
    if repeats < 1 or warmup < 0:
        raise ValueError("repeats must be >= 1 and warmup >= 0")
    start = time.perf_counter()
    capped = False
    done_warmup = 0
    for _ in range(warmup):
        fn()
        done_warmup += 1
        if time_cap_s is not None and time.perf_counter() - start > time_cap_s:
            capped = True
            break
    floor = 1 if capped else min(min_repeats, repeats)
    samples: list[float] = []
    clock = time.perf_counter_ns
    for i in range(repeats):
        t0 = clock()
        fn()
        t1 = clock()
        samples.append((t1 - t0) / 1e6)
        if (
            time_cap_s is not None
            and i + 1 >= floor
            and i + 1 < repeats
            and time.perf_counter() - start > time_cap_s
        ):
            capped = True
            break
    return _timing(samples, done_warmup, capped)


def _timing(samples: list[float], warmup: int, capped: bool) -> Timing:
    q1, q3 = _quartiles(samples)
    return Timing(
        median_ms=statistics.median(samples),
        q1_ms=q1,
        q3_ms=q3,
        min_ms=min(samples),
        max_ms=max(samples),
        repeats=len(samples),
        warmup=warmup,
        capped=capped,
    )


def time_interleaved(
    calls: dict[str, Callable[[], object]],
    *,
    warmup: int = 2,
    repeats: int = 10,
    min_repeats: int = 3,
    time_cap_s: float | None = None,
) -> dict[str, Timing]:
    """Time several callables in round-robin order: A B C A B C ...

    On a shared machine the load drifts over seconds; interleaving exposes
    every implementation to the same drift, so their *ratios* stay fair even
    when absolute times move. ``time_cap_s`` is the budget of each callable
    (the group's budget is that times ``len(calls)``), with the same rules as
    :func:`time_callable`.
    """
    if not calls:
        return {}
    names = list(calls)
    start = time.perf_counter()
    budget = None if time_cap_s is None else time_cap_s * len(names)
    capped = False
    done_warmup = 0
    for _ in range(warmup):
        for name in names:
            calls[name]()
        done_warmup += 1
        if budget is not None and time.perf_counter() - start > budget:
            capped = True
            break
    floor = 1 if capped else min(min_repeats, repeats)
    samples: dict[str, list[float]] = {name: [] for name in names}
    clock = time.perf_counter_ns
    for i in range(repeats):
        for name in names:
            fn = calls[name]
            t0 = clock()
            fn()
            t1 = clock()
            samples[name].append((t1 - t0) / 1e6)
        if (
            budget is not None
            and i + 1 >= floor
            and i + 1 < repeats
            and time.perf_counter() - start > budget
        ):
            capped = True
            break
    return {name: _timing(samples[name], done_warmup, capped) for name in names}


def timer_overhead(repeats: int = 2000) -> Timing:
    """The runner's own cost: :func:`time_callable` on a no-op."""

    def noop() -> None:
        return None

    return time_callable(noop, warmup=10, repeats=repeats)


@contextlib.contextmanager
def pinned_threads(threads: int) -> Iterator[None]:
    """Run the block with torch (and OpenMP via torch) using exactly ``threads`` threads."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def affinity() -> list[int]:
    """Logical CPUs this process may run on."""
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(os.cpu_count() or 1))
