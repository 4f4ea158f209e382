r"""Every gate of a trained model at every step, recorded from the reference cells.

The trace runs each layer through :func:`~nervana_lstm.cells.base.run_layer`
(the reference stacks' own loop) on the stack's own input projection
(:meth:`~nervana_lstm.cells.base.ReferenceStack.project`). At each step it
calls the kind's gate function (``lstm_gates``, ``gru_gates``, ``dglstm_gates``)
and the kind's step function (``lstm_step``, ``gru_step``, ``dglstm_step``,
``rnn_step``), which itself calls that gate function: the gates recorded are
the gates the step used, and the states recorded are the step's own. For an
LSTM layer

.. math::
    \begin{array}{ll}
    (i_t, f_t, g_t, o_t) = \mathrm{lstm\_gates}(W_{ih} x_t + b_{ih}, h_{t-1}) \\
    (h_t, c_t) = \mathrm{lstm\_step}(W_{ih} x_t + b_{ih}, (h_{t-1}, c_{t-1}))
    \end{array}

and likewise ``(r_t, z_t, n_t)`` for a GRU and ``(i_t, f_t, g_t, o_t, d_t)`` for
a DG-LSTM layer above the first (layer 0 of a DG-LSTM is an LSTM layer). A
plain RNN has no gates: its trace holds ``h_t`` alone.

One sequence, batch 1, no dropout (the model is in eval mode).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from nervana_lstm.cells.base import Cells, ReferenceStack, run_layer
from nervana_lstm.cells.dglstm import depth_weights, dglstm_gates, dglstm_step
from nervana_lstm.cells.gru import gru_gates, gru_step
from nervana_lstm.cells.lstm import lstm_gates, lstm_step
from nervana_lstm.cells.rnn import rnn_step
from nervana_lstm.choices import has_cell_state
from nervana_lstm.errors import UsageError

__all__ = ["GATE_NAMES", "GateTrace", "LayerTrace", "gate_names", "trace_model"]

#: symbol -> what it is, for every gate a trace can hold
GATE_NAMES: dict[str, str] = {
    "i": "input gate",
    "f": "forget gate",
    "g": "candidate",
    "o": "output gate",
    "d": "depth gate",
    "r": "reset gate",
    "z": "update gate",
    "n": "candidate",
}


def gate_names(kind: str, layer: int) -> tuple[str, ...]:
    """The gate symbols of ``kind``'s layer ``layer``, in the gate function's order."""
    if kind == "lstm" or (kind == "dglstm" and layer == 0):
        return ("i", "f", "g", "o")
    if kind == "dglstm":
        return ("i", "f", "g", "o", "d")
    if kind == "gru":
        return ("r", "z", "n")
    return ()


@dataclass(frozen=True)
class LayerTrace:
    """One layer and direction over the sequence; every tensor is (T, H), in time order."""

    layer: int
    reverse: bool
    gates: dict[str, torch.Tensor]  # symbol -> (T, H); see GATE_NAMES
    h: torch.Tensor
    c: torch.Tensor | None  # lstm and dglstm only


@dataclass(frozen=True)
class GateTrace:
    """A model's run on one sequence."""

    kind: str
    layers: list[LayerTrace]  # layer 0 first; forward before backward
    output: torch.Tensor  # the head's output: (O,) for a *_last target, (T, O) per step
    state: torch.Tensor | tuple[torch.Tensor, torch.Tensor]  # the model's final state, (L*D, H)

    def layer(self, k: int, reverse: bool = False) -> LayerTrace:
        return next(t for t in self.layers if t.layer == k and t.reverse == reverse)


class _Recorder:
    """Wraps a step ``(inputs..., state) -> state`` and keeps its gates and states."""

    def __init__(self, names: tuple[str, ...], gates: Callable[..., tuple[torch.Tensor, ...]]):
        self.names, self.gates = names, gates
        self.seen: list[tuple[tuple[torch.Tensor, ...], Cells]] = []

    def wrap(self, step: Callable[..., Cells]) -> Callable[..., Cells]:
        def recorded(*args: torch.Tensor) -> Cells:
            new = step(*args)
            self.seen.append((self.gates(*args), new))
            return new

        return recorded

    def trace(self, k: int, reverse: bool) -> LayerTrace:
        seen = self.seen[::-1] if reverse else self.seen  # run_layer visits t = T-1 .. 0 backward

        def stack(values: list[torch.Tensor]) -> torch.Tensor:
            return torch.stack(values)[:, 0]  # (T, 1, H) -> (T, H)

        gates = {n: stack([g[j] for g, _ in seen]) for j, n in enumerate(self.names)}
        h = stack([s[0] for _, s in seen])
        c = stack([s[1] for _, s in seen]) if len(seen[0][1]) == 2 else None
        return LayerTrace(k, reverse, gates, h, c)


def _layer_step(
    rnn: ReferenceStack, k: int, reverse: bool, layer_in: torch.Tensor
) -> tuple[tuple[torch.Tensor, ...], _Recorder, Callable[..., Cells]]:
    """The inputs run_layer feeds layer ``k``, a recorder, and the step it runs."""
    kind = rnn.kind
    _, w_hh, _, b_hh = rnn.layer_weights(k, reverse)
    (gx,) = ReferenceStack.project(rnn, k, layer_in, None, reverse)  # (T, 1, G*H)
    names = gate_names(kind, k)
    if kind == "rnn":
        return (gx,), _Recorder(names, lambda *_: ()), lambda x, s: (rnn_step(x, s[0], w_hh, b_hh),)
    if kind == "gru":

        def gru(x: torch.Tensor, s: Cells) -> Cells:
            return (gru_step(x, s[0], w_hh, b_hh),)

        return (gx,), _Recorder(names, lambda x, s: gru_gates(x, s[0], w_hh, b_hh)), gru
    if kind == "lstm" or k == 0:

        def lstm(x: torch.Tensor, s: Cells) -> Cells:
            return lstm_step(x, s, w_hh, b_hh)  # type: ignore[arg-type]

        return (gx,), _Recorder(names, lambda x, s: lstm_gates(x, s[0], w_hh, b_hh)), lstm
    w_xd, w_cd, w_ld, b_d = depth_weights(rnn, k)
    gd = F.linear(layer_in, w_xd, b_d)  # (T, 1, H): the depth gate's input share

    def depth_gates(x: torch.Tensor, d: torch.Tensor, low: torch.Tensor, s: Cells) -> tuple:
        return dglstm_gates(x, d, s, low, w_hh, b_hh, w_cd, w_ld)  # type: ignore[arg-type]

    def dglstm(x: torch.Tensor, d: torch.Tensor, low: torch.Tensor, s: Cells) -> Cells:
        return dglstm_step(x, d, s, low, w_hh, b_hh, w_cd, w_ld)  # type: ignore[arg-type]

    return (gx, gd), _Recorder(names, depth_gates), dglstm


def trace_model(model: nn.Module, x: torch.Tensor) -> GateTrace:
    """Run ``model`` on one sequence and record every gate and state of every layer.

    ``model`` is a :class:`~nervana_lstm.models.SequenceModel` built with the
    reference cells (``load_trained(path, "reference")``); ``x`` is the sequence,
    (T, F) features or (T,) token ids.
    """
    rnn = getattr(model, "rnn", None)
    if not isinstance(rnn, ReferenceStack):
        raise UsageError(
            "tracing needs a model built with the reference cells (load_trained(path, "
            f"'reference')); got a {type(rnn).__name__} recurrence"
        )
    if rnn.batch_first:
        raise UsageError("tracing expects a time-major recurrence (batch_first=False)")
    model.eval()
    xb = x.unsqueeze(1)  # (T, 1, F) or (T, 1)
    with torch.no_grad():
        output, state = model(xb)
        embed = getattr(model, "embed", None)
        layer_in = embed(xb) if embed is not None else xb  # (T, 1, I)
        layers: list[LayerTrace] = []
        lower = None
        for k in range(rnn.num_layers):
            outs, cells = [], None
            for d in range(rnn.num_directions):
                reverse = d == 1
                inputs, recorder, step = _layer_step(rnn, k, reverse, layer_in)
                if lower is not None and rnn.kind == "dglstm":
                    inputs = (*inputs, lower)
                zeros = layer_in.new_zeros(1, rnn.hidden_size)  # (1, H)
                first = (zeros, zeros) if has_cell_state(rnn.kind) else (zeros,)
                keep = rnn.kind == "dglstm"
                out, _, cells = run_layer(
                    recorder.wrap(step), inputs, first, reverse=reverse, keep_cells=keep
                )
                outs.append(out)  # (T, 1, H)
                layers.append(recorder.trace(k, reverse))
            layer_in = outs[0] if len(outs) == 1 else torch.cat(outs, 2)  # (T, 1, D*H)
            lower = cells
    final = tuple(s[:, 0] for s in state) if isinstance(state, tuple) else state[:, 0]
    return GateTrace(rnn.kind, layers, output[:, 0] if output.dim() == 3 else output[0], final)
