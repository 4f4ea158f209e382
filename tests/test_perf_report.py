"""The report writer on a run where nothing could be measured (every row n/a)."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from nervana_lstm.perf.harness import Selection, new_row, plan
from nervana_lstm.perf.report import render_markdown, write_report
from nervana_lstm.perf.suites import suite_from_dict

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _nothing_ran() -> dict:
    """A results document shaped like run_suite's, whose every row is n/a."""
    suite = suite_from_dict(
        {
            "name": "none-ran",
            "defaults": {"impls": ["ipex"], "modes": ["infer"], "dtypes": ["fp32"]},
            "shapes": [
                {"kind": "lstm", "seq_len": 2, "batch": 1, "input_size": 4, "hidden_size": 4}
            ],
        }
    )
    planned = plan(suite, Selection())
    rows = [new_row(p, suite.defaults.count).to_dict() for p in planned]
    for row in rows:
        if row["status"] == "pending":
            row["status"], row["reason"] = "n/a", "IPEX is not installed in this environment"
    return {
        "schema": 1,
        "suite": {"name": suite.name, "description": "", "source": None},
        "settings": {**suite.defaults.model_dump(), "instances": 1, "selection": {}},
        "machine": {
            "cpu": {"model": "test CPU", "vendor": "test", "cores": 2, "threads": 2, "flags": {}},
            "torch": {},
            "openvino": {},
            "ipex": {},
            "nncf": {},
            "threads": {"env": {}},
        },
        "affinity": [0, 1],
        "allocator": "glibc malloc",
        "timer_overhead": {"median_ms": 0.0001},
        "peaks": {},
        "started": "2026-01-01T00:00:00Z",
        "wall_s": 0.1,
        "phases": {},
        "command": "nervana-lstm bench",
        "rows": rows,
    }


def test_report_when_no_row_was_measured(tmp_path: Path) -> None:
    results = _nothing_ran()
    md = render_markdown(results)
    assert "No row was measured." in md
    assert "ipex/fp32 — n/a: IPEX is not installed" in md
    paths = write_report(results, tmp_path / "out")
    assert json.loads(paths["json"].read_text())["rows"] == results["rows"]
    for name in ("speedup", "gflops_vs_hidden"):
        assert paths[name].read_bytes().startswith(PNG_MAGIC)


def test_report_names_the_isa_onednn_reported() -> None:
    results = _nothing_ran()
    row = next(r for r in results["rows"] if r["impl"] == "onednn")
    row["proof"]["onednn"] = {
        "isa": "Intel AVX-512 with Intel DL Boost",
        "rnn": ["brgemm:avx512_core forward_inference"],
    }
    md = render_markdown(results)
    assert "- oneDNN ISA (ONEDNN_VERBOSE): Intel AVX-512 with Intel DL Boost" in md


def test_report_says_when_amx_cannot_run() -> None:
    results = _nothing_ran()
    assert "- AMX: n/a, this CPU has no amx_bf16 flag" in render_markdown(results)
    results["machine"]["cpu"]["flags"] = {"amx_tile": True, "amx_bf16": True}
    assert "AMX: n/a" not in render_markdown(results)


def test_empty_charts_raise_no_warning(tmp_path: Path) -> None:
    from nervana_lstm.perf.report import write_charts

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        paths = write_charts(_nothing_ran(), tmp_path)
    assert all(p.read_bytes().startswith(PNG_MAGIC) for p in paths)


def test_report_states_the_flop_formula_per_kind() -> None:
    from nervana_lstm.perf.flops import GATES_HH, GATES_IH, full_flops

    results = _nothing_ran()
    md = render_markdown(results)
    assert "2·G·H·(I+H)·T·N per layer, G gate blocks: 1 rnn, 3 gru, 4 lstm and dglstm" in md
    assert "depth gate's 2·H·I·T·N" in md
    # the stated formula is the one nervana_lstm.perf.flops computes
    assert (GATES_HH["rnn"], GATES_HH["gru"], GATES_HH["lstm"], GATES_HH["dglstm"]) == (1, 3, 4, 4)
    h, t, n = 8, 3, 2
    one = full_flops("dglstm", t, n, h, h, num_layers=1)
    two = full_flops("dglstm", t, n, h, h, num_layers=2)
    assert two - one == 2 * 4 * h * (h + h) * t * n + 2 * h * h * t * n
    assert GATES_IH["dglstm"] == 5
    results["settings"]["count"] = "recurrent"
    assert "2·G·H²·T·N per layer; G = 1 rnn, 3 gru, 4 lstm and dglstm" in render_markdown(results)
