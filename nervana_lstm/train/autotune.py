"""Build the model for one backend and time its training step: what ``accel: auto`` measures.

The training loop, ``auto`` and the perf harness build their models with the same
function, :func:`build_for`, so the timings ``auto`` decides on are those of the
model that then trains, and the ones a benchmark can check.

Stock torch's backends are timed in this process. The IPEX backends are timed
together in a child process (``python -m nervana_lstm.train.autotune REQUEST
RESULT``): importing IPEX replaces CPU kernels for the whole process, so the
process that may go on to train on stock torch never imports it. The child
rebuilds the same task, batch and model from the resolved config, and runs with the
parent's thread count and OpenMP environment (``OMP_WAIT_POLICY`` as the run's thread
plan set it before torch started); it reports both back, and timings taken under
other settings are refused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from nervana_lstm.choices import IPEX_BACKENDS, Precision, TrainBackend
from nervana_lstm.config import RunConfig
from nervana_lstm.data import Batch, Task, make_task
from nervana_lstm.errors import BackendUnavailable, UsageError
from nervana_lstm.models import SequenceModel, build_model
from nervana_lstm.train import accel
from nervana_lstm.train.schedule import make_optimizer

__all__ = ["build_for", "measure_backend", "measure_backends", "settings_differ", "train_step"]

#: A child that measures the IPEX backends gets this long before it is given up on.
CHILD_TIMEOUT_S = 900.0


def build_for(
    backend: TrainBackend,
    task: Task,
    cfg: RunConfig,
    restore: Callable[[nn.Module, torch.optim.Optimizer], None] | None = None,
    precision: Precision | None = None,
) -> tuple[nn.Module, torch.optim.Optimizer, SequenceModel]:
    """(model as it will run, its optimizer, the plain model) with the run's initial weights.

    The weights are seeded by ``train.seed``, the same for every backend;
    ``restore(model, optimizer)``, when given, loads saved weights and optimizer
    state before the backend is applied (IPEX replaces both). ``precision`` is the
    resolved ``train.precision`` (needed when the config says ``auto``).
    """
    torch.manual_seed(cfg.train.seed)
    plain = build_model(task.spec, cfg.model, accel.impl_for(backend))
    optimizer = make_optimizer(plain.parameters(), cfg.optim)
    if restore is not None:
        restore(plain, optimizer)
    model, optimizer = accel.apply_backend(backend, plain, optimizer, _precision(cfg, precision))
    return model, optimizer, plain


def _precision(cfg: RunConfig, precision: Precision | None) -> Precision:
    if precision is not None:
        return precision
    if cfg.train.precision == "auto":
        raise ValueError("train.precision is 'auto': pass the resolved precision")
    return cfg.train.precision


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    task: Task,
    batch: Batch,
    precision: Precision,
    clip_norm: float | None = None,
) -> Callable[[], None]:
    """One bare training step on a fixed batch: forward, loss, backward, clip, update."""
    params = [p for p in model.parameters() if p.requires_grad]

    def step() -> None:
        with accel.autocast(precision):
            out, _ = model(batch.x, None, batch.lengths)
            loss = task.loss(out.float(), batch)
        loss.backward()
        if clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, clip_norm, foreach=True)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def measure_backend(
    backend: TrainBackend,
    task: Task,
    cfg: RunConfig,
    batch: Batch,
    give_up_after: float | None = None,
    warmup: int = accel.AUTO_WARMUP,
    repeats: int = accel.AUTO_REPEATS,
    precision: Precision | None = None,
) -> float:
    """Median seconds per training step of ``cfg``'s model on ``backend`` for ``batch``."""
    precision = _precision(cfg, precision)
    model, optimizer, _ = build_for(backend, task, cfg, precision=precision)
    model.train()
    step = train_step(model, optimizer, task, batch, precision, cfg.optim.clip_norm)
    return accel.time_steps(step, warmup, repeats, give_up_after)


def measure_backends(
    backends: Sequence[TrainBackend],
    task: Task,
    cfg: RunConfig,
    batch: Batch,
    give_up_after: float | None,
    *,
    precision: Precision,
    threads: int,
    rank: int = 0,
    world_size: int = 1,
    warmup: int = accel.AUTO_WARMUP,
    repeats: int = accel.AUTO_REPEATS,
) -> dict[TrainBackend, float | str]:
    """``auto``'s measurement of one group: seconds per step, or why a backend failed.

    The IPEX backends run in a child process (see the module docstring); the
    others here, on ``batch``.
    """
    if any(b in IPEX_BACKENDS for b in backends):
        request = {
            "config": cfg.to_dict(),
            "backends": list(backends),
            "give_up_after": give_up_after,
            "precision": precision,
            "threads": threads,
            "wait_policy": os.environ.get("OMP_WAIT_POLICY"),
            "rank": rank,
            "world_size": world_size,
            "warmup": warmup,
            "repeats": repeats,
        }
        return _measure_in_child(request)
    out: dict[TrainBackend, float | str] = {}
    for name in backends:
        out[name] = measure_backend(
            name, task, cfg, batch, give_up_after, warmup, repeats, precision=precision
        )
    return out


def _measure_in_child(request: dict[str, object]) -> dict[TrainBackend, float | str]:
    names: list[TrainBackend] = list(request["backends"])  # type: ignore[call-overload]
    with tempfile.TemporaryDirectory(prefix="nervana-lstm-auto-") as tmp:
        req, res = Path(tmp) / "request.json", Path(tmp) / "result.json"
        req.write_text(json.dumps(request))
        cmd = [sys.executable, "-m", "nervana_lstm.train.autotune", str(req), str(res)]
        try:
            proc = subprocess.run(
                cmd, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, env=os.environ.copy()
            )
        except subprocess.TimeoutExpired:
            return dict.fromkeys(names, f"no result within {CHILD_TIMEOUT_S:.0f} s")
        if proc.returncode != 0 or not res.exists():
            lines = (proc.stderr or proc.stdout or "").strip().splitlines()
            last = lines[-1] if lines else "no output"
            return dict.fromkeys(names, f"the measuring process exited {proc.returncode}: {last}")
        result = json.loads(res.read_text())
    differs = settings_differ(request, result.get(SETTINGS_KEY, {}))
    if differs:
        return dict.fromkeys(names, f"the measuring process ran with {differs}")
    return {name: result.get(name, "not measured") for name in names}


#: the key of the child's result that says which settings it ran with
SETTINGS_KEY = "_settings"


def settings_differ(request: dict[str, object], ran: dict[str, object]) -> str | None:
    """What differs between the settings asked for and those the child ran with, or None."""
    wrong = [
        f"{name}={ran.get(name)!r}, not {request.get(name)!r}"
        for name in ("threads", "wait_policy")
        if ran.get(name) != request.get(name)
    ]
    return "; ".join(wrong) or None


def _child_main(request_path: str, result_path: str) -> None:
    request = json.loads(Path(request_path).read_text())
    torch.set_num_threads(int(request["threads"]))
    cfg = RunConfig.model_validate(request["config"])
    task = make_task(cfg.task.name, **cfg.task.options)
    batch = task.train_batch(0, cfg.train.batch_size, request["rank"], request["world_size"])
    limit = request["give_up_after"]
    result: dict[str, float | str] = {}
    for name in request["backends"]:
        try:
            result[name] = measure_backend(
                name, task, cfg, batch, limit, request["warmup"], request["repeats"],
                precision=request["precision"],
            )  # fmt: skip
        except (BackendUnavailable, UsageError, RuntimeError) as exc:
            result[name] = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
    ran = {"threads": torch.get_num_threads(), "wait_policy": os.environ.get("OMP_WAIT_POLICY")}
    Path(result_path).write_text(json.dumps({**result, SETTINGS_KEY: ran}))


if __name__ == "__main__":
    _child_main(sys.argv[1], sys.argv[2])
