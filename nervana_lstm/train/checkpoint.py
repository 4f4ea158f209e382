"""Checkpoints: what one holds, how it is written safely, and how a run or a model comes back.

File layout (one ``torch.save`` file, readable with ``torch.load(weights_only=True)``)::

    {"format": "nervana-lstm-checkpoint", "version": 1,
     "sha256": hex digest of payload bytes,
     "payload": uint8 tensor = torch.save bytes of the state dict below}

    state = {"config": resolved config (dict of primitives),
             "step": int, "backend": str, "precision": str, "world_size": int,
             "model": {name: tensor}, "optimizer": optimizer.state_dict(),
             "rng": (P, S) uint8 tensor, one torch RNG state per process,
             "carry": None | tensor | [tensor, tensor]  (the full-batch recurrent state),
             "vocab": None | [str],  "best": float | None, "evals_since_best": int,
             "extra": {str: primitive}  (optional)}

Only tensors and primitive containers are stored, so loading needs no pickle of
arbitrary objects. The digest makes an accident (a flipped byte, a truncated
copy) a clear error rather than silently wrong weights; it is no defence against
a deliberate change, since anyone can recompute it. A loaded file is therefore
checked as if hostile (:mod:`nervana_lstm.train.safe_load`): archive sizes before
anything is inflated, then every field's type and range (``step`` within
``0..train.steps``, RNG states of the torch shape, finite weights...).

Three ways in and out:

    snapshot(...)        -> state       every process calls it (it gathers RNG states
                                        and carried rows); rank 0 writes it
    restore(path, cfg, ...) -> Resumed  a run's last checkpoint, checked against the
                                        config that continues it; it then loads the
                                        weights and gives back the run's Progress
    load_trained(path)   -> Trained     the model of any task, rebuilt for use
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nervana_lstm import backends
from nervana_lstm.atomic import atomic_path
from nervana_lstm.choices import PRECISIONS, CellsImpl, Precision
from nervana_lstm.config import RunConfig, config_from_dict
from nervana_lstm.data import TaskSpec, make_task, shard_slice
from nervana_lstm.data.charlm import charlm_spec
from nervana_lstm.data.files import files_spec
from nervana_lstm.data.vocab import CharVocab
from nervana_lstm.errors import UsageError
from nervana_lstm.models import SequenceModel, build_model
from nervana_lstm.paths import regular_file
from nervana_lstm.train import safe_load
from nervana_lstm.train.accel import AccelChoice, master_state_dict
from nervana_lstm.train.distributed import DistContext, all_gather_rows
from nervana_lstm.train.progress import Progress, map_carry, process_seed

__all__ = [
    "FORMAT",
    "SHAPE_KEYS",
    "VERSION",
    "Resumed",
    "Trained",
    "changed_keys",
    "check_compatible",
    "load_checkpoint",
    "load_trained",
    "restore",
    "save_checkpoint",
    "snapshot",
    "vocab_of",
]

FORMAT = "nervana-lstm-checkpoint"
VERSION = 1

#: config keys that decide the shapes of the weights and of the optimizer state; a checkpoint
#: must agree on all of them
SHAPE_KEYS: tuple[tuple[str, str], ...] = (
    ("task", "name"),
    ("optim", "name"),
    ("model", "kind"),
    ("model", "hidden_size"),
    ("model", "num_layers"),
    ("model", "bidirectional"),
    ("model", "embedding_dim"),
)


def save_checkpoint(path: str | Path, state: Mapping[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically: a temp file in the same directory, then rename."""
    path = Path(path)
    _check_safe(dict(state), "state")
    path.parent.mkdir(parents=True, exist_ok=True)
    inner = io.BytesIO()
    torch.save(dict(state), inner)
    data = inner.getvalue()
    wrapper = {
        "format": FORMAT,
        "version": VERSION,
        "sha256": hashlib.sha256(data).hexdigest(),
        "payload": torch.frombuffer(bytearray(data), dtype=torch.uint8),
    }
    with atomic_path(path, fsync=True) as tmp, open(tmp, "wb") as fh:
        writer = _Writer(fh)
        try:
            torch.save(wrapper, writer)
        except RuntimeError:
            if writer.error is None:
                raise
            raise writer.error from None  # the disk's own error, not torch's "unexpected pos"


class _Writer:
    """A file for ``torch.save`` that keeps the OSError of a failed write.

    torch's zip writer reports a write that failed part-way (a full disk) as a
    RuntimeError about an unexpected position; the OSError kept here says why.
    """

    def __init__(self, fh: io.BufferedWriter) -> None:
        self._fh = fh
        self.name = fh.name
        self.error: OSError | None = None

    def write(self, data: bytes) -> int:
        try:
            return self._fh.write(data)
        except OSError as exc:
            self.error = self.error or exc
            raise

    def flush(self) -> None:
        self._fh.flush()


_PRIMITIVES = (str, int, float, bool, type(None), torch.Tensor)


def _check_safe(value: Any, where: str) -> None:
    """Only what ``torch.load(weights_only=True)`` reads back: tensors and primitive containers."""
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str | int):
                raise TypeError(f"checkpoint key {where}[{k!r}] is not a str or int")
            _check_safe(v, f"{where}[{k!r}]")
    elif isinstance(value, list | tuple):
        for i, v in enumerate(value):
            _check_safe(v, f"{where}[{i}]")
    elif not isinstance(value, _PRIMITIVES):
        raise TypeError(
            f"checkpoint value {where} is a {type(value).__name__}, not storable safely"
        )


def _bad(path: Path, why: str) -> UsageError:
    return UsageError(f"{path} is not a usable nervana-lstm checkpoint: {why}")


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load and verify a checkpoint; anything else (garbage, tampered, foreign) is refused.

    The archive's sizes are checked before anything is unpickled, the digest before
    the payload is, and every field of the state after (:mod:`.safe_load`). The
    digest catches accidents (a flipped byte, a truncated copy), not tampering:
    anyone can recompute it, which is why every field is checked as well.
    """
    path = regular_file(path, "checkpoint", "a .pt file written by 'nervana-lstm train'")
    try:
        size = path.stat().st_size
        safe_load.check_zip_sizes(path, size, "the file")
        wrapper = safe_load.load_archive(path, "the file")
        payload = _payload(wrapper)
        view = payload.numpy()  # the payload's bytes, not a copy of them
        if hashlib.sha256(view).hexdigest() != wrapper["sha256"]:
            raise safe_load.BadCheckpoint(
                "its content does not match the stored SHA-256 (modified or corrupted)"
            )
        inner = safe_load.MemoryFile(view)
        safe_load.check_zip_sizes(inner, len(view), "the payload")
        state = safe_load.load_archive(inner, "the payload")
        safe_load.check_state(state, str(path))
    except safe_load.BadCheckpoint as exc:
        raise _bad(path, str(exc)) from None
    except OSError as exc:
        raise UsageError(f"checkpoint {path} cannot be read ({exc.strerror or exc})") from None
    return state


def _payload(wrapper: Any) -> torch.Tensor:
    """The wrapper's payload tensor, once its marker, version and digest field check out."""
    if not isinstance(wrapper, dict) or wrapper.get("format") != FORMAT:
        raise safe_load.BadCheckpoint("it has no nervana-lstm format marker")
    if wrapper.get("version") != VERSION:
        raise safe_load.BadCheckpoint(
            f"format version {wrapper.get('version')!r}, expected {VERSION}"
        )
    payload = wrapper.get("payload")
    if not isinstance(payload, torch.Tensor) or payload.dtype != torch.uint8 or payload.dim() != 1:
        raise safe_load.BadCheckpoint("the payload is missing")
    if not isinstance(wrapper.get("sha256"), str):
        raise safe_load.BadCheckpoint("the SHA-256 of the payload is missing")
    if not payload.is_contiguous() or payload.storage_offset() + payload.numel() > (
        payload.untyped_storage().nbytes()
    ):
        raise safe_load.BadCheckpoint("the payload is not one contiguous run of bytes")
    return payload


def check_compatible(saved: Mapping[str, Any], current: Mapping[str, Any], path: Path) -> None:
    """Refuse a checkpoint whose task or model shape differs from the config's."""
    problems = []
    for section, key in SHAPE_KEYS:
        old = (saved.get(section) or {}).get(key)
        new = (current.get(section) or {}).get(key)
        if old != new:
            problems.append(
                f"{section}.{key} is {old!r} in the checkpoint but {new!r} in the config"
            )
    if problems:
        raise UsageError(f"checkpoint {path} does not match the config: " + "; ".join(problems))


def changed_keys(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two resolved configs."""
    out = []
    for section in sorted(set(saved) | set(current)):
        a, b = saved.get(section) or {}, current.get(section) or {}
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                out.append(f"{section}.{key}")
    return out


def vocab_of(task: object) -> list[str] | None:
    """The characters of a task's vocabulary (charlm), which rebuild it; None for other tasks."""
    chars = getattr(getattr(task, "vocab", None), "chars", None)
    return list(chars) if chars is not None else None


# ------------------------------------------------------------------ a run's state


def snapshot(
    cfg: RunConfig,
    progress: Progress,
    *,
    backend: str,
    precision: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    ctx: DistContext,
    vocab: Sequence[str] | None,
) -> dict[str, Any]:
    """Everything ``--resume`` needs to go on exactly as the uninterrupted run would.

    ``model`` is the trained module without its DistributedDataParallel wrapper.
    Every process must call this (collectives gather each process's RNG state and
    carried rows); rank 0 writes the result with :func:`save_checkpoint`.
    """
    rng = all_gather_rows(ctx, torch.get_rng_state().unsqueeze(0), dim=0)  # (P, S)
    carry = map_carry(progress.carry, lambda s: all_gather_rows(ctx, s.detach(), dim=1))
    return {
        "config": cfg.to_dict(),
        "step": progress.step,
        "backend": backend,
        "precision": precision,
        "world_size": ctx.world_size,
        "model": master_state_dict(model, optimizer),
        "optimizer": optimizer.state_dict(),
        "rng": rng,
        "carry": list(carry) if isinstance(carry, tuple) else carry,
        "vocab": list(vocab) if vocab is not None else None,
        "best": progress.best,
        "evals_since_best": progress.evals_since_best,
    }


@dataclass(frozen=True)
class Resumed:
    """A run's last checkpoint, already checked against the config that continues it.

    A resumed run asks it, in order, for the backend (``train.accel: auto``), then
    the weights (into the plain model, before the backend is applied), then its
    :class:`~nervana_lstm.train.progress.Progress`.
    """

    path: Path
    state: dict[str, Any]

    @property
    def step(self) -> int:
        return int(self.state["step"])

    @property
    def precision(self) -> Precision:
        """The precision the run trained in (``train.precision: auto`` keeps it)."""
        value = self.state["precision"]
        if value not in PRECISIONS:
            raise UsageError(
                f"checkpoint {self.path} says it trained in precision {value!r}; expected one "
                f"of {', '.join(PRECISIONS)}"
            )
        return value  # type: ignore[no-any-return]

    def backend_choice(self) -> AccelChoice:
        """``auto`` keeps the backend the run started with, which must still run here."""
        choice = AccelChoice(self.state["backend"], "auto: the backend this run started with")
        backends.require(choice.backend)
        return choice

    def load_weights(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        """Weights and optimizer state into the freshly built ``model`` and ``optimizer``."""
        try:
            model.load_state_dict(self.state["model"])
            optimizer.load_state_dict(self.state["optimizer"])
            misfit = safe_load.state_shapes_fit(optimizer)
        except (RuntimeError, ValueError, KeyError, TypeError, IndexError) as exc:
            misfit = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        if misfit:
            raise UsageError(f"checkpoint {self.path} does not fit this task and model: {misfit}")

    def progress(
        self, cfg: RunConfig, ctx: DistContext, stateful: bool, say: Callable[[str], object]
    ) -> Progress:
        """The step, best loss, this process's RNG state and its rows of the carried state.

        With another process count than the checkpoint's, the dropout RNG is
        reseeded from ``(seed, step, rank)`` and the carried rows are split anew.
        """
        rng = self.state.get("rng")
        if isinstance(rng, torch.Tensor) and rng.shape[0] == ctx.world_size:
            torch.set_rng_state(rng[ctx.rank].clone())
        else:
            say("resume: process count changed; dropout RNG reseeded from (seed, step, rank)")
            torch.manual_seed(process_seed(cfg.train.seed + self.step, ctx.rank))
        carry = None
        if stateful and self.state.get("carry") is not None:
            misfit = safe_load.carry_fits(self.state["carry"], cfg)
            if misfit:
                raise UsageError(f"checkpoint {self.path} cannot continue this run: {misfit}")
            full = self.state["carry"]
            full = tuple(full) if isinstance(full, list | tuple) else full
            rows = shard_slice(cfg.train.batch_size, ctx.rank, ctx.world_size)
            carry = map_carry(full, lambda s: s[:, rows].clone())  # this process's rows
        return Progress(
            step=self.step,
            best=self.state.get("best"),
            evals_since_best=int(self.state.get("evals_since_best", 0)),
            carry=carry,
        )


def restore(
    path: Path, cfg: RunConfig, vocab: Sequence[str] | None, say: Callable[[str], object]
) -> Resumed:
    """Load ``path`` to continue a run of ``cfg`` whose task has ``vocab``.

    Refused: a file that is not a checkpoint, a task or model shape other than the
    config's (:data:`SHAPE_KEYS`), a vocabulary other than the corpus's. Other
    config changes (steps, learning rate...) are allowed and named.
    """
    state = load_checkpoint(path)
    check_compatible(state["config"], cfg.to_dict(), path)
    changed = changed_keys(state["config"], cfg.to_dict())
    if changed:
        say(f"resume: config differs from the checkpoint in {', '.join(changed)}")
    if state.get("vocab") is not None and list(vocab or []) != state["vocab"]:
        raise UsageError(
            f"checkpoint {path} was trained on another text: its vocabulary differs "
            "from this corpus's"
        )
    return Resumed(path, state)


# ------------------------------------------------------------ a model for use


@dataclass(frozen=True)
class Trained:
    """A trained model rebuilt from its checkpoint, with what it was trained on."""

    model: SequenceModel  # in eval mode
    spec: TaskSpec
    vocab: CharVocab | None  # charlm only
    config: RunConfig
    step: int
    state: dict[str, Any]  # the whole checkpoint, as load_checkpoint returns it


def load_trained(path: str | Path, impl: CellsImpl = "fused") -> Trained:
    """Rebuild the model saved in ``path`` with the ``impl`` cells, in eval mode.

    No training data is read: charlm's vocabulary is in the checkpoint, a files
    task's sizes are read off the weights, and the synthetic tasks build their
    spec without generating data.
    """
    path = Path(path)
    state = load_checkpoint(path)
    cfg = config_from_dict(state["config"], f"config saved in {path}")
    vocab = None
    if cfg.task.name == "charlm":
        chars = state.get("vocab")
        if not isinstance(chars, list):
            raise UsageError(f"{path} holds a 'charlm' model but not its vocabulary")
        vocab = CharVocab.from_chars(chars)
    spec = _spec_for(cfg, state["model"], vocab, path)
    model = build_model(spec, cfg.model, impl)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise UsageError(f"{path}: weights do not fit the saved config ({exc})") from None
    return Trained(model.eval(), spec, vocab, cfg, int(state["step"]), state)


def _spec_for(
    cfg: RunConfig, weights: Mapping[str, torch.Tensor], vocab: CharVocab | None, path: Path
) -> TaskSpec:
    """The task spec a saved model was built for."""
    name = cfg.task.name
    if vocab is not None:
        return charlm_spec(vocab)
    if name == "files":  # the sizes come from the user's file, which may be gone: read the weights
        w_in, w_out = weights.get("rnn.weight_ih_l0"), weights.get("head.weight")
        if w_in is None or w_out is None:
            raise UsageError(
                f"{path}: weights do not fit the saved config (expected rnn.weight_ih_l0 and "
                f"head.weight, found {', '.join(sorted(weights)[:6])})"
            )
        return files_spec(int(w_in.shape[1]), int(w_out.shape[0]), cfg.task.options["target"])
    return make_task(name, **cfg.task.options).spec  # synthetic: its data is drawn lazily
