"""`bench compare`: a planted regression fails, a clean pair passes, bad input exits 2."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from nervana_lstm.errors import UsageError
from nervana_lstm.perf.compare import compare, load_results, parse_threshold


def _row(rid: str, ms: float, status: str = "ok") -> dict:
    timing = {"median_ms": ms} if status == "ok" else None
    return {"id": rid, "status": status, "timing": timing}


def _results() -> dict:
    return {
        "schema": 1,
        "rows": [
            _row("lstm-T25-N64-I256-H256-L1/onednn/infer/fp32/t2", 10.0),
            _row("lstm-T25-N64-I256-H256-L1/unfused/infer/fp32/t2", 30.0),
            _row("gru-T25-N64-I256-H256-L1/openvino/infer/int8/t2", 0.0, status="n/a"),
        ],
    }


def _write(tmp_path: Path, name: str, data: dict) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


def test_threshold_parsing() -> None:
    assert parse_threshold("5%") == pytest.approx(0.05)
    assert parse_threshold("5") == pytest.approx(0.05)
    assert parse_threshold("0.05") == pytest.approx(0.05)
    with pytest.raises(UsageError, match="expected a percentage"):
        parse_threshold("fast")


def test_planted_regression_is_found() -> None:
    a = _results()
    b = copy.deepcopy(a)
    b["rows"][0]["timing"]["median_ms"] = 12.0  # +20%
    b["rows"][1]["timing"]["median_ms"] = 20.0  # faster
    result = compare(a, b, 0.05)
    assert result.regressed
    assert [c.id for c in result.slower] == [a["rows"][0]["id"]]
    assert [c.id for c in result.faster] == [a["rows"][1]["id"]]


def test_small_noise_within_threshold_passes() -> None:
    a = _results()
    b = copy.deepcopy(a)
    b["rows"][0]["timing"]["median_ms"] = 10.3  # +3%
    result = compare(a, b, 0.05)
    assert not result.regressed
    assert len(result.same) == 2


def test_a_path_that_stopped_running_is_a_regression() -> None:
    a = _results()
    b = copy.deepcopy(a)
    b["rows"][0] = _row(a["rows"][0]["id"], 0.0, status="error")
    assert compare(a, b, 0.05).regressed


def test_cli_exit_codes(tmp_path: Path, cli) -> None:
    a = _results()
    slow = copy.deepcopy(a)
    slow["rows"][1]["timing"]["median_ms"] = 40.0
    pa, pb = _write(tmp_path, "a.json", a), _write(tmp_path, "b.json", slow)
    bad = cli("bench", "compare", str(pa), str(pb), "--threshold", "5%", timeout=120)
    assert bad.returncode == 1, bad.stderr
    assert "slower (1)" in bad.stdout and "REGRESSION" in bad.stdout
    same = cli("bench", "compare", str(pa), str(pa), timeout=120)
    assert same.returncode == 0, same.stderr
    assert "no regression" in same.stdout


def test_cli_bad_input_exits_2_without_traceback(tmp_path: Path, cli) -> None:
    pa = _write(tmp_path, "a.json", _results())
    junk = tmp_path / "junk.json"
    junk.write_text("{not json")
    for args in (
        ("bench", "compare", str(pa), str(tmp_path / "missing.json")),
        ("bench", "compare", str(pa), str(junk)),
        ("bench", "compare", str(pa), str(pa), "--threshold", "lots"),
    ):
        proc = cli(*args, timeout=120)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert "expected" in proc.stderr or "not found" in proc.stderr


def test_load_rejects_other_json(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="rows"):
        load_results(_write(tmp_path, "x.json", {"hello": 1}))
