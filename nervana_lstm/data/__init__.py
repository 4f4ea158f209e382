"""Training data: synthetic memory tasks, character text, and users' own sequence files."""

from __future__ import annotations

from nervana_lstm.data.base import Batch, Task, TaskSpec, shard_slice

__all__ = ["Batch", "Task", "TaskSpec", "shard_slice"]
