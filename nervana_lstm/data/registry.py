"""Task names and the factory that builds a task from its name and options."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from nervana_lstm.data.base import Task
from nervana_lstm.errors import UsageError

__all__ = ["TASKS", "make_task", "task_options"]

# name -> "module:class"; imported on first use so that naming one task loads only its code.
TASKS: dict[str, str] = {
    "adding": "nervana_lstm.data.adding:AddingTask",
    "copy": "nervana_lstm.data.copying:CopyTask",
    "charlm": "nervana_lstm.data.charlm:CharLMTask",
    "files": "nervana_lstm.data.files:FileTask",
}


def _task_class(name: object) -> type:
    if not isinstance(name, str) or name not in TASKS:
        raise UsageError(f"unknown task {name!r}; expected one of: {', '.join(TASKS)}")
    module, cls = TASKS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def task_options(name: str) -> dict[str, Any]:
    """The options ``name`` accepts, with their defaults (``inspect.Parameter.empty`` if none)."""
    params = inspect.signature(_task_class(name).__init__).parameters
    return {p.name: p.default for p in params.values() if p.name != "self"}


def make_task(name: str, **options: Any) -> Task:
    """Build the task called ``name``; every option is checked, and a bad one is a UsageError."""
    cls = _task_class(name)
    accepted = task_options(name)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise UsageError(
            f"task {name!r} has no option(s) {', '.join(unknown)}; accepted: {', '.join(accepted)}"
        )
    missing = [k for k, v in accepted.items() if v is inspect.Parameter.empty and k not in options]
    if missing:
        raise UsageError(f"task {name!r} needs option(s): {', '.join(missing)}")
    return cls(**options)
