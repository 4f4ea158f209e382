"""Bad input raises UsageError (a ValueError) that names what was expected and what came."""

from __future__ import annotations

import pytest
import torch

from nervana_lstm.cells import KINDS, count_params, dglstm_cell, make_rnn
from nervana_lstm.errors import UsageError

IMPLS = ("fused", "reference")


def test_usage_error_is_a_value_error() -> None:
    assert issubclass(UsageError, ValueError)


@pytest.mark.parametrize(
    ("args", "kwargs", "words"),
    [
        (("transformer", "fused", 3, 4), {}, ["transformer", "rnn, lstm, gru, dglstm"]),
        (("lstm", "cudnn", 3, 4), {}, ["cudnn", "fused, reference"]),
        (("lstm", "fused", 0, 4), {}, ["input_size", "positive", "0"]),
        (("gru", "reference", 3, -2), {}, ["hidden_size", "positive", "-2"]),
        (("rnn", "fused", 3, 4, 0), {}, ["num_layers", "positive", "0"]),
        (("lstm", "fused", 3.5, 4), {}, ["input_size", "3.5"]),
        (("lstm", "fused", True, 4), {}, ["input_size", "True"]),
        (("lstm", "reference", 3, 4, 2), {"dropout": 1.5}, ["dropout", "[0, 1)", "1.5"]),
        (("dglstm", "fused", 3, 4, 2), {"bidirectional": True}, ["dglstm", "bidirectional=False"]),
    ],
)
def test_make_rnn_rejects(args, kwargs, words) -> None:
    with pytest.raises(ValueError) as info:
        make_rnn(*args, **kwargs)
    assert isinstance(info.value, UsageError)
    for word in words:
        assert word in str(info.value), (word, str(info.value))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("impl", IMPLS)
def test_forward_rejects_bad_input(kind: str, impl: str) -> None:
    net = make_rnn(kind, impl, 3, 4, 2)
    with pytest.raises(UsageError, match=r"3-D \(T, N, I\) with I=3, got 2-D shape \(5, 3\)"):
        net(torch.randn(5, 3))
    with pytest.raises(UsageError, match=r"feature size must be I=3, got 7"):
        net(torch.randn(5, 2, 7))
    with pytest.raises(UsageError, match=r"floating-point"):
        net(torch.ones(5, 2, 3, dtype=torch.int64))
    batch_first = make_rnn(kind, impl, 3, 4, batch_first=True)
    with pytest.raises(UsageError, match=r"\(N, T, I\)"):
        batch_first(torch.randn(2, 3))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("impl", IMPLS)
def test_forward_rejects_bad_state(kind: str, impl: str) -> None:
    net = make_rnn(kind, impl, 3, 4, 2)
    x = torch.randn(5, 2, 3)
    wrong = torch.zeros(1, 2, 4)
    pair = kind in ("lstm", "dglstm")
    with pytest.raises(UsageError, match=r"\(2, 2, 4\), got \(1, 2, 4\)"):
        net(x, (wrong, wrong) if pair else wrong)
    good = torch.zeros(2, 2, 4)
    if pair:
        with pytest.raises(UsageError, match=r"pair \(h, c\)"):
            net(x, good)
        with pytest.raises(
            UsageError, match=r"state c must have shape .*\(2, 2, 4\), got \(2, 2, 5\)"
        ):
            net(x, (good, torch.zeros(2, 2, 5)))
    else:
        with pytest.raises(UsageError, match=r"one tensor h of shape \(2, 2, 4\)"):
            net(x, (good, good))


@pytest.mark.parametrize("impl", IMPLS)
def test_forward_rejects_bad_lengths(impl: str) -> None:
    net = make_rnn("lstm", impl, 3, 4)
    x = torch.randn(5, 2, 3)
    with pytest.raises(UsageError, match=r"shape \(N,\) = \(2,\), got \(3,\)"):
        net(x, lengths=torch.tensor([5, 5, 5]))
    with pytest.raises(UsageError, match=r"\[0, T=5\], got values in \[2, 6\]"):
        net(x, lengths=torch.tensor([6, 2]))
    with pytest.raises(UsageError, match=r"integer tensor, got torch.float32"):
        net(x, lengths=torch.tensor([5.0, 2.0]))


@pytest.mark.parametrize("impl", IMPLS)
def test_forward_rejects_lengths_that_are_not_numbers(impl: str) -> None:
    net = make_rnn("gru", impl, 3, 4)
    x = torch.randn(5, 2, 3)
    with pytest.raises(UsageError, match=r"integer tensor of shape \(N,\) = \(2,\), got list"):
        net(x, lengths=["5", "2"])
    with pytest.raises(UsageError, match=r"integer tensor of shape \(N,\) = \(2,\), got str"):
        net(x, lengths="52")


def test_dglstm_cell_size_constraint() -> None:
    h = c = torch.zeros(2, 4)
    w_ih, w_hh, b = torch.zeros(16, 4), torch.zeros(16, 4), torch.zeros(16)
    depth = (torch.zeros(4, 4), torch.zeros(4), torch.zeros(4), torch.zeros(4))
    with pytest.raises(
        UsageError, match=r"expected c_lower of shape \(2, 4\) \(N, H\), got \(2, 6\)"
    ):
        dglstm_cell(torch.zeros(2, 4), (h, c), torch.zeros(2, 6), w_ih, w_hh, b, b, *depth)


def test_count_params_rejects() -> None:
    with pytest.raises(UsageError, match="unknown cell kind 'lstmx'"):
        count_params("lstmx", 3, 4)
    with pytest.raises(UsageError, match="hidden_size must be a positive integer, got 0"):
        count_params("lstm", 3, 0)
