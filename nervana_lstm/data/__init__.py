"""Training data: synthetic memory tasks, character text, and users' own sequence files."""

from __future__ import annotations

from nervana_lstm.data.base import Batch, Task, TaskSpec, shard_slice
from nervana_lstm.data.registry import TASKS, make_task, task_options

__all__ = ["TASKS", "Batch", "Task", "TaskSpec", "make_task", "shard_slice", "task_options"]
