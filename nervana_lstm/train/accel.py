"""Where the training arithmetic runs: backend and precision.

Backends (``train.accel``)::

    ipex       fused cells, then ipex.optimize(model, optimizer=opt, dtype=...)
    onednn     fused cells on stock torch (nn.LSTM runs oneDNN's fused RNN primitive)
    reference  the unfused cells (one matmul per gate, a Python loop over time)
    auto       a short measurement at start: a few timed training steps of the actual
               model on the actual batch shape for every available backend; the fastest wins

Precision (``train.precision``): ``fp32``, or ``bf16`` = CPU autocast to bfloat16
with fp32 master weights (the optimizer updates fp32 parameters; with IPEX,
``ipex.optimize(dtype=torch.bfloat16)`` keeps the fp32 master copy itself).

A backend asked for by name that cannot run here is a
:class:`~nervana_lstm.errors.BackendUnavailable` error, never a silent fallback.
"""

from __future__ import annotations

import contextlib
import statistics
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from torch import nn

from nervana_lstm import backends
from nervana_lstm.choices import ACCELS, TRAIN_BACKENDS, CellsImpl, Precision, TrainBackend
from nervana_lstm.errors import UsageError
from nervana_lstm.precision import autocast, torch_dtype

__all__ = [
    "TRAIN_BACKENDS",
    "AccelChoice",
    "apply_backend",
    "autocast",
    "available_backends",
    "choose_backend",
    "describe",
    "impl_for",
    "master_state_dict",
    "precision_text",
    "time_steps",
]


@dataclass(frozen=True)
class AccelChoice:
    """The backend that will run, and why it was chosen."""

    backend: TrainBackend
    reason: str
    #: seconds per training step for each backend measured by ``auto`` (empty otherwise)
    timings: dict[str, float] = field(default_factory=dict)


def impl_for(backend: TrainBackend) -> CellsImpl:
    """Which cells implementation a backend trains: ``fused`` or ``reference``."""
    return "reference" if backend == "reference" else "fused"


def available_backends() -> list[TrainBackend]:
    """Training backends that can run here, judged without importing IPEX."""
    return [b for b in TRAIN_BACKENDS if backends.backend_status(b).available]


def describe(backend: TrainBackend, kind: str) -> str:
    """What actually executes the recurrence for ``backend`` and model ``kind``."""
    if backend == "reference":
        return f"unfused reference {kind} cells (per-step matmuls in Python)"
    if backend == "onednn":
        if kind == "lstm":
            return "stock torch nn.LSTM -> oneDNN fused RNN primitive"
        if kind in ("gru", "rnn"):
            return (
                f"stock torch nn.{kind.upper()} (ATen per-step kernels; "
                "oneDNN fuses only LSTM in stock torch)"
            )
        return f"fused {kind} cells on stock torch"
    version = backends.backend_status("ipex").version
    if kind == "lstm":
        return f"IPEX {version}: ipex.optimize, nn.LSTM swapped for torch_ipex::ipex_lstm"
    return f"IPEX {version}: ipex.optimize (IPEX leaves {kind} recurrences to stock torch)"


def precision_text(precision: Precision) -> str:
    """How ``precision`` trains, in words."""
    return "bf16 (CPU autocast, fp32 master weights)" if precision == "bf16" else "fp32"


def apply_backend(
    backend: TrainBackend, model: nn.Module, optimizer: torch.optim.Optimizer, precision: Precision
) -> tuple[nn.Module, torch.optim.Optimizer]:
    """Prepare ``model`` and ``optimizer`` for ``backend``; IPEX returns optimized copies."""
    if backend == "ipex":
        ipex = backends.import_ipex()  # silences IPEX's import noise, stdout included
        # IPEX's LSTM op has no registered autograd kernel; torch warns on every backward
        # although the gradients match nn.LSTM's (measured), so the warning is noise here.
        warnings.filterwarnings("ignore", message=".*an autograd kernel was not registered")
        model.train()
        with backends.quiet_native_output():
            model, optimizer = ipex.optimize(
                model, optimizer=optimizer, dtype=torch_dtype(precision)
            )
    elif backend == "onednn" and not torch.backends.mkldnn.enabled:
        # someone switched oneDNN off in this process; the named backend needs it
        torch.backends.mkldnn.enabled = True
    return model, optimizer


def master_state_dict(
    model: nn.Module, optimizer: torch.optim.Optimizer
) -> dict[str, torch.Tensor]:
    """The model's weights at full precision, as the optimizer holds them.

    After ``ipex.optimize(..., dtype=torch.bfloat16)`` the modules compute with
    bf16 copies while the optimizer updates fp32 master parameters
    (``optimizer.params_attr``). IPEX's own Linear returns the master in
    ``state_dict()``; its LSTM returns the bf16 copy, so those entries are replaced
    here by their masters (matched by storage). Otherwise this is ``state_dict()``.
    """
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    attrs = getattr(optimizer, "params_attr", None)
    if not attrs:
        return state
    masters = {}
    for master, attr in attrs.items():
        copy = getattr(attr, "parameter", None)
        if isinstance(copy, torch.Tensor) and copy.shape == master.shape:
            masters[copy.data_ptr()] = master
    for key, value in model.state_dict().items():
        master = masters.get(value.data_ptr())
        if master is not None and value.dtype != master.dtype:
            state[key] = master.detach().clone()
    return state


def time_steps(
    step: Callable[[], None], warmup: int = 2, repeats: int = 3, give_up_after: float | None = None
) -> float:
    """Median wall time of ``step`` after ``warmup`` untimed calls.

    When a warm-up call after the first takes longer than ``give_up_after``
    seconds the candidate cannot win; that call's time is returned without
    further calls. The first call is never judged: it carries one-time costs
    (IPEX repacks weights, oneDNN creates primitives) that later steps do not.
    """
    for i in range(warmup):
        start = time.perf_counter()
        step()
        took = time.perf_counter() - start
        if (i > 0 or warmup == 1) and give_up_after is not None and took > give_up_after:
            return took
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@contextlib.contextmanager
def _rng_kept() -> Iterator[None]:
    # The measurement must not change what the real run draws (dropout masks).
    state = torch.get_rng_state()
    try:
        yield
    finally:
        torch.set_rng_state(state)


#: ``auto`` measures in this order; the fused stock path first, since its time lets the
#: others stop early (a warmed-up step 5x slower than the best so far cannot win).
AUTO_ORDER: tuple[TrainBackend, ...] = ("onednn", "ipex", "reference")
GIVE_UP_FACTOR = 5.0


def choose_backend(
    requested: str,
    measure: Callable[[TrainBackend, float | None], float] | None = None,
    candidates: list[TrainBackend] | None = None,
) -> AccelChoice:
    """Resolve ``train.accel`` to one backend.

    ``measure(backend, give_up_after)`` returns seconds per training step of the
    real model on the real batch shape (see :func:`time_steps`); ``auto`` calls it
    once per available backend.
    """
    if requested != "auto":
        if requested not in TRAIN_BACKENDS:
            raise UsageError(
                f"train.accel: unknown backend {requested!r}; expected one of " + ", ".join(ACCELS)
            )
        backends.require(requested)
        return AccelChoice(requested, "asked for by train.accel")
    pool = candidates if candidates is not None else available_backends()
    if not pool:
        raise UsageError("train.accel=auto: no training backend can run here")
    if measure is None or len(pool) == 1:
        return AccelChoice(pool[0], f"the only available backend among {', '.join(pool)}")
    timings: dict[TrainBackend, float] = {}
    stopped: set[TrainBackend] = set()
    with _rng_kept():
        for name in sorted(pool, key=AUTO_ORDER.index):
            fastest = min(timings.values(), default=None)
            limit = None if fastest is None else GIVE_UP_FACTOR * fastest
            timings[name] = measure(name, limit)
            if limit is not None and timings[name] > limit:
                stopped.add(name)
    best = min(timings, key=timings.__getitem__)
    ranked = ", ".join(
        f"{n} {timings[n] * 1e3:.1f} ms"
        + (" (stopped after one warm step)" if n in stopped else "")
        for n in sorted(timings, key=timings.__getitem__)
    )
    missing = [b for b in TRAIN_BACKENDS if b not in pool]
    note = f"; not measured: {', '.join(missing)} (unavailable)" if missing else ""
    return AccelChoice(best, f"fastest measured training step: {ranked}{note}", timings)
