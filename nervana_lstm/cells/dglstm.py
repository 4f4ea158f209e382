"""Depth-Gated LSTM (Yao et al. 2015): the cell, one step from projections, the unfused stack."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from nervana_lstm.cells.base import STEPS, Cells, ReferenceStack
from nervana_lstm.cells.lstm import lstm_cell, lstm_gates
from nervana_lstm.errors import UsageError

__all__ = ["DGLSTMReference", "depth_weights", "dglstm_cell", "dglstm_gates", "dglstm_step"]


def _check_lower(c_lower: torch.Tensor, c: torch.Tensor) -> None:
    # the depth gate adds the lower cell to this one element by element
    if c_lower.shape != c.shape:
        raise UsageError(
            "dglstm needs the lower layer's cell to match this layer's: expected c_lower of "
            f"shape {tuple(c.shape)} (N, H), got {tuple(c_lower.shape)}"
        )


def dglstm_gates(
    gx: torch.Tensor | Sequence[torch.Tensor],
    gd: torch.Tensor,
    state: tuple[torch.Tensor, torch.Tensor],
    c_lower: torch.Tensor,
    weight_hh: torch.Tensor,
    bias_hh: torch.Tensor | None,
    weight_cd: torch.Tensor,
    weight_ld: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    r"""The gates of one DG-LSTM step, as :func:`dglstm_step` computes them.

    Returns ``(i_t, f_t, g_t, o_t, d_t)``, each (N, H): the LSTM gates of
    :func:`~nervana_lstm.cells.lstm.lstm_gates` and the depth gate

    .. math::
        d_t = \sigma(g_d + w_{cd} \odot c_{t-1} + w_{ld} \odot c^{l-1}_t)

    Arguments as in :func:`dglstm_step`.
    """
    h, c = state
    _check_lower(c_lower, c)
    i, f, g, o = lstm_gates(gx, h, weight_hh, bias_hh)
    d = torch.sigmoid(gd + weight_cd * c + weight_ld * c_lower)
    return i, f, g, o, d


def dglstm_step(
    gx: torch.Tensor | Sequence[torch.Tensor],
    gd: torch.Tensor,
    state: tuple[torch.Tensor, torch.Tensor],
    c_lower: torch.Tensor,
    weight_hh: torch.Tensor,
    bias_hh: torch.Tensor | None,
    weight_cd: torch.Tensor,
    weight_ld: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""One DG-LSTM step of a layer above the first, given the input's share of the gates.

    .. math::
        \begin{array}{ll}
        i_t = \sigma(g_{xi} + W_{hi} h_{t-1} + b_{hi}) \\
        f_t = \sigma(g_{xf} + W_{hf} h_{t-1} + b_{hf}) \\
        g_t = \tanh(g_{xg} + W_{hg} h_{t-1} + b_{hg}) \\
        o_t = \sigma(g_{xo} + W_{ho} h_{t-1} + b_{ho}) \\
        d_t = \sigma(g_d + w_{cd} \odot c_{t-1} + w_{ld} \odot c^{l-1}_t) \\
        c_t = d_t \odot c^{l-1}_t + f_t \odot c_{t-1} + i_t \odot g_t \\
        h_t = o_t \odot \tanh(c_t)
        \end{array}

    ``gx`` is :math:`(g_{xi}|g_{xf}|g_{xg}|g_{xo}) = W_{ih} x_t + b_{ih}` as one (N, 4H)
    tensor (gate order i, f, g, o) or four (N, H) tensors; ``gd`` is
    :math:`g_d = W_{xd} x_t + b_d` (N, H); ``state`` is :math:`(h_{t-1}, c_{t-1})`;
    ``c_lower`` is :math:`c^{l-1}_t`, the lower layer's cell at the same step (N, H).
    One recurrent matmul per gate; the gates come from :func:`dglstm_gates`.
    Returns ``(h_t, c_t)``, each (N, H).
    """
    h, c = state
    i, f, g, o, d = dglstm_gates(gx, gd, state, c_lower, weight_hh, bias_hh, weight_cd, weight_ld)
    c = d * c_lower + f * c + i * g
    h = o * torch.tanh(c)
    return h, c


STEPS["dglstm"] = dglstm_step


def dglstm_cell(
    x: torch.Tensor,
    state: tuple[torch.Tensor, torch.Tensor],
    c_lower: torch.Tensor,
    weight_ih: torch.Tensor,
    weight_hh: torch.Tensor,
    bias_ih: torch.Tensor | None,
    bias_hh: torch.Tensor | None,
    weight_xd: torch.Tensor,
    weight_cd: torch.Tensor,
    weight_ld: torch.Tensor,
    bias_d: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One DG-LSTM step of a layer above the first, from input ``x`` (N, H).

    LSTM weights in torch.nn.LSTM's layout (``weight_ih`` (4H, H), ``weight_hh``
    (4H, H), biases (4H,), gate order i, f, g, o) plus the depth gate's ``weight_xd``
    (H, H), ``weight_cd`` (H,), ``weight_ld`` (H,), ``bias_d`` (H,). One matmul per
    gate and operand. Returns ``(h_t, c_t)``, each (N, H).
    """
    b_ih = (None,) * 4 if bias_ih is None else bias_ih.chunk(4, 0)
    gx = [F.linear(x, w, b) for w, b in zip(weight_ih.chunk(4, 0), b_ih, strict=True)]
    gd = F.linear(x, weight_xd, bias_d)  # (N, H)
    return dglstm_step(gx, gd, state, c_lower, weight_hh, bias_hh, weight_cd, weight_ld)


def depth_weights(
    net: nn.Module, k: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(weight_xd, weight_cd, weight_ld, bias_d)`` of layer ``k >= 1`` of a dglstm stack."""
    if not 1 <= k < net.num_layers:
        raise UsageError(f"depth gates exist in layers 1..{net.num_layers - 1}, got layer {k}")
    bias = getattr(net, f"bias_d_l{k}") if net.bias else None
    return (
        getattr(net, f"weight_xd_l{k}"),
        getattr(net, f"weight_cd_l{k}"),
        getattr(net, f"weight_ld_l{k}"),
        bias,
    )


class DGLSTMReference(ReferenceStack):
    r"""Multi-layer Depth-Gated LSTM (Yao et al. 2015), one gate and one step at a time.

    Layer 0 is a plain LSTM layer (it has no lower cell). Every layer
    :math:`l \geq 1` runs an LSTM whose cell also takes the cell of the layer
    below at the same step, :math:`c^{l-1}_t`, through a depth gate:

    .. math::
        \begin{array}{ll}
        i_t = \sigma(W_{ii} x_t + b_{ii} + W_{hi} h_{t-1} + b_{hi}) \\
        f_t = \sigma(W_{if} x_t + b_{if} + W_{hf} h_{t-1} + b_{hf}) \\
        g_t = \tanh(W_{ig} x_t + b_{ig} + W_{hg} h_{t-1} + b_{hg}) \\
        o_t = \sigma(W_{io} x_t + b_{io} + W_{ho} h_{t-1} + b_{ho}) \\
        d_t = \sigma(W_{xd} x_t + b_d + w_{cd} \odot c_{t-1} + w_{ld} \odot c^{l-1}_t) \\
        c_t = d_t \odot c^{l-1}_t + f_t \odot c_{t-1} + i_t \odot g_t \\
        h_t = o_t \odot \tanh(c_t)
        \end{array}

    where :math:`x_t = h^{l-1}_t` (after dropout when training). The depth gate
    adds the lower layer's cell to the upper one, so every layer has the same
    hidden size ``H``: that is the kind's size constraint, and why it has one
    direction only. :math:`w_{cd}` and :math:`w_{ld}` are vectors (element-wise
    weights, like the peepholes of the original paper).

    Args:
        input_size, hidden_size, num_layers, bias, batch_first, dropout: as in
        :class:`~nervana_lstm.cells.lstm.LSTMReference`. ``bidirectional`` must be False.

    Inputs: input, (h_0, c_0), lengths
        * **input**: (T, N, I), or (N, T, I) with ``batch_first``.
        * **h_0**, **c_0**: optional, each (L, N, H); zeros when omitted.
        * **lengths**: optional int (N,) of valid steps (padded steps keep the state
          and output zero).

    Outputs: output, (h_n, c_n)
        * **output**: (T, N, H) (or (N, T, H)).
        * **h_n**, **c_n**: (L, N, H), the state after each sequence's last valid step.

    Attributes:
        weight_ih_l[k], weight_hh_l[k], bias_ih_l[k], bias_hh_l[k]: as in torch.nn.LSTM
            (gate order i, f, g, o); these alone load into ``torch.nn.LSTM``, and layer 0
            is exactly a torch.nn.LSTM layer.
        weight_xd_l[k]: depth gate input weights :math:`W_{xd}`, (H, H), for k >= 1.
        weight_cd_l[k]: :math:`w_{cd}`, on this layer's previous cell, (H,), for k >= 1.
        weight_ld_l[k]: :math:`w_{ld}`, on the lower layer's cell, (H,), for k >= 1.
        bias_d_l[k]: :math:`b_d`, (H,), for k >= 1 (absent with ``bias=False``).
        All are initialised from U(-1/sqrt(H), 1/sqrt(H)). Layer 0 has no depth
        parameters.
    """

    kind = "dglstm"
    _needs_lower_cells = True

    def _add_parameters(self) -> None:
        h = self.hidden_size
        for k in range(1, self.num_layers):
            self.register_parameter(f"weight_xd_l{k}", nn.Parameter(torch.empty(h, h)))
            self.register_parameter(f"weight_cd_l{k}", nn.Parameter(torch.empty(h)))
            self.register_parameter(f"weight_ld_l{k}", nn.Parameter(torch.empty(h)))
            if self.bias:
                self.register_parameter(f"bias_d_l{k}", nn.Parameter(torch.empty(h)))

    def _cell_step(self, k: int, reverse: bool) -> Callable[..., Cells]:
        w_ih, w_hh, b_ih, b_hh = self.layer_weights(k)
        if k == 0:
            return partial(lstm_cell, weight_ih=w_ih, weight_hh=w_hh, bias_ih=b_ih, bias_hh=b_hh)
        weights = (w_ih, w_hh, b_ih, b_hh, *depth_weights(self, k))

        def step(x: torch.Tensor, c_lower: torch.Tensor, state: Cells) -> Cells:
            return dglstm_cell(x, state, c_lower, *weights)  # type: ignore[arg-type]

        return step
