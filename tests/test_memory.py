"""``nervana-lstm memory``: what the sweep writes, baselines from the tasks, parameter budgets."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import pytest
import torch
from rich.console import Console

from nervana_lstm.choices import KINDS
from nervana_lstm.config import ModelConfig
from nervana_lstm.data import make_task
from nervana_lstm.data.adding import MSE_BASELINE
from nervana_lstm.data.copying import copy_baseline
from nervana_lstm.errors import UsageError
from nervana_lstm.lesson.budget import TOLERANCE, matched_hidden_size, model_params
from nervana_lstm.lesson.memory import (
    CELL_FILE,
    MemoryPlan,
    plan_cells,
    run_memory,
    task_baseline,
    unigram_bpc,
)
from nervana_lstm.lesson.memory_report import format_markdown, write_reports
from nervana_lstm.models import build_model
from nervana_lstm.train.checkpoint import load_trained
from nervana_lstm.train.report import read_metrics

PNG = b"\x89PNG\r\n\x1a\n"
#: every cell tiny: a few steps, a small held-out set, one thread
TINY = (
    "train.batch_size=4",
    "train.threads=1",
    "train.log_every=2",
    "eval.every=2",
)


def _sweep(plan: MemoryPlan, out: Path, **kw: object) -> dict:
    console = Console(file=io.StringIO(), soft_wrap=True, width=200)
    return run_memory(plan, out, console=console, progress=False, **kw)


def _final_eval(run_dir: Path) -> dict:
    return [r for r in read_metrics(run_dir / "metrics.jsonl") if r["split"] == "eval"][-1]


def test_cli_adding_sweep_writes_every_record_with_the_tasks_baseline(cli, tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    sets = [a for s in (*TINY, "task.options.eval_size=32") for a in ("--set", s)]
    done = cli(
        "memory", "--task", "adding", "--lengths", "6,10", "--kinds", "rnn,lstm",
        "--hidden-size", "8", "--steps", "4", "--out", str(out), "--no-progress", *sets,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc = json.loads((out / "memory.json").read_text())
    assert doc["task"] == "adding" and doc["metric"] == "mse" and doc["precision"] == "fp32"
    assert doc["settings"]["model"]["forget_bias"] == 1.0  # the shipped config's
    assert [(r["kind"], r["length"]) for r in doc["records"]] == [
        ("rnn", 6), ("rnn", 10), ("lstm", 6), ("lstm", 10),
    ]  # fmt: skip
    for r in doc["records"]:
        run_dir = out / r["run_dir"]
        final = _final_eval(run_dir)
        assert r["baseline"] == MSE_BASELINE == final["mse_baseline"]
        assert r["value"] == pytest.approx(final["mse"])
        assert r["ratio"] == pytest.approx(r["value"] / MSE_BASELINE)
        assert r["steps"] == 4 == r["eval_step"] and r["stopped_because"] == "completed"
        assert r["hidden_size"] == 8 and r["precision"] == "fp32"
        assert r["backend"] == json.loads((run_dir / "run.json").read_text())["backend"]
        assert r["wall_s"] > 0
        trained = load_trained(run_dir / "checkpoints" / "last.pt")
        assert trained.config.model.kind == r["kind"]
        assert trained.config.task.options["T"] == r["length"]
        assert trained.config.train.accel == "onednn"
        assert r["parameters"] == sum(p.numel() for p in trained.model.parameters())
        assert json.loads((run_dir / CELL_FILE).read_text()) == r
    md = (out / "memory.md").read_text()
    assert "| ratio to baseline | T=6 | T=10 |" in md
    for r in doc["records"]:
        assert f"`{r['run_dir']}`" in md
    assert (out / "memory.png").read_bytes()[:8] == PNG
    assert str(out / "memory.json") in done.stdout


def test_copy_and_charlm_records_carry_their_tasks_baselines(tmp_path: Path) -> None:
    plan = MemoryPlan(
        task="copy", kinds=("gru",), lengths=(3, 5), hidden_size=8, steps=2,
        overrides=(*TINY, "task.options.eval_size=16"),
    )  # fmt: skip
    doc = _sweep(plan, tmp_path / "copy")
    assert [r["length"] for r in doc["records"]] == [3, 5]
    for r in doc["records"]:
        final = _final_eval(tmp_path / "copy" / r["run_dir"])
        assert r["baseline"] == pytest.approx(copy_baseline(r["length"]))
        assert r["baseline"] == pytest.approx(final["ce_baseline"])
        assert 0.0 <= r["recall_accuracy"] <= 1.0
    assert "recall accuracy" in format_markdown(doc)

    plan = MemoryPlan(
        task="charlm", kinds=("lstm", "rnn"), lengths=(), budget="params", hidden_size=32, steps=2,
        overrides=(*TINY, "task.options.seq_len=16", "model.embedding_dim=8"),
    )  # fmt: skip
    doc = _sweep(plan, tmp_path / "charlm")
    assert doc["budget"] == "params" and doc["lengths"] is None
    lstm, rnn = (r["parameters"] for r in doc["records"])
    assert abs(lstm - rnn) <= TOLERANCE * lstm
    task = make_task("charlm", seq_len=16)
    base = unigram_bpc(task.train_ids, task.eval_ids, task.vocab.size)
    for r in doc["records"]:
        assert r["length"] is None and r["metric"] == "bpc"
        assert r["baseline"] == pytest.approx(base)
        assert r["value"] == pytest.approx(_final_eval(tmp_path / "charlm" / r["run_dir"])["bpc"])
    paths = write_reports(doc, tmp_path / "charlm")
    assert paths["png"].read_bytes()[:8] == PNG
    assert "| LSTM | 32 |" in paths["md"].read_text()


def test_unigram_bpc_is_the_cross_entropy_of_the_training_frequencies() -> None:
    train = torch.tensor([0, 0, 0, 1])  # smoothed counts 4, 2, 1 over a vocabulary of 3
    held_out = torch.tensor([2, 0, 1])  # the first character is not predicted
    want = -(math.log2(4 / 7) + math.log2(2 / 7)) / 2
    assert unigram_bpc(train, held_out, 3) == pytest.approx(want)
    assert task_baseline(make_task("copy", T=7)) == pytest.approx(copy_baseline(7))
    assert task_baseline(make_task("adding", T=7)) == MSE_BASELINE


@pytest.mark.parametrize(
    ("task", "options", "model"),
    [
        ("adding", {}, {"num_layers": 2}),
        ("copy", {"T": 5}, {"embedding_dim": 7, "bidirectional": True}),
        ("adding", {}, {"num_layers": 3}),
    ],
)
def test_model_params_counts_what_build_model_builds(task, options, model) -> None:
    spec = make_task(task, **options).spec
    for kind in KINDS:
        if kind == "dglstm" and model.get("bidirectional"):
            continue
        cfg = ModelConfig(kind=kind, hidden_size=12, **model)
        built = build_model(spec, cfg, "fused")
        assert model_params(spec, cfg) == sum(p.numel() for p in built.parameters()), kind


@pytest.mark.parametrize("task", ["adding", "copy"])
def test_params_budget_matches_every_kind_within_two_percent(task: str) -> None:
    plan = MemoryPlan(task=task, budget="params", hidden_size=64, lengths=(10,))
    cells = plan_cells(plan)
    counts = {c.kind: c.params for c in cells}
    assert set(counts) == set(KINDS)
    assert cells[[c.kind for c in cells].index("lstm")].config.model.hidden_size == 64
    assert max(counts.values()) <= (1 + TOLERANCE) * min(counts.values()), counts
    sizes = {c.kind: c.config.model.hidden_size for c in cells}
    assert sizes["rnn"] > sizes["gru"] > sizes["lstm"] == sizes["dglstm"]
    for c in cells:  # the count is the built model's
        spec = make_task(task, **c.config.task.options).spec
        built = build_model(spec, c.config.model, "fused")
        assert c.params == sum(p.numel() for p in built.parameters())


def test_adding_cells_get_the_sweep_settings_and_the_users_set_wins() -> None:
    (cell,) = plan_cells(MemoryPlan(task="adding", kinds=("gru",), lengths=(30,)))
    cfg = cell.config
    assert (cfg.optim.lr, cfg.optim.schedule, cfg.optim.min_lr_ratio) == (1e-2, "cosine", 0.1)
    assert cfg.train.steps == 3000 and cfg.train.accel == "onednn"
    assert cfg.train.precision == "fp32" and cfg.model.forget_bias is None  # a GRU has none
    assert cfg.task.options["T"] == 30 and cfg.model.hidden_size == 128  # configs/adding.yaml
    plan = MemoryPlan(task="adding", kinds=("lstm",), lengths=(30,), steps=7,
                      overrides=("optim.lr=5e-3", "train.precision=bf16"))  # fmt: skip
    (cell,) = plan_cells(plan)
    assert cell.config.optim.lr == 5e-3 and cell.config.train.precision == "bf16"
    assert cell.config.train.steps == 7 and cell.config.model.forget_bias == 1.0


def test_params_budget_refuses_a_size_too_small_to_match() -> None:
    spec = make_task("adding").spec
    with pytest.raises(UsageError, match="within 2%"):
        matched_hidden_size(spec, ModelConfig(kind="lstm", hidden_size=2), "rnn", 90)


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        (MemoryPlan(task="adding", overrides=("model.kind=gru",)), "use --kinds"),
        (MemoryPlan(task="adding", overrides=("task.options.T=5",)), "use --lengths"),
        (MemoryPlan(task="adding", kinds=("lstm", "tree")), "--kinds expects names"),
        (MemoryPlan(task="adding", kinds=("lstm", "lstm")), "names a kind twice"),
        (MemoryPlan(task="adding", lengths=(1,)), "lags >= 2"),
        (MemoryPlan(task="charlm", lengths=(50,)), "charlm has no lag"),
        (MemoryPlan(task="adding", steps=0), "--steps expects a positive"),
        (MemoryPlan(task="adding", overrides=("optim.lr=-1",)), "optim.lr"),
    ],
)
def test_bad_plans_are_refused_before_anything_trains(plan: MemoryPlan, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        plan_cells(plan)


def test_a_second_sweep_into_the_same_out_needs_resume_which_reuses_finished_cells(
    cli, tmp_path: Path
) -> None:
    plan = MemoryPlan(
        task="adding", kinds=("lstm",), lengths=(5,), hidden_size=4, steps=2,
        overrides=(*TINY, "task.options.eval_size=8"),
    )  # fmt: skip
    first = _sweep(plan, tmp_path)
    with pytest.raises(UsageError, match="already holds a memory sweep"):
        _sweep(plan, tmp_path)
    again = _sweep(plan, tmp_path, resume=True)
    assert again["records"] == first["records"]
    done = cli("memory", "--task", "adding", "--resume")
    assert done.returncode == 2 and "--resume needs --out" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_signal_stops_the_sweep_and_resume_finishes_it(monkeypatch, tmp_path: Path) -> None:
    from dataclasses import replace

    from nervana_lstm.lesson.memory import SweepInterrupted
    from nervana_lstm.train import loop

    real = loop.run_training
    calls = []

    def interrupted_second_cell(cfg, out, **kw):
        calls.append(out)
        if len(calls) == 1:
            return real(cfg, out, **kw)
        result = real(cfg, out, stop_at=1, **kw)  # saves at step 1, as SIGINT would
        return replace(result, exit_code=130, stopped_because="SIGINT")

    plan = MemoryPlan(
        task="adding", kinds=("rnn",), lengths=(4, 6), hidden_size=4, steps=3,
        overrides=(*TINY, "task.options.eval_size=8"),
    )  # fmt: skip
    monkeypatch.setattr(loop, "run_training", interrupted_second_cell)
    with pytest.raises(SweepInterrupted, match="continue the sweep with --resume") as stop:
        _sweep(plan, tmp_path)
    assert stop.value.exit_code == 130
    assert (tmp_path / "runs" / "rnn-T4" / CELL_FILE).is_file()
    assert not (tmp_path / "runs" / "rnn-T6" / CELL_FILE).exists()
    first = json.loads((tmp_path / "runs" / "rnn-T4" / CELL_FILE).read_text())

    monkeypatch.setattr(loop, "run_training", real)
    doc = _sweep(plan, tmp_path, resume=True)
    assert doc["records"][0] == first
    assert doc["records"][1]["steps"] == 3 and doc["records"][1]["stopped_because"] == "completed"
