"""Run an exported model with OpenVINO and numpy alone: what ``infer`` and ``sample`` import.

This module and everything it imports stay free of torch, so a server or a
small container can run a model exported by ``nervana-lstm export`` without
the training stack (a test checks that ``torch`` never enters ``sys.modules``).

Inputs are checked against the metadata before they reach OpenVINO: a wrong
feature count, a float where token ids belong, a token outside the vocabulary,
a length of 0 or beyond the padded steps each raise a UsageError that says
what was expected. All arrays are batch first (see :mod:`~nervana_lstm.export.graph`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nervana_lstm.errors import UsageError
from nervana_lstm.export.metadata import MODEL_FILE, ExportMeta, read_meta

if TYPE_CHECKING:
    import openvino as ov

__all__ = ["RUNTIME_PRECISIONS", "ExportedModel", "load_exported"]

#: ``--precision`` of infer/sample -> the CPU plugin's ``INFERENCE_PRECISION_HINT``
RUNTIME_PRECISIONS: dict[str, str] = {"f32": "f32", "bf16": "bf16"}
#: the state parts of a stateful model live in variables named after their inputs
_STATE_INPUTS = ("h_0", "c_0")


class ExportedModel:
    """A compiled exported model and one infer request; see :func:`load_exported`."""

    def __init__(self, directory: Path, meta: ExportMeta, compiled: ov.CompiledModel) -> None:
        self.directory = directory
        self.meta = meta
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self._inputs = {port.get_any_name() for port in compiled.inputs}

    # ------------------------------------------------------------------ checks

    def check_x(self, x: np.ndarray) -> np.ndarray:
        """``x`` as the model takes it: (N, T) int64 ids or (N, T, F) float32 features."""
        meta = self.meta
        x = np.asarray(x)
        if meta.input_kind == "tokens":
            if x.ndim != 2 or not np.issubdtype(x.dtype, np.integer):
                raise UsageError(
                    f"this {meta.task} model takes token ids of shape (N, T) as integers; got "
                    f"{x.dtype} of shape {x.shape}"
                )
            vocab = meta.input_size
            if x.size and (x.min() < 0 or x.max() >= vocab):
                bad = int(x[(x < 0) | (x >= vocab)].flat[0])
                raise UsageError(f"token id {bad} is outside the vocabulary (0..{vocab - 1})")
            x = x.astype(np.int64, copy=False)
        else:
            if x.ndim != 3 or x.shape[2] != meta.input_size:
                raise UsageError(
                    f"this {meta.task} model takes features of shape (N, T, {meta.input_size}); "
                    f"got shape {x.shape}"
                )
            if not np.issubdtype(x.dtype, np.number) or np.issubdtype(x.dtype, np.complexfloating):
                raise UsageError(f"features must be real numbers; got {x.dtype}")
            x = x.astype(np.float32, copy=False)
            if not np.isfinite(x).all():
                raise UsageError("features must be finite numbers; the input holds nan or inf")
        if x.shape[0] == 0 or x.shape[1] == 0:
            raise UsageError(f"the input has no sequences or no steps: shape {x.shape}")
        if meta.batch is not None and x.shape[0] != meta.batch:
            raise UsageError(
                f"this stateful model was exported for a batch of {meta.batch}; got "
                f"{x.shape[0]} sequences (export again with --batch {x.shape[0]})"
            )
        return x

    def check_lengths(self, lengths: Any, batch: int, steps: int) -> np.ndarray | None:
        """Each sequence's valid steps, 1..T, as int64 (N,); None when the model has none."""
        if "lengths" not in self._inputs:
            if lengths is not None and not np.all(np.asarray(lengths) == steps):
                raise UsageError(
                    "this model has no lengths input: every sequence must have all T steps"
                )
            return None
        if lengths is None:
            return np.full(batch, steps, dtype=np.int64)
        lengths = np.asarray(lengths)
        if lengths.shape != (batch,) or not np.issubdtype(lengths.dtype, np.integer):
            raise UsageError(
                f"lengths must be {batch} integers (one per sequence); got {lengths.dtype} "
                f"of shape {lengths.shape}"
            )
        if lengths.min() < 1 or lengths.max() > steps:
            raise UsageError(
                f"every length must be in 1..{steps} (the padded steps); got "
                f"{int(lengths.min())}..{int(lengths.max())}"
            )
        return lengths.astype(np.int64, copy=False)

    # ------------------------------------------------------------------ running

    def infer(
        self,
        x: np.ndarray,
        lengths: Any = None,
        state: dict[str, np.ndarray] | None = None,
    ) -> dict[str, np.ndarray]:
        """Run the model once: ``{"logits": ..., "h_n": ..., ...}`` as numpy arrays (copies).

        ``state`` gives ``h_0``/``c_0`` (N, L*D, H) to a model exported with state
        inputs; where the model has them and none are given, they start at zero.
        A stateful model carries its state from call to call until :meth:`reset`.
        """
        x = self.check_x(x)
        feed: dict[str, np.ndarray] = {"x": x}
        found = self.check_lengths(lengths, x.shape[0], x.shape[1])
        if found is not None:
            feed["lengths"] = found
        for name in _STATE_INPUTS:
            if name not in self._inputs:
                continue
            given = None if state is None else state.get(name)
            if given is None:
                rows = self.meta.num_layers * (2 if self.meta.bidirectional else 1)
                given = np.zeros((x.shape[0], rows, self.meta.hidden_size), np.float32)
            feed[name] = np.asarray(given, dtype=np.float32)
        result = self.request.infer(feed)
        return {port.get_any_name(): np.array(value) for port, value in result.items()}

    def reset(self) -> None:
        """Zero the carried state of a stateful model (start a new stream)."""
        self.request.reset_state()

    def encode(self, text: str) -> np.ndarray:
        """Token ids (T,) of ``text`` for a charlm model; unknown characters are refused."""
        vocab = self.meta.vocab
        if vocab is None:
            raise UsageError(f"this is a {self.meta.task} model; text needs a charlm model")
        ids = {c: i for i, c in enumerate(vocab)}
        unknown = sorted({c for c in text if c not in ids})
        if unknown:
            raise UsageError(
                f"the text has characters the model never saw in training: {''.join(unknown)!r}"
            )
        return np.array([ids[c] for c in text], dtype=np.int64)

    def decode(self, ids: Any) -> str:
        vocab = self.meta.vocab or []
        return "".join(vocab[i] if i < len(vocab) else "\ufffd" for i in np.asarray(ids).ravel())


def load_exported(
    directory: str | Path,
    precision: str = "f32",
    *,
    threads: int | None = None,
    core: ov.Core | None = None,
) -> ExportedModel:
    """Read an export directory and compile its model on the CPU.

    Args:
        precision: ``"f32"`` (the precision the exporter's parity gate checked) or
            ``"bf16"``; pinned with ``INFERENCE_PRECISION_HINT``, never left to the
            plugin's default (bf16 on CPUs with AVX512_BF16 or AMX).
        threads: ``INFERENCE_NUM_THREADS``; the plugin's default when None.

    Raises:
        UsageError: not an export directory, unreadable IR, or a precision this
        CPU cannot run.
    """
    import openvino as ov

    from nervana_lstm.export.convert import compile_rnn

    directory = Path(directory)
    meta = read_meta(directory)
    if precision not in RUNTIME_PRECISIONS:
        raise UsageError(
            f"unknown precision {precision!r}; expected one of: {', '.join(RUNTIME_PRECISIONS)}"
        )
    core = core or ov.Core()
    try:
        model = core.read_model(str(directory / MODEL_FILE))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(f"OpenVINO cannot read {directory / MODEL_FILE}: {first}") from None
    compiled = compile_rnn(
        model,
        RUNTIME_PRECISIONS[precision],
        threads=threads,
        core=core,
        extra_config={"PERFORMANCE_HINT": "LATENCY"},
    )
    return ExportedModel(directory, meta, compiled)
