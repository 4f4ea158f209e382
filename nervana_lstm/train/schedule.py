"""Optimizer construction and the learning-rate schedule.

The schedule is a pure function of the step, so a resumed run needs nothing
but the step to continue it::

    warmup   lr(s) = lr * (s + 1) / W                                   for s < W
    constant lr(s) = lr                                                  for s >= W
    cosine   lr(s) = lr * (m + (1 - m) * (1 + cos(pi * p)) / 2),  p = (s - W) / (S - W)

with ``W = warmup_steps``, ``S = train.steps`` and ``m = min_lr_ratio``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

from nervana_lstm.config import OptimConfig

__all__ = ["lr_at", "make_optimizer", "set_lr"]


def make_optimizer(params: Iterable[torch.nn.Parameter], cfg: OptimConfig) -> torch.optim.Optimizer:
    """AdamW or SGD (with optional momentum) over ``params``.

    AdamW uses torch's fused CPU kernel (one pass over each parameter for the
    whole update instead of a chain of elementwise ops), SGD its multi-tensor
    (``foreach``) form.
    """
    if cfg.name == "adamw":
        return torch.optim.AdamW(
            params, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, fused=True
        )
    return torch.optim.SGD(
        params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, foreach=True
    )


def lr_at(step: int, cfg: OptimConfig, total_steps: int) -> float:
    """Learning rate for the update made at ``step`` (0-based)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    span = max(1, total_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    m = cfg.min_lr_ratio
    return cfg.lr * (m + (1.0 - m) * 0.5 * (1.0 + math.cos(math.pi * progress)))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
