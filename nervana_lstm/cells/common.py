"""Checks and layout helpers shared by every recurrent stack.

Everything a caller can get wrong (sizes, input rank, feature size, state
shape, lengths) is checked here and reported as a :class:`UsageError` that
names what was expected and what came. The name sets ``KINDS`` and ``IMPLS``
(the cells implementations) and ``has_cell_state`` are
:mod:`nervana_lstm.choices`' own, re-exported here.
"""

from __future__ import annotations

import math

import torch

from nervana_lstm import choices
from nervana_lstm.choices import CELLS_IMPLS as IMPLS
from nervana_lstm.choices import KINDS, has_cell_state
from nervana_lstm.errors import UsageError

__all__ = [
    "IMPLS",
    "KINDS",
    "State",
    "check_impl",
    "check_input",
    "check_kind",
    "check_lengths",
    "check_sizes",
    "check_state",
    "gate_count",
    "has_cell_state",
    "init_bound",
    "step_mask",
]

#: ``h`` for rnn/gru, ``(h, c)`` for lstm/dglstm; each (L*D, N, H).
State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise UsageError(f"unknown cell kind {kind!r}: expected one of {', '.join(KINDS)}")
    return kind


def check_impl(impl: str) -> str:
    if impl not in IMPLS:
        raise UsageError(f"unknown implementation {impl!r}: expected one of {', '.join(IMPLS)}")
    return impl


def gate_count(kind: str) -> int:
    """Rows of ``weight_ih`` per hidden unit: 1 (rnn), 3 (gru), 4 (lstm, dglstm).

    Raises :class:`UsageError` for an unknown kind.
    """
    return choices.gate_count(check_kind(kind))


def init_bound(hidden_size: int) -> float:
    """torch.nn's initial range: every weight and bias ~ U(-1/sqrt(H), 1/sqrt(H))."""
    return 1.0 / math.sqrt(hidden_size)


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UsageError(f"{name} must be a positive integer, got {value!r}")
    return value


def check_sizes(
    kind: str,
    input_size: int,
    hidden_size: int,
    num_layers: int,
    bidirectional: bool,
    dropout: float,
) -> None:
    """Constructor arguments of a stack; raises :class:`UsageError` when one is off."""
    check_kind(kind)
    _positive_int("input_size", input_size)
    _positive_int("hidden_size", hidden_size)
    _positive_int("num_layers", num_layers)
    if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0 <= dropout < 1:
        raise UsageError(f"dropout must be a number in [0, 1), got {dropout!r}")
    if kind == "dglstm" and bidirectional:
        # the depth gate links a layer to the cell of the same direction below;
        # a two-direction stack has no single lower cell of size H
        raise UsageError("dglstm is unidirectional: expected bidirectional=False, got True")


def check_input(x: object, input_size: int, batch_first: bool) -> torch.Tensor:
    """Validate ``x`` and return it time-major, (T, N, I)."""
    layout = "(N, T, I)" if batch_first else "(T, N, I)"
    if not isinstance(x, torch.Tensor):
        raise UsageError(f"input must be a tensor of shape {layout}, got {type(x).__name__}")
    if x.dim() != 3:
        raise UsageError(
            f"input must be 3-D {layout} with I={input_size}, got {x.dim()}-D shape {tuple(x.shape)}"
        )
    if x.shape[-1] != input_size:
        raise UsageError(
            f"input feature size must be I={input_size}, got {x.shape[-1]} (shape {tuple(x.shape)})"
        )
    if not x.is_floating_point():
        raise UsageError(f"input must be a floating-point tensor, got {x.dtype}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise UsageError(
            f"input must have at least one step and one sequence, got {tuple(x.shape)}"
        )
    return x.transpose(0, 1) if batch_first else x


def _check_one_state(name: str, t: object, shape: tuple[int, int, int]) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise UsageError(f"state {name} must be a tensor of shape {shape}, got {type(t).__name__}")
    if tuple(t.shape) != shape:
        raise UsageError(
            f"state {name} must have shape (L*D, N, H) = {shape}, got {tuple(t.shape)}"
        )
    return t


def check_state(
    kind: str, state: object, layers_x_dirs: int, batch: int, hidden_size: int
) -> tuple[torch.Tensor, ...] | None:
    """Validate an initial state; return it as a tuple ``(h,)`` or ``(h, c)``, or None."""
    if state is None:
        return None
    shape = (layers_x_dirs, batch, hidden_size)
    if has_cell_state(kind):
        if not isinstance(state, (tuple, list)) or len(state) != 2:
            raise UsageError(
                f"{kind} state must be a pair (h, c), each of shape {shape}, "
                f"got {type(state).__name__}"
                + (f" of length {len(state)}" if isinstance(state, (tuple, list)) else "")
            )
        return (_check_one_state("h", state[0], shape), _check_one_state("c", state[1], shape))
    if isinstance(state, (tuple, list)):
        raise UsageError(
            f"{kind} state must be one tensor h of shape {shape}, got a {type(state).__name__}"
        )
    return (_check_one_state("h", state, shape),)


def check_lengths(lengths: object, batch: int, steps: int) -> torch.Tensor | None:
    """Validate ``lengths`` (N,) with values in [0, T]; return it as int64 on the CPU."""
    if lengths is None:
        return None
    if not isinstance(lengths, torch.Tensor):
        try:
            lengths = torch.as_tensor(lengths)
        except (TypeError, ValueError, RuntimeError):
            raise UsageError(
                f"lengths must be an integer tensor of shape (N,) = ({batch},), "
                f"got {type(lengths).__name__} {lengths!r:.60}"
            ) from None
    if lengths.dim() != 1 or lengths.shape[0] != batch:
        raise UsageError(f"lengths must have shape (N,) = ({batch},), got {tuple(lengths.shape)}")
    if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
        raise UsageError(f"lengths must be an integer tensor, got {lengths.dtype}")
    lengths = lengths.detach().to("cpu", torch.int64)
    low, high = int(lengths.min()), int(lengths.max())
    if low < 0 or high > steps:
        raise UsageError(f"lengths must lie in [0, T={steps}], got values in [{low}, {high}]")
    return lengths


def step_mask(
    lengths: torch.Tensor | None, steps: int, device: torch.device
) -> torch.Tensor | None:
    """(T, N, 1) bool mask, True where step t is inside sequence n; None for full lengths."""
    if lengths is None or bool((lengths == steps).all()):
        return None
    t = torch.arange(steps).unsqueeze(1)  # (T, 1)
    return (t < lengths.unsqueeze(0)).unsqueeze(2).to(device)  # (T, N, 1)
