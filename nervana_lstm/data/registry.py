"""Task names and the factory that builds a task from its name and options.

Each task's options are declared once, as a model in ``nervana_lstm.config``
(``TASK_OPTIONS``): configs and ``make_task`` validate them the same way.
"""

from __future__ import annotations

import importlib
from typing import Any

from pydantic import ValidationError

from nervana_lstm.choices import TaskName
from nervana_lstm.config import TASK_OPTIONS, TaskOptions
from nervana_lstm.data.base import Task
from nervana_lstm.errors import UsageError, short_repr

__all__ = ["TASKS", "make_task"]

# name -> "module:class"; imported on first use so that naming one task loads only its code.
TASKS: dict[TaskName, str] = {
    "adding": "nervana_lstm.data.adding:AddingTask",
    "copy": "nervana_lstm.data.copying:CopyTask",
    "charlm": "nervana_lstm.data.charlm:CharLMTask",
    "files": "nervana_lstm.data.files:FileTask",
}

# what an option must be, by pydantic error type (its ctx fills the braces)
_MUST_BE = {
    "greater_than_equal": ">= {ge}",
    "greater_than": "> {gt}",
    "less_than_equal": "<= {le}",
    "less_than": "< {lt}",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "string_type": "a string",
    "string_too_short": "a non-empty string",
    "list_type": "a list",
    "too_short": "a non-empty list",
    "literal_error": "{expected}",
}


def _problems(name: str, options: dict[str, Any], exc: ValidationError) -> str:
    """Unknown options, then missing ones, then each bad value with what it must be."""
    unknown: list[str] = []
    missing: list[str] = []
    bad: dict[str, dict[str, None]] = {}
    for err in exc.errors():
        key = str(err["loc"][0])
        if err["type"] == "extra_forbidden":
            unknown.append(key)
        elif err["type"] == "missing":
            missing.append(key)
        else:  # a union reports once per member: "a string or a list"
            words = _MUST_BE.get(err["type"])
            text = words.format(**err.get("ctx", {})) if words else err["msg"]
            bad.setdefault(key, {})[text] = None  # a dict keeps the order and drops repeats
    lines = []
    if unknown:
        accepted = ", ".join(TASK_OPTIONS[name].model_fields)
        lines.append(f"task {name!r} has no option(s) {', '.join(unknown)}; accepted: {accepted}")
    if missing:
        lines.append(f"task {name!r} needs option(s): {', '.join(missing)}")
    lines += [
        f"{name}: option {key!r} must be {' or '.join(words)}, got {short_repr(options[key])}"
        for key, words in bad.items()
    ]
    return "; ".join(lines)


def make_task(name: str, *, allow_pickle: bool = False, **options: Any) -> Task:
    """Build the task called ``name``; every option is checked, and a bad one is a UsageError.

    ``allow_pickle`` is no option of a task but a permission given per call (the
    CLI's ``--allow-pickle``): a ``files`` task may then unpickle a ragged NPZ, which
    can run code from the file. Other tasks read no such file and ignore it.
    """
    if not isinstance(name, str) or name not in TASKS:
        raise UsageError(f"unknown task {short_repr(name)}; expected one of: {', '.join(TASKS)}")
    if not isinstance(allow_pickle, bool):
        raise UsageError(f"allow_pickle must be True or False, got {short_repr(allow_pickle)}")
    try:
        validated: TaskOptions = TASK_OPTIONS[name].model_validate(options)
    except ValidationError as exc:
        raise UsageError(_problems(name, options, exc)) from None
    module, cls = TASKS[name].split(":")
    task_class = getattr(importlib.import_module(module), cls)
    if name == "files":
        return task_class(validated, allow_pickle=allow_pickle)
    return task_class(validated)
