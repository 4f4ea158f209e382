"""The ONEDNN_VERBOSE parser, on lines captured from torch 2.13 and torch 2.8 (IPEX stack)."""

from __future__ import annotations

from pathlib import Path

import pytest

from nervana_lstm.perf.verbose import BEGIN, END, fused_lstm_flag, parse_verbose, split_by_marker

DATA = Path(__file__).parent / "data"


@pytest.mark.parametrize(
    ("name", "version"),
    [("onednn_verbose_torch213.txt", "3.12.0"), ("onednn_verbose_torch28.txt", "3.7.1")],
)
def test_captured_lstm_run(name: str, version: str) -> None:
    # one LSTM inference forward, then one training forward + backward
    log = parse_verbose((DATA / name).read_text())
    assert log.version == version
    assert log.runtime == "OpenMP"
    assert log.isa is not None and "AVX" in log.isa
    rnn = [(e.impl, e.prop_kind) for e in log.of("rnn")]
    assert rnn[0] == ("brgemm:avx512_core", "forward_inference")
    assert [k for _, k in rnn] == ["forward_inference", "forward_training", "backward"]
    assert all(e.alg == "alg:vanilla_lstm" for e in log.of("rnn"))
    assert log.of("reorder"), "weight reorders are executed primitives too"
    summary = log.summary()
    assert "brgemm:avx512_core forward_inference" in summary["rnn"]
    assert fused_lstm_flag("lstm", "onednn", log) is None


def test_isa_line_keeps_its_commas() -> None:
    log = parse_verbose((DATA / "onednn_verbose_torch28.txt").read_text())
    assert log.isa is not None
    assert log.isa.startswith("Intel AVX-512 with float16, Intel DL Boost")


def test_only_exec_lines_count() -> None:
    text = "\n".join(
        [
            "onednn_verbose,v1,primitive,create:cache_miss,cpu,rnn,ref,forward_training,a,b,c,p,1.0",
            "onednn_verbose,v1,primitive,exec:check,primitive,unused primitive execution argument",
            "some unrelated output line",
            "onednn_verbose,v1,primitive,exec,cpu,matmul,brg:avx512_core,undef,md,attr,,2x3:3x4,0.5",
        ]
    )
    log = parse_verbose(text)
    assert [(e.primitive, e.impl, e.time_ms) for e in log.execs] == [
        ("matmul", "brg:avx512_core", 0.5)
    ]


def test_legacy_and_timestamped_formats() -> None:
    text = "\n".join(
        [
            "dnnl_verbose,info,cpu,isa:Intel AVX2",
            "dnnl_verbose,exec,cpu,rnn,jit:avx2,forward_inference,mds,attr,alg:vanilla_gru,l1t2,0.3",
            "onednn_verbose,v1,1700000000123.5,primitive,exec,cpu,rnn,ref,backward,m,a,alg:x,p,0.1",
        ]
    )
    log = parse_verbose(text)
    assert log.isa == "Intel AVX2"
    assert [(e.impl, e.prop_kind) for e in log.of("rnn")] == [
        ("jit:avx2", "forward_inference"),
        ("ref", "backward"),
    ]


def test_flag_when_fused_lstm_runs_no_rnn_primitive() -> None:
    log = parse_verbose(
        "onednn_verbose,v1,primitive,exec,cpu,matmul,brg:avx512_core,undef,m,a,,p,0.2"
    )
    flag = fused_lstm_flag("lstm", "onednn", log)
    assert flag is not None and "matmul" in flag
    assert fused_lstm_flag("gru", "onednn", log) is None  # torch has no fused GRU to miss
    assert fused_lstm_flag("lstm", "native", log) is None  # native is meant to avoid it


def test_split_by_marker() -> None:
    text = f"header\n{BEGIN} a\nline1\nline2\n{END} a\n{BEGIN} b\n{END} b\ntrailer"
    assert split_by_marker(text) == {"a": "line1\nline2", "b": ""}
