"""nervana_lstm.export.convert: fused torch RNNs to OpenVINO, with pinned precision and proof of what ran."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nervana_lstm.cells import make_rnn
from nervana_lstm.errors import UsageError
from nervana_lstm.export import (
    compile_rnn,
    convert_rnn,
    precision_supported,
    runtime_layers,
    runtime_summary,
)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn"])
def test_f32_matches_torch_at_any_length(kind: str) -> None:
    torch.manual_seed(0)
    net = make_rnn(kind, "fused", 5, 7, num_layers=2)
    model = convert_rnn(net)
    assert model.inputs[0].get_any_name() == "x"
    names = [o.get_any_name() for o in model.outputs]
    assert names == (["y", "h_n", "c_n"] if kind == "lstm" else ["y", "h_n"])
    compiled = compile_rnn(model, "f32", threads=1)
    for steps, batch in ((3, 2), (9, 4)):  # dynamic steps and batch
        x = torch.randn(steps, batch, 5)
        with torch.no_grad():
            y, state = net(x)
        got = compiled({"x": x.numpy()})
        np.testing.assert_allclose(got["y"], y.numpy(), atol=1e-5)
        h = state[0] if kind == "lstm" else state
        np.testing.assert_allclose(got["h_n"], h.numpy(), atol=1e-5)
    assert runtime_summary(compiled)["RNNSeq"] == "f32"
    assert all(
        {"name", "layerType", "runtimePrecision"} <= row.keys() for row in runtime_layers(compiled)
    )


def test_bf16_is_explicit_and_proven() -> None:
    ok, why = precision_supported("bf16")
    if not ok:
        pytest.skip(f"this CPU cannot run OpenVINO bf16: {why}")
    net = make_rnn("lstm", "fused", 4, 8)
    compiled = compile_rnn(convert_rnn(net), "bf16", threads=1)
    import openvino as ov

    assert compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.bf16
    assert runtime_summary(compiled)["RNNSeq"] == "bf16"


def test_refuses_what_it_cannot_convert_faithfully() -> None:
    with pytest.raises(UsageError, match="steps through time in Python"):
        convert_rnn(make_rnn("lstm", "reference", 4, 8))
    with pytest.raises(UsageError, match="expected one of"):
        compile_rnn(convert_rnn(make_rnn("gru", "fused", 4, 8)), "fp8")


@pytest.mark.parametrize("with_state", [False, True])
def test_batch_first_module_keeps_its_layout(with_state: bool) -> None:
    torch.manual_seed(0)
    net = make_rnn("lstm", "fused", 4, 8, batch_first=True)  # x (N, T, I)
    compiled = compile_rnn(convert_rnn(net, with_state=with_state), "f32", threads=1)
    x = torch.randn(3, 5, 4)
    h0, c0 = torch.randn(1, 3, 8), torch.randn(1, 3, 8)
    with torch.no_grad():
        y, (h, c) = net(x, (h0, c0) if with_state else None)
    feed = {"x": x.numpy()}
    if with_state:
        feed.update(h_0=h0.numpy(), c_0=c0.numpy())
    got = compiled(feed)
    np.testing.assert_allclose(got["y"], y.numpy(), atol=1e-5)
    np.testing.assert_allclose(got["h_n"], h.numpy(), atol=1e-5)
    np.testing.assert_allclose(got["c_n"], c.numpy(), atol=1e-5)
