"""Honest benchmarks on a shared machine: load readings around each group of rows,
contended rows marked, disagreeing GEMM peaks called noisy, ``--quiet-wait``.

The load is made up by the tests (fake readings, or ``/proc/stat`` replaced in a
CLI subprocess), so they pass however busy the machine running them is.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO
from test_perf_report import _nothing_ran

from nervana_lstm.cpu_load import BusyProcess, LoadSample
from nervana_lstm.errors import UsageError
from nervana_lstm.perf.compare import compare, format_comparison
from nervana_lstm.perf.quiet import LoadLog, is_contended, load_section, noisy_peaks, wait_for_quiet
from nervana_lstm.perf.report import render_markdown
from nervana_lstm.perf.results import Row


def _row(rid: str, status: str = "ok") -> Row:
    shape = {"seq_len": 2, "batch": 1, "input_size": 4, "hidden_size": 4, "num_layers": 1}
    return Row(rid, "lstm", "lstm", "onednn", "infer", "fp32", 2, shape, status)  # type: ignore[arg-type]


def _sample(other: float, cpus: int = 2) -> LoadSample:
    return LoadSample(cpus, cpus, 0.1, other, 0.0, (BusyProcess(42, "stress", other),))


class _Readings:
    """Fake readings: idle samples in order, and one "during" reading per group."""

    def __init__(self, idle: list[float], during: list[float]) -> None:
        self.idle, self.during = list(idle), list(during)

    def measure(self, seconds: float, granted: int, *, with_processes: bool) -> LoadSample:
        return _sample(self.idle.pop(0))

    def start(self) -> object:
        return object()

    def since(self, start: object, granted: int | None) -> LoadSample:
        return _sample(self.during.pop(0))


def _log(readings: _Readings) -> LoadLog:
    return LoadLog(2, measure=readings.measure, start=readings.start, since=readings.since)


def test_each_group_is_read_before_during_and_after() -> None:
    readings = _Readings(idle=[0.0, 0.1, 1.0], during=[0.0, 0.0])
    log = _log(readings)
    first, second = [_row("a"), _row("b", "error")], [_row("c")]
    with log.group(first):
        pass
    with log.group(second):
        pass
    log.finish()
    g1, g2 = log.groups
    assert (g1["before"]["other"], g1["during"]["other"], g1["after"]["other"]) == (0.0, 0.0, 0.1)
    assert g2["before"] is g1["after"]  # one reading between two groups serves both
    assert g2["after"]["other"] == 1.0 and g2["after"]["processes"][0]["name"] == "stress"
    assert (g1["contended"], g2["contended"]) == (False, True)
    assert log.contended_rows() == ["c"]
    (note,) = second[0].notes
    assert note.startswith("CONTENDED: other work took up to 1.0 of the 2 granted CPU(s)")
    assert "after 1.0" in note
    assert first[0].notes == [] and first[1].notes == []
    assert is_contended(second[0].to_dict()) and not is_contended(first[0].to_dict())


def test_a_busy_moment_during_the_group_marks_it() -> None:
    log = _log(_Readings(idle=[0.0, 0.0], during=[0.6]))
    rows = [_row("a")]
    with log.group(rows):
        pass
    log.finish()
    assert log.groups[0]["worst"] == 0.6 and is_contended(rows[0].to_dict())


def test_instances_are_read_before_and_after_only() -> None:
    readings = _Readings(idle=[0.0, 0.0], during=[])
    log = _log(readings)
    with log.group([_row("a")], during=False):
        pass
    log.finish()
    assert log.groups[0]["during"] is None and log.groups[0]["contended"] is False


def test_gemm_peaks_that_disagree_are_noisy() -> None:
    peaks = {
        "fp32/t2": {"gflops": 100.0, "start_gflops": 100.0, "end_gflops": 80.0},
        "bf16/t2": {"gflops": 300.0, "start_gflops": 295.0, "end_gflops": 300.0},
        "fp32/t1": {"gflops": 50.0},  # measured once: nothing to compare
    }
    (line,) = noisy_peaks(peaks)
    assert line.startswith("GEMM peak fp32/t2: 100.0 GFLOP/s before the rows, 80.0 after")
    assert "20% apart" in line
    assert noisy_peaks(peaks, margin=0.25) == []


def test_quiet_wait_returns_once_quiet_and_gives_up_naming_what_runs() -> None:
    loads = iter([1.0, 0.8, 0.1])
    found = wait_for_quiet(
        60,
        granted=2,
        measure=lambda *a, **k: _sample(next(loads)),
        clock=iter([0, 1, 2, 3]).__next__,
    )
    assert found["waited_s"] == 3 and found["load"]["other"] == 0.1
    clock = iter(range(0, 100, 5)).__next__
    with pytest.raises(UsageError) as exc:
        wait_for_quiet(10, granted=2, measure=lambda *a, **k: _sample(1.0), clock=clock)
    message = str(exc.value)
    assert "did not become quiet within 10 s: other work on 1.0 of 2 CPUs" in message
    assert "stress pid 42 100%" in message and "--quiet-wait" in message


def _measured(contended: bool, noisy: bool) -> dict:
    results = _nothing_ran()
    row = next(r for r in results["rows"] if r["impl"] == "onednn")
    row.update(status="ok", reason=None, speedup_vs_unfused=None, speedup_vs_native=None)
    row["timing"] = {"median_ms": 1.5, "iqr_pct": 1.0, "capped": False}
    log = _log(_Readings(idle=[0.0, 1.0 if contended else 0.0], during=[0.0]))
    obj = Row.from_dict(row)
    with log.group([obj]):
        pass
    log.finish()
    row["notes"] = obj.notes
    peaks = {"fp32/t1": {"size": 64, "gflops": 10.0, "start_gflops": 10.0,
                         "end_gflops": 5.0 if noisy else 9.9}}  # fmt: skip
    results["peaks"] = peaks
    results["load"] = load_section(log, peaks)
    return results


def test_the_report_says_at_its_top_which_rows_were_contended() -> None:
    busy = render_markdown(_measured(contended=True, noisy=True))
    top = busy.split("## Summary")[0]
    assert "**Measured under contention:** 1 row(s), marked `!`" in top
    assert "**Noisy:** GEMM peak fp32/t1: 10.0 GFLOP/s before the rows, 5.0 after" in top
    assert "| 1.50! |" in busy and "| 1.500! |" in busy
    quiet = render_markdown(_measured(contended=False, noisy=False))
    assert "Quiet: other work stayed under 0.25 CPU" in quiet
    assert "1.50!" not in quiet and "Noisy" not in quiet
    old = render_markdown(_nothing_ran())  # a results.json written before the load section
    assert "Measured under contention" not in old and "Quiet:" not in old


def test_compare_says_when_a_run_was_busy() -> None:
    a, b = _measured(contended=False, noisy=False), _measured(contended=True, noisy=True)
    text = format_comparison(compare(a, copy.deepcopy(b), 0.05))
    assert "note: B measured 1 row(s) under contention; B is noisy" in text
    assert "note: B" not in format_comparison(compare(a, a, 0.05))


def _bench_with_load(tmp_path: Path, busy: float, *args: str) -> subprocess.CompletedProcess[str]:
    suite = tmp_path / "one.yaml"
    suite.write_text(
        "name: one\ndefaults: {impls: [unfused], modes: [infer], dtypes: [fp32], threads: [1],"
        " warmup: 1, repeats: 2, peak_size: 64}\n"
        "shapes:\n  - {kind: lstm, seq_len: 3, batch: 2, input_size: 4, hidden_size: 8}\n"
    )
    return subprocess.run(
        [
            sys.executable, str(REPO / "tests" / "fake_load.py"), str(busy),
            str(tmp_path / "seen.json"), "bench", "--suite", str(suite), "--no-probe", *args,
        ],
        capture_output=True, text=True, timeout=300, cwd=REPO, env=dict(os.environ),
    )  # fmt: skip


def test_bench_on_busy_cpus_marks_its_rows(tmp_path: Path) -> None:
    out = tmp_path / "o"
    done = _bench_with_load(tmp_path, 1.0, "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    ok = [r for r in results["rows"] if r["status"] == "ok"]
    assert ok and all(is_contended(r) for r in ok)
    assert set(results["load"]["contended_rows"]) >= {r["id"] for r in ok}
    group = results["load"]["groups"][0]
    assert {"before", "during", "after"} <= set(group) and group["contended"] is True
    assert "**Measured under contention:**" in (out / "report.md").read_text()
    assert "measured under contention" in done.stderr


def test_bench_quiet_wait_gives_up_with_exit_2_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "o"
    done = _bench_with_load(tmp_path, 1.0, "--quiet-wait", "0", "--out", str(out))
    assert done.returncode == 2, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "--quiet-wait 0: the machine did not become quiet within 0 s: other work on" in last
    assert not out.exists()


def test_bench_quiet_wait_on_a_quiet_machine_records_the_wait(tmp_path: Path) -> None:
    out = tmp_path / "o"
    done = _bench_with_load(tmp_path, 0.0, "--quiet-wait", "5", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    load = json.loads((out / "results.json").read_text())["load"]
    assert load["quiet_wait"]["load"]["other"] == 0.0 and load["contended_rows"] == []


@pytest.mark.parametrize("value", ["-1", "soon", "nan"])
def test_bench_quiet_wait_refuses_a_bad_value(cli, tmp_path: Path, value: str) -> None:
    done = cli("bench", "--quiet-wait", value, "--out", str(tmp_path / "o"), timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--quiet-wait got" in done.stderr and "expected seconds to wait, 0..86400" in done.stderr
