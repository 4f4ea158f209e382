"""Examples of the adding and copy tasks drawn with numpy, for the torch-free runtime.

``nervana-lstm infer MODEL --example N`` needs inputs for a model trained on a
synthetic task. The tasks' own generators (``nervana_lstm.data.adding``,
``nervana_lstm.data.copying``) draw from ``torch.Generator`` streams, which numpy
cannot reproduce and which would bring torch into a process that must run without
it. These functions draw from the same documented distributions with numpy
instead: the examples are new draws of the task (never the training or held-out
batches), with their targets, so the predictions can be checked against them.

adding, ``T`` steps (batch first here)::

    x[n, t, 0] ~ U[0, 1];  x[n, t, 1] = 1 at t in {a, b}, else 0
    a ~ U{0..T//2-1},  b ~ U{T//2..T-1},  y[n] = x[n, a, 0] + x[n, b, 0]

copy, ``T + 20`` steps, symbols ``s_k ~ U{1..8}``::

    x[n] = s_0..s_9, 0 (T-1 times), 9, 0 (10 times)
    y[n] = 0 (T+10 times), s_0..s_9
"""

from __future__ import annotations

import numpy as np

from nervana_lstm.errors import UsageError, short_repr
from nervana_lstm.resources import check_fits

__all__ = ["BLANK", "DELIMITER", "EXAMPLE_TASKS", "N_RECALL", "N_SYMBOLS", "task_examples"]

# The copy task's layout; equal to nervana_lstm.data.copying's constants (a test checks).
BLANK = 0
DELIMITER = 9
N_SYMBOLS = 8
N_RECALL = 10
#: tasks whose examples can be drawn without their training data
EXAMPLE_TASKS = ("adding", "copy")


def adding_examples(n: int, T: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``x`` (N, T, 2) float32 and ``y`` (N, 1) float32 of the adding problem."""
    half = T // 2
    values = rng.random((n, T), dtype=np.float32)  # (N, T)
    first = rng.integers(0, half, n)  # (N,)
    second = rng.integers(half, T, n)  # (N,)
    markers = np.zeros((n, T), np.float32)
    rows = np.arange(n)
    markers[rows, first] = 1.0
    markers[rows, second] = 1.0
    x = np.stack([values, markers], axis=-1)  # (N, T, 2)
    y = (values[rows, first] + values[rows, second])[:, None]  # (N, 1)
    return x, y.astype(np.float32)


def copy_examples(n: int, T: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``x`` and ``y``, each (N, T + 20) int64 token ids, of the copying task."""
    length = T + 2 * N_RECALL
    symbols = rng.integers(1, N_SYMBOLS + 1, (n, N_RECALL))  # (N, 10)
    x = np.full((n, length), BLANK, dtype=np.int64)
    x[:, :N_RECALL] = symbols
    x[:, length - N_RECALL - 1] = DELIMITER
    y = np.full((n, length), BLANK, dtype=np.int64)
    y[:, -N_RECALL:] = symbols
    return x, y


def task_examples(task: str, options: dict, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` examples ``(x, y)`` of ``task`` with its training options (``T``), batch first.

    Raises:
        UsageError: a task whose examples need its data (charlm, files), or a bad ``n``.
    """
    if task not in EXAMPLE_TASKS:
        raise UsageError(
            f"--example draws inputs of the {' and '.join(EXAMPLE_TASKS)} tasks; this model was "
            f"trained on {task!r}: give its input with --input"
            + (" (or generate text with 'nervana-lstm sample')" if task == "charlm" else "")
        )
    if not 1 <= n <= 1_000_000:
        raise UsageError(f"--example expects 1..1000000 sequences, got {n}")
    lag = options.get("T")
    if not isinstance(lag, int) or lag < (2 if task == "adding" else 1):
        raise UsageError(
            f"the model's metadata has no usable task option T (got {short_repr(lag)})"
        )
    steps = lag if task == "adding" else lag + 2 * N_RECALL
    # drawing, stacking and the per-step outputs: well under this many bytes per step
    check_fits(f"--example {n} (T={steps})", {"examples": n * steps * 64}, ["--example"])
    rng = np.random.default_rng(seed)
    return adding_examples(n, lag, rng) if task == "adding" else copy_examples(n, lag, rng)
