"""FLOP counts for recurrent layers: the formulas every GFLOP/s figure is built on.

Only the matrix products are counted (one multiply-add = 2 FLOPs); the
element-wise gate arithmetic (sigmoid, tanh, the cell update) is ignored, as in
DeepBench and cuDNN's own figures. For one layer and one direction, with ``G``
gate blocks, input size ``I``, hidden size ``H``, ``T`` steps and batch ``N``::

    full       = 2 * G * H * (I + H) * T * N      # input and recurrent products
    recurrent  = 2 * G * H * H * T * N            # DeepBench's count (8·T·N·H² for LSTM)

``G`` is the number of ``H``-wide blocks in ``weight_ih``/``weight_hh``:

    rnn     G = 1   (h' = tanh(W_ih x + W_hh h))
    lstm    G = 4   (i, f, g, o)
    gru     G = 3   (r, z, n)
    dglstm  G = 4 on the recurrent side; on the input side 4 in layer 0 and 5
            above it (the depth gate d = sigmoid(W_xd x + w_cd * c + w_ld * c_lower)
            of layers 1.. adds one input block; its cell terms are element-wise)

Layers above the first see ``D * H`` inputs (``D`` = 2 when bidirectional).

Training is counted as **3x the forward count**: the backward pass computes
two products per forward product (the gradient with respect to the input and
the one with respect to the weights), the usual convention (DeepBench, cuDNN
and the scaling-law literature use the same). The optimizer step is
element-wise and not counted.
"""

from __future__ import annotations

from nervana_lstm.choices import KINDS, MODES, gate_count
from nervana_lstm.errors import UsageError

__all__ = [
    "COUNTS",
    "GATES_HH",
    "GATES_IH",
    "TRAIN_FACTOR",
    "deepbench_flops",
    "forward_flops",
    "full_flops",
    "mode_flops",
]

#: gate blocks multiplying the previous hidden state (``weight_hh`` is ``G_hh * H`` rows)
GATES_HH: dict[str, int] = {kind: gate_count(kind) for kind in KINDS}
#: gate blocks multiplying the input (``weight_ih`` is ``G_ih * H`` rows; for dglstm
#: the depth gate's ``weight_xd`` adds one block in layers above the first)
GATES_IH: dict[str, int] = {kind: gate_count(kind) + (kind == "dglstm") for kind in KINDS}
#: training step = forward + backward, counted as this many forward passes
TRAIN_FACTOR = 3
#: the two counting conventions a report can name
COUNTS: tuple[str, ...] = ("full", "recurrent")


def _gates(kind: str) -> tuple[int, int]:
    if kind not in GATES_HH:
        raise UsageError(f"unknown RNN kind {kind!r}; expected one of: {', '.join(GATES_HH)}")
    return GATES_IH[kind], GATES_HH[kind]


def full_flops(
    kind: str,
    seq_len: int,
    batch: int,
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    bidirectional: bool = False,
) -> int:
    """Forward FLOPs of every matrix product: ``2·H·(G_ih·I + G_hh·H)·T·N`` per layer.

    For an LSTM this is the familiar ``2·4H·(I+H)·T·N``.
    """
    g_ih, g_hh = _gates(kind)
    dirs = 2 if bidirectional else 1
    total = 0
    layer_in = input_size
    for k in range(num_layers):
        blocks = GATES_HH[kind] if (kind == "dglstm" and k == 0) else g_ih  # no depth gate
        per_dir = 2 * hidden_size * (blocks * layer_in + g_hh * hidden_size) * seq_len * batch
        total += dirs * per_dir
        layer_in = dirs * hidden_size
    return total


def deepbench_flops(
    kind: str,
    seq_len: int,
    batch: int,
    hidden_size: int,
    num_layers: int = 1,
    bidirectional: bool = False,
) -> int:
    """Forward FLOPs of the recurrent products only: ``2·G_hh·H²·T·N`` per layer and direction.

    DeepBench's convention (``8·T·N·H²`` for an LSTM); it leaves out the input
    projection, which can be batched over all steps.
    """
    _, g_hh = _gates(kind)
    dirs = 2 if bidirectional else 1
    return num_layers * dirs * 2 * g_hh * hidden_size * hidden_size * seq_len * batch


def forward_flops(count: str, kind: str, shape: dict[str, int | bool]) -> int:
    """Forward FLOPs under the named convention (``full`` or ``recurrent``) for a shape dict.

    ``shape`` holds ``seq_len, batch, input_size, hidden_size`` and optionally
    ``num_layers`` and ``bidirectional``.
    """
    layers = int(shape.get("num_layers", 1))
    bidir = bool(shape.get("bidirectional", False))
    if count == "full":
        return full_flops(
            kind,
            int(shape["seq_len"]),
            int(shape["batch"]),
            int(shape["input_size"]),
            int(shape["hidden_size"]),
            layers,
            bidir,
        )
    if count == "recurrent":
        return deepbench_flops(
            kind,
            int(shape["seq_len"]),
            int(shape["batch"]),
            int(shape["hidden_size"]),
            layers,
            bidir,
        )
    raise UsageError(f"unknown FLOP count {count!r}; expected one of: {', '.join(COUNTS)}")


def mode_flops(count: str, kind: str, shape: dict[str, int | bool], mode: str) -> int:
    """FLOPs of one measured call: the forward count, times :data:`TRAIN_FACTOR` for ``train``."""
    fwd = forward_flops(count, kind, shape)
    if mode == "infer":
        return fwd
    if mode == "train":
        return TRAIN_FACTOR * fwd
    raise UsageError(f"unknown mode {mode!r}; expected one of: {', '.join(MODES)}")
