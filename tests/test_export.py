"""``nervana-lstm export``: every task and kind to an IR that matches torch, and every refusal.

Tiny runs are trained in-process once per module; the CLI runs in a subprocess
as a user would, and what it wrote is read back with OpenVINO and checked
against the torch model rebuilt from the same checkpoint.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import openvino as ov
import pytest
from test_train import tiny, train  # pytest puts tests/ on sys.path

from nervana_lstm.errors import UsageError
from nervana_lstm.export import exporter, parity
from nervana_lstm.export.exporter import check_sequence_ops, export_model, graph_spec
from nervana_lstm.export.graph import GraphSpec
from nervana_lstm.export.metadata import META_FILE, read_meta
from nervana_lstm.export.parity import parity_error, run_parity
from nervana_lstm.train.checkpoint import load_trained

#: (task, kind, layers, bidirectional): every task and kind, 1-2 layers, bidirectional
RUNS = [
    ("adding", "lstm", 1, False),
    ("adding", "rnn", 2, False),
    ("copy", "gru", 2, False),
    ("copy", "dglstm", 2, False),
    ("charlm", "lstm", 2, False),
    ("charlm", "dglstm", 1, False),
    ("files", "gru", 2, True),
    ("files", "lstm", 1, True),
    ("files", "dglstm", 2, False),
    ("files", "rnn", 1, False),
]


def _name(run: tuple) -> str:
    task, kind, layers, bi = run
    return f"{task}-{kind}-{layers}{'-bi' if bi else ''}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("runs")
    made = {}
    for run in RUNS:
        task, kind, layers, bi = run
        data = tiny(task, steps=6)
        data["eval"] = {"every": 3}
        data["model"].update(kind=kind, num_layers=layers, bidirectional=bi)
        if kind not in ("lstm", "dglstm"):
            data["model"].pop("forget_bias", None)
        train(data, root / _name(run))
        made[_name(run)] = root / _name(run)
    return made


def _ir_constants(xml: Path) -> set[str]:
    """Element types of the float constants in a saved IR."""
    model = ov.Core().read_model(str(xml))
    return {
        op.get_output_element_type(0).get_type_name()
        for op in model.get_ordered_ops()
        if op.get_type_name() == "Constant" and op.get_output_element_type(0).is_real()
    }


@pytest.mark.parametrize("run", RUNS, ids=_name)
def test_export_matches_torch(run: tuple, runs: dict[str, Path], tmp_path: Path, cli) -> None:
    task, kind, layers, bi = run
    out = tmp_path / "model" / "1"
    result = cli("export", str(runs[_name(run)]), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert "max error" in result.stdout
    assert sorted(p.name for p in out.iterdir()) == sorted([META_FILE, "model.bin", "model.xml"])
    meta = read_meta(out)
    assert (meta.task, meta.kind, meta.num_layers, meta.bidirectional) == (task, kind, layers, bi)
    assert meta.precision == "fp32" and meta.layout == "batch_first"
    assert meta.parity["max_error"] <= 1e-5 and meta.parity["tolerance"] == 1e-5
    assert meta.versions["openvino"] and meta.versions["torch"]

    # the figures in the metadata are what a recomputation gives
    trained = load_trained(meta.source["checkpoint"])
    spec = graph_spec(trained)
    core = ov.Core()
    model = core.read_model(str(out / "model.xml"))
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    again = run_parity(compiled, trained.model, spec)
    assert again["max_error"] == pytest.approx(meta.parity["max_error"], abs=1e-7)
    assert [c["case"] for c in again["cases"]] == [c["case"] for c in meta.parity["cases"]]

    # fp32 means fp32 weights on disk, one sequence op per layer, and rt_info naming it
    assert _ir_constants(out / "model.xml") == {"f32"}
    check_sequence_ops(model, spec)
    assert model.get_rt_info(["nervana_lstm", "kind"]).astype(str) == kind
    assert model.get_rt_info(["nervana_lstm", "layout"]).astype(str) == "batch_first"
    names = {p.get_any_name() for p in model.inputs}
    assert names == {t.name for t in meta.inputs}
    assert ("lengths" in names) == (task == "files")
    assert ("h_0" in names) == (task == "charlm")
    if task == "files":
        assert meta.classes == ["fast", "slow"] and meta.feature_names == ["value"]
    if task == "charlm":
        assert meta.vocab == list(trained.vocab.chars)


def test_mixed_lengths_give_each_sequence_its_own_output(
    runs: dict[str, Path], tmp_path: Path
) -> None:
    """A padded batch gives each sequence what it gives alone, unpadded."""
    out = tmp_path / "m"
    export_model(runs["files-gru-2-bi"], out, say=lambda s: None)
    core = ov.Core()
    compiled = core.compile_model(
        core.read_model(str(out / "model.xml")), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
    )
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 10, 1)).astype(np.float32)
    lengths = np.array([10, 4, 1])
    together = compiled({"x": x, "lengths": lengths})["logits"]
    for n, t in enumerate(lengths):
        alone = compiled({"x": x[n : n + 1, :t], "lengths": np.array([t])})["logits"]
        assert np.abs(alone[0] - together[n]).max() < 1e-5


def test_fp16_weights_are_compressed_and_within_tolerance(
    runs: dict[str, Path], tmp_path: Path, cli
) -> None:
    out = tmp_path / "half"
    result = cli("export", str(runs["adding-lstm-1"]), "--out", str(out), "--precision", "fp16")
    assert result.returncode == 0, result.stderr
    meta = read_meta(out)
    assert meta.precision == "fp16"
    assert "f16" in _ir_constants(out / "model.xml")
    assert 0 < meta.parity["max_error"] <= parity.TOLERANCES["fp16"]


@pytest.mark.parametrize("name", ["charlm-lstm-2", "copy-dglstm-2", "adding-rnn-2"])
def test_stateful_chunks_equal_the_whole_sequence(
    name: str, runs: dict[str, Path], tmp_path: Path, cli
) -> None:
    out = tmp_path / "stream"
    result = cli("export", str(runs[name]), "--out", str(out), "--stateful", "--batch", "2")
    assert result.returncode == 0, result.stderr
    meta = read_meta(out)
    assert meta.stateful and meta.batch == 2
    assert [t.name for t in meta.inputs] == ["x"]
    core = ov.Core()
    model = core.read_model(str(out / "model.xml"))
    assert {op.get_type_name() for op in model.get_ordered_ops()} >= {"ReadValue", "Assign"}
    # recompute: one step at a time, after a reset, against the torch model on the whole
    trained = load_trained(meta.source["checkpoint"])
    compiled = core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    request = compiled.create_infer_request()
    spec = graph_spec(trained, stateful=True, batch=2)
    case = next(parity.parity_cases(spec))
    import torch

    with torch.no_grad():
        whole, _ = trained.model(torch.from_numpy(case.x).transpose(0, 1))
    whole = whole.transpose(0, 1).numpy() if spec.per_step else whole.numpy()
    for _ in range(2):  # a reset starts the stream again
        request.reset_state()
        pieces = [
            np.array(request.infer({"x": case.x[:, t : t + 1]})["logits"])
            for t in range(case.x.shape[1])
        ]
        got = np.concatenate(pieces, 1) if spec.per_step else pieces[-1]
        assert parity_error(got, whole) < 1e-5


def test_existing_out_needs_force_and_force_replaces(
    runs: dict[str, Path], tmp_path: Path, cli
) -> None:
    out = tmp_path / "m"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    result = cli("export", str(runs["adding-lstm-1"]), "--out", str(out))
    assert result.returncode == 2
    assert "already exists" in result.stderr and "--force" in result.stderr
    assert "Traceback" not in result.stderr
    assert (out / "keep.txt").read_text() == "mine"
    result = cli("export", str(runs["adding-lstm-1"]), "--out", str(out), "--force")
    assert result.returncode == 0, result.stderr
    assert not (out / "keep.txt").exists() and (out / "model.xml").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]  # no temp or old dirs left


def _garbage(path: Path) -> Path:
    path.write_bytes(b"PK\x03\x04 not really a zip")
    return path


def _tampered(runs: dict[str, Path], path: Path) -> Path:
    data = bytearray((runs["adding-lstm-1"] / "checkpoints" / "best.pt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda runs, tmp: tmp / "missing", "does not exist"),
        (lambda runs, tmp: tmp, "without checkpoints/best.pt"),
        (lambda runs, tmp: _garbage(tmp / "garbage.pt"), "checkpoint"),
        (lambda runs, tmp: _tampered(runs, tmp / "tampered.pt"), "checkpoint"),
    ],
    ids=["missing", "not-a-run", "garbage", "tampered"],
)
def test_bad_sources_are_refused(make, message: str, runs, tmp_path: Path, cli) -> None:
    source = make(runs, tmp_path)
    result = cli("export", str(source), "--out", str(tmp_path / "out"))
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--precision", "int4"], "invalid choice"),
        (["--stateful", "--precision", "int8"], "--stateful exports fp32 or fp16"),
        (["--stateful", "--batch", "0"], "--batch expects"),
        (["--max-metric-drop", "-1"], "--max-metric-drop expects"),
    ],
)
def test_bad_options_are_refused(args: list[str], message: str, runs, tmp_path: Path, cli) -> None:
    result = cli("export", str(runs["adding-lstm-1"]), "--out", str(tmp_path / "o"), *args)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists()


def test_unwritable_out_is_refused(runs: dict[str, Path], tmp_path: Path, cli) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where a directory would go")
    result = cli("export", str(runs["adding-lstm-1"]), "--out", str(blocker / "model"))
    assert result.returncode == 2
    assert "cannot write into" in result.stderr and "Traceback" not in result.stderr


def test_failed_parity_gate_publishes_nothing(
    runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "strict"
    monkeypatch.setitem(parity.TOLERANCES, "fp32", 0.0)
    monkeypatch.setattr(exporter, "TOLERANCES", parity.TOLERANCES)
    with pytest.raises(UsageError, match="differs from the torch model"):
        export_model(runs["charlm-lstm-2"], out, say=lambda s: None)
    assert list(tmp_path.iterdir()) == []


def test_an_unrolled_recurrence_is_refused() -> None:
    """A graph whose steps are separate cell ops fails the op-type check."""
    import openvino.opset13 as ops

    h = 3
    x = ops.parameter([2, 4], np.float32, name="x")
    zero = ops.constant(np.zeros((2, h), np.float32))
    w = ops.constant(np.zeros((4 * h, 4), np.float32))
    r = ops.constant(np.zeros((4 * h, h), np.float32))
    b = ops.constant(np.zeros(4 * h, np.float32))
    step = ops.lstm_cell(x, zero, zero, w, r, b, h)
    again = ops.lstm_cell(x, step.output(0), step.output(1), w, r, b, h)
    model = ov.Model([again.output(0)], [x])
    spec = GraphSpec("lstm", 4, h, 1, False, 1, "features", False)
    with pytest.raises(UsageError, match="unrolled"):
        check_sequence_ops(model, spec)


def test_exported_ir_runs_in_benchmark_app(runs: dict[str, Path], tmp_path: Path) -> None:
    """OpenVINO's own benchmark_app loads and runs the IR (lengths from a .npy file)."""
    import subprocess

    out = tmp_path / "m"
    export_model(runs["files-lstm-1-bi"], out, say=lambda s: None)
    np.save(tmp_path / "x.npy", np.ones((2, 6, 1), np.float32))
    np.save(tmp_path / "lengths.npy", np.array([6, 3], np.int64))
    tool = shutil.which("benchmark_app", path=str(Path(sys.executable).parent))
    command = [tool] if tool else [sys.executable, "-m", "openvino.tools.benchmark.main"]
    args = [
        "-m", str(out / "model.xml"), "-d", "CPU", "-niter", "20", "-nireq", "1",
        "-hint", "latency", "-infer_precision", "f32", "-data_shape", "x[2,6,1],lengths[2]",
        "-i", f"x:{tmp_path / 'x.npy'},lengths:{tmp_path / 'lengths.npy'}",
    ]  # fmt: skip
    result = subprocess.run(
        [*command, *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Throughput" in result.stdout


def test_metadata_is_plain_json(runs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "m"
    export_model(runs["charlm-lstm-2"], out, say=lambda s: None)
    raw = json.loads((out / META_FILE).read_text())
    assert raw["format"] == "nervana-lstm-openvino" and raw["format_version"] == 1
    assert {t["name"] for t in raw["inputs"]} == {"x", "h_0", "c_0"}
    assert {t["name"] for t in raw["outputs"]} == {"logits", "h_n", "c_n"}
    assert raw["source"]["files"]["model.bin"] != raw["source"]["files"]["model.xml"]
