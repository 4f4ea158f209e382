"""OpenVINO export (``nervana_lstm.export``): trained models to IR, checked, and run without torch.

- :func:`export_model` (``nervana-lstm export``): a trained run to an IR directory,
  parity-gated against torch, fp32/fp16/int8, optionally stateful;
- :func:`load_exported` (``infer``, ``sample``): an IR directory compiled and
  checked against its metadata, with openvino and numpy only;
- :func:`build_model` / :class:`GraphSpec`: the graph from a model's weights;
- :func:`convert_rnn` / :func:`compile_rnn`: a bare fused recurrent module, as
  the bench's ``openvino`` rows use it.

Importing this package imports neither torch nor OpenVINO; each function
imports what it needs when called.
"""

from nervana_lstm.export.convert import (
    PRECISIONS,
    compile_rnn,
    convert_rnn,
    precision_supported,
    runtime_layers,
    runtime_summary,
)
from nervana_lstm.export.exporter import EXPORT_PRECISIONS, export_model
from nervana_lstm.export.graph import GraphSpec, build_model
from nervana_lstm.export.metadata import ExportMeta, read_meta
from nervana_lstm.export.runtime import ExportedModel, load_exported

__all__ = [
    "EXPORT_PRECISIONS",
    "PRECISIONS",
    "ExportMeta",
    "ExportedModel",
    "GraphSpec",
    "build_model",
    "compile_rnn",
    "convert_rnn",
    "export_model",
    "load_exported",
    "precision_supported",
    "read_meta",
    "runtime_layers",
    "runtime_summary",
]
