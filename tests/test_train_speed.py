"""Precision from the hardware, the IPEX variants, ``auto``'s fair measurement, the plain baseline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nervana_lstm import platform_info
from nervana_lstm.choices import IPEX_BACKENDS
from nervana_lstm.config import config_from_dict
from nervana_lstm.errors import UsageError
from nervana_lstm.train import accel
from nervana_lstm.train.checkpoint import load_checkpoint
from tests.test_train import REPO, tiny, train

AMX = {"avx2": True, "avx512f": True, "avx512_bf16": True, "amx_tile": True, "amx_bf16": True}
AVX512_BF16 = {"avx2": True, "avx512f": True, "avx512_bf16": True}
AVX2_ONLY = {"avx2": True}


def _cpu(monkeypatch: pytest.MonkeyPatch, flags: dict[str, bool]) -> None:
    """Make the CPU reading say ``flags`` (the rest of the reading is this machine's)."""
    real = platform_info.read_cpu_info()
    fake = platform_info.CpuInfo(
        real.model, real.vendor, real.arch, real.cores, real.threads, real.affinity,
        {name: flags.get(name, False) for name in platform_info.ISA_FLAGS},
    )  # fmt: skip
    monkeypatch.setattr(platform_info, "read_cpu_info", lambda *a, **k: fake)


# ------------------------------------------------------------- precision: auto


@pytest.mark.parametrize(
    ("flags", "precision", "why"),
    [
        (AMX, "bf16", "amx_bf16"),
        (AVX512_BF16, "bf16", "avx512_bf16"),
        (AVX2_ONLY, "fp32", "no native bf16"),
    ],
)
def test_auto_precision_follows_the_cpu(flags: dict, precision: str, why: str) -> None:
    choice = accel.choose_precision("auto", flags)
    assert choice.precision == precision and why in choice.reason


def test_named_precision_and_resumed_auto_are_kept_on_any_cpu() -> None:
    assert accel.choose_precision("bf16", AVX2_ONLY).precision == "bf16"
    assert accel.choose_precision("fp32", AMX).precision == "fp32"
    kept = accel.choose_precision("auto", AVX2_ONLY, resumed="bf16")
    assert kept.precision == "bf16" and "started with" in kept.reason
    with pytest.raises(UsageError, match="expected one of auto, fp32, bf16"):
        accel.choose_precision("fp16")


@pytest.mark.parametrize(("flags", "precision"), [(AVX2_ONLY, "fp32"), (AMX, "bf16")])
def test_a_run_with_auto_precision_says_what_ran_and_why(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, flags: dict, precision: str
) -> None:
    _cpu(monkeypatch, flags)
    result, log = train(tiny("adding", precision="auto", steps=4), tmp_path / "r")
    assert result.precision == precision
    info = json.loads((tmp_path / "r" / "run.json").read_text())
    assert info["precision"] == precision and info["precision_reason"].startswith("auto: ")
    assert info["precision_reason"] in log
    state = load_checkpoint(tmp_path / "r" / "checkpoints" / "last.pt")
    assert state["precision"] == precision  # what ran, not "auto"
    assert state["config"]["train"]["precision"] == "auto"  # what was asked, for --resume


def test_a_resumed_auto_run_keeps_its_precision_on_another_cpu(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    data = tiny("adding", precision="auto", steps=6)
    _cpu(monkeypatch, AMX)
    train(data, tmp_path / "r", stop_at=3)
    assert load_checkpoint(tmp_path / "r" / "checkpoints" / "last.pt")["step"] == 3
    _cpu(monkeypatch, AVX2_ONLY)
    result, log = train(data, tmp_path / "r", resume=True)
    assert (result.step, result.precision) == (6, "bf16")
    assert "the precision this run started with" in log


def test_shipped_configs_choose_precision_from_the_cpu() -> None:
    from nervana_lstm.config import load_config

    for name in ("charlm", "adding", "copy", "sines"):
        assert load_config(REPO / "configs" / f"{name}.yaml", []).train.precision == "auto", name


def test_bf16_reaches_the_fp32_result_on_a_small_task(tmp_path: Path) -> None:
    """The adding problem at T=10: both precisions learn it, to the same error within 0.02."""
    figures = {}
    for precision in ("fp32", "bf16"):
        data = tiny("adding", precision=precision, steps=300)
        data["task"]["options"] = {"T": 10, "eval_size": 512}
        data["model"]["hidden_size"] = 32
        data["eval"] = {"every": 300}
        train(data, tmp_path / precision)
        evals = [
            json.loads(line)
            for line in (tmp_path / precision / "metrics.jsonl").read_text().splitlines()
            if '"eval"' in line
        ]
        figures[precision] = evals[-1]["mse_ratio"]
    assert figures["fp32"] < 0.1, figures  # learned: well under the always-1 baseline
    assert figures["bf16"] < 0.1, figures
    assert abs(figures["bf16"] - figures["fp32"]) < 0.02, figures


# --------------------------------------------------------------- auto, measured


def test_auto_measures_ipex_after_onednn_and_the_reference_last() -> None:
    groups = accel.measurement_groups(["reference", "ipex-o0", "onednn", "ipex", "ipex-stock-lstm"])
    assert groups == [["onednn"], ["ipex", "ipex-stock-lstm", "ipex-o0"], ["reference"]]


def test_auto_gives_every_candidate_the_same_steps_and_reports_the_cost() -> None:
    calls: list[tuple[tuple[str, ...], float | None]] = []
    times = {"onednn": 0.010, "ipex": 0.008, "ipex-stock-lstm": 0.009, "reference": 0.2}

    def measure(names, limit):  # type: ignore[no-untyped-def]
        calls.append((tuple(names), limit))
        return {n: times[n] for n in names}

    pool = ["onednn", "ipex", "ipex-stock-lstm", "reference"]
    choice = accel.choose_backend("auto", measure, pool)
    assert choice.backend == "ipex"
    assert calls[0] == (("onednn",), None)  # the first group sets the bar
    assert calls[1][0] == ("ipex", "ipex-stock-lstm")
    assert calls[2] == (("reference",), pytest.approx(accel.GIVE_UP_FACTOR * 0.008))
    assert "stopped after one timed step" in choice.reason  # reference: 0.2 s > 5 x 8 ms
    assert f"median of {accel.AUTO_REPEATS} after {accel.AUTO_WARMUP} warm-up" in choice.reason
    assert choice.seconds >= 0 and "measuring took" in choice.reason


def test_auto_names_a_candidate_that_could_not_be_measured_and_goes_on() -> None:
    def measure(names, limit):  # type: ignore[no-untyped-def]
        return {n: ("the measuring process exited 127" if n == "ipex" else 0.01) for n in names}

    choice = accel.choose_backend("auto", measure, ["onednn", "ipex"])
    assert choice.backend == "onednn"
    assert "ipex could not be measured (the measuring process exited 127)" in choice.reason
    with pytest.raises(UsageError, match="no backend could be measured"):
        accel.choose_backend(
            "auto", lambda names, limit: dict.fromkeys(names, "broken"), ["onednn", "ipex"]
        )


@pytest.mark.ipex
def test_ipex_is_measured_in_a_child_and_never_imported_here(ipex) -> None:
    """`auto` may pick stock torch; the process that trains must not have imported IPEX."""
    script = """
import json, sys
from nervana_lstm.config import config_from_dict
from nervana_lstm.data import make_task
from nervana_lstm.train.autotune import measure_backends
from tests.test_train import tiny
cfg = config_from_dict(tiny("adding"))
task = make_task(cfg.task.name, **cfg.task.options)
batch = task.train_batch(0, cfg.train.batch_size)
out = measure_backends(["ipex", "ipex-stock-lstm", "ipex-o0"], task, cfg, batch, None,
                       precision="fp32", threads=1, warmup=1, repeats=1)
print(json.dumps({"times": out, "imported": "intel_extension_for_pytorch" in sys.modules}))
"""
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, check=True
    )
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["imported"] is False
    assert sorted(result["times"]) == sorted(IPEX_BACKENDS)
    assert all(isinstance(t, float) and t > 0 for t in result["times"].values()), result


# ------------------------------------------------------------ the IPEX variants


@pytest.mark.ipex
@pytest.mark.parametrize("backend", IPEX_BACKENDS)
def test_every_ipex_variant_trains_and_resumes_exactly(ipex, backend: str, tmp_path: Path) -> None:
    data = tiny("charlm", accel=backend, steps=6)
    data["eval"] = {"every": 3}
    whole, log = train(data, tmp_path / "whole")
    assert (whole.backend, whole.exit_code) == (backend, 0)
    assert accel.describe(backend, "lstm") in log
    train(data, tmp_path / "part", stop_at=3)
    assert load_checkpoint(tmp_path / "part" / "checkpoints" / "last.pt")["step"] == 3
    resumed, _ = train(data, tmp_path / "part", resume=True)
    assert resumed.step == 6
    a = load_checkpoint(tmp_path / "whole" / "checkpoints" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "part" / "checkpoints" / "last.pt")["model"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.ipex
def test_ipex_variants_differ_in_what_they_change(ipex) -> None:
    """ipex swaps the LSTM module, ipex-stock-lstm keeps torch's, ipex-o0 changes nothing."""
    from nervana_lstm.data import make_task
    from nervana_lstm.train.autotune import build_for

    cfg = config_from_dict(tiny("charlm"))
    task = make_task(cfg.task.name, **cfg.task.options)
    kinds = {}
    for backend in IPEX_BACKENDS:
        model, _, _ = build_for(backend, task, cfg, precision="fp32")
        kinds[backend] = {type(m).__name__ for m in model.modules()}
    assert "LSTM" in kinds["ipex-stock-lstm"] and "LSTM" in kinds["ipex-o0"]
    assert "LSTM" not in kinds["ipex"]  # replaced by IPEX's own module
    swapped = {
        type(m).__module__ for m in build_for("ipex", task, cfg, precision="fp32")[0].modules()
    }
    assert any("intel_extension_for_pytorch" in name for name in swapped)
    plain = {
        type(m).__module__ for m in build_for("ipex-o0", task, cfg, precision="fp32")[0].modules()
    }
    assert not any("intel_extension_for_pytorch" in name for name in plain)


# ------------------------------------------------------------ the plain baseline


def test_the_plain_baseline_trains_the_same_model_as_train() -> None:
    from nervana_lstm.data import make_task
    from nervana_lstm.models import build_model
    from nervana_lstm.perf.run_config import load_run_config as _config
    from nervana_lstm.perf.train_vs_plain import PlainCharLM

    cfg = _config(REPO / "configs" / "charlm.yaml", [])
    task = make_task(cfg.task.name, **cfg.task.options)
    ours = build_model(task.spec, cfg.model, "fused")
    plain = PlainCharLM(
        task.spec.input_size, cfg.model.embedding_dim, cfg.model.hidden_size, cfg.model.forget_bias
    )
    shapes = lambda m: sorted(tuple(p.shape) for p in m.parameters())  # noqa: E731
    assert shapes(plain) == shapes(ours)
    assert sum(p.numel() for p in plain.parameters()) == sum(p.numel() for p in ours.parameters())
    batch = task.train_batch(0, 4)
    logits, (h, c) = plain(batch.x)
    assert logits.shape == (*batch.x.shape, task.spec.output_size) and h.shape == c.shape


def test_the_plain_baseline_learns_on_the_same_data() -> None:
    from nervana_lstm.perf.run_config import load_run_config as _config
    from nervana_lstm.perf.train_vs_plain import plain_run

    cfg = _config(
        REPO / "configs" / "charlm.yaml",
        ["model.hidden_size=32", "model.embedding_dim=16", "train.batch_size=8",
         "task.options.seq_len=16", "optim.lr=1e-2"],
    )  # fmt: skip
    torch.set_num_threads(1)
    result = plain_run(cfg, "fp32", steps=40, log_every=10)
    assert result["tokens_per_s"] > 0
    # 104 characters: a uniform guess is log2(104) = 6.7 bits; 40 steps learn the frequent ones
    assert result["bpc"] < 5.0, result
