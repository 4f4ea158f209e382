"""The copying memory task: read ten symbols, wait ``T`` steps, write them back.

Layout as in Arjovsky, Shah and Bengio (2016, "Unitary Evolution Recurrent Neural
Networks"), with categories ``0`` = blank, ``1..8`` = symbols, ``9`` = delimiter.
A sequence has ``T + 20`` steps::

    step:    0 .. 9      10 .. T+8      T+9        T+10 .. T+19
    input:   s_0 .. s_9  0 (T-1 times)  9          0 (10 times)
    target:  0 ...............................0   s_0 .. s_9

with ``s_k ~ U{1..8}``. The delimiter comes after ``T - 1`` blanks, so the first
recalled symbol is due exactly ``T + 10`` steps after it was shown. Targets are
per step (``classify_steps``) over 9 classes: blank and the 8 symbols (the
delimiter is never a target).

A model with no memory does best by writing blanks until the delimiter and then
guessing uniformly among the 8 symbols: cross-entropy ``10 ln 8`` over the whole
sequence, ``10 ln 8 / (T + 20)`` per step, the baseline.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from nervana_lstm.config import CopyOptions
from nervana_lstm.data.base import Batch, TaskSpec, shard_slice
from nervana_lstm.data.seeding import generator_for

__all__ = ["BLANK", "DELIMITER", "N_RECALL", "N_SYMBOLS", "CopyTask", "copy_baseline"]

BLANK = 0
DELIMITER = 9
N_SYMBOLS = 8  # ids 1..8
N_RECALL = 10  # symbols to remember


def copy_baseline(T: int) -> float:
    """Per-step cross-entropy (nats) of the best memoryless answer."""
    return N_RECALL * math.log(N_SYMBOLS) / (T + 2 * N_RECALL)


class CopyTask:
    """Copying task with lag ``T``; ``CopyOptions`` declares the options and their bounds."""

    def __init__(self, options: CopyOptions) -> None:
        self.T, self.seed, self.eval_size = options.T, options.seed, options.eval_size
        self.length = self.T + 2 * N_RECALL
        self.spec = TaskSpec(
            name="copy", input_kind="tokens", input_size=DELIMITER + 1,
            output_size=N_SYMBOLS + 1, target="classify_steps",
        )  # fmt: skip
        self._eval: Batch | None = None

    def _generate(self, gen: torch.Generator, n: int) -> Batch:
        symbols = torch.randint(1, N_SYMBOLS + 1, (n, N_RECALL), generator=gen)  # (N, 10)
        x = torch.full((n, self.length), BLANK, dtype=torch.int64)
        x[:, :N_RECALL] = symbols
        x[:, self.length - N_RECALL - 1] = DELIMITER
        y = torch.full((n, self.length), BLANK, dtype=torch.int64)
        y[:, -N_RECALL:] = symbols
        return Batch(x=x.t().contiguous(), y=y.t().contiguous())  # (T+20, N) each

    def train_batch(self, step: int, batch_size: int, rank: int = 0, world_size: int = 1) -> Batch:
        rows = shard_slice(batch_size, rank, world_size)
        full = self._generate(generator_for(self.seed, "copy/train", step), batch_size)
        return Batch(x=full.x[:, rows].contiguous(), y=full.y[:, rows].contiguous())

    def eval_batches(self, batch_size: int) -> Iterator[Batch]:
        if self._eval is None:
            self._eval = self._generate(generator_for(self.seed, "copy/eval"), self.eval_size)
        x, y = self._eval.x, self._eval.y
        for start in range(0, self.eval_size, batch_size):
            rows = slice(start, start + batch_size)
            yield Batch(x=x[:, rows], y=y[:, rows])

    def loss(self, output: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Cross-entropy averaged over every step; ``output`` is (T+20, N, 9) logits."""
        return F.cross_entropy(output.float().flatten(0, 1), batch.y.flatten())

    def metrics(self, output: torch.Tensor, batch: Batch) -> dict[str, float]:
        output = output.detach()
        ce = float(self.loss(output, batch))
        base = copy_baseline(self.T)
        recalled = output[-N_RECALL:].argmax(-1) == batch.y[-N_RECALL:]  # (10, N)
        return {
            "ce": ce,
            "ce_baseline": base,
            "ce_ratio": ce / base,
            "recall_accuracy": float(recalled.float().mean()),
        }
