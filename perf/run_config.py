"""The run configs the training benchmarks start from: a shipped one, loaded and resolved.

``train_overhead``, ``train_profile`` and ``train_vs_plain`` default to the shipped
``charlm.yaml`` (package ``nervana_lstm.configs``, found wherever the toolkit is
installed) and apply ``--set`` overrides as ``train`` does.
"""

from __future__ import annotations

import contextlib
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

__all__ = ["load_run_config", "shipped_config"]


def shipped_config(stack: contextlib.ExitStack, name: str = "charlm.yaml") -> Path:
    """A path to the shipped config ``name``, valid until ``stack`` closes."""
    return stack.enter_context(as_file(files("nervana_lstm.configs").joinpath(name)))


def load_run_config(path: Path, overrides: list[str], *, resolve_precision: bool = False) -> Any:
    """The resolved config of ``path`` with ``overrides``; with ``resolve_precision``,
    ``train.precision: auto`` replaced by what it means on this CPU."""
    from nervana_lstm.config import load_config, resolve_config
    from nervana_lstm.train.accel import choose_precision

    cfg = resolve_config(load_config(path, overrides))
    if not resolve_precision:
        return cfg
    precision = choose_precision(cfg.train.precision).precision
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"precision": precision})})
