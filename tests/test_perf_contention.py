"""The contention benchmark's plumbing: variants, scoring, tables, one tiny end-to-end pass.

No figure is checked: the end-to-end pass runs its "busy" neighbours as sleeping
processes, so it only shows that every part runs and writes its files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nervana_lstm.errors import UsageError
from nervana_lstm.perf import contention
from nervana_lstm.perf.contention import (
    find_libiomp,
    render_table,
    summarize,
    tokens_per_s,
    variant_env,
)


def test_variants_set_their_own_environment_and_clear_the_users() -> None:
    user = {"PATH": "/bin", "OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "7", "LD_PRELOAD": "x"}
    spin = variant_env("spin", 4, 1, None, user)
    assert spin == {"PATH": "/bin", "NERVANA_LSTM_CONTENTION": "off"}
    assert variant_env("passive", 4, 1, None, user)["OMP_WAIT_POLICY"] == "PASSIVE"
    assert variant_env("fewer", 4, 1, None, user)["OMP_NUM_THREADS"] == "3"
    assert variant_env("fewer", 2, 5, None, user)["OMP_NUM_THREADS"] == "1"
    assert variant_env("auto", 4, 1, None, user) == {"PATH": "/bin"}
    assert variant_env("auto-fewer", 4, 1, None, user)["NERVANA_LSTM_CONTENTION"] == "fewer"
    lib = Path("/opt/lib/libiomp5.so")
    iomp = variant_env("iomp-bt0", 4, 1, lib, user)
    assert (iomp["LD_PRELOAD"], iomp["KMP_BLOCKTIME"]) == (str(lib), "0")
    assert "KMP_BLOCKTIME" not in variant_env("iomp", 4, 1, lib, user)
    with pytest.raises(UsageError, match="pip install intel-openmp"):
        variant_env("iomp", 4, 1, None, user)
    with pytest.raises(UsageError, match="unknown variant 'turbo'"):
        variant_env("turbo", 4, 1, None, user)


def test_libiomp_is_found_on_the_library_path(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("LD_LIBRARY_PATH", str(tmp_path))
    monkeypatch.setattr(contention.sys, "prefix", str(tmp_path / "venv"))
    assert find_libiomp() is None
    (tmp_path / "libiomp5.so").write_bytes(b"")
    assert find_libiomp() == tmp_path / "libiomp5.so"


def test_tokens_per_s_leaves_the_first_window_out(tmp_path: Path) -> None:
    metrics = tmp_path / "metrics.jsonl"
    assert tokens_per_s(metrics) is None
    records = [
        {"split": "train", "tokens_per_s": 10.0},
        {"split": "train", "tokens_per_s": 100.0},
        {"split": "eval", "loss": 1.0},
        {"split": "train", "tokens_per_s": 120.0},
    ]
    metrics.write_text("\n".join(json.dumps(r) for r in records) + '\n{"split": "tr')
    assert tokens_per_s(metrics) == 110.0
    metrics.write_text(json.dumps(records[0]) + "\n")
    assert tokens_per_s(metrics) == 10.0


def _run(variant: str, load: str, value: float, threads: int = 2, wait: str | None = None) -> dict:
    return {"part": "train", "variant": variant, "load": load, "value": value,
            "threads": threads, "wait_policy": wait, "stopped_after_s": None}  # fmt: skip


def test_summary_ratios_and_the_table() -> None:
    runs = [
        _run("spin", "quiet", 100.0), _run("spin", "busy", 2.0),
        _run("spin", "quiet", 110.0), _run("spin", "busy", 4.0),
        _run("auto", "quiet", 99.0), _run("auto", "busy", 50.0, wait="PASSIVE"),
    ]  # fmt: skip
    rows = summarize(runs, "train")
    spin, auto = rows
    assert (spin["quiet"], spin["busy"], spin["kept"]) == (105.0, 3.0, pytest.approx(3 / 105))
    assert auto["kept"] == pytest.approx(50 / 99)
    assert auto["quiet_vs_baseline"] == pytest.approx(99 / 105)
    assert auto["wait_policy"] == [None, "PASSIVE"]
    table = render_table(rows, "train", 1)
    assert "| auto | 99 | 50 | 0.51× | 0.94× | 2/2 | default/PASSIVE |" in table
    verdict = contention._verdict(rows)
    assert verdict == [
        "auto keeps 0.51× of its quiet speed (meets >= 0.4)",
        "auto runs quiet at 0.94× of spin (misses >= 0.95)",
    ]
    # milliseconds per call: lower is better, so kept = quiet ms / busy ms
    calls = [
        {**r, "part": "call"} for r in (_run("spin", "quiet", 10.0), _run("spin", "busy", 200.0))
    ]
    (row,) = summarize(calls, "call")
    assert row["kept"] == pytest.approx(0.05)


def test_bad_options_exit_2(capsys) -> None:
    assert contention.main(["--part", "gpu"]) == 2
    assert "--part got 'gpu'; expected a comma list of train, call" in capsys.readouterr().err
    assert contention.main(["--busy", "0"]) == 2
    assert "--busy got 0; expected an integer >= 1" in capsys.readouterr().err


def test_a_tiny_pass_runs_every_part(tmp_path: Path, monkeypatch) -> None:
    import nervana_lstm.perf.quiet as quiet

    monkeypatch.setattr(contention, "BUSY_CODE", "import time; time.sleep(120)")
    monkeypatch.setattr(quiet, "wait_for_quiet", lambda *a, **k: {"waited_s": 0, "load": None})
    train, call = tmp_path / "train", tmp_path / "call"
    tiny = ["--rounds", "1", "--steps", "2", "--set", "model.hidden_size=8",
            "--set", "task.options.T=10"]  # fmt: skip
    assert (
        contention.main(["--part", "train", "--variants", "auto", *tiny, "--out", str(train)]) == 0
    )
    assert contention.main(["--part", "call", "--variants", "spin", *tiny, "--out", str(call)]) == 0
    runs = [
        *json.loads((train / "contention.json").read_text())["runs"],
        *json.loads((call / "contention.json").read_text())["runs"],
    ]
    assert [(r["part"], r["load"]) for r in runs] == [
        ("train", "quiet"), ("train", "busy"), ("call", "quiet"), ("call", "busy"),
    ]  # fmt: skip
    assert all(r["value"] and r["value"] > 0 and r["threads"] >= 1 for r in runs)
    assert all(r["wait_policy"] is None for r in runs[2:])  # spin: the contention rule is off
    assert "### train: adding.yaml, 2 steps, onednn" in (train / "contention.md").read_text()
    assert "| spin |" in (call / "contention.md").read_text()
