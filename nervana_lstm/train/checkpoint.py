"""Checkpoints that are safe to load and never half-written.

File layout (one ``torch.save`` file, readable with ``torch.load(weights_only=True)``)::

    {"format": "nervana-lstm-checkpoint", "version": 1,
     "sha256": hex digest of payload bytes,
     "payload": uint8 tensor = torch.save bytes of the state dict below}

    state = {"config": resolved config (dict of primitives),
             "step": int, "backend": str, "precision": str, "world_size": int,
             "model": {name: tensor}, "optimizer": optimizer.state_dict(),
             "rng": (P, S) uint8 tensor, one torch RNG state per process,
             "carry": None | tensor | [tensor, tensor]  (the full-batch recurrent state),
             "vocab": None | [str],  "best": float | None, "evals_since_best": int,
             "extra": {str: primitive}}

Only tensors and primitive containers are stored, so loading needs no pickle of
arbitrary objects; the digest makes any change to the payload (a flipped byte,
a truncated file) a clear error rather than silently wrong weights.
"""

from __future__ import annotations

import hashlib
import io
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from nervana_lstm.atomic import atomic_path
from nervana_lstm.errors import UsageError

__all__ = [
    "FORMAT",
    "VERSION",
    "check_compatible",
    "load_checkpoint",
    "save_checkpoint",
]

FORMAT = "nervana-lstm-checkpoint"
VERSION = 1

#: config keys that decide the shapes of the weights and of the optimizer state; a checkpoint
#: must agree on all of them
SHAPE_KEYS: tuple[tuple[str, str], ...] = (
    ("task", "name"),
    ("optim", "name"),
    ("model", "kind"),
    ("model", "hidden_size"),
    ("model", "num_layers"),
    ("model", "bidirectional"),
    ("model", "embedding_dim"),
)

_REQUIRED = {
    "config": dict,
    "step": int,
    "backend": str,
    "precision": str,
    "world_size": int,
    "model": dict,
    "optimizer": dict,
}


def save_checkpoint(path: str | Path, state: Mapping[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically: a temp file in the same directory, then rename."""
    path = Path(path)
    _check_safe(dict(state), "state")
    path.parent.mkdir(parents=True, exist_ok=True)
    inner = io.BytesIO()
    torch.save(dict(state), inner)
    data = inner.getvalue()
    wrapper = {
        "format": FORMAT,
        "version": VERSION,
        "sha256": hashlib.sha256(data).hexdigest(),
        "payload": torch.frombuffer(bytearray(data), dtype=torch.uint8),
    }
    with atomic_path(path, fsync=True) as tmp, open(tmp, "wb") as fh:
        torch.save(wrapper, fh)


_PRIMITIVES = (str, int, float, bool, type(None), torch.Tensor)


def _check_safe(value: Any, where: str) -> None:
    """Only what ``torch.load(weights_only=True)`` reads back: tensors and primitive containers."""
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str | int):
                raise TypeError(f"checkpoint key {where}[{k!r}] is not a str or int")
            _check_safe(v, f"{where}[{k!r}]")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_safe(v, f"{where}[{i}]")
    elif not isinstance(value, _PRIMITIVES):
        raise TypeError(
            f"checkpoint value {where} is a {type(value).__name__}, not storable safely"
        )


def _bad(path: Path, why: str) -> UsageError:
    return UsageError(f"{path} is not a usable nervana-lstm checkpoint: {why}")


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and verify a checkpoint; anything else (garbage, tampered, foreign) is refused."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"checkpoint {path} does not exist")
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols
            warnings.simplefilter("ignore")
            wrapper = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling refused, truncated zip, not a torch file...
        raise _bad(path, f"cannot be read safely ({_first_line(exc)})") from None
    if not isinstance(wrapper, dict) or wrapper.get("format") != FORMAT:
        raise _bad(path, "it has no nervana-lstm format marker")
    if wrapper.get("version") != VERSION:
        raise _bad(path, f"format version {wrapper.get('version')!r}, expected {VERSION}")
    payload = wrapper.get("payload")
    digest = wrapper.get("sha256")
    if not isinstance(payload, torch.Tensor) or payload.dtype != torch.uint8 or payload.dim() != 1:
        raise _bad(path, "the payload is missing")
    data = payload.numpy().tobytes()
    if not isinstance(digest, str) or hashlib.sha256(data).hexdigest() != digest:
        raise _bad(path, "its content does not match the stored SHA-256 (modified or corrupted)")
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise _bad(path, f"the payload cannot be read safely ({_first_line(exc)})") from None
    if not isinstance(state, dict):
        raise _bad(path, "the payload is not a mapping")
    for key, kind in _REQUIRED.items():
        if not isinstance(state.get(key), kind):
            raise _bad(path, f"{key!r} is missing or not a {kind.__name__}")
    if not all(isinstance(v, torch.Tensor) for v in state["model"].values()):
        raise _bad(path, "the model weights are not all tensors")
    return state


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


def check_compatible(saved: Mapping[str, Any], current: Mapping[str, Any], path: Path) -> None:
    """Refuse a checkpoint whose task or model shape differs from the config's."""
    problems = []
    for section, key in SHAPE_KEYS:
        old = (saved.get(section) or {}).get(key)
        new = (current.get(section) or {}).get(key)
        if old != new:
            problems.append(
                f"{section}.{key} is {old!r} in the checkpoint but {new!r} in the config"
            )
    if problems:
        raise UsageError(f"checkpoint {path} does not match the config: " + "; ".join(problems))


def changed_keys(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two resolved configs."""
    out = []
    for section in sorted(set(saved) | set(current)):
        a, b = saved.get(section) or {}, current.get(section) or {}
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                out.append(f"{section}.{key}")
    return out
