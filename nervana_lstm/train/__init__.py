"""Training: the loop, checkpoints, several processes, and where the arithmetic runs."""

from __future__ import annotations

__all__ = [
    "accel",
    "autotune",
    "checkpoint",
    "distributed",
    "loop",
    "report",
    "schedule",
    "signals",
]
