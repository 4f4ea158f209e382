"""Recurrent cells: plain RNN, LSTM, GRU and Depth-Gated LSTM, fused and reference.

Build any of them with :func:`make_rnn`; all share torch.nn's parameter names and
layouts, so state_dicts move between the two implementations and ``torch.nn``.
The per-step cell functions (``*_cell`` from the input, ``*_step`` from a
precomputed input projection, found by kind in ``STEPS``) take explicit weights and
do one matmul per gate.
"""

from __future__ import annotations

from nervana_lstm.cells.common import IMPLS, KINDS
from nervana_lstm.cells.counts import count_params, param_formula
from nervana_lstm.cells.factory import make_rnn
from nervana_lstm.cells.reference import (
    STEPS,
    dglstm_cell,
    dglstm_gates,
    dglstm_step,
    gru_cell,
    gru_gates,
    gru_step,
    lstm_cell,
    lstm_gates,
    lstm_step,
    rnn_cell,
    rnn_step,
)

__all__ = [
    "IMPLS",
    "KINDS",
    "STEPS",
    "count_params",
    "dglstm_cell",
    "dglstm_gates",
    "dglstm_step",
    "gru_cell",
    "gru_gates",
    "gru_step",
    "lstm_cell",
    "lstm_gates",
    "lstm_step",
    "make_rnn",
    "param_formula",
    "rnn_cell",
    "rnn_step",
]
