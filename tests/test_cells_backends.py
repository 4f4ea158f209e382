"""The fused paths on real backends: bf16 autocast, oneDNN's RNN primitive, IPEX."""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys

import pytest
import torch

from nervana_lstm.backends import quiet_native_output
from nervana_lstm.cells import KINDS, make_rnn
from nervana_lstm.precision import autocast

#: bf16 keeps 8 significant bits (relative step 2^-8 = 0.0039). With H=16, T=6 and
#: two layers the largest error seen against fp32 was 0.0054 (tanh RNN), so the
#: bound leaves room for another machine's summation order.
BF16_TOL = 0.03


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("impl", ["fused", "reference"])
def test_bf16_autocast_stays_close(kind: str, impl: str) -> None:
    torch.manual_seed(0)
    net = make_rnn(kind, impl, 8, 16, 2)
    x = torch.randn(6, 3, 8)
    lengths = torch.tensor([6, 4, 1])
    want, want_state = net(x, lengths=lengths)
    with autocast("bf16"):  # what training and the bench run under
        out, state = net(x, lengths=lengths)
    assert out.shape == want.shape
    # bf16 really ran: its rounding shows (fp32 would match exactly), within the bound
    assert 0 < (out.float() - want).abs().max().item() < BF16_TOL
    if impl == "fused" and kind in ("lstm", "rnn"):
        assert out.dtype == torch.bfloat16  # torch's fused LSTM and RNN return bf16 outputs
    states = state if isinstance(state, tuple) else (state,)
    wants = want_state if isinstance(want_state, tuple) else (want_state,)
    for s, w in zip(states, wants, strict=True):
        assert (s.float() - w).abs().max().item() < BF16_TOL
    out.float().square().mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


_ONEDNN_SCRIPT = """
import torch
from nervana_lstm.cells import make_rnn
torch.manual_seed(0)
net = make_rnn("lstm", "fused", 8, 16, 2, batch_first=True)
x = torch.randn(3, 5, 8)
with torch.no_grad():
    net(x)
out, _ = net(x, lengths=torch.tensor([5, 3, 2]))
out.sum().backward()
print("done")
"""

_RNN_LINE = re.compile(r"^onednn_verbose,(?:v\d+,)?primitive,exec,cpu,rnn,([^,]+),([^,]+),", re.M)


def test_fused_lstm_runs_onednn_rnn_primitive() -> None:
    env = {**os.environ, "ONEDNN_VERBOSE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", _ONEDNN_SCRIPT], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = _RNN_LINE.findall(done.stdout)
    assert lines, "no oneDNN rnn primitive ran:\n" + done.stdout[-2000:]
    kinds = {prop for _, prop in lines}
    assert "forward_inference" in kinds
    assert "forward_training" in kinds and "backward" in kinds


def test_native_path_is_not_onednn() -> None:
    # the counter-check: GRU runs ATen's own kernels, no rnn primitive
    script = _ONEDNN_SCRIPT.replace('"lstm"', '"gru"')
    env = {**os.environ, "ONEDNN_VERBOSE": "1"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "done" in done.stdout
    assert not _RNN_LINE.search(done.stdout)


@pytest.mark.ipex
@pytest.mark.parametrize("lengths", [None, (5, 2, 4)], ids=["full", "lengths"])
def test_ipex_optimize_keeps_outputs_and_gradients(ipex, lengths) -> None:
    torch.manual_seed(0)
    net = make_rnn("lstm", "fused", 4, 6, 2)
    plain = copy.deepcopy(net)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    with quiet_native_output():
        model, opt = ipex.optimize(net, optimizer=opt, dtype=torch.float32)
    # IPEX replaced the torch.nn.LSTM inside the wrapper with its own LSTM
    assert type(model.module).__module__.startswith("intel_extension_for_pytorch")
    assert list(model.state_dict()) == list(plain.state_dict())
    x = torch.randn(5, 3, 4)
    lens = None if lengths is None else torch.tensor(lengths)
    with quiet_native_output():
        out, (h, c) = model(x, lengths=lens)
        (out.square().sum() + h.sum() + c.sum()).backward()
    w_out, (w_h, w_c) = plain(x, lengths=lens)
    (w_out.square().sum() + w_h.sum() + w_c.sum()).backward()
    assert (out - w_out).abs().max().item() <= 1e-5
    assert (h - w_h).abs().max().item() <= 1e-5
    assert (c - w_c).abs().max().item() <= 1e-5
    grads = dict(plain.named_parameters())
    for name, p in model.named_parameters():
        assert (p.grad - grads[name].grad).abs().max().item() <= 1e-4, name
    opt.step()  # the optimizer IPEX returned updates the swapped module's weights
    assert not torch.equal(model.module.weight_hh_l0, plain.module.weight_hh_l0)
