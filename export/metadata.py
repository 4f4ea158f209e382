"""``nervana_lstm.json``: what an exported model is, in a form any program can read.

An export directory holds ``model.xml``/``model.bin`` (OpenVINO IR) and this
file. It says everything a caller needs to feed the model and read its output
without torch or the training run: the kind and sizes, the task and its
vocabulary or features and classes, the input and output tensors with their
shapes and layout, the precision of the weights, whether the model is stateful,
the parity and quantization figures measured at export, and the versions of the
libraries that made it. The key fields are also written into the IR's own
``rt_info`` under ``nervana_lstm`` so the IR alone identifies itself.

This module reads and writes plain JSON and imports neither torch nor OpenVINO.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nervana_lstm.errors import UsageError

__all__ = [
    "BIN_FILE",
    "FORMAT",
    "FORMAT_VERSION",
    "META_FILE",
    "MODEL_FILE",
    "RT_INFO_KEYS",
    "ExportMeta",
    "TensorInfo",
    "read_meta",
    "write_meta",
]

FORMAT = "nervana-lstm-openvino"
FORMAT_VERSION = 1
META_FILE = "nervana_lstm.json"
MODEL_FILE = "model.xml"
BIN_FILE = "model.bin"
#: the fields copied into the IR's rt_info (``nervana_lstm/<key>``)
RT_INFO_KEYS = ("kind", "task", "precision", "stateful", "layout", "format_version")
_MAX_META_BYTES = 64 * 1024 * 1024  # a vocabulary or class list, not a data set


@dataclass
class TensorInfo:
    """One input or output: its name, element type, shape (-1: any size) and axes."""

    name: str
    dtype: str  # "f32" | "i64"
    shape: list[int]
    layout: str  # axis letters, e.g. "NTC", "NT", "N", "NLC"


@dataclass
class ExportMeta:
    """The contents of ``nervana_lstm.json``; see the module docstring."""

    kind: str
    hidden_size: int
    num_layers: int
    bidirectional: bool
    input_size: int  # features, or the embedding's input (vocabulary size) for tokens
    output_size: int
    parameters: int
    task: str
    input_kind: str  # "tokens" | "features"
    target: str  # "regress_last" | "classify_last" | "classify_steps"
    precision: str  # weights: "fp32" | "fp16" | "int8"
    stateful: bool
    batch: int | None  # fixed batch of a stateful model, else None
    inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    layout: str = "batch_first"
    embedding_dim: int | None = None
    vocab: list[str] | None = None  # charlm: characters in id order; id len(vocab) = unknown
    classes: list[Any] | None = None  # classification labels (text or int) in id order, if known
    feature_names: list[str] | None = None
    task_options: dict[str, Any] = field(default_factory=dict)
    metric: str | None = None  # the task's headline figure (bpc, mse, accuracy, ce)
    parity: dict[str, Any] = field(default_factory=dict)
    quantization: dict[str, Any] | None = None
    versions: dict[str, str | None] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    @property
    def state_names(self) -> tuple[str, ...]:
        """The recurrent state's parts: ``("h", "c")`` for lstm/dglstm, else ``("h",)``."""
        return ("h", "c") if self.kind in ("lstm", "dglstm") else ("h",)

    def input(self, name: str) -> TensorInfo | None:
        return next((t for t in self.inputs if t.name == name), None)

    def output(self, name: str) -> TensorInfo | None:
        return next((t for t in self.outputs if t.name == name), None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def rt_info(self) -> dict[str, str]:
        """The key fields as strings, for ``ov.Model.set_rt_info``."""
        return {key: str(getattr(self, key)) for key in RT_INFO_KEYS}


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: write them as None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def write_meta(meta: ExportMeta, directory: Path) -> Path:
    """Write ``directory/nervana_lstm.json`` (the directory is the exporter's temp dir)."""
    path = Path(directory) / META_FILE
    text = json.dumps(_finite(meta.to_dict()), indent=2, ensure_ascii=False, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")
    return path


def read_meta(directory: str | Path) -> ExportMeta:
    """Read the metadata of an export directory; UsageError when it is not one."""
    directory = Path(directory)
    path = directory / META_FILE
    if not directory.is_dir():
        raise UsageError(
            f"{directory} is not an exported model directory (expected a directory holding "
            f"{MODEL_FILE} and {META_FILE}, as written by 'nervana-lstm export')"
        )
    if not path.is_file():
        raise UsageError(
            f"{directory} has no {META_FILE}; expected an export directory written by "
            "'nervana-lstm export'"
        )
    if path.stat().st_size > _MAX_META_BYTES:
        raise UsageError(f"{path} is {path.stat().st_size} bytes; metadata is at most 64 MiB")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"{path} is not valid JSON ({exc})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise UsageError(f"{path} is not nervana-lstm export metadata (format {FORMAT!r} expected)")
    if raw.get("format_version") != FORMAT_VERSION:
        raise UsageError(
            f"{path} has format_version {raw.get('format_version')!r}; this version of "
            f"nervana-lstm reads {FORMAT_VERSION}: export the model again"
        )
    if not (directory / MODEL_FILE).is_file():
        raise UsageError(f"{directory} has {META_FILE} but no {MODEL_FILE}")
    try:
        raw["inputs"] = [TensorInfo(**t) for t in raw["inputs"]]
        raw["outputs"] = [TensorInfo(**t) for t in raw["outputs"]]
        return ExportMeta(**raw)
    except (KeyError, TypeError) as exc:
        raise UsageError(f"{path} does not hold the expected fields ({exc})") from None
