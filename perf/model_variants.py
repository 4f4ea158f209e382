"""The ways ``bench --model`` runs one trained model: torch, IPEX and its exported IR.

Each builder returns a :class:`ModelVariant`: the timed ``call`` (inside a
:class:`~nervana_lstm.perf.spec.Variant`, as the suite bench times) and an
``outputs()`` that runs the same call and returns its outputs batch first, so
the bench can compare them with the torch fp32 reference before timing.

==========  ======================================================================
onednn      the checkpoint's :class:`~nervana_lstm.models.SequenceModel` with fused
            cells (oneDNN's fused RNN primitive for an LSTM); ``bf16`` under
            ``torch.autocast("cpu", dtype=torch.bfloat16)``
ipex        ``ipex.optimize(model, dtype=...)`` of the same model; bf16 under autocast
openvino    the exported IR: f32 weights compiled at ``INFERENCE_PRECISION_HINT``
            f32 (``fp32``) or bf16 (``bf16``); the int8 IR at the f32 hint (``int8``);
            compiled and called as :mod:`~nervana_lstm.perf.ir_timing` says
==========  ======================================================================

Modes: ``infer`` is one forward over a whole batch of sequences; ``stream`` is
one step of one sequence, the state carried from call to call: torch passes it
back in (``model(x_t, state)``), a stateful IR keeps it inside (``ReadValue`` /
``Assign``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nervana_lstm.errors import UsageError
from nervana_lstm.perf.ir_timing import (
    TIMED,
    IrSettings,
    compile_for_timing,
    compiled_properties,
    feed_call,
)
from nervana_lstm.perf.spec import Spec, Unavailable, Variant

if TYPE_CHECKING:
    import torch

    from nervana_lstm.export.graph import GraphSpec
    from nervana_lstm.train.checkpoint import Trained

__all__ = [
    "STREAM_CHECK_STEPS",
    "IrSource",
    "ModelCase",
    "ModelVariant",
    "build_ipex",
    "build_ir",
    "build_ir_stream",
    "build_torch",
    "build_torch_stream",
    "make_case",
    "model_spec",
    "task_inputs",
]

#: an exported IR's directory, or why there is none: :class:`Unavailable` where the
#: export was refused or cannot exist here, another exception where it failed
IrSource = Path | Exception

#: steps a streaming variant is checked over against the full-sequence output
STREAM_CHECK_STEPS = 6


@dataclass
class ModelCase:
    """One timed shape: the inputs every variant gets and the torch fp32 reference.

    ``x`` is time-major for torch ((T, N) ids or (T, N, F) features); ``feed`` is
    what the non-stateful IR takes, batch first (``x``, ``lengths`` at full
    length, zero ``h_0``/``c_0`` where it has them). ``reference`` holds the
    torch fp32 outputs, batch first: ``logits`` and ``h_n`` for ``infer``; for
    ``stream`` the logits of the first :data:`STREAM_CHECK_STEPS` steps, one per
    step, as (N, K, O).
    """

    label: str
    mode: str  # "infer" | "stream"
    batch: int
    steps: int
    x: Any
    feed: dict[str, np.ndarray]
    reference: dict[str, np.ndarray]


@dataclass
class ModelVariant:
    """A built variant and the function that returns what its timed call computes."""

    variant: Variant
    outputs: Callable[[], dict[str, np.ndarray]]


def model_spec(trained: Trained, case: ModelCase, impl: str, dtype: str, threads: int) -> Spec:
    """The bench spec of one row: the model's kind and sizes, the case's shape (T=1 streaming)."""
    cfg = trained.config.model
    rnn_input = (
        cfg.embedding_dim if trained.spec.input_kind == "tokens" else trained.spec.input_size
    )
    return Spec(
        kind=cfg.kind,
        impl=impl,
        mode=case.mode,
        dtype=dtype,
        threads=threads,
        seq_len=1 if case.mode == "stream" else case.steps,
        batch=case.batch,
        input_size=rnn_input,
        hidden_size=cfg.hidden_size,
        num_layers=cfg.num_layers,
    )


def _named_torch(out: tuple[Any, Any], per_step: bool) -> dict[str, np.ndarray]:
    """``model(x)``'s ``(logits, state)`` as batch-first float arrays ``logits``, ``h_n``."""
    logits, state = out
    h = state[0] if isinstance(state, tuple) else state  # (L*D, N, H)
    logits = logits.float().transpose(0, 1) if per_step else logits.float()
    return {"logits": logits.numpy(), "h_n": h.float().transpose(0, 1).numpy()}


def task_inputs(trained: Trained, batch: int, steps: int, seed: int) -> torch.Tensor | None:
    """``batch`` sequences of ``steps`` steps from the task's own training data, time-major.

    A model is timed and checked on the data it was made for: an int8 model is
    calibrated on that data and is only promised to keep the task's metric
    there (random tokens drive its quantized state out of the calibrated
    range). None when the data cannot be rebuilt; the caller then draws random
    inputs. Consecutive training batches are joined to reach ``steps``; a
    ``files`` task takes its sequences of at least ``steps`` steps, cut to ``steps``.
    """
    import torch

    from nervana_lstm.export.quantize import rebuild_task

    try:
        task = rebuild_task(trained)
    except UsageError:
        return None
    if trained.config.task.name == "files":
        long_enough = [s for s in task.seqs if len(s) >= steps]
        if not long_enough:
            return None
        picks = [long_enough[i % len(long_enough)][:steps] for i in range(batch)]
        return torch.stack(picks, 1)  # (T, N, F)
    pieces, have, step = [], 0, seed
    while have < steps:
        x = task.train_batch(step, batch).x  # (T', N[, F])
        pieces.append(x)
        have += x.shape[0]
        step += 1
    return torch.cat(pieces)[:steps]


def make_case(
    trained: Trained, gspec: GraphSpec, label: str, mode: str, batch: int, steps: int, seed: int
) -> ModelCase:
    """``batch`` sequences of ``steps`` steps (the task's data, else seeded random) and the
    torch fp32 reference."""
    import torch

    x = task_inputs(trained, batch, steps, seed)
    if x is None:
        gen = torch.Generator().manual_seed(seed)
        spec = trained.spec
        if spec.input_kind == "tokens":
            # the last id is the unknown character, never fed in training or sampling
            x = torch.randint(0, max(spec.input_size - 1, 1), (steps, batch), generator=gen)
        else:
            x = torch.randn(steps, batch, spec.input_size, generator=gen)  # (T, N, F)
    feed = {"x": np.ascontiguousarray(x.transpose(0, 1).numpy())}  # batch first
    if gspec.lengths:
        feed["lengths"] = np.full(batch, steps, dtype=np.int64)
    if gspec.state_inputs:
        rows = gspec.num_layers * gspec.directions
        for name in gspec.state_names:
            feed[f"{name}_0"] = np.zeros((batch, rows, gspec.hidden_size), np.float32)
    model = trained.model
    per_step = gspec.per_step
    with torch.no_grad():
        if mode == "infer":
            reference = _named_torch(model(x), per_step)
        else:
            k = min(STREAM_CHECK_STEPS, steps)
            if per_step:
                logits = model(x[:k])[0].transpose(0, 1)  # (N, K, O)
            else:  # the logits after each prefix: what a stream returns step by step
                logits = torch.stack([model(x[: i + 1])[0] for i in range(k)], dim=1)
            reference = {"logits": logits.float().numpy()}
    return ModelCase(label, mode, batch, steps, x, feed, reference)


# --------------------------------------------------------------------------- torch


def _torch_infer(
    model: torch.nn.Module, case: ModelCase, dtype: str, per_step: bool
) -> tuple[Callable[[], object], Callable[[], dict[str, np.ndarray]]]:
    import torch

    from nervana_lstm.precision import autocast

    x = case.x

    def call() -> tuple[Any, Any]:
        with torch.no_grad(), autocast(dtype):
            return model(x)

    return call, lambda: _named_torch(call(), per_step)


def _torch_backend(kind: str) -> str:
    return {
        "lstm": "torch fused cells: oneDNN fused RNN primitive",
        "dglstm": "torch fused DG-LSTM: hoisted input GEMM, one recurrent GEMM per step",
    }.get(kind, "torch fused cells: ATen per-step kernels (no oneDNN path for this kind)")


def build_torch(trained: Trained, case: ModelCase, dtype: str, threads: int) -> ModelVariant:
    """The checkpoint's model with fused cells, fp32 or bf16 autocast."""
    spec = model_spec(trained, case, "onednn", dtype, threads)
    call, outputs = _torch_infer(trained.model, case, dtype, trained.model.per_step)
    notes = ["bf16 by torch.autocast, fp32 weights"] if dtype == "bf16" else []
    return ModelVariant(Variant(spec, call, _torch_backend(spec.kind), notes=notes), outputs)


def build_ipex(trained: Trained, case: ModelCase, dtype: str, threads: int) -> ModelVariant:
    """``ipex.optimize`` of the model (a copy), fp32 or bf16 weights; Unavailable without IPEX."""
    import torch

    from nervana_lstm.backends import BackendUnavailable, import_ipex, quiet_native_output
    from nervana_lstm.precision import torch_dtype

    spec = model_spec(trained, case, "ipex", dtype, threads)
    try:
        ipex = import_ipex()
    except BackendUnavailable as exc:
        raise Unavailable(str(exc)) from exc
    t0 = time.perf_counter()
    with quiet_native_output():
        model = ipex.optimize(trained.model.eval(), dtype=torch_dtype(dtype), inplace=False)
    build_s = time.perf_counter() - t0
    call, outputs = _torch_infer(model, case, dtype, trained.model.per_step)
    with quiet_native_output(), torch.no_grad():
        call()  # IPEX's first call prints kernel notices
    swapped = [type(m).__name__ for m in model.modules() if "ipex" in type(m).__module__]
    backend = (
        f"IPEX ({', '.join(sorted(set(swapped)))})" if swapped else "torch after ipex.optimize"
    )
    notes = [] if swapped else ["ipex.optimize replaced no module: the model runs as torch's"]
    return ModelVariant(Variant(spec, call, backend, build_s=build_s, notes=notes), outputs)


def build_torch_stream(trained: Trained, case: ModelCase, dtype: str, threads: int) -> ModelVariant:
    """One step per call, the state passed back in: ``logits, state = model(x_t, state)``."""
    import torch

    from nervana_lstm.precision import autocast

    spec = model_spec(trained, case, "onednn", dtype, threads)
    model, per_step = trained.model, trained.model.per_step
    steps = [case.x[t : t + 1] for t in range(case.steps)]  # (1, N[, F]) each
    held: dict[str, Any] = {"state": None, "t": 0}

    def call() -> Any:
        t = held["t"]
        held["t"] = (t + 1) % len(steps)
        with torch.no_grad(), autocast(dtype):
            logits, held["state"] = model(steps[t], held["state"])
        return logits

    def outputs() -> dict[str, np.ndarray]:
        held.update(state=None, t=0)
        got = [call() for _ in range(min(STREAM_CHECK_STEPS, case.steps))]
        held.update(state=None, t=0)
        per = [(g[-1] if per_step else g).float().numpy() for g in got]  # (N, O) each
        return {"logits": np.stack(per, axis=1)}

    backend = _torch_backend(spec.kind) + ", state carried by the caller"
    return ModelVariant(Variant(spec, call, backend), outputs)


# --------------------------------------------------------------------------- OpenVINO


def _precision_hint(dtype: str) -> str:
    return "bf16" if dtype == "bf16" else "f32"  # int8 IR: only NNCF's layers run in 8 bits


def _compile(
    ir: IrSource, dtype: str, threads: int, settings: IrSettings, feed: dict[str, np.ndarray]
) -> tuple[Any, dict[str, Any], float]:
    """Read and compile an exported IR; Unavailable when it was not exported or bf16 is absent."""
    if isinstance(ir, Exception):  # why this IR was not exported: Unavailable, or a failure
        raise ir
    import openvino as ov

    from nervana_lstm.export.convert import precision_supported, runtime_summary
    from nervana_lstm.export.metadata import MODEL_FILE

    hint = _precision_hint(dtype)
    ok, why = precision_supported(hint)
    if not ok:
        raise Unavailable(str(why))
    core = ov.Core()
    t0 = time.perf_counter()
    model = core.read_model(str(ir / MODEL_FILE))
    compiled = compile_for_timing(model, hint, threads, settings, feed, core)
    build_s = time.perf_counter() - t0
    summary = runtime_summary(compiled, skip=("Const",))
    seq = sorted(
        {p for k, v in summary.items() if k in ("RNNSeq", "TensorIterator") for p in v.split("/")}
    )
    proof = {
        "layers": summary,
        "sequence_precision": ",".join(seq) or "?",
        "precision_hint": hint,
        "compiled": compiled_properties(compiled),
        "settings": {"name": settings.name, "what": settings.describe()},
        "ir": str(ir.name),
    }
    if dtype == "int8" and not any(q in v for v in summary.values() for q in ("u8", "i8")):
        raise Unavailable(
            f"the int8 IR runs no layer in 8 bits here (runtime precisions {summary}); "
            "timing it as int8 would be timing f32"
        )
    return compiled, proof, build_s


def build_ir(
    ir: IrSource,
    trained: Trained,
    case: ModelCase,
    dtype: str,
    threads: int,
    settings: IrSettings = TIMED,
    impl: str = "openvino",
) -> ModelVariant:
    """The exported IR on one reused infer request; ``ir`` is its directory or why there is none."""
    spec = model_spec(trained, case, impl, dtype, threads)
    compiled, proof, build_s = _compile(ir, dtype, threads, settings, case.feed)
    request = compiled.create_infer_request()
    call = feed_call(request, case.feed, settings)
    names = {p.get_any_name() for p in compiled.outputs}

    def outputs() -> dict[str, np.ndarray]:
        call()
        return {n: np.array(request.get_tensor(n).data) for n in ("logits", "h_n") if n in names}

    backend = f"OpenVINO {proof['sequence_precision']} at hint {proof['precision_hint']}"
    notes = [f"IR compiled with {settings.describe()}"]
    if "lengths" in case.feed:
        notes.append("the IR takes lengths (all at full length); torch runs without them")
    if dtype == "int8":
        notes += _int8_notes(Path(ir))  # type: ignore[arg-type]  # _compile raised if not a Path
    variant = Variant(spec, call, backend, build_s=build_s, proof=proof, notes=notes)
    return ModelVariant(variant, outputs)


def _int8_notes(directory: Path) -> list[str]:
    """What the int8 export says about its recurrence: int8, or kept in float and why."""
    from nervana_lstm.export.metadata import read_meta

    quantization = read_meta(directory).quantization or {}
    if quantization.get("recurrence") == "int8":
        return []
    return [
        "the recurrence runs in float in this int8 IR, only the other layers in 8 bits: "
        + "; ".join(n for n in quantization.get("notes", []) if "float" in n)
    ]


def build_ir_stream(
    ir: IrSource, trained: Trained, case: ModelCase, dtype: str, threads: int
) -> ModelVariant:
    """A stateful IR (batch fixed) fed one step per call; its state stays inside the request."""
    import openvino as ov

    spec = model_spec(trained, case, "openvino", dtype, threads)
    first = {"x": np.ascontiguousarray(case.feed["x"][:, :1])}
    compiled, proof, build_s = _compile(ir, dtype, threads, TIMED, first)
    request = compiled.create_infer_request()
    per_step = trained.model.per_step
    arrays = [np.ascontiguousarray(case.feed["x"][:, t : t + 1]) for t in range(case.steps)]
    tensors = [ov.Tensor(a, shared_memory=True) for a in arrays]  # (N, 1[, F]) each, zero copy
    held = {"t": 0}

    def call(_keep: list[np.ndarray] = arrays) -> object:  # _keep: the shared memory
        t = held["t"]
        held["t"] = (t + 1) % len(tensors)
        request.set_tensor("x", tensors[t])
        return request.infer(share_outputs=True)

    def outputs() -> dict[str, np.ndarray]:
        request.reset_state()
        held["t"] = 0
        per = []
        for _ in range(min(STREAM_CHECK_STEPS, case.steps)):
            call()
            logits = np.array(request.get_tensor("logits").data)
            per.append(logits[:, -1] if per_step else logits)  # (N, O)
        request.reset_state()
        held["t"] = 0
        return {"logits": np.stack(per, axis=1)}

    backend = f"OpenVINO stateful {proof['sequence_precision']} at hint {proof['precision_hint']}"
    notes = [
        f"stateful IR (ReadValue/Assign), batch {case.batch}; compiled with {TIMED.describe()}"
    ]
    variant = Variant(spec, call, backend, build_s=build_s, proof=proof, notes=notes)
    return ModelVariant(variant, outputs)
