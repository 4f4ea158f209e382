"""``bench --model``: one trained model end to end, torch against its exported IR, in one run.

Order of work in :func:`run_model_bench`:

1. rebuild the model from its checkpoint (:func:`~nervana_lstm.train.checkpoint.load_trained`);
2. machine info, the runner's overhead, the GEMM peaks at fp32 and bf16;
3. export it into a temp directory with :func:`~nervana_lstm.export.exporter.export_model`:
   f32 weights; int8 where ``nervana_lstm.export.quantize`` exists and the
   export's metric gate accepts it; a stateful IR with a batch of 1;
4. three shapes: throughput (batch 64), latency (batch 1), both over the
   task's sequence length, and streaming (one step per call, the state
   carried); each shape's rows timed round-robin
   (:func:`~nervana_lstm.perf.runner.time_interleaved`) with the rows of their
   own runtime, stock torch first, then OpenVINO, then IPEX (:func:`by_runtime`);
5. before any row is timed its outputs are compared with the torch fp32 model's
   on the same inputs (:data:`TOLERANCES`); a row that differs is an ``error``
   and is not timed;
6. the ratios the targets are stated in (:mod:`~nervana_lstm.perf.model_report`).

Rows are :class:`~nervana_lstm.perf.results.Row` objects in the suite bench's
``results.json`` format, with a ``model`` section added.
"""

from __future__ import annotations

import dataclasses
import gc
import importlib.util
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nervana_lstm.errors import UsageError
from nervana_lstm.perf.harness import one_line
from nervana_lstm.perf.ir_timing import SETTINGS_LADDER, TIMED
from nervana_lstm.perf.model_report import model_ratios
from nervana_lstm.perf.model_variants import (
    IrSource,
    ModelCase,
    ModelVariant,
    build_ipex,
    build_ir,
    build_ir_stream,
    build_torch,
    build_torch_stream,
    make_case,
    model_spec,
)
from nervana_lstm.perf.results import Row
from nervana_lstm.perf.spec import Unavailable, quiet_known_warnings

if TYPE_CHECKING:
    from nervana_lstm.train.checkpoint import Trained

__all__ = [
    "DEFAULT_FILES_STEPS",
    "TOLERANCES",
    "ModelBenchSettings",
    "check_outputs",
    "default_threads",
    "measure_group",
    "run_model_bench",
    "task_steps",
]

#: sequence length for a ``files`` model whose data file cannot be read any more
DEFAULT_FILES_STEPS = 50

#: largest ``max |out - torch fp32| / max(1, max |torch fp32|)`` a row may show
#: before it is timed; int8 is gated by its task metric at export, this only
#: catches a model that computes something else
#: largest output error against torch fp32 per precision. int8 has no output bound: an
#: int8 LSTM runs its input and hidden state on one 8-bit scale, and its logits moved by
#: up to about 0.5 on real text (top-1 agreement 96%) while held-out bpc stayed within
#: 0.1%; its guarantee is the export's metric gate (``nervana_lstm.json``,
#: ``quantization``), and here its outputs must be finite and agree in top-1 class
#: with fp32 torch on most positions (:data:`INT8_MIN_AGREEMENT`).
TOLERANCES: dict[str, float | None] = {"fp32": 1e-4, "bf16": 5e-2, "int8": None}
#: seconds between groups of rows, for the previous runtime's worker threads to park
SETTLE_S = 0.5
#: int8 classification rows: least fraction of positions whose top class matches torch fp32
INT8_MIN_AGREEMENT = 0.8


@dataclass(frozen=True)
class ModelBenchSettings:
    """What ``bench --model`` measures and how long; see the CLI's options."""

    threads: int
    warmup: int = 3
    repeats: int = 30
    time_cap_s: float = 4.0
    batch: int = 64
    seq_len: int | None = None  # None: the task's own length (task_steps)
    ov_settings: bool = False
    peak_size: int = 1024


def default_threads() -> int:
    """Physical cores this process may use (affinity mask and cgroup CPU quota): what torch
    and OpenVINO get when --threads is not given."""
    from nervana_lstm.platform_info import read_cpu_info
    from nervana_lstm.resources import usable_cpus

    cpu = read_cpu_info()
    return max(1, min(cpu.cores, cpu.affinity, usable_cpus()))


def _check_memory(trained: Trained, batch: int, steps: int) -> None:
    """Refuse a --batch and --seq-len whose inputs and activations cannot fit: torch and
    OpenVINO each hold one forward's (:func:`~nervana_lstm.train.budget.stack_call_bytes`)
    and its outputs."""
    from nervana_lstm.resources import check_fits
    from nervana_lstm.train.budget import stack_call_bytes

    m, spec = trained.config.model, trained.spec
    width = m.embedding_dim if spec.input_kind == "tokens" else spec.input_size
    call = stack_call_bytes(
        m.kind, steps, batch, width, m.hidden_size, m.num_layers,
        training=False, bidirectional=m.bidirectional,
    )  # fmt: skip
    outputs = 4 * steps * batch * spec.output_size
    check_fits(
        f"bench --model with N={batch}, T={steps}",
        {"torch": call + outputs, "OpenVINO": call + outputs},
        ["--batch", "--seq-len"],
    )


def task_steps(trained: Trained) -> tuple[int, str]:
    """The sequence length the task trains on, and where it comes from.

    adding: ``T``; copy: ``T + 20``; charlm: ``seq_len``; files: the median
    length of the data file's sequences, or :data:`DEFAULT_FILES_STEPS` when the
    file can no longer be read.
    """
    task = trained.config.task
    opts = task.options
    if task.name == "adding":
        return int(opts.T), "the adding task's T"
    if task.name == "copy":
        return int(opts.T) + 20, "the copy task's T + 20 steps"
    if task.name == "charlm":
        return int(opts.seq_len), "charlm's seq_len"
    from nervana_lstm.data.file_formats import read_sequences

    try:
        data = read_sequences(str(opts.path), opts.target)  # never unpickled here
    except (UsageError, OSError, ValueError) as exc:
        return DEFAULT_FILES_STEPS, f"default {DEFAULT_FILES_STEPS} ({opts.path} unreadable: {exc})"
    median = int(statistics.median(len(s) for s in data.seqs))
    return max(1, median), f"median length of the {len(data.seqs)} sequences in {opts.path}"


def check_outputs(got: dict[str, Any], reference: dict[str, Any], dtype: str) -> dict[str, Any]:
    """Compare a variant's outputs with the torch fp32 reference (the parity gate's measure)."""
    from nervana_lstm.export.parity import parity_error

    shared = sorted(k for k in got if k in reference)
    if not shared:
        raise ValueError(f"no output to compare: got {sorted(got)}, reference {sorted(reference)}")
    errors = {k: parity_error(got[k], reference[k]) for k in shared}
    worst = max(errors.values())
    tolerance = TOLERANCES[dtype]
    check = {
        "max_error": worst,
        "tolerance": tolerance,
        "outputs": shared,
        "against": "torch fp32, fused cells, same inputs",
        "measure": "max |out - ref| / max(1, max |ref|)",
    }
    if tolerance is not None:
        return {**check, "ok": worst <= tolerance}
    import numpy as np

    logits, ref = np.asarray(got["logits"]), np.asarray(reference["logits"])
    ok = bool(np.isfinite(logits).all())
    if ok and ref.ndim >= 2 and ref.shape[-1] > 1 and logits.shape == ref.shape:
        agreement = float((logits.argmax(-1) == ref.argmax(-1)).mean())
        check["top1_agreement"] = agreement
        check["min_top1_agreement"] = INT8_MIN_AGREEMENT
        ok = agreement >= INT8_MIN_AGREEMENT
    return {**check, "ok": ok, "gate": "the export's metric gate, recorded in nervana_lstm.json"}


Planned = tuple[Row, Callable[[], ModelVariant], dict[str, Any]]


def measure_group(
    members: list[Planned], settings: ModelBenchSettings, log: Callable[[str], None]
) -> None:
    """Build each row's variant, check its outputs, then time the passing ones round-robin.

    ``members`` are ``(row, build, reference)``: ``build()`` returns the variant
    or raises :class:`Unavailable`. A row whose outputs differ from
    ``reference`` beyond :data:`TOLERANCES` becomes ``error`` and is not timed.
    """
    from nervana_lstm.perf.runner import pinned_threads, time_interleaved

    built: dict[str, ModelVariant] = {}
    for row, build, reference in members:
        try:
            with pinned_threads(settings.threads):
                mv = build()
                check = check_outputs(mv.outputs(), reference, row.dtype)
        except Unavailable as exc:
            row.fail("n/a", " ".join(str(exc).split()))
            continue
        except Exception as exc:  # a failure is a result too; keep measuring the rest
            row.fail("error", one_line(exc))
            log(f"error {row.id}: {row.reason}")
            continue
        row.proof["check"] = check
        if not check["ok"]:
            if check["tolerance"] is None:
                why = (
                    f"top-1 class agrees with torch fp32 on {check.get('top1_agreement', 0):.0%} "
                    f"of positions (< {INT8_MIN_AGREEMENT:.0%}), or outputs are not finite"
                )
            else:
                why = (
                    f"output differs from torch fp32 by {check['max_error']:.2e} (> "
                    f"{check['tolerance']:g} allowed at {row.dtype})"
                )
            row.fail("error", f"{why}; not timed")
            log(f"error {row.id}: {row.reason}")
            continue
        built[row.id] = mv
    calls = {rid: mv.variant.call for rid, mv in built.items()}
    timings: dict[str, Any] = {}
    kw = {"warmup": settings.warmup, "repeats": settings.repeats, "time_cap_s": settings.time_cap_s}
    with pinned_threads(settings.threads):
        try:
            timings = time_interleaved(calls, **kw)
        except Exception:  # time each alone so that one failing call spares the others
            for rid, fn in calls.items():
                try:
                    timings.update(time_interleaved({rid: fn}, **kw))
                except Exception as exc:
                    rows = {r.id: r for r, _, _ in members}
                    rows[rid].fail("error", one_line(exc))
    for row, _, _ in members:
        if row.id not in timings:
            continue
        row.record(built[row.id].variant, timings[row.id].as_dict())
        log(f"ok    {row.id}: {row.timing['median_ms']:.3f} ms")
    built.clear()
    gc.collect()


def _export_irs(
    checkpoint: Path, tmp: Path, bidirectional: bool, log: Callable[[str], None]
) -> dict[str, IrSource]:
    """Export the three IRs: each value is the directory, or why there is none.

    A refusal (the exporter's UsageError: a gate not passed, a kind it cannot
    quantize) makes the IR's rows ``n/a`` with the reason; any other failure
    makes them ``error``.
    """
    from nervana_lstm.backends import backend_status
    from nervana_lstm.export.exporter import export_model

    status = backend_status("openvino")
    if not status.available:
        missing = Unavailable(f"OpenVINO is unavailable: {status.reason}")
        return {"f32": missing, "int8": missing, "stateful": missing}

    def say(line: str) -> None:
        log("  " + line)

    def export(name: str, **kw: Any) -> IrSource:
        try:
            return export_model(checkpoint, tmp / name, say=say, **kw).out
        except UsageError as exc:
            return Unavailable(f"the {name} export was refused: {exc}")
        except Exception as exc:
            log(f"error: the {name} export failed: {one_line(exc)}")
            return RuntimeError(f"the {name} export failed: {one_line(exc)}")

    irs: dict[str, IrSource] = {"f32": export("f32", precision="fp32")}
    if importlib.util.find_spec("nervana_lstm.export.quantize") is None:
        irs["int8"] = Unavailable(
            "no int8 IR: nervana_lstm.export.quantize (export/quantize.py, NNCF "
            "quantization) is not installed in this build"
        )
    else:
        irs["int8"] = export("int8", precision="int8")
    if bidirectional:
        irs["stateful"] = Unavailable(
            "a bidirectional model reads whole sequences: it cannot stream step by step"
        )
    else:
        irs["stateful"] = export("stateful", precision="fp32", stateful=True, batch=1)
    return irs


#: the order runtimes are timed in; IPEX last, since importing it changes stock torch
RUNTIME_ORDER = ("torch", "openvino", "ipex")


def runtime_of(row: Row) -> str:
    """Which runtime a row's call runs in: ``torch`` (stock), ``openvino`` or ``ipex``."""
    if row.impl.startswith("openvino"):
        return "openvino"
    return "ipex" if row.impl == "ipex" else "torch"


def by_runtime(groups: list[list[Planned]]) -> list[list[Planned]]:
    """Each shape's rows split by runtime, every stock torch group first and IPEX's last.

    Two effects, both measured on the default charlm model (2 threads, AMD EPYC):

    * importing IPEX replaces CPU kernels process-wide: stock torch's fp32 LSTM
      forward went from 9.3 ms to 17.8 ms in the same process once
      ``intel_extension_for_pytorch`` was imported, so the stock rows are timed
      before any IPEX row is built (the first IPEX build imports it);
    * interleaved in one round-robin, torch's and OpenVINO's worker threads
      contend on 2 cores: the f32 IR measured 11.3 ms between torch calls and
      7.1-7.6 ms among IR calls only. So rows are interleaved only with rows of
      their own runtime, each group after a pause (:data:`SETTLE_S`).
    """
    parts: dict[str, list[list[Planned]]] = {name: [] for name in RUNTIME_ORDER}
    for group in groups:
        for name in RUNTIME_ORDER:
            members = [m for m in group if runtime_of(m[0]) == name]
            if members:
                parts[name].append(members)
    return [g for name in RUNTIME_ORDER for g in parts[name]]


def _plan(
    trained: Trained,
    cases: dict[str, ModelCase],
    irs: dict[str, IrSource],
    settings: ModelBenchSettings,
) -> list[list[Planned]]:
    """The groups to measure: one per shape (and per shape again for ``--ov-settings``)."""
    task, t = trained.config.task.name, settings.threads
    directions = 2 if trained.config.model.bidirectional else 1
    groups: list[list[Planned]] = []

    def add(group: list[Planned], case: ModelCase, impl: str, dtype: str, build: Any) -> None:
        spec = model_spec(trained, case, impl, dtype, t)
        # FLOPs of a whole forward pass, also for the streaming rows' one step
        row = Row.for_spec(spec, id=f"{task}/{spec.key}", label=case.label, flop_mode="infer")
        row.flops *= directions
        group.append((row, build, case.reference))

    for key in ("throughput", "latency"):
        case, group = cases[key], []
        for dtype in ("fp32", "bf16"):
            add(group, case, "onednn", dtype, lambda c=case, d=dtype: build_torch(trained, c, d, t))
            add(group, case, "ipex", dtype, lambda c=case, d=dtype: build_ipex(trained, c, d, t))
        for dtype in ("fp32", "bf16", "int8"):
            ir = irs["int8"] if dtype == "int8" else irs["f32"]
            add(
                group,
                case,
                "openvino",
                dtype,
                lambda c=case, d=dtype, p=ir: build_ir(p, trained, c, d, t),
            )
        groups.append(group)
    case, group = cases["stream"], []
    for dtype in ("fp32", "bf16"):
        if directions == 2:
            build = _refuse(str(irs["stateful"]))  # no torch stream for a bidirectional model
        else:
            build = lambda c=case, d=dtype: build_torch_stream(trained, c, d, t)  # noqa: E731
        add(group, case, "onednn", dtype, build)
        add(
            group,
            case,
            "openvino",
            dtype,
            lambda c=case, d=dtype: build_ir_stream(irs["stateful"], trained, c, d, t),
        )
    groups.append(group)
    if settings.ov_settings:
        for key in ("throughput", "latency"):
            case, group = cases[key], []
            for s in SETTINGS_LADDER:
                row_case = dataclasses.replace(case, label=f"IR settings, {case.label}")
                add(
                    group,
                    row_case,
                    f"openvino:{s.name}",
                    "fp32",
                    lambda c=case, s=s: build_ir(
                        irs["f32"], trained, c, "fp32", t, s, f"openvino:{s.name}"
                    ),
                )
            groups.append(group)
    return groups


def _refuse(reason: str) -> Callable[[], ModelVariant]:
    def build() -> ModelVariant:
        raise Unavailable(reason)

    return build


def _stderr_log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_model_bench(
    source: str | Path,
    settings: ModelBenchSettings,
    log: Callable[[str], None] | None = None,
    command: str | None = None,
    quiet_wait: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Measure the model trained in ``source``; return the results document.

    The machine's load is read around each group of rows, as in a suite run
    (:mod:`~nervana_lstm.perf.quiet`); ``quiet_wait`` is what ``--quiet-wait`` found.

    Raises:
        UsageError: ``source`` is not a run directory or a checkpoint.
    """
    from nervana_lstm.export.exporter import graph_spec, resolve_checkpoint
    from nervana_lstm.perf.harness import run_record
    from nervana_lstm.perf.peak import measure_gemm_peak
    from nervana_lstm.perf.quiet import LoadLog, load_section, log_load
    from nervana_lstm.perf.runner import timer_overhead
    from nervana_lstm.train.checkpoint import load_trained

    log = log or _stderr_log
    started = time.time()
    checkpoint = resolve_checkpoint(source)
    trained = load_trained(checkpoint, "fused")
    cfg = trained.config.model
    gspec = graph_spec(trained)
    steps, steps_from = task_steps(trained)
    if settings.seq_len is not None:
        steps, steps_from = settings.seq_len, "--seq-len"
    task = trained.config.task.name
    _check_memory(trained, settings.batch, steps)
    log(
        f"bench --model: {task} {cfg.kind} L={cfg.num_layers} H={cfg.hidden_size} from "
        f"{checkpoint} (step {trained.step}); T={steps} ({steps_from}), {settings.threads} thread(s)"
    )
    phases: dict[str, float] = {}
    mark = time.perf_counter()
    peaks: dict[str, dict[str, Any]] = {}
    repeats = max(3, min(15, settings.repeats))
    for dtype in ("fp32", "bf16"):
        peak = measure_gemm_peak(dtype, settings.threads, settings.peak_size, repeats)
        peaks[f"{dtype}/t{settings.threads}"] = peak.as_dict()
    overhead = timer_overhead()
    phases["peaks_s"] = round(time.perf_counter() - mark, 1)

    with tempfile.TemporaryDirectory(prefix="nervana-lstm-bench-model-") as tmp:
        mark = time.perf_counter()
        log("exporting the IRs (f32, int8, stateful) into a temp directory")
        irs = _export_irs(checkpoint, Path(tmp), cfg.bidirectional, log)
        phases["export_s"] = round(time.perf_counter() - mark, 1)
        mark = time.perf_counter()
        b = settings.batch
        cases = {
            "throughput": make_case(
                trained, gspec, f"throughput: N={b} T={steps}", "infer", b, steps, 1
            ),
            "latency": make_case(trained, gspec, f"latency: N=1 T={steps}", "infer", 1, steps, 2),
            "stream": make_case(
                trained, gspec, "streaming: N=1, one step per call", "stream", 1, steps, 3
            ),
        }
        groups = by_runtime(_plan(trained, cases, irs, settings))
        load = LoadLog()
        with quiet_known_warnings():
            for group in groups:
                # the pause lets the previous group's thread pool park; the CPUs are watched
                with load.group([row for row, _, _ in group], before_s=SETTLE_S):
                    measure_group(group, settings, log)
        load.finish()
        phases["measure_s"] = round(time.perf_counter() - mark, 1)
    rows = [row for group in groups for row, _, _ in group]

    mark = time.perf_counter()
    for dtype in ("fp32", "bf16"):
        key = f"{dtype}/t{settings.threads}"
        late = measure_gemm_peak(dtype, settings.threads, settings.peak_size, repeats).as_dict()
        early = peaks[key]
        best = late if late["gflops"] > early["gflops"] else early
        peaks[key] = {**best, "start_gflops": early["gflops"], "end_gflops": late["gflops"]}
    phases["peaks_s"] += round(time.perf_counter() - mark, 1)
    load_doc = load_section(load, peaks, quiet_wait)
    log_load(load_doc, log)
    _fill_rates(rows, peaks, settings.threads)
    labels = {key: case.label for key, case in cases.items()}
    ratios = model_ratios([r.to_dict() for r in rows], labels)
    return {
        "schema": 1,
        "suite": {
            "name": f"model {task} {cfg.kind}",
            "description": "one trained model: torch (fused, IPEX) against its exported IR",
            "source": str(checkpoint),
        },
        "settings": {
            "warmup": settings.warmup,
            "repeats": settings.repeats,
            "time_cap_s": settings.time_cap_s,
            "max_call_s": None,
            "count": "full",
            "peak_size": settings.peak_size,
            "instances": 1,
            "selection": {"model": str(source), "threads": [settings.threads]},
            "model_bench": asdict(settings),
        },
        **run_record(overhead, peaks, started, phases, command, load_doc),
        "model": {
            "checkpoint": str(checkpoint),
            "step": trained.step,
            "task": task,
            "kind": cfg.kind,
            "hidden_size": cfg.hidden_size,
            "num_layers": cfg.num_layers,
            "bidirectional": cfg.bidirectional,
            "input_kind": trained.spec.input_kind,
            "input_size": trained.spec.input_size,
            "output_size": trained.spec.output_size,
            "parameters": sum(p.numel() for p in trained.model.parameters()),
            "seq_len": steps,
            "seq_len_from": steps_from,
            "labels": labels,
            "irs": {k: "exported" if isinstance(v, Path) else str(v) for k, v in irs.items()},
            "ir_settings": {"name": TIMED.name, "what": TIMED.describe()},
            "tolerances": TOLERANCES,
            "ratios": ratios,
            "notes": _notes(trained, settings),
        },
        "rows": [r.to_dict() for r in rows],
    }


def _notes(trained: Trained, settings: ModelBenchSettings) -> list[str]:
    import os

    import torch

    env = {k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "KMP_BLOCKTIME")}
    return [
        f"torch runs with torch.set_num_threads({settings.threads}) (OpenMP); OpenVINO with "
        f"INFERENCE_NUM_THREADS={settings.threads} (its own thread pool); torch "
        f"{torch.__version__}, thread variables {env}",
        "rows are timed round-robin with the rows of the same shape and runtime only, each "
        f"group after a {SETTLE_S:g} s pause: torch's and OpenVINO's worker threads slowed "
        "each other when interleaved on 2 cores",
        "stock torch rows run first, before IPEX is imported for its rows (last): importing "
        "IPEX replaces CPU kernels process-wide, and made stock torch's fp32 LSTM 1.9x slower",
        "FLOPs count the recurrent stack only (embedding lookups and the head are left out)",
        f"OpenVINO rows: {TIMED.describe()}; --ov-settings times the IR under each setting of "
        "nervana_lstm.perf.ir_timing.SETTINGS_LADDER",
        "streaming rows: one step of one sequence per call; torch passes its state back in, "
        "the stateful IR keeps it in ReadValue/Assign variables",
    ]


def _fill_rates(rows: list[Row], peaks: dict[str, dict[str, Any]], threads: int) -> None:
    for row in rows:
        if row.status != "ok" or row.timing is None:
            continue
        row.gflops = row.flops / (row.timing["median_ms"] / 1e3) / 1e9
        peak = peaks.get(f"{'bf16' if row.dtype == 'int8' else row.dtype}/t{threads}")
        if peak and row.dtype != "int8":
            row.peak_gflops = peak["gflops"]
            row.pct_peak = 100.0 * row.gflops / row.peak_gflops
