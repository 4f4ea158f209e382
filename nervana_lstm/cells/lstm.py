"""LSTM: the cell, one step from a precomputed input projection, and the unfused stack."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
import torch.nn.functional as F

from nervana_lstm.cells.base import STEPS, Cells, ReferenceStack

__all__ = ["LSTMReference", "lstm_cell", "lstm_gates", "lstm_step"]


def lstm_gates(
    gx: torch.Tensor | Sequence[torch.Tensor],
    h: torch.Tensor,
    weight_hh: torch.Tensor,
    bias_hh: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""The gates of one LSTM step, as :func:`lstm_step` computes them: ``(i_t, f_t, g_t, o_t)``.

    .. math::
        \begin{array}{ll}
        i_t = \sigma(g_{xi} + W_{hi} h_{t-1} + b_{hi}) \\
        f_t = \sigma(g_{xf} + W_{hf} h_{t-1} + b_{hf}) \\
        g_t = \tanh(g_{xg} + W_{hg} h_{t-1} + b_{hg}) \\
        o_t = \sigma(g_{xo} + W_{ho} h_{t-1} + b_{ho})
        \end{array}

    ``gx`` as in :func:`lstm_step`; ``h`` is :math:`h_{t-1}` (N, H). Each gate is (N, H):
    the input, forget and output gates lie in (0, 1), the candidate ``g_t`` in (-1, 1).
    """
    gx_i, gx_f, gx_g, gx_o = gx.chunk(4, 1) if isinstance(gx, torch.Tensor) else gx
    w_hi, w_hf, w_hg, w_ho = weight_hh.chunk(4, 0)  # each (H, H)
    b_hi, b_hf, b_hg, b_ho = (None,) * 4 if bias_hh is None else bias_hh.chunk(4, 0)
    i = torch.sigmoid(gx_i + F.linear(h, w_hi, b_hi))  # (N, H)
    f = torch.sigmoid(gx_f + F.linear(h, w_hf, b_hf))
    g = torch.tanh(gx_g + F.linear(h, w_hg, b_hg))
    o = torch.sigmoid(gx_o + F.linear(h, w_ho, b_ho))
    return i, f, g, o


def lstm_step(
    gx: torch.Tensor | Sequence[torch.Tensor],
    state: tuple[torch.Tensor, torch.Tensor],
    weight_hh: torch.Tensor,
    bias_hh: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""One LSTM step given the input's share of the gates.

    .. math::
        \begin{array}{ll}
        i_t = \sigma(g_{xi} + W_{hi} h_{t-1} + b_{hi}) \\
        f_t = \sigma(g_{xf} + W_{hf} h_{t-1} + b_{hf}) \\
        g_t = \tanh(g_{xg} + W_{hg} h_{t-1} + b_{hg}) \\
        o_t = \sigma(g_{xo} + W_{ho} h_{t-1} + b_{ho}) \\
        c_t = f_t \odot c_{t-1} + i_t \odot g_t \\
        h_t = o_t \odot \tanh(c_t)
        \end{array}

    ``gx`` is :math:`(g_{xi}|g_{xf}|g_{xg}|g_{xo}) = W_{ih} x_t + b_{ih}`, either one
    (N, 4H) tensor in gate order i, f, g, o or four (N, H) tensors; ``state`` is
    :math:`(h_{t-1}, c_{t-1})`. The recurrent part is one matmul per gate; the gates
    come from :func:`lstm_gates`.
    Returns ``(h_t, c_t)``, each (N, H).
    """
    h, c = state
    i, f, g, o = lstm_gates(gx, h, weight_hh, bias_hh)
    c = f * c + i * g
    h = o * torch.tanh(c)
    return h, c


STEPS["lstm"] = lstm_step


def lstm_cell(
    x: torch.Tensor,
    state: tuple[torch.Tensor, torch.Tensor],
    weight_ih: torch.Tensor,
    weight_hh: torch.Tensor,
    bias_ih: torch.Tensor | None = None,
    bias_hh: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One LSTM step from input ``x`` (N, I): eight matmuls, one per gate and operand.

    Weights use torch.nn.LSTM's layout: ``weight_ih`` (4H, I), ``weight_hh`` (4H, H),
    biases (4H,), gate order i, f, g, o. Returns ``(h_t, c_t)``, each (N, H).
    """
    b_ih = (None,) * 4 if bias_ih is None else bias_ih.chunk(4, 0)
    gx = [F.linear(x, w, b) for w, b in zip(weight_ih.chunk(4, 0), b_ih, strict=True)]  # 4 x (N, H)
    return lstm_step(gx, state, weight_hh, bias_hh)


class LSTMReference(ReferenceStack):
    r"""Multi-layer LSTM written out gate by gate, one time step at a time.

    For each element of the input sequence each layer computes

    .. math::
        \begin{array}{ll}
        i_t = \sigma(W_{ii} x_t + b_{ii} + W_{hi} h_{t-1} + b_{hi}) \\
        f_t = \sigma(W_{if} x_t + b_{if} + W_{hf} h_{t-1} + b_{hf}) \\
        g_t = \tanh(W_{ig} x_t + b_{ig} + W_{hg} h_{t-1} + b_{hg}) \\
        o_t = \sigma(W_{io} x_t + b_{io} + W_{ho} h_{t-1} + b_{ho}) \\
        c_t = f_t \odot c_{t-1} + i_t \odot g_t \\
        h_t = o_t \odot \tanh(c_t)
        \end{array}

    where :math:`x_t` is the input of the layer (the model input for layer 0,
    the previous layer's :math:`h_t` above it, after dropout when training).
    Every product with a weight is its own matmul (eight per step and layer):
    this is the unfused form, numerically equal to ``torch.nn.LSTM``.

    Args:
        input_size: features of the input, ``I``.
        hidden_size: features of ``h`` and ``c``, ``H``.
        num_layers: stacked layers, ``L``.
        bias: when False the layers have no ``b_ih`` / ``b_hh``.
        batch_first: input and output are (N, T, ...) instead of (T, N, ...).
        bidirectional: add a backward direction per layer (``D = 2``).
        dropout: dropout on each layer's output except the last, when training.

    Inputs: input, state, lengths
        * **input**: (T, N, I), or (N, T, I) with ``batch_first``.
        * **state**: optional ``(h_0, c_0)``, each (L*D, N, H); zeros when omitted.
        * **lengths**: optional int (N,) of valid steps; a padded step leaves the
          state unchanged and outputs zero, and the backward direction starts at
          each sequence's own last step.

    Outputs: output, (h_n, c_n)
        * **output**: (T, N, D*H) (or (N, T, D*H)), ``h_t`` of the last layer.
        * **h_n**, **c_n**: (L*D, N, H), the state after each sequence's last valid step.

    Attributes:
        weight_ih_l[k]: input-hidden weights of layer k, ``(W_ii|W_if|W_ig|W_io)``,
            shape (4H, I) for k = 0 and (4H, D*H) otherwise.
        weight_hh_l[k]: hidden-hidden weights ``(W_hi|W_hf|W_hg|W_ho)``, shape (4H, H).
        bias_ih_l[k]: input-hidden bias ``(b_ii|b_if|b_ig|b_io)``, shape (4H,).
        bias_hh_l[k]: hidden-hidden bias ``(b_hi|b_hf|b_hg|b_ho)``, shape (4H,).
        The backward direction's parameters carry the suffix ``_reverse``.
        All are initialised from U(-1/sqrt(H), 1/sqrt(H)), as in torch.nn.
    """

    kind = "lstm"

    def _cell_step(self, k: int, reverse: bool) -> Callable[..., Cells]:
        w_ih, w_hh, b_ih, b_hh = self.layer_weights(k, reverse)
        return partial(lstm_cell, weight_ih=w_ih, weight_hh=w_hh, bias_ih=b_ih, bias_hh=b_hh)
