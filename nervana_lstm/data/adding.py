"""The adding problem: remember two marked numbers across a long sequence and add them.

Hochreiter and Schmidhuber (1997); the form used here follows Le et al. (2015) and
Arjovsky et al. (2016). Each sequence has ``T`` steps with two input channels::

    x[t, n, 0] ~ U[0, 1]                        the values
    x[t, n, 1] = 1 at t = a and t = b, else 0   the markers
    a ~ U{0, ..., T//2 - 1},  b ~ U{T//2, ..., T - 1}
    y[n, 0]    = x[a, n, 0] + x[b, n, 0]

The target is read after the last step (``regress_last``). Always answering 1,
the mean of the sum, scores ``E[(u + v - 1)^2] = Var(u) + Var(v) = 1/6``: a model
whose MSE stays near 1/6 has not learnt to remember anything.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from nervana_lstm.config import AddingOptions
from nervana_lstm.data.base import Batch, TaskSpec, shard_slice
from nervana_lstm.data.seeding import generator_for

__all__ = ["MSE_BASELINE", "AddingTask"]

MSE_BASELINE = 1.0 / 6.0


class AddingTask:
    """Adding problem with lag ``T``; ``AddingOptions`` declares the options and their bounds."""

    def __init__(self, options: AddingOptions) -> None:
        self.T, self.seed, self.eval_size = options.T, options.seed, options.eval_size
        self.spec = TaskSpec(
            name="adding", input_kind="features", input_size=2, output_size=1,
            target="regress_last",
        )  # fmt: skip
        self._eval: Batch | None = None

    def _generate(self, gen: torch.Generator, n: int) -> Batch:
        T, half = self.T, self.T // 2
        values = torch.rand(n, T, generator=gen)  # (N, T)
        first = torch.randint(0, half, (n,), generator=gen)  # (N,)
        second = torch.randint(half, T, (n,), generator=gen)  # (N,)
        markers = torch.zeros(n, T)
        rows = torch.arange(n)
        markers[rows, first] = 1.0
        markers[rows, second] = 1.0
        x = torch.stack([values, markers], dim=-1).transpose(0, 1).contiguous()  # (T, N, 2)
        y = (values[rows, first] + values[rows, second]).unsqueeze(1)  # (N, 1)
        return Batch(x=x, y=y)

    def train_batch(self, step: int, batch_size: int, rank: int = 0, world_size: int = 1) -> Batch:
        rows = shard_slice(batch_size, rank, world_size)
        full = self._generate(generator_for(self.seed, "adding/train", step), batch_size)
        return Batch(x=full.x[:, rows].contiguous(), y=full.y[rows].contiguous())

    def eval_batches(self, batch_size: int) -> Iterator[Batch]:
        if self._eval is None:
            self._eval = self._generate(generator_for(self.seed, "adding/eval"), self.eval_size)
        x, y = self._eval.x, self._eval.y
        for start in range(0, self.eval_size, batch_size):
            rows = slice(start, start + batch_size)
            yield Batch(x=x[:, rows], y=y[rows])

    def loss(self, output: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Mean squared error; ``output`` is (N, 1)."""
        return torch.nn.functional.mse_loss(output.float(), batch.y)

    def metrics(self, output: torch.Tensor, batch: Batch) -> dict[str, float]:
        mse = float(self.loss(output.detach(), batch))
        return {"mse": mse, "mse_baseline": MSE_BASELINE, "mse_ratio": mse / MSE_BASELINE}
