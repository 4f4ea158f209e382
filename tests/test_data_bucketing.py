"""Length bucketing: less padding than random batches, every sequence once per epoch."""

from __future__ import annotations

import pytest
import torch

from nervana_lstm.data.bucketing import LengthBuckets, pad_sequences, padding_fraction


def _lengths(n, seed=0):
    return torch.randint(1, 200, (n,), generator=torch.Generator().manual_seed(seed))


def test_bucketing_pads_much_less_than_random_batches():
    lengths = _lengths(2048)
    buckets = LengthBuckets(lengths, seed=0, pool_batches=32)
    bucketed = padding_fraction(lengths, buckets.epoch_plan(0, 32))
    shuffled = padding_fraction(lengths, torch.randperm(2048).reshape(-1, 32))
    assert shuffled > 0.4  # uniform lengths: random batches are about half padding
    assert bucketed < shuffled / 4
    # a pool of one batch does not bucket at all
    unpooled = padding_fraction(lengths, LengthBuckets(lengths, 0, 1).epoch_plan(0, 32))
    assert unpooled > 0.4


def test_every_sequence_once_per_epoch():
    buckets = LengthBuckets(_lengths(96), seed=4, pool_batches=2)
    for epoch in range(3):
        plan = buckets.epoch_plan(epoch, 8)
        assert plan.shape == (12, 8)
        assert torch.equal(plan.flatten().sort().values, torch.arange(96))


def test_uneven_epoch_tops_up_with_a_few_repeats():
    buckets = LengthBuckets(_lengths(50), seed=1)
    plan = buckets.epoch_plan(0, 8)
    assert plan.shape == (7, 8) and buckets.batches_per_epoch(8) == 7
    counts = torch.bincount(plan.flatten(), minlength=50)
    assert counts.min() == 1 and counts.max() == 2 and int((counts == 2).sum()) == 6
    tiny = LengthBuckets([3, 1], seed=0).epoch_plan(0, 5)  # fewer sequences than one batch
    assert tiny.shape == (1, 5) and set(tiny.flatten().tolist()) == {0, 1}


def test_plan_is_a_pure_function_of_seed_epoch_and_step():
    lengths = _lengths(64)
    a, b = LengthBuckets(lengths, seed=2), LengthBuckets(lengths, seed=2)
    assert torch.equal(a.epoch_plan(1, 8), b.epoch_plan(1, 8))
    assert not torch.equal(a.epoch_plan(1, 8), a.epoch_plan(2, 8))
    assert not torch.equal(a.epoch_plan(1, 8), LengthBuckets(lengths, seed=3).epoch_plan(1, 8))
    for step in (0, 7, 8, 21):
        epoch, index = divmod(step, 8)
        assert torch.equal(b.batch_indices(step, 8), a.epoch_plan(epoch, 8)[index])


def test_rows_longest_first():
    lengths = _lengths(128)
    plan = LengthBuckets(lengths, seed=0).epoch_plan(0, 16)
    per = lengths[plan]
    assert torch.all(per[:, :-1] >= per[:, 1:])


def test_pad_sequences():
    seqs = [torch.ones(3, 2), 2 * torch.ones(1, 2)]
    x = pad_sequences(seqs)
    assert x.shape == (3, 2, 2)
    assert torch.equal(x[:, 0], seqs[0]) and torch.equal(x[0, 1], seqs[1][0])
    assert torch.all(x[1:, 1] == 0)
    assert pad_sequences(seqs, 5).shape == (5, 2, 2)
    with pytest.raises(ValueError, match="shorter"):
        pad_sequences(seqs, 2)
