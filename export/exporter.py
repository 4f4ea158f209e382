"""Turn a trained run into an OpenVINO model directory: build, check, gate, publish.

:func:`export_model` is what ``nervana-lstm export`` runs, in this order:

1. find the checkpoint (a run directory means its ``checkpoints/best.pt``) and
   rebuild the trained model with :func:`~nervana_lstm.train.checkpoint.load_trained`;
2. build the whole model from its weights (:mod:`~nervana_lstm.export.graph`) and
   check its op types: one sequence op per layer for rnn/lstm/gru, one
   ``TensorIterator`` per DG-LSTM layer, never a recurrence unrolled into steps;
3. make it stateful (``--stateful``) or quantize it (``int8``, NNCF);
4. save it into a temp directory beside ``--out`` (fp32 weights stay fp32:
   ``ov.save_model`` would compress them to fp16 unless told not to), read the
   saved IR back and run the parity gate (:mod:`~nervana_lstm.export.parity`)
   at ``INFERENCE_PRECISION_HINT=f32``, and record the error at the CPU
   plugin's default precision and at bf16 too;
5. write ``nervana_lstm.json`` and rename the temp directory to ``--out``.

A failure at any step removes the temp directory: ``--out`` is either the
complete new model, or what it was before.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nervana_lstm.choices import has_cell_state
from nervana_lstm.errors import UsageError
from nervana_lstm.export.graph import SEQUENCE_OPS, GraphSpec, build_model, sequence_op_counts
from nervana_lstm.export.metadata import (
    BIN_FILE,
    META_FILE,
    MODEL_FILE,
    ExportMeta,
    TensorInfo,
    write_meta,
)
from nervana_lstm.export.parity import TOLERANCES, run_parity

if TYPE_CHECKING:
    import openvino as ov

    from nervana_lstm.train.checkpoint import Trained

__all__ = [
    "EXPORT_PRECISIONS",
    "ExportResult",
    "check_sequence_ops",
    "export_model",
    "graph_spec",
    "resolve_checkpoint",
]

#: weight precisions ``export --precision`` writes
EXPORT_PRECISIONS = ("fp32", "fp16", "int8")
#: per-step cell ops: a model holding one of these has a recurrence unrolled into steps
_STEP_OPS = ("LSTMCell", "GRUCell", "RNNCell")


@dataclass
class ExportResult:
    """What :func:`export_model` wrote and measured."""

    out: Path
    meta: ExportMeta
    seconds: float


def resolve_checkpoint(source: str | Path) -> Path:
    """The checkpoint file a user meant: a run directory's ``checkpoints/best.pt``, or a file."""
    path = Path(source)
    if path.is_dir():
        best = path / "checkpoints" / "best.pt"
        if best.is_file():
            return best
        last = path / "checkpoints" / "last.pt"
        hint = f" (it has {last}: pass that file to export it)" if last.is_file() else ""
        raise UsageError(
            f"{path} is a directory without checkpoints/best.pt; expected a run directory "
            f"written by 'nervana-lstm train' or a checkpoint file{hint}"
        )
    if not path.exists():
        raise UsageError(f"{path} does not exist; expected a run directory or a checkpoint file")
    return path


def graph_spec(trained: Trained, *, stateful: bool = False, batch: int = 1) -> GraphSpec:
    """The :class:`GraphSpec` of a trained model, as exported.

    ``lengths`` is an input where the task trains on padded batches (``files``);
    the state is an input where the task carries it from batch to batch
    (``charlm``), so a caller can continue a text; a stateful export keeps it
    inside the model instead and has a fixed ``batch``.
    """
    cfg, spec = trained.config.model, trained.spec
    tokens = spec.input_kind == "tokens"
    return GraphSpec(
        kind=cfg.kind,
        input_size=cfg.embedding_dim if tokens else spec.input_size,
        hidden_size=cfg.hidden_size,
        num_layers=cfg.num_layers,
        bidirectional=cfg.bidirectional,
        output_size=spec.output_size,
        input_kind=spec.input_kind,
        per_step=spec.target == "classify_steps",
        lengths=trained.config.task.name == "files" and not stateful,
        state_inputs=stateful or spec.stateful,
        batch=batch if stateful else None,
    )


def check_sequence_ops(model: ov.Model, spec: GraphSpec) -> dict[str, int]:
    """Fail unless each layer became its sequence op; return the op counts.

    rnn/lstm/gru: one ``*Sequence`` per layer and direction run (a bidirectional
    layer with lengths runs each direction as its own op), no ``TensorIterator``
    or ``Loop``; dglstm: one ``TensorIterator`` per layer (one layer is an LSTM).
    No per-step cell op anywhere.
    """
    counts = sequence_op_counts(model)
    kind = "lstm" if spec.kind == "dglstm" and spec.num_layers == 1 else spec.kind
    want_op = SEQUENCE_OPS[kind]
    found = counts.get(want_op, 0)
    unrolled = {op: counts[op] for op in _STEP_OPS if op in counts}
    if kind != "dglstm":
        unrolled.update({op: counts[op] for op in ("TensorIterator", "Loop") if op in counts})
    runs = spec.directions if spec.lengths else 1
    if found != spec.num_layers * runs or unrolled:
        raise UsageError(
            f"the {spec.kind} graph has {found} {want_op} op(s) for {spec.num_layers} layer(s) "
            f"and {unrolled or 'no'} per-step ops; expected one {want_op} per layer and no "
            "recurrence unrolled into steps"
        )
    return counts


def _numpy_weights(trained: Trained) -> dict[str, np.ndarray]:
    return {k: v.detach().float().cpu().numpy() for k, v in trained.model.state_dict().items()}


def _file_labels(
    trained: Trained, notes: list[str], allow_pickle: bool = False
) -> tuple[list[Any] | None, list[str] | None]:
    """The class labels and feature names of a ``files`` model, read from its data file.

    The checkpoint holds the sizes, not the names; the data file gives them when it
    is still there and still has the model's feature and class counts.
    """
    cfg = trained.config
    if cfg.task.name != "files":
        return None, None
    from nervana_lstm.data import make_task

    try:
        task = make_task("files", allow_pickle=allow_pickle, **cfg.task.options)
    except UsageError as exc:
        notes.append(f"class labels and feature names unknown ({exc}); outputs are class ids")
        return None, None
    if task.spec != trained.spec:
        notes.append(
            f"{cfg.task.options['path']} no longer fits the model (it has "
            f"{task.spec.input_size} features and {task.spec.output_size} outputs); class "
            "labels and feature names were not taken from it"
        )
        return None, None
    classes = getattr(task, "classes", None)
    labels = None if classes is None else [c if isinstance(c, int) else str(c) for c in classes]
    return labels, list(task.feature_names)


def _versions() -> dict[str, str | None]:
    from nervana_lstm import __version__
    from nervana_lstm.backends import dist_version

    names = ("torch", "intel-extension-for-pytorch", "openvino", "nncf")
    return {"nervana-lstm": __version__, **{n: dist_version(n) for n in names}}


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _tensor_infos(spec: GraphSpec, model: ov.Model) -> tuple[list[TensorInfo], list[TensorInfo]]:
    """Name, dtype, shape and axes of every input and output of the built model."""
    layouts = {"x": "NT" if spec.input_kind == "tokens" else "NTC", "lengths": "N"}
    layouts.update({f"{s}_{e}": "NLH" for s in ("h", "c") for e in ("0", "n")})
    layouts["logits"] = "NTC" if spec.per_step else "NC"

    def info(port: Any) -> TensorInfo:
        name = port.get_any_name()
        shape = [d.get_length() if d.is_static else -1 for d in port.get_partial_shape()]
        dtype = {"f32": "f32", "i64": "i64"}.get(port.get_element_type().get_type_name(), "?")
        return TensorInfo(name, dtype, shape, layouts.get(name, ""))

    return [info(p) for p in model.inputs], [info(p) for p in model.outputs]


@contextlib.contextmanager
def _staging(out: Path, force: bool) -> Iterator[Path]:
    """A temp directory beside ``out``, renamed to ``out`` when the block succeeds."""
    if out.exists() and not force:
        raise UsageError(
            f"{out} already exists; pass --force to replace it, or choose another --out"
        )
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out} exists and is not a directory; --out names a directory to create")
    parent = out.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=parent))
    except OSError as exc:
        raise UsageError(f"cannot write into {parent}: {exc.strerror or exc}") from None
    try:
        yield tmp
        old = None
        if out.exists():  # --force: move the old model aside, swap, then delete it
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=parent))
            out.rename(old / out.name)
        tmp.chmod(0o755)
        tmp.rename(out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _compile_f32(core: ov.Core, path: Path) -> ov.CompiledModel:
    from nervana_lstm.export.convert import compile_rnn

    return compile_rnn(core.read_model(str(path)), "f32", core=core)


def _other_precisions(
    core: ov.Core, path: Path, trained: Trained, spec: GraphSpec
) -> dict[str, Any]:
    """The parity error at bf16 and at the plugin's default precision, for the record."""
    from nervana_lstm.export.convert import compile_rnn, precision_supported

    figures: dict[str, Any] = {}
    ok, why = precision_supported("bf16", core)
    if ok:
        compiled = compile_rnn(core.read_model(str(path)), "bf16", core=core)
        figures["bf16"] = run_parity(compiled, trained.model, spec)["max_error"]
    else:
        figures["bf16"] = f"unavailable: {why}"
    default = core.compile_model(core.read_model(str(path)), "CPU")
    value = default.get_property("INFERENCE_PRECISION_HINT")
    hint = value.get_type_name() if hasattr(value, "get_type_name") else str(value)
    figures["default"] = {
        "hint": hint,
        "error": run_parity(default, trained.model, spec)["max_error"],
    }
    return figures


def _check_options(precision: str, stateful: bool, batch: int, max_metric_drop: float) -> None:
    if precision not in EXPORT_PRECISIONS:
        raise UsageError(
            f"unknown precision {precision!r}; expected one of: {', '.join(EXPORT_PRECISIONS)}"
        )
    if not 1 <= batch <= 65536:
        raise UsageError(f"--batch expects 1..65536 sequences, got {batch}")
    if not 0.0 <= max_metric_drop <= 1.0:
        raise UsageError(f"--max-metric-drop expects a fraction in 0..1, got {max_metric_drop}")
    if stateful and precision == "int8":
        raise UsageError("--stateful exports fp32 or fp16; int8 is for whole-sequence models")


def _build(trained: Trained, spec: GraphSpec, say: Callable[[str], object]) -> ov.Model:
    """The checked graph, made stateful when ``spec`` has a fixed batch."""
    model = build_model(_numpy_weights(trained), spec)
    counts = check_sequence_ops(model, spec)
    seen = {k: v for k, v in counts.items() if k in (*SEQUENCE_OPS.values(), "ReverseSequence")}
    say(f"  graph: {', '.join(f'{v} {k}' for k, v in sorted(seen.items()))}")
    if spec.batch is not None:
        from openvino._offline_transformations import apply_make_stateful_transformation

        apply_make_stateful_transformation(model, {f"{s}_0": f"{s}_n" for s in spec.state_names})
    return model


def _describe(
    trained: Trained,
    spec: GraphSpec,
    model: ov.Model,
    checkpoint: Path,
    precision: str,
    allow_pickle: bool = False,
) -> ExportMeta:
    """The metadata known before the gates run (their figures are added as measured)."""
    notes: list[str] = []
    classes, feature_names = _file_labels(trained, notes, allow_pickle)
    if spec.lengths and spec.kind != "dglstm" and has_cell_state(spec.kind):
        notes.append(
            "no c_n output: the CPU plugin runs a sequence op over all padded steps, so each "
            "sequence's last state is read from the per-step outputs, which hold h but not c"
        )
    if spec.batch is not None:
        notes.append(
            f"stateful: h{'/c' if has_cell_state(spec.kind) else ''} carried inside the model "
            f"between calls for a fixed batch of {spec.batch}; reset the infer request's state "
            "to start a new stream"
        )
    inputs, outputs = _tensor_infos(spec, model)
    tokens = spec.input_kind == "tokens"
    return ExportMeta(
        kind=spec.kind,
        hidden_size=spec.hidden_size,
        num_layers=spec.num_layers,
        bidirectional=spec.bidirectional,
        input_size=trained.spec.input_size,
        output_size=spec.output_size,
        parameters=sum(p.numel() for p in trained.model.parameters()),
        task=trained.config.task.name,
        input_kind=spec.input_kind,
        target=trained.spec.target,
        precision=precision,
        stateful=spec.batch is not None,
        batch=spec.batch,
        inputs=inputs,
        outputs=outputs,
        embedding_dim=trained.config.model.embedding_dim if tokens else None,
        vocab=list(trained.vocab.chars) if trained.vocab is not None else None,
        classes=classes,
        feature_names=feature_names,
        task_options=dict(trained.config.task.options),
        versions=_versions(),
        source={
            "checkpoint": str(checkpoint.resolve()),
            "sha256": _sha256(checkpoint),
            "step": trained.step,
        },
        notes=notes,
    )


def _parity_gate(
    core: ov.Core,
    xml: Path,
    trained: Trained,
    spec: GraphSpec,
    precision: str,
    say: Callable[[str], object],
) -> dict[str, Any]:
    """Run the saved IR against torch; refuse a model above its tolerance."""
    say(f"  parity against torch (fp32) at INFERENCE_PRECISION_HINT=f32, {precision} weights:")
    parity = run_parity(_compile_f32(core, xml), trained.model, spec, say=lambda s: say("  " + s))
    tolerance = TOLERANCES.get(precision)  # int8 has a metric gate instead
    parity.update(
        {
            "measure": "max |ir - torch| / max(1, max |torch|)",
            "precision_hint": "f32",
            "weights": precision,
            "tolerance": tolerance,
        }
    )
    if tolerance is not None and parity["max_error"] > tolerance:
        raise UsageError(
            f"the {precision} IR differs from the torch model by {parity['max_error']:.2e} "
            f"(> {tolerance:g} allowed); nothing was written"
        )
    other = parity["other_hints"] = _other_precisions(core, xml, trained, spec)
    bf16 = other["bf16"]
    say(
        f"  max error {parity['max_error']:.2e} ("
        + (
            "recorded, not gated: int8 is held to the task metric above"
            if tolerance is None
            else f"tolerance {tolerance:g}"
        )
        + "); at bf16 "
        f"{bf16 if isinstance(bf16, str) else f'{bf16:.2e}'}; at the plugin's default "
        f"({other['default']['hint']}) {other['default']['error']:.2e}"
    )
    return parity


def export_model(
    source: str | Path,
    out: str | Path,
    *,
    precision: str = "fp32",
    stateful: bool = False,
    batch: int = 1,
    force: bool = False,
    max_metric_drop: float = 0.01,
    say: Callable[[str], object] = print,
    allow_pickle: bool = False,
) -> ExportResult:
    """Export the model trained in ``source`` to ``out``; see the module docstring.

    Args:
        source: a run directory (its ``checkpoints/best.pt``) or a checkpoint file.
        out: the directory to create (replaced only with ``force``).
        precision: weights in ``fp32``, ``fp16`` (compressed) or ``int8`` (NNCF).
        stateful: carry h/c inside the model between calls (``ReadValue``/``Assign``);
            needs a fixed ``batch``.
        max_metric_drop: int8 only: largest relative loss of the task metric against
            the fp32 IR that may be published (0.01 = 1%).
        allow_pickle: a ``files`` model's data file may be a ragged NPZ, which is
            unpickled to read it (a file you trust).

    Raises:
        UsageError: bad source, existing ``out``, an unsupported combination, a
        model that fails its parity or metric gate.
    """
    t0 = time.perf_counter()
    _check_options(precision, stateful, batch, max_metric_drop)
    out = Path(out)
    checkpoint = resolve_checkpoint(source)
    if out.exists() and not force:  # refuse before the slow part
        raise UsageError(
            f"{out} already exists; pass --force to replace it, or choose another --out"
        )

    import openvino as ov

    from nervana_lstm.train.checkpoint import load_trained

    trained = load_trained(checkpoint, "fused")
    spec = graph_spec(trained, stateful=stateful, batch=batch)
    say(
        f"export: {trained.config.task.name} {spec.kind} L={spec.num_layers} H={spec.hidden_size}"
        f"{' bidirectional' if spec.bidirectional else ''} from {checkpoint} (step {trained.step})"
    )
    model = _build(trained, spec, say)
    meta = _describe(trained, spec, model, checkpoint, precision, allow_pickle)

    core = ov.Core()
    with _staging(out, force) as tmp:
        if precision == "int8":
            from nervana_lstm.export.quantize import quantize_model

            model, meta.quantization = quantize_model(
                model, trained, spec, max_metric_drop=max_metric_drop, say=say,
                allow_pickle=allow_pickle,
            )  # fmt: skip
            meta.metric = meta.quantization.get("metric")
            meta.notes += meta.quantization.get("notes", [])
        for key, value in meta.rt_info().items():
            model.set_rt_info(value, ["nervana_lstm", key])
        ov.save_model(model, str(tmp / MODEL_FILE), compress_to_fp16=precision == "fp16")
        meta.parity = _parity_gate(core, tmp / MODEL_FILE, trained, spec, precision, say)
        meta.source["files"] = {name: _sha256(tmp / name) for name in (MODEL_FILE, BIN_FILE)}
        write_meta(meta, tmp)
    seconds = time.perf_counter() - t0
    say(f"wrote {out}/{MODEL_FILE}, {BIN_FILE} and {META_FILE} in {seconds:.1f} s")
    sys.stdout.flush()
    return ExportResult(out, meta, seconds)
