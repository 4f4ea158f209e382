"""The ``premul`` and ``compiled`` forwards: the input projection hoisted out of the time loop.

For every layer the products with the input do not depend on the previous
step, so all ``T`` of them become one GEMM before the loop::

    GX = X W_ih^T + b_ih                 # (T, N, G*H): one (T*N x I) @ (I x G*H) GEMM
    for t in 0..T-1:
        state = <kind>_step(GX[t], state, W_hh, b_hh)   # per-gate recurrent matmuls

The per-step functions are the reference cells' own (``lstm_step``,
``gru_step``, ``rnn_step`` in :mod:`nervana_lstm.cells`), so the arithmetic is
the reference cell's; only where the input matmuls happen changes. This is
fastrnns' classic middle variant between the unfused cell and a fused kernel.
``compiled`` hands the same step function to ``torch.compile`` (inductor).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from nervana_lstm.perf.spec import Unavailable

__all__ = ["premul_forward", "step_function"]


def step_function(kind: str) -> Callable[..., Any]:
    """The reference cell's ``<kind>_step(gx, state, weight_hh, bias_hh)``; Unavailable if none."""
    try:
        module = importlib.import_module(f"nervana_lstm.cells.{kind}")
        return getattr(module, f"{kind}_step")
    except (ImportError, AttributeError):
        raise Unavailable(
            f"the {kind} reference cells offer no per-step function on a precomputed input "
            f"projection ({kind}_step), which premul and compiled are built from"
        ) from None


def premul_forward(net: Any, compile_step: bool = False) -> Callable[[Any], Any]:
    """A forward ``x (T, N, I) -> (out (T, N, H), state)`` over ``net``'s own parameters.

    ``net`` is a reference stack from ``make_rnn(kind, "reference", ...)``
    (unidirectional, no ``lengths``); gradients flow into its parameters.
    """
    import torch
    import torch.nn.functional as F

    kind = net.kind
    if getattr(net, "bidirectional", False):
        raise Unavailable("premul covers unidirectional stacks only")
    if getattr(net, "_needs_lower_cells", False):
        raise Unavailable(
            f"premul covers rnn/lstm/gru: {kind} also feeds each layer the lower layer's cells, "
            "and its fused form (row onednn) already hoists the input projection"
        )
    step = step_function(kind)
    if compile_step:
        step = torch.compile(step, dynamic=False)
    two_states = kind in ("lstm", "dglstm")

    def forward(x: torch.Tensor) -> tuple[torch.Tensor, Any]:
        layer_in = x  # (T, N, I)
        state: Any = None
        for k in range(net.num_layers):
            w_ih, w_hh, b_ih, b_hh = net.layer_weights(k)
            gx = F.linear(layer_in, w_ih, b_ih)  # (T, N, G*H): the hoisted GEMM
            h = layer_in.new_zeros(layer_in.shape[1], net.hidden_size)  # (N, H)
            state = (h, h) if two_states else h
            outs = []
            # unbind, not gx[t]: the backward of one unbind stacks the step gradients once,
            # where T index ops would each allocate a zero (T, N, G*H) gradient
            for gx_t in gx.unbind(0):
                state = step(gx_t, state, w_hh, b_hh)
                outs.append(state[0] if two_states else state)
            layer_in = torch.stack(outs)  # (T, N, H)
        return layer_in, state

    return forward
