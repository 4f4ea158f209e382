"""nervana_lstm.export.graph.build_stack_model: the bare recurrent stack, batch first, with lengths."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nervana_lstm.cells import make_rnn
from nervana_lstm.errors import UsageError
from nervana_lstm.export import compile_rnn
from nervana_lstm.export.graph import GraphSpec, build_stack_model


def _spec(kind: str, layers: int, bidirectional: bool, **kw: object) -> GraphSpec:
    return GraphSpec(
        kind=kind,
        input_size=5,
        hidden_size=6,
        num_layers=layers,
        bidirectional=bidirectional,
        output_size=0,
        input_kind="features",
        per_step=True,
        **kw,
    )


def _weights(net: torch.nn.Module, prefix: str = "") -> dict[str, np.ndarray]:
    return {prefix + k: v.detach().numpy() for k, v in net.state_dict().items()}


@pytest.mark.parametrize(
    ("kind", "layers", "bidirectional"),
    [("rnn", 2, True), ("lstm", 2, True), ("gru", 1, False), ("dglstm", 2, False)],
)
def test_batch_first_states_and_lengths_match_torch(
    kind: str, layers: int, bidirectional: bool
) -> None:
    torch.manual_seed(0)
    net = make_rnn(kind, "fused", 5, 6, num_layers=layers, bidirectional=bidirectional)
    spec = _spec(kind, layers, bidirectional, lengths=True, state_inputs=True)
    model = build_stack_model(_weights(net, "rnn."), spec, prefix="rnn.")
    assert [p.get_any_name() for p in model.inputs] == ["x", "lengths", "h_0", "c_0"][
        : 3 + (kind in ("lstm", "dglstm"))
    ]
    compiled = compile_rnn(model, "f32", threads=1)
    rows = layers * (2 if bidirectional else 1)
    lengths = torch.tensor([7, 3, 1, 5])
    x = torch.randn(7, 4, 5)  # (T, N, I)
    state = tuple(torch.randn(rows, 4, 6) for _ in spec.state_names)  # (L*D, N, H)
    with torch.no_grad():
        y, final = net(x, state if len(state) == 2 else state[0], lengths=lengths)
    final = final if isinstance(final, tuple) else (final,)
    feed = {"x": x.transpose(0, 1).numpy(), "lengths": lengths.numpy()}
    feed.update({f"{s}_0": t.transpose(0, 1).numpy() for s, t in zip("hc", state, strict=False)})
    got = compiled(feed)
    y_ref = y.transpose(0, 1).numpy()  # (N, T, D*H)
    for n, length in enumerate(lengths.tolist()):  # outputs at padded steps are not defined
        np.testing.assert_allclose(got["y"][n, :length], y_ref[n, :length], atol=1e-5, rtol=0)
    names = [o.get_any_name() for o in model.outputs]
    # a stack of sequence ops has no c_n with lengths; a DG-LSTM stack keeps it
    assert names == (["y", "h_n", "c_n"] if kind == "dglstm" else ["y", "h_n"])
    for name, ref in zip(names[1:], final, strict=False):
        np.testing.assert_allclose(got[name], ref.transpose(0, 1).numpy(), atol=1e-5, rtol=0)


def test_time_major_with_batch_first_states() -> None:
    torch.manual_seed(1)
    net = make_rnn("lstm", "fused", 5, 6, num_layers=2)
    spec = _spec("lstm", 2, False, state_inputs=True, batch=3)
    compiled = compile_rnn(build_stack_model(_weights(net), spec, batch_first=False), "f32")
    x = torch.randn(4, 3, 5)  # (T, N, I)
    h0, c0 = torch.randn(2, 3, 6), torch.randn(2, 3, 6)
    with torch.no_grad():
        y, (h, c) = net(x, (h0, c0))
    got = compiled(
        {"x": x.numpy(), "h_0": h0.transpose(0, 1).numpy(), "c_0": c0.transpose(0, 1).numpy()}
    )
    np.testing.assert_allclose(got["y"], y.numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(got["h_n"], h.transpose(0, 1).numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(got["c_n"], c.transpose(0, 1).numpy(), atol=1e-5, rtol=0)


def test_refuses_an_unknown_kind_and_missing_weights() -> None:
    with pytest.raises(UsageError, match="expected one of rnn, lstm, gru, dglstm"):
        build_stack_model({}, _spec("mgu", 1, False))
    with pytest.raises(UsageError, match="no 'weight_ih_l0'"):
        build_stack_model({}, _spec("lstm", 1, False))
