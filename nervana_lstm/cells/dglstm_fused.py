"""Depth-Gated LSTM, fused: the fastest form we found without a library primitive.

No CPU library ships a DG-LSTM kernel, so this stack does by hand what a fused
RNN primitive does:

* the input projection of every step, LSTM gates and depth gate together, is
  one GEMM per layer: ``[W_ih; W_xd] X + [b_ih; b_d]`` for X of shape (T*N, H);
  the lower cell's share ``w_ld * c^{l-1}`` is one element-wise op for all steps;
* each step runs one recurrent GEMM, ``W_hh h_{t-1} + b_hh`` (N, 4H);
* the element-wise gate math of a step is one function, :func:`dglstm_pointwise`.

It is the reference stack's layer loop (:func:`~nervana_lstm.cells.base.run_layer`)
with the input projection hoisted: :meth:`DGLSTMFused.project` and
:meth:`DGLSTMFused.hoisted_step` are all that differ from the reference.

The gate math runs in eager PyTorch, a measured choice. With torch 2.13 on
1 thread (I=H=256, N=32, T=50, L=2), ``torch.compile`` of the element-wise
step cut inference from 78 to 67 ms but left training unchanged (268 vs
277 ms), after 7-8 s of compiling per shape and mode; TorchScript warns that
it is deprecated in torch 2.13 and does not fuse on CPU by default. The
hoisted GEMMs are what pay: against the reference this stack ran 69 vs 100 ms
(inference) and 226 vs 302 ms (training) at that shape.

The equations, parameters and state_dict are those of
:class:`~nervana_lstm.cells.dglstm.DGLSTMReference`; the two load each other's
state_dict.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
import torch.nn.functional as F

from nervana_lstm.cells.base import Cells
from nervana_lstm.cells.dglstm import DGLSTMReference, depth_weights

__all__ = [
    "DGLSTMFused",
    "dglstm_fused_step",
    "dglstm_pointwise",
    "lstm_fused_step",
    "lstm_pointwise",
]


def lstm_pointwise(gates: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """LSTM gate math from summed pre-activations ``gates`` (N, 4H), order i, f, g, o."""
    i, f, g, o = gates.chunk(4, 1)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def dglstm_pointwise(
    gates: torch.Tensor,
    depth: torch.Tensor,
    c: torch.Tensor,
    c_lower: torch.Tensor,
    weight_cd: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DG-LSTM gate math of one step.

    ``gates`` (N, 4H): summed pre-activations in order i, f, g, o; ``depth`` (N, H):
    ``W_xd x_t + b_d + w_ld * c^{l-1}_t``; ``c`` the previous cell, ``c_lower`` the
    lower cell at this step, ``weight_cd`` (H,). Returns ``(h_t, c_t)``.
    """
    i, f, g, o = gates.chunk(4, 1)
    d = torch.sigmoid(depth + weight_cd * c)
    c = d * c_lower + torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    return torch.sigmoid(o) * torch.tanh(c), c


def lstm_fused_step(
    gx: torch.Tensor,
    state: tuple[torch.Tensor, torch.Tensor],
    weight_hh: torch.Tensor,
    bias_hh: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""One LSTM step on the hoisted ``gx = W_ih x_t + b_ih`` (N, 4H), one recurrent GEMM.

    .. math::
        \begin{array}{ll}
        (a_i|a_f|a_g|a_o) = g_x + W_{hh} h_{t-1} + b_{hh} \\
        c_t = \sigma(a_f) \odot c_{t-1} + \sigma(a_i) \odot \tanh(a_g) \\
        h_t = \sigma(a_o) \odot \tanh(c_t)
        \end{array}

    ``state`` is :math:`(h_{t-1}, c_{t-1})`. Returns ``(h_t, c_t)``, each (N, H).
    """
    h, c = state
    return lstm_pointwise(gx + F.linear(h, weight_hh, bias_hh), c)  # (N, 4H): one GEMM


def dglstm_fused_step(
    gx: torch.Tensor,
    depth: torch.Tensor,
    c_lower: torch.Tensor,
    state: tuple[torch.Tensor, torch.Tensor],
    weight_hh: torch.Tensor,
    bias_hh: torch.Tensor | None,
    weight_cd: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""One DG-LSTM step on the hoisted projections, one recurrent GEMM.

    .. math::
        \begin{array}{ll}
        (a_i|a_f|a_g|a_o) = g_x + W_{hh} h_{t-1} + b_{hh} \\
        d_t = \sigma(g_d + w_{cd} \odot c_{t-1}) \\
        c_t = d_t \odot c^{l-1}_t + \sigma(a_f) \odot c_{t-1}
              + \sigma(a_i) \odot \tanh(a_g) \\
        h_t = \sigma(a_o) \odot \tanh(c_t)
        \end{array}

    ``gx`` (N, 4H) is :math:`W_{ih} x_t + b_{ih}`; ``depth`` (N, H) is
    :math:`g_d = W_{xd} x_t + b_d + w_{ld} \odot c^{l-1}_t`; ``c_lower`` is
    :math:`c^{l-1}_t`; ``state`` is :math:`(h_{t-1}, c_{t-1})`. Returns ``(h_t, c_t)``.
    """
    h, c = state
    gates = gx + F.linear(h, weight_hh, bias_hh)  # (N, 4H): one GEMM
    return dglstm_pointwise(gates, depth, c, c_lower, weight_cd)


class DGLSTMFused(DGLSTMReference):
    """DG-LSTM with hoisted input projections and one recurrent GEMM per step.

    The reference stack's layer loop with ``hoist_input``: :meth:`project` and
    :meth:`hoisted_step` below. Same equations, arguments, inputs, outputs and
    attributes as :class:`~nervana_lstm.cells.dglstm.DGLSTMReference`.
    """

    impl = "fused"
    hoist_input = True

    def project(
        self, k: int, x: torch.Tensor, lower: torch.Tensor | None = None, reverse: bool = False
    ) -> tuple[torch.Tensor, ...]:
        """Layer 0: ``(GX,)``; above: ``(GX, D, C^{l-1})``, all (T, N, *), from one GEMM.

        ``GX = W_ih X + b_ih`` (T, N, 4H) and ``D = W_xd X + b_d + w_ld * C^{l-1}``
        (T, N, H): ``[W_ih; W_xd] X + [b_ih; b_d]`` is one GEMM for all steps, the
        lower cell's share one element-wise op.
        """
        if k == 0:
            return super().project(k, x, lower, reverse)
        w_ih, _, b_ih, _ = self.layer_weights(k)
        w_xd, _, w_ld, b_d = depth_weights(self, k)
        weight = torch.cat([w_ih, w_xd])  # (5H, H)
        bias = None if b_ih is None else torch.cat([b_ih, b_d])  # type: ignore[list-item]
        proj = F.linear(x, weight, bias)  # (T, N, 5H): one GEMM for all steps
        h_size = self.hidden_size
        depth = proj[..., 4 * h_size :] + w_ld * lower  # (T, N, H)
        return proj[..., : 4 * h_size], depth, lower  # type: ignore[return-value]

    def hoisted_step(self, k: int, reverse: bool = False) -> Callable[..., Cells]:
        """Layer 0: :func:`lstm_fused_step`; above: :func:`dglstm_fused_step`."""
        _, w_hh, _, b_hh = self.layer_weights(k)
        if k == 0:
            return partial(lstm_fused_step, weight_hh=w_hh, bias_hh=b_hh)
        w_cd = depth_weights(self, k)[1]
        return partial(dglstm_fused_step, weight_hh=w_hh, bias_hh=b_hh, weight_cd=w_cd)
