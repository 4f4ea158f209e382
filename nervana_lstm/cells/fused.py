"""Fused rnn, lstm and gru: torch.nn.RNN/LSTM/GRU behind the cells API.

The torch module is ``net.module`` (time-major inside, so ``batch_first`` is a
transpose here). Its parameters appear in ``net.state_dict()`` under torch.nn's
own names (``weight_ih_l0``, not ``module.weight_ih_l0``), so a state_dict moves
unchanged between this wrapper, the reference stack and ``torch.nn.*``.

Variable lengths without PackedSequence (slow on CPU): the batch is sorted by
length and the torch module is called once per distinct length. One direction:
the time axis is cut at each distinct length and every piece runs on the
sequences still active, carrying the state, so a finished sequence keeps its
state and all sequences share each GEMM. Two directions: each group of equal
length runs on its own, which makes the backward direction start at each
sequence's own last step. With full lengths there is a single call.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nervana_lstm.cells.common import (
    State,
    check_input,
    check_lengths,
    check_sizes,
    check_state,
    has_cell_state,
)

__all__ = ["FusedTorchStack"]

_TORCH_MODULES: dict[str, type[nn.RNNBase]] = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}
_PREFIX = "module."


def _drop_module_prefix(
    module: nn.Module, state_dict: dict[str, Any], prefix: str, *_: Any
) -> None:
    """state_dict hook: ``{prefix}module.weight_ih_l0`` -> ``{prefix}weight_ih_l0``."""
    inner = prefix + _PREFIX
    for key in [k for k in state_dict if k.startswith(inner)]:
        state_dict[prefix + key[len(inner) :]] = state_dict.pop(key)


def _add_module_prefix(module: nn.Module, state_dict: dict[str, Any], prefix: str, *_: Any) -> None:
    """load_state_dict pre-hook: the inverse of :func:`_drop_module_prefix`."""
    names = {name for name, _ in module.module.named_parameters()}
    names |= {name for name, _ in module.module.named_buffers()}
    for key in [k for k in state_dict if k.startswith(prefix)]:
        if key[len(prefix) :] in names:
            state_dict[prefix + _PREFIX + key[len(prefix) :]] = state_dict.pop(key)


class FusedTorchStack(nn.Module):
    """``torch.nn.RNN`` (tanh), ``LSTM`` or ``GRU`` with ``lengths`` and the cells API.

    The equations, parameter layouts and gate orders are those of the matching
    reference stack (:class:`~nervana_lstm.cells.rnn.RNNReference`,
    :class:`~nervana_lstm.cells.lstm.LSTMReference`,
    :class:`~nervana_lstm.cells.gru.GRUReference`) and of torch.nn. On CPU,
    ``nn.LSTM`` runs oneDNN's fused RNN primitive; ``nn.RNN`` and ``nn.GRU`` run
    ATen's per-step kernels.

    Attributes:
        module: the wrapped ``torch.nn`` module (always time-major).
        kind, impl, input_size, hidden_size, num_layers, bias, batch_first,
        bidirectional, dropout: as given to the constructor.
    """

    impl = "fused"

    def __init__(
        self,
        kind: str,
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
        check_sizes(kind, input_size, hidden_size, num_layers, bidirectional, dropout)
        if kind not in _TORCH_MODULES:
            raise ValueError(f"FusedTorchStack wraps {', '.join(_TORCH_MODULES)}, got {kind!r}")
        self.kind = kind
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.bidirectional = bidirectional
        self.dropout = float(dropout)
        self.num_directions = 2 if bidirectional else 1
        self.module = _TORCH_MODULES[kind](
            input_size,
            hidden_size,
            num_layers,
            bias=bias,
            batch_first=False,
            dropout=dropout,
            bidirectional=bidirectional,
        )
        self.register_state_dict_post_hook(_drop_module_prefix)
        self.register_load_state_dict_pre_hook(_add_module_prefix)

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
        lens = check_lengths(lengths, batch, steps)
        if init is None:
            zeros = xt.new_zeros(rows, batch, self.hidden_size)  # (L*D, N, H)
            init = (zeros, zeros) if has_cell_state(self.kind) else (zeros,)
        if lens is None or bool((lens == steps).all()):
            out, final = self.module(xt, self._pack(init))
            final = final if isinstance(final, tuple) else (final,)
        elif self.bidirectional:
            out, final = self._by_length_groups(xt, init, lens)
        else:
            out, final = self._by_time_pieces(xt, init, lens)
        if self.batch_first:
            out = out.transpose(0, 1)
        return out, (final if len(final) == 2 else final[0])

    @staticmethod
    def _pack(state: tuple[torch.Tensor, ...]) -> State:
        return state if len(state) == 2 else state[0]

    def _call(self, x: torch.Tensor, state: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        out, final = self.module(x, self._pack(state))
        return (out, *(final if isinstance(final, tuple) else (final,)))

    def _by_time_pieces(
        self, x: torch.Tensor, init: tuple[torch.Tensor, ...], lens: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        steps, batch = x.shape[0], x.shape[1]
        order = torch.argsort(lens, descending=True, stable=True)  # longest first
        sorted_lens = lens[order]
        idx = order.to(x.device)
        xs = x.index_select(1, idx)  # (T, N, I)
        state = tuple(s.index_select(1, idx) for s in init)  # each (L*D, N, H)
        pieces: list[torch.Tensor] = []
        start = 0
        for stop in sorted(set(sorted_lens.tolist())):
            if stop == 0:
                continue
            active = int((sorted_lens >= stop).sum())  # sequences still running
            res = self._call(xs[start:stop, :active], tuple(s[:, :active] for s in state))
            out, new = res[0], res[1:]  # (stop-start, active, H)
            if active < batch:
                out = torch.cat([out, out.new_zeros(stop - start, batch - active, out.shape[2])], 1)
                new = tuple(
                    torch.cat([n, s[:, active:]], 1) for n, s in zip(new, state, strict=True)
                )
            pieces.append(out)
            state = new
            start = stop
        if start < steps:
            width = self.num_directions * self.hidden_size
            pieces.append(x.new_zeros(steps - start, batch, width))
        inverse = torch.argsort(order).to(x.device)
        out = torch.cat(pieces, 0).index_select(1, inverse)  # (T, N, H)
        return out, tuple(s.index_select(1, inverse) for s in state)

    def _by_length_groups(
        self, x: torch.Tensor, init: tuple[torch.Tensor, ...], lens: torch.Tensor
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        steps = x.shape[0]
        width = self.num_directions * self.hidden_size
        order = torch.argsort(lens, descending=True, stable=True)
        sorted_lens = lens[order].tolist()
        outs: list[torch.Tensor] = []
        finals: list[list[torch.Tensor]] = [[] for _ in init]
        start = 0
        while start < len(order):
            length = sorted_lens[start]
            stop = start + sorted_lens.count(length)  # equal lengths are contiguous
            idx = order[start:stop].to(x.device)
            group_state = tuple(s.index_select(1, idx) for s in init)
            if length == 0:  # nothing to read: output zero, state as given
                out = x.new_zeros(steps, stop - start, width)
                new = group_state
            else:
                res = self._call(x[:length].index_select(1, idx), group_state)
                out, new = res[0], res[1:]  # (length, n, D*H)
                if length < steps:
                    out = torch.cat([out, out.new_zeros(steps - length, stop - start, width)], 0)
            outs.append(out)
            for slot, s in zip(finals, new, strict=True):
                slot.append(s)
            start = stop
        inverse = torch.argsort(order).to(x.device)
        out = torch.cat(outs, 1).index_select(1, inverse)  # (T, N, D*H)
        return out, tuple(torch.cat(slot, 1).index_select(1, inverse) for slot in finals)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, batch_first={self.batch_first}"
