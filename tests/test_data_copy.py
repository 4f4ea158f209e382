"""The copying task: the Arjovsky et al. layout, determinism, sharding and the baseline."""

from __future__ import annotations

import math

import pytest
import torch

from nervana_lstm.data import make_task
from nervana_lstm.data.copying import BLANK, DELIMITER, copy_baseline
from nervana_lstm.errors import UsageError


def test_layout_matches_the_paper():
    T = 7
    task = make_task("copy", T=T, seed=2)
    assert task.spec.input_kind == "tokens" and task.spec.target == "classify_steps"
    assert task.spec.input_size == 10 and task.spec.output_size == 9
    b = task.train_batch(0, 5)
    assert b.x.shape == (T + 20, 5) and b.y.shape == (T + 20, 5)
    assert b.x.dtype == torch.int64 and b.y.dtype == torch.int64
    symbols = b.x[:10]
    assert symbols.min() >= 1 and symbols.max() <= 8
    assert torch.all(b.x[10 : T + 9] == BLANK)  # T - 1 blanks
    assert torch.all(b.x[T + 9] == DELIMITER)
    assert torch.all(b.x[T + 10 :] == BLANK)
    assert torch.all(b.y[: T + 10] == BLANK)
    assert torch.equal(b.y[T + 10 :], symbols)
    # the first symbol is asked for T + 10 steps after it was shown
    shown = int((b.x[:, 0] != BLANK).nonzero()[0])
    asked = int((b.y[:, 0] != BLANK).nonzero()[0])
    assert asked - shown == T + 10


def test_pure_function_of_step_and_shards():
    task = make_task("copy", T=3, seed=0)
    assert torch.equal(task.train_batch(4, 6).x, task.train_batch(4, 6).x)
    assert not torch.equal(task.train_batch(4, 6).x, task.train_batch(5, 6).x)
    full = task.train_batch(4, 6)
    parts = [task.train_batch(4, 6, rank=r, world_size=2) for r in range(2)]
    assert torch.equal(torch.cat([p.x for p in parts], dim=1), full.x)
    assert torch.equal(torch.cat([p.y for p in parts], dim=1), full.y)
    with pytest.raises(ValueError, match="divisible"):
        task.train_batch(0, 5, rank=0, world_size=2)


def _memoryless_logits(batch, T):
    # Certain blank before the recall, uniform over the 8 symbols during it.
    steps, n = batch.y.shape
    logits = torch.full((steps, n, 9), -1e4)
    logits[: T + 10, :, BLANK] = 0.0
    logits[T + 10 :, :, 1:] = 0.0
    return logits


@pytest.mark.parametrize("T", [1, 30])
def test_memoryless_strategy_scores_the_baseline(T):
    task = make_task("copy", T=T, seed=1)
    b = task.train_batch(0, 16)
    m = task.metrics(_memoryless_logits(b, T), b)
    assert m["ce_baseline"] == pytest.approx(10 * math.log(8) / (T + 20))
    assert m["ce"] == pytest.approx(copy_baseline(T), rel=1e-5)
    assert m["ce_ratio"] == pytest.approx(1.0, rel=1e-5)


def test_perfect_recall():
    task = make_task("copy", T=5, seed=1)
    b = task.train_batch(0, 8)
    logits = torch.nn.functional.one_hot(b.y, 9).float() * 50
    m = task.metrics(logits, b)
    assert m["recall_accuracy"] == 1.0 and m["ce"] < 1e-6
    wrong = logits.clone()
    wrong[-10:] = logits[-10:].roll(1, dims=-1)
    assert task.metrics(wrong, b)["recall_accuracy"] == 0.0


def test_eval_set_fixed():
    task = make_task("copy", T=2, eval_size=5)
    a = torch.cat([b.x for b in task.eval_batches(2)], dim=1)
    b = torch.cat([b.x for b in task.eval_batches(5)], dim=1)
    assert a.shape == (22, 5) and torch.equal(a, b)


def test_bad_options():
    with pytest.raises(UsageError, match="'T' must be >= 1"):
        make_task("copy", T=0)
    with pytest.raises(UsageError, match="no option"):
        make_task("copy", delay=10)
