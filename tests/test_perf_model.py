"""``bench --model``: a trained model timed against its exported IR; rows, checks, ratios, errors."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import REPO, run_cli
from test_train import tiny, train

from nervana_lstm.backends import ipex_status
from nervana_lstm.config import config_from_dict
from nervana_lstm.perf.ir_timing import SETTINGS_LADDER
from nervana_lstm.perf.model_bench import (
    DEFAULT_FILES_STEPS,
    INT8_MIN_AGREEMENT,
    TOLERANCES,
    ModelBenchSettings,
    measure_group,
    run_model_bench,
    task_steps,
)
from nervana_lstm.perf.model_variants import ModelVariant
from nervana_lstm.perf.results import Row
from nervana_lstm.perf.spec import Spec, Unavailable, Variant

HAS_QUANTIZE = importlib.util.find_spec("nervana_lstm.export.quantize") is not None
QUICK = ["--warmup", "0", "--repeats", "1", "--threads", "1"]


@pytest.fixture(scope="module")
def charlm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("bench-model") / "charlm"
    result, _ = train(tiny("charlm", steps=10), run)
    assert result.exit_code == 0
    return run


def _by(rows: list[dict], label: str) -> dict[tuple[str, str], dict]:
    return {(r["impl"], r["dtype"]): r for r in rows if r["label"] == label}


def test_bench_model_writes_every_row_checked_and_the_ratios(charlm_run: Path, tmp_path: Path):
    out = tmp_path / "report"
    done = run_cli("bench", "--model", str(charlm_run), "--out", str(out), *QUICK, "--ov-settings")
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    model, rows = results["model"], results["rows"]
    assert model["seq_len"] == 16 and model["seq_len_from"] == "charlm's seq_len"
    labels = model["labels"]
    assert labels == {
        "throughput": "throughput: N=64 T=16",
        "latency": "latency: N=1 T=16",
        "stream": "streaming: N=1, one step per call",
    }
    expected = {
        "throughput": {(i, d) for i in ("onednn", "ipex") for d in ("fp32", "bf16")}
        | {("openvino", d) for d in ("fp32", "bf16", "int8")},
        "stream": {(i, d) for i in ("onednn", "openvino") for d in ("fp32", "bf16")},
    }
    expected["latency"] = expected["throughput"]
    for key, pairs in expected.items():
        assert set(_by(rows, labels[key])) == pairs, key
    for key in ("throughput", "latency"):
        ladder = _by(rows, f"IR settings, {labels[key]}")
        assert set(ladder) == {(f"openvino:{s.name}", "fp32") for s in SETTINGS_LADDER}
        for s in SETTINGS_LADDER:
            compiled = ladder[(f"openvino:{s.name}", "fp32")]["proof"]["openvino"]["compiled"]
            assert compiled["INFERENCE_PRECISION_HINT"] == "f32"
            if "PERFORMANCE_HINT" in s.config:
                assert compiled["PERFORMANCE_HINT"] == s.config["PERFORMANCE_HINT"]

    assert len({r["id"] for r in rows}) == len(rows)
    for r in rows:
        assert r["status"] in ("ok", "n/a"), (r["id"], r["status"], r["reason"])
        if r["status"] == "n/a":
            assert r["reason"], r["id"]
            continue
        check = r["proof"]["check"]  # outputs compared with torch fp32 before timing
        assert check["ok"], r["id"]
        if TOLERANCES[r["dtype"]] is None:  # int8: top-1 agreement with torch fp32 instead
            assert check["top1_agreement"] >= INT8_MIN_AGREEMENT, r["id"]
        else:
            assert check["max_error"] <= TOLERANCES[r["dtype"]], r["id"]
        assert r["timing"]["repeats"] == 1
        if r["impl"] == "openvino":  # the IR as the bench compiles it, read back
            compiled = r["proof"]["openvino"]["compiled"]
            assert compiled["PERFORMANCE_HINT"] == "LATENCY"
            assert compiled["NUM_STREAMS"] == "1" and compiled["INFERENCE_NUM_THREADS"] == "1"
            assert compiled["ENABLE_CPU_PINNING"] == "True"
            assert compiled["INFERENCE_PRECISION_HINT"] == (
                "bf16" if r["dtype"] == "bf16" else "f32"
            )
    ipex_rows = [r for r in rows if r["impl"] == "ipex"]
    if ipex_status().available:
        assert all(r["status"] == "ok" for r in ipex_rows)
    else:
        assert all(r["status"] == "n/a" and "IPEX" in r["reason"] for r in ipex_rows)
    int8 = [r for r in rows if r["dtype"] == "int8"]
    if not HAS_QUANTIZE:
        assert all(r["status"] == "n/a" and "export/quantize.py" in r["reason"] for r in int8)
    for key in ("throughput", "latency"):
        for d in ("fp32", "bf16"):
            assert _by(rows, labels[key])[("openvino", d)]["status"] == "ok"
    assert _by(rows, labels["stream"])[("openvino", "fp32")]["status"] == "ok"

    ratios = model["ratios"]
    assert [(r["name"].split(",")[0], r["dtype"]) for r in ratios] == [
        ("OpenVINO / best torch", "fp32"),
        ("OpenVINO / best torch", "bf16"),
        ("OpenVINO / best torch", "fp32"),
        ("OpenVINO / best torch", "bf16"),
        ("int8 IR / f32 IR", "int8"),
        ("stateful IR per step / torch per step (state carried)", "fp32"),
        ("stateful IR per step / torch per step (state carried)", "bf16"),
    ]
    by_id = {r["id"]: r for r in rows}
    for ratio in ratios:
        if ratio["value"] is None:
            assert ratio["met"] is None and ratio["detail"], ratio
            continue
        cand, base = by_id[ratio["candidate"]], by_id[ratio["baseline"]]
        recomputed = base["timing"]["median_ms"] / cand["timing"]["median_ms"]
        assert ratio["value"] == pytest.approx(recomputed)
        assert ratio["met"] == (recomputed >= ratio["target"])
        if not ratio["met"]:
            assert ratio["detail"].startswith("missed by ")
        if ratio["name"].startswith("OpenVINO"):  # the best torch path at the same precision
            torch_ms = [
                r["timing"]["median_ms"]
                for r in rows
                if r["label"] == cand["label"]
                and r["impl"] in ("onednn", "ipex")
                and r["dtype"] == cand["dtype"]
                and r["status"] == "ok"
            ]
            assert base["timing"]["median_ms"] == min(torch_ms)
    int8_ratio = ratios[4]
    if not HAS_QUANTIZE:
        assert int8_ratio["value"] is None and "export/quantize.py" in int8_ratio["detail"]

    report = (out / "report.md").read_text()
    assert "## The model against PyTorch" in report and "## Machine" in report
    assert "OpenVINO / best torch, throughput" in report and "ENABLE_CPU_PINNING=True" in report
    assert "CPU:" in report


def _spec(impl: str) -> Spec:
    return Spec("lstm", impl, "infer", "fp32", 1, 4, 2, 3, 5)


def _row(impl: str) -> Row:
    return Row(
        id=f"t/{impl}",
        label="x",
        kind="lstm",
        impl=impl,
        mode="infer",
        dtype="fp32",
        threads=1,
        shape=_spec(impl).shape,
        status="pending",
    )


def test_a_row_whose_output_differs_is_an_error_and_is_not_timed() -> None:
    reference = {"logits": np.ones((2, 3), np.float32)}
    calls: dict[str, int] = {"good": 0, "wrong": 0}

    def variant(impl: str, value: float) -> ModelVariant:
        def call() -> None:
            calls[impl] += 1

        outputs = {"logits": np.full((2, 3), value, np.float32)}
        return ModelVariant(Variant(_spec(impl), call, impl), lambda: outputs)

    def unavailable() -> ModelVariant:
        raise Unavailable("no such runtime here")

    def broken() -> ModelVariant:
        raise RuntimeError("compile failed")

    rows = {name: _row(name) for name in ("good", "wrong", "missing", "broken")}
    members = [
        (rows["good"], lambda: variant("good", 1.0), reference),
        (rows["wrong"], lambda: variant("wrong", 1.1), reference),
        (rows["missing"], unavailable, reference),
        (rows["broken"], broken, reference),
    ]
    settings = ModelBenchSettings(threads=1, warmup=1, repeats=3, time_cap_s=1.0)
    measure_group(members, settings, log=lambda _: None)
    assert rows["good"].status == "ok" and rows["good"].timing["repeats"] == 3
    assert rows["good"].proof["check"]["max_error"] == 0.0
    assert calls == {"good": 4, "wrong": 0}  # warm-up + repeats; the wrong one never timed
    wrong = rows["wrong"]
    assert wrong.status == "error" and wrong.timing is None
    assert "differs from torch fp32 by 1.00e-01" in wrong.reason and "not timed" in wrong.reason
    assert wrong.proof["check"]["ok"] is False
    assert (rows["missing"].status, rows["missing"].reason) == ("n/a", "no such runtime here")
    assert rows["broken"].status == "error" and "compile failed" in rows["broken"].reason


@pytest.mark.parametrize(
    ("name", "steps"),
    [("adding", 8), ("copy", 23), ("charlm", 16)],
)
def test_task_steps_come_from_the_task(name: str, steps: int) -> None:
    trained = SimpleNamespace(config=config_from_dict(tiny(name)))
    assert task_steps(trained)[0] == steps


def test_task_steps_of_files_read_the_data_or_fall_back(tmp_path: Path) -> None:
    data = tiny("files")
    trained = SimpleNamespace(config=config_from_dict(data))
    steps, where = task_steps(trained)
    assert steps >= 1 and "median length" in where
    gone = tmp_path / "gone.csv"
    gone.write_text((REPO / "configs/data/sines.csv").read_text())
    data["task"]["options"]["path"] = str(gone)
    trained = SimpleNamespace(config=config_from_dict(data))
    assert task_steps(trained)[0] == steps  # same data, same median
    gone.unlink()
    steps, where = task_steps(trained)
    assert steps == DEFAULT_FILES_STEPS and "unreadable" in where


def test_a_files_model_with_lengths_runs_in_process(tmp_path: Path) -> None:
    run = tmp_path / "files"
    result, _ = train(tiny("files", steps=10), run)
    assert result.exit_code == 0
    settings = ModelBenchSettings(threads=1, warmup=0, repeats=1, seq_len=7, batch=5)
    results = run_model_bench(run, settings, log=lambda _: None)
    rows = results["rows"]
    assert all(r["status"] in ("ok", "n/a") for r in rows), [
        (r["id"], r["reason"]) for r in rows if r["status"] not in ("ok", "n/a")
    ]
    ov = [r for r in rows if r["impl"] == "openvino" and r["dtype"] in ("fp32", "bf16")]
    assert len(ov) == 6 and all(r["status"] == "ok" for r in ov)
    throughput = [r for r in ov if r["mode"] == "infer" and r["shape"]["batch"] == 5]
    assert throughput and all(r["shape"]["seq_len"] == 7 for r in throughput)
    assert any("lengths" in n for r in throughput for n in r["notes"])
    stream = [r for r in rows if r["mode"] == "stream"]
    assert all(r["shape"]["seq_len"] == 1 and r["status"] == "ok" for r in stream)
    assert results["model"]["seq_len_from"] == "--seq-len"


def _one_line_error(done) -> str:
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_bench_model_refuses_a_missing_run_and_a_non_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "out"
    line = _one_line_error(run_cli("bench", "--model", str(tmp_path / "nope"), "--out", str(out)))
    assert "does not exist" in line
    empty = tmp_path / "empty-run"
    empty.mkdir()
    line = _one_line_error(run_cli("bench", "--model", str(empty), "--out", str(out)))
    assert "without checkpoints/best.pt" in line
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a checkpoint")
    line = _one_line_error(run_cli("bench", "--model", str(junk), "--out", str(out)))
    assert str(junk) in line
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--model", "R", "--suite", "quick"], "--suite cannot be combined with --model"),
        (["--model", "R", "--impls", "onednn", "--no-probe"], "--impls, --no-probe cannot be"),
        (["run", "--model", "R", "--instances", "2"], "--instances cannot be combined"),
        (["--model", "R", "--threads", "1,2"], "--model takes one thread count"),
        (["--model", "R", "--repeats", "0"], "--repeats got '0'; expected a positive int"),
        (["--repeats", "3"], "--repeats applies to bench --model only"),
        (["--suite", "quick", "--ov-settings"], "--ov-settings applies to bench --model only"),
        (["--model", "R", "compare", "a.json", "b.json"], "--model applies to bench run"),
    ],
)
def test_bench_model_refuses_options_that_do_not_go_with_it(
    tmp_path: Path, args: list[str], says: str
) -> None:
    args = [str(tmp_path / "run") if a == "R" else a for a in args]
    if "compare" not in args:  # compare takes no --out
        args += ["--out", str(tmp_path / "o")]
    line = _one_line_error(run_cli("bench", *args, cwd=tmp_path))
    assert says in line
    assert not (tmp_path / "o").exists()


def test_int8_rows_are_held_to_top1_agreement_not_an_output_bound() -> None:
    from nervana_lstm.perf.model_bench import check_outputs

    ref = {"logits": np.array([[[3.0, 0.0, -1.0], [0.0, 2.0, 1.0]]], np.float32)}  # (1, 2, 3)
    shifted = {"logits": ref["logits"] + np.array([0.0, 0.5, 0.4], np.float32)}  # same argmax
    good = check_outputs(shifted, ref, "int8")
    assert good["ok"] and good["top1_agreement"] == 1.0 and good["max_error"] > 0.1
    swapped = {"logits": ref["logits"][..., ::-1].copy()}
    assert not check_outputs(swapped, ref, "int8")["ok"]
    broken = {"logits": np.full_like(ref["logits"], np.nan)}
    assert not check_outputs(broken, ref, "int8")["ok"]
    # fp32 keeps its bound: the same shift is an error there
    assert not check_outputs(shifted, ref, "fp32")["ok"]


def test_rows_are_timed_with_their_own_runtime_and_ipex_last() -> None:
    """Stock torch rows run before IPEX is imported; runtimes are never interleaved."""
    from nervana_lstm.perf.model_bench import by_runtime

    def planned(impl: str, shape: str):
        return (SimpleNamespace(impl=impl, id=f"{shape}/{impl}"), None, {})

    shapes = [
        [planned(i, s) for i in ("onednn", "ipex", "openvino", "openvino:timed")]
        for s in ("throughput", "latency")
    ]
    order = [[row.id for row, _, _ in group] for group in by_runtime(shapes)]
    assert order == [
        ["throughput/onednn"],
        ["latency/onednn"],
        ["throughput/openvino", "throughput/openvino:timed"],
        ["latency/openvino", "latency/openvino:timed"],
        ["throughput/ipex"],
        ["latency/ipex"],
    ]
