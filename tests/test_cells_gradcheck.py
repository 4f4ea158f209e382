"""float64 gradcheck of every reference cell function and of the stacks' masked loops."""

from __future__ import annotations

import pytest
import torch
from torch.autograd import gradcheck

from nervana_lstm.cells import (
    KINDS,
    dglstm_cell,
    dglstm_step,
    gru_cell,
    gru_step,
    lstm_cell,
    lstm_step,
    make_rnn,
    rnn_cell,
    rnn_step,
)

N, I, H = 2, 3, 4


def _t(*shape: int, gen: torch.Generator) -> torch.Tensor:
    return (torch.randn(*shape, generator=gen, dtype=torch.float64) * 0.5).requires_grad_(True)


def test_rnn_cell() -> None:
    g = torch.Generator().manual_seed(0)
    args = (
        _t(N, I, gen=g),
        _t(N, H, gen=g),
        _t(H, I, gen=g),
        _t(H, H, gen=g),
        _t(H, gen=g),
        _t(H, gen=g),
    )
    assert gradcheck(rnn_cell, args)
    assert gradcheck(rnn_step, (_t(N, H, gen=g), *args[1:2], args[3], args[5]))


def test_lstm_cell() -> None:
    g = torch.Generator().manual_seed(1)
    x, h, c = _t(N, I, gen=g), _t(N, H, gen=g), _t(N, H, gen=g)
    w = (_t(4 * H, I, gen=g), _t(4 * H, H, gen=g), _t(4 * H, gen=g), _t(4 * H, gen=g))
    assert gradcheck(lambda x, h, c, *w: lstm_cell(x, (h, c), *w), (x, h, c, *w))
    gx = _t(N, 4 * H, gen=g)
    assert gradcheck(lambda gx, h, c, wh, bh: lstm_step(gx, (h, c), wh, bh), (gx, h, c, w[1], w[3]))


def test_gru_cell() -> None:
    g = torch.Generator().manual_seed(2)
    x, h = _t(N, I, gen=g), _t(N, H, gen=g)
    w = (_t(3 * H, I, gen=g), _t(3 * H, H, gen=g), _t(3 * H, gen=g), _t(3 * H, gen=g))
    assert gradcheck(gru_cell, (x, h, *w))
    assert gradcheck(gru_step, (_t(N, 3 * H, gen=g), h, w[1], w[3]))


def test_dglstm_cell() -> None:
    g = torch.Generator().manual_seed(3)
    x, h, c, c_low = _t(N, H, gen=g), _t(N, H, gen=g), _t(N, H, gen=g), _t(N, H, gen=g)
    w = (_t(4 * H, H, gen=g), _t(4 * H, H, gen=g), _t(4 * H, gen=g), _t(4 * H, gen=g))
    depth = (_t(H, H, gen=g), _t(H, gen=g), _t(H, gen=g), _t(H, gen=g))

    def cell(x, h, c, c_low, *ws):
        return dglstm_cell(x, (h, c), c_low, *ws)

    assert gradcheck(cell, (x, h, c, c_low, *w, *depth))

    def step(gx, gd, h, c, c_low, wh, bh, wcd, wld):
        return dglstm_step(gx, gd, (h, c), c_low, wh, bh, wcd, wld)

    args = (_t(N, 4 * H, gen=g), _t(N, H, gen=g), h, c, c_low, w[1], w[3], depth[1], depth[2])
    assert gradcheck(step, args)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("impl", ["reference", "fused"])
def test_stack_with_lengths(kind: str, impl: str) -> None:
    # the masked loop and the per-length calls are differentiable too
    torch.manual_seed(0)
    net = make_rnn(kind, impl, I, H, 2).double()
    x = torch.randn(3, N, I, dtype=torch.float64, requires_grad=True)
    lengths = torch.tensor([3, 2])

    def run(x, *params):
        out, state = torch.func.functional_call(
            net, dict(zip(names, params, strict=True)), (x,), {"lengths": lengths}
        )
        states = state if isinstance(state, tuple) else (state,)
        return (out, *states)

    names = [n for n, _ in net.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for _, p in net.named_parameters()]
    assert gradcheck(run, (x, *params))
