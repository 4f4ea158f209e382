"""The harness end to end on tiny shapes: valid JSON, Markdown and PNG, every implementation.

No assertion here is about speed: timings on a shared machine are not test material.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nervana_lstm.choices import BENCH_IMPLS

TINY = """
name: tiny
defaults:
  impls: [onednn, native, unfused, premul, ipex, openvino]
  modes: [infer, train]
  dtypes: [fp32, bf16, int8]
  threads: [1]
  warmup: 1
  repeats: 2
  time_cap_s: 2.0
  peak_size: 64
shapes:
  - {kind: lstm, seq_len: 3, batch: 2, input_size: 4, hidden_size: 8}
  - {kind: gru, seq_len: 3, batch: 2, input_size: 4, hidden_size: 8, modes: [infer]}
"""

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    from tests.conftest import run_cli

    tmp = tmp_path_factory.mktemp("bench")
    suite = tmp / "tiny.yaml"
    suite.write_text(TINY)
    out = tmp / "out"
    proc = run_cli("bench", "--suite", str(suite), "--out", str(out), timeout=500)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    return json.loads((out / "results.json").read_text()), out


@pytest.mark.slow
def test_every_implementation_is_measured_or_says_why(tiny_run: tuple[dict, Path]) -> None:
    results, _ = tiny_run
    rows = results["rows"]
    for label in ("lstm T=3 N=2 I=4 H=8", "gru T=3 N=2 I=4 H=8"):
        seen = {r["impl"] for r in rows if r["label"] == label}
        assert seen == set(BENCH_IMPLS), label
    for row in rows:
        assert row["status"] in ("ok", "n/a", "skipped", "error")
        assert row["status"] != "error", (row["id"], row["reason"])
        if row["status"] == "ok":
            t = row["timing"]
            assert t["repeats"] >= 1 and t["min_ms"] <= t["median_ms"] <= t["max_ms"]
            assert row["gflops"] > 0 and row["flops"] > 0
        else:
            assert row["reason"], row["id"]
    ok = {(r["kind"], r["impl"], r["mode"], r["dtype"]) for r in rows if r["status"] == "ok"}
    for impl in ("onednn", "native", "unfused", "premul"):
        for mode in ("infer", "train"):
            assert ("lstm", impl, mode, "fp32") in ok
    assert ("lstm", "openvino", "infer", "fp32") in ok
    train_ov = [r for r in rows if r["impl"] == "openvino" and r["mode"] == "train"]
    assert train_ov and all("inference runtime" in r["reason"] for r in train_ov)
    gru_int8 = next(r for r in rows if r["kind"] == "gru" and r["dtype"] == "int8")
    assert gru_int8["status"] == "n/a" and "linear_before_reset" in gru_int8["reason"]
    compiled = [r for r in rows if r["impl"] == "compiled"]
    assert compiled and all(r["status"] == "skipped" for r in compiled)


@pytest.mark.slow
def test_ipex_rows_follow_the_stack(tiny_run: tuple[dict, Path]) -> None:
    from nervana_lstm.backends import ipex_status

    results, _ = tiny_run
    ipex_rows = [r for r in results["rows"] if r["impl"] == "ipex" and r["mode"] == "infer"]
    if ipex_status().available:
        lstm = next(r for r in ipex_rows if r["kind"] == "lstm" and r["dtype"] == "fp32")
        assert lstm["status"] == "ok", lstm["reason"]
    else:
        assert all(r["status"] == "n/a" and "IPEX" in r["reason"] for r in ipex_rows)


@pytest.mark.slow
def test_proof_of_what_ran(tiny_run: tuple[dict, Path]) -> None:
    results, _ = tiny_run
    by = {(r["kind"], r["impl"], r["mode"], r["dtype"]): r for r in results["rows"]}
    fused = by[("lstm", "onednn", "infer", "fp32")]["proof"]
    assert fused["onednn"]["rnn"], fused
    assert any("forward_inference" in r for r in fused["onednn"]["rnn"])
    assert fused["onednn"]["isa"]
    assert "onednn_flag" not in fused
    native = by[("lstm", "native", "infer", "fp32")]["proof"]["onednn"]
    assert native["rnn"] == [], "mkldnn disabled must not reach the rnn primitive"
    train = by[("lstm", "onednn", "train", "fp32")]["proof"]["onednn"]["rnn"]
    assert any("backward" in r for r in train)
    ov = by[("lstm", "openvino", "infer", "fp32")]["proof"]["openvino"]
    assert ov["precision_hint"] == "f32" and ov["sequence_precision"] == "f32"
    _check_low_precision_openvino_rows(by)


def _check_low_precision_openvino_rows(by: dict) -> None:
    """Where the CPU has bf16 (int8), the OpenVINO bf16 (int8) row ran, in that precision,
    within its stated tolerance; elsewhere it says why not."""
    from nervana_lstm.perf.openvino_impl import TOLERANCES
    from tests.conftest import cpu_runs_bf16, cpu_runs_int8

    for dtype, supported, precisions in (
        ("bf16", cpu_runs_bf16(), {"bf16"}),
        ("int8", cpu_runs_int8(), {"u8", "i8"}),
    ):
        row = by[("lstm", "openvino", "infer", dtype)]
        if not supported:
            assert row["status"] == "n/a" and dtype.upper() in row["reason"], row
            continue
        assert row["status"] == "ok", (dtype, row["reason"])
        proof = row["proof"]["openvino"]
        assert precisions & set(proof["sequence_precision"].split(",")), proof
        assert TOLERANCES["fp32"] < proof["max_abs_error_vs_torch"] <= TOLERANCES[dtype], proof


@pytest.mark.slow
def test_report_files(tiny_run: tuple[dict, Path]) -> None:
    results, out = tiny_run
    assert results["schema"] == 1
    machine = results["machine"]
    assert machine["cpu"]["model"] and "flags" in machine["cpu"]
    assert results["allocator"] and results["affinity"]
    assert results["peaks"] and all(p["gflops"] > 0 for p in results["peaks"].values())
    overhead = results["timer_overhead"]  # a no-op timed 2000 times after 10 warm-ups
    assert (overhead["repeats"], overhead["warmup"]) == (2000, 10)
    assert 0 < overhead["min_ms"] <= overhead["q1_ms"] <= overhead["median_ms"]
    assert overhead["median_ms"] <= overhead["q3_ms"] <= overhead["max_ms"]
    md = (out / "report.md").read_text()
    assert "## lstm T=3 N=2 I=4 H=8 — infer" in md and "| onednn | fp32 |" in md
    assert "Not measured" in md and "linear_before_reset" in md
    assert "## Summary" in md and "Spread: median IQR" in md
    for name in ("speedup.png", "gflops_vs_hidden.png"):
        data = (out / name).read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 1000
    _check_speedups(results["rows"])
    assert not list(out.glob(".*.tmp")), "no temporary files are left behind"


def _check_speedups(rows: list[dict]) -> None:
    """Each ok row's speedups are the base's median over its own, the base taken at the
    same shape, mode and threads, in the row's dtype or else in fp32."""

    def key(r: dict, dtype: str) -> tuple:
        return (r["kind"], json.dumps(r["shape"], sort_keys=True), r["mode"], dtype, r["threads"])

    ok = {(key(r, r["dtype"]), r["impl"]): r for r in rows if r["status"] == "ok"}
    checked = 0
    for row in (r for r in rows if r["status"] == "ok"):
        for base in ("unfused", "native"):
            ref = ok.get((key(row, row["dtype"]), base)) or ok.get((key(row, "fp32"), base))
            got = row[f"speedup_vs_{base}"]
            if ref is None:
                assert got is None, (row["id"], base)
                continue
            want = ref["timing"]["median_ms"] / row["timing"]["median_ms"]
            assert got == pytest.approx(want, rel=1e-9), (row["id"], base)
            checked += 1
    assert checked > 0


@pytest.mark.slow
def test_instances_mode(tmp_path: Path, cli) -> None:
    import os

    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two usable cores for two pinned instances")
    suite = tmp_path / "one.yaml"
    suite.write_text(
        "name: one\ndefaults: {impls: [onednn], modes: [infer], dtypes: [fp32], warmup: 1,"
        " repeats: 2, peak_size: 64}\n"
        "shapes:\n  - {kind: lstm, seq_len: 3, batch: 2, input_size: 4, hidden_size: 8}\n"
    )
    proc = cli(
        "bench",
        "--suite",
        str(suite),
        "--instances",
        "2",
        "--no-probe",
        "--out",
        str(tmp_path / "o"),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads((tmp_path / "o" / "results.json").read_text())["rows"]
    row = next(r for r in rows if r["impl"] == "onednn")
    assert row["status"] == "ok", row["reason"]
    inst = row["instances"]
    assert inst["count"] == 2 and len(inst["medians_ms"]) == 2
    assert sorted(c for cores in inst["cores"] for c in cores) == sorted(os.sched_getaffinity(0))
    assert row["threads"] == 1
    assert inst["sum_seq_per_s"] > 0


def test_failed_report_keeps_the_measurements_and_nothing_half_written(tmp_path: Path) -> None:
    from nervana_lstm.errors import UsageError
    from nervana_lstm.perf.report import write_report

    broken = {"schema": 1, "rows": [{"id": "x", "status": "ok"}], "peaks": {}}
    with pytest.raises(UsageError, match=r"measurements are saved in .*results\.json"):
        write_report(broken, tmp_path / "out")
    assert list(tmp_path.iterdir()) == [tmp_path / "out"]  # no staging folder left
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["results.json"]
    assert json.loads((tmp_path / "out" / "results.json").read_text()) == broken


def test_a_wrong_openvino_result_is_an_error_row(monkeypatch: pytest.MonkeyPatch) -> None:
    """An implementation that runs but computes something else is an error, never n/a."""
    from nervana_lstm.perf import openvino_impl
    from nervana_lstm.perf.harness import Selection, run_suite
    from nervana_lstm.perf.suites import suite_from_dict

    suite = suite_from_dict(
        {
            "name": "wrong",
            "defaults": {"impls": ["onednn", "openvino"], "modes": ["infer"],
                         "dtypes": ["fp32"], "threads": [1], "warmup": 1, "repeats": 1,
                         "peak_size": 16},
            "shapes": [{"kind": "lstm", "seq_len": 2, "batch": 2, "input_size": 3,
                        "hidden_size": 4}],
        }
    )  # fmt: skip
    monkeypatch.setitem(openvino_impl.TOLERANCES, "fp32", -1.0)  # no output can pass
    logged: list[str] = []
    results = run_suite(suite, Selection(probe=False), log=logged.append)
    rows = {r["impl"]: r for r in results["rows"] if r["status"] != "skipped"}
    assert rows["openvino"]["status"] == "error" and rows["openvino"]["timing"] is None
    assert "differs from torch" in rows["openvino"]["reason"]
    assert rows["onednn"]["status"] == "ok"  # the rest of the group is still measured
    assert any(line.startswith("error") and "openvino" in line for line in logged)
