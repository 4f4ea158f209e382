"""Predictions of an exported model on users' files or drawn examples, with numpy alone.

What ``nervana-lstm infer`` runs. Inputs come from the ``files`` task's CSV and NPZ
formats (:mod:`nervana_lstm.data.file_formats`; targets may be absent) or from
:func:`~nervana_lstm.export.examples.task_examples`. A token model (copy, charlm)
reads its ids from a file's single feature column. Outputs, one record per
sequence, by the model's target:

- ``classify_last``: the predicted label and each class's probability
  ``softmax(logits)`` (and, in JSON, the logits);
- ``regress_last``: the predicted values;
- ``classify_steps``: a label and probabilities at every valid step.

Labels are the metadata's ``classes`` when it has them, the characters of a
charlm vocabulary, else class ids. Records are written as CSV (one row per
sequence, or per step) or JSON (:func:`write_records`).

Streaming (:func:`stream_records`) feeds a stateful model (exported with
``--stateful``) ``K`` steps at a time and yields the output after each chunk;
at the last chunk it equals the whole-sequence output. A stateful model has a
fixed batch and no ``lengths`` input, so a stream holds exactly that many
sequences, all of one length.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from nervana_lstm.data.file_formats import finite_number
from nervana_lstm.errors import UsageError
from nervana_lstm.export.examples import task_examples
from nervana_lstm.export.metadata import ExportMeta
from nervana_lstm.export.runtime import ExportedModel

__all__ = [
    "OUTPUT_FORMATS",
    "Inputs",
    "check_stream_inputs",
    "csv_rows",
    "example_inputs",
    "file_chunks",
    "json_line",
    "json_text",
    "labels_of",
    "output_format",
    "predict",
    "read_inputs",
    "stdin_chunks",
    "stream_records",
    "write_records",
]

OUTPUT_FORMATS = ("csv", "json")
#: sequences per call of a model with a dynamic batch
_BATCH = 256


@dataclass
class Inputs:
    """Sequences to predict, batch first: ``seqs[i]`` is (T_i, F) float32 or (T_i,) int64."""

    ids: list[str]
    seqs: list[np.ndarray]
    targets: list[Any] | None = None  # per sequence, where known (drawn examples)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(s) for s in self.seqs], dtype=np.int64)


def labels_of(meta: ExportMeta) -> list[str]:
    """The name of each output class: metadata ``classes``, a charlm's characters, or ids."""
    if meta.classes:
        return [str(c) for c in meta.classes]
    if meta.vocab is not None and meta.output_size == len(meta.vocab) + 1:
        return [*meta.vocab, "\ufffd"]
    return [str(i) for i in range(meta.output_size)]


def _check_sequences(
    seqs: list[np.ndarray], meta: ExportMeta, source: str, ids: list[str]
) -> list[np.ndarray]:
    """Feature count, token ids and lengths checked against the model; tokens as int64."""
    out = []
    for sid, s in zip(ids, seqs, strict=True):
        if len(s) == 0:
            raise UsageError(
                f"{source}: sequence {sid!r} has length 0; every sequence needs >= 1 step"
            )
        if meta.input_kind == "features":
            out.append(np.asarray(s, dtype=np.float32))
            continue
        # a token model reads its ids from the single feature column
        column = np.asarray(s)
        column = column[:, 0] if column.ndim == 2 else column
        if not np.all(column == np.round(column)):
            bad = column[column != np.round(column)][0]
            raise UsageError(
                f"{source}: sequence {sid!r}: token ids must be whole numbers, got {bad:g}"
            )
        vocab = meta.input_size
        outside = (column < 0) | (column >= vocab)
        if outside.any():
            step = int(np.argmax(outside))
            raise UsageError(
                f"{source}: sequence {sid!r} step {step}: token id {column[step]:g} is outside the "
                f"vocabulary (0..{vocab - 1})"
            )
        out.append(column.astype(np.int64))
    return out


def read_inputs(path: str | Path, meta: ExportMeta, *, allow_pickle: bool = False) -> Inputs:
    """Sequences of a CSV or NPZ file for ``meta``'s model (targets, if any, are not read).

    Raises:
        UsageError: a missing or unreadable file, a feature count other than the
        model's (one column of ids for a token model), token ids outside the
        vocabulary, or a sequence of length 0.
    """
    from nervana_lstm.data.file_formats import read_sequences

    path = str(path)
    data = read_sequences(path, None, allow_pickle)
    want = meta.input_size if meta.input_kind == "features" else 1
    have = data.seqs[0].shape[1]
    if have != want:
        names = f" ({', '.join(data.feature_names)})" if data.feature_names else ""
        expected = (
            f"{want} feature(s) per step"
            + (f" ({', '.join(meta.feature_names)})" if meta.feature_names else "")
            if meta.input_kind == "features"
            else "one column of token ids"
        )
        raise UsageError(
            f"{path}: {have} feature column(s){names}; this {meta.task} model takes {expected}"
        )
    ids = data.ids if data.ids is not None else [str(i) for i in range(len(data.seqs))]
    return Inputs(ids, _check_sequences(data.seqs, meta, path, ids))


def example_inputs(meta: ExportMeta, n: int, seed: int = 0) -> Inputs:
    """``n`` examples of an adding or copy model's task, drawn with numpy, with targets."""
    x, y = task_examples(meta.task, meta.task_options, n, seed)
    return Inputs([str(i) for i in range(n)], list(x), list(y))


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def _pad(seqs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(N, T, ...) zero padded to the longest, and the lengths (N,)."""
    lengths = np.array([len(s) for s in seqs], dtype=np.int64)
    x = np.zeros((len(seqs), int(lengths.max()), *seqs[0].shape[1:]), dtype=seqs[0].dtype)
    for i, s in enumerate(seqs):
        x[i, : len(s)] = s
    return x, lengths


def check_stream_inputs(meta: ExportMeta, inputs: Inputs) -> None:
    """A stateful model takes exactly its batch of sequences, all of one length."""
    if len(inputs.seqs) != meta.batch:
        raise UsageError(
            f"this stateful model was exported for a batch of {meta.batch}; the input holds "
            f"{len(inputs.seqs)} sequence(s) (export again with --batch {len(inputs.seqs)})"
        )
    lengths = set(inputs.lengths.tolist())
    if len(lengths) != 1:
        raise UsageError(
            f"a stateful model has no lengths input, so its sequences must have one length; "
            f"got lengths {min(lengths)}..{max(lengths)}"
        )


def _outputs(model: ExportedModel, inputs: Inputs) -> list[np.ndarray]:
    """Each sequence's logits: (O,) at its last step, or (T_i, O) per step."""
    meta, seqs = model.meta, inputs.seqs
    per_step = meta.target == "classify_steps"
    found: list[np.ndarray | None] = [None] * len(seqs)
    if meta.stateful:
        check_stream_inputs(meta, inputs)
        model.reset()
        logits = model.infer(np.stack(seqs))["logits"]
        model.reset()
        return list(logits)
    has_lengths = meta.input("lengths") is not None
    # without a lengths input every sequence of a call must have all T steps: group by length
    groups: dict[int, list[int]] = {}
    for i, s in enumerate(seqs):
        groups.setdefault(0 if has_lengths else len(s), []).append(i)
    for members in groups.values():
        for start in range(0, len(members), _BATCH):
            rows = members[start : start + _BATCH]
            x, lengths = _pad([seqs[i] for i in rows])
            logits = model.infer(x, lengths if has_lengths else None)["logits"]
            for k, i in enumerate(rows):
                found[i] = logits[k, : lengths[k]] if per_step else logits[k]
    return [f for f in found if f is not None]


def _record(meta: ExportMeta, labels: list[str], sid: str, out: np.ndarray, target: Any) -> dict:
    rec: dict[str, Any] = {"id": sid}
    if meta.target == "regress_last":
        rec["values"] = [float(v) for v in out]
    elif meta.target == "classify_last":
        rec["label"] = labels[int(np.argmax(out))]
        rec["probabilities"] = [float(p) for p in _softmax(out)]
        rec["logits"] = [float(v) for v in out]
    else:
        rec["labels"] = [labels[int(k)] for k in np.argmax(out, axis=-1)]
        rec["probabilities"] = [[float(p) for p in row] for row in _softmax(out)]
    if target is not None:
        target = np.asarray(target)
        if meta.target == "classify_steps":
            rec["target"] = [labels[int(k)] for k in target[: len(out)]]
        else:
            rec["target"] = [float(v) for v in target.ravel()]
    return rec


def predict(model: ExportedModel, inputs: Inputs) -> list[dict[str, Any]]:
    """One record per sequence (see the module docstring), in input order."""
    meta, labels = model.meta, labels_of(model.meta)
    outs = _outputs(model, inputs)
    targets = inputs.targets or [None] * len(outs)
    return [_record(meta, labels, *row) for row in zip(inputs.ids, outs, targets, strict=True)]


# ---------------------------------------------------------------------- streaming


def file_chunks(inputs: Inputs, chunk: int) -> Iterator[np.ndarray]:
    """The sequences of ``inputs`` (one length) as (N, K, ...) chunks of ``chunk`` steps."""
    x = np.stack(inputs.seqs)
    for start in range(0, x.shape[1], chunk):
        yield x[:, start : start + chunk]


def stdin_chunks(
    stream: IO[str], meta: ExportMeta, chunk: int, ids: list[str]
) -> Iterator[np.ndarray]:
    """Chunks (N, K, ...) read as they arrive from a long-format CSV (header first).

    Rows of each sequence must come in time order; the first ``meta.batch`` sequence
    ids make the batch, in order of first appearance (``ids`` is filled in as they
    come). A chunk is yielded once every sequence has ``chunk`` new steps; at the
    end, what is left, which must be the same number of steps for every sequence.
    """
    reader = csv.reader(stream)
    header = [h.strip() for h in next(reader, [])]
    if "sequence_id" not in header or "t" not in header:
        raise UsageError(
            f"stdin: expected a CSV header 'sequence_id,t,<feature>,...'; got {header or 'nothing'}"
        )
    features = [i for i, h in enumerate(header) if h not in ("sequence_id", "t", "target")]
    want = meta.input_size if meta.input_kind == "features" else 1
    if len(features) != want:
        raise UsageError(
            f"stdin: {len(features)} feature column(s); this {meta.task} model takes "
            + (
                f"{want} feature(s) per step"
                if meta.input_kind == "features"
                else "one column of token ids"
            )
        )
    batch = meta.batch or 1
    queues: dict[str, list[list[float]]] = {}
    last_t: dict[str, float] = {}
    for line, row in enumerate(reader, start=2):
        if not row or all(not c.strip() for c in row):
            continue
        if len(row) != len(header):
            raise UsageError(f"stdin:{line}: {len(row)} fields, expected {len(header)}")
        sid = row[header.index("sequence_id")].strip()
        t = finite_number(row[header.index("t")], f"stdin:{line}, column 't'")
        if sid not in queues:
            if len(queues) == batch:
                raise UsageError(
                    f"stdin:{line}: sequence {sid!r} is sequence {batch + 1}; this stateful model "
                    f"was exported for a batch of {batch} (export again with --batch)"
                )
            queues[sid] = []
            ids.append(sid)
        elif t <= last_t[sid]:
            raise UsageError(
                f"stdin:{line}: sequence {sid!r} goes back to t={t:g}; a stream's rows must come "
                "in time order"
            )
        last_t[sid] = t
        queues[sid].append(
            [finite_number(row[i], f"stdin:{line}, column '{header[i]}'", True) for i in features]
        )
        if len(queues) == batch and all(len(q) >= chunk for q in queues.values()):
            yield _take(queues, chunk, meta, ids)
    if not queues:
        raise UsageError("stdin: no data rows after the header")
    if len(queues) != batch:
        raise UsageError(
            f"stdin: {len(queues)} sequence(s); this stateful model was exported for a batch "
            f"of {batch} (export again with --batch {len(queues)})"
        )
    left = {len(q) for q in queues.values()}
    if len(left) != 1:
        raise UsageError(
            f"stdin: the sequences end at different steps ({min(left)}..{max(left)} steps "
            "after the last chunk); a stateful model's sequences must have one length"
        )
    if left.pop():
        yield _take(queues, chunk, meta, ids)


def _take(
    queues: dict[str, list[list[float]]], chunk: int, meta: ExportMeta, ids: list[str]
) -> np.ndarray:
    seqs = []
    for q in queues.values():
        seqs.append(np.array(q[:chunk], dtype=np.float32))
        del q[:chunk]
    return np.stack(_check_sequences(seqs, meta, "stdin", ids))


def stream_records(
    model: ExportedModel, chunks: Iterable[np.ndarray], ids: list[str]
) -> Iterator[list[dict[str, Any]]]:
    """Feed a stateful model chunk by chunk; after each, one record per sequence.

    Records carry ``step``: the steps read so far. For ``classify_steps`` a record
    holds the chunk's steps, ``t0`` the first of them.
    """
    meta, labels = model.meta, labels_of(model.meta)
    if not meta.stateful:
        raise UsageError(
            "--stream needs a stateful model (one exported with 'nervana-lstm export --stateful'); "
            f"{model.directory} takes whole sequences"
        )
    model.reset()
    done = 0
    for x in chunks:
        logits = model.infer(x)["logits"]
        records = []
        for i, sid in enumerate(ids):
            rec = _record(meta, labels, sid, logits[i], None)
            if meta.target == "classify_steps":
                rec = {"id": sid, "t0": done, **{k: v for k, v in rec.items() if k != "id"}}
            records.append({**rec, "step": done + x.shape[1]})
        done += x.shape[1]
        yield records
    model.reset()


# ---------------------------------------------------------------------- writing


def _g(value: float) -> str:
    return f"{value:.9g}"


def csv_rows(meta: ExportMeta, records: list[dict[str, Any]], *, header: bool = True) -> str:
    """Records as CSV text: one row per sequence (per step for ``classify_steps``)."""
    labels = labels_of(meta)
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    streamed = bool(records) and "step" in records[0]
    has_target = bool(records) and "target" in records[0]
    if meta.target == "regress_last":
        width = len(records[0]["values"]) if records else meta.output_size
        names = ["value"] if width == 1 else [f"value_{k}" for k in range(width)]
        if header:
            target = ["target"] if width == 1 else [f"target_{k}" for k in range(width)]
            out.writerow(
                [
                    "sequence_id",
                    *(["step"] if streamed else []),
                    *names,
                    *(target if has_target else []),
                ]
            )
        for r in records:
            out.writerow(
                [r["id"], *([r["step"]] if streamed else []), *map(_g, r["values"]),
                 *(map(_g, r["target"]) if has_target else [])]
            )  # fmt: skip
    elif meta.target == "classify_last":
        if header:
            out.writerow(
                ["sequence_id", *(["step"] if streamed else []), "label",
                 *(f"p_{c}" for c in labels), *(["target"] if has_target else [])]
            )  # fmt: skip
        for r in records:
            out.writerow(
                [r["id"], *([r["step"]] if streamed else []), r["label"],
                 *map(_g, r["probabilities"]), *([r["target"]] if has_target else [])]
            )  # fmt: skip
    else:
        if header:
            out.writerow(
                ["sequence_id", "t", "label", *(f"p_{c}" for c in labels),
                 *(["target"] if has_target else [])]
            )  # fmt: skip
        for r in records:
            t0 = r.get("t0", 0)
            for k, (label, probs) in enumerate(zip(r["labels"], r["probabilities"], strict=True)):
                out.writerow(
                    [r["id"], t0 + k, label, *map(_g, probs),
                     *([r["target"][k]] if has_target else [])]
                )  # fmt: skip
    return buf.getvalue()


def json_line(record: dict[str, Any]) -> str:
    """One record as a line of JSON (streamed output)."""
    return json.dumps(record, ensure_ascii=False) + "\n"


def json_text(meta: ExportMeta, records: list[dict[str, Any]], source: str) -> str:
    """Records as one JSON document, with the model's task, target and class labels."""
    doc = {
        "model": source,
        "task": meta.task,
        "target": meta.target,
        "classes": labels_of(meta) if meta.target != "regress_last" else None,
        "predictions": records,
    }
    return json.dumps(doc, ensure_ascii=False, indent=1) + "\n"


def output_format(out: str | Path | None, fmt: str | None) -> str:
    """``fmt`` if given, else by ``out``'s extension (``.json``: json), else csv."""
    if fmt is not None:
        if fmt not in OUTPUT_FORMATS:
            raise UsageError(
                f"unknown format {fmt!r}; expected one of: {', '.join(OUTPUT_FORMATS)}"
            )
        return fmt
    return "json" if out is not None and str(out).lower().endswith(".json") else "csv"


def write_records(text: str, out: str | Path) -> None:
    """Write ``text`` to ``out`` atomically (the old file, or the whole new one)."""
    from nervana_lstm.atomic import write_text_atomic

    out = Path(out)
    if out.is_dir():
        raise UsageError(f"--out {out} is a directory; expected a file path (.csv or .json)")
    try:
        write_text_atomic(out, text)
    except OSError as exc:
        raise UsageError(f"cannot write --out {out}: {exc.strerror or exc}") from None
