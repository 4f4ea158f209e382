"""Two processes under real ``torchrun`` (DDP on gloo) against one process, same global batch.

Tolerance: the two runs differ only in how the gradient sum is split (two half-batch
means averaged by all-reduce against one full-batch mean), so weights agree to float32
rounding; after 10 AdamW steps the largest difference seen was 1.2e-7, the test allows 1e-5.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nervana_lstm.train.checkpoint import load_checkpoint

REPO = Path(__file__).resolve().parents[1]
TOLERANCE = 1e-5

SETTINGS = [
    "--set", "task.options.T=8", "--set", "task.options.eval_size=64",
    "--set", "model.hidden_size=16", "--set", "train.steps=10", "--set", "train.batch_size=16",
    "--set", "train.threads=1", "--set", "train.accel=onednn", "--set", "train.precision=fp32",
    "--set", "train.log_every=5",
    "--set", "eval.every=5", "--no-progress",
]  # fmt: skip


def _train(out: Path, processes: int) -> subprocess.CompletedProcess[str]:
    launcher = (
        [sys.executable, "-m", "torch.distributed.run", "--standalone",
         f"--nproc-per-node={processes}", "-m", "nervana_lstm"]
        if processes > 1
        else [sys.executable, "-m", "nervana_lstm"]
    )  # fmt: skip
    args = ["train", "--config", "configs/adding.yaml", "--out", str(out), *SETTINGS]
    return subprocess.run([*launcher, *args], cwd=REPO, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_two_processes_match_one_with_the_same_global_batch(tmp_path: Path) -> None:
    two = _train(tmp_path / "two", 2)
    assert two.returncode == 0, two.stderr[-3000:]
    one = _train(tmp_path / "one", 1)
    assert one.returncode == 0, one.stderr[-3000:]

    assert "processes: 2 (gloo)" in two.stdout
    assert two.stdout.count("backend: onednn") == 1  # only rank 0 prints
    a = load_checkpoint(tmp_path / "one" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "two" / "checkpoints" / "last.pt")
    assert (a["step"], b["step"], b["world_size"]) == (10, 10, 2)
    assert b["rng"].shape[0] == 2  # every process's RNG state, for an exact resume
    for key in a["model"]:
        diff = (a["model"][key] - b["model"][key]).abs().max().item()
        assert diff <= TOLERANCE, (key, diff)
    # rank 0 alone wrote the run directory's files
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == sorted(
        p.name for p in (tmp_path / "one").iterdir()
    )


@pytest.mark.slow
def test_stateful_task_under_two_processes_and_resume(tmp_path: Path) -> None:
    """charlm: each process carries its own streams; the checkpoint holds all of them,
    and a resumed 2-process run ends where the uninterrupted one does."""
    common = [
        "train", "--config", "configs/charlm.yaml", "--no-progress",
        "--set", "task.options.seq_len=12", "--set", "model.hidden_size=16",
        "--set", "model.embedding_dim=8", "--set", "train.steps=8", "--set", "train.batch_size=8",
        "--set", "train.threads=1", "--set", "train.accel=onednn", "--set", "eval.every=4",
    ]  # fmt: skip
    run = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    full = subprocess.run(
        [*run, "-m", "nervana_lstm", *common, "--out", str(tmp_path / "full")],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert full.returncode == 0, full.stderr[-3000:]
    for extra in (["--stop-at", "3"], ["--resume"]):
        part = subprocess.run(
            [*run, "-m", "nervana_lstm", *common, "--out", str(tmp_path / "split"), *extra],
            cwd=REPO, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert part.returncode == 0, part.stderr[-3000:]
        if "--stop-at" in extra:  # the first part stopped where it was told
            assert load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")["step"] == 3
    a = load_checkpoint(tmp_path / "full" / "checkpoints" / "last.pt")
    b = load_checkpoint(tmp_path / "split" / "checkpoints" / "last.pt")
    h, _c = a["carry"]
    assert h.shape == (1, 8, 16)  # the full global batch of streams
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key


@pytest.mark.slow
def test_threads_default_to_usable_cpus_per_local_process_across_a_resume(
    tmp_path: Path,
) -> None:
    """One process, then two resuming its run: without train.threads each process takes
    the usable CPUs divided by the local process count; the resumed run ends at its steps
    with every process's RNG state."""
    cpus = sorted(os.sched_getaffinity(0))[:2]  # at most two CPUs, wherever this runs

    def pinned() -> None:
        os.sched_setaffinity(0, cpus)

    common = [
        "train", "--config", "configs/adding.yaml", "--no-progress", "--out", str(tmp_path / "r"),
        "--set", "task.options.T=8", "--set", "task.options.eval_size=32",
        "--set", "model.hidden_size=8", "--set", "model.num_layers=2", "--set", "model.dropout=0.2",
        "--set", "train.steps=6", "--set", "train.batch_size=8", "--set", "train.accel=onednn",
        "--set", "eval.every=3",
    ]  # fmt: skip
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    parts = [
        ([sys.executable, "-m", "nervana_lstm", *common, "--stop-at", "3"], 1),
        ([*torchrun, "-m", "nervana_lstm", *common, "--resume"], 2),
    ]
    for command, processes in parts:
        done = subprocess.run(
            command, cwd=REPO, capture_output=True, text=True, timeout=300, preexec_fn=pinned
        )
        assert done.returncode == 0, done.stderr[-3000:]
        info = json.loads((tmp_path / "r" / "run.json").read_text())
        assert info["processes"] == processes
        assert info["threads_per_process"] == max(1, len(cpus) // processes), info
        state = load_checkpoint(tmp_path / "r" / "checkpoints" / "last.pt")
        assert (state["step"], state["world_size"]) == ((3, 1) if processes == 1 else (6, 2))
    assert state["rng"].shape[0] == 2
