"""The runner's bookkeeping: call counts, round-robin order, the time cap, the statistics."""

from __future__ import annotations

import time

from nervana_lstm.perf.runner import Timing, time_callable, time_interleaved, timer_overhead


def test_warmup_and_repeats_are_counted() -> None:
    calls = []
    timing = time_callable(lambda: calls.append(1), warmup=3, repeats=5)
    assert len(calls) == 8
    assert (timing.warmup, timing.repeats, timing.capped) == (3, 5, False)
    assert timing.min_ms <= timing.q1_ms <= timing.median_ms <= timing.q3_ms <= timing.max_ms


def test_interleaved_calls_alternate() -> None:
    order: list[str] = []
    timings = time_interleaved(
        {"a": lambda: order.append("a"), "b": lambda: order.append("b")}, warmup=1, repeats=3
    )
    assert order == ["a", "b"] * 4
    assert set(timings) == {"a", "b"} and all(t.repeats == 3 for t in timings.values())


def test_time_cap_stops_after_the_minimum() -> None:
    timing = time_callable(
        lambda: time.sleep(0.02), warmup=0, repeats=50, min_repeats=3, time_cap_s=0.01
    )
    assert timing.capped and timing.repeats == 3


def test_cap_spent_in_warmup_still_times_once() -> None:
    timing = time_callable(lambda: time.sleep(0.02), warmup=5, repeats=50, time_cap_s=0.01)
    assert timing.capped and timing.warmup == 1 and timing.repeats == 1


def test_iqr_percent_and_dict() -> None:
    t = Timing(
        median_ms=10.0,
        q1_ms=9.0,
        q3_ms=12.0,
        min_ms=8.0,
        max_ms=20.0,
        repeats=5,
        warmup=1,
        capped=False,
    )
    assert t.iqr_pct == 30.0
    assert t.as_dict()["iqr_pct"] == 30.0


def test_overhead_is_measured_on_a_noop() -> None:
    over = timer_overhead(repeats=100)
    assert over.repeats == 100 and over.median_ms >= 0
