"""What ``nervana-lstm inspect`` shows: one sequence, its trace, and the units worth a look.

1. the checkpoint (a run directory means its ``checkpoints/best.pt``) is rebuilt
   twice, with the reference cells (traced) and with the fused cells (as it trained);
2. the sequence is a held-out example of the model's task (``example``: the
   N-th held-out sequence; for charlm the N-th chunk of the held-out text, read
   from a zero state) or a file (``input_path``): the ``files`` CSV/NPZ formats
   for feature models (adding, files; the first sequence), a UTF-8 text for
   charlm, a line of digits 0-9 (the token ids) for copy;
3. :func:`~nervana_lstm.lesson.trace.trace_model` records every gate; the final
   state of the trace is checked against the fused model's;
4. the units shown are those whose share of the prediction changes most with the
   input, over held-out sequences (:func:`choose_units`).

:func:`inspection_document` is the ``--json`` document.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nervana_lstm.config import RunConfig
from nervana_lstm.data.base import Batch
from nervana_lstm.errors import UsageError
from nervana_lstm.lesson.trace import GATE_NAMES, GateTrace, trace_model
from nervana_lstm.train.checkpoint import Trained, load_trained

__all__ = [
    "Inspection",
    "choose_units",
    "example_sequence",
    "file_sequence",
    "held_out_batch",
    "inspect_model",
    "inspection_document",
]

#: how the units are chosen, in words (for the plot and the JSON)
UNIT_RULE_HEAD = (
    "largest spread (std) of the unit's share of the prediction, h[j]*||W_head[:, j]||,"
)
#: held-out sequences the units are chosen on
UNIT_SEQUENCES = 256
UNIT_RULE_RANGE = "largest range of the unit's state over the sequence (max - min)"


@dataclass(frozen=True)
class Inspection:
    """A traced sequence and what to show of it."""

    checkpoint: Path
    config: RunConfig
    step: int  # training steps of the checkpoint
    x: torch.Tensor  # (T, F) float or (T,) int64
    input_text: str | None  # tokens as text (charlm, copy)
    about: str  # where the sequence came from
    target: torch.Tensor | None
    markers: list[int]  # steps to mark across the plot (adding's markers, copy's delimiter)
    trace: GateTrace
    layer: int
    units: list[int]
    unit_rule: str
    fused_state_diff: float  # max |trace's final state - fused model's final state|


# ---------------------------------------------------------------------- inputs


def example_sequence(trained: Trained, index: int) -> tuple[torch.Tensor, torch.Tensor | None, str]:
    """The ``index``-th held-out sequence of the model's task: (x, target, description)."""
    from nervana_lstm.data import make_task

    cfg = trained.config
    if index < 0:
        raise UsageError(f"--example expects an index >= 0, got {index}")
    task = make_task(cfg.task.name, **cfg.task.options)
    if task.spec.stateful:  # the index-th chunk of one held-out stream
        for n, batch in enumerate(task.eval_batches(1)):
            if n == index:
                return batch.x[:, 0], batch.y[:, 0], f"held-out chunk {index} (zero start state)"
        raise UsageError(f"--example {index}: the held-out text has only {n + 1} chunks")
    seen = 0
    for batch in task.eval_batches(256):
        width = int(batch.x.shape[1])
        if index < seen + width:
            col = index - seen
            per_step = task.spec.target == "classify_steps"
            x, y = batch.x[:, col], batch.y[:, col] if per_step else batch.y[col]
            if batch.lengths is not None:
                x = x[: int(batch.lengths[col])]
            return x, y, f"held-out sequence {index}"
        seen += width
    raise UsageError(f"--example {index}: the held-out set has only {seen} sequences")


def file_sequence(trained: Trained, path: str | Path) -> tuple[torch.Tensor, str]:
    """The sequence in ``path``, in the model's input form: (x, description)."""
    path = Path(path)
    spec, name = trained.spec, trained.config.task.name
    if not path.is_file():
        raise UsageError(f"--input {path} does not exist or is not a file")
    if spec.input_kind == "features":
        from nervana_lstm.data.file_formats import read_sequences

        seqs = read_sequences(str(path), None).seqs
        if not seqs:
            raise UsageError(f"--input {path} holds no sequence")
        x = torch.from_numpy(seqs[0]).float()  # (T, F)
        if x.shape[1] != spec.input_size:
            raise UsageError(
                f"--input {path}: the model reads {spec.input_size} features per step, the "
                f"file's first sequence has {x.shape[1]}"
            )
        return x, f"first sequence of {path}"
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read --input {path} as UTF-8 text: {exc}") from None
    if name == "charlm":
        vocab = trained.vocab
        assert vocab is not None
        unknown = sorted({c for c in text if c not in set(vocab.chars)})
        if unknown:
            raise UsageError(
                f"--input {path} has characters the model never saw in training: "
                f"{''.join(unknown)!r}"
            )
        ids = vocab.encode(text)
    else:
        digits = "".join(text.split())
        if not digits or not digits.isdigit() or any(int(d) >= spec.input_size for d in digits):
            raise UsageError(
                f"--input {path}: a {name} model reads token ids 0..{spec.input_size - 1}, "
                "written as one digit per step (whitespace ignored)"
            )
        ids = torch.tensor([int(d) for d in digits], dtype=torch.int64)
    if len(ids) < 1:
        raise UsageError(f"--input {path} is empty")
    return ids, f"{path}"


def _markers(name: str, x: torch.Tensor) -> list[int]:
    if name == "adding":
        return [int(t) for t in torch.nonzero(x[:, 1] > 0.5).flatten()]
    if name == "copy":
        from nervana_lstm.data.copying import DELIMITER

        return [int(t) for t in torch.nonzero(x == DELIMITER).flatten()]
    return []


def _as_text(trained: Trained, x: torch.Tensor) -> str | None:
    if trained.vocab is not None:
        return trained.vocab.decode(x)
    if x.dtype == torch.int64 and trained.spec.input_size <= 10:
        return "".join(str(int(t)) for t in x)
    return None


# ----------------------------------------------------------------------- units


def held_out_batch(trained: Trained, size: int = UNIT_SEQUENCES) -> Batch | None:
    """Up to ``size`` held-out sequences of the model's task (None if its data is gone)."""
    from nervana_lstm.data import make_task

    cfg = trained.config
    try:
        task = make_task(cfg.task.name, **cfg.task.options)
        return next(iter(task.eval_batches(size)))
    except (UsageError, OSError, StopIteration):  # a files task whose file has moved
        return None


def _head_shares(model: nn.Module, batch: Batch) -> torch.Tensor:
    """``h[j] * ||W_head[:, j]||`` of the last layer's forward units where the head reads
    them: (N, H) at each sequence's last step, or (T*N, H) for per-step targets."""
    xb = batch.x
    with torch.no_grad():
        inputs = model.embed(xb) if model.embed is not None else xb
        out, _ = model.rnn(inputs, None, batch.lengths)  # (T, N, D*H)
    hidden = model.hidden_size
    w = model.head.weight.detach()[:, :hidden].norm(dim=0)  # (H,)
    if model.per_step:
        return out[..., :hidden].flatten(0, 1) * w
    if batch.lengths is None:
        last = out[-1]
    else:
        last = out[batch.lengths.long() - 1, torch.arange(out.shape[1])]
    return last[:, :hidden] * w


def choose_units(
    trace: GateTrace, fused: Trained, layer: int, count: int, batch: Batch | None
) -> tuple[list[int], str]:
    """The ``count`` units of ``layer`` (forward direction) most worth showing, and the rule.

    In the last layer, which the head reads, unit ``j`` scores the spread (standard
    deviation) of its share of the prediction, ``h[j] * ||W_head[:, j]||``, over the
    held-out sequences in ``batch`` (at each one's last step, or over all steps for
    per-step targets): a unit that holds a constant adds a bias, one whose share
    changes with the input carries what the model remembers. Without a batch the
    spread is taken over the steps of the traced sequence. In a lower layer a unit
    scores the range of its state (``c``, else ``h``) over the traced sequence.
    """
    lt = trace.layer(layer)
    count = max(1, min(count, lt.h.shape[1]))
    if layer == len({t.layer for t in trace.layers}) - 1:
        model = fused.model
        if batch is not None:
            score = _head_shares(model, batch).std(0)
            n = int(batch.x.shape[1])
            where = "each one's last step" if not model.per_step else "every step"
            rule = f"{UNIT_RULE_HEAD} over {n} held-out sequences, at {where}"
        else:
            w = model.head.weight.detach()[:, : lt.h.shape[1]].norm(dim=0)
            score = (lt.h * w).std(0)
            rule = f"{UNIT_RULE_HEAD} over the steps of this sequence"
    else:
        state = lt.c if lt.c is not None else lt.h
        score = state.max(0).values - state.min(0).values
        rule = UNIT_RULE_RANGE
    order = torch.argsort(score, descending=True, stable=True)
    return [int(j) for j in order[:count]], rule


# ---------------------------------------------------------------------- driver


def _max_diff(a: Any, b: Any) -> float:
    pairs = zip(a, b, strict=True) if isinstance(a, tuple) else [(a, b)]
    return max(float((p - q).abs().max()) for p, q in pairs)


def inspect_model(
    source: str | Path,
    *,
    input_path: str | Path | None = None,
    example: int = 0,
    layer: int | None = None,
    units: int = 4,
) -> Inspection:
    """Trace one sequence through the model in ``source``; see the module docstring."""
    from nervana_lstm.export.exporter import resolve_checkpoint

    checkpoint = resolve_checkpoint(source)
    reference = load_trained(checkpoint, "reference")
    cfg = reference.config
    layers = cfg.model.num_layers
    shown = layers - 1 if layer is None else layer
    if not 0 <= shown < layers:
        raise UsageError(
            f"--layer expects 0..{layers - 1} for this {layers}-layer model, got {layer}"
        )
    if units < 1:
        raise UsageError(f"--units expects a positive number, got {units}")
    if input_path is not None:
        x, about = file_sequence(reference, input_path)
        target = None
    else:
        x, target, about = example_sequence(reference, example)
    trace = trace_model(reference.model, x)

    fused = load_trained(checkpoint, "fused")
    with torch.no_grad():
        _, fused_state = fused.model(x.unsqueeze(1))
    fused_state = (
        tuple(s[:, 0] for s in fused_state) if isinstance(fused_state, tuple) else fused_state[:, 0]
    )
    chosen, rule = choose_units(trace, fused, shown, units, held_out_batch(fused))
    return Inspection(
        checkpoint=checkpoint, config=cfg, step=reference.step, x=x,
        input_text=_as_text(reference, x), about=about, target=target,
        markers=_markers(cfg.task.name, x), trace=trace, layer=shown, units=chosen,
        unit_rule=rule, fused_state_diff=_max_diff(trace.state, fused_state),
    )  # fmt: skip


# -------------------------------------------------------------------- document


def _values(t: torch.Tensor | None, digits: int = 6) -> Any:
    if t is None:
        return None
    return torch.round(t.detach().double(), decimals=digits).tolist()


def inspection_document(ins: Inspection) -> dict[str, Any]:
    """The ``--json`` document: the input, the prediction, every layer's gates and states."""
    cfg, trace = ins.config, ins.trace
    symbols = sorted({s for t in trace.layers for s in t.gates}, key=list(GATE_NAMES).index)
    state = trace.state
    return {
        "checkpoint": str(ins.checkpoint),
        "task": cfg.task.name,
        "kind": trace.kind,
        "hidden_size": cfg.model.hidden_size,
        "num_layers": cfg.model.num_layers,
        "trained_steps": ins.step,
        "input": {
            "about": ins.about,
            "steps": int(ins.x.shape[0]),
            "values": _values(ins.x) if ins.x.is_floating_point() else ins.x.tolist(),
            "text": ins.input_text,
            "markers": ins.markers,
        },
        "target": _values(ins.target) if ins.target is not None else None,
        "prediction": _values(trace.output),
        "gate_names": {s: GATE_NAMES[s] for s in symbols},
        "shown": {"layer": ins.layer, "units": ins.units, "rule": ins.unit_rule},
        "layers": [
            {
                "layer": t.layer,
                "direction": "backward" if t.reverse else "forward",
                "gates": {s: _values(v) for s, v in t.gates.items()},
                "h": _values(t.h),
                "c": _values(t.c),
            }
            for t in trace.layers
        ],
        "final_state": {
            "h": _values(state[0] if isinstance(state, tuple) else state),
            "c": _values(state[1]) if isinstance(state, tuple) else None,
        },
        "fused_final_state_max_abs_diff": ins.fused_state_diff,
    }
