"""The unfused recurrent stack: torch.nn parameters, a Python loop over time.

:class:`ReferenceStack` owns what every reference kind shares: parameters
named and laid out as in ``torch.nn.RNN/LSTM/GRU``, input and state checks,
layers and directions, dropout between layers, and ``lengths`` handled with a
per-step mask. A subclass supplies the cell: ``kind`` and :meth:`_cell`.
"""

from __future__ import annotations

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

__all__ = ["ReferenceStack", "direction_suffixes"]

Cells = tuple[torch.Tensor, ...]


def direction_suffixes(bidirectional: bool) -> tuple[str, ...]:
    """Parameter-name suffixes: ``""`` for forward, ``"_reverse"`` for the backward direction."""
    return ("", "_reverse") if bidirectional else ("",)


class ReferenceStack(nn.Module):
    """Base of the unfused stacks; see the per-kind subclasses for the equations."""

    kind: str = ""
    impl: str = "reference"

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

    def _cell(
        self, k: int, reverse: bool, x: torch.Tensor, state: Cells, lower: torch.Tensor | None
    ) -> Cells:
        """One step of layer ``k``: new state tuple from input (N, I_k) and state."""
        raise NotImplementedError

    #: True when layer k needs the cell sequence of layer k-1 (dglstm's depth gate).
    _needs_lower_cells = False

    def _run_layer(
        self,
        k: int,
        reverse: bool,
        x: torch.Tensor,
        state: Cells,
        mask: torch.Tensor | None,
        lower: torch.Tensor | None,
    ) -> tuple[torch.Tensor, Cells, torch.Tensor | None]:
        """Layer ``k`` over all steps of ``x`` (T, N, I_k).

        Returns the outputs (T, N, H) (zero at padded steps), the state after each
        sequence's last valid step, and the cell sequence (T, N, H) when a layer
        above needs it.
        """
        steps = x.shape[0]
        # unbind once rather than index x[t]: backward of an index op would scatter
        # each step's gradient into a fresh (T, N, I) buffer
        x_t = x.unbind(0)
        lower_t = None if lower is None else lower.unbind(0)
        mask_t = None if mask is None else mask.unbind(0)
        outs: list[torch.Tensor] = [x] * steps  # placeholders, every slot is overwritten
        cells: list[torch.Tensor] = []
        order = range(steps - 1, -1, -1) if reverse else range(steps)
        for t in order:
            new = self._cell(k, reverse, x_t[t], state, None if lower_t is None else lower_t[t])
            if mask_t is None:
                state = new
                outs[t] = new[0]
            else:
                # padded steps keep the state; the backward direction thus starts at
                # each sequence's own last step, since everything after it is padding
                m = mask_t[t]  # (N, 1)
                state = tuple(torch.where(m, n, s) for n, s in zip(new, state, strict=True))
                outs[t] = torch.where(m, new[0], new[0].new_zeros(()))
            if self._needs_lower_cells:
                cells.append(state[1])
        cell_seq = torch.stack(cells) if cells else None  # (T, N, H)
        if cells and reverse:
            cell_seq = cell_seq.flip(0)
        return torch.stack(outs), state, cell_seq

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
