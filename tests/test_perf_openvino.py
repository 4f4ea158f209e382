"""The bench's openvino implementation on the converted graph: every kind, its proof, int8."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from nervana_lstm.perf.openvino_impl import TOLERANCES, build_openvino
from nervana_lstm.perf.spec import Spec, Unavailable, WrongResult, make_inputs, make_net


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


# ------------------------------------------- bf16 and int8 really run where the CPU has them


def test_bf16_runs_in_bf16_where_the_cpu_has_it() -> None:
    from tests.conftest import cpu_runs_bf16

    spec = _spec("lstm", "bf16")
    if not cpu_runs_bf16():
        with pytest.raises(Unavailable, match="BF16"):
            build_openvino(spec)
        return
    variant = build_openvino(spec)
    proof = variant.proof
    assert (proof["sequence_layer"], proof["sequence_precision"]) == ("RNNSeq", "bf16")
    assert proof["precision_hint"] == "bf16"
    # bf16 rounding shows in the output (f32 would be within 1e-5), inside the stated gate
    assert TOLERANCES["fp32"] < proof["max_abs_error_vs_torch"] <= TOLERANCES["bf16"]
    ref = _torch_output(spec)
    error = np.abs(np.asarray(variant.call()["y"]) - ref).max()
    assert TOLERANCES["fp32"] < error <= TOLERANCES["bf16"]


def test_int8_lstm_runs_in_8_bits_within_its_tolerance() -> None:
    """One layer at H=32: NNCF's quantized LSTMSequence runs in u8 and stays in the gate."""
    from tests.conftest import cpu_runs_int8

    _needs_nncf()
    spec = dataclasses.replace(_spec("lstm", "int8", layers=1), input_size=16, hidden_size=32)
    if not cpu_runs_int8():
        with pytest.raises(Unavailable, match="INT8"):
            build_openvino(spec)
        return
    variant = build_openvino(spec)
    proof = variant.proof
    assert proof["sequence_layer"] == "RNNSeq"
    assert {"u8", "i8"} & set(proof["sequence_precision"].split(","))
    assert proof["precision_hint"] == "f32"
    # quantized (an f32 model would be within 1e-5 of torch) and within the stated gate
    assert TOLERANCES["fp32"] < proof["max_abs_error_vs_torch"] <= TOLERANCES["int8"]
    assert TOLERANCES == {"fp32": 1e-4, "bf16": 5e-2, "int8": 1e-1}  # as the README states


def test_a_wrong_result_is_an_error_not_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    from nervana_lstm.perf import openvino_impl

    monkeypatch.setitem(openvino_impl.TOLERANCES, "fp32", -1.0)  # no output can pass
    with pytest.raises(WrongResult, match="differs from torch"):
        build_openvino(_spec("lstm", "fp32", layers=1))


def test_an_int8_lstm_left_in_float_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Timing float as int8 would be a wrong row; NNCF's known float RNN is n/a instead."""
    from nervana_lstm.perf import openvino_impl

    _needs_nncf()
    monkeypatch.setattr(openvino_impl, "_quantize", lambda model, x: model)  # quantizes nothing
    with pytest.raises(WrongResult, match="unquantized"):
        build_openvino(_spec("lstm", "int8", layers=1))
    with pytest.raises(Unavailable, match="RNN sequence op unquantized"):
        build_openvino(_spec("rnn", "int8", layers=1))


def _torch_output(spec: Spec) -> np.ndarray:
    import torch

    with torch.no_grad():
        return make_net(spec, "fused")(make_inputs(spec))[0].numpy()
