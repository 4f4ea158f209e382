"""The task factory, and every task against the contract the training loop relies on."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from nervana_lstm import choices
from nervana_lstm.config import TASK_OPTIONS, config_from_dict, resolve_config
from nervana_lstm.data import TASKS, make_task
from nervana_lstm.data.corpus import DEFAULT_CORPUS
from nervana_lstm.errors import UsageError

TINY = {
    "adding": {"T": 6, "eval_size": 6},
    "copy": {"T": 3, "eval_size": 6},
    "charlm": {"seq_len": 5},  # corpus: a small file written by the test
    "files": {"path": "configs/data/sines.csv"},
}


class TinyNet(nn.Module):
    """Embedding or features -> LSTM -> linear head, shaped by the task's spec."""

    def __init__(self, spec, hidden=8):
        super().__init__()
        self.spec = spec
        self.embed = nn.Embedding(spec.input_size, 4) if spec.input_kind == "tokens" else None
        self.rnn = nn.LSTM(4 if self.embed else spec.input_size, hidden)
        self.head = nn.Linear(hidden, spec.output_size)

    def forward(self, batch, state=None):
        x = self.embed(batch.x) if self.embed else batch.x
        out, state = self.rnn(x, state)  # (T, N, H)
        if self.spec.target == "classify_steps":
            return self.head(out), state
        last = (
            (batch.lengths - 1)
            if batch.lengths is not None
            else torch.full((x.shape[1],), len(x) - 1)
        )
        return self.head(out[last, torch.arange(x.shape[1])]), state


def test_factory_knows_every_task():
    assert set(TASKS) == {"adding", "copy", "charlm", "files"}
    assert set(TASKS) == set(TASK_OPTIONS) == set(choices.TASKS)
    assert TASK_OPTIONS["adding"]().model_dump() == {"T": 100, "seed": 0, "eval_size": 1000}
    assert TASK_OPTIONS["charlm"]().corpus == DEFAULT_CORPUS
    assert "path" in TASK_OPTIONS["files"].model_fields
    with pytest.raises(UsageError, match="unknown task"):
        make_task("nope")
    with pytest.raises(UsageError, match="unknown task"):
        make_task(3)


@pytest.mark.parametrize("name", sorted(TINY))
def test_task_contract(name, tmp_path):
    options = dict(TINY[name])
    if name == "charlm":
        (tmp_path / "t.txt").write_text("a small text to read, over and over. " * 20)
        options["corpus"] = str(tmp_path / "t.txt")
    task = make_task(name, **options)
    spec = task.spec
    assert spec.name == name
    net = TinyNet(spec)
    batch = task.train_batch(0, 4)
    if spec.input_kind == "tokens":
        assert batch.x.dtype == torch.int64 and batch.x.max() < spec.input_size
    else:
        assert batch.x.dtype == torch.float32 and batch.x.shape[2] == spec.input_size
    assert batch.x.shape[1] == 4
    if spec.stateful:
        assert batch.reset is not None and batch.reset.shape == (4,)
    out, _ = net(batch)
    loss = task.loss(out, batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in net.parameters())
    figures = task.metrics(out, batch)
    assert figures and all(isinstance(v, float) for v in figures.values())
    with torch.no_grad():
        for b in task.eval_batches(4):
            assert torch.isfinite(task.loss(net(b)[0], b))


def test_sines_example_is_learnable():
    torch.manual_seed(0)
    task = make_task("files", path="configs/data/sines.csv", seed=0)
    net = TinyNet(task.spec, hidden=16)
    opt = torch.optim.Adam(net.parameters(), lr=0.03)

    def eval_accuracy():
        with torch.no_grad():
            batches = list(task.eval_batches(64))
            return sum(task.metrics(net(b)[0], b)["accuracy"] * len(b.y) for b in batches) / 12

    for step in range(120):
        batch = task.train_batch(step, 16)
        opt.zero_grad()
        task.loss(net(batch)[0], batch).backward()
        opt.step()
    assert eval_accuracy() >= 0.9


def test_importing_the_package_reads_nothing():
    code = (
        "import sys, nervana_lstm.data as d; "
        "bad = [m for m in ('pydoc_data', 'nervana_lstm.data.charlm', 'nervana_lstm.data.files') "
        "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("adding", {"T": 1}, "adding: option 'T' must be >= 2, got 1"),
        ("adding", {"T": True}, "adding: option 'T' must be an integer, got True"),
        ("copy", {"eval_size": 2.5}, "copy: option 'eval_size' must be an integer, got 2.5"),
        ("charlm", {"corpus": 3}, "charlm: option 'corpus' must be a string or a list, got 3"),
        ("charlm", {"eval_fraction": 0}, "charlm: option 'eval_fraction' must be > 0.0, got 0"),
        ("files", {"path": ""}, "files: option 'path' must be a non-empty string, got ''"),
        (
            "files",
            {"path": "d.csv", "target": "cluster"},
            "files: option 'target' must be 'classify' or 'regress', got 'cluster'",
        ),
        (
            "files",
            {"path": "d.csv", "allow_pickle": "yes"},
            "allow_pickle must be True or False, got 'yes'",
        ),
        (
            "adding",
            {"lag": 5, "T": 0},
            "task 'adding' has no option(s) lag; accepted: T, seed, eval_size; "
            "adding: option 'T' must be >= 2, got 0",
        ),
        ("files", {"seed": -1}, "task 'files' needs option(s): path; files: option 'seed'"),
    ],
)
def test_make_task_reports_every_bad_option(name, options, message):
    with pytest.raises(UsageError) as info:
        make_task(name, **options)
    assert message in str(info.value)


def test_make_task_takes_a_configs_options(tmp_path):
    cfg = resolve_config(
        config_from_dict({"task": {"name": "adding", "options": {"T": 6}}, "train": {"seed": 4}})
    )
    task = make_task(cfg.task.name, **cfg.task.options)
    assert (task.T, task.seed, task.eval_size) == (6, 4, 1000)
    (tmp_path / "a.txt").write_text("some text to read " * 20)
    corpus = (str(tmp_path / "a.txt"), str(tmp_path / "a.txt"))  # a tuple reads like a list
    assert make_task("charlm", seq_len=4, corpus=corpus).corpus_name == ", ".join(corpus)
