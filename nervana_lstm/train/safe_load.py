"""Reading a checkpoint file that anyone may have made: sizes first, then values.

A checkpoint is a zip archive written by ``torch.save`` (its entries are stored,
not compressed), whose payload entry is itself such an archive. Before either is
unpickled:

* it must be a zip archive at all (torch's older format allocates the storage
  sizes a file declares before reading them);
* each entry must be stored or deflated, and the uncompressed sizes its entries
  declare must add up to at most :data:`MAX_EXPANSION` times the archive's own
  size, so a small file that would inflate to gigabytes is refused unread.

Unpickling then goes through ``torch.load(weights_only=True)``, which builds
tensors and plain containers only. Every value that comes back is walked
(:func:`check_values`): only dicts, lists, tuples, str, int, finite floats,
bool, None and tensors are accepted, at most :data:`MAX_DEPTH` levels deep; a
floating tensor must be finite and no tensor may declare more elements than its
storage holds (an expanded view of a tiny storage). :func:`check_state` then
checks each field of the state against its documented type and range.
"""

from __future__ import annotations

import io
import math
import re
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from nervana_lstm.choices import PRECISIONS, TRAIN_BACKENDS
from nervana_lstm.config import RunConfig, config_from_dict

__all__ = [
    "MAX_DEPTH",
    "MAX_EXPANSION",
    "BadCheckpoint",
    "MemoryFile",
    "carry_fits",
    "check_state",
    "check_values",
    "check_zip_sizes",
    "load_archive",
    "state_shapes_fit",
]

#: total declared uncompressed size of an archive's entries / the archive's size
MAX_EXPANSION = 4
#: nesting of containers a checkpoint may hold (it holds about 5)
MAX_DEPTH = 32

#: the keys of a run state (see :mod:`nervana_lstm.train.checkpoint`); ``extra`` may be absent
STATE_KEYS = (
    "config", "step", "backend", "precision", "world_size", "model", "optimizer", "rng",
    "carry", "vocab", "best", "evals_since_best",
)  # fmt: skip
OPTIONAL_KEYS = ("extra",)


class BadCheckpoint(Exception):
    """Why a file is not a usable checkpoint, in words that follow "is not usable: "."""


class MemoryFile(io.RawIOBase):
    """A read-only, seekable file over a buffer, without copying it."""

    def __init__(self, buffer: Any) -> None:
        self._view = memoryview(buffer).cast("B")
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = max(0, min(len(b), len(self._view) - self._pos))
        b[:n] = self._view[self._pos : self._pos + n]
        self._pos += n
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos


def check_zip_sizes(source: Path | MemoryFile, size: int, what: str) -> None:
    """Refuse an archive of ``size`` bytes whose entries would inflate beyond
    ``MAX_EXPANSION * size``, or that is not a zip archive; reads only its directory."""
    try:
        with zipfile.ZipFile(source) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as exc:
        raise BadCheckpoint(f"{what} is not a zip archive as torch.save writes ({exc})") from None
    finally:
        if isinstance(source, MemoryFile):
            source.seek(0)
    declared = 0
    for entry in entries:
        if entry.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise BadCheckpoint(
                f"{what} entry {entry.filename!r} uses compression method "
                f"{entry.compress_type}; torch.save stores entries uncompressed"
            )
        declared += entry.file_size
    if declared > MAX_EXPANSION * size:
        raise BadCheckpoint(
            f"{what} declares {declared:,} bytes of content in a {size:,}-byte archive (more "
            f"than {MAX_EXPANSION}x its size; torch.save stores entries uncompressed); refused "
            "unread"
        )


def load_archive(source: Path | MemoryFile, what: str) -> Any:
    """``torch.load(weights_only=True)`` of an archive whose sizes were checked."""
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickle protocols
            warnings.simplefilter("ignore")
            return torch.load(source, map_location="cpu", weights_only=True)
    except Exception as exc:  # unpickling refused, truncated zip, damaged record...
        raise BadCheckpoint(f"{what} cannot be read safely ({_why(exc)})") from None


def _why(exc: BaseException) -> str:
    """The cause of a load failure; never torch's advice to load without ``weights_only``."""
    text = str(exc)
    if "weights_only" in text or "Weights only" in text:
        named = re.search(r"GLOBAL (\S+)", text)
        what = f" ({named.group(1)})" if named else ""
        return (
            f"it holds a Python object{what} other than tensors and plain values; loading "
            "it would run code from the file, and nervana-lstm never writes such objects"
        )
    lines = text.strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def check_values(value: Any, where: str = "state", depth: int = 0) -> None:
    """Only plain values and sound tensors, at most :data:`MAX_DEPTH` levels deep."""
    if depth > MAX_DEPTH:
        raise BadCheckpoint(f"{where} is nested more than {MAX_DEPTH} levels deep")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str | int):
                raise BadCheckpoint(f"{where} has a key of type {type(key).__name__}")
            check_values(item, f"{where}[{key!r}]", depth + 1)
    elif isinstance(value, list | tuple):
        for i, item in enumerate(value):
            check_values(item, f"{where}[{i}]", depth + 1)
    elif isinstance(value, torch.Tensor):
        _check_tensor(value, where)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise BadCheckpoint(f"{where} is {value}, expected a finite number")
    elif not isinstance(value, str | int | bool | type(None)):
        raise BadCheckpoint(f"{where} is a {type(value).__name__}, not a plain value or tensor")


def _check_tensor(t: torch.Tensor, where: str) -> None:
    if t.layout != torch.strided or t.is_quantized or t.device.type != "cpu":
        raise BadCheckpoint(f"{where} is a {t.layout} tensor on {t.device}; expected a dense one")
    if t.numel() and t.untyped_storage().nbytes() < t.numel() * t.element_size():
        raise BadCheckpoint(
            f"{where} declares {t.numel():,} elements on a storage of "
            f"{t.untyped_storage().nbytes():,} bytes"
        )
    if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all()):
        raise BadCheckpoint(f"{where} holds NaN or infinite values")


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _need(ok: bool, why: Callable[[], str]) -> None:
    if not ok:
        raise BadCheckpoint(why())


def check_state(state: Any, source: str) -> RunConfig:
    """Every field of a run state against its documented type and range; its config back.

    ``source`` names the file in the config's error messages.
    """
    _need(isinstance(state, dict), lambda: "the payload is not a mapping")
    missing = [k for k in STATE_KEYS if k not in state]
    unknown = [k for k in state if k not in STATE_KEYS + OPTIONAL_KEYS]
    _need(not missing, lambda: f"it lacks {', '.join(map(repr, missing))}")
    _need(not unknown, lambda: f"it holds unknown keys {', '.join(map(repr, unknown))}")
    check_values(state)
    _need(isinstance(state["config"], dict), lambda: "'config' is not a mapping")
    cfg = config_from_dict(state["config"], f"config saved in {source}")
    steps, step = cfg.train.steps, state["step"]
    _need(
        _int(step) and 0 <= step <= steps,
        lambda: f"'step' is {step!r}, expected an integer in 0..{steps} (its train.steps)",
    )
    backend, precision, world = state["backend"], state["precision"], state["world_size"]
    _need(backend in TRAIN_BACKENDS, lambda: f"'backend' is {backend!r}, expected {TRAIN_BACKENDS}")
    _need(precision in PRECISIONS, lambda: f"'precision' is {precision!r}, expected {PRECISIONS}")
    _need(_int(world) and world >= 1, lambda: f"'world_size' is {world!r}, expected >= 1")
    _check_model(state["model"])
    _check_optimizer(state["optimizer"])
    _check_rng(state["rng"], world)
    _check_carry(state["carry"])
    vocab = state["vocab"]
    _need(
        vocab is None
        or (
            isinstance(vocab, list)
            and all(isinstance(c, str) and len(c) == 1 for c in vocab)
            and len(set(vocab)) == len(vocab)
        ),
        lambda: "'vocab' is not null or a list of distinct single characters",
    )
    best, waited = state["best"], state["evals_since_best"]
    _need(
        best is None or (isinstance(best, int | float) and not isinstance(best, bool)),
        lambda: f"'best' is {best!r}, expected a finite number or null",
    )
    _need(_int(waited) and waited >= 0, lambda: f"'evals_since_best' is {waited!r}, expected >= 0")
    _need(isinstance(state.get("extra", {}), dict), lambda: "'extra' is not a mapping")
    return cfg


def _check_model(model: Any) -> None:
    _need(
        isinstance(model, dict)
        and bool(model)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in model.items()),
        lambda: "'model' is not a non-empty mapping of names to tensors",
    )


def _check_optimizer(opt: Any) -> None:
    _need(
        isinstance(opt, dict)
        and isinstance(opt.get("state"), dict)
        and isinstance(opt.get("param_groups"), list)
        and all(isinstance(g, dict) for g in opt["param_groups"])
        and all(isinstance(s, dict) for s in opt["state"].values()),
        lambda: "'optimizer' is not an optimizer state_dict (state and param_groups)",
    )


def _check_rng(rng: Any, world: int) -> None:
    size = torch.get_rng_state().numel()
    _need(
        isinstance(rng, torch.Tensor) and rng.dtype == torch.uint8 and rng.shape == (world, size),
        lambda: (
            f"'rng' is {_describe(rng)}, expected a uint8 tensor of shape ({world}, {size}): "
            "one torch RNG state per process"
        ),
    )


def _check_carry(carry: Any) -> None:
    parts = carry if isinstance(carry, list | tuple) else [carry]
    _need(
        carry is None
        or (
            len(parts) in (1, 2)
            and all(isinstance(p, torch.Tensor) and p.is_floating_point() for p in parts)
            and all(p.dim() == 3 and p.shape == parts[0].shape for p in parts)
        ),
        lambda: (
            f"'carry' is {_describe(carry)}, expected null or one or two (layers, batch, "
            "hidden) float tensors"
        ),
    )


def _describe(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    if isinstance(value, list | tuple):
        return f"a list of {len(value)}"
    return f"a {type(value).__name__}"


def carry_fits(carry: Any, cfg: RunConfig) -> str | None:
    """Why a carried state does not fit ``cfg``'s model and batch, or None when it does."""
    if carry is None:
        return None
    m = cfg.model
    expected = (m.num_layers * (2 if m.bidirectional else 1), cfg.train.batch_size, m.hidden_size)
    parts = carry if isinstance(carry, list | tuple) else [carry]
    shape = tuple(parts[0].shape)
    if shape != expected:
        return (
            f"it carries the recurrent state as {shape} (layers, batch, hidden) but this run "
            f"needs {expected}; a run that carries its state resumes with the same "
            f"train.batch_size ({shape[1]})"
        )
    return None


def state_shapes_fit(optimizer: torch.optim.Optimizer) -> str | None:
    """Why a loaded optimizer's per-parameter state does not fit its parameters, or None."""
    for group in optimizer.param_groups:
        for param in group["params"]:
            for name, value in optimizer.state.get(param, {}).items():
                if isinstance(value, torch.Tensor) and value.dim() and value.shape != param.shape:
                    return (
                        f"optimizer state {name!r} has shape {tuple(value.shape)} for a "
                        f"parameter of shape {tuple(param.shape)}"
                    )
    return None
