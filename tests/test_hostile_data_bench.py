"""Hostile and careless data files and benchmark results: NPZ lengths that split the
rows wrongly, values float32 cannot hold, results files compare must not trust, and
reports that must keep their measurements and draw any subset of implementations."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import assert_refused

from nervana_lstm.choices import BENCH_IMPLS
from nervana_lstm.data.file_formats import read_sequences
from nervana_lstm.errors import UsageError

REPO = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nervana_lstm", *args],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip


_refused = assert_refused


# ---------------------------------------------------------------------- data files


def _flat(lengths: Any, rows: int = 6) -> dict:
    return {"x": np.ones((rows, 2), np.float32), "lengths": np.asarray(lengths),
            "y": np.arange(len(np.asarray(lengths).reshape(-1)))}  # fmt: skip


NPZ_CASES: dict[str, tuple[dict, str]] = {
    "flat length 0": (
        _flat([0, 6]),
        "'lengths' must be in 1..6, got 0..6 (sequence 0 has length 0)",
    ),
    "flat length negative": (_flat([-1, 7]), "sequence 0 has length -1"),
    "flat negative last": (_flat([7, -1]), "sequence 0 has length 7"),
    "flat short sum": (_flat([2, 2]), "'lengths' add up to 4 but 'x' has 6 rows"),
    "flat huge length": (_flat([2**40, 1]), "sequence 0 has length 1099511627776"),
    "flat wraps int64": (_flat([2**62, 2**62, 2**62, 2**62, 6]), "'lengths' must be in 1..6"),
    "flat float lengths": (_flat([3.0, 3.0]), "'lengths' must be integers"),
    "flat 2-D lengths": (_flat([[3, 3]]), "'lengths' must be integers"),
    "padded length 0": (
        {"x": np.ones((2, 3, 1), np.float32), "lengths": np.array([0, 3]), "y": np.arange(2)},
        "sequence 0 has length 0",
    ),
    "x beyond float32": (
        {"x": np.full((2, 3, 1), 1e300), "y": np.arange(2)},
        "array 'x' has 1e+300 at index [0, 0, 0], beyond float32's range",
    ),
    "x negative beyond float32": (
        {"x": np.array([[[1.0], [-3.5e38]], [[0.0], [0.0]]]), "y": np.arange(2)},
        "array 'x' has -3.5e+38 at index [0, 1, 0]",
    ),
}


@pytest.mark.parametrize("name", sorted(NPZ_CASES))
def test_npz_files_that_would_train_wrongly_are_refused(tmp_path: Path, name: str) -> None:
    arrays, fragment = NPZ_CASES[name]
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    with pytest.raises(UsageError) as info:
        read_sequences(str(path), "classify")
    assert str(path) in str(info.value) and fragment in str(info.value), str(info.value)


def test_regression_targets_and_ragged_items_beyond_float32(tmp_path: Path) -> None:
    path = tmp_path / "y.npz"
    np.savez(path, x=np.ones((2, 3, 1), np.float32), y=np.array([1.0, 1e39]))
    with pytest.raises(UsageError, match=r"array 'y' has 1e\+39 at index \[1\]"):
        read_sequences(str(path), "regress")
    ragged = np.empty(2, dtype=object)
    ragged[:] = [np.ones((2, 1)), np.array([[1.0], [1e300]])]
    np.savez(tmp_path / "r.npz", x=ragged, y=np.arange(2))
    with pytest.raises(UsageError, match=r"array 'x\[1\]' has 1e\+300 at index \[1, 0\]"):
        read_sequences(str(tmp_path / "r.npz"), "classify", allow_pickle=True)


CSV_CASES = {
    "feature 1e308": ("s,0,1e308,a\ns,1,1,a\nq,0,1,b\n", "d.csv:2, column 'f': '1e308'"),
    "feature -3.5e38": ("s,0,1,a\ns,1,-3.5e38,a\nq,0,1,b\n", "d.csv:3, column 'f': '-3.5e38'"),
    "feature 1E39 on the last row": ("s,0,1,a\nq,0,1E39,b\n", "d.csv:3, column 'f': '1E39'"),
}


@pytest.mark.parametrize("name", sorted(CSV_CASES))
def test_csv_values_beyond_float32_name_file_row_and_column(tmp_path: Path, name: str) -> None:
    text, fragment = CSV_CASES[name]
    path = tmp_path / "d.csv"
    path.write_text("sequence_id,t,f,target\n" + text)
    with pytest.raises(UsageError, match="beyond float32's range") as info:
        read_sequences(str(path), "classify")
    assert fragment in str(info.value)
    regress = tmp_path / "r.csv"
    regress.write_text("sequence_id,t,f,target\ns,0,1,1e39\nq,0,1,2\n")
    with pytest.raises(UsageError, match=r"r\.csv:2, column 'target': '1e39' is beyond float32"):
        read_sequences(str(regress), "regress")
    # float64's own limit stays the plain "finite" check; float32's largest value is read
    path.write_text("sequence_id,t,f,target\ns,0,3.4e38,a\nq,1,-3.4e38,b\n")
    assert read_sequences(str(path), "classify").seqs[0][0, 0] == np.float32(3.4e38)


def test_cli_names_the_bad_value_and_leaves_no_run_dir(tmp_path: Path) -> None:
    data = tmp_path / "big.csv"
    data.write_text("sequence_id,t,a,target\ns,0,1,x\ns,1,1e308,x\nq,0,1,y\nq,1,2,y\n")
    out = tmp_path / "run"
    proc = _cli(
        "train", "--config", "configs/sines.yaml", "--out", str(out),
        "--set", f"task.options.path={data}", "--set", "train.accel=onednn",
    )  # fmt: skip
    _refused(proc, f"{data}:3, column 'a': '1e308' is beyond float32's range")
    assert not out.exists()


def test_data_paths_that_are_not_files(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    for path, fragment in (
        (fifo, "is a named pipe (FIFO), not a regular file"),  # never opened: no hang
        (Path("/dev/null"), "is a device, not a regular file"),
        (tmp_path, "is a directory; expected a .csv or .npz file"),
    ):
        with pytest.raises(UsageError) as info:
            read_sequences(str(path), "classify")
        assert f"data file {path} {fragment}" in str(info.value)


# ---------------------------------------------------------------- bench compare


def _row(rid: str, ms: Any, status: str = "ok") -> dict:
    return {"id": rid, "status": status, "timing": {"median_ms": ms} if status == "ok" else None}


def _results(*rows: dict) -> dict:
    return {"schema": 1, "machine": {"cpu": {"model": "test"}}, "rows": list(rows)}


GOOD = _results(_row("lstm/onednn/infer/fp32/t2", 10.0), _row("lstm/unfused/infer/fp32/t2", 30.0))


def _with(change: Any) -> dict:
    data = copy.deepcopy(GOOD)
    change(data)
    return data


def _median(value: Any) -> Any:
    return lambda d: d["rows"][0]["timing"].update(median_ms=value)


BAD_RESULTS: dict[str, tuple[Any, str]] = {
    "no rows": (lambda d: d.update(rows=[]), "holds no rows"),
    "unknown schema": (lambda d: d.update(schema=2), "has results schema 2"),
    "no schema": (lambda d: d.pop("schema"), "has results schema None"),
    "schema true": (lambda d: d.update(schema=True), "has results schema True"),
    "negative median": (_median(-3.0), "timing.median_ms > 0 (milliseconds), got -3.0"),
    "zero median": (_median(0), "got 0"),
    "null median": (_median(None), "got None"),
    "string median": (_median("10"), "got '10'"),
    "bool median": (_median(True), "got True"),
    "missing median": (lambda d: d["rows"][0].update(timing={}), "got None"),
    "missing timing": (lambda d: d["rows"][0].pop("timing"), "got no timing"),
    "duplicate id": (lambda d: d["rows"].append(copy.deepcopy(d["rows"][0])), "appears twice"),
    "unknown status": (lambda d: d["rows"][0].update(status="fast"), "'status' is 'fast'"),
    "row not a mapping": (lambda d: d["rows"].append([1, 2]), "row 2: expected a mapping"),
    "id missing": (lambda d: d["rows"][0].pop("id"), "'id' is missing"),
    "machine a list": (lambda d: d.update(machine=[1]), "'machine' is not a mapping"),
}


@pytest.mark.parametrize("name", sorted(BAD_RESULTS))
def test_compare_refuses_files_it_cannot_trust_with_exit_2(tmp_path: Path, name: str) -> None:
    change, fragment = BAD_RESULTS[name]
    good, bad = tmp_path / "a.json", tmp_path / "b.json"
    good.write_text(json.dumps(GOOD))
    bad.write_text(json.dumps(_with(change)))
    for args in ((good, bad), (bad, good)):  # either side
        _refused(_cli("bench", "compare", *map(str, args)), str(bad), fragment)


def test_compare_refuses_json_nan_and_non_files(tmp_path: Path) -> None:
    good = tmp_path / "a.json"
    good.write_text(json.dumps(GOOD))
    nan = tmp_path / "nan.json"
    nan.write_text(json.dumps(GOOD).replace("10.0", "NaN"))
    _refused(_cli("bench", "compare", str(good), str(nan)), "NaN is not a JSON number")
    _refused(_cli("bench", "compare", str(good), "/dev/zero"), "is a device, not a regular file")
    _refused(_cli("bench", "compare", str(good), str(tmp_path)), "is a directory")


def test_rows_missing_from_b_are_lost_and_a_regression(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(GOOD))
    b.write_text(json.dumps(_with(lambda d: d["rows"].pop())))
    proc = _cli("bench", "compare", str(a), str(b))
    assert proc.returncode == 1, proc.stderr
    assert "lost, measured in" in proc.stdout and "lstm/unfused/infer/fp32/t2" in proc.stdout
    assert "1 no longer measured" in proc.stdout
    same = _cli("bench", "compare", str(a), str(a))
    assert same.returncode == 0 and "no regression" in same.stdout


# ------------------------------------------------------------------ bench reports


def _measured(impls: tuple[str, ...]) -> dict:
    """A results document whose rows of ``impls`` were measured and the rest are n/a."""
    from nervana_lstm.perf.harness import Selection, _fill_rates, _fill_speedups, new_row, plan
    from nervana_lstm.perf.suites import suite_from_dict

    suite = suite_from_dict({
        "name": "any", "defaults": {"impls": list(BENCH_IMPLS), "modes": ["infer", "train"],
                                    "dtypes": ["fp32", "bf16", "int8"]},
        "shapes": [{"kind": "lstm", "seq_len": 2, "batch": 8, "input_size": 4, "hidden_size": h}
                   for h in (4, 8)],
    })  # fmt: skip
    rows = [new_row(p, "full") for p in plan(suite, Selection())]
    for i, row in enumerate(rows):
        if row.impl in impls:
            row.status = "ok"
            row.timing = {"median_ms": 1.0 + i % 5, "q1_ms": 1.0, "q3_ms": 2.0, "iqr_pct": 3.0,
                          "min_ms": 1.0, "max_ms": 2.0, "repeats": 3, "warmup": 1,
                          "capped": False}  # fmt: skip
        else:
            row.fail("n/a", "not part of this run")
    peaks = {"fp32/t2": {"dtype": "fp32", "threads": 2, "gflops": 50.0, "size": 64}}
    _fill_speedups(rows)
    _fill_rates(rows, peaks, None)
    cpu = {"model": "test CPU", "vendor": "test", "cores": 2, "threads": 2, "flags": {}}
    machine = {"cpu": cpu, "torch": {}, "openvino": {}, "ipex": {}, "nncf": {}}
    return {
        "schema": 1,
        "suite": {"name": "any", "description": "", "source": None},
        "settings": {**suite.defaults.model_dump(), "instances": 1, "selection": {}},
        "machine": {**machine, "threads": {"env": {}}},
        "affinity": [0, 1],
        "allocator": "glibc malloc",
        "timer_overhead": {"median_ms": 1e-4},
        "peaks": peaks,
        "started": "2026-01-01T00:00:00Z",
        "wall_s": 0.1,
        "phases": {},
        "command": "nervana-lstm bench",
        "rows": [r.to_dict() for r in rows],
    }


@pytest.mark.parametrize("impls", [(), *((i,) for i in BENCH_IMPLS), ("unfused", "openvino")])
def test_charts_and_report_cope_with_any_subset_of_implementations(
    tmp_path: Path, impls: tuple[str, ...]
) -> None:
    from nervana_lstm.perf.report import write_report

    paths = write_report(_measured(impls), tmp_path / "out")
    assert json.loads(paths["json"].read_text())["schema"] == 1
    for name in ("speedup", "gflops_vs_hidden"):
        assert paths[name].read_bytes().startswith(PNG_MAGIC)
    assert paths["md"].read_text().startswith("#")


def test_a_chart_failure_keeps_results_json_and_removes_stale_charts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nervana_lstm.perf import report

    out = tmp_path / "out"
    report.write_report(_measured(("onednn", "unfused")), out)  # an earlier run's report
    fresh = _measured(("onednn",))

    def broken(results: dict, out_dir: Path) -> list[Path]:
        raise ValueError("ncol must be at least 1")

    monkeypatch.setattr(report, "write_charts", broken)
    with pytest.raises(UsageError, match=r"measurements are saved in .*results\.json"):
        report.write_report(fresh, out)
    assert json.loads((out / "results.json").read_text()) == fresh
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]  # nothing stale, no temp
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_an_unwritable_results_json_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from nervana_lstm.perf import report

    def disk_full(results: dict, path: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(report, "write_json", disk_full)
    with pytest.raises(UsageError, match=r"no space left on the disk .* nothing was written"):
        report.write_report(_measured(("onednn",)), tmp_path / "out")


@pytest.mark.slow
def test_a_one_implementation_bench_writes_everything(tmp_path: Path) -> None:
    suite = tmp_path / "one.yaml"
    suite.write_text(
        "name: one\ndefaults: {impls: [premul], modes: [infer], dtypes: [fp32], threads: [1],"
        " warmup: 1, repeats: 2, peak_size: 64}\n"
        "shapes:\n  - {kind: lstm, seq_len: 3, batch: 2, input_size: 4, hidden_size: 8}\n"
    )
    out = tmp_path / "o"
    proc = _cli(
        "bench", "--suite", str(suite), "--impls", "premul", "--no-probe", "--out", str(out)
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads((out / "results.json").read_text())["rows"]
    assert [r["impl"] for r in rows if r["status"] == "ok"] == ["premul"]
    for name in ("speedup.png", "gflops_vs_hidden.png"):
        assert (out / name).read_bytes().startswith(PNG_MAGIC)
