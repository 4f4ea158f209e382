"""The ``premul`` and ``compiled`` forwards: the input projection hoisted out of the time loop.

For every layer the products with the input do not depend on the previous
step, so all ``T`` of them become one GEMM before the loop::

    GX = X W_ih^T + b_ih                 # (T, N, G*H): one (T*N x I) @ (I x G*H) GEMM
    for t in 0..T-1:
        state = <kind>_step(GX[t], state, W_hh, b_hh)   # per-gate recurrent matmuls

The loop is the reference stack's own (:func:`nervana_lstm.cells.base.run_layer`)
and the per-step functions are the reference cells' (``lstm_step``, ``gru_step``,
``rnn_step``, found by kind in :data:`nervana_lstm.cells.STEPS`), so the
arithmetic is the reference cell's; only where the input matmuls happen changes. This is
fastrnns' classic middle variant between the unfused cell and a fused kernel.
``compiled`` hands the same step function to ``torch.compile`` (inductor).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nervana_lstm.perf.spec import Unavailable

__all__ = ["premul_forward", "step_function"]


def step_function(kind: str) -> Callable[..., Any]:
    """The reference cell's ``<kind>_step(gx, state, weight_hh, bias_hh)``; Unavailable if none."""
    from nervana_lstm.cells import STEPS

    if kind not in STEPS:
        raise Unavailable(
            f"the {kind} reference cells offer no per-step function on a precomputed input "
            f"projection ({kind}_step), which premul and compiled are built from"
        )
    return STEPS[kind]


def premul_forward(net: Any, compile_step: bool = False) -> Callable[[Any], Any]:
    """A forward ``x (T, N, I) -> (out (T, N, H), state)`` over ``net``'s own parameters.

    ``net`` is a reference stack from ``make_rnn(kind, "reference", ...)``
    (unidirectional, no ``lengths``); gradients flow into its parameters. Each
    layer is the stack's own loop (:func:`~nervana_lstm.cells.base.run_layer`) on
    the stack's hoisted projection (``net.project``); ``state`` is the last
    layer's final ``h`` (rnn, gru) or ``(h, c)`` (lstm), each (N, H).
    """
    import torch

    from nervana_lstm.cells.base import bind_step, run_layer
    from nervana_lstm.choices import has_cell_state

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
    two_states = has_cell_state(kind)

    def forward(x: torch.Tensor) -> tuple[torch.Tensor, Any]:
        layer_in = x  # (T, N, I)
        state: Any = None
        for k in range(net.num_layers):
            _, w_hh, _, b_hh = net.layer_weights(k)
            h = layer_in.new_zeros(layer_in.shape[1], net.hidden_size)  # (N, H)
            init = (h, h) if two_states else (h,)
            gx = net.project(k, layer_in)  # ((T, N, G*H),): the hoisted GEMM
            layer_in, state, _ = run_layer(bind_step(kind, w_hh, b_hh, step), gx, init)
        return layer_in, (state if two_states else state[0])

    return forward
