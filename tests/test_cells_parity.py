"""Fused, reference and torch.nn agree: outputs, final states, gradients.

For every kind and a spread of shapes (one step, one sequence, several
layers, batch_first, variable lengths, bidirectional, no bias, a given initial
state) the fused and reference stacks are loaded with the same weights and
compared with each other and with an independent oracle: ``torch.nn.RNN/LSTM/
GRU`` (with ``pack_padded_sequence`` for variable lengths), or for dglstm a
float64 implementation below that runs each sequence on its own, cut to its
length. Tolerances (fp32): 1e-5 on outputs and states, 1e-4 on gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from nervana_lstm.cells import KINDS, make_rnn

OUT_TOL = 1e-5
GRAD_TOL = 1e-4
TORCH_NN = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


@dataclass(frozen=True)
class Case:
    name: str
    steps: int = 4
    batch: int = 3
    layers: int = 1
    batch_first: bool = False
    bidirectional: bool = False
    bias: bool = True
    lengths: tuple[int, ...] | None = None
    given_state: bool = False


CASES = [
    Case("one_step", steps=1),
    Case("one_sequence", batch=1),
    Case("three_layers", layers=3),
    Case("batch_first", layers=2, batch_first=True),
    Case("no_bias", layers=2, bias=False),
    Case("given_state", layers=2, given_state=True),
    Case("lengths", steps=5, batch=4, layers=2, lengths=(5, 2, 4, 1), given_state=True),
    Case("lengths_batch_first", steps=5, batch=4, layers=2, batch_first=True, lengths=(3, 5, 3, 1)),
    Case("bidirectional", layers=2, bidirectional=True, given_state=True),
    Case(
        "bidirectional_lengths",
        steps=5,
        batch=4,
        layers=2,
        bidirectional=True,
        lengths=(2, 5, 4, 2),
        given_state=True,
    ),
]

I_SIZE, H_SIZE = 3, 5


def _pairs(kind: str, case: Case) -> tuple[nn.Module, nn.Module]:
    torch.manual_seed(0)
    opts = {
        "bias": case.bias,
        "batch_first": case.batch_first,
        "bidirectional": case.bidirectional,
    }
    fused = make_rnn(kind, "fused", I_SIZE, H_SIZE, case.layers, **opts)
    ref = make_rnn(kind, "reference", I_SIZE, H_SIZE, case.layers, **opts)
    ref.load_state_dict(fused.state_dict())
    return fused, ref


def _inputs(kind: str, case: Case, dtype: torch.dtype = torch.float32):
    gen = torch.Generator().manual_seed(1)
    shape = (case.batch, case.steps) if case.batch_first else (case.steps, case.batch)
    x = torch.randn(*shape, I_SIZE, generator=gen, dtype=dtype)
    state = None
    if case.given_state:
        rows = case.layers * (2 if case.bidirectional else 1)
        h = torch.randn(rows, case.batch, H_SIZE, generator=gen, dtype=dtype)
        c = torch.randn(rows, case.batch, H_SIZE, generator=gen, dtype=dtype)
        state = (h, c) if kind in ("lstm", "dglstm") else h
    lengths = None if case.lengths is None else torch.tensor(case.lengths)
    return x, state, lengths


def _as_tuple(state):
    return state if isinstance(state, tuple) else (state,)


def _loss(out: torch.Tensor, state) -> torch.Tensor:
    # fixed pseudo-random weights so every output element and state reaches the loss
    gen = torch.Generator().manual_seed(2)
    total = (out * torch.randn(out.shape, generator=gen, dtype=out.dtype)).sum()
    for s in _as_tuple(state):
        total = total + (s * torch.randn(s.shape, generator=gen, dtype=s.dtype)).sum()
    return total


def _grads(net: nn.Module) -> dict[str, torch.Tensor]:
    return {name.removeprefix("module."): p.grad for name, p in net.named_parameters()}


def _run(net: nn.Module, x, state, lengths):
    x = x.clone().requires_grad_(True)
    state = (
        None if state is None else tuple(s.clone().requires_grad_(True) for s in _as_tuple(state))
    )
    if state is not None and len(state) == 1:
        state = state[0]
    out, final = net(x, state, lengths)
    _loss(out, final).backward()
    state_grads = () if state is None else tuple(s.grad for s in _as_tuple(state))
    return (
        out.detach(),
        tuple(s.detach() for s in _as_tuple(final)),
        x.grad,
        state_grads,
        _grads(net),
    )


def _torch_nn_run(kind: str, case: Case, fused: nn.Module, x, state, lengths):
    """torch.nn itself, with PackedSequence for variable lengths (the oracle)."""
    net = TORCH_NN[kind](
        I_SIZE,
        H_SIZE,
        case.layers,
        bias=case.bias,
        batch_first=case.batch_first,
        bidirectional=case.bidirectional,
    )
    net.load_state_dict(fused.state_dict())
    x = x.clone().requires_grad_(True)
    hx = None if state is None else tuple(s.clone().requires_grad_(True) for s in _as_tuple(state))
    arg = None if hx is None else (hx if len(hx) == 2 else hx[0])
    if lengths is None:
        out, final = net(x, arg)
    else:
        packed = pack_padded_sequence(
            x, lengths, batch_first=case.batch_first, enforce_sorted=False
        )
        out, final = net(packed, arg)
        out, _ = pad_packed_sequence(out, batch_first=case.batch_first, total_length=case.steps)
    _loss(out, final).backward()
    state_grads = () if hx is None else tuple(s.grad for s in hx)
    return (
        out.detach(),
        tuple(s.detach() for s in _as_tuple(final)),
        x.grad,
        state_grads,
        _grads(net),
    )


# ----------------------------------------------------------------- dglstm oracle


def _dglstm_oracle(net: nn.Module, case: Case, x, state, lengths):
    """DG-LSTM from its equations in float64, whole-gate matmuls, one sequence at a time."""
    params = {n: p.detach().double().requires_grad_(True) for n, p in net.named_parameters()}
    xd = x.detach().double().requires_grad_(True)
    hd = cd = None
    if state is not None:
        hd = state[0].detach().double().requires_grad_(True)
        cd = state[1].detach().double().requires_grad_(True)
    seq = xd.transpose(0, 1) if case.batch_first else xd  # (T, N, I)
    outs, h_n, c_n = [], [], []
    for n in range(case.batch):
        length = case.steps if lengths is None else int(lengths[n])
        layer_in = seq[:length, n]  # (len, I)
        lower_cells = None
        h_rows, c_rows = [], []
        for k in range(case.layers):
            h = hd[k, n] if hd is not None else torch.zeros(H_SIZE, dtype=torch.float64)
            c = cd[k, n] if cd is not None else torch.zeros(H_SIZE, dtype=torch.float64)
            hs, cs = [], []
            for t in range(length):
                gates = params[f"weight_ih_l{k}"] @ layer_in[t] + params[f"weight_hh_l{k}"] @ h
                if case.bias:
                    gates = gates + params[f"bias_ih_l{k}"] + params[f"bias_hh_l{k}"]
                i, f, g, o = gates.chunk(4)
                c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                if k > 0:
                    pre = (
                        params[f"weight_xd_l{k}"] @ layer_in[t]
                        + params[f"weight_cd_l{k}"] * c
                        + params[f"weight_ld_l{k}"] * lower_cells[t]
                    )
                    if case.bias:
                        pre = pre + params[f"bias_d_l{k}"]
                    c_new = c_new + torch.sigmoid(pre) * lower_cells[t]
                c = c_new
                h = torch.sigmoid(o) * torch.tanh(c)
                hs.append(h)
                cs.append(c)
            layer_in = torch.stack(hs) if hs else torch.zeros(0, H_SIZE, dtype=torch.float64)
            lower_cells = cs
            h_rows.append(h)
            c_rows.append(c)
        pad = torch.zeros(case.steps - length, H_SIZE, dtype=torch.float64)
        outs.append(torch.cat([layer_in, pad]))  # (T, H)
        h_n.append(torch.stack(h_rows))
        c_n.append(torch.stack(c_rows))
    out = torch.stack(outs, 0 if case.batch_first else 1)
    final = (torch.stack(h_n, 1), torch.stack(c_n, 1))  # (L, N, H)
    _loss(out.float(), tuple(s.float() for s in final)).backward()
    state_grads = () if hd is None else (hd.grad, cd.grad)
    grads = {n: p.grad for n, p in params.items()}
    return out.detach(), tuple(s.detach() for s in final), xd.grad, state_grads, grads


# ----------------------------------------------------------------- comparison


def _close(a: torch.Tensor, b: torch.Tensor, tol: float, what: str) -> None:
    a, b = a.double(), b.double()
    assert a.shape == b.shape, f"{what}: shape {tuple(a.shape)} vs {tuple(b.shape)}"
    err = (a - b).abs().max().item() if a.numel() else 0.0
    assert err <= tol, f"{what}: max abs difference {err:.3g} > {tol}"


def _compare(got, want, label: str) -> None:
    out, final, gx, gstate, gparams = got
    w_out, w_final, w_gx, w_gstate, w_gparams = want
    _close(out, w_out, OUT_TOL, f"{label} output")
    assert len(final) == len(w_final)
    for name, a, b in zip("hc", final, w_final, strict=False):
        _close(a, b, OUT_TOL, f"{label} final {name}")
    _close(gx, w_gx, GRAD_TOL, f"{label} grad input")
    assert len(gstate) == len(w_gstate)
    for name, a, b in zip("hc", gstate, w_gstate, strict=False):
        _close(a, b, GRAD_TOL, f"{label} grad initial {name}")
    assert gparams.keys() == w_gparams.keys()
    for name in gparams:
        _close(gparams[name], w_gparams[name], GRAD_TOL, f"{label} grad {name}")


def _cases_for(kind: str) -> list[Case]:
    return [c for c in CASES if not (kind == "dglstm" and c.bidirectional)]


@pytest.mark.parametrize(
    ("kind", "case"),
    [pytest.param(k, c, id=f"{k}-{c.name}") for k in KINDS for c in _cases_for(k)],
)
def test_fused_reference_and_oracle_agree(kind: str, case: Case) -> None:
    fused, ref = _pairs(kind, case)
    x, state, lengths = _inputs(kind, case)
    got_fused = _run(fused, x, state, lengths)
    got_ref = _run(ref, x, state, lengths)
    _compare(got_fused, got_ref, "fused vs reference")
    if kind == "dglstm":
        oracle = _dglstm_oracle(ref, case, x, state, lengths)
    else:
        oracle = _torch_nn_run(kind, case, fused, x, state, lengths)
    _compare(got_fused, oracle, "fused vs oracle")
    _compare(got_ref, oracle, "reference vs oracle")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("impl", ["fused", "reference"])
def test_padded_steps_output_zero_and_keep_state(kind: str, impl: str) -> None:
    torch.manual_seed(0)
    net = make_rnn(kind, impl, I_SIZE, H_SIZE, 2)
    x = torch.randn(6, 3, I_SIZE)
    lengths = torch.tensor([6, 3, 0])
    out, state = net(x, lengths=lengths)
    assert torch.all(out[3:, 1] == 0) and torch.all(out[:, 2] == 0)
    # the sequence of length 3 ends where the same sequence cut to 3 steps ends
    short_out, short_state = net(x[:3, 1:2])
    _close(out[:3, 1:2], short_out, OUT_TOL, "length-3 output")
    for a, b in zip(_as_tuple(state), _as_tuple(short_state), strict=True):
        _close(a[:, 1:2], b, OUT_TOL, "length-3 state")
        assert torch.all(a[:, 2] == 0)  # length 0: the (zero) initial state


def test_dglstm_one_layer_is_torch_lstm() -> None:
    torch.manual_seed(0)
    x = torch.randn(4, 2, I_SIZE)
    lstm = nn.LSTM(I_SIZE, H_SIZE)
    for impl in ("fused", "reference"):
        net = make_rnn("dglstm", impl, I_SIZE, H_SIZE, 1)
        net.load_state_dict(lstm.state_dict())
        out, (h, c) = net(x)
        w_out, (w_h, w_c) = lstm(x)
        _close(out, w_out, OUT_TOL, f"{impl} output")
        _close(h, w_h, OUT_TOL, f"{impl} h")
        _close(c, w_c, OUT_TOL, f"{impl} c")


def test_dropout_between_layers_only_in_training() -> None:
    torch.manual_seed(0)
    for kind in KINDS:
        for impl in ("fused", "reference"):
            net = make_rnn(kind, impl, I_SIZE, H_SIZE, 2, dropout=0.5)
            plain = make_rnn(kind, impl, I_SIZE, H_SIZE, 2)
            plain.load_state_dict(net.state_dict())
            x = torch.randn(4, 2, I_SIZE)
            net.eval()
            _close(net(x)[0], plain(x)[0], OUT_TOL, f"{kind} {impl} eval")
            net.train()
            assert (net(x)[0] - plain(x)[0]).abs().max() > 1e-3, f"{kind} {impl}: no dropout"


def test_reference_loop_is_per_gate() -> None:
    # the reference must be the unfused form: one matmul per gate and operand
    calls = []
    original = F.linear

    def counting(*args, **kwargs):
        calls.append(args[1].shape)
        return original(*args, **kwargs)

    net = make_rnn("lstm", "reference", I_SIZE, H_SIZE, 1)
    x = torch.randn(3, 2, I_SIZE)
    try:
        F.linear = counting
        net(x)
    finally:
        F.linear = original
    assert len(calls) == 3 * 8
    assert all(shape[0] == H_SIZE for shape in calls)
