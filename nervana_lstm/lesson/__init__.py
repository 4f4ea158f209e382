"""The lecture's argument, shown with real runs: which kinds remember, and how their gates do it.

* :mod:`~nervana_lstm.lesson.memory` trains every kind on a memory task at
  several lags (``nervana-lstm memory``); :mod:`~nervana_lstm.lesson.memory_report`
  writes its table and plot; :mod:`~nervana_lstm.lesson.budget` solves hidden
  sizes for equal parameter counts.
* :mod:`~nervana_lstm.lesson.trace` runs a trained model through the reference
  cells and records every gate at every step; :mod:`~nervana_lstm.lesson.inspect`
  picks the input and the units to show, :mod:`~nervana_lstm.lesson.gate_plot`
  draws them (``nervana-lstm inspect``).

The names below are imported on first use (they import torch).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "Cell",
    "GateTrace",
    "LayerTrace",
    "MemoryPlan",
    "inspect_model",
    "matched_hidden_size",
    "model_params",
    "plan_cells",
    "plot_gates",
    "run_memory",
    "trace_model",
    "write_reports",
]

_HOMES = {
    "Cell": "memory",
    "MemoryPlan": "memory",
    "plan_cells": "memory",
    "run_memory": "memory",
    "write_reports": "memory_report",
    "matched_hidden_size": "budget",
    "model_params": "budget",
    "GateTrace": "trace",
    "LayerTrace": "trace",
    "trace_model": "trace",
    "inspect_model": "inspect",
    "plot_gates": "gate_plot",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        value = getattr(importlib.import_module(f"nervana_lstm.lesson.{_HOMES[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
