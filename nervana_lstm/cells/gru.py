"""GRU (PyTorch's variant): the cell, one step from a precomputed input projection, the unfused stack."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from nervana_lstm.cells.base import STEPS, Cells, ReferenceStack

__all__ = ["GRUReference", "gru_cell", "gru_gates", "gru_step"]


def gru_gates(
    gx: torch.Tensor | Sequence[torch.Tensor],
    h: torch.Tensor,
    weight_hh: torch.Tensor,
    bias_hh: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""The gates of one GRU step, as :func:`gru_step` computes them: ``(r_t, z_t, n_t)``.

    .. math::
        \begin{array}{ll}
        r_t = \sigma(g_{xr} + W_{hr} h_{t-1} + b_{hr}) \\
        z_t = \sigma(g_{xz} + W_{hz} h_{t-1} + b_{hz}) \\
        n_t = \tanh(g_{xn} + r_t \odot (W_{hn} h_{t-1} + b_{hn}))
        \end{array}

    ``gx`` as in :func:`gru_step`; ``h`` is :math:`h_{t-1}` (N, H). Each is (N, H): the
    reset and update gates lie in (0, 1), the candidate ``n_t`` in (-1, 1).
    """
    gx_r, gx_z, gx_n = gx.chunk(3, 1) if isinstance(gx, torch.Tensor) else gx
    w_hr, w_hz, w_hn = weight_hh.chunk(3, 0)  # each (H, H)
    b_hr, b_hz, b_hn = (None,) * 3 if bias_hh is None else bias_hh.chunk(3, 0)
    r = torch.sigmoid(gx_r + F.linear(h, w_hr, b_hr))  # (N, H)
    z = torch.sigmoid(gx_z + F.linear(h, w_hz, b_hz))
    n = torch.tanh(gx_n + r * F.linear(h, w_hn, b_hn))  # reset after the recurrent matmul
    return r, z, n


def gru_step(
    gx: torch.Tensor | Sequence[torch.Tensor],
    h: torch.Tensor,
    weight_hh: torch.Tensor,
    bias_hh: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""One GRU step given the input's share of the gates; returns ``h_t`` (N, H).

    .. math::
        \begin{array}{ll}
        r_t = \sigma(g_{xr} + W_{hr} h_{t-1} + b_{hr}) \\
        z_t = \sigma(g_{xz} + W_{hz} h_{t-1} + b_{hz}) \\
        n_t = \tanh(g_{xn} + r_t \odot (W_{hn} h_{t-1} + b_{hn})) \\
        h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1}
        \end{array}

    ``gx`` is :math:`(g_{xr}|g_{xz}|g_{xn}) = W_{ih} x_t + b_{ih}`, one (N, 3H)
    tensor in gate order r, z, n or three (N, H) tensors; ``h`` is :math:`h_{t-1}`.
    One recurrent matmul per gate; the gates come from :func:`gru_gates`.
    """
    _, z, n = gru_gates(gx, h, weight_hh, bias_hh)
    return (1 - z) * n + z * h


STEPS["gru"] = gru_step


def gru_cell(
    x: torch.Tensor,
    h: torch.Tensor,
    weight_ih: torch.Tensor,
    weight_hh: torch.Tensor,
    bias_ih: torch.Tensor | None = None,
    bias_hh: torch.Tensor | None = None,
) -> torch.Tensor:
    """One GRU step from input ``x`` (N, I): six matmuls, one per gate and operand.

    Weights use torch.nn.GRU's layout: ``weight_ih`` (3H, I), ``weight_hh`` (3H, H),
    biases (3H,), gate order r, z, n. Returns ``h_t`` (N, H).
    """
    b_ih = (None,) * 3 if bias_ih is None else bias_ih.chunk(3, 0)
    gx = [F.linear(x, w, b) for w, b in zip(weight_ih.chunk(3, 0), b_ih, strict=True)]  # 3 x (N, H)
    return gru_step(gx, h, weight_hh, bias_hh)


class GRUReference(ReferenceStack):
    r"""Multi-layer GRU written out gate by gate, one time step at a time.

    For each element of the input sequence each layer computes

    .. math::
        \begin{array}{ll}
        r_t = \sigma(W_{ir} x_t + b_{ir} + W_{hr} h_{t-1} + b_{hr}) \\
        z_t = \sigma(W_{iz} x_t + b_{iz} + W_{hz} h_{t-1} + b_{hz}) \\
        n_t = \tanh(W_{in} x_t + b_{in} + r_t \odot (W_{hn} h_{t-1} + b_{hn})) \\
        h_t = (1 - z_t) \odot n_t + z_t \odot h_{t-1}
        \end{array}

    This is PyTorch's (and cuDNN's) variant: the reset gate scales the result of
    the recurrent matmul, not ``h_{t-1}`` before it. Numerically equal to
    ``torch.nn.GRU``.

    Args:
        input_size, hidden_size, num_layers, bias, batch_first, bidirectional,
        dropout: as in :class:`~nervana_lstm.cells.lstm.LSTMReference`.

    Inputs: input, h_0, lengths
        * **input**: (T, N, I), or (N, T, I) with ``batch_first``.
        * **h_0**: optional (L*D, N, H); zeros when omitted.
        * **lengths**: optional int (N,) of valid steps (padded steps keep the state
          and output zero).

    Outputs: output, h_n
        * **output**: (T, N, D*H) (or (N, T, D*H)).
        * **h_n**: (L*D, N, H), the state after each sequence's last valid step.

    Attributes:
        weight_ih_l[k]: ``(W_ir|W_iz|W_in)``, (3H, I) for k = 0, (3H, D*H) otherwise.
        weight_hh_l[k]: ``(W_hr|W_hz|W_hn)``, (3H, H).
        bias_ih_l[k]: ``(b_ir|b_iz|b_in)``, (3H,).
        bias_hh_l[k]: ``(b_hr|b_hz|b_hn)``, (3H,).
        The backward direction's parameters carry the suffix ``_reverse``.
    """

    kind = "gru"

    def _cell_step(self, k: int, reverse: bool) -> Callable[..., Cells]:
        weights = self.layer_weights(k, reverse)

        def step(x: torch.Tensor, state: Cells) -> Cells:
            return (gru_cell(x, state[0], *weights),)  # type: ignore[arg-type]

        return step
