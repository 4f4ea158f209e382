"""The bench's premul forward computes what the reference stack computes.

premul hoists the input projection of every step into one GEMM and steps with
the reference cells' ``*_step``; its output, final state of the last layer
and gradients must be the reference module's (float64, tight tolerance), and
the kinds and layouts it does not cover are refused with a reason. The bench
rows built from it (``premul``, and ``compiled`` through torch.compile) are
checked the same way in float32 at 1e-5.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from nervana_lstm.cells import STEPS, make_rnn
from nervana_lstm.perf.premul import premul_forward, step_function
from nervana_lstm.perf.spec import Spec, Unavailable, make_inputs, make_net, step_output

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


# ------------------------------------------------ the bench rows built from premul_forward

ROW_TOL = 1e-5  # float32, one small shape


def _spec(kind: str, impl: str, mode: str) -> Spec:
    return Spec(
        kind=kind, impl=impl, mode=mode, dtype="fp32", threads=1,
        seq_len=5, batch=3, input_size=4, hidden_size=6, num_layers=2,
    )  # fmt: skip


def _record_nets(monkeypatch: pytest.MonkeyPatch) -> list[torch.nn.Module]:
    """The modules the bench builders make, so a test can read the row's gradients."""
    from nervana_lstm.perf import torch_impls

    nets: list[torch.nn.Module] = []
    real = torch_impls.make_net

    def recording(spec: Spec, cells_impl: str) -> torch.nn.Module:
        nets.append(real(spec, cells_impl))
        return nets[-1]

    monkeypatch.setattr(torch_impls, "make_net", recording)
    return nets


def _reference_step(spec: Spec, ref: torch.nn.Module) -> torch.Tensor:
    """What the bench's training call computes, on the reference module: mean(out²), backward."""
    ref.zero_grad(set_to_none=True)
    loss = step_output(ref(make_inputs(spec))).float().square().mean()
    loss.backward()
    return loss.detach()


def _assert_same_grads(net: torch.nn.Module, ref: torch.nn.Module) -> None:
    ref_grads = dict(ref.named_parameters())
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        torch.testing.assert_close(p.grad, ref_grads[name].grad, atol=ROW_TOL, rtol=0, msg=name)


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_premul_rows_compute_the_reference_outputs_and_gradients(
    kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nervana_lstm.perf.impls import build

    spec = _spec(kind, "premul", "infer")
    out, state = build(spec).call()
    with torch.no_grad():
        want, want_state = make_net(spec, "reference")(make_inputs(spec))
    torch.testing.assert_close(out, want, atol=ROW_TOL, rtol=0)
    states = state if isinstance(state, tuple) else (state,)
    wants = want_state if isinstance(want_state, tuple) else (want_state,)
    for s, w in zip(states, wants, strict=True):
        torch.testing.assert_close(s, w[-1], atol=ROW_TOL, rtol=0)  # the last layer's state

    nets = _record_nets(monkeypatch)
    spec = _spec(kind, "premul", "train")
    loss = build(spec).call()
    ref = make_net(spec, "reference")
    torch.testing.assert_close(loss, _reference_step(spec, ref), atol=ROW_TOL, rtol=0)
    _assert_same_grads(nets[-1], ref)


@pytest.mark.slow
def test_compiled_row_compiles_and_computes_the_reference_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One small LSTM through torch.compile (inductor): two training steps, each one's loss
    and gradients equal to the reference module's."""
    from torch._dynamo.utils import counters

    from nervana_lstm.perf.impls import build

    nets = _record_nets(monkeypatch)
    spec = dataclasses.replace(_spec("lstm", "compiled", "train"), num_layers=1)
    counters.clear()
    variant = build(spec)  # compiles, and takes one step on the way
    assert counters["frames"]["ok"] >= 1 and counters["stats"]["unique_graphs"] >= 1, counters
    assert not counters["graph_break"], dict(counters["graph_break"])
    net, ref = nets[-1], make_net(spec, "reference")
    _reference_step(spec, ref)
    _assert_same_grads(net, ref)  # the first step's, at the initial weights
    with torch.no_grad():
        for p in ref.parameters():
            p -= 1e-3 * p.grad  # the row's SGD step (lr 1e-3)
    torch.testing.assert_close(variant.call(), _reference_step(spec, ref), atol=ROW_TOL, rtol=0)
    _assert_same_grads(net, ref)
