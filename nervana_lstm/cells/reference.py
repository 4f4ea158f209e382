"""The per-step reference cell functions in one place, for callers that build their own loops.

``*_cell(x, state, weights...)`` runs one step from the input with one matmul per
gate and operand; ``*_step(gx, state, ...)`` runs it from a precomputed input
projection ``gx = W_ih x_t + b_ih`` (so a caller can hoist the input GEMM of all
steps out of the loop); ``*_gates`` gives the gate values a step computes (the
step itself calls it). Weights are passed explicitly in torch.nn's layout; see
each function's docstring for the equations. :data:`STEPS` finds the ``*_step``
of a kind by name.
"""

from __future__ import annotations

from nervana_lstm.cells.base import STEPS
from nervana_lstm.cells.dglstm import dglstm_cell, dglstm_gates, dglstm_step
from nervana_lstm.cells.gru import gru_cell, gru_gates, gru_step
from nervana_lstm.cells.lstm import lstm_cell, lstm_gates, lstm_step
from nervana_lstm.cells.rnn import rnn_cell, rnn_step

__all__ = [
    "STEPS",
    "dglstm_cell",
    "dglstm_gates",
    "dglstm_step",
    "gru_cell",
    "gru_gates",
    "gru_step",
    "lstm_cell",
    "lstm_gates",
    "lstm_step",
    "rnn_cell",
    "rnn_step",
]
