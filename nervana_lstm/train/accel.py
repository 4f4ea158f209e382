"""Where the training arithmetic runs: backend and precision.

Backends (``train.accel``)::

    onednn           fused cells on stock torch (nn.LSTM runs oneDNN's fused RNN primitive)
    reference        the unfused cells (one matmul per gate, a Python loop over time)
    ipex             fused cells, then ipex.optimize(model, optimizer=opt, dtype=...)
    ipex-stock-lstm  the same with optimize_lstm=False: IPEX around stock torch's oneDNN LSTM
    ipex-o0          ipex.optimize(..., level="O0"): no graph changes (bf16 copies of the
                     weights with fp32 masters when training in bf16)
    auto             a short measurement at start: the same number of timed training steps
                     of the actual model on the actual batch for every available backend,
                     after the same number of warm-up steps; the fastest wins

Precision (``train.precision``): ``fp32``; ``bf16`` = CPU autocast to bfloat16
with fp32 master weights (the optimizer updates fp32 parameters; with IPEX,
``ipex.optimize(dtype=torch.bfloat16)`` keeps the fp32 master copy itself); or
``auto`` = bf16 where the CPU computes bf16 natively (AMX-BF16 or AVX512_BF16)
and fp32 elsewhere, where bf16 would be emulated in fp32 arithmetic and only
lose accuracy.

A backend asked for by name that cannot run here is a
:class:`~nervana_lstm.errors.BackendUnavailable` error, never a silent fallback.
"""

from __future__ import annotations

import contextlib
import statistics
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from nervana_lstm import backends
from nervana_lstm.choices import (
    ACCELS,
    IPEX_BACKENDS,
    TRAIN_BACKENDS,
    TRAIN_PRECISIONS,
    CellsImpl,
    Precision,
    TrainBackend,
)
from nervana_lstm.errors import UsageError
from nervana_lstm.precision import autocast, torch_dtype

__all__ = [
    "IPEX_OPTIONS",
    "TRAIN_BACKENDS",
    "AccelChoice",
    "PrecisionChoice",
    "apply_backend",
    "autocast",
    "available_backends",
    "choose_backend",
    "choose_precision",
    "describe",
    "impl_for",
    "master_state_dict",
    "precision_text",
    "time_steps",
]


#: ``auto`` measures every candidate alike: this many untimed warm-up steps, then the
#: median of this many timed steps. IPEX's steps settle only after about ten (measured on
#: the default charlm step: 150-500 ms for the first, 50-170 ms up to the tenth, then
#: a steady 26-49 ms); stock torch's after two or three.
AUTO_WARMUP = 10
AUTO_REPEATS = 5
AUTO_ORDER: tuple[TrainBackend, ...] = ("onednn", "ipex", "ipex-stock-lstm", "ipex-o0", "reference")
GIVE_UP_FACTOR = 5.0


@dataclass(frozen=True)
class AccelChoice:
    """The backend that will run, and why it was chosen."""

    backend: TrainBackend
    reason: str
    #: seconds per training step for each backend measured by ``auto`` (empty otherwise)
    timings: dict[str, float] = field(default_factory=dict)
    #: wall seconds ``auto`` spent measuring (0 when nothing was measured)
    seconds: float = 0.0


@dataclass(frozen=True)
class PrecisionChoice:
    """The precision that will run, and why."""

    precision: Precision
    reason: str


#: ``ipex.optimize`` keyword arguments of each IPEX training backend.
IPEX_OPTIONS: dict[str, dict[str, object]] = {
    "ipex": {},
    "ipex-stock-lstm": {"optimize_lstm": False},
    "ipex-o0": {"level": "O0"},
}


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
    if backend == "ipex-o0":
        return f'IPEX {version}: ipex.optimize(level="O0"), the model left as it is'
    if backend == "ipex-stock-lstm":
        lstm = "stock torch's oneDNN nn.LSTM kept" if kind == "lstm" else f"stock torch {kind}"
        return f"IPEX {version}: ipex.optimize(optimize_lstm=False), {lstm}"
    if kind == "lstm":
        return f"IPEX {version}: ipex.optimize, nn.LSTM swapped for torch_ipex::ipex_lstm"
    return f"IPEX {version}: ipex.optimize (IPEX leaves {kind} recurrences to stock torch)"


def precision_text(precision: Precision) -> str:
    """How ``precision`` trains, in words."""
    return "bf16 (CPU autocast, fp32 master weights)" if precision == "bf16" else "fp32"


def native_bf16(flags: Mapping[str, bool]) -> str | None:
    """The CPU feature that computes bf16 natively (``amx_bf16`` or ``avx512_bf16``), or None."""
    for name in ("amx_bf16", "avx512_bf16"):
        if flags.get(name, False):
            return name
    return None


def choose_precision(
    requested: str,
    flags: Mapping[str, bool] | None = None,
    resumed: Precision | None = None,
) -> PrecisionChoice:
    """Resolve ``train.precision``; ``auto`` reads the CPU's flags (``/proc/cpuinfo``).

    A resumed ``auto`` run keeps the precision it started with (``resumed``), so a
    run continues as it began even on another machine.
    """
    if requested not in TRAIN_PRECISIONS:
        raise UsageError(
            f"train.precision: unknown precision {requested!r}; expected one of "
            + ", ".join(TRAIN_PRECISIONS)
        )
    if requested != "auto":
        return PrecisionChoice(requested, "asked for by train.precision")  # type: ignore[arg-type]
    if resumed is not None:
        return PrecisionChoice(resumed, "auto: the precision this run started with")
    if flags is None:
        from nervana_lstm.platform_info import read_cpu_info

        flags = read_cpu_info().flags
    feature = native_bf16(flags)
    if feature is not None:
        return PrecisionChoice("bf16", f"auto: the CPU computes bf16 natively ({feature})")
    return PrecisionChoice(
        "fp32",
        "auto: the CPU has no native bf16 (neither AMX-BF16 nor AVX512_BF16), "
        "so bf16 would only be emulated",
    )


def apply_backend(
    backend: TrainBackend, model: nn.Module, optimizer: torch.optim.Optimizer, precision: Precision
) -> tuple[nn.Module, torch.optim.Optimizer]:
    """Prepare ``model`` and ``optimizer`` for ``backend``; IPEX returns optimized copies."""
    if backend in IPEX_BACKENDS:
        ipex = backends.import_ipex()  # silences IPEX's import noise, stdout included
        # IPEX's LSTM op has no registered autograd kernel; torch warns on every backward
        # although the gradients match nn.LSTM's (measured), so the warning is noise here.
        warnings.filterwarnings("ignore", message=".*an autograd kernel was not registered")
        model.train()
        with backends.quiet_native_output():
            model, optimizer = ipex.optimize(
                model, optimizer=optimizer, dtype=torch_dtype(precision), **IPEX_OPTIONS[backend]
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
    step: Callable[[], None],
    warmup: int = AUTO_WARMUP,
    repeats: int = AUTO_REPEATS,
    give_up_after: float | None = None,
) -> float:
    """Median wall time of ``step`` over ``repeats`` calls after ``warmup`` untimed calls.

    Every candidate gets the same warm-up, which carries one-time costs (IPEX
    repacks weights and compiles its kernels, oneDNN creates primitives) that
    later steps do not. When the first timed call takes longer than
    ``give_up_after`` seconds the candidate cannot win; that call's time is
    returned without further calls.
    """
    for _ in range(warmup):
        step()
    times: list[float] = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
        if len(times) == 1 and give_up_after is not None and times[0] > give_up_after:
            break
    return statistics.median(times)


@contextlib.contextmanager
def _rng_kept() -> Iterator[None]:
    # The measurement must not change what the real run draws (dropout masks).
    state = torch.get_rng_state()
    try:
        yield
    finally:
        torch.set_rng_state(state)


#: ``measure(backends, give_up_after)``: seconds per training step of each backend, or
#: the reason it could not be measured.
Measure = Callable[[Sequence[TrainBackend], float | None], dict[TrainBackend, float | str]]


def measurement_groups(pool: Sequence[TrainBackend]) -> list[list[TrainBackend]]:
    """The order ``auto`` measures ``pool`` in, as groups measured together.

    Stock oneDNN comes first, since its time lets slower candidates stop early (a
    step :data:`GIVE_UP_FACTOR` times slower than the best so far after the same
    warm-up cannot win). The IPEX variants form one group, measured together in a child process:
    importing IPEX changes stock torch's kernels for the whole process (an fp32
    ``nn.LSTM`` forward took 1.9x as long after the import, measured), so it must
    not happen in a process that may go on to train without it. The unfused
    reference cells come last.
    """
    ordered = sorted(pool, key=AUTO_ORDER.index)
    ipex = [b for b in ordered if b in IPEX_BACKENDS]
    groups: list[list[TrainBackend]] = []
    for name in ordered:
        if name in IPEX_BACKENDS:
            if name == ipex[0]:
                groups.append(ipex)
        else:
            groups.append([name])
    return groups


def choose_backend(
    requested: str,
    measure: Measure | None = None,
    candidates: Sequence[TrainBackend] | None = None,
) -> AccelChoice:
    """Resolve ``train.accel`` to one backend.

    ``measure(backends, give_up_after)`` returns seconds per training step of the
    real model on the real batch shape for each backend (see :func:`time_steps`),
    or why one could not be measured; ``auto`` calls it once per group of
    :func:`measurement_groups`.
    """
    if requested != "auto":
        if requested not in TRAIN_BACKENDS:
            raise UsageError(
                f"train.accel: unknown backend {requested!r}; expected one of " + ", ".join(ACCELS)
            )
        backends.require(requested)
        return AccelChoice(requested, "asked for by train.accel")  # type: ignore[arg-type]
    pool = list(candidates) if candidates is not None else available_backends()
    if not pool:
        raise UsageError("train.accel=auto: no training backend can run here")
    if measure is None or len(pool) == 1:
        return AccelChoice(pool[0], f"the only available backend among {', '.join(pool)}")
    start = time.perf_counter()
    timings: dict[TrainBackend, float] = {}
    failed: dict[TrainBackend, str] = {}
    stopped: set[TrainBackend] = set()
    with _rng_kept():
        for group in measurement_groups(pool):
            fastest = min(timings.values(), default=None)
            limit = None if fastest is None else GIVE_UP_FACTOR * fastest
            for name, result in measure(group, limit).items():
                if isinstance(result, str):
                    failed[name] = result
                    continue
                timings[name] = result
                if limit is not None and result > limit:
                    stopped.add(name)
    seconds = time.perf_counter() - start
    if not timings:
        raise UsageError(
            "train.accel=auto: no backend could be measured: "
            + "; ".join(f"{n}: {why}" for n, why in failed.items())
        )
    best = min(timings, key=timings.__getitem__)
    ranked = ", ".join(
        f"{n} {timings[n] * 1e3:.1f} ms"
        + (" (stopped after one timed step)" if n in stopped else "")
        for n in sorted(timings, key=timings.__getitem__)
    )
    notes = [f"{n} could not be measured ({why})" for n, why in failed.items()]
    missing = [b for b in TRAIN_BACKENDS if b not in pool]
    if missing:
        notes.append(f"not measured: {', '.join(missing)} (unavailable)")
    reason = (
        f"fastest measured training step (median of {AUTO_REPEATS} after {AUTO_WARMUP} warm-up steps "
        f"each): {ranked}" + "".join(f"; {n}" for n in notes) + f"; measuring took {seconds:.1f} s"
    )
    return AccelChoice(best, reason, dict(timings), seconds)
