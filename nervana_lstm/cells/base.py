"""The unfused recurrent stack: torch.nn parameters, a Python loop over time.

:func:`run_layer` is the one loop over the steps of a layer: it feeds each
step's inputs to a step function, holds finished sequences with a per-step
mask, and runs either direction. Everything that runs a layer step by step
goes through it: the reference stacks, the fused DG-LSTM and the bench's
premul forward.

:class:`ReferenceStack` owns what every reference kind shares: parameters
named and laid out as in ``torch.nn.RNN/LSTM/GRU``, input and state checks,
layers and directions, dropout between layers, and ``lengths`` handled with a
per-step mask. A subclass supplies the cell: ``kind`` and :meth:`_cell_step`.
A stack with ``hoist_input = True`` instead computes the input's share of
every step in one GEMM before the loop (:meth:`ReferenceStack.project`) and
steps on it (:meth:`ReferenceStack.hoisted_step`).

:data:`STEPS` maps each kind to its ``<kind>_step``, the step from a
precomputed input projection; each kind's module registers its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nervana_lstm.cells.common import (
    State,
    check_input,
    check_lengths,
    check_sizes,
    check_state,
    gate_count,
    has_cell_state,
    init_bound,
    step_mask,
)

__all__ = ["STEPS", "Cells", "ReferenceStack", "bind_step", "direction_suffixes", "run_layer"]

#: The state of one layer inside the loop: ``(h,)`` or ``(h, c)``, each (N, H).
Cells = tuple[torch.Tensor, ...]

#: ``<kind>_step(gx, state, ...)`` of every kind, filled by the kind's module.
STEPS: dict[str, Callable[..., Any]] = {}


def run_layer(
    step: Callable[..., Cells],
    inputs: Sequence[torch.Tensor],
    state: Cells,
    mask: torch.Tensor | None = None,
    *,
    reverse: bool = False,
    keep_cells: bool = False,
) -> tuple[torch.Tensor, Cells, torch.Tensor | None]:
    """Run one layer over all its steps: ``state = step(*inputs_t, state)`` for each t.

    ``inputs`` are the sequences the step reads, each (T, N, *): the layer's
    input, or its projection computed for all steps at once. ``state`` is the
    state before the first step, ``mask`` an optional (T, N, 1) bool, True where
    step t is inside sequence n: a padded step keeps the state and outputs
    zero, so the backward direction (``reverse``) starts at each sequence's
    own last step, since everything after it is padding.

    Returns the outputs ``h_t`` (T, N, H), the state after each sequence's last
    valid step, and with ``keep_cells`` the cell ``c_t`` of every step (T, N, H)
    (which a DG-LSTM layer above reads), else None.
    """
    steps = inputs[0].shape[0]
    # unbind once rather than index x[t]: backward of an index op would scatter
    # each step's gradient into a fresh (T, N, *) buffer
    per_step = list(zip(*(x.unbind(0) for x in inputs), strict=True))
    mask_t = None if mask is None else mask.unbind(0)
    outs: list[torch.Tensor] = [state[0]] * steps  # placeholders, every slot is overwritten
    cells: list[torch.Tensor] | None = [state[0]] * steps if keep_cells else None
    order = range(steps - 1, -1, -1) if reverse else range(steps)
    for t in order:
        new = step(*per_step[t], state)
        if mask_t is None:
            state = new
            outs[t] = new[0]
        else:
            m = mask_t[t]  # (N, 1)
            state = tuple(torch.where(m, n, s) for n, s in zip(new, state, strict=True))
            outs[t] = torch.where(m, new[0], new[0].new_zeros(()))
        if cells is not None:
            cells[t] = state[1]
    return torch.stack(outs), state, None if cells is None else torch.stack(cells)


def bind_step(
    kind: str,
    weight_hh: torch.Tensor,
    bias_hh: torch.Tensor | None,
    step: Callable[..., Any] | None = None,
) -> Callable[..., Cells]:
    """A layer's step on a hoisted projection, in :func:`run_layer`'s form ``(gx_t, state)``.

    For rnn, lstm and gru. ``step`` is ``<kind>_step`` (default ``STEPS[kind]``;
    a compiled form of it also fits), called with this layer's recurrent
    weights; rnn and gru steps take and give a bare ``h``, which is wrapped
    into the loop's ``(h,)``.
    """
    if kind == "dglstm":
        raise ValueError(
            "bind_step covers rnn, lstm and gru: dglstm_step also reads the depth gate's "
            "projection and the lower layer's cell; DGLSTMFused is the hoisted dglstm"
        )
    fn = STEPS[kind] if step is None else step
    if has_cell_state(kind):
        return partial(fn, weight_hh=weight_hh, bias_hh=bias_hh)

    def one_state(gx: torch.Tensor, state: Cells) -> Cells:
        return (fn(gx, state[0], weight_hh, bias_hh),)

    return one_state


def direction_suffixes(bidirectional: bool) -> tuple[str, ...]:
    """Parameter-name suffixes: ``""`` for forward, ``"_reverse"`` for the backward direction."""
    return ("", "_reverse") if bidirectional else ("",)


class ReferenceStack(nn.Module):
    """Base of the unfused stacks; see the per-kind subclasses for the equations."""

    kind: str = ""
    impl: str = "reference"
    #: True: each layer projects the input of all its steps in one GEMM before the
    #: time loop (:meth:`project`) and steps with :meth:`hoisted_step`; False: each
    #: step runs the cell on ``x_t``, one matmul per gate and operand.
    hoist_input: bool = False

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        bias: bool = True,
        batch_first: bool = False,
        bidirectional: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        check_sizes(self.kind, input_size, hidden_size, num_layers, bidirectional, dropout)
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.bidirectional = bidirectional
        self.dropout = float(dropout)
        self.num_directions = 2 if bidirectional else 1
        rows = gate_count(self.kind) * hidden_size
        for k in range(num_layers):
            layer_in = input_size if k == 0 else self.num_directions * hidden_size
            for sfx in direction_suffixes(bidirectional):
                self.register_parameter(
                    f"weight_ih_l{k}{sfx}", nn.Parameter(torch.empty(rows, layer_in))
                )
                self.register_parameter(
                    f"weight_hh_l{k}{sfx}", nn.Parameter(torch.empty(rows, hidden_size))
                )
                if bias:
                    self.register_parameter(f"bias_ih_l{k}{sfx}", nn.Parameter(torch.empty(rows)))
                    self.register_parameter(f"bias_hh_l{k}{sfx}", nn.Parameter(torch.empty(rows)))
        self._add_parameters()
        self.reset_parameters()

    def _add_parameters(self) -> None:
        """Extra parameters of a kind (the depth gate of dglstm); none by default."""

    def reset_parameters(self) -> None:
        bound = init_bound(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def layer_weights(self, k: int, reverse: bool = False) -> tuple[torch.Tensor | None, ...]:
        """``(weight_ih, weight_hh, bias_ih, bias_hh)`` of layer ``k``; biases None without bias."""
        sfx = "_reverse" if reverse else ""
        w_ih = getattr(self, f"weight_ih_l{k}{sfx}")
        w_hh = getattr(self, f"weight_hh_l{k}{sfx}")
        if not self.bias:
            return w_ih, w_hh, None, None
        return w_ih, w_hh, getattr(self, f"bias_ih_l{k}{sfx}"), getattr(self, f"bias_hh_l{k}{sfx}")

    # ----------------------------------------------------------------- per kind

    def _cell_step(self, k: int, reverse: bool) -> Callable[..., Cells]:
        """Layer ``k``'s step on its input: ``(x_t, state) -> state``, x_t (N, I_k).

        A layer that reads the lower layer's cells takes ``(x_t, c_lower_t, state)``.
        """
        raise NotImplementedError

    #: True when layer k needs the cell sequence of layer k-1 (dglstm's depth gate).
    _needs_lower_cells = False

    def project(
        self, k: int, x: torch.Tensor, lower: torch.Tensor | None = None, reverse: bool = False
    ) -> tuple[torch.Tensor, ...]:
        """The input's share of every step of layer ``k``, hoisted out of the time loop.

        ``(W_ih X + b_ih,)``, one (T*N x I_k) @ (I_k x G*H) GEMM giving (T, N, G*H)
        for ``x`` (T, N, I_k); these are the sequences :meth:`hoisted_step` reads.
        """
        w_ih, _, b_ih, _ = self.layer_weights(k, reverse)
        return (F.linear(x, w_ih, b_ih),)

    def hoisted_step(self, k: int, reverse: bool = False) -> Callable[..., Cells]:
        """Layer ``k``'s step on :meth:`project`'s sequences: the kind's ``<kind>_step``."""
        _, w_hh, _, b_hh = self.layer_weights(k, reverse)
        return bind_step(self.kind, w_hh, b_hh)  # type: ignore[arg-type]

    def _run_layer(
        self,
        k: int,
        reverse: bool,
        x: torch.Tensor,
        state: Cells,
        mask: torch.Tensor | None,
        lower: torch.Tensor | None,
    ) -> tuple[torch.Tensor, Cells, torch.Tensor | None]:
        """Layer ``k`` over all steps of ``x`` (T, N, I_k); see :func:`run_layer`."""
        if self.hoist_input:
            inputs = self.project(k, x, lower, reverse)
            step = self.hoisted_step(k, reverse)
        else:
            inputs = (x,) if lower is None else (x, lower)
            step = self._cell_step(k, reverse)
        keep = self._needs_lower_cells
        return run_layer(step, inputs, state, mask, reverse=reverse, keep_cells=keep)

    # ----------------------------------------------------------------- forward

    def forward(
        self,
        x: torch.Tensor,
        state: State | None = None,
        lengths: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, State]:
        xt = check_input(x, self.input_size, self.batch_first)  # (T, N, I)
        steps, batch = xt.shape[0], xt.shape[1]
        rows = self.num_layers * self.num_directions
        init = check_state(self.kind, state, rows, batch, self.hidden_size)
        if init is None:
            zeros = xt.new_zeros(rows, batch, self.hidden_size)  # (L*D, N, H)
            init = (zeros, zeros) if has_cell_state(self.kind) else (zeros,)
        mask = step_mask(check_lengths(lengths, batch, steps), steps, xt.device)  # (T, N, 1)

        finals: list[list[torch.Tensor]] = [[] for _ in init]
        layer_in, lower = xt, None
        for k in range(self.num_layers):
            outs = []
            for d in range(self.num_directions):
                row = k * self.num_directions + d
                first = tuple(s[row] for s in init)  # each (N, H)
                out, last, cells = self._run_layer(k, d == 1, layer_in, first, mask, lower)
                outs.append(out)  # (T, N, H)
                for slot, s in zip(finals, last, strict=True):
                    slot.append(s)
            layer_in = outs[0] if len(outs) == 1 else torch.cat(outs, 2)  # (T, N, D*H)
            lower = cells
            if self.dropout and self.training and k < self.num_layers - 1:
                layer_in = F.dropout(layer_in, self.dropout, training=True)
        out = layer_in.transpose(0, 1) if self.batch_first else layer_in
        final = tuple(torch.stack(slot) for slot in finals)  # each (L*D, N, H)
        return out, (final if len(final) == 2 else final[0])

    def extra_repr(self) -> str:
        s = f"{self.input_size}, {self.hidden_size}, num_layers={self.num_layers}"
        if not self.bias:
            s += ", bias=False"
        if self.batch_first:
            s += ", batch_first=True"
        if self.bidirectional:
            s += ", bidirectional=True"
        if self.dropout:
            s += f", dropout={self.dropout}"
        return s
