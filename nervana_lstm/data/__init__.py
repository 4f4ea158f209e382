"""Training data: synthetic memory tasks, character text, and users' own sequence files.

``make_task(name, **options)`` builds one of (each option's type, bounds and default
are declared once in ``nervana_lstm.config``: ``AddingOptions``, ``CopyOptions``,
``CharLMOptions``, ``FilesOptions``):

========  ==========================================  ===================  ==========================
name      options (defaults)                          input -> target      metrics
========  ==========================================  ===================  ==========================
adding    T=100, seed=0, eval_size=1000                (T,N,2) -> (N,1)     mse, mse_baseline 1/6,
                                                                           mse_ratio
copy      T=100, seed=0, eval_size=1000                tokens (T+20,N) ->   ce, ce_baseline
                                                       per-step classes     10 ln 8/(T+20), ce_ratio,
                                                                           recall_accuracy
charlm    corpus="pydoc_topics", seq_len=100, seed=0,  tokens (T,N) ->      loss (nats), bpc
          eval_fraction=0.05                           next char, stateful
files     path, target="classify", seed=0,             (T,N,F) + lengths -> loss, accuracy
          eval_fraction=0.1, pool_batches=32           (N,) class or        (or mse, rmse)
                                                       (N,O) values
========  ==========================================  ===================  ==========================

Every task's training batch is a pure function of ``(seed, step, rank, world_size)``
(see ``base``); nothing here reads a file or the corpus until a task is built.
``make_task("files", allow_pickle=True, ...)`` lets a ragged NPZ be unpickled: a
permission per call (the CLI's ``--allow-pickle``), never a saved option.

The names below are imported on first use, so importing a torch-free module of
this package (``nervana_lstm.data.file_formats``) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nervana_lstm.data.base import Batch, Task, TaskSpec, shard_slice
    from nervana_lstm.data.registry import TASKS, make_task

__all__ = ["TASKS", "Batch", "Task", "TaskSpec", "make_task", "shard_slice"]

_HOMES = {
    "Batch": "base",
    "Task": "base",
    "TaskSpec": "base",
    "shard_slice": "base",
    "TASKS": "registry",
    "make_task": "registry",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        value = getattr(importlib.import_module(f"nervana_lstm.data.{_HOMES[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
