"""What every training task provides: batches addressed by step, a loss, and metrics.

A task's training batch is a pure function of ``(seed, step, rank, world_size)``.
That one rule gives three things at once: a resumed run sees exactly the data
the uninterrupted run would have seen (no sampler state to save), each
``torchrun`` process takes its own shard of the global batch, and a run can be
replayed from its config alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol

import torch

__all__ = ["Batch", "Task", "TaskSpec", "shard_slice"]

Target = Literal["regress_last", "classify_last", "classify_steps"]


class Batch(NamedTuple):
    """One batch, time-major.

    x:       (T, N, F) float features, or (T, N) int64 token ids for ``input_kind="tokens"``
    y:       regress_last: (N, O) float; classify_last: (N,) int64;
             classify_steps: (T, N) int64, with -100 where no target exists
    lengths: (N,) int64 valid steps per sequence, or None when all have length T
    reset:   (N,) bool, True where a carried recurrent state must be zeroed before this
             batch (stateful tasks only: a stream that wrapped around); None otherwise
    """

    x: torch.Tensor
    y: torch.Tensor
    lengths: torch.Tensor | None = None
    reset: torch.Tensor | None = None


@dataclass(frozen=True)
class TaskSpec:
    """What a model needs to know to fit a task."""

    name: str
    input_kind: Literal["features", "tokens"]
    input_size: int  # feature count, or vocabulary size for tokens
    output_size: int  # regression outputs, or class count
    target: Target
    stateful: bool = False  # carry the recurrent state from one step's batch to the next


class Task(Protocol):
    """The interface the training loop relies on."""

    spec: TaskSpec

    def train_batch(self, step: int, batch_size: int, rank: int = 0, world_size: int = 1) -> Batch:
        """The ``rank``-th shard (``batch_size // world_size`` rows) of global batch ``step``."""
        ...

    def eval_batches(self, batch_size: int) -> Iterator[Batch]:
        """A fixed held-out set, the same on every call."""
        ...

    def loss(self, output: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Scalar training loss (mean over valid targets) for the head's ``output``."""
        ...

    def metrics(self, output: torch.Tensor, batch: Batch) -> dict[str, float]:
        """Named evaluation figures (loss, baselines and ratios, accuracy, bits per char)."""
        ...


def shard_slice(batch_size: int, rank: int, world_size: int) -> slice:
    """Rows of the global batch that belong to ``rank``; the batch must split evenly."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    if batch_size % world_size:
        raise ValueError(
            f"batch_size {batch_size} must be divisible by the number of processes {world_size}"
        )
    per = batch_size // world_size
    return slice(rank * per, (rank + 1) * per)
