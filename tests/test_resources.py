"""Resources: memory estimates refuse a run before it allocates; thread counts fit the CPUs.

Every CLI run that could allocate is a subprocess under a data-segment limit of
4 GiB (``ulimit -d``) and an address-space limit of 16 GiB (``ulimit -v``): a
check that failed would end in a MemoryError there, never in the machine's OOM
killer.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from nervana_lstm import resources
from nervana_lstm.config import config_from_dict, load_config
from nervana_lstm.errors import UsageError
from nervana_lstm.resources import MemoryLimit, check_fits, format_bytes, resolve_threads

GiB = 2**30


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_DATA, (4 * GiB, 4 * GiB))
    resource.setrlimit(resource.RLIMIT_AS, (16 * GiB, 16 * GiB))


def run_limited(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """``nervana-lstm ARGS`` in a fresh interpreter whose memory is capped."""
    return subprocess.run(
        [sys.executable, "-m", "nervana_lstm", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        cwd=cwd or REPO,
        preexec_fn=_limit_memory,
    )


def _refused(done: subprocess.CompletedProcess[str]) -> str:
    """The one error line of a refused command."""
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "MemoryError" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr[-2000:]
    return lines[0]


# ------------------------------------------------------- train: refused, nothing written

_ADDING, _COPY, _CHARLM = "configs/adding.yaml", "configs/copy.yaml", "configs/charlm.yaml"


@pytest.mark.parametrize(
    ("config", "sets", "expected"),
    [
        # bounds on task options
        (_ADDING, ["task.options.T=1000000000"], "task.options.T: expected int (>= 2, <= 1000000)"),
        (_COPY, ["task.options.T=1000000000"], "task.options.T: expected int (>= 1, <= 1000000)"),
        (_COPY, ["task.options.T=1e9"], "task.options.T: expected int"),
        (_ADDING, ["task.options.eval_size=1e9"], "task.options.eval_size: expected int"),
        (_ADDING, ["train.batch_size=1e9"], "train.batch_size: expected int"),
        (_CHARLM, ["task.options.seq_len=1000000000"], "task.options.seq_len: expected int"),
        # within the bounds, too large for this machine: the estimate names the keys to lower
        (_ADDING, ["task.options.T=1000000"], "lower task.options.T, train.batch_size"),
        (_COPY, ["task.options.T=1000000"], "lower task.options.T, train.batch_size"),
        (_ADDING, ["train.batch_size=1000000000"], "lower task.options.T, train.batch_size"),
        (
            _ADDING,
            ["task.options.eval_size=1000000", "task.options.T=100000"],
            "lower task.options.eval_size",
        ),
        (_ADDING, ["model.hidden_size=65536"], "lower model.hidden_size, model.num_layers"),
        (_COPY, ["model.embedding_dim=65536", "model.hidden_size=65536"], "model.embedding_dim"),
        (_ADDING, ["model.num_layers=64", "model.hidden_size=8192"], "lower model.hidden_size"),
        (_ADDING, ["eval.batch_size=1000000", "task.options.eval_size=1000000"], "eval"),
        (_CHARLM, ["task.options.seq_len=1000000", "train.batch_size=4096"], "seq_len"),
    ],
)
def test_train_refuses_what_cannot_fit_before_allocating(
    tmp_path: Path, config: str, sets: list[str], expected: str
) -> None:
    out = tmp_path / "run"
    args = ["train", "--config", config, "--out", str(out), "--no-progress"]
    for s in sets:
        args += ["--set", s]
    line = _refused(run_limited(*args))
    assert expected in line
    assert not out.exists()


def test_memory_message_says_what_and_how_much(tmp_path: Path) -> None:
    line = _refused(
        run_limited(
            "train",
            "--config",
            _ADDING,
            "--out",
            str(tmp_path / "r"),
            "--set",
            "model.hidden_size=65536",
        )
    )
    assert "needs about" in line and "parameters and optimizer state" in line
    assert "RLIMIT_DATA (ulimit -d)" in line  # the tightest limit is named


def test_a_small_run_fits_under_the_limit_and_honours_omp_num_threads(tmp_path: Path) -> None:
    out = tmp_path / "run"
    done = run_limited(
        "train",
        "--config",
        _ADDING,
        "--out",
        str(out),
        "--no-progress",
        "--set",
        "train.steps=2",
        "--set",
        "train.accel=onednn",
        "--set",
        "eval.every=2",
        "--set",
        "model.hidden_size=8",
        "--set",
        "task.options.T=10",
        env={"OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "threads: 1 per process (OMP_NUM_THREADS=1)" in done.stdout
    assert (out / "checkpoints" / "last.pt").is_file()


def test_train_threads_above_the_cpus_are_refused(tmp_path: Path) -> None:
    cpus = resources.usable_cpus()
    line = _refused(
        run_limited(
            "train",
            "--config",
            _ADDING,
            "--out",
            str(tmp_path / "r"),
            "--set",
            f"train.threads={cpus + 1}",
        )
    )
    assert f"train.threads got {cpus + 1}; expected 1..{cpus}" in line
    assert not (tmp_path / "r").exists()


def test_bad_omp_num_threads_is_refused(tmp_path: Path) -> None:
    done = run_limited(
        "train", "--config", _ADDING, "--out", str(tmp_path / "r"), env={"OMP_NUM_THREADS": "x"}
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    # libgomp prints its own warning first; ours is the last line
    assert "OMP_NUM_THREADS='x' is not a positive integer" in done.stderr.splitlines()[-1]


# ---------------------------------------------------------------- the estimate itself


def _cfg(**sections: dict) -> object:
    return config_from_dict({"task": {"name": "adding"}, **sections})


def test_default_configs_fit_in_four_gib() -> None:
    from nervana_lstm.data import make_task
    from nervana_lstm.train.budget import check_training_memory

    limit = MemoryLimit(4 * GiB, "test")
    for name in ("adding", "copy", "charlm", "sines"):
        cfg = load_config(REPO / "configs" / f"{name}.yaml")
        assert check_training_memory(cfg, limit=limit) < GiB
    for name in ("adding", "copy"):  # their tasks draw data lazily: cheap to build
        cfg = load_config(REPO / "configs" / f"{name}.yaml")
        task = make_task(cfg.task.name, **cfg.task.options)
        assert check_training_memory(cfg, task, limit=limit) < GiB


def test_estimate_grows_with_each_size_and_names_the_largest_part() -> None:
    from nervana_lstm.train.budget import estimate_training, run_shape

    def total(**sections: dict) -> int:
        cfg = _cfg(**sections)
        return sum(estimate_training(cfg, run_shape(cfg))[0].values())

    base = total()
    assert total(task={"name": "adding", "options": {"T": 1000}}) > base
    assert total(train={"batch_size": 512}) > base
    assert total(model={"hidden_size": 512}) > base
    assert total(model={"num_layers": 4}) > base
    assert total(task={"name": "adding", "options": {"eval_size": 100000}}) > base
    assert total(model={"bidirectional": True}) > base
    assert total(model={"kind": "rnn"}) < base  # one gate block, not four


def test_held_out_set_too_large_names_eval_size() -> None:
    from nervana_lstm.train.budget import check_training_memory

    cfg = _cfg(task={"name": "adding", "options": {"T": 100000, "eval_size": 1000000}})
    with pytest.raises(UsageError, match=r"task data .*lower task\.options\.eval_size"):
        check_training_memory(cfg, limit=MemoryLimit(GiB, "test"))


def test_several_processes_share_the_machine() -> None:
    from nervana_lstm.train.budget import check_training_memory

    cfg = _cfg(train={"batch_size": 64})
    need = check_training_memory(cfg, limit=MemoryLimit(64 * GiB, "test"))
    limit = MemoryLimit(need, "test")
    assert check_training_memory(cfg, limit=limit) == need
    with pytest.raises(UsageError, match="needs about"):
        check_training_memory(cfg, limit=MemoryLimit(need - 1, "test"))


def test_charlm_vocabulary_counts_once_the_task_is_built() -> None:
    from nervana_lstm.data import make_task
    from nervana_lstm.train.budget import estimate_training, run_shape

    cfg = load_config(REPO / "configs" / "charlm.yaml")
    task = make_task(cfg.task.name, **cfg.task.options)
    before = estimate_training(cfg, run_shape(cfg))[0]
    after = estimate_training(cfg, run_shape(cfg, task))[0]
    assert after["parameters and optimizer state"] > before["parameters and optimizer state"]


def test_stack_call_bytes_and_bench_skip_a_shape_that_cannot_fit() -> None:
    from nervana_lstm.perf.harness import _too_big
    from nervana_lstm.perf.spec import Spec
    from nervana_lstm.train.budget import stack_call_bytes

    infer = stack_call_bytes("lstm", 25, 64, 256, 256, training=False)
    train = stack_call_bytes("lstm", 25, 64, 256, 256, training=True)
    assert 0 < infer < train
    huge = Spec("lstm", "onednn", "infer", "fp32", 1, 1, 1, 65536, 65536, 64)
    reason = _too_big(huge, MemoryLimit(4 * GiB, "test"))
    assert reason is not None and "needs about" in reason
    assert _too_big(Spec("lstm", "onednn", "infer", "fp32", 1, 2, 1, 3, 4), None) is None


def test_infer_examples_refused_before_drawing() -> None:
    from nervana_lstm.export.examples import task_examples

    with pytest.raises(UsageError, match=r"--example 1000000 .* lower --example"):
        task_examples("adding", {"T": 1_000_000}, 1_000_000)


# ------------------------------------------------------------ what this process may use


def test_check_fits_lists_parts_and_options() -> None:
    with pytest.raises(UsageError) as exc:
        check_fits("x", {"a": 3 * GiB, "b": GiB}, ["k1", "k2", "k1"], limit=MemoryLimit(GiB, "L"))
    text = str(exc.value)
    assert "needs about 4.0 GiB" in text and "a 3.0 GiB, b 1.0 GiB" in text
    assert "about 1.0 GiB (L); lower k1, k2" in text
    assert check_fits("x", {"a": 10}, [], limit=MemoryLimit(10, "L")) == 10


def test_format_bytes() -> None:
    assert format_bytes(512) == "512 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(3 * GiB) == "3.0 GiB"
    assert format_bytes(2**50) == "1,024.0 TiB"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_limit_less_usage_and_the_tightest_ancestor(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    _write(root / "a" / "memory.max", "max\n")
    _write(root / "a" / "memory.current", "100\n")
    _write(root / "a" / "b" / "memory.max", f"{8 * GiB}\n")
    _write(root / "a" / "b" / "memory.current", f"{3 * GiB}\n")
    _write(root / "a" / "b" / "memory.stat", f"anon 5\ninactive_file {GiB}\n")
    assert resources._cgroup_free("0::/a/b\n", root) == 6 * GiB  # 8 - (3 - 1 reclaimable)
    _write(root / "a" / "memory.max", f"{4 * GiB}\n")
    assert resources._cgroup_free("0::/a/b\n", root) == 4 * GiB - 100
    assert resources._cgroup_free("0::/elsewhere\n", tmp_path / "none") is None


def test_cgroup_v1_unlimited_and_limited(tmp_path: Path) -> None:
    root = tmp_path / "cg"
    _write(root / "memory" / "memory.limit_in_bytes", "9223372036854771712\n")
    _write(root / "memory" / "memory.usage_in_bytes", "5\n")
    proc = "4:memory:/job\n3:cpuset:/\n"
    assert resources._cgroup_free(proc, root) is None
    _write(root / "memory" / "job" / "memory.limit_in_bytes", f"{2 * GiB}\n")
    _write(root / "memory" / "job" / "memory.usage_in_bytes", f"{GiB}\n")
    assert resources._cgroup_free(proc, root) == GiB


def test_meminfo_and_available_memory() -> None:
    assert resources._meminfo_available("MemTotal: 10 kB\nMemAvailable: 3 kB\n") == 3072
    assert resources._meminfo_available("") is None
    one = resources.available_memory()
    assert one is not None and one.bytes > 0
    two = resources.available_memory(2)
    assert two is not None and two.bytes <= one.bytes


def test_resolve_threads() -> None:
    assert resolve_threads(None, "t", cpus=8, environ={}) == (8, "8 usable CPU(s)")
    assert resolve_threads(None, "t", 2, cpus=8, environ={}) == (4, "8 usable CPU(s) / 2 processes")
    assert resolve_threads(3, "t", cpus=8, environ={"OMP_NUM_THREADS": "1"}) == (3, "t")
    assert resolve_threads(None, "t", cpus=8, environ={"OMP_NUM_THREADS": "2"}) == (
        2,
        "OMP_NUM_THREADS=2",
    )
    threads, why = resolve_threads(None, "t", cpus=4, environ={"OMP_NUM_THREADS": "64,2"})
    assert threads == 4 and "capped" in why
    for bad in (0, 9, 100000, True):
        with pytest.raises(UsageError, match=r"t got .*; expected 1\.\.8"):
            resolve_threads(bad, "t", cpus=8, environ={})
    for bad in ("0", "-1", "two", "1.5"):
        with pytest.raises(UsageError, match="OMP_NUM_THREADS"):
            resolve_threads(None, "t", cpus=8, environ={"OMP_NUM_THREADS": bad})
    assert resolve_threads(None, "t", cpus=8, environ={"OMP_NUM_THREADS": " "})[0] == 8
