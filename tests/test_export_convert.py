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


# ---------------------------------------------------------------- built from the weights


def _state(kind: str, rows: int, batch: int, hidden: int) -> tuple[torch.Tensor, ...]:
    n = 2 if kind in ("lstm", "dglstm") else 1
    return tuple(torch.randn(rows, batch, hidden) for _ in range(n))


def _check_against_torch(
    net: torch.nn.Module,
    kind: str,
    batch_first: bool,
    with_state: bool,
    rows: int,
    hidden: int,
    features: int,
) -> None:
    """convert_rnn(net) at f32 against net on two (steps, batch) sizes, to 1e-5."""
    compiled = compile_rnn(convert_rnn(net, with_state=with_state), "f32", threads=1)
    for steps, batch in ((1, 1), (6, 3)):
        x = (
            torch.randn(batch, steps, features)
            if batch_first
            else torch.randn(steps, batch, features)
        )
        state = _state(kind, rows, batch, hidden)
        init = (state if len(state) == 2 else state[0]) if with_state else None
        with torch.no_grad():
            y, final = net(x, init)
        final = final if isinstance(final, tuple) else (final,)
        feed = {"x": x.numpy()}
        if with_state:
            feed.update({f"{s}_0": t.numpy() for s, t in zip("hc", state, strict=False)})
        got = compiled(feed)
        np.testing.assert_allclose(got["y"], y.numpy(), atol=1e-5, rtol=0)
        assert [o.get_any_name() for o in compiled.outputs] == ["y", "h_n", "c_n"][: 1 + len(final)]
        for name, ref in zip(("h_n", "c_n"), final, strict=False):
            np.testing.assert_allclose(got[name], ref.numpy(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_one_sequence_op_per_layer(kind: str, bidirectional: bool) -> None:
    from nervana_lstm.export.graph import SEQUENCE_OPS, sequence_op_counts

    net = make_rnn(kind, "fused", 5, 6, num_layers=3, bidirectional=bidirectional)
    counts = sequence_op_counts(convert_rnn(net, with_state=True))
    recurrent = {
        k: v for k, v in counts.items() if k.endswith("Sequence") or k in ("Loop", "TensorIterator")
    }
    assert recurrent == {SEQUENCE_OPS[kind]: 3}
    # a time loop unrolled into per-step ops would show as MatMuls outside any sequence op
    assert "MatMul" not in counts


@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_sequence_kinds_match_torch(
    kind: str, bidirectional: bool, batch_first: bool, with_state: bool
) -> None:
    torch.manual_seed(1)
    net = make_rnn(
        kind, "fused", 5, 6, num_layers=2, bidirectional=bidirectional, batch_first=batch_first
    )
    rows = 2 * (2 if bidirectional else 1)
    _check_against_torch(net, kind, batch_first, with_state, rows, 6, 5)


@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_bare_torch_modules_convert(kind: str, batch_first: bool) -> None:
    torch.manual_seed(2)
    cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind]
    net = cls(4, 7, num_layers=2, bidirectional=True, batch_first=batch_first).eval()
    _check_against_torch(net, kind, batch_first, True, 4, 7, 4)


def test_module_without_bias_converts() -> None:
    torch.manual_seed(3)
    net = make_rnn("gru", "fused", 4, 6, num_layers=2, bias=False)
    _check_against_torch(net, "gru", False, True, 2, 6, 4)
    net = make_rnn("dglstm", "fused", 4, 6, num_layers=2, bias=False)
    _check_against_torch(net, "dglstm", False, True, 2, 6, 4)


@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize("batch_first", [False, True])
@pytest.mark.parametrize("layers", [1, 2, 3])
def test_dglstm_matches_the_torch_stack(layers: int, batch_first: bool, with_state: bool) -> None:
    from nervana_lstm.export.graph import sequence_op_counts

    torch.manual_seed(4)
    net = make_rnn("dglstm", "fused", 5, 6, num_layers=layers, batch_first=batch_first)
    counts = sequence_op_counts(convert_rnn(net))
    # one layer has no lower cell: an LSTM, and so an LSTMSequence
    expected = {"LSTMSequence": 1} if layers == 1 else {"TensorIterator": layers}
    assert {k: v for k, v in counts.items() if k in ("LSTMSequence", "TensorIterator")} == expected
    _check_against_torch(net, "dglstm", batch_first, with_state, layers, 6, 5)


def test_refuses_modules_it_cannot_build() -> None:
    with pytest.raises(UsageError, match="got Linear"):
        convert_rnn(torch.nn.Linear(3, 4))
    with pytest.raises(UsageError, match="mode 'RNN_RELU'"):
        convert_rnn(torch.nn.RNN(3, 4, nonlinearity="relu"))
    with pytest.raises(UsageError, match="proj_size=2"):
        convert_rnn(torch.nn.LSTM(3, 4, proj_size=2))
    with pytest.raises(UsageError, match="reads 3 features per step; input_size=5"):
        convert_rnn(torch.nn.GRU(3, 4), 5)
    with pytest.raises(UsageError, match="reference implementation"):
        convert_rnn(make_rnn("dglstm", "reference", 4, 4, num_layers=2))


def test_conversion_leaves_the_module_as_it_was() -> None:
    net = make_rnn("lstm", "fused", 4, 6, dropout=0.5, num_layers=2).train()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    convert_rnn(net)
    assert net.training
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
