"""The bench's premul forward computes what the reference stack computes.

premul hoists the input projection of every step into one GEMM and steps with
the reference cells' ``*_step``; its output, final state of the last layer
and gradients must be the reference module's (float64, tight tolerance), and
the kinds and layouts it does not cover are refused with a reason.
"""

from __future__ import annotations

import pytest
import torch

from nervana_lstm.cells import STEPS, make_rnn
from nervana_lstm.perf.premul import premul_forward, step_function
from nervana_lstm.perf.spec import Unavailable

TOL = 1e-10  # float64


def _loss(out: torch.Tensor, state: tuple[torch.Tensor, ...]) -> torch.Tensor:
    gen = torch.Generator().manual_seed(2)
    total = (out * torch.randn(out.shape, generator=gen, dtype=out.dtype)).sum()
    for s in state:
        total = total + (s * torch.randn(s.shape, generator=gen, dtype=s.dtype)).sum()
    return total


@pytest.mark.parametrize("layers", [1, 3])
@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_premul_matches_the_reference_module(kind: str, layers: int) -> None:
    torch.manual_seed(0)
    ref = make_rnn(kind, "reference", 3, 5, layers).double()
    net = make_rnn(kind, "reference", 3, 5, layers).double()
    net.load_state_dict(ref.state_dict())
    x = torch.randn(6, 4, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))

    x_ref = x.clone().requires_grad_(True)
    out_ref, final_ref = ref(x_ref)
    final_ref = final_ref if isinstance(final_ref, tuple) else (final_ref,)
    last_ref = tuple(s[-1] for s in final_ref)  # the last layer's state, each (N, H)
    _loss(out_ref, last_ref).backward()

    x_pm = x.clone().requires_grad_(True)
    out, state = premul_forward(net)(x_pm)
    state = state if isinstance(state, tuple) else (state,)
    assert len(state) == len(last_ref) and state[0].shape == (4, 5)
    _loss(out, state).backward()

    torch.testing.assert_close(out, out_ref, atol=TOL, rtol=TOL)
    for a, b in zip(state, last_ref, strict=True):
        torch.testing.assert_close(a, b, atol=TOL, rtol=TOL)
    torch.testing.assert_close(x_pm.grad, x_ref.grad, atol=TOL, rtol=TOL)
    ref_grads = dict(ref.named_parameters())
    for name, p in net.named_parameters():
        torch.testing.assert_close(p.grad, ref_grads[name].grad, atol=TOL, rtol=TOL, msg=name)


def test_premul_state_is_bare_h_for_rnn_and_gru() -> None:
    for kind in ("rnn", "gru"):
        net = make_rnn(kind, "reference", 3, 5)
        _, state = premul_forward(net)(torch.randn(2, 4, 3))
        assert isinstance(state, torch.Tensor) and state.shape == (4, 5)


def test_step_function_is_found_by_kind() -> None:
    for kind in ("rnn", "lstm", "gru", "dglstm"):
        assert step_function(kind) is STEPS[kind]
    with pytest.raises(Unavailable, match=r"no per-step function .*\(transformer_step\)"):
        step_function("transformer")


def test_premul_refuses_dglstm_and_two_directions() -> None:
    with pytest.raises(Unavailable, match="premul covers rnn/lstm/gru: dglstm"):
        premul_forward(make_rnn("dglstm", "reference", 3, 5, 2))
    with pytest.raises(Unavailable, match="unidirectional stacks only"):
        premul_forward(make_rnn("lstm", "reference", 3, 5, bidirectional=True))
