"""The one layer loop: run_layer, the hoisted configuration of a stack, the step registry.

``run_layer`` is checked against loops written out here; a reference stack
with ``hoist_input`` (one GEMM for the input's share of all steps) against the
same stack stepping on ``x_t``, in float64, with lengths, both directions and
a given state, on outputs, final states and gradients.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nervana_lstm import choices
from nervana_lstm.cells import (
    IMPLS,
    KINDS,
    STEPS,
    common,
    dglstm_step,
    gru_step,
    lstm_step,
    make_rnn,
    rnn_step,
)
from nervana_lstm.cells.base import bind_step, run_layer
from nervana_lstm.errors import UsageError

TOL = 1e-10  # float64


def _sum_step(x: torch.Tensor, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """h_t = h_{t-1} + x_t: the state after a step is the running sum of the inputs."""
    return (state[0] + x,)


def test_run_layer_forward_reverse_and_mask() -> None:
    x = torch.arange(1.0, 13.0).reshape(4, 3, 1)  # (T, N, 1)
    h0 = (torch.zeros(3, 1),)
    out, (h,), cells = run_layer(_sum_step, (x,), h0)
    assert cells is None
    torch.testing.assert_close(out, x.cumsum(0))
    torch.testing.assert_close(h, x.sum(0))

    out, (h,), _ = run_layer(_sum_step, (x,), h0, reverse=True)
    torch.testing.assert_close(out, x.flip(0).cumsum(0).flip(0))
    torch.testing.assert_close(h, x.sum(0))

    lengths = torch.tensor([4, 1, 0])
    mask = (torch.arange(4).unsqueeze(1) < lengths).unsqueeze(2)  # (T, N, 1)
    for reverse in (False, True):
        out, (h,), _ = run_layer(_sum_step, (x,), h0, mask, reverse=reverse)
        for n, length in enumerate(lengths.tolist()):
            valid = x[:length, n]
            running = valid.flip(0).cumsum(0).flip(0) if reverse else valid.cumsum(0)
            torch.testing.assert_close(out[:length, n], running)
            assert bool((out[length:, n] == 0).all()), "padded steps output zero"
            torch.testing.assert_close(h[n], valid.sum(0))


def test_run_layer_passes_every_input_and_keeps_cells() -> None:
    gen = torch.Generator().manual_seed(0)
    a, b = torch.randn(5, 2, 3, generator=gen), torch.randn(5, 2, 3, generator=gen)
    seen = []

    def step(a_t, b_t, state):
        seen.append((a_t, b_t))
        h, c = state
        return h + a_t, c * 0.5 + b_t

    state0 = (torch.zeros(2, 3), torch.ones(2, 3))
    out, (h, c), cells = run_layer(step, (a, b), state0, keep_cells=True)
    assert len(seen) == 5
    for t, (a_t, b_t) in enumerate(seen):
        assert torch.equal(a_t, a[t]) and torch.equal(b_t, b[t])
    c_want, cells_want = torch.ones(2, 3), []
    for t in range(5):
        c_want = c_want * 0.5 + b[t]
        cells_want.append(c_want)
    torch.testing.assert_close(cells, torch.stack(cells_want))
    torch.testing.assert_close(c, c_want)
    torch.testing.assert_close(out, a.cumsum(0))
    torch.testing.assert_close(h, a.sum(0))


def test_step_registry_names_every_kind() -> None:
    assert set(STEPS) == set(KINDS)
    want = {"rnn": rnn_step, "lstm": lstm_step, "gru": gru_step, "dglstm": dglstm_step}
    assert want == STEPS


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_bind_step_is_the_kind_step_on_tuple_states(kind: str) -> None:
    gen = torch.Generator().manual_seed(0)
    g, h_size = choices.gate_count(kind), 4
    gx = torch.randn(2, g * h_size, generator=gen)
    h, c = torch.randn(2, h_size, generator=gen), torch.randn(2, h_size, generator=gen)
    w_hh, b_hh = torch.randn(g * h_size, h_size, generator=gen), torch.randn(g * h_size)
    state = (h, c) if kind == "lstm" else (h,)
    got = bind_step(kind, w_hh, b_hh)(gx, state)
    want = STEPS[kind](gx, state if kind == "lstm" else h, w_hh, b_hh)
    want = want if isinstance(want, tuple) else (want,)
    assert isinstance(got, tuple) and len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert torch.equal(a, b)


def test_bind_step_refuses_dglstm() -> None:
    w = torch.zeros(16, 4)
    with pytest.raises(ValueError, match="DGLSTMFused is the hoisted dglstm"):
        bind_step("dglstm", w, None)


def test_reference_project_is_one_gemm_for_all_steps() -> None:
    torch.manual_seed(0)
    net = make_rnn("gru", "reference", 3, 5, 2)
    x = torch.randn(4, 2, 3)
    (gx,) = net.project(0, x)
    assert gx.shape == (4, 2, 15)
    torch.testing.assert_close(gx, F.linear(x, net.weight_ih_l0, net.bias_ih_l0))


def test_fused_dglstm_projects_gates_depth_and_lower_cells() -> None:
    torch.manual_seed(0)
    net = make_rnn("dglstm", "fused", 3, 5, 2)
    assert net.hoist_input
    x, lower = torch.randn(4, 2, 5), torch.randn(4, 2, 5)
    gx, depth, low = net.project(1, x, lower)
    torch.testing.assert_close(gx, F.linear(x, net.weight_ih_l1, net.bias_ih_l1))
    want = F.linear(x, net.weight_xd_l1, net.bias_d_l1) + net.weight_ld_l1 * lower
    torch.testing.assert_close(depth, want)
    assert low is lower


CASES = [
    {"layers": 2},
    {"layers": 2, "bias": False},
    {"layers": 2, "batch_first": True, "lengths": (5, 2, 4, 1)},
    {"layers": 2, "bidirectional": True, "given_state": True},
    {"layers": 2, "bidirectional": True, "given_state": True, "lengths": (2, 5, 0, 3)},
]


def _run(net, x, state, lengths):
    x = x.clone().requires_grad_(True)
    out, final = net(x, state, lengths)
    final = final if isinstance(final, tuple) else (final,)
    gen = torch.Generator().manual_seed(2)
    loss = (out * torch.randn(out.shape, generator=gen, dtype=out.dtype)).sum()
    for s in final:
        loss = loss + (s * torch.randn(s.shape, generator=gen, dtype=s.dtype)).sum()
    loss.backward()
    grads = {name: p.grad for name, p in net.named_parameters()}
    return out.detach(), [s.detach() for s in final], x.grad, grads


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(f"{k}={v}" for k, v in c.items()))
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_hoisted_reference_stack_matches_stepping_on_x(kind: str, case: dict) -> None:
    opts = {k: case[k] for k in ("bias", "batch_first", "bidirectional") if k in case}
    torch.manual_seed(0)
    stepping = make_rnn(kind, "reference", 3, 4, case["layers"], **opts).double()
    hoisted = make_rnn(kind, "reference", 3, 4, case["layers"], **opts).double()
    hoisted.load_state_dict(stepping.state_dict())
    hoisted.hoist_input = True
    assert not stepping.hoist_input, "the configuration is per module"

    gen = torch.Generator().manual_seed(1)
    steps, batch = 5, 4
    shape = (batch, steps) if case.get("batch_first") else (steps, batch)
    x = torch.randn(*shape, 3, generator=gen, dtype=torch.float64)
    state = None
    if case.get("given_state"):
        rows = case["layers"] * (2 if case.get("bidirectional") else 1)
        h = torch.randn(rows, batch, 4, generator=gen, dtype=torch.float64)
        state = (h, h.flip(1)) if kind == "lstm" else h
    lengths = torch.tensor(case["lengths"]) if "lengths" in case else None

    want = _run(stepping, x, state, lengths)
    got = _run(hoisted, x, state, lengths)
    torch.testing.assert_close(got[0], want[0], atol=TOL, rtol=TOL)
    for a, b in zip(got[1], want[1], strict=True):
        torch.testing.assert_close(a, b, atol=TOL, rtol=TOL)
    torch.testing.assert_close(got[2], want[2], atol=TOL, rtol=TOL)
    assert got[3].keys() == want[3].keys()
    for name in want[3]:
        torch.testing.assert_close(got[3][name], want[3][name], atol=TOL, rtol=TOL, msg=name)


def test_common_takes_its_names_from_choices() -> None:
    assert common.KINDS == choices.KINDS == KINDS
    assert common.IMPLS == choices.CELLS_IMPLS == IMPLS
    assert common.has_cell_state is choices.has_cell_state
    for kind in KINDS:
        assert common.gate_count(kind) == choices.gate_count(kind)
    with pytest.raises(UsageError, match="unknown cell kind 'transformer'"):
        common.gate_count("transformer")
