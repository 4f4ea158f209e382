"""int8 weights and activations for an exported model, calibrated and gated on the task's data.

:func:`quantize_model` is what ``nervana-lstm export --precision int8`` runs:

1. rebuild the run's task from its saved config (``files`` reads the user's data
   file again; charlm reads its corpus and must give the checkpoint's vocabulary);
2. calibrate NNCF's post-training quantization on the task's own training
   batches, in the order training saw them. A charlm IR takes the recurrent
   state as input (``h_0``/``c_0``); each calibration batch carries the state
   the fp32 model reached at the end of the previous batch, as in training, so
   the quantizers of the state inputs see real ranges (zero states alone gave
   errors near 1.0);
3. evaluate the fp32 IR and the int8 IR, both compiled with
   ``INFERENCE_PRECISION_HINT=f32``, on the task's held-out split with the
   training loop's own :func:`~nervana_lstm.train.loop.evaluate` (charlm carries
   the state across held-out batches and zeroes it where a batch says
   ``reset``), through :class:`CompiledAsTorch`;
4. where the int8 rnn/lstm sequence ops cost more than ``max_metric_drop``,
   quantize again with them left in float (what
   ``nncf.quantize_with_accuracy_control`` would do: return the costliest
   layers to float; it raised inside NNCF 3.4 on these graphs), and say so;
5. refuse (:func:`metric_gate`) an int8 model whose headline metric is worse
   than fp32's by more than ``max_metric_drop``, relative to the fp32 figure::

       drop = (int8 - fp32) / |fp32|     lower is better (bpc, mse, ce)
       drop = (fp32 - int8) / |fp32|     higher is better (accuracy)

6. compile the int8 IR and record the precision each layer type runs in (the CPU
   plugin's ``RNNSeq`` is a sequence op), so the metadata says what really ran.
   NNCF does not quantize a ``GRUSequence`` with ``linear_before_reset`` (what a
   torch GRU is), nor (NNCF 3.4) an ``RNNSequence``: their recurrence stays float, and the
   notes say so.

The CPU plugin runs an int8 LSTM with one quantization range for its input and
its hidden state; :func:`cover_state_range` gives both quantizers that range.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nervana_lstm.errors import UsageError
from nervana_lstm.export.graph import SEQUENCE_OPS

if TYPE_CHECKING:
    import openvino as ov
    import torch

    from nervana_lstm.config import RunConfig
    from nervana_lstm.data.base import Task
    from nervana_lstm.export.graph import GraphSpec
    from nervana_lstm.train.checkpoint import Trained

__all__ = [
    "CALIBRATION_SEQUENCES",
    "CompiledAsTorch",
    "calibration_samples",
    "cover_state_range",
    "evaluate_ir",
    "headline_metric",
    "metric_gate",
    "quantize_model",
    "rebuild_task",
    "relative_drop",
]

#: sequences NNCF calibrates on (whole training batches, at least one)
CALIBRATION_SEQUENCES = 256
#: the CPU plugin's name for a sequence op (RNN/LSTM/GRUSequence) in the runtime model
_SEQ_LAYER = "RNNSeq"
_INT8 = ("u8", "i8")


def headline_metric(task_name: str, target: str) -> tuple[str, bool]:
    """The task's headline figure and whether higher is better.

    charlm ``bpc``, adding ``mse``, copy ``ce``, files ``accuracy`` when it
    classifies, ``mse`` when it regresses.
    """
    if task_name == "charlm":
        return "bpc", False
    if task_name == "adding":
        return "mse", False
    if task_name == "copy":
        return "ce", False
    if task_name == "files":
        return ("accuracy", True) if target == "classify_last" else ("mse", False)
    raise UsageError(f"no int8 metric for task {task_name!r}; expected adding, copy, charlm, files")


def relative_drop(fp32: float, int8: float, *, higher_is_better: bool) -> float:
    """How much worse ``int8`` is than ``fp32``, relative to ``|fp32|`` (module docstring).

    Below zero when int8 scored better; infinite when a figure is not finite, or
    when ``fp32 == 0`` and int8 is worse.
    """
    worse = (fp32 - int8) if higher_is_better else (int8 - fp32)
    if not (math.isfinite(fp32) and math.isfinite(int8)):
        return math.inf
    if fp32 == 0:
        return 0.0 if worse <= 0 else math.inf
    return worse / abs(fp32)


def metric_gate(
    name: str, fp32: float, int8: float, *, higher_is_better: bool, max_metric_drop: float
) -> float:
    """:func:`relative_drop`, or a UsageError printing both figures when it exceeds the budget."""
    drop = relative_drop(fp32, int8, higher_is_better=higher_is_better)
    if drop > max_metric_drop:
        direction = "higher" if higher_is_better else "lower"
        raise UsageError(
            f"the int8 model scores {name} {int8:.6g} against {fp32:.6g} for fp32 "
            f"({direction} is better): {drop:.2%} worse, more than the {max_metric_drop:.2%} "
            "allowed; raise --max-metric-drop to publish it anyway, or export fp32/fp16"
        )
    return drop


def rebuild_task(trained: Trained, *, allow_pickle: bool = False) -> Task:
    """The run's task from its saved config; UsageError when its data is gone or changed.

    ``allow_pickle`` lets a ``files`` task's ragged NPZ be unpickled (a file you trust).
    """
    from nervana_lstm.data.registry import make_task

    cfg = trained.config.task
    options = dict(cfg.options)
    if cfg.name == "files":
        path = Path(str(options.get("path", "")))
        if not path.is_file():
            raise UsageError(
                f"int8 export calibrates and evaluates on the run's training data, and the "
                f"data file {str(path)!r} named in its config is gone; expected it at "
                f"{path.resolve()} (put it back there, or export fp32/fp16)"
            )
    try:
        task = make_task(cfg.name, allow_pickle=allow_pickle, **options)
    except UsageError as exc:
        raise UsageError(
            f"int8 export calibrates and evaluates on the run's training data, which could "
            f"not be rebuilt from its config: {exc}"
        ) from None
    if trained.vocab is not None and list(task.vocab.chars) != list(trained.vocab.chars):
        raise UsageError(
            f"the charlm corpus {options.get('corpus')!r} no longer gives the vocabulary "
            f"the model was trained on ({trained.vocab.size} ids in the checkpoint, "
            f"{task.vocab.size} from the corpus now); int8 export needs the training text"
        )
    if task.spec.input_size != trained.spec.input_size or (
        task.spec.output_size != trained.spec.output_size
    ):
        raise UsageError(
            f"the {cfg.name} data now has {task.spec.input_size} inputs and "
            f"{task.spec.output_size} outputs; the model was trained on "
            f"{trained.spec.input_size} and {trained.spec.output_size}"
        )
    return task


def _tensor_to_ir(value: torch.Tensor) -> np.ndarray:
    """A time-major torch state (L*D, N, H) as the IR's batch-first (N, L*D, H)."""
    return np.ascontiguousarray(value.detach().float().transpose(0, 1).numpy())


class CompiledAsTorch:
    """A compiled IR called like the torch ``SequenceModel``, for the training loop's code.

    ``model(x, state, lengths) -> (logits, state)`` on time-major torch tensors:
    ``x`` (T, N) or (T, N, F); ``state`` None (zeros), ``h`` or ``(h, c)``, each
    (L*D, N, H); logits (T, N, O) for per-step targets, else (N, O). The state
    comes back only where the IR takes it as input (charlm), else None.
    """

    def __init__(self, compiled: ov.CompiledModel, spec: GraphSpec) -> None:
        self.compiled, self.spec = compiled, spec
        self.request = compiled.create_infer_request()
        self.names = {p.get_any_name() for p in compiled.outputs}

    def eval(self) -> CompiledAsTorch:
        return self

    def train(self, mode: bool = True) -> CompiledAsTorch:
        return self

    def feed(
        self, x: torch.Tensor, state: Any = None, lengths: torch.Tensor | None = None
    ) -> dict[str, np.ndarray]:
        """The IR's inputs for a time-major batch (batch first, as the IR takes them)."""
        spec = self.spec
        x_np = np.ascontiguousarray(x.transpose(0, 1).numpy())
        feed: dict[str, np.ndarray] = {"x": x_np}
        n, t = x_np.shape[0], x_np.shape[1]
        if spec.lengths:
            feed["lengths"] = (
                np.full(n, t, np.int64) if lengths is None else lengths.numpy().astype(np.int64)
            )
        if spec.state_inputs:
            rows = spec.num_layers * spec.directions
            parts = state if isinstance(state, tuple | list) else (state,)
            for i, s in enumerate(spec.state_names):
                given = parts[i] if state is not None else None
                feed[f"{s}_0"] = (
                    np.zeros((n, rows, spec.hidden_size), np.float32)
                    if given is None
                    else _tensor_to_ir(given)
                )
        return feed

    def __call__(
        self, x: torch.Tensor, state: Any = None, lengths: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, Any]:
        import torch

        out = {
            p.get_any_name(): np.array(v)
            for p, v in self.request.infer(self.feed(x, state, lengths)).items()
        }
        logits = torch.from_numpy(out["logits"])
        if self.spec.per_step:
            logits = logits.transpose(0, 1)
        if not self.spec.state_inputs:
            return logits, None
        finals = tuple(
            torch.from_numpy(out[f"{s}_n"]).transpose(0, 1).contiguous()
            for s in self.spec.state_names
            if f"{s}_n" in out
        )
        return logits, finals[0] if len(finals) == 1 else finals


def calibration_samples(
    task: Task, fp32: CompiledAsTorch, batch_size: int, sequences: int = CALIBRATION_SEQUENCES
) -> tuple[list[dict[str, np.ndarray]], dict[str, Any]]:
    """NNCF inputs from the task's first training batches, and a description of them.

    A stateful task's batches follow one another as in training; each carries
    the state the fp32 IR reached on the batch before (zeroed where ``reset``).
    """
    from nervana_lstm.train.progress import reset_rows

    stateful = fp32.spec.state_inputs
    # a stateful task needs two batches at least, or no calibration state is carried
    batches = max(2 if stateful else 1, math.ceil(sequences / batch_size))
    samples: list[dict[str, np.ndarray]] = []
    state: Any = None
    count = 0
    for step in range(batches):
        batch = task.train_batch(step, batch_size)
        if stateful:
            state = reset_rows(state, batch.reset)
        samples.append(fp32.feed(batch.x, state, batch.lengths))
        if stateful:
            _, state = fp32(batch.x, state, batch.lengths)
        count += int(batch.x.shape[1])
    info = {
        "source": "training batches 0.." + str(batches - 1),
        "batches": batches,
        "batch_size": batch_size,
        "sequences": count,
        "states": "carried from batch to batch by the fp32 IR" if stateful else "none (zeros)",
    }
    return samples, info


def _fp32_eval_config(cfg: RunConfig) -> RunConfig:
    """The run's config with fp32 evaluation (the IR's hint decides the arithmetic)."""
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"precision": "fp32"})})


def evaluate_ir(
    compiled: ov.CompiledModel, spec: GraphSpec, task: Task, cfg: RunConfig
) -> dict[str, float]:
    """The training loop's held-out figures for a compiled IR."""
    from nervana_lstm.train.loop import evaluate

    return evaluate(CompiledAsTorch(compiled, spec), task, _fp32_eval_config(cfg))  # type: ignore[arg-type]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """NNCF draws progress bars on stdout and logs at INFO; the export prints its own lines."""
    import nncf

    nncf.set_log_level(logging.ERROR)
    with contextlib.redirect_stdout(io.StringIO()):
        yield


def _sequence_quantizers(model: ov.Model) -> list[Any]:
    """The ``FakeQuantize`` ops that feed a sequence op's ``X`` or ``H`` input."""
    found = []
    for op in model.get_ordered_ops():
        if op.get_type_name() != "FakeQuantize":
            continue
        targets = op.output(0).get_target_inputs()
        if any(
            t.get_node().get_type_name().endswith("Sequence") and t.get_index() <= 1
            for t in targets
        ):
            found.append(op)
    return found


def cover_state_range(model: ov.Model) -> list[tuple[float, float]]:
    """Give the quantizers of each sequence op's ``X`` and ``H`` one range that holds [-1, 1].

    The CPU plugin runs an int8 sequence op with one scale and shift for the
    input and the hidden state together (oneDNN's int8 RNN has a single data
    scale). NNCF calibrates each input alone: the input of the adding task
    spans [0, 1] and a zero initial state spans nothing, so ``h``, which spans
    (-1, 1) as ``o * tanh(c)``, was clipped and the outputs were wrong (MSE 1.0
    against 0.17). Each layer's two quantizers get the union of their ranges
    and [-1, 1]. The cell state ``c`` stays float in the int8 op, and its
    quantizer keeps its own range (it spans far more than ``h``: widening ``h``
    to it cost bpc). Returns the ranges set, one per sequence op.
    """
    import openvino.opset13 as ops

    by_seq: dict[str, list[Any]] = {}
    for fq in _sequence_quantizers(model):
        for t in fq.output(0).get_target_inputs():
            node = t.get_node()
            if node.get_type_name().endswith("Sequence") and t.get_index() <= 1:
                by_seq.setdefault(node.get_friendly_name(), []).append(fq)
    ranges = []
    for fqs in by_seq.values():
        lo, hi = -1.0, 1.0
        for fq in fqs:
            lo = min(lo, float(fq.input_value(1).get_node().get_data().min()))
            hi = max(hi, float(fq.input_value(2).get_node().get_data().max()))
        low, high = np.array(lo, np.float32), np.array(hi, np.float32)
        for fq in fqs:
            for port, value in zip(range(1, 5), (low, high, low, high), strict=True):
                shape = fq.input_value(port).get_shape()
                fq.input(port).replace_source_output(
                    ops.constant(np.full(shape, value, np.float32)).output(0)
                )
        ranges.append((lo, hi))
    return ranges


def _nncf_quantize(
    model: ov.Model,
    samples: list[dict[str, np.ndarray]],
    spec: GraphSpec,
    float_ops: tuple[str, ...],
) -> tuple[ov.Model, list[tuple[float, float]]]:
    """``nncf.quantize`` on ``samples`` with ``float_ops`` left alone; the model and its ranges."""
    import nncf

    from nervana_lstm.backends import dist_version

    try:
        with _quiet():
            quantized = nncf.quantize(
                model.clone(),
                nncf.Dataset(samples),
                subset_size=len(samples),
                # the embedding's Gather: NNCF would move the sequence op's input quantizer
                # onto the embedding table, and the CPU plugin then runs the op in f32
                ignored_scope=nncf.IgnoredScope(types=["Gather", *float_ops]),
            )
    except Exception as exc:  # NNCF raises its own internal errors on graphs it cannot read
        raise UsageError(
            f"NNCF {dist_version('nncf')} could not quantize the {spec.kind} graph "
            f"({type(exc).__name__}: {exc}); export it as fp32 or fp16"
        ) from None
    ranges = cover_state_range(quantized)
    cover_hidden_outputs(quantized)
    return quantized, ranges


#: ops that move or select values without changing them
_VIEW_OPS = frozenset(
    {"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Concat", "Gather", "Slice", "StridedSlice",
     "ReverseSequence", "VariadicSplit", "Split"}
)  # fmt: skip


def _from_recurrence(output: Any) -> bool:
    """Whether ``output`` is a recurrent layer's ``h``, possibly moved or selected."""
    node = output.get_node()
    while node.get_type_name() in _VIEW_OPS:
        node = node.input_value(0).get_node()
    kind = node.get_type_name()
    return kind.endswith("Sequence") or kind == "TensorIterator"


def cover_hidden_outputs(model: ov.Model) -> int:
    """Widen the quantizers of recurrent outputs (``h``, read by the head) to hold [-1, 1].

    ``h = o * tanh(c)`` always lies in [-1, 1], but calibration sees only the
    part of that range the training text drives it to. An input unlike the
    calibration data (random tokens, for instance) then has its ``h`` clipped
    before the head, and logits were off by 0.7 of their magnitude on the
    default charlm model. Quantizers of a sequence op's own ``X``/``H`` inputs are
    set by :func:`cover_state_range`; this covers the others. Returns how many
    quantizers were widened.
    """
    import openvino.opset13 as ops

    widened = 0
    covered = {fq.get_friendly_name() for fq in _sequence_quantizers(model)}
    for fq in model.get_ordered_ops():
        if fq.get_type_name() != "FakeQuantize" or fq.get_friendly_name() in covered:
            continue
        if not _from_recurrence(fq.input_value(0)):
            continue
        for lo_port, hi_port in ((1, 2), (3, 4)):
            lo = fq.input_value(lo_port).get_node().get_data()
            hi = fq.input_value(hi_port).get_node().get_data()
            fq.input(lo_port).replace_source_output(
                ops.constant(np.minimum(lo, -1.0).astype(np.float32)).output(0)
            )
            fq.input(hi_port).replace_source_output(
                ops.constant(np.maximum(hi, 1.0).astype(np.float32)).output(0)
            )
        widened += 1
    return widened


def _quantized_bodies(model: ov.Model) -> dict[str, bool]:
    """TensorIterator name -> whether its body holds a FakeQuantize (DG-LSTM layers)."""
    found = {}
    for op in model.get_ordered_ops():
        if op.get_type_name() == "TensorIterator":
            body = op.get_function()
            found[op.get_friendly_name()] = any(
                b.get_type_name() == "FakeQuantize" for b in body.get_ordered_ops()
            )
    return found


def quantize_model(
    model: ov.Model,
    trained: Trained,
    spec: GraphSpec,
    *,
    max_metric_drop: float,
    say: Callable[[str], object],
    allow_pickle: bool = False,
) -> tuple[ov.Model, dict[str, Any]]:
    """The int8 model and its figures; see the module docstring.

    Returns:
        ``(int8 model, quantization)``; ``quantization`` holds ``metric``,
        ``fp32``, ``int8``, ``higher_is_better``, ``drop``, ``max_metric_drop``,
        ``method``, ``calibration``, ``runtime_precisions`` (layer type ->
        precision in the compiled int8 model), ``recurrence`` and ``notes``.

    Raises:
        UsageError: the training data is gone, NNCF is missing, or the int8
        metric is worse than ``max_metric_drop`` allows.
    """
    from nervana_lstm.backends import dist_version
    from nervana_lstm.export.convert import compile_rnn, runtime_summary

    if dist_version("nncf") is None:
        raise UsageError("int8 export needs NNCF (pip install nncf); it is not installed")
    import openvino as ov

    from nervana_lstm.backends import quiet_native_output

    with quiet_native_output():  # NNCF's torch probe prints a CUDA notice on CPU-only hosts
        import nncf  # noqa: F401

    cfg = trained.config
    metric, higher = headline_metric(cfg.task.name, trained.spec.target)
    task = rebuild_task(trained, allow_pickle=allow_pickle)
    core = ov.Core()
    fp32 = compile_rnn(model, "f32", core=core)
    samples, calibration = calibration_samples(
        task, CompiledAsTorch(fp32, spec), cfg.train.batch_size
    )
    say(
        f"  int8: NNCF calibration on {calibration['sequences']} training sequences "
        f"({calibration['batches']} batches; states {calibration['states']})"
    )
    notes: list[str] = []
    if spec.kind == "gru":
        line = (
            "GRU: NNCF does not quantize GRUSequence with linear_before_reset (what a torch "
            "GRU becomes); the recurrence stays float, only other layers are int8"
        )
        say("  " + line)
        notes.append(line)
    kind = "lstm" if spec.kind == "dglstm" and spec.num_layers == 1 else spec.kind
    seq_op = SEQUENCE_OPS[kind]
    fp32_figures = evaluate_ir(fp32, spec, task, cfg)
    a = fp32_figures[metric]
    quantized, ranges = _nncf_quantize(model, samples, spec, float_ops=())
    compiled = compile_rnn(quantized, "f32", core=core)
    int8_figures = evaluate_ir(compiled, spec, task, cfg)
    b = int8_figures[metric]
    say(f"  held-out {metric}: fp32 {a:.6g}, int8 {b:.6g}")
    drop = relative_drop(a, b, higher_is_better=higher)
    method = "nncf.quantize"
    figures: dict[str, Any] = {"fp32": fp32_figures, "int8": int8_figures}
    also = ""
    if drop > max_metric_drop and kind in ("rnn", "lstm"):
        # what nncf.quantize_with_accuracy_control would do (it fails on these graphs in
        # NNCF 3.4): return the costliest layers, the recurrence, to float
        say(
            f"  int8 {seq_op} costs {drop:.2%} of {metric} (> {max_metric_drop:.2%}); "
            f"trying again with the {seq_op} ops in float"
        )
        retry, _ = _nncf_quantize(model, samples, spec, float_ops=(seq_op,))
        retry_compiled = compile_rnn(retry, "f32", core=core)
        retry_figures = evaluate_ir(retry_compiled, spec, task, cfg)
        retry_drop = relative_drop(a, retry_figures[metric], higher_is_better=higher)
        say(f"  held-out {metric} with the {seq_op} ops in float: {retry_figures[metric]:.6g}")
        figures["int8_all_layers"] = int8_figures
        also = f" (with the {seq_op} ops in float: {retry_figures[metric]:.6g})"
        if retry_drop <= max_metric_drop:
            notes.append(
                f"the {seq_op} ops stay float: in int8 they cost {drop:.2%} of held-out "
                f"{metric} ({b:.6g} against {a:.6g}), more than --max-metric-drop "
                f"{max_metric_drop:g}; only the other layers are int8"
            )
            quantized, compiled, ranges = retry, retry_compiled, []
            b, drop, int8_figures = retry_figures[metric], retry_drop, retry_figures
            figures["int8"] = retry_figures
            method = f"nncf.quantize, {seq_op} kept in float"
    try:
        metric_gate(metric, a, b, higher_is_better=higher, max_metric_drop=max_metric_drop)
    except UsageError as exc:
        raise UsageError(f"{exc}{also}") from None

    precisions = runtime_summary(compiled, skip=("Const",))
    seq = precisions.get(_SEQ_LAYER, "")
    if kind == "dglstm":
        bodies = _quantized_bodies(quantized)
        recurrence = "int8" if bodies and all(bodies.values()) else "float"
        where = "the TensorIterator bodies' MatMuls"
        if recurrence == "float":
            notes.append(
                "DG-LSTM: NNCF left the recurrence (TensorIterator bodies) in float; "
                "only the layers outside it are int8"
            )
    else:
        recurrence = "int8" if any(p in seq.split("/") for p in _INT8) else "float"
        where = f"the sequence ops ({_SEQ_LAYER} runs in {seq or 'nothing'})"
        if recurrence == "float" and kind != "gru" and method == "nncf.quantize":
            notes.append(
                f"NNCF left the recurrent sequence ops in float ({_SEQ_LAYER} runs in "
                f"{seq or 'no precision reported'}); only the other layers are int8"
            )
    say(f"  int8 recurrence: {recurrence} ({where}); drop {drop:+.2%} (max {max_metric_drop:.2%})")
    notes.append(
        f"int8 by {method} on {calibration['sequences']} training sequences; "
        f"held-out {metric} fp32 {a:.6g}, int8 {b:.6g}"
    )
    return quantized, {
        "metric": metric,
        "fp32": a,
        "int8": b,
        "higher_is_better": higher,
        "drop": drop,
        "max_metric_drop": max_metric_drop,
        "method": method,
        "sequence_ranges": ranges,
        "calibration": calibration,
        "runtime_precisions": precisions,
        "recurrence": recurrence,
        "figures": figures,
        "nncf": dist_version("nncf"),
        "notes": notes,
    }
