"""Length bucketing: batches of sequences of similar length, so little of a batch is padding.

An epoch's plan depends only on ``(seed, epoch, batch_size)``::

    perm     = randperm(n)                          seeded by (seed, epoch)
    order    = perm, topped up from its own start to a multiple of the batch size
    pools    = order cut into runs of pool_batches * batch_size sequences
    each pool is sorted by length (longest first) and cut into batches
    the epoch's batches are shuffled                (same generator)

Sorting only inside large random pools keeps the batches near-uniform in length
while the epoch still mixes its sequences in a new way each time. Every sequence
appears once per epoch; when ``n`` is not a multiple of the batch size, the last
few slots are filled with sequences from the start of that epoch's permutation,
so those few appear twice. Because the plan is a pure function, step ``s`` is batch
``s % batches_per_epoch`` of epoch ``s // batches_per_epoch`` with nothing to save.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from nervana_lstm.data.seeding import generator_for

__all__ = ["LengthBuckets", "pad_sequences", "padding_fraction"]


class LengthBuckets:
    """Plans epochs of length-bucketed batches over sequences of the given lengths.

    Args:
        lengths: valid steps of each sequence, (n,)
        seed: with the epoch number, fixes the plan
        pool_batches: batches per sorting pool; 1 sorts within a batch only (no bucketing
            effect), large values approach a full sort (least padding, least mixing)
    """

    def __init__(
        self, lengths: torch.Tensor | Sequence[int], seed: int = 0, pool_batches: int = 32
    ) -> None:
        self.lengths = torch.as_tensor(lengths, dtype=torch.int64).reshape(-1)  # (n,)
        if len(self.lengths) == 0:
            raise ValueError("no sequences to batch")
        if pool_batches < 1:
            raise ValueError(f"pool_batches must be >= 1, got {pool_batches}")
        self.seed, self.pool_batches = seed, pool_batches
        self._cache: tuple[tuple[int, int], torch.Tensor] | None = None

    def __len__(self) -> int:
        return len(self.lengths)

    def batches_per_epoch(self, batch_size: int) -> int:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        return math.ceil(len(self.lengths) / batch_size)

    def epoch_plan(self, epoch: int, batch_size: int) -> torch.Tensor:
        """(batches_per_epoch, batch_size) sequence indices; each row sorted longest first."""
        key = (epoch, batch_size)
        if self._cache is not None and self._cache[0] == key:
            return self._cache[1]
        n, nb = len(self.lengths), self.batches_per_epoch(batch_size)
        gen = generator_for(self.seed, "buckets", epoch)
        perm = torch.randperm(n, generator=gen)
        order = perm.repeat(math.ceil(nb * batch_size / n))[: nb * batch_size]
        pool = self.pool_batches * batch_size
        batches = []
        for start in range(0, len(order), pool):
            members = order[start : start + pool]
            # stable sort: equal lengths keep their random order
            rank = torch.sort(self.lengths[members], descending=True, stable=True).indices
            batches.append(members[rank].reshape(-1, batch_size))
        plan = torch.cat(batches)[torch.randperm(nb, generator=gen)]
        self._cache = (key, plan)
        return plan

    def batch_indices(self, step: int, batch_size: int) -> torch.Tensor:
        """(batch_size,) sequence indices of global batch ``step``."""
        epoch, index = divmod(step, self.batches_per_epoch(batch_size))
        return self.epoch_plan(epoch, batch_size)[index]


def pad_sequences(seqs: Sequence[torch.Tensor], length: int | None = None) -> torch.Tensor:
    """Stack (T_i, F) sequences into a zero-padded (T, N, F) tensor, T = ``length`` or max T_i."""
    longest = max(len(s) for s in seqs)
    steps = longest if length is None else length
    if steps < longest:
        raise ValueError(f"length {steps} is shorter than the longest sequence ({longest})")
    out = seqs[0].new_zeros(steps, len(seqs), seqs[0].shape[1])  # (T, N, F)
    for n, s in enumerate(seqs):
        out[: len(s), n] = s
    return out


def padding_fraction(lengths: torch.Tensor, plan: torch.Tensor) -> float:
    """Share of padded cells when each row of ``plan`` is padded to its longest sequence."""
    per_batch = lengths[plan]  # (B_count, B)
    total = per_batch.max(dim=1).values.sum() * plan.shape[1]
    return float(1 - per_batch.sum() / total)
