"""Checkpoints: safe format, tampering refused, config mismatch refused, exact resume, signals."""

from __future__ import annotations

import io
import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from rich.console import Console

from nervana_lstm.config import config_from_dict
from nervana_lstm.errors import UsageError
from nervana_lstm.train.checkpoint import FORMAT, load_checkpoint, save_checkpoint
from nervana_lstm.train.loop import RunResult, run_training

REPO = Path(__file__).resolve().parents[1]


def state(step: int = 3) -> dict:
    return {
        "config": {"task": {"name": "adding", "options": {"T": 5}}, "model": {"kind": "lstm"}},
        "step": step,
        "backend": "onednn",
        "precision": "fp32",
        "world_size": 1,
        "model": {"w": torch.arange(6.0).view(2, 3), "b": torch.zeros(2)},
        "optimizer": {"state": {0: {"exp_avg": torch.ones(2)}}, "param_groups": [{"lr": 0.1}]},
        "rng": torch.get_rng_state().unsqueeze(0),
        "carry": [torch.ones(1, 2, 4), torch.zeros(1, 2, 4)],
        "vocab": ["a", "b"],
        "best": 0.5,
        "evals_since_best": 0,
    }


def test_round_trip_and_plain_safe_load(tmp_path: Path) -> None:
    path = tmp_path / "c.pt"
    save_checkpoint(path, state())
    loaded = load_checkpoint(path)
    torch.testing.assert_close(loaded["model"]["w"], state()["model"]["w"])
    assert loaded["vocab"] == ["a", "b"] and loaded["step"] == 3
    assert torch.equal(loaded["rng"], state()["rng"])
    outer = torch.load(path, weights_only=True)  # the file itself needs no unsafe unpickling
    assert outer["format"] == FORMAT
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]  # no temp file left behind


def test_only_safe_values_are_saved(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"state\['bad'\] is a object"):
        save_checkpoint(tmp_path / "c.pt", {**state(2), "bad": object()})
    assert not list(tmp_path.iterdir())


def test_save_is_atomic_when_writing_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.pt"
    save_checkpoint(path, state(1))
    real_save = torch.save

    def disk_full(obj: object, f: object, *args: object, **kw: object) -> None:
        if isinstance(f, io.BytesIO):
            return real_save(obj, f, *args, **kw)
        f.write(b"half a checkpoint")  # type: ignore[attr-defined]
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space"):
        save_checkpoint(path, state(2))
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1  # the previous checkpoint is intact
    assert [p.name for p in tmp_path.iterdir()] == ["c.pt"]


def _tampered(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "flip":  # one byte inside a stored tensor (the payload holds most of the file)
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    elif how == "truncate":
        path.write_bytes(bytes(data[: len(data) // 3]))
    elif how == "garbage":
        path.write_bytes(os.urandom(2048))
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "pickle":  # an object whose unpickling would run a command
        path.write_bytes(pickle.dumps(_Evil()))
    elif how == "foreign":
        torch.save({"model": {"w": torch.zeros(2)}}, path)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


@pytest.mark.parametrize("how", ["flip", "truncate", "garbage", "empty", "pickle", "foreign"])
def test_tampered_or_garbage_files_are_refused(tmp_path: Path, how: str) -> None:
    path = tmp_path / "c.pt"
    save_checkpoint(path, state())
    _tampered(path, how)
    with pytest.raises(UsageError, match="not a usable nervana-lstm checkpoint"):
        load_checkpoint(path)


def test_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt")


# ------------------------------------------------------------------- real runs


def cfg(name: str = "adding", **train: object) -> dict:
    task = (
        {"name": "adding", "options": {"T": 8, "eval_size": 32}}
        if name == "adding"
        else {"name": "charlm", "options": {"seq_len": 12}}
    )
    model = {"kind": "lstm", "hidden_size": 12, "num_layers": 2, "dropout": 0.25}
    if name == "charlm":
        model["embedding_dim"] = 8
    return {
        "task": task,
        "model": model,
        "optim": {"lr": 5e-3, "schedule": "cosine", "warmup_steps": 3},
        "train": {"steps": 12, "batch_size": 8, "threads": 1, "log_every": 2,
                  "accel": "onednn", **train},
        "eval": {"every": 4},
    }  # fmt: skip


def run(data: dict, out: Path, **kw: object) -> RunResult:
    console = Console(file=io.StringIO())
    return run_training(config_from_dict(data), out, console=console, progress=False, **kw)


def weights(out: Path) -> dict:
    return load_checkpoint(out / "checkpoints" / "last.pt")


@pytest.mark.parametrize(
    ("task", "accel", "precision"),
    [("adding", "onednn", "fp32"), ("charlm", "onednn", "fp32"), ("adding", "reference", "bf16")],
)
def test_resume_gives_the_same_final_weights(
    tmp_path: Path, task: str, accel: str, precision: str
) -> None:
    """Interrupted at step 5 and resumed == uninterrupted: bitwise, one thread, dropout on,
    cosine schedule, and (charlm) the carried recurrent state restored."""
    data = cfg(task, accel=accel, precision=precision)
    run(data, tmp_path / "full")
    first = run(data, tmp_path / "split", stop_at=5)
    assert first.stopped_because == "stop-at" and weights(tmp_path / "split")["step"] == 5
    if task == "charlm":
        assert weights(tmp_path / "split")["carry"] is not None
    run(data, tmp_path / "split", resume=True)
    a, b = weights(tmp_path / "full"), weights(tmp_path / "split")
    assert a["step"] == b["step"] == 12
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for k, v in a["optimizer"]["state"].items():
        assert torch.equal(v["exp_avg_sq"], b["optimizer"]["state"][k]["exp_avg_sq"])
    # the resumed run's metrics continue the interrupted one, without duplicated steps
    steps = [
        json.loads(line)["step"]
        for line in (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()
        if json.loads(line)["split"] == "train"
    ]
    assert steps == list(range(2, 13, 2))


@pytest.mark.ipex
def test_ipex_bf16_resume_is_exact(ipex, tmp_path: Path) -> None:
    data = cfg("adding", accel="ipex", precision="bf16")
    data["model"].update(num_layers=1, dropout=0.0)
    run(data, tmp_path / "full")
    first = run(data, tmp_path / "split", stop_at=5)
    # the first part stopped where it was told, so the second has steps left to redo
    assert first.stopped_because == "stop-at" and weights(tmp_path / "split")["step"] == 5
    run(data, tmp_path / "split", resume=True)
    a, b = weights(tmp_path / "full"), weights(tmp_path / "split")
    assert a["step"] == b["step"] == 12
    for key in a["model"]:
        assert a["model"][key].dtype == torch.float32  # fp32 masters are what is saved
        assert torch.equal(a["model"][key], b["model"][key]), key


def test_resume_refuses_a_different_model(tmp_path: Path) -> None:
    run(cfg(steps=2), tmp_path / "r")
    other = cfg(steps=4)
    other["model"]["hidden_size"] = 20
    with pytest.raises(UsageError, match=r"model\.hidden_size is 12 in the checkpoint but 20"):
        run(other, tmp_path / "r", resume=True)


def test_resume_refuses_another_optimizer(tmp_path: Path) -> None:
    data = cfg(steps=2)
    data["optim"]["name"] = "sgd"
    run(data, tmp_path / "r")
    data["optim"]["name"] = "adamw"
    data["train"]["steps"] = 4
    with pytest.raises(UsageError, match=r"optim\.name is 'sgd' in the checkpoint but 'adamw'"):
        run(data, tmp_path / "r", resume=True)


def test_resume_refuses_other_data_shapes(tmp_path: Path) -> None:
    data = cfg("charlm", steps=2)
    run(data, tmp_path / "lm")
    text = tmp_path / "other.txt"
    text.write_text("a completely different text with few letters " * 40)
    data["task"]["options"]["corpus"] = str(text)
    data["train"]["steps"] = 4
    with pytest.raises(UsageError, match="vocabulary differs"):
        run(data, tmp_path / "lm", resume=True)


def test_run_dir_rules(cli, tmp_path: Path) -> None:
    run(cfg(steps=2), tmp_path / "r")
    with pytest.raises(UsageError, match="already holds a run"):
        run(cfg(steps=2), tmp_path / "r")
    with pytest.raises(UsageError, match="does not exist"):
        run(cfg(steps=2), tmp_path / "empty", resume=True)
    _tampered(tmp_path / "r" / "checkpoints" / "last.pt", "flip")
    proc = cli(
        "train", "--config", "configs/adding.yaml", "--out", str(tmp_path / "r"), "--resume",
        "--set", "task.options.T=8", "--set", "model.hidden_size=12",
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "not a usable nervana-lstm checkpoint" in proc.stderr


def test_run_files_get_the_umask_mode_not_mkstemps_0600(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        run(cfg(steps=2), tmp_path / "r")
    finally:
        os.umask(previous)
    names = ["config.yaml", "run.json", "loss.png", "checkpoints/last.pt", "checkpoints/best.pt"]
    for name in names:
        assert (tmp_path / "r" / name).stat().st_mode & 0o777 == 0o644, name


def test_refused_resume_keeps_the_runs_config(tmp_path: Path) -> None:
    data = cfg("charlm", steps=2)
    run(data, tmp_path / "lm")
    saved_config = (tmp_path / "lm" / "config.yaml").read_text()
    text = tmp_path / "other.txt"
    text.write_text("a completely different text with few letters " * 40)
    data["task"]["options"]["corpus"] = str(text)
    data["train"]["steps"] = 4
    with pytest.raises(UsageError, match="vocabulary differs"):
        run(data, tmp_path / "lm", resume=True)
    assert (tmp_path / "lm" / "config.yaml").read_text() == saved_config


def test_refused_model_leaves_no_run_dir(tmp_path: Path) -> None:
    data = cfg(steps=2)
    data["model"].update(kind="dglstm", bidirectional=True)
    with pytest.raises(UsageError, match="unidirectional"):
        run(data, tmp_path / "r")
    assert not (tmp_path / "r").exists()


def test_out_that_is_a_file_exits_2(cli, tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.write_text("not a run dir\n")
    proc = cli(
        "train", "--config", "configs/adding.yaml", "--out", str(target),
        "--set", "task.options.T=5", "--set", "train.steps=1", "--set", "train.accel=onednn",
    )  # fmt: skip
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert "is not a directory" in proc.stderr
    assert target.read_text() == "not a run dir\n"


def _start(out: Path, steps: int) -> subprocess.Popen[str]:
    args = [
        sys.executable, "-m", "nervana_lstm", "train", "--config", "configs/adding.yaml",
        "--out", str(out), "--no-progress", "--set", "task.options.T=8",
        "--set", "model.hidden_size=12", "--set", f"train.steps={steps}",
        "--set", "train.log_every=1", "--set", "train.accel=onednn", "--set", "train.threads=1",
        "--set", "eval.every=1000000",
    ]  # fmt: skip
    return subprocess.Popen(
        args, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _wait_for_steps(proc: subprocess.Popen[str], metrics: Path, count: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if metrics.is_file() and len(metrics.read_text().splitlines()) >= count:
            return
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"training did not log {count} steps: {proc.communicate()}")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_saves_and_exits_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    out = tmp_path / "sig"
    proc = _start(out, steps=1_000_000)
    _wait_for_steps(proc, out / "metrics.jsonl", 3)
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, stderr
    assert "Traceback" not in stderr
    assert f"stopped by {sig.name}" in stdout and "--resume" in stdout
    saved = load_checkpoint(out / "checkpoints" / "last.pt")
    assert saved["step"] >= 3
    if sig == signal.SIGINT:  # and the run continues from there
        resumed = subprocess.run(
            [sys.executable, "-m", "nervana_lstm", "train", "--config", "configs/adding.yaml",
             "--out", str(out), "--resume", "--no-progress", "--set", "task.options.T=8",
             "--set", "model.hidden_size=12", "--set", f"train.steps={saved['step'] + 2}",
             "--set", "train.accel=onednn", "--set", "eval.every=1000000"],
            cwd=REPO, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert resumed.returncode == 0, resumed.stderr
        assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == saved["step"] + 2


# ------------------------------------------------------- snapshot, restore, load_trained


def test_snapshot_holds_the_documented_keys_in_order(tmp_path: Path) -> None:
    from nervana_lstm.train.checkpoint import snapshot
    from nervana_lstm.train.distributed import DistContext
    from nervana_lstm.train.progress import Progress

    config = config_from_dict(cfg(steps=12))  # a checkpoint's step is within its train.steps
    model = torch.nn.Linear(2, 3)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    carry = (torch.ones(1, 4, 2), torch.zeros(1, 4, 2))
    progress = Progress(step=7, best=0.25, evals_since_best=2, carry=carry)
    state = snapshot(
        config, progress, backend="onednn", precision="bf16", model=model,
        optimizer=optimizer, ctx=DistContext(), vocab=("a", "b"),
    )  # fmt: skip
    assert list(state) == [
        "config", "step", "backend", "precision", "world_size", "model", "optimizer", "rng",
        "carry", "vocab", "best", "evals_since_best",
    ]  # fmt: skip
    assert (state["step"], state["best"], state["evals_since_best"]) == (7, 0.25, 2)
    assert state["precision"] == "bf16"  # the precision that ran, whatever the config asked
    assert state["vocab"] == ["a", "b"] and isinstance(state["carry"], list)
    assert state["rng"].shape[0] == 1 and state["config"] == config.to_dict()
    save_checkpoint(tmp_path / "s.pt", state)  # storable as it is
    assert load_checkpoint(tmp_path / "s.pt")["step"] == 7


def test_restore_gives_back_progress_and_splits_carried_rows(tmp_path: Path) -> None:
    from nervana_lstm.train.checkpoint import restore
    from nervana_lstm.train.distributed import DistContext

    data = cfg(steps=12)
    data["model"].update(num_layers=1, hidden_size=1)  # the carried state's (1, 8, 1)
    path = tmp_path / "c.pt"
    saved = state(step=5)
    saved["config"] = config_from_dict(data).to_dict()
    saved["vocab"] = None
    saved["carry"] = [torch.arange(8.0).view(1, 8, 1), torch.zeros(1, 8, 1)]
    save_checkpoint(path, saved)
    said: list[str] = []
    resumed = restore(path, config_from_dict(data), None, said.append)
    assert resumed.step == 5 and said == []
    # two processes now, one when saved: the RNG is reseeded and each takes its rows
    progress = resumed.progress(
        config_from_dict(data), DistContext(rank=1, world_size=2), True, said.append
    )
    assert "process count changed" in said[0]
    assert (progress.step, progress.best, progress.evals_since_best) == (5, 0.5, 0)
    h, c = progress.carry
    assert h.flatten().tolist() == [4.0, 5.0, 6.0, 7.0] and c.shape == (1, 4, 1)
    # the config may change in what does not shape the weights; the change is named
    data["optim"]["lr"] = 1e-3
    restore(path, config_from_dict(data), None, said.append)
    assert said[-1] == "resume: config differs from the checkpoint in optim.lr"


def test_another_process_count_reseeds_dropout_from_seed_step_and_rank(tmp_path: Path) -> None:
    from nervana_lstm.train.checkpoint import restore
    from nervana_lstm.train.distributed import DistContext
    from nervana_lstm.train.progress import process_seed

    config = config_from_dict(cfg(steps=12))
    path = tmp_path / "c.pt"
    saved = state(step=5)
    saved["config"], saved["vocab"] = config.to_dict(), None
    with torch.random.fork_rng():
        torch.manual_seed(99)
        saved["rng"] = torch.get_rng_state().unsqueeze(0)  # one process saved it
        save_checkpoint(path, saved)
        resumed = restore(path, config, None, print)
        drawn = []
        for rank in (0, 1):  # two processes now
            torch.manual_seed(7)  # whatever the process had drawn before
            resumed.progress(config, DistContext(rank=rank, world_size=2), False, print)
            drawn.append(torch.rand(4))
            torch.manual_seed(process_seed(config.train.seed + 5, rank))
            assert torch.equal(drawn[-1], torch.rand(4)), rank  # seeded by (seed, step, rank)
        assert not torch.equal(drawn[0], drawn[1])  # each process its own dropout masks
        torch.manual_seed(7)  # the same process count restores the saved state instead
        resumed.progress(config, DistContext(), False, print)
        assert torch.equal(torch.get_rng_state(), saved["rng"][0])


def test_restore_refuses_another_vocabulary_and_weights_that_do_not_fit(tmp_path: Path) -> None:
    from nervana_lstm.train.checkpoint import restore

    data = cfg(steps=12)
    path = tmp_path / "c.pt"
    saved = state()
    saved["config"] = config_from_dict(data).to_dict()
    save_checkpoint(path, saved)  # vocab ["a", "b"]
    with pytest.raises(UsageError, match="vocabulary differs"):
        restore(path, config_from_dict(data), ["a", "c"], print)
    resumed = restore(path, config_from_dict(data), ["a", "b"], print)
    model = torch.nn.Linear(3, 2)
    with pytest.raises(UsageError, match="does not fit this task and model"):
        resumed.load_weights(model, torch.optim.SGD(model.parameters(), lr=0.1))


def _trained_run(tmp_path: Path, name: str, options: dict, model: dict) -> Path:
    data = {
        "task": {"name": name, "options": options},
        "model": {"hidden_size": 12, **model},
        "train": {"steps": 3, "batch_size": 4, "threads": 1, "accel": "onednn"},
        "eval": {"every": 3},
    }
    run(data, tmp_path / name)
    return tmp_path / name / "checkpoints" / "last.pt"


@pytest.mark.parametrize("impl", ["fused", "reference"])
def test_load_trained_rebuilds_a_charlm_model(tmp_path: Path, impl: str) -> None:
    from nervana_lstm.data import make_task
    from nervana_lstm.train.checkpoint import load_trained

    path = _trained_run(tmp_path, "charlm", {"seq_len": 8}, {"kind": "lstm", "embedding_dim": 8})
    trained = load_trained(path, impl)
    saved = load_checkpoint(path)
    task = make_task("charlm", **saved["config"]["task"]["options"])
    assert trained.spec == task.spec and trained.vocab == task.vocab
    assert trained.step == 3 and trained.config.task.name == "charlm"
    assert not trained.model.training
    for key, value in trained.model.state_dict().items():
        assert torch.equal(value, saved["model"][key]), key
    ids = trained.vocab.encode("The ").view(-1, 1)  # (T, 1)
    logits, (h, _c) = trained.model(ids)
    assert logits.shape == (4, 1, trained.vocab.size) and h.shape == (1, 1, 12)


def test_load_trained_rebuilds_an_adding_model(tmp_path: Path) -> None:
    from nervana_lstm.data import make_task
    from nervana_lstm.train.checkpoint import load_trained

    path = _trained_run(tmp_path, "adding", {"T": 6, "eval_size": 8}, {"kind": "gru"})
    trained = load_trained(path)
    task = make_task("adding", T=6, eval_size=8)
    assert trained.spec == task.spec and trained.vocab is None and trained.step == 3
    batch = task.train_batch(0, 4)
    out, _ = trained.model(batch.x)
    assert out.shape == (4, 1)
    fresh = load_trained(path, "reference")  # the same weights in the textbook cells
    torch.testing.assert_close(fresh.model(batch.x)[0], out)


def test_load_trained_needs_no_data_file_for_a_files_model(tmp_path: Path) -> None:
    import shutil

    from nervana_lstm.data import make_task
    from nervana_lstm.train.checkpoint import load_trained

    csv = tmp_path / "sines.csv"
    shutil.copy(REPO / "configs" / "data" / "sines.csv", csv)
    spec = make_task("files", path=str(csv)).spec
    path = _trained_run(tmp_path, "files", {"path": str(csv)}, {"kind": "rnn"})
    csv.unlink()  # the model comes back from the checkpoint alone
    trained = load_trained(path)
    assert trained.spec == spec and trained.vocab is None


def test_load_trained_rebuilds_a_copy_model(tmp_path: Path) -> None:
    from nervana_lstm.data import make_task
    from nervana_lstm.train.checkpoint import load_trained

    path = _trained_run(
        tmp_path, "copy", {"T": 2, "eval_size": 8}, {"kind": "dglstm", "embedding_dim": 4}
    )
    trained = load_trained(path)
    assert trained.spec == make_task("copy", T=2).spec


def test_load_trained_refuses_a_config_the_weights_do_not_fit(tmp_path: Path) -> None:
    from nervana_lstm.train.checkpoint import load_trained

    path = _trained_run(tmp_path, "adding", {"T": 6, "eval_size": 8}, {"kind": "gru"})
    saved = load_checkpoint(path)
    saved["config"]["model"]["hidden_size"] = 20
    save_checkpoint(path, saved)
    with pytest.raises(UsageError, match="weights do not fit the saved config"):
        load_trained(path)
