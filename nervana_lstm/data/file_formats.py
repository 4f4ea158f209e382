"""Readers for users' sequence files: long-format CSV and NPZ.

**CSV** (UTF-8, a header row, one row per time step)::

    sequence_id,t,<feature>,<feature>,...,target
    walk-1,0,0.12,3.4,up
    walk-1,1,0.15,3.1,
    walk-2,0,...

- ``sequence_id``: any text; rows of one sequence need not be adjacent.
- ``t``: a number that orders the steps of a sequence; no repeats within a sequence.
- every other column except ``target`` is a numeric feature, in header order.
- ``target``: the sequence's label (classification, any text) or value (regression, a
  number). Rows may leave it empty, but the non-empty ones of a sequence must agree.

**NPZ** (``numpy.savez``), with ``y`` holding one label or value row per sequence and ``x``
in one of three layouts:

- padded: ``x`` of shape (N, T, F) and optional ``lengths`` (N,), default all T;
- flat: ``x`` of shape (sum of lengths, F), the sequences one after another, with
  ``lengths`` (N,) required;
- ragged: ``x`` an object array of N arrays of shape (T_i, F) or (T_i,). NumPy stores
  these with pickle, which can run code hidden in the file, so they load only with
  ``allow_pickle=True`` (the CLI's ``--allow-pickle``), for files you trust.

``y``: (N,) integer or string labels for classification; (N,) or (N, O) numbers for
regression. ``lengths`` are integers >= 1 (and, flat, add up to the rows of ``x``).
Features and regression targets are read as float32, so a value beyond its range
(|v| > 3.4e38, finite as a float64) is refused rather than read as infinity. Every
problem is reported as a UsageError naming the file, and the row or column at fault.

Files given for prediction (``kind=None``) need no targets: the CSV's ``target``
column and the NPZ's ``y`` may be absent, and are not read when present.

The readers return numpy arrays and import neither torch nor OpenVINO, so the
torch-free runtime (``nervana-lstm infer``) reads the same files as training.
"""

from __future__ import annotations

import csv
import math
import os
import zipfile
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

import numpy as np

from nervana_lstm.errors import UsageError
from nervana_lstm.paths import regular_file

__all__ = [
    "FLOAT32_MAX",
    "SequenceFile",
    "finite_number",
    "read_csv",
    "read_npz",
    "read_sequences",
]

Kind = Literal["classify", "regress"]
ID, TIME, TARGET = "sequence_id", "t", "target"


@dataclass
class SequenceFile:
    """What a file held: sequences of feature rows, and one target per sequence."""

    seqs: list[np.ndarray]  # each (T_i, F) float32
    labels: list[object] | None  # classification: one label per sequence
    values: np.ndarray | None  # regression: (N, O) float32
    feature_names: list[str]
    ids: list[str] | None = None  # the CSV's sequence ids in order of first appearance


#: the largest finite float32, the precision models read features and targets in
FLOAT32_MAX = float(np.finfo(np.float32).max)


def finite_number(text: str, where: str, float32: bool = False) -> float:
    """``text`` as a finite float (within float32's range if ``float32``); UsageError
    naming ``where`` otherwise."""
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{where}: {text!r} is not a number") from None
    if not math.isfinite(value):
        raise UsageError(f"{where}: {text!r} is not a finite number")
    if float32 and abs(value) > FLOAT32_MAX:
        raise UsageError(
            f"{where}: {text!r} is beyond float32's range (|v| <= {FLOAT32_MAX:.4g}), the "
            "precision the model reads; rescale the column"
        )
    return value


def read_csv(path: str, kind: Kind | None) -> SequenceFile:
    """Read a long-format CSV (layout in the module docstring); ``kind=None``: no targets."""
    try:
        # utf-8-sig: spreadsheets often start a UTF-8 CSV with a byte-order mark
        with open(path, encoding="utf-8-sig", newline="") as f:
            reader = csv.reader(f)
            rows = list(reader)
    except csv.Error as e:
        raise UsageError(f"{path}:{reader.line_num}: not a readable CSV row ({e})") from None
    except UnicodeDecodeError as e:
        raise UsageError(f"{path}: not UTF-8 text (bad byte at offset {e.start})") from None
    except OSError as e:
        raise UsageError(f"{path}: cannot read: {e.strerror}") from None
    if not rows:
        raise UsageError(f"{path}: empty file; expected a header row '{ID},{TIME},...,{TARGET}'")
    header = [h.strip() for h in rows[0]]
    required = (ID, TIME, TARGET) if kind is not None else (ID, TIME)
    missing = [c for c in required if c not in header]
    if missing:
        raise UsageError(
            f"{path}: missing column(s) {', '.join(missing)}; the header is {header}, "
            f"expected '{ID}', '{TIME}', feature columns and '{TARGET}'"
        )
    if len(set(header)) != len(header):
        raise UsageError(f"{path}: repeated column names in the header {header}")
    features = [h for h in header if h not in (ID, TIME, TARGET)]
    if not features:
        raise UsageError(f"{path}: no feature columns besides {ID}, {TIME} and {TARGET}")
    col = {h: i for i, h in enumerate(header)}
    steps: dict[str, list[tuple[float, list[float], int]]] = {}
    targets: dict[str, tuple[str, int]] = {}
    for line, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue  # blank line
        if len(row) != len(header):
            raise UsageError(f"{path}:{line}: {len(row)} fields, expected {len(header)}")
        sid = row[col[ID]].strip()
        t = finite_number(row[col[TIME]], f"{path}:{line}, column '{TIME}'")
        x = [finite_number(row[col[c]], f"{path}:{line}, column '{c}'", True) for c in features]
        steps.setdefault(sid, []).append((t, x, line))
        target = row[col[TARGET]].strip() if kind is not None else ""
        if target:
            if kind == "regress":
                finite_number(target, f"{path}:{line}, column '{TARGET}'", True)
            seen = targets.setdefault(sid, (target, line))
            if seen[0] != target:
                raise UsageError(
                    f"{path}:{line}: sequence {sid!r} has target {target!r} here but "
                    f"{seen[0]!r} on line {seen[1]}; one target per sequence"
                )
    if not steps:
        raise UsageError(f"{path}: no data rows after the header")
    seqs, raw = [], []
    for sid, sequence in steps.items():
        if kind is not None and sid not in targets:
            raise UsageError(f"{path}: sequence {sid!r} has no '{TARGET}' value on any row")
        sequence.sort(key=lambda s: s[0])
        for a, b in pairwise(sequence):
            if a[0] == b[0]:
                raise UsageError(
                    f"{path}:{b[2]}: sequence {sid!r} repeats t={b[0]:g} (also on line {a[2]})"
                )
        seqs.append(np.array([s[1] for s in sequence], dtype=np.float32))
        if kind is not None:
            raw.append(targets[sid][0])
    ids = list(steps)
    if kind is None:
        return SequenceFile(seqs, None, None, features, ids)
    if kind == "regress":
        values = np.array([[float(v)] for v in raw], dtype=np.float32)
        return SequenceFile(seqs, None, values, features, ids)
    labels: list[object] = raw
    if all(_is_int(v) for v in raw):
        labels = [int(v) for v in raw]
    return SequenceFile(seqs, labels, None, features, ids)


def _is_int(text: str) -> bool:
    try:
        int(text)
    except ValueError:
        return False
    return True


def _numeric(array: np.ndarray, path: str, name: str) -> np.ndarray:
    if array.dtype.kind not in "biuf":
        raise UsageError(f"{path}: array '{name}' must be numeric, got dtype {array.dtype}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        bad = np.argwhere(~np.isfinite(array))[0].tolist()
        raise UsageError(f"{path}: array '{name}' has a NaN or infinite value at index {bad}")
    if array.dtype.kind == "f" and array.dtype.itemsize > 4 and array.size:
        beyond = np.abs(array) > FLOAT32_MAX
        if beyond.any():
            bad = np.argwhere(beyond)[0].tolist()
            raise UsageError(
                f"{path}: array '{name}' has {array[tuple(bad)]:.4g} at index {bad}, beyond "
                f"float32's range (|v| <= {FLOAT32_MAX:.4g}), the precision the model reads; "
                "rescale the data"
            )
    return array


def _lengths(arrays: dict, path: str, n: int | None, limit: int | None) -> np.ndarray:
    """``lengths`` as int64, checked: 1-D (``n`` entries if given), each in ``1..limit``."""
    lengths = _numeric(np.asarray(arrays["lengths"]), path, "lengths")
    if lengths.ndim != 1 or (n is not None and len(lengths) != n) or lengths.dtype.kind not in "iu":
        count = f"{n} integers" if n is not None else "integers"
        raise UsageError(
            f"{path}: 'lengths' must be {count} (one per sequence), "
            f"got shape {lengths.shape} dtype {lengths.dtype}"
        )
    outside = (lengths < 1) | (lengths > limit) if limit is not None else lengths < 1
    if outside.any():
        bound = f"1..{limit}" if limit is not None else ">= 1"
        i = int(np.flatnonzero(outside)[0])
        raise UsageError(
            f"{path}: 'lengths' must be in {bound}, got {lengths.min()}..{lengths.max()} "
            f"(sequence {i} has length {lengths[i]})"
        )
    return lengths.astype(np.int64)


def _load_npz(path: str, allow_pickle: bool, needs_y: bool = True) -> dict[str, np.ndarray]:
    """The archive's ``x``, ``y`` (unless not ``needs_y``) and ``lengths`` if present, read eagerly."""
    # np.load unpickles a plain pickle file when allowed to: only ever hand it a zip archive.
    if not zipfile.is_zipfile(path):
        raise UsageError(f"{path}: not an .npz archive (numpy.savez writes a zip file)")
    arrays: dict[str, np.ndarray] = {}
    name = "x"
    try:
        with np.load(path, allow_pickle=allow_pickle) as npz:
            missing = [k for k in ("x", "y") if k not in npz.files and (k == "x" or needs_y)]
            if missing:
                raise UsageError(
                    f"{path}: missing array(s) {', '.join(missing)}; found {npz.files}, "
                    "expected 'x', 'y' and optionally 'lengths'"
                )
            for name in ("x", "y", "lengths") if needs_y else ("x", "lengths"):
                if name in npz.files:
                    arrays[name] = npz[name]
    except UsageError:
        raise
    except ValueError as e:
        if "allow_pickle" not in str(e):
            raise UsageError(f"{path}: not a readable .npz file ({e})") from None
        raise UsageError(
            f"{path}: array '{name}' is an object array, which NumPy can load only by "
            "unpickling (that can run code from the file); save 'x' padded (N, T, F) or flat "
            "(sum T, F) with 'lengths', or pass --allow-pickle for a file you trust"
        ) from None
    except Exception as e:  # a damaged archive fails in zipfile, zlib or numpy's header parser
        raise UsageError(f"{path}: not a readable .npz file ({type(e).__name__}: {e})") from None
    return arrays


def _sequences(arrays: dict[str, np.ndarray], path: str) -> list[np.ndarray]:
    x = arrays["x"]
    if x.dtype == object:
        if x.ndim != 1:
            raise UsageError(f"{path}: an object array 'x' must be 1-D, got shape {x.shape}")
        seqs = []
        for i, item in enumerate(x):
            try:
                s = np.asarray(item)
            except (ValueError, TypeError):  # e.g. a ragged nested list
                raise UsageError(f"{path}: x[{i}] is not a (T, F) array") from None
            s = _numeric(s, path, f"x[{i}]")
            s = s[:, None] if s.ndim == 1 else s
            if s.ndim != 2 or len(s) == 0:
                raise UsageError(f"{path}: x[{i}] must be (T, F) with T >= 1, got shape {s.shape}")
            seqs.append(s)
        return seqs
    x = _numeric(x, path, "x")
    if x.ndim == 3:
        if x.shape[1] == 0:
            raise UsageError(f"{path}: padded 'x' {x.shape} has no time steps")
        lengths = (
            _lengths(arrays, path, len(x), x.shape[1])
            if "lengths" in arrays
            else np.full(len(x), x.shape[1])
        )
        return [x[i, : lengths[i]] for i in range(len(x))]
    if x.ndim == 2:
        if "lengths" not in arrays:
            raise UsageError(
                f"{path}: a 2-D 'x' {x.shape} is read as sequences laid end to end and needs "
                "'lengths'; for padded data give 'x' a feature axis: (N, T, F)"
            )
        lengths = _lengths(arrays, path, None, len(x))  # each within the rows: the sum cannot wrap
        if len(lengths) == 0:
            return []
        if lengths.sum() != len(x):
            raise UsageError(
                f"{path}: 'lengths' add up to {lengths.sum()} but 'x' has {len(x)} rows"
            )
        return np.split(x, np.cumsum(lengths)[:-1])
    raise UsageError(f"{path}: 'x' must be (N, T, F), (sum T, F) or an object array; got {x.shape}")


def read_npz(path: str, kind: Kind | None, allow_pickle: bool = False) -> SequenceFile:
    """Read an ``.npz`` file (layouts in the module docstring); ``kind=None``: no ``y``."""
    arrays = _load_npz(path, allow_pickle, needs_y=kind is not None)
    seqs = _sequences(arrays, path)
    if not seqs:
        raise UsageError(f"{path}: holds no sequences")
    widths = {s.shape[1] for s in seqs}
    if len(widths) != 1:
        raise UsageError(f"{path}: sequences have different feature counts {sorted(widths)}")
    seqs32 = [np.ascontiguousarray(s, dtype=np.float32) for s in seqs]
    names = [f"x{i}" for i in range(widths.pop())]
    if kind is None:
        return SequenceFile(seqs32, None, None, names)
    y = arrays["y"]
    if y.ndim == 0 or len(y) != len(seqs):
        rows = "a single value" if y.ndim == 0 else f"{len(y)} rows"
        raise UsageError(f"{path}: 'y' has {rows} but 'x' holds {len(seqs)} sequences")
    if kind == "regress":
        y = _numeric(y, path, "y")
        if y.ndim not in (1, 2):
            raise UsageError(f"{path}: regression 'y' must be (N,) or (N, O), got {y.shape}")
        values = np.ascontiguousarray(y.reshape(len(y), -1), dtype=np.float32)
        return SequenceFile(seqs32, None, values, names)
    if y.ndim != 1 or y.dtype.kind not in "biuUS":
        raise UsageError(
            f"{path}: classification 'y' must be (N,) integer or string labels, got shape "
            f"{y.shape} dtype {y.dtype} (use target='regress' for numeric values)"
        )
    return SequenceFile(seqs32, [v.item() if hasattr(v, "item") else v for v in y], None, names)


def read_sequences(path: str, kind: Kind | None, allow_pickle: bool = False) -> SequenceFile:
    """Read ``path`` by its extension: ``.csv`` or ``.npz``; ``kind=None`` reads no targets."""
    ext = os.path.splitext(path)[1].lower()
    regular_file(path, "data file", "a .csv or .npz file")  # a directory or device is named so
    if ext == ".csv":
        return read_csv(path, kind)
    if ext == ".npz":
        return read_npz(path, kind, allow_pickle)
    raise UsageError(f"data file {path!r}: unknown extension {ext!r}; expected .csv or .npz")
