"""``nervana-lstm inspect``: gates traced through the reference cells, against the fused model."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import torch
from rich.console import Console

from nervana_lstm.config import config_from_dict
from nervana_lstm.data import make_task
from nervana_lstm.lesson.inspect import example_sequence, inspect_model
from nervana_lstm.lesson.trace import gate_names, trace_model
from nervana_lstm.train.checkpoint import load_trained
from nervana_lstm.train.loop import run_training

PNG = b"\x89PNG\r\n\x1a\n"
SIGMOID_GATES = ("i", "f", "o", "d", "r", "z")
CANDIDATES = ("g", "n")

#: name -> (task, model); each trains a few steps, enough to move the weights off their init
MODELS = {
    "adding-lstm": ({"name": "adding", "options": {"T": 12, "eval_size": 16}}, {"kind": "lstm"}),
    "adding-gru": ({"name": "adding", "options": {"T": 12, "eval_size": 16}}, {"kind": "gru"}),
    "adding-rnn": ({"name": "adding", "options": {"T": 12, "eval_size": 16}}, {"kind": "rnn"}),
    "adding-dglstm3": (
        {"name": "adding", "options": {"T": 12, "eval_size": 16}},
        {"kind": "dglstm", "num_layers": 3},
    ),
    "adding-bilstm2": (
        {"name": "adding", "options": {"T": 12, "eval_size": 16}},
        {"kind": "lstm", "num_layers": 2, "bidirectional": True},
    ),
    "copy-lstm": (
        {"name": "copy", "options": {"T": 4, "eval_size": 16}},
        {"kind": "lstm", "embedding_dim": 5},
    ),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("inspect")
    out = {}
    for name, (task, model) in MODELS.items():
        cfg = config_from_dict(
            {
                "task": task,
                "model": {"hidden_size": 6, **model},
                "optim": {"lr": 0.05},
                "train": {"steps": 3, "batch_size": 4, "threads": 1, "accel": "onednn"},
                "eval": {"every": 3},
            }
        )
        console = Console(file=io.StringIO())
        run_training(cfg, root / name, console=console, progress=False)
        out[name] = root / name
    return out


@pytest.mark.parametrize("name", sorted(MODELS))
def test_traced_states_equal_the_fused_models(runs: dict[str, Path], name: str) -> None:
    checkpoint = runs[name] / "checkpoints" / "best.pt"
    reference = load_trained(checkpoint, "reference")
    fused = load_trained(checkpoint, "fused")
    x, _, _ = example_sequence(reference, 1)
    trace = trace_model(reference.model, x)

    xb = x.unsqueeze(1)
    with torch.no_grad():
        inputs = fused.model.embed(xb) if fused.model.embed is not None else xb
        out, state = fused.model.rnn(inputs)  # (T, 1, D*H), the fused stack's own run
        want_output, _ = fused.model(xb)
    cfg = reference.config.model
    last = [t for t in trace.layers if t.layer == cfg.num_layers - 1]
    traced_out = torch.cat([t.h for t in last], dim=1)  # (T, D*H)
    torch.testing.assert_close(traced_out, out[:, 0], atol=1e-5, rtol=1e-5)
    hs, cs = state if isinstance(state, tuple) else (state, None)
    assert len(trace.layers) == hs.shape[0]
    for row, t in enumerate(trace.layers):  # rows in torch's order: layer-major, then direction
        final = 0 if t.reverse else -1  # the backward direction ends at step 0
        torch.testing.assert_close(t.h[final], hs[row, 0], atol=1e-5, rtol=1e-5)
        if cs is not None:
            assert t.c is not None
            torch.testing.assert_close(t.c[final], cs[row, 0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(trace.output, want_output[..., 0, :], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_gates_lie_in_their_ranges(runs: dict[str, Path], name: str) -> None:
    reference = load_trained(runs[name] / "checkpoints" / "best.pt", "reference")
    x, _, _ = example_sequence(reference, 0)
    trace = trace_model(reference.model, x)
    kind = reference.config.model.kind
    for t in trace.layers:
        assert tuple(t.gates) == gate_names(kind, t.layer)
        for symbol, values in t.gates.items():
            assert values.shape == (x.shape[0], 6)
            low = 0.0 if symbol in SIGMOID_GATES else -1.0
            assert symbol in SIGMOID_GATES + CANDIDATES
            assert float(values.min()) >= low and float(values.max()) <= 1.0, symbol
    if kind == "dglstm":
        assert "d" not in trace.layer(0).gates and "d" in trace.layer(2).gates


def test_units_are_those_whose_share_of_the_prediction_varies_most(
    runs: dict[str, Path],
) -> None:
    ins = inspect_model(runs["adding-lstm"], example=2, units=3)
    fused = load_trained(ins.checkpoint).model
    batch = next(make_task("adding", T=12, eval_size=16).eval_batches(256))  # the held-out set
    with torch.no_grad():
        out, _ = fused.rnn(batch.x)  # (T, N, H)
    share = out[-1] * fused.head.weight.detach()[0].abs()  # (N, H)
    assert ins.units == torch.argsort(share.std(0), descending=True)[:3].tolist()
    assert "over 16 held-out sequences" in ins.unit_rule
    assert ins.fused_state_diff < 1e-5
    # a lower layer, which the head does not read: the units whose cell moves most
    deep = inspect_model(runs["adding-dglstm3"], layer=0, units=2)
    c = deep.trace.layer(0).c
    assert c is not None
    spread = c.max(0).values - c.min(0).values
    assert deep.units == torch.argsort(spread, descending=True)[:2].tolist()
    assert "range" in deep.unit_rule


def test_cli_writes_the_plot_and_the_traced_values(cli, runs: dict[str, Path], tmp_path) -> None:
    png, js = tmp_path / "g.png", tmp_path / "values.json"
    done = cli(
        "inspect", str(runs["adding-lstm"]), "--example", "3", "--out", str(png), "--json", str(js)
    )
    assert done.returncode == 0, done.stderr
    assert png.read_bytes()[:8] == PNG
    doc = json.loads(js.read_text())
    assert doc["kind"] == "lstm" and doc["task"] == "adding"
    assert doc["gate_names"] == {
        "i": "input gate", "f": "forget gate", "g": "candidate", "o": "output gate"
    }  # fmt: skip
    values = torch.tensor(doc["input"]["values"])  # (T, 2)
    assert values.shape == (12, 2)
    assert doc["input"]["markers"] == torch.nonzero(values[:, 1] == 1).flatten().tolist()
    assert len(doc["input"]["markers"]) == 2
    assert doc["target"][0] == pytest.approx(
        float(values[doc["input"]["markers"], 0].sum()), abs=1e-5
    )
    (layer,) = doc["layers"]
    for symbol in "ifo":
        gate = torch.tensor(layer["gates"][symbol])
        assert gate.shape == (12, 6) and float(gate.min()) >= 0 and float(gate.max()) <= 1
    c = torch.tensor(layer["c"])
    assert c[-1].tolist() == pytest.approx(doc["final_state"]["c"][0], abs=1e-6)
    assert doc["fused_final_state_max_abs_diff"] < 1e-5
    assert len(doc["shown"]["units"]) == 4 and "held-out" in doc["shown"]["rule"]
    assert "max |difference|" in done.stdout and str(png) in done.stdout


def test_cli_reads_an_input_file_and_prints_json_to_stdout(
    cli, runs: dict[str, Path], tmp_path, capsys
) -> None:
    digits = tmp_path / "seq.txt"
    digits.write_text("1234\n0000 0 9 0000\n")
    done = cli("inspect", str(runs["copy-lstm"]), "--input", str(digits), "--json", "-",
               "--out", str(tmp_path / "copy.png"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["input"]["values"] == [1, 2, 3, 4, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0]
    assert doc["input"]["markers"] == [9]  # the delimiter
    assert doc["target"] is None and len(doc["prediction"]) == 14
    assert (tmp_path / "copy.png").read_bytes()[:8] == PNG

    csv = tmp_path / "one.csv"
    csv.write_text("sequence_id,t,value\ns,0,0.5\ns,1,0.25\n")
    from nervana_lstm.cli import main

    assert main(["inspect", str(runs["adding-gru"]), "--input", str(csv)]) == 2
    assert "reads 2 features per step" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing-run"], "does not exist"),
        (["{run}", "--layer", "1"], "--layer expects 0..0"),
        (["{run}", "--out", "gates.svg"], "expects a .png"),
        (["{run}", "--example", "99"], "has only 16 sequences"),
    ],
)
def test_inspect_refuses_bad_arguments(runs, tmp_path, capsys, args, message) -> None:
    from nervana_lstm.cli import main

    argv = ["inspect", *(a.format(run=runs["adding-lstm"]) for a in args)]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "g.png")]
    assert main(argv) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "g.png").exists()
