"""OpenVINO export (``nervana_lstm.export``): convert fused torch RNN modules, compile them with a pinned precision."""

from nervana_lstm.export.convert import (
    PRECISIONS,
    compile_rnn,
    convert_rnn,
    precision_supported,
    runtime_layers,
    runtime_summary,
)

__all__ = [
    "PRECISIONS",
    "compile_rnn",
    "convert_rnn",
    "precision_supported",
    "runtime_layers",
    "runtime_summary",
]
