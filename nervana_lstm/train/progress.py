"""What a run carries from one step to the next besides its weights and optimizer state.

``Progress`` is the run's mutable position: the step, the best evaluation loss
and how many evaluations have passed since, and (stateful tasks) the recurrent
state carried into the next batch. A checkpoint saves it; ``--resume`` restores it.

The carried state has the stack's layout: ``h`` (L*D, N, H), or ``(h, c)`` for
LSTM-style kinds. Each process carries only its own rows (streams) of the
global batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["Carry", "Progress", "map_carry", "process_seed", "reset_rows"]

#: the recurrent state carried between batches: ``h``, ``(h, c)``, or None (nothing yet)
Carry = torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None


@dataclass
class Progress:
    """Where a run stands; every field is saved in its checkpoints."""

    step: int = 0
    best: float | None = None  # the lowest evaluation loss so far
    evals_since_best: int = 0
    carry: Carry = None  # this process's rows of the carried recurrent state


def map_carry(carry: Carry, fn: Callable[[torch.Tensor], torch.Tensor]) -> Carry:
    """``fn`` applied to every tensor of ``carry`` (``h``, or ``h`` and ``c``)."""
    if carry is None:
        return None
    if isinstance(carry, tuple | list):
        return tuple(fn(s) for s in carry)  # type: ignore[return-value]
    return fn(carry)


def reset_rows(carry: Carry, reset: torch.Tensor | None) -> Carry:
    """Zero the carried state of streams that start over in this batch (``reset`` (N,) bool)."""
    if carry is None or reset is None or not bool(reset.any()):
        return carry
    keep = (~reset).to(torch.float32).view(1, -1, 1)  # (1, N, 1)
    return map_carry(carry, lambda s: s * keep.to(s.dtype))


def process_seed(seed: int, rank: int) -> int:
    """The dropout seed of process ``rank``: each process holds other rows, so draws differ.

    Initial weights stay seeded by ``seed`` alone, the same in every process.
    """
    return (seed * 1_000_003 + 7_919 * (rank + 1)) % (2**63)
