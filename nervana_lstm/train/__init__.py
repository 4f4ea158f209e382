"""Training: the loop, checkpoints, several processes, and where the arithmetic runs.

loop         run_training, the driver: set up, restore, backend, the steps, the end
checkpoint   what a checkpoint holds: snapshot, restore, load_trained
safe_load    reading a checkpoint as if hostile: zip sizes, plain values, every field
progress     the run's position (step, best loss, carried state)
report       what a run prints and writes: setup lines, throughput, metrics, plot, summary
accel        training backends and precision; autotune: build_for and auto's measurement
distributed  torchrun processes; schedule: optimizer and learning rate; signals: stops
sampling     text from a character LM
"""

from __future__ import annotations

__all__ = [
    "accel",
    "autotune",
    "checkpoint",
    "distributed",
    "loop",
    "progress",
    "report",
    "safe_load",
    "sampling",
    "schedule",
    "signals",
]
