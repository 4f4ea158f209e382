"""The bench's openvino implementation on the converted graph: every kind, its proof, int8."""

from __future__ import annotations

import numpy as np
import pytest

from nervana_lstm.perf.openvino_impl import build_openvino
from nervana_lstm.perf.spec import Spec, Unavailable, make_inputs, make_net


def _spec(kind: str, dtype: str, layers: int = 2) -> Spec:
    return Spec(
        kind=kind,
        impl="openvino",
        mode="infer",
        dtype=dtype,
        threads=1,
        seq_len=5,
        batch=4,
        input_size=8,
        hidden_size=16,
        num_layers=layers,
    )


def _needs_nncf() -> None:
    from nervana_lstm.backends import dist_version

    if dist_version("nncf") is None:
        pytest.skip("nncf is not installed")


@pytest.mark.parametrize(
    ("kind", "layers", "layer_type"),
    [
        ("rnn", 2, "RNNSeq"),
        ("lstm", 2, "RNNSeq"),
        ("gru", 2, "RNNSeq"),
        ("dglstm", 1, "RNNSeq"),
        ("dglstm", 2, "TensorIterator"),
    ],
)
def test_fp32_runs_every_kind_and_says_what_ran(kind: str, layers: int, layer_type: str) -> None:
    spec = _spec(kind, "fp32", layers)
    variant = build_openvino(spec)
    proof = variant.proof
    assert proof["sequence_layer"] == layer_type
    assert proof["sequence_precision"] == "f32"
    assert proof["precision_hint"] == "f32"
    assert proof["max_abs_error_vs_torch"] < 1e-5
    assert variant.backend == f"OpenVINO {layer_type} in f32"
    # the timed call computes what the torch module computes
    import torch

    with torch.no_grad():
        ref = make_net(spec, "fused")(make_inputs(spec))[0].numpy()
    np.testing.assert_allclose(variant.call()["y"], ref, atol=1e-5, rtol=0)


def test_int8_lstm_runs_its_sequence_ops_in_8_bits() -> None:
    _needs_nncf()
    variant = build_openvino(_spec("lstm", "int8"))
    assert {"u8", "i8"} & set(variant.proof["sequence_precision"].split(","))
    assert variant.proof["precision_hint"] == "f32"
    assert variant.proof["max_abs_error_vs_torch"] < 1e-1


def test_int8_dglstm_is_quantized_or_says_why_not() -> None:
    _needs_nncf()
    try:
        variant = build_openvino(_spec("dglstm", "int8"))
    except Unavailable as exc:
        assert "NNCF" in str(exc) and "TensorIterator" in str(exc)
    else:
        assert {"u8", "i8"} & set(variant.proof["sequence_precision"].split(","))
