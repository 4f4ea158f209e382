"""Build the model for one backend and time its training step: what ``accel: auto`` measures.

The training loop, ``auto`` and the perf harness build their models with the same
function, :func:`build_for`, so the timings ``auto`` decides on are those of the
model that then trains, and the ones a benchmark can check.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from nervana_lstm.choices import Precision, TrainBackend
from nervana_lstm.config import RunConfig
from nervana_lstm.data import Batch, Task
from nervana_lstm.models import SequenceModel, build_model
from nervana_lstm.train import accel
from nervana_lstm.train.schedule import make_optimizer

__all__ = ["build_for", "measure_backend", "train_step"]


def build_for(
    backend: TrainBackend,
    task: Task,
    cfg: RunConfig,
    restore: Callable[[nn.Module, torch.optim.Optimizer], None] | None = None,
) -> tuple[nn.Module, torch.optim.Optimizer, SequenceModel]:
    """(model as it will run, its optimizer, the plain model) with the run's initial weights.

    The weights are seeded by ``train.seed``, the same for every backend;
    ``restore(model, optimizer)``, when given, loads saved weights and optimizer
    state before the backend is applied (IPEX replaces both).
    """
    torch.manual_seed(cfg.train.seed)
    plain = build_model(task.spec, cfg.model, accel.impl_for(backend))
    optimizer = make_optimizer(plain.parameters(), cfg.optim)
    if restore is not None:
        restore(plain, optimizer)
    model, optimizer = accel.apply_backend(backend, plain, optimizer, cfg.train.precision)
    return model, optimizer, plain


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    task: Task,
    batch: Batch,
    precision: Precision,
    clip_norm: float | None = None,
) -> Callable[[], None]:
    """One bare training step on a fixed batch: forward, loss, backward, clip, update."""
    params = [p for p in model.parameters() if p.requires_grad]

    def step() -> None:
        with accel.autocast(precision):
            out, _ = model(batch.x, None, batch.lengths)
            loss = task.loss(out.float(), batch)
        loss.backward()
        if clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, clip_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def measure_backend(
    backend: TrainBackend,
    task: Task,
    cfg: RunConfig,
    batch: Batch,
    give_up_after: float | None = None,
    warmup: int = 2,
    repeats: int = 3,
) -> float:
    """Median seconds per training step of ``cfg``'s model on ``backend`` for ``batch``."""
    model, optimizer, _ = build_for(backend, task, cfg)
    model.train()
    step = train_step(model, optimizer, task, batch, cfg.train.precision, cfg.optim.clip_norm)
    return accel.time_steps(step, warmup, repeats, give_up_after)
