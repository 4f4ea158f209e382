"""The typed row of results.json: its keys are the schema, old files still read back the same."""

from __future__ import annotations

import json

import pytest
from conftest import REPO

from nervana_lstm.perf.compare import compare, load_results
from nervana_lstm.perf.harness import Planned, new_row
from nervana_lstm.perf.results import ROW_KEYS, STATUSES, Row
from nervana_lstm.perf.spec import Spec

SHIPPED = REPO / "perf" / "reports" / "quick-2core" / "results.json"

#: the row schema of results.json (schema 1), in the order the keys are written
SCHEMA_1 = (
    "id", "label", "kind", "impl", "mode", "dtype", "threads", "shape", "status", "reason",
    "backend", "timing", "flop_count", "flops", "gflops", "peak_gflops", "pct_peak",
    "speedup_vs_unfused", "speedup_vs_native", "speedup_baseline_dtype", "build_s", "notes",
    "proof", "instances",
)  # fmt: skip


def test_row_keys_are_schema_1() -> None:
    assert ROW_KEYS == SCHEMA_1


def test_a_new_row_is_written_with_every_key() -> None:
    spec = Spec("lstm", "onednn", "train", "fp32", 2, 25, 64, 256, 256)
    row = new_row(Planned(spec, "lstm T=25 N=64 I=256 H=256", None, "a note"), "full")
    data = row.to_dict()
    assert tuple(data) == SCHEMA_1
    assert data["id"] == "lstm-T25-N64-I256-H256-L1/onednn/train/fp32/t2"
    assert data["status"] == "pending" and data["reason"] is None
    assert data["flops"] == 3 * 2 * 4 * 256 * (256 + 256) * 25 * 64
    assert data["notes"] == ["a note"] and data["proof"] == {} and data["instances"] is None
    skipped = new_row(Planned(spec, "x", "not selected", None), "recurrent").to_dict()
    assert skipped["status"] == "skipped" and skipped["reason"] == "not selected"
    assert skipped["flop_count"] == "recurrent" and skipped["notes"] == []


def test_fail_sets_status_and_reason() -> None:
    spec = Spec("gru", "openvino", "train", "fp32", 1, 2, 1, 3, 4)
    row = new_row(Planned(spec, "gru", None), "full")
    row.fail("n/a", "OpenVINO is an inference runtime")
    assert (row.status, row.reason) == ("n/a", "OpenVINO is an inference runtime")


def test_shipped_results_read_back_unchanged() -> None:
    """A results.json written before the row model reads into it and writes out the same."""
    rows = json.loads(SHIPPED.read_text())["rows"]
    assert rows
    for raw in rows:
        assert raw["status"] in STATUSES
        assert Row.from_dict(raw).to_dict() == raw
        assert list(Row.from_dict(raw).to_dict()) == list(raw)


def test_shipped_results_compare_with_themselves() -> None:
    a = load_results(SHIPPED)
    result = compare(a, a, 0.05)
    assert not result.regressed and not result.slower and result.same


def test_a_row_with_missing_or_extra_keys_is_refused() -> None:
    raw = json.loads(SHIPPED.read_text())["rows"][0]
    broken = {k: v for k, v in raw.items() if k != "timing"} | {"median": 1.0}
    with pytest.raises(
        ValueError, match=r"missing keys \['timing'\], unexpected keys \['median'\]"
    ):
        Row.from_dict(broken)
