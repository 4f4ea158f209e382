"""Users' own sequences from a CSV or NPZ file, for classification or regression.

File layouts are described in ``nervana_lstm.data.file_formats``. Sequences have
their own lengths; training batches come from ``LengthBuckets`` (similar lengths
together, padded with zeros to the longest in the global batch) and carry
``lengths`` so the recurrent net stops at each sequence's last real step. The
target is read after that step (``classify_last`` or ``regress_last``).

A seeded random ``eval_fraction`` of the sequences is held out. Class labels are
numbered in sorted order; ``task.classes`` keeps the labels for reports.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Literal

import torch
import torch.nn.functional as F

from nervana_lstm.config import FilesOptions
from nervana_lstm.data.base import Batch, TaskSpec, shard_slice
from nervana_lstm.data.bucketing import LengthBuckets, pad_sequences
from nervana_lstm.data.file_formats import read_sequences
from nervana_lstm.data.seeding import generator_for
from nervana_lstm.errors import UsageError

__all__ = ["FileTask", "files_spec"]


def files_spec(features: int, outputs: int, target: Literal["classify", "regress"]) -> TaskSpec:
    """What a model of a sequence file reads and predicts: ``features`` per step in, at the
    last valid step ``outputs`` class scores (classify) or values (regress) out."""
    return TaskSpec(
        name="files", input_kind="features", input_size=features, output_size=outputs,
        target="classify_last" if target == "classify" else "regress_last",
    )  # fmt: skip


class FileTask:
    """Sequence classification or regression on the sequences in ``options.path``;
    ``FilesOptions`` declares the options (``path``, ``target``, ``seed``,
    ``eval_fraction``, ``pool_batches`` for ``LengthBuckets``) and their bounds.
    ``allow_pickle`` (no option: a permission the caller gives, never saved) lets
    an NPZ with a ragged object array be unpickled, for files you trust.

    Attributes:
        classes: the class labels in id order (classification), else None
        feature_names: the CSV's feature columns, or x0, x1, ... for NPZ
        train_index, eval_index: which sequences of the file each split holds
    """

    def __init__(self, options: FilesOptions, allow_pickle: bool = False) -> None:
        self.path, self.target = options.path, options.target
        self.seed, self.eval_fraction = options.seed, options.eval_fraction
        data = read_sequences(self.path, self.target, allow_pickle)
        n = len(data.seqs)
        n_eval = max(1, round(n * self.eval_fraction))
        if n - n_eval < 1:
            raise UsageError(
                f"files: {self.path} holds {n} sequence(s), too few to hold out {self.eval_fraction:g} "
                "of them and train on the rest (need at least 2)"
            )
        self.seqs = [torch.from_numpy(s) for s in data.seqs]  # each (T_i, F) float32
        self.lengths = torch.tensor([len(s) for s in data.seqs], dtype=torch.int64)  # (n,)
        self.feature_names = data.feature_names
        if data.labels is not None:
            self.classes: list[object] | None = sorted(set(data.labels))
            ids = {c: i for i, c in enumerate(self.classes)}
            self.y = torch.tensor([ids[v] for v in data.labels], dtype=torch.int64)  # (n,)
            out = len(self.classes)
        else:
            self.classes = None
            self.y = torch.from_numpy(data.values)  # (n, O)
            out = self.y.shape[1]
        perm = torch.randperm(n, generator=generator_for(self.seed, "files/split"))
        self.eval_index = perm[:n_eval].sort().values
        self.train_index = perm[n_eval:].sort().values
        self.buckets = LengthBuckets(
            self.lengths[self.train_index], self.seed, options.pool_batches
        )
        self.spec = files_spec(len(self.feature_names), out, self.target)

    def _batch(self, index: torch.Tensor, steps: int | None = None) -> Batch:
        x = pad_sequences([self.seqs[i] for i in index.tolist()], steps)  # (T, N, F)
        return Batch(x=x, y=self.y[index], lengths=self.lengths[index])

    def train_batch(self, step: int, batch_size: int, rank: int = 0, world_size: int = 1) -> Batch:
        rows = shard_slice(batch_size, rank, world_size)
        chosen = self.train_index[self.buckets.batch_indices(step, batch_size)]  # (B,)
        # pad every shard to the global batch's longest, so shards equal one process's batch
        return self._batch(chosen[rows], int(self.lengths[chosen].max()))

    def steps_per_epoch(self, batch_size: int) -> int:
        return self.buckets.batches_per_epoch(batch_size)

    def eval_batches(self, batch_size: int) -> Iterator[Batch]:
        """Held-out sequences, longest first, so each batch pads little."""
        order = torch.sort(self.lengths[self.eval_index], descending=True, stable=True).indices
        index = self.eval_index[order]
        for start in range(0, len(index), batch_size):
            yield self._batch(index[start : start + batch_size])

    def loss(self, output: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Cross-entropy on (N, C) logits, or mean squared error on (N, O) values."""
        if self.classes is not None:
            return F.cross_entropy(output.float(), batch.y)
        return F.mse_loss(output.float(), batch.y)

    def metrics(self, output: torch.Tensor, batch: Batch) -> dict[str, float]:
        output = output.detach()
        loss = float(self.loss(output, batch))
        if self.classes is not None:
            accuracy = float((output.argmax(-1) == batch.y).float().mean())
            return {"loss": loss, "accuracy": accuracy}
        return {"mse": loss, "rmse": math.sqrt(loss)}
