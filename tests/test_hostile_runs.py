"""Hostile and careless run directories: taken --out folders, half-made runs, write
failures (a full disk, a read-only folder, a directory where a file goes), and
``allow_pickle`` as a flag that no config can set."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from conftest import assert_refused, train_quietly

from nervana_lstm.config import config_from_dict
from nervana_lstm.errors import UsageError
from nervana_lstm.train import checkpoint as checkpoint_module
from nervana_lstm.train.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]

#: a tiny adding run for the CLI: ``train --config configs/adding.yaml`` plus these
TINY_SET = [
    "--set", "task.options.T=6", "--set", "task.options.eval_size=16",
    "--set", "model.hidden_size=6", "--set", "train.steps=4", "--set", "train.batch_size=4",
    "--set", "train.threads=1", "--set", "train.accel=onednn", "--set", "train.log_every=1",
    "--set", "train.checkpoint_every=1", "--set", "eval.every=2",
]  # fmt: skip


def _cfg(**train: object) -> dict:
    return {
        "task": {"name": "adding", "options": {"T": 6, "eval_size": 16}},
        "model": {"kind": "lstm", "hidden_size": 6},
        "train": {"steps": 4, "batch_size": 4, "threads": 1, "log_every": 1, "accel": "onednn",
                  "checkpoint_every": 1, **train},
        "eval": {"every": 2},
    }  # fmt: skip


def _train(data: dict, out: Path, **kw: Any) -> None:
    train_quietly(data, out, **kw)


def _cli(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nervana_lstm", *args],
        capture_output=True, text=True, timeout=300, cwd=cwd,
    )  # fmt: skip


_refused = assert_refused


def _tree(path: Path) -> dict[str, bytes | None]:
    """Every entry under ``path``: file bytes, or None for a folder."""
    return {
        str(p.relative_to(path)): (p.read_bytes() if p.is_file() else None)
        for p in sorted(path.rglob("*"))
    }


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "done"
    _train(_cfg(), out)
    return out


# ------------------------------------------------------------------ taken --out


TAKEN = {
    "best.pt without last.pt": {"checkpoints/best.pt": b"a killed run's best"},
    "metrics.jsonl alone": {"metrics.jsonl": b'{"step": 1}\n'},
    "config.yaml alone": {"config.yaml": b"task: {name: copy}\n"},
    "a hidden file": {".notes": b"mine"},
    "an empty folder": {"sub/": b""},
    "someone's file": {"thesis.tex": b"\\documentclass{article}"},
}


@pytest.mark.parametrize("name", sorted(TAKEN))
def test_a_new_run_refuses_any_non_empty_out(tmp_path: Path, name: str) -> None:
    out = tmp_path / "out"
    for rel, data in TAKEN[name].items():
        target = out / rel
        if rel.endswith("/"):
            target.mkdir(parents=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    before = _tree(out)
    with pytest.raises(UsageError, match=r"is not empty .* choose another --out"):
        _train(_cfg(), out)
    assert _tree(out) == before


def test_cli_refuses_a_run_dir_with_best_but_no_last(finished_run: Path, tmp_path: Path) -> None:
    out = Path(shutil.copytree(finished_run, tmp_path / "r"))
    (out / "checkpoints" / "last.pt").unlink()  # killed before its first periodic save
    before = _tree(out)
    proc = _cli("train", "--config", "configs/copy.yaml", "--out", str(out))  # another task
    _refused(proc, "is not empty (checkpoints, config.yaml, loss.png, metrics.jsonl")
    assert _tree(out) == before


def test_out_that_is_a_device_is_refused() -> None:
    proc = _cli("train", "--config", "configs/adding.yaml", "--out", "/dev/null", *TINY_SET)
    _refused(proc, "--out /dev/null exists and is not a directory")


# ------------------------------------------------------- nothing half-made is left


def _flat_npz(path: Path, lengths: list[int]) -> Path:
    rows = max(sum(lengths), 1)
    np.savez(path, x=np.ones((rows, 2), np.float32), lengths=np.array(lengths),
             y=np.arange(len(lengths)))  # fmt: skip
    return path


def test_refused_data_leaves_no_run_dir(tmp_path: Path) -> None:
    data = _flat_npz(tmp_path / "zero.npz", [0, 3, 3])
    out = tmp_path / "run"
    proc = _cli(
        "train", "--config", "configs/sines.yaml", "--out", str(out),
        "--set", f"task.options.path={data}", "--set", "train.accel=onednn",
    )  # fmt: skip
    _refused(proc, str(data), "'lengths' must be in 1..6", "sequence 0 has length 0")
    assert not out.exists()


def test_a_run_failing_before_its_first_checkpoint_removes_what_it_wrote(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(path: Any, state: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint_module, "save_checkpoint", disk_full)
    out = tmp_path / "new"
    with pytest.raises(UsageError, match="no space left on the disk holding"):
        _train(_cfg(), out)
    assert not out.exists()  # config.yaml, run.json and metrics.jsonl went with it
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UsageError, match="cannot save the checkpoint of step 1"):
        _train(_cfg(), empty)
    assert empty.is_dir() and not list(empty.iterdir())  # the user's folder stays, empty


# ------------------------------------------------------------------ write failures


INJECT = """
import errno, sys, torch
real, calls = torch.save, []
def save(obj, f, *a, **k):
    name = getattr(f, "name", "")
    if isinstance(name, str) and ".last.pt." in name:
        calls.append(name)
        if len(calls) >= FAIL_AT:
            f.write(b"half a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device")
    return real(obj, f, *a, **k)
torch.save = save
from nervana_lstm.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_disk_full_while_saving_exits_2_and_keeps_the_previous_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "full"
    proc = subprocess.run(
        [sys.executable, "-c", INJECT.replace("FAIL_AT", "3"), "train", "--config",
         "configs/adding.yaml", "--out", str(out), "--no-progress", *TINY_SET],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    _refused(
        proc,
        "cannot save the checkpoint of step 3",
        "no space left on the disk",
        "the previous last.pt is intact; fix that and continue with --resume",
    )
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 2
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    resumed = _cli("train", "--config", str(out / "config.yaml"), "--out", str(out), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 4


def _can_mount_tmpfs() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run(
        ["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=8k tmpfs /mnt"],
        capture_output=True, timeout=30,
    )  # fmt: skip
    return probe.returncode == 0


@pytest.mark.skipif(not _can_mount_tmpfs(), reason="needs unshare -rm to mount a tmpfs")
def test_a_really_full_tmpfs(tmp_path: Path) -> None:
    """The same on a real 16 KiB file system, in a private mount namespace."""
    mount = tmp_path / "small"
    mount.mkdir()
    script = (
        f'mount -t tmpfs -o size=16k tmpfs "{mount}" || exit 99; '
        f'"{sys.executable}" -m nervana_lstm train --config configs/adding.yaml '
        f'--out "{mount}/run" --no-progress {" ".join(TINY_SET)}; echo "rc=$?"; '
        f'find "{mount}" -name "*.tmp"'
    )
    proc = subprocess.run(
        ["unshare", "-rm", "sh", "-c", script],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip
    assert "rc=2" in proc.stdout, (proc.stdout, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr and "no space left on the disk" in proc.stderr
    assert ".tmp" not in proc.stdout  # no temp file left behind


def test_read_only_run_dir_is_refused_before_work(
    finished_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = Path(shutil.copytree(finished_run, tmp_path / "r"))
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode: False if Path(p) == out else real_access(p, mode)
    )
    with pytest.raises(UsageError, match=r"is not writable .* make it writable"):
        _train(_cfg(steps=6), out, resume=True)
    monkeypatch.undo()

    def read_only(*args: Any, **kw: Any) -> Any:  # every temp file: mkstemp in the run dir
        raise OSError(errno.EROFS, "Read-only file system")

    before = _tree(out)
    monkeypatch.setattr("tempfile.mkstemp", read_only)
    with pytest.raises(UsageError, match=r"config\.yaml: .* read-only file system"):
        _train(_cfg(steps=6), out, resume=True)
    assert _tree(out) == before


def _can_set_immutable(path: Path) -> bool:
    if not shutil.which("chattr"):
        return False
    ok = subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode == 0
    if ok:
        subprocess.run(["chattr", "-i", str(path)], check=True)
    return ok


def test_an_immutable_run_dir_exits_2(finished_run: Path, tmp_path: Path) -> None:
    out = Path(shutil.copytree(finished_run, tmp_path / "r"))
    if not _can_set_immutable(out):
        pytest.skip("chattr +i is not allowed here")
    subprocess.run(["chattr", "+i", str(out)], check=True)
    try:
        proc = _cli(
            "train", "--config", str(out / "config.yaml"), "--out", str(out), "--resume",
            "--set", "train.steps=6",
        )  # fmt: skip
    finally:
        subprocess.run(["chattr", "-i", str(out)], check=True)
    _refused(proc, "is not writable")


def test_config_yaml_that_is_a_directory_is_refused(finished_run: Path, tmp_path: Path) -> None:
    out = Path(shutil.copytree(finished_run, tmp_path / "r"))
    saved = out / "saved.yaml"
    (out / "config.yaml").rename(saved)
    (out / "config.yaml").mkdir()
    proc = _cli("train", "--config", str(saved), "--out", str(out), "--resume",
                "--set", "train.steps=6")  # fmt: skip
    _refused(proc, "config.yaml is a directory", "move it away")
    assert load_checkpoint(out / "checkpoints" / "last.pt")["step"] == 4


# ----------------------------------------------------------- allow_pickle is a flag


def _ragged(path: Path) -> Path:
    rng = np.random.default_rng(0)
    seqs = [rng.normal(size=(n, 2)).astype(np.float32) for n in (3, 5, 4, 6, 2, 5, 3, 4)]
    x = np.empty(len(seqs), dtype=object)
    x[:] = seqs
    np.savez(path, x=x, y=np.arange(len(seqs)) % 2)
    return path


def test_allow_pickle_in_a_config_is_refused_with_the_flag_named(tmp_path: Path) -> None:
    data = _ragged(tmp_path / "ragged.npz")
    shared = tmp_path / "shared.yaml"
    shared.write_text(
        yaml.safe_dump({"task": {"name": "files",
                                 "options": {"path": str(data), "allow_pickle": True}}})
    )  # fmt: skip
    proc = _cli("train", "--config", str(shared), "--out", str(tmp_path / "r"))
    _refused(proc, "allow_pickle is not a config key", "--allow-pickle")
    proc = _cli(
        "train", "--config", "configs/sines.yaml", "--out", str(tmp_path / "r"),
        "--set", f"task.options.path={data}", "--set", "task.options.allow_pickle=true",
    )  # fmt: skip
    _refused(proc, "--allow-pickle")
    assert not (tmp_path / "r").exists()
    # ``false``, which earlier versions saved in every files run, is read and dropped
    old = {"task": {"name": "files", "options": {"path": "d.csv", "allow_pickle": False}}}
    assert "allow_pickle" not in config_from_dict(old).to_dict()["task"]["options"]


def test_allow_pickle_is_given_per_command_and_never_saved(tmp_path: Path) -> None:
    data = _ragged(tmp_path / "ragged.npz")
    out = tmp_path / "r"
    common = [
        "--set", f"task.options.path={data}", "--set", "train.accel=onednn",
        "--set", "train.batch_size=4", "--set", "model.hidden_size=4", "--set", "eval.every=2",
        "--set", "train.threads=1", "--no-progress",
    ]  # fmt: skip
    first = _cli("train", "--config", "configs/sines.yaml", "--out", str(out), "--allow-pickle",
                 "--set", "train.steps=2", *common)  # fmt: skip
    assert first.returncode == 0, first.stderr
    saved = yaml.safe_load((out / "config.yaml").read_text())["task"]["options"]
    assert "allow_pickle" not in saved and saved["path"] == str(data)
    state = load_checkpoint(out / "checkpoints/last.pt")
    assert "allow_pickle" not in state["config"]["task"]["options"]
    again = ["train", "--config", str(out / "config.yaml"), "--out", str(out), "--resume",
             "--set", "train.steps=4", "--no-progress"]  # fmt: skip
    _refused(_cli(*again), "object array", "--allow-pickle")
    resumed = _cli(*again, "--allow-pickle")
    assert resumed.returncode == 0, resumed.stderr
    assert load_checkpoint(out / "checkpoints/last.pt")["step"] == 4


def test_make_task_takes_allow_pickle_as_a_keyword_only(tmp_path: Path) -> None:
    from nervana_lstm.data import make_task

    data = str(_ragged(tmp_path / "ragged.npz"))
    with pytest.raises(UsageError, match="--allow-pickle"):
        make_task("files", path=data)
    assert len(make_task("files", path=data, allow_pickle=True).seqs) == 8
    with pytest.raises(UsageError, match="allow_pickle must be True or False"):
        make_task("files", path=data, allow_pickle="yes")


def test_checkpoint_weights_survive_a_refused_resume(finished_run: Path, tmp_path: Path) -> None:
    out = Path(shutil.copytree(finished_run, tmp_path / "r"))
    before = load_checkpoint(out / "checkpoints/last.pt")["model"]
    with pytest.raises(UsageError):
        _train({**_cfg(steps=6), "model": {"kind": "gru", "hidden_size": 6}}, out, resume=True)
    after = load_checkpoint(out / "checkpoints/last.pt")["model"]
    assert all(torch.equal(before[k], after[k]) for k in before)
