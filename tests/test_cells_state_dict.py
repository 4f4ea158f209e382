"""state_dicts: torch.nn's names, loaded between fused, reference and torch.nn."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from nervana_lstm.cells import KINDS, count_params, make_rnn

TORCH_NN = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert list(a) == list(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("bias", [True, False])
def test_torch_nn_round_trip(kind: str, bidirectional: bool, bias: bool) -> None:
    torch.manual_seed(0)
    fused = make_rnn(kind, "fused", 3, 4, 2, bias=bias, bidirectional=bidirectional)
    ref = make_rnn(kind, "reference", 3, 4, 2, bias=bias, bidirectional=bidirectional)
    plain = TORCH_NN[kind](3, 4, 2, bias=bias, bidirectional=bidirectional)
    # names and order are torch.nn's exactly
    assert list(fused.state_dict()) == list(plain.state_dict()) == list(ref.state_dict())
    # torch.nn -> fused -> reference -> torch.nn
    fused.load_state_dict(plain.state_dict())
    ref.load_state_dict(fused.state_dict())
    back = TORCH_NN[kind](3, 4, 2, bias=bias, bidirectional=bidirectional)
    back.load_state_dict(ref.state_dict())
    _same_state(back.state_dict(), plain.state_dict())
    # the fused wrapper's module holds the loaded tensors
    assert torch.equal(fused.module.weight_hh_l1, plain.weight_hh_l1)


@pytest.mark.parametrize("kind", KINDS)
def test_fused_reference_round_trip(kind: str) -> None:
    torch.manual_seed(0)
    a = make_rnn(kind, "fused", 3, 4, 3)
    b = make_rnn(kind, "reference", 3, 4, 3)
    b.load_state_dict(a.state_dict())
    c = make_rnn(kind, "fused", 3, 4, 3)
    c.load_state_dict(b.state_dict())
    _same_state(c.state_dict(), a.state_dict())
    assert sum(p.numel() for p in a.parameters()) == count_params(kind, 3, 4, 3)


def test_fused_state_dict_inside_a_parent_module() -> None:
    # the name rewrite works at any depth: parent.rnn.weight_ih_l0
    torch.manual_seed(0)
    parent = nn.Sequential()
    parent.add_module("rnn", make_rnn("lstm", "fused", 3, 4))
    keys = list(parent.state_dict())
    assert keys == ["rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0", "rnn.bias_hh_l0"]
    other = nn.Sequential()
    other.add_module("rnn", make_rnn("lstm", "reference", 3, 4))
    other.load_state_dict(parent.state_dict())
    _same_state(other.state_dict(), parent.state_dict())
    parent.load_state_dict(other.state_dict())


def test_dglstm_extra_parameters_and_layer_zero() -> None:
    net = make_rnn("dglstm", "reference", 3, 4, 3)
    shapes = {n: tuple(p.shape) for n, p in net.named_parameters()}
    for k in (1, 2):
        assert shapes[f"weight_xd_l{k}"] == (4, 4)
        assert shapes[f"weight_cd_l{k}"] == (4,)
        assert shapes[f"weight_ld_l{k}"] == (4,)
        assert shapes[f"bias_d_l{k}"] == (4,)
    assert not any(n.endswith("d_l0") for n in shapes), "layer 0 has no depth gate"
    # the LSTM part of every layer has torch.nn.LSTM's names and shapes
    lstm = nn.LSTM(3, 4, 3)
    missing, unexpected = lstm.load_state_dict(net.state_dict(), strict=False)
    assert missing == []
    depth = {f"{n}_l{k}" for n in ("weight_xd", "weight_cd", "weight_ld", "bias_d") for k in (1, 2)}
    assert set(unexpected) == depth
    no_bias = make_rnn("dglstm", "fused", 3, 4, 2, bias=False)
    assert not any(n.startswith("bias") for n, _ in no_bias.named_parameters())
    assert sum(p.numel() for p in no_bias.parameters()) == count_params(
        "dglstm", 3, 4, 2, bias=False
    )


def test_strict_load_rejects_a_foreign_state_dict() -> None:
    fused = make_rnn("lstm", "fused", 3, 4)
    with pytest.raises(RuntimeError):
        fused.load_state_dict(nn.GRU(3, 4).state_dict())


@pytest.mark.parametrize(
    ("kind", "bidirectional"),
    [(k, d) for k in KINDS for d in (False, True) if not (k == "dglstm" and d)],
)
@pytest.mark.parametrize("layers", [1, 2, 3])
def test_count_params_matches_modules(kind: str, layers: int, bidirectional: bool) -> None:
    for impl in ("fused", "reference"):
        net = make_rnn(kind, impl, 5, 3, layers, bidirectional=bidirectional)
        actual = sum(p.numel() for p in net.parameters())
        assert actual == count_params(kind, 5, 3, layers, bidirectional=bidirectional)
