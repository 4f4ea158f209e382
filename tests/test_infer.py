"""``nervana-lstm infer`` and ``sample`` on exported models: predictions, streaming, errors, no torch."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, run_cli
from rich.console import Console

from nervana_lstm.config import config_from_dict
from nervana_lstm.export import examples
from nervana_lstm.export.exporter import export_model
from nervana_lstm.train.loop import run_training

SINES = REPO / "configs/data/sines.csv"


def _config(task: dict, model: dict, steps: int = 10) -> dict:
    return {
        "task": task,
        "model": model,
        "optim": {"lr": 1e-2},
        "train": {"steps": steps, "batch_size": 8, "threads": 1, "log_every": 5, "accel": "onednn"},
        "eval": {"every": steps},
    }


def _regress_csv(path: Path) -> Path:
    rng = np.random.default_rng(0)
    with open(path, "w") as f:
        f.write("sequence_id,t,a,b,target\n")
        for i in range(24):
            n = int(rng.integers(3, 9))
            for t in range(n):
                a, b = rng.normal(size=2)
                f.write(f"r{i},{t},{a:.3f},{b:.3f},{n / 4 if t == 0 else ''}\n")
    return path


def _equal_length_csv(path: Path, target: bool = False) -> Path:
    """Three sequences of 7 steps, rows interleaved by time (a stream's order)."""
    rng = np.random.default_rng(1)
    with open(path, "w") as f:
        f.write("sequence_id,t,value" + (",target\n" if target else "\n"))
        for t in range(7):
            for s in ("a", "b", "c"):
                f.write(f"{s},{t},{rng.normal():.4f}" + (",slow\n" if target else "\n"))
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny trained runs of each task, exported (charlm and files also --stateful)."""
    root = tmp_path_factory.mktemp("infer")
    runs = {
        "adding": _config(
            {"name": "adding", "options": {"T": 8, "eval_size": 16}},
            {"kind": "lstm", "hidden_size": 8},
        ),
        "copy": _config(
            {"name": "copy", "options": {"T": 3, "eval_size": 16}},
            {"kind": "gru", "hidden_size": 8, "embedding_dim": 4},
        ),
        "charlm": _config(
            {"name": "charlm", "options": {"seq_len": 16}},
            {"kind": "lstm", "hidden_size": 16, "embedding_dim": 8},
            steps=40,
        ),
        "files": _config(
            {"name": "files", "options": {"path": str(SINES)}}, {"kind": "rnn", "hidden_size": 8}
        ),
        "regress": _config(
            {
                "name": "files",
                "options": {"path": str(_regress_csv(root / "r.csv")), "target": "regress"},
            },
            {"kind": "gru", "hidden_size": 8},
        ),
    }
    found: dict[str, Path] = {"root": root}
    for name, data in runs.items():
        run = root / f"run-{name}"
        run_training(
            config_from_dict(data), run, console=Console(file=io.StringIO()), progress=False
        )
        found[f"run-{name}"] = run
        export_model(run, root / name, say=lambda s: None)
        found[name] = root / name
    for name, batch in (("charlm", 1), ("files", 3), ("copy", 2)):
        out = root / f"{name}-stateful"
        export_model(root / f"run-{name}", out, stateful=True, batch=batch, say=lambda s: None)
        found[f"{name}-stateful"] = out
    return found


def _rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _ok(*args: str, stdin: str | None = None) -> str:
    proc = _run(*args, stdin=stdin)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def _run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    if stdin is None:
        return run_cli(*args)
    return subprocess.run(
        [sys.executable, "-m", "nervana_lstm", *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )


def test_files_classification_csv_and_npz(models: dict[str, Path], tmp_path: Path) -> None:
    rows = _rows(_ok("infer", str(models["files"]), "--input", str(SINES)))
    assert len(rows) == 120 and rows[0]["sequence_id"] == "s0"
    # the class labels come from the training data, in id order (sorted)
    assert set(rows[0]) == {"sequence_id", "label", "p_fast", "p_slow"}
    for r in rows:
        probs = [float(r["p_fast"]), float(r["p_slow"])]
        assert abs(sum(probs) - 1) < 1e-6 and r["label"] == ["fast", "slow"][int(np.argmax(probs))]
    # the same sequences as a padded NPZ with lengths and no y give the same predictions
    from nervana_lstm.data.file_formats import read_sequences

    seqs = read_sequences(str(SINES), None).seqs
    lengths = np.array([len(s) for s in seqs])
    x = np.zeros((len(seqs), lengths.max(), 1), np.float32)
    for i, s in enumerate(seqs):
        x[i, : len(s)] = s
    np.savez(tmp_path / "s.npz", x=x, lengths=lengths)
    out = tmp_path / "p.json"
    assert (
        _ok("infer", str(models["files"]), "--input", str(tmp_path / "s.npz"), "--out", str(out))
        == ""
    )
    doc = json.loads(out.read_text())
    assert doc["task"] == "files" and doc["target"] == "classify_last"
    preds = doc["predictions"]
    assert [p["id"] for p in preds] == [str(i) for i in range(120)]
    for p, r in zip(preds, rows, strict=True):
        assert p["label"] == r["label"]
        assert np.allclose(p["probabilities"], [float(r["p_fast"]), float(r["p_slow"])], atol=1e-6)
        assert np.isclose(sum(p["probabilities"]), 1.0)


def test_files_regression(models: dict[str, Path], tmp_path: Path) -> None:
    data = tmp_path / "new.csv"
    data.write_text("sequence_id,t,a,b\nq,0,0.1,0.2\nq,1,0.3,-0.1\nz,0,1.0,1.0\n")
    rows = _rows(_ok("infer", str(models["regress"]), "--input", str(data)))
    assert [r["sequence_id"] for r in rows] == ["q", "z"]
    assert set(rows[0]) == {"sequence_id", "value"}
    assert all(np.isfinite(float(r["value"])) for r in rows)
    # the IR's value for q equals the torch model's
    import torch

    from nervana_lstm.train.checkpoint import load_trained

    trained = load_trained(models["run-regress"] / "checkpoints" / "best.pt", "fused")
    x = torch.tensor([[[0.1, 0.2]], [[0.3, -0.1]]])  # (T, N, F)
    with torch.no_grad():
        want = trained.model(x, lengths=torch.tensor([2]))[0]
    assert abs(float(rows[0]["value"]) - float(want.reshape(-1)[0])) < 1e-5


def test_adding_and_copy_examples(models: dict[str, Path]) -> None:
    rows = _rows(_ok("infer", str(models["adding"]), "--example", "4", "--seed", "3"))
    assert len(rows) == 4 and set(rows[0]) == {"sequence_id", "value", "target"}
    assert all(0 <= float(r["target"]) <= 2 for r in rows)
    again = _rows(_ok("infer", str(models["adding"]), "--example", "4", "--seed", "3"))
    assert again == rows  # the seed fixes the draws
    doc = json.loads(_ok("infer", str(models["copy"]), "--example", "2", "--format", "json"))
    assert doc["classes"] == [str(i) for i in range(9)]
    for p in doc["predictions"]:
        assert len(p["labels"]) == len(p["target"]) == 3 + 20
        assert p["target"][:-10] == ["0"] * 13 and all(t != "0" for t in p["target"][-10:])
        assert all(abs(sum(step) - 1) < 1e-6 for step in p["probabilities"])


def test_numpy_examples_follow_the_task() -> None:
    from nervana_lstm.data import copying

    assert (examples.BLANK, examples.DELIMITER, examples.N_SYMBOLS, examples.N_RECALL) == (
        copying.BLANK,
        copying.DELIMITER,
        copying.N_SYMBOLS,
        copying.N_RECALL,
    )
    rng = np.random.default_rng(0)
    x, y = examples.adding_examples(50, 10, rng)
    assert x.shape == (50, 10, 2) and (x[:, :, 1].sum(1) == 2).all()
    first, second = (np.argwhere(x[:, :, 1] == 1)[:, 1].reshape(50, 2)).T
    assert (first < 5).all() and (second >= 5).all()
    assert np.allclose(y[:, 0], x[np.arange(50), first, 0] + x[np.arange(50), second, 0])
    x, y = examples.copy_examples(5, 4, rng)
    assert x.shape == y.shape == (5, 24) and (x[:, 13] == copying.DELIMITER).all()
    assert (y[:, -10:] == x[:, :10]).all() and (y[:, :-10] == 0).all()


def test_stream_equals_the_whole_file(models: dict[str, Path], tmp_path: Path) -> None:
    data = _equal_length_csv(tmp_path / "eq.csv")
    whole = _rows(_ok("infer", str(models["files"]), "--input", str(data)))
    stateful = _rows(_ok("infer", str(models["files-stateful"]), "--input", str(data)))
    from_file = _rows(
        _ok(
            "infer", str(models["files-stateful"]), "--input", str(data), "--stream", "--chunk", "3"
        )
    )
    from_stdin = _rows(
        _ok(
            "infer",
            str(models["files-stateful"]),
            "--input",
            "-",
            "--stream",
            "--chunk",
            "3",
            stdin=data.read_text(),
        )
    )
    assert [r["step"] for r in from_file] == ["3"] * 3 + ["6"] * 3 + ["7"] * 3
    assert from_stdin == from_file
    for last in (stateful, from_file[-3:]):
        for a, b in zip(whole, last, strict=True):
            assert a["sequence_id"] == b["sequence_id"] and a["label"] == b["label"]
            assert abs(float(a["p_fast"]) - float(b["p_fast"])) < 1e-5


def test_stream_per_step_outputs(models: dict[str, Path]) -> None:
    whole = _rows(_ok("infer", str(models["copy"]), "--example", "2", "--seed", "4"))
    args = ("--example", "2", "--seed", "4", "--stream", "--chunk", "5")
    streamed = _rows(_ok("infer", str(models["copy-stateful"]), *args))
    assert len(streamed) == len(whole) == 2 * 23
    streamed.sort(key=lambda r: (r["sequence_id"], int(r["t"])))
    for a, b in zip(whole, streamed, strict=True):
        assert (a["sequence_id"], a["t"], a["label"]) == (b["sequence_id"], b["t"], b["label"])
        assert all(abs(float(a[f"p_{k}"]) - float(b[f"p_{k}"])) < 1e-5 for k in range(9))


def test_sample_exported_matches_checkpoint(models: dict[str, Path]) -> None:
    args = ("--temperature", "0", "--length", "60", "--prompt", "The ")
    want = _ok("sample", str(models["run-charlm"] / "checkpoints" / "best.pt"), *args)
    assert _ok("sample", str(models["charlm"]), *args) == want
    assert _ok("sample", str(models["charlm-stateful"]), *args) == want
    drawn = _ok("sample", str(models["charlm"]), "--length", "30", "--seed", "5")
    assert drawn == _ok("sample", str(models["charlm-stateful"]), "--length", "30", "--seed", "5")
    assert len(drawn) == len("The ") + 30 + 1


_PROBE = """
import runpy, sys
sys.argv = ["nervana-lstm", *sys.argv[1:]]
try:
    runpy.run_module("nervana_lstm", run_name="__main__")
except SystemExit as exc:
    assert exc.code == 0, exc.code
heavy = sorted(m for m in ("torch", "intel_extension_for_pytorch") if m in sys.modules)
print("HEAVY", heavy, "openvino" in sys.modules, file=sys.stderr)
"""


@pytest.mark.parametrize(
    "args",
    [
        ("infer", "files", "--input", str(SINES)),
        ("infer", "adding", "--example", "2"),
        ("infer", "files-stateful", "--input", "EQ", "--stream"),
        ("sample", "charlm", "--length", "5"),
        ("sample", "charlm-stateful", "--length", "5"),
    ],
)
def test_no_torch_is_imported(models: dict[str, Path], tmp_path: Path, args: tuple) -> None:
    data = _equal_length_csv(tmp_path / "eq.csv")
    argv = [args[0], str(models[args[1]]), *(str(data) if a == "EQ" else a for a in args[2:])]
    proc = subprocess.run(
        [sys.executable, "-c", _PROBE, *argv], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY [] True" in proc.stderr  # openvino ran the model; torch never loaded
    assert proc.stdout.strip()


def test_check_supported_and_parser_do_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from nervana_lstm.cli import build_parser\n"
        "from nervana_lstm import platform_info\n"
        "build_parser()\n"
        "platform_info.check_supported(platform_info.read_cpu_info())\n"
        "import nervana_lstm.data.file_formats, nervana_lstm.export.predict\n"
        "print('torch' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0 and proc.stdout.strip() == "False", proc.stderr


def _error(*args: str, stdin: str | None = None) -> str:
    proc = _run(*args, stdin=stdin)
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    return proc.stderr


def test_errors(models: dict[str, Path], tmp_path: Path) -> None:
    files, stateful = str(models["files"]), str(models["files-stateful"])
    two = tmp_path / "two.csv"
    two.write_text("sequence_id,t,a,b\ns,0,1,2\n")
    assert "2 feature column(s) (a, b)" in _error("infer", files, "--input", str(two))
    word = tmp_path / "word.csv"
    word.write_text("sequence_id,t,value\ns,0,high\n")
    assert "'high' is not a number" in _error("infer", files, "--input", str(word))
    np.savez(tmp_path / "str.npz", x=np.array([[["a"]]]))
    assert "must be numeric" in _error("infer", files, "--input", str(tmp_path / "str.npz"))
    tokens = tmp_path / "tokens.csv"
    tokens.write_text("sequence_id,t,id\ns,0,3\ns,1,12\n")
    assert "token id 12 is outside the vocabulary (0..9)" in _error(
        "infer", str(models["copy"]), "--input", str(tokens)
    )
    np.savez(tmp_path / "zero.npz", x=np.ones((2, 1), np.float32), lengths=np.array([2, 0]))
    assert "has length 0" in _error("infer", files, "--input", str(tmp_path / "zero.npz"))
    np.savez(tmp_path / "pad0.npz", x=np.ones((2, 3, 1), np.float32), lengths=np.array([3, 0]))
    assert "'lengths' must be in 1..3" in _error(
        "infer", files, "--input", str(tmp_path / "pad0.npz")
    )
    assert "has no nervana_lstm.json" in _error("infer", str(tmp_path), "--input", str(SINES))
    assert "is not an exported model directory" in _error(
        "infer", str(tmp_path / "none"), "--input", str(SINES)
    )
    assert "has no nervana_lstm.json" in _error("sample", str(tmp_path))
    assert "exported for a batch of 3; the input holds 120" in _error(
        "infer", stateful, "--input", str(SINES)
    )
    assert "batch of 3" in _error(
        "infer", stateful, "--input", "-", "--stream", stdin="sequence_id,t,value\na,0,1\n"
    )
    assert "--stream needs a stateful model" in _error(
        "infer", files, "--input", str(SINES), "--stream"
    )
    assert "does not exist" in _error("infer", files, "--input", str(tmp_path / "missing.csv"))
    assert "--example draws inputs of the adding and copy tasks" in _error(
        "infer", files, "--example", "3"
    )
    assert "sampling needs an exported charlm model" in _error("sample", files)
    checkpoint = str(models["run-charlm"] / "checkpoints" / "best.pt")
    assert "is a checkpoint" in _error("sample", checkpoint, "--precision", "bf16")
    assert "--chunk expects" in _error(
        "infer", stateful, "--input", "-", "--stream", "--chunk", "0"
    )
    assert not list(tmp_path.glob("*.json"))


def test_out_is_written_atomically(models: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "p.csv"
    out.write_text("old\n")
    _error(
        "infer", str(models["files"]), "--input", str(tmp_path / "missing.csv"), "--out", str(out)
    )
    assert out.read_text() == "old\n"
    _ok("infer", str(models["files"]), "--input", str(SINES), "--out", str(out))
    assert len(_rows(out.read_text())) == 120
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.csv"]
    assert "is a directory" in _error(
        "infer", str(models["files"]), "--input", str(SINES), "--out", str(tmp_path)
    )


def test_startup_script_runs(models: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "startup.json"
    proc = subprocess.run(
        [
            sys.executable, "-m", "nervana_lstm.perf.startup", "--run", str(models["run-adding"]),
            "--model", str(models["adding"]), "--example", "2", "--repeats", "1",
            "--json", str(out),
        ],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(out.read_text())["rows"]
    assert [r["command"] for r in rows] == [
        "checkpoint (load_trained + forward)",
        "infer IR f32",
        "infer IR bf16",
    ]
    assert all(0 < r["first_output_median_s"] <= r["exit_median_s"] for r in rows)


def test_bf16_precision(models: dict[str, Path], tmp_path: Path) -> None:
    from nervana_lstm.export.convert import precision_supported

    ok, why = precision_supported("bf16")
    if not ok:
        assert "BF16" in _error(
            "infer", str(models["adding"]), "--example", "3", "--precision", "bf16"
        )
        pytest.skip(why)
    f32 = _rows(_ok("infer", str(models["adding"]), "--example", "3"))
    bf16 = _rows(_ok("infer", str(models["adding"]), "--example", "3", "--precision", "bf16"))
    assert [r["target"] for r in bf16] == [r["target"] for r in f32]
    for a, b in zip(f32, bf16, strict=True):
        assert abs(float(a["value"]) - float(b["value"])) < 0.05  # bf16 keeps 8 mantissa bits
    text = _ok("sample", str(models["charlm"]), "--length", "10", "--precision", "bf16")
    assert text.startswith("The ") and len(text) == 4 + 10 + 1
