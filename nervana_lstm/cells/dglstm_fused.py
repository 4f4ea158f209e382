"""Depth-Gated LSTM, fused: the fastest form we found without a library primitive.

No CPU library ships a DG-LSTM kernel, so this stack does by hand what a fused
RNN primitive does:

* the input projection of every step, LSTM gates and depth gate together, is
  one GEMM per layer: ``[W_ih; W_xd] X + [b_ih; b_d]`` for X of shape (T*N, H);
  the lower cell's share ``w_ld * c^{l-1}`` is one element-wise op for all steps;
* each step runs one recurrent GEMM, ``W_hh h_{t-1} + b_hh`` (N, 4H);
* the element-wise gate math of a step is one function, :func:`dglstm_pointwise`.

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

import torch
import torch.nn.functional as F

from nervana_lstm.cells.base import Cells
from nervana_lstm.cells.dglstm import DGLSTMReference, depth_weights

__all__ = ["DGLSTMFused", "dglstm_pointwise", "lstm_pointwise"]


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


class DGLSTMFused(DGLSTMReference):
    """DG-LSTM with hoisted input projections and one recurrent GEMM per step.

    Same equations, arguments, inputs, outputs and attributes as
    :class:`~nervana_lstm.cells.dglstm.DGLSTMReference`.
    """

    impl = "fused"

    def _run_layer(
        self,
        k: int,
        reverse: bool,
        x: torch.Tensor,
        state: Cells,
        mask: torch.Tensor | None,
        lower: torch.Tensor | None,
    ) -> tuple[torch.Tensor, Cells, torch.Tensor | None]:
        w_ih, w_hh, b_ih, b_hh = self.layer_weights(k)
        h_size = self.hidden_size
        if k == 0:
            gx = F.linear(x, w_ih, b_ih)  # (T, N, 4H): one GEMM for all steps
            depth = None
        else:
            w_xd, w_cd, w_ld, b_d = depth_weights(self, k)
            weight = torch.cat([w_ih, w_xd])  # (5H, H)
            bias = None if b_ih is None else torch.cat([b_ih, b_d])  # type: ignore[list-item]
            proj = F.linear(x, weight, bias)  # (T, N, 5H): one GEMM for all steps
            gx = proj[..., : 4 * h_size]
            depth = proj[..., 4 * h_size :] + w_ld * lower  # (T, N, H)
        h, c = state
        steps = x.shape[0]
        # unbind once: indexing gx[t] in the loop would make backward scatter each
        # step's gradient into a fresh (T, N, 5H) buffer
        gx_t = gx.unbind(0)
        depth_t = None if depth is None else depth.unbind(0)
        lower_t = None if lower is None else lower.unbind(0)
        mask_t = None if mask is None else mask.unbind(0)
        outs: list[torch.Tensor] = [x] * steps
        cells: list[torch.Tensor] = [x] * steps
        for t in range(steps):
            gates = gx_t[t] + F.linear(h, w_hh, b_hh)  # (N, 4H): one GEMM per step
            if depth_t is None:
                h_new, c_new = lstm_pointwise(gates, c)
            else:
                h_new, c_new = dglstm_pointwise(gates, depth_t[t], c, lower_t[t], w_cd)
            if mask_t is None:
                h, c = h_new, c_new
                outs[t] = h
            else:
                m = mask_t[t]  # (N, 1)
                h, c = torch.where(m, h_new, h), torch.where(m, c_new, c)
                outs[t] = torch.where(m, h_new, h_new.new_zeros(()))
            cells[t] = c
        return torch.stack(outs), (h, c), torch.stack(cells)
