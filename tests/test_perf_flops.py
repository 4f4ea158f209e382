"""FLOP formulas of nervana_lstm.perf.flops, checked against hand-counted products."""

from __future__ import annotations

import pytest

from nervana_lstm.errors import UsageError
from nervana_lstm.perf.flops import (
    TRAIN_FACTOR,
    deepbench_flops,
    forward_flops,
    full_flops,
    mode_flops,
)


def test_lstm_full_count_is_2_4h_i_plus_h_t_n() -> None:
    t, n, i, h = 25, 64, 256, 512
    assert full_flops("lstm", t, n, i, h) == 2 * 4 * h * (i + h) * t * n


def test_deepbench_lstm_count_is_8_t_n_h_squared() -> None:
    t, n, h = 25, 16, 1024
    assert deepbench_flops("lstm", t, n, h) == 8 * t * n * h * h


@pytest.mark.parametrize(("kind", "gates"), [("rnn", 1), ("gru", 3), ("lstm", 4)])
def test_gate_blocks_per_kind(kind: str, gates: int) -> None:
    # one step, one sequence: each gate block is an (H x I) and an (H x H) product
    assert full_flops(kind, 1, 1, 3, 5) == 2 * gates * 5 * (3 + 5)
    assert deepbench_flops(kind, 1, 1, 5) == 2 * gates * 5 * 5


def test_dglstm_depth_gate_adds_an_input_block_above_layer_0() -> None:
    # layer 0 is a plain LSTM; above it the depth gate multiplies the input by W_xd
    # (its cell terms are element-wise)
    assert full_flops("dglstm", 1, 1, 3, 5) == full_flops("lstm", 1, 1, 3, 5)
    two = full_flops("dglstm", 1, 1, 3, 5, num_layers=2)
    assert two == full_flops("lstm", 1, 1, 3, 5) + 2 * 5 * (5 * 5 + 4 * 5)


def test_upper_layers_see_hidden_inputs_and_directions_double() -> None:
    t, n, i, h = 7, 3, 11, 13
    two_layers = full_flops("lstm", t, n, i, h, num_layers=2)
    assert two_layers == full_flops("lstm", t, n, i, h) + full_flops("lstm", t, n, h, h)
    bi = full_flops("gru", t, n, i, h, num_layers=2, bidirectional=True)
    assert bi == 2 * full_flops("gru", t, n, i, h) + 2 * full_flops("gru", t, n, 2 * h, h)


def test_training_is_three_forwards() -> None:
    shape = {"seq_len": 4, "batch": 2, "input_size": 8, "hidden_size": 16}
    fwd = forward_flops("full", "lstm", shape)
    assert TRAIN_FACTOR == 3
    assert mode_flops("full", "lstm", shape, "train") == 3 * fwd
    assert mode_flops("recurrent", "lstm", shape, "infer") == 8 * 4 * 2 * 16 * 16


def test_unknown_names_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="expected one of"):
        full_flops("transformer", 1, 1, 1, 1)
    with pytest.raises(UsageError, match="full, recurrent"):
        forward_flops("peak", "lstm", {"seq_len": 1, "batch": 1, "input_size": 1, "hidden_size": 1})
