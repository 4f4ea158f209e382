"""Hostile and careless checkpoints: zip bombs, recomputed digests over bad fields,
pickled objects, paths that are not files, and extreme sampling temperatures.

A checkpoint's SHA-256 only catches accidents; every case here carries a digest
recomputed over the bad content (``save_checkpoint`` recomputes it), so what
refuses them is the field-by-field check of :mod:`nervana_lstm.train.safe_load`.
"""

from __future__ import annotations

import hashlib
import io
import math
import os
import re
import resource
import shutil
import struct
import subprocess
import sys
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from conftest import assert_refused, train_quietly

from nervana_lstm.errors import UsageError
from nervana_lstm.train.checkpoint import FORMAT, load_checkpoint, save_checkpoint

REPO = Path(__file__).resolve().parents[1]
MEMORY_LIMIT = 7 * 2**30  # address space for a CLI child: torch needs ~5 GiB of it to import


def _cfg(name: str = "adding", **train: object) -> dict:
    if name == "adding":
        task = {"name": "adding", "options": {"T": 6, "eval_size": 16}}
        model = {"kind": "lstm", "hidden_size": 6}
    else:
        task = {"name": "charlm", "options": {"seq_len": 8}}
        model = {"kind": "lstm", "hidden_size": 6, "embedding_dim": 4}
    return {
        "task": task,
        "model": model,
        "train": {"steps": 6, "batch_size": 4, "threads": 1, "log_every": 1, "accel": "onednn",
                  "checkpoint_every": 1, **train},
        "eval": {"every": 2},
    }  # fmt: skip


def _train(data: dict, out: Path, **kw: Any) -> None:
    train_quietly(data, out, **kw)


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny adding run stopped at step 3 of 6 (copy it before changing it)."""
    out = tmp_path_factory.mktemp("hostile") / "run"
    _train(_cfg(), out, stop_at=3)
    return out


@pytest.fixture(scope="module")
def charlm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("hostile-lm") / "lm"
    _train(_cfg("charlm", steps=2), out)
    return out


def _copy(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "run"))


def _cli(*args: str, limit: int | None = None) -> subprocess.CompletedProcess[str]:
    def lower_limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    return subprocess.run(
        [sys.executable, "-m", "nervana_lstm", *args],
        capture_output=True, text=True, timeout=300, cwd=REPO,
        preexec_fn=lower_limit if limit else None,
    )  # fmt: skip


_refused = assert_refused


# ------------------------------------------------------------------ zip archives


def _rezip(data: bytes) -> bytes:
    """The same archive with every entry deflated (torch.save stores them)."""
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info), compress_type=zipfile.ZIP_DEFLATED)
    return out.getvalue()


def _declare(data: bytes, size: int) -> bytes:
    """The archive with every central-directory entry claiming ``size`` bytes uncompressed."""
    buf = bytearray(data)
    end = buf.rfind(b"PK\x05\x06")
    count, _, offset = struct.unpack_from("<HII", buf, end + 10)
    for _ in range(count):
        assert buf[offset : offset + 4] == b"PK\x01\x02"
        struct.pack_into("<I", buf, offset + 24, size)
        name, extra, comment = struct.unpack_from("<HHH", buf, offset + 28)
        offset += 46 + name + extra + comment
    return bytes(buf)


def _wrap(inner: bytes) -> bytes:
    """A checkpoint file around ``inner`` payload bytes, with their digest recomputed."""
    wrapper = {
        "format": FORMAT, "version": 1, "sha256": hashlib.sha256(inner).hexdigest(),
        "payload": torch.frombuffer(bytearray(inner), dtype=torch.uint8),
    }  # fmt: skip
    buf = io.BytesIO()
    torch.save(wrapper, buf)
    return buf.getvalue()


def _state_of(run: Path) -> dict:
    return load_checkpoint(run / "checkpoints" / "last.pt")


def test_a_file_that_inflates_to_64_mib_is_refused_unread(tmp_path: Path) -> None:
    buf = io.BytesIO()
    torch.save({"format": FORMAT, "version": 1, "sha256": "0" * 64,
                "payload": torch.zeros(64 * 2**20, dtype=torch.uint8)}, buf)  # fmt: skip
    bomb = tmp_path / "bomb.pt"
    bomb.write_bytes(_rezip(buf.getvalue()))
    assert bomb.stat().st_size < 2**20
    with pytest.raises(UsageError, match=r"the file declares 67,1\d\d,\d\d\d bytes .* refused"):
        load_checkpoint(bomb)


def test_a_payload_that_inflates_is_refused_though_its_digest_matches(
    stopped_run: Path, tmp_path: Path
) -> None:
    state = _state_of(stopped_run)
    state["model"]["rnn.weight_hh_l0"] = torch.zeros(16 * 2**20)  # 64 MiB of zeros
    inner = io.BytesIO()
    torch.save(state, inner)
    path = tmp_path / "inner-bomb.pt"
    path.write_bytes(_wrap(_rezip(inner.getvalue())))
    assert path.stat().st_size < 2**20
    with pytest.raises(UsageError, match=r"the payload declares .* refused unread"):
        load_checkpoint(path)


def test_sizes_the_header_lies_about_are_refused_under_a_memory_limit(
    stopped_run: Path, tmp_path: Path
) -> None:
    """4 GB claimed by a 2 kB file: refused from the directory alone, in a CLI child whose
    address space could not hold the claim anyway."""
    liar = tmp_path / "liar.pt"
    liar.write_bytes(
        _declare(_rezip((stopped_run / "checkpoints/last.pt").read_bytes()), 2**32 - 1)
    )
    proc = _cli("sample", str(liar), limit=MEMORY_LIMIT)
    _refused(proc, "not a usable nervana-lstm checkpoint", "refused unread")


def test_other_compression_methods_and_non_zip_files_are_refused(
    stopped_run: Path, tmp_path: Path
) -> None:
    data = bytearray(_rezip((stopped_run / "checkpoints/last.pt").read_bytes()))
    end = data.rfind(b"PK\x05\x06")
    offset = struct.unpack_from("<I", data, end + 16)[0]
    struct.pack_into("<H", data, offset + 10, 14)  # LZMA in the first central entry
    (tmp_path / "lzma.pt").write_bytes(bytes(data))
    with pytest.raises(UsageError, match="compression method 14"):
        load_checkpoint(tmp_path / "lzma.pt")
    # torch's legacy (non-zip) format allocates what its header declares: never read
    legacy = tmp_path / "legacy.pt"
    torch.save({"w": torch.zeros(2)}, legacy, _use_new_zipfile_serialization=False)
    with pytest.raises(UsageError, match="not a zip archive"):
        load_checkpoint(legacy)


# ------------------------------------------------------ fields under a fresh digest


def _nested(depth: int) -> list:
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


def _first(state: dict) -> str:
    return next(iter(state["model"]))


def _set(path: list, value: Any) -> Callable[[dict], None]:
    def change(state: dict) -> None:
        node = state
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return change


def _poison(state: dict, value: float) -> None:
    w = state["model"][_first(state)]
    w.view(-1)[0] = value


def _opt_nan(state: dict) -> None:
    first = next(iter(state["optimizer"]["state"].values()))
    first["exp_avg"].view(-1)[0] = math.nan


MUTATIONS: dict[str, tuple[Callable[[dict], None], str]] = {
    "step negative": (_set(["step"], -5), "'step' is -5, expected an integer in 0..6"),
    "step past train.steps": (_set(["step"], 10**9), "'step' is 1000000000"),
    "step a bool": (_set(["step"], True), "'step' is True"),
    "step a string": (_set(["step"], "3"), "'step' is '3'"),
    "step a float": (_set(["step"], 3.0), "'step' is 3.0"),
    "rng rows": (lambda s: s.update(rng=s["rng"].repeat(2, 1)), "'rng' is a torch.uint8 tensor"),
    "rng length": (lambda s: s.update(rng=s["rng"][:, :100]), "shape (1, 5056)"),
    "rng dtype": (lambda s: s.update(rng=s["rng"].float()), "expected a uint8 tensor"),
    "rng missing": (lambda s: s.pop("rng"), "it lacks 'rng'"),
    "weight NaN": (lambda s: _poison(s, math.nan), "holds NaN or infinite values"),
    "weight inf": (lambda s: _poison(s, -math.inf), "holds NaN or infinite values"),
    "weight expanded": (
        lambda s: s["model"].update({_first(s): torch.zeros(1).expand(10**8)}),
        "declares 100,000,000 elements on a storage of 4 bytes",
    ),
    "weight a list": (
        lambda s: s["model"].update({_first(s): [1.0]}),
        "'model' is not a non-empty mapping of names to tensors",
    ),
    "model empty": (_set(["model"], {}), "'model' is not a non-empty mapping"),
    "optimizer state NaN": (_opt_nan, "holds NaN or infinite values"),
    "optimizer not a state_dict": (_set(["optimizer"], {"state": []}), "'optimizer' is not"),
    "best NaN": (_set(["best"], math.nan), "state['best'] is nan"),
    "best a string": (_set(["best"], "0.1"), "'best' is '0.1'"),
    "evals_since_best negative": (_set(["evals_since_best"], -1), "'evals_since_best' is -1"),
    "backend unknown": (_set(["backend"], "cuda"), "'backend' is 'cuda'"),
    "precision unknown": (_set(["precision"], "fp8"), "'precision' is 'fp8'"),
    "world_size zero": (_set(["world_size"], 0), "'world_size' is 0"),
    "unknown key": (_set(["hook"], "os.system"), "unknown keys 'hook'"),
    "missing key": (lambda s: s.pop("optimizer"), "it lacks 'optimizer'"),
    "vocab repeated": (_set(["vocab"], ["a", "a"]), "'vocab' is not null or a list"),
    "vocab multi-character": (_set(["vocab"], ["ab"]), "'vocab' is not null or a list"),
    "carry 2-D": (_set(["carry"], torch.zeros(2, 2)), "'carry' is a torch.float32 tensor"),
    "carry NaN": (_set(["carry"], torch.full((1, 4, 6), math.nan)), "NaN or infinite"),
    "carry mismatched pair": (
        _set(["carry"], [torch.zeros(1, 4, 6), torch.zeros(1, 2, 6)]),
        "'carry' is a list of 2",
    ),
    "config invalid": (_set(["config", "model", "hidden_size"], -1), "model.hidden_size"),
    "config not a mapping": (_set(["config"], "adding"), "'config' is not a mapping"),
    "config switches on pickle": (
        lambda s: s["config"].update(
            task={"name": "files", "options": {"path": "d.npz", "allow_pickle": True}}
        ),
        "allow_pickle is not a config key",
    ),
    "nested 100 deep": (_set(["extra"], {"x": _nested(100)}), "nested more than 32 levels"),
    "extra not a mapping": (_set(["extra"], [1]), "'extra' is not a mapping"),
}


@pytest.mark.parametrize("name", sorted(MUTATIONS))
def test_every_field_is_checked_under_a_recomputed_digest(
    stopped_run: Path, tmp_path: Path, name: str
) -> None:
    change, fragment = MUTATIONS[name]
    state = _state_of(stopped_run)
    change(state)
    path = tmp_path / "changed.pt"
    save_checkpoint(path, state)  # a fresh digest over the bad content
    with pytest.raises(UsageError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "not a usable nervana-lstm checkpoint" in message or "invalid config" in message
    assert fragment in message, message


def test_step_minus_5_is_refused_before_metrics_are_touched(
    stopped_run: Path, tmp_path: Path
) -> None:
    run = _copy(stopped_run, tmp_path)
    state = _state_of(run)
    state["step"] = -5
    save_checkpoint(run / "checkpoints" / "last.pt", state)
    metrics = (run / "metrics.jsonl").read_bytes()
    config = (run / "config.yaml").read_bytes()
    proc = _cli("train", "--config", str(run / "config.yaml"), "--out", str(run), "--resume")
    _refused(proc, "'step' is -5")
    assert (run / "metrics.jsonl").read_bytes() == metrics
    assert (run / "config.yaml").read_bytes() == config


class _Trap:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickled_object_in_the_payload_never_runs_and_no_unsafe_advice(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    inner = io.BytesIO()
    torch.save({"config": {}, "x": _Trap(str(marker))}, inner)
    path = tmp_path / "trap.pt"
    path.write_bytes(_wrap(inner.getvalue()))
    with pytest.raises(UsageError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert "would run code from the file" in message
    assert "(io.open)" in message or "(builtins.open)" in message  # the object it names
    assert "weights_only" not in message and "trusted source" not in message
    assert not marker.exists()
    proc = _cli("sample", str(path))
    assert "weights_only" not in _refused(proc, "would run code") and not marker.exists()


def test_optimizer_state_of_the_wrong_shape_is_refused_on_resume(
    stopped_run: Path, tmp_path: Path
) -> None:
    run = _copy(stopped_run, tmp_path)
    state = _state_of(run)
    first = next(iter(state["optimizer"]["state"].values()))
    first["exp_avg"] = torch.zeros(3)
    save_checkpoint(run / "checkpoints" / "last.pt", state)
    with pytest.raises(UsageError, match=r"optimizer state 'exp_avg' has shape \(3,\)"):
        _train(_cfg(), run, resume=True)


def test_a_carried_state_for_another_batch_is_refused(charlm_run: Path, tmp_path: Path) -> None:
    run = _copy(charlm_run, tmp_path)
    with pytest.raises(UsageError, match=r"carries the recurrent state as \(1, 4, 6\)"):
        _train(_cfg("charlm", steps=4, batch_size=2), run, resume=True)


def test_a_resumed_run_with_nothing_to_do_keeps_its_checkpoint_loadable(
    stopped_run: Path, tmp_path: Path
) -> None:
    run = _copy(stopped_run, tmp_path)
    _train(_cfg(steps=2), run, resume=True)  # lower than the checkpoint's step 3
    assert _state_of(run)["step"] == 3  # not re-saved beside train.steps=2
    _train(_cfg(), run, resume=True)
    assert _state_of(run)["step"] == 6


# ----------------------------------------------------------- paths that are not files


def test_directories_devices_and_fifos_are_named_as_such(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.pt"
    os.mkfifo(fifo)
    cases = {
        tmp_path: "is a directory",
        Path("/dev/null"): "is a device, not a regular file",
        fifo: "is a named pipe (FIFO), not a regular file",  # refused without opening it
        tmp_path / "missing.pt": "does not exist",
    }
    for path, fragment in cases.items():
        with pytest.raises(UsageError, match=r"checkpoint .* " + re.escape(fragment)):
            load_checkpoint(path)
    _refused(_cli("sample", "/dev/null"), "checkpoint /dev/null is a device")
    _refused(_cli("export", "/dev/zero", "--out", str(tmp_path / "m")), "is a device")


# ----------------------------------------------------------------------- sampling


@pytest.mark.parametrize("temperature", ["1e-300", "5e-324", "1e39", "1.7e308"])
def test_extreme_temperatures_sample(charlm_run: Path, temperature: str) -> None:
    proc = _cli(
        "sample", str(charlm_run / "checkpoints/last.pt"), "--prompt", "a",
        "--length", "20", "--temperature", temperature,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stdout) >= 21


def test_tiny_temperatures_are_greedy_and_huge_ones_uniform() -> None:
    from nervana_lstm.export.sampling import _next

    scores = np.array([1.0, 3.0, 2.0, 3.0, 0.0], np.float32)  # id 4 is the unknown id
    rng = np.random.default_rng(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow warning either
        tiny = {_next(scores, 4, 1e-300, rng) for _ in range(200)}
        huge = {_next(scores, 4, 1e39, rng) for _ in range(200)}
    assert tiny == {1, 3} and huge == {0, 1, 2, 3}
    with pytest.raises(UsageError, match="NaN or infinite score"):
        _next(np.array([np.nan, 1.0, 0.0], np.float32), 2, 0.5, rng)


def test_checkpoint_sampler_refuses_non_finite_scores() -> None:
    from nervana_lstm.config import ModelConfig
    from nervana_lstm.data import TaskSpec
    from nervana_lstm.data.vocab import CharVocab
    from nervana_lstm.models import build_model
    from nervana_lstm.train.sampling import generate

    vocab = CharVocab.from_chars(list("abc"))
    spec = TaskSpec(
        name="charlm", input_kind="tokens", input_size=vocab.size, output_size=vocab.size,
        target="classify_steps", stateful=True,
    )  # fmt: skip
    model = build_model(spec, ModelConfig(hidden_size=4, embedding_dim=2), "fused").eval()
    gen = torch.Generator().manual_seed(0)
    for t in (1e-300, 1e39):
        assert len(generate(model, vocab, "ab", 5, t, gen)) == 5
    with torch.no_grad():
        model.head.bias.fill_(math.inf)
    with pytest.raises(UsageError, match="NaN or infinite score"):
        generate(model, vocab, "ab", 5, 0.5, gen)
