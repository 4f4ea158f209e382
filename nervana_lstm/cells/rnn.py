"""Elman RNN (tanh): the cell, one step from a precomputed input projection, the unfused stack."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from nervana_lstm.cells.base import STEPS, Cells, ReferenceStack

__all__ = ["RNNReference", "rnn_cell", "rnn_step"]


def rnn_step(
    gx: torch.Tensor, h: torch.Tensor, weight_hh: torch.Tensor, bias_hh: torch.Tensor | None = None
) -> torch.Tensor:
    r"""One tanh RNN step given the input's share ``gx`` (N, H); returns ``h_t`` (N, H).

    .. math::
        \begin{array}{ll}
        g_x = W_{ih} x_t + b_{ih} \\
        h_t = \tanh(g_x + W_{hh} h_{t-1} + b_{hh})
        \end{array}

    ``h`` is :math:`h_{t-1}`; the recurrent part is one matmul.
    """
    return torch.tanh(gx + F.linear(h, weight_hh, bias_hh))


STEPS["rnn"] = rnn_step


def rnn_cell(
    x: torch.Tensor,
    h: torch.Tensor,
    weight_ih: torch.Tensor,
    weight_hh: torch.Tensor,
    bias_ih: torch.Tensor | None = None,
    bias_hh: torch.Tensor | None = None,
) -> torch.Tensor:
    """One tanh RNN step from input ``x`` (N, I); weights as in torch.nn.RNN: (H, I), (H, H)."""
    return rnn_step(F.linear(x, weight_ih, bias_ih), h, weight_hh, bias_hh)


class RNNReference(ReferenceStack):
    r"""Multi-layer Elman RNN with tanh, one time step at a time.

    For each element of the input sequence each layer computes

    .. math::
        h_t = \tanh(W_{ih} x_t + b_{ih} + W_{hh} h_{t-1} + b_{hh})

    where :math:`x_t` is the layer's input (the model input for layer 0, the
    previous layer's :math:`h_t` above it, after dropout when training).
    Numerically equal to ``torch.nn.RNN(nonlinearity="tanh")``.

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
        weight_ih_l[k]: (H, I) for k = 0, (H, D*H) otherwise.
        weight_hh_l[k]: (H, H).
        bias_ih_l[k], bias_hh_l[k]: (H,).
        The backward direction's parameters carry the suffix ``_reverse``.
    """

    kind = "rnn"

    def _cell_step(self, k: int, reverse: bool) -> Callable[..., Cells]:
        weights = self.layer_weights(k, reverse)

        def step(x: torch.Tensor, state: Cells) -> Cells:
            return (rnn_cell(x, state[0], *weights),)  # type: ignore[arg-type]

        return step
