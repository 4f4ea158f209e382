"""The adding problem: layout, determinism, sharding and the 1/6 baseline."""

from __future__ import annotations

import re

import pytest
import torch

from nervana_lstm.data import make_task
from nervana_lstm.data.adding import MSE_BASELINE
from nervana_lstm.errors import UsageError


def test_shapes_and_layout():
    task = make_task("adding", T=12, seed=3)
    assert task.spec.input_kind == "features" and task.spec.target == "regress_last"
    b = task.train_batch(0, 8)
    assert b.x.shape == (12, 8, 2) and b.x.dtype == torch.float32
    assert b.y.shape == (8, 1) and b.y.dtype == torch.float32
    assert b.lengths is None and b.reset is None
    marks = b.x[:, :, 1]  # (T, N)
    assert torch.all(marks.sum(0) == 2)
    assert torch.all(marks[:6].sum(0) == 1) and torch.all(marks[6:].sum(0) == 1)
    assert torch.allclose((b.x[:, :, 0] * marks).sum(0), b.y[:, 0])
    assert b.x[:, :, 0].min() >= 0 and b.x[:, :, 0].max() <= 1


def test_pure_function_of_step():
    task = make_task("adding", T=10, seed=1)
    a, b = task.train_batch(5, 4), task.train_batch(5, 4)
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y)
    assert not torch.equal(a.x, task.train_batch(6, 4).x)
    assert not torch.equal(a.x, make_task("adding", T=10, seed=2).train_batch(5, 4).x)


def test_shards_concatenate_to_the_global_batch():
    task = make_task("adding", T=9, seed=0)
    full = task.train_batch(7, 6)
    parts = [task.train_batch(7, 6, rank=r, world_size=2) for r in range(2)]
    assert torch.equal(torch.cat([p.x for p in parts], dim=1), full.x)
    assert torch.equal(torch.cat([p.y for p in parts], dim=0), full.y)


def test_predicting_one_scores_one_sixth():
    task = make_task("adding", T=4, seed=0)
    b = task.train_batch(0, 40000)
    m = task.metrics(torch.ones_like(b.y), b)
    assert m["mse"] == pytest.approx(1 / 6, abs=0.005)
    assert m["mse_baseline"] == MSE_BASELINE
    assert m["mse_ratio"] == pytest.approx(1.0, abs=0.03)
    perfect = task.metrics(b.y.clone(), b)
    assert perfect["mse"] == 0.0


def test_eval_set_is_fixed_and_covers_eval_size():
    task = make_task("adding", T=6, seed=0, eval_size=10)
    first = list(task.eval_batches(4))
    assert [b.y.shape[0] for b in first] == [4, 4, 2]
    again = list(task.eval_batches(3))
    assert torch.equal(torch.cat([b.y for b in first]), torch.cat([b.y for b in again]))
    assert not torch.equal(first[0].x, task.train_batch(0, 4).x)


def test_loss_is_differentiable():
    task = make_task("adding", T=5)
    b = task.train_batch(0, 3)
    out = torch.zeros(3, 1, requires_grad=True)
    task.loss(out, b).backward()
    assert out.grad is not None and out.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "options, fragment",
    [({"T": 1}, "'T' must be >= 2"), ({"T": "long"}, "'T' must be an integer"),
     ({"lag": 5}, "no option(s) lag"), ({"seed": -1}, "'seed' must be >= 0")],
)  # fmt: skip
def test_bad_options_are_usage_errors(options, fragment):
    with pytest.raises(UsageError, match=re.escape(fragment)):
        make_task("adding", **options)


def test_unknown_task_name():
    with pytest.raises(UsageError, match=r"unknown task 'addition'.*adding"):
        make_task("addition")
