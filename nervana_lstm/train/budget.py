"""The memory a training run needs, estimated from its config before anything is allocated.

Per process, in bytes (4 per float). ``T`` steps per sequence, ``N`` rows of a
training batch per process (``train.batch_size`` / processes), ``B`` rows of an
evaluation batch (``eval.batch_size``, else ``train.batch_size``), ``M`` held-out
sequences, ``H`` hidden size, ``L`` layers, ``D`` directions, ``G`` gate blocks
(rnn 1, gru 3, lstm and dglstm 4), ``E`` the first layer's input width (the
features, or ``model.embedding_dim`` for token tasks), ``O`` the outputs of each
step (per-step targets; 0 when the target is read after the last step), ``P``
the parameters (recurrent stack, embedding, head) and ``S`` the optimizer's
slots per parameter (adamw 2, sgd with momentum 1, plain sgd 0)::

    activations  4·T·N·((10·G + 8)·L·D·H + 4·(E + O))  forward kept for backward, and
                                                       backward's buffers of the same size
    evaluation   4·T·B·((G + 2)·D·H + E + O)          one held-out batch, no gradients
    parameters   4·P·(2 + S + X)                      weights, gradients, optimizer state;
                                                       X = 1 for bf16, IPEX or auto (a copy)
    task data    adding  24·T·(N + M)                 values, markers, the stacked input
                 copy    32·(T + 20)·(N + M)          int64 inputs and targets
                 files   8·T·N·F                      a padded batch (the file is read)
    overhead     256 MiB                              thread pools, primitive caches

The activation factor ``10·G + 8`` bounds what one training step of the
``onednn``, ``reference`` and ``ipex`` backends was measured to hold per
``T·N·H`` and layer (about 16, 23 and 36 floats for an LSTM); ``accel: auto``
tries each backend, so the largest counts. The estimate is compared with
:func:`nervana_lstm.resources.available_memory` twice: from the config alone
before the task is built (the synthetic tasks' data, sizes and weights), and
again with the task's real sizes (vocabulary, the longest sequence of a file)
before the model is built. A run that does not fit is refused with the options
that shrink its largest parts.

One call of a bare recurrent stack (what ``nervana-lstm bench`` times) needs, by
the same factors, with ``I`` its input size::

    stack_call_bytes = 4·T·N·(a·L·D·H + k·I) + 4·P·w
    training:  a = 10·G + 8, k = 2, w = 3      inference:  a = G + 2, k = 1, w = 1
"""

from __future__ import annotations

from dataclasses import dataclass

from nervana_lstm.cells import count_params
from nervana_lstm.choices import IPEX_BACKENDS, gate_count
from nervana_lstm.config import RunConfig
from nervana_lstm.data.base import Task, TaskSpec
from nervana_lstm.resources import MemoryLimit, check_fits

__all__ = [
    "OVERHEAD_BYTES",
    "RunShape",
    "check_training_memory",
    "estimate_training",
    "run_shape",
    "stack_call_bytes",
]

#: what a run holds besides its tensors: thread pools, oneDNN primitive caches
OVERHEAD_BYTES = 256 * 2**20
_FLOAT = 4


@dataclass(frozen=True)
class RunShape:
    """The sizes the estimate reads, from the config and, once built, the task."""

    steps: int  # T
    input_width: int  # features, or the embedding width of token tasks
    vocab: int  # embedding rows (token tasks), else 0
    outputs: int  # head outputs
    per_step: bool  # outputs at every step (classify_steps)
    steps_key: str  # the option that sets T, for the message
    data_per_row: int  # bytes of task data per training or held-out row
    held_out: int = 0  # held-out sequences drawn with the task (adding, copy), else 0
    eval_rows: int | None = None  # the most rows an evaluation batch can have; None: unknown


def _steps_key(cfg: RunConfig) -> str:
    name = cfg.task.name
    if name in ("adding", "copy"):
        return "task.options.T"
    if name == "charlm":
        return "task.options.seq_len"
    return f"the longest sequence of {cfg.task.options['path']}"


def run_shape(cfg: RunConfig, task: Task | None = None) -> RunShape:
    """The run's sizes: from ``task`` when it is built, else what the config alone tells."""
    name, opts = cfg.task.name, cfg.task.options
    key = _steps_key(cfg)
    if name == "adding":
        T, M = int(opts["T"]), int(opts["eval_size"])
        return RunShape(T, 2, 0, 1, False, key, 24 * T, M, M)
    if name == "copy":
        T, M = int(opts["T"]) + 20, int(opts["eval_size"])
        return RunShape(T, cfg.model.embedding_dim, 10, 9, True, key, 32 * T, M, M)
    spec: TaskSpec | None = task.spec if task is not None else None
    if name == "charlm":
        seq_len = int(opts["seq_len"])
        if spec is None:  # the vocabulary is the text's characters, known once it is read
            return RunShape(seq_len, cfg.model.embedding_dim, 2, 2, True, key, 0)
        eval_ids = getattr(task, "eval_ids", None)
        streams = None if eval_ids is None else max(1, (len(eval_ids) - 1) // seq_len)
        V = spec.input_size
        return RunShape(seq_len, cfg.model.embedding_dim, V, V, True, key, 0, 0, streams)
    if spec is None:  # files: nothing is known before the file is read
        return RunShape(0, 1, 0, 1, False, key, 0)
    lengths = getattr(task, "lengths", None)
    T = int(lengths.max()) if lengths is not None and len(lengths) else 1
    eval_index = getattr(task, "eval_index", None)
    F, O = spec.input_size, spec.output_size
    held = None if eval_index is None else len(eval_index)
    return RunShape(T, F, 0, O, False, key, 8 * T * F, 0, held)


def estimate_training(
    cfg: RunConfig, shape: RunShape, world_size: int = 1
) -> tuple[dict[str, int], dict[str, list[str]]]:
    """(bytes of each part, the options that shrink each part) for one process; see the
    module docstring for the formulas."""
    m = cfg.model
    T, N = shape.steps, max(1, cfg.train.batch_size // max(1, world_size))
    B = cfg.eval.batch_size or cfg.train.batch_size
    B = min(B, shape.eval_rows) if shape.eval_rows is not None else B
    G, D, H, L = gate_count(m.kind), 2 if m.bidirectional else 1, m.hidden_size, m.num_layers
    O_step = shape.outputs if shape.per_step else 0
    E = shape.input_width
    held_out = shape.held_out

    P = count_params(m.kind, E, H, L, bidirectional=D == 2)
    P += shape.vocab * E + D * H * shape.outputs + shape.outputs
    slots = 2 if cfg.optim.name == "adamw" else (1 if cfg.optim.momentum > 0 else 0)
    copies = cfg.train.precision in ("bf16", "auto") or cfg.train.accel in (*IPEX_BACKENDS, "auto")
    extra = 1 if copies else 0

    parts = {
        "activations": _FLOAT * T * N * ((10 * G + 8) * L * D * H + 4 * (E + O_step)),
        "evaluation": _FLOAT * T * B * ((G + 2) * D * H + E + O_step),
        "parameters and optimizer state": _FLOAT * P * (2 + slots + extra),
        "task data": shape.data_per_row * (N + held_out),
        "overhead": OVERHEAD_BYTES,
    }
    T_key, deep = shape.steps_key, ["model.hidden_size", "model.num_layers"]
    keys = {
        "activations": [T_key, "train.batch_size", *deep],
        "evaluation": [T_key, "eval.batch_size" if cfg.eval.batch_size else "train.batch_size"],
        "parameters and optimizer state": [*deep]
        + (["model.embedding_dim"] if shape.vocab else []),
        "task data": (["task.options.eval_size"] if held_out > N else [])
        + [T_key, "train.batch_size"],
        "overhead": [],
    }
    return parts, keys


def stack_call_bytes(
    kind: str,
    seq_len: int,
    batch: int,
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    *,
    training: bool,
    bidirectional: bool = False,
) -> int:
    """Bytes one forward (``training=False``) or forward + backward + update of a bare
    stack holds: its activations, input and weights (see the module docstring)."""
    G, D = gate_count(kind), 2 if bidirectional else 1
    P = count_params(kind, input_size, hidden_size, num_layers, bidirectional=bidirectional)
    a, k, w = (10 * G + 8, 2, 3) if training else (G + 2, 1, 1)
    per_row_step = a * num_layers * D * hidden_size + k * input_size
    return _FLOAT * seq_len * batch * per_row_step + _FLOAT * P * w


def check_training_memory(
    cfg: RunConfig,
    task: Task | None = None,
    *,
    world_size: int = 1,
    local_processes: int = 1,
    limit: MemoryLimit | None = None,
) -> int:
    """Refuse ``cfg`` when its estimate exceeds the memory this process may use.

    Call it once before the task is built (``task`` None) and once after, before the
    model. ``local_processes`` training processes on this machine share its memory.
    Returns the estimate in bytes.
    """
    parts, keys = estimate_training(cfg, run_shape(cfg, task), world_size)
    total = sum(parts.values())
    big = [name for name, n in sorted(parts.items(), key=lambda kv: -kv[1]) if n >= total // 10]
    lower = [key for name in big for key in keys[name]]
    return check_fits(
        f"this run ({cfg.task.name}, {cfg.model.kind} H={cfg.model.hidden_size})",
        parts,
        lower,
        processes=local_processes,
        limit=limit,
    )
