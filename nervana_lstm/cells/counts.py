"""Parameter arithmetic behind ``nervana-lstm params``: counts and their formulas.

Both agree with the modules :func:`~nervana_lstm.cells.factory.make_rnn` builds,
which the tests check for every kind.
"""

from __future__ import annotations

from nervana_lstm.cells.common import check_kind, check_sizes, gate_count

__all__ = ["count_params", "param_formula"]


def count_params(
    kind: str,
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    *,
    bias: bool = True,
    bidirectional: bool = False,
) -> int:
    """Number of trainable parameters of ``make_rnn(kind, ..., same sizes)``.

    Per layer and direction a kind with ``G`` gate blocks (rnn 1, gru 3, lstm and
    dglstm 4) has ``G*H*(I_k + H)`` weights and ``2*G*H`` biases, with
    ``I_0 = I`` and ``I_k = D*H`` above. dglstm adds to each layer k >= 1 the depth
    gate: ``W_xd`` (H*H), ``w_cd`` and ``w_ld`` (H each) and ``b_d`` (H). Every layer
    above the first has the same count, so the total is ``layer_0 + (L-1) * layer_1``.
    """
    check_kind(kind)
    check_sizes(kind, input_size, hidden_size, num_layers, bidirectional, 0.0)
    h, g = hidden_size, gate_count(kind)
    dirs = 2 if bidirectional else 1
    biases = 2 * g * h if bias else 0

    def layer(layer_in: int) -> int:  # one layer, every direction
        return dirs * (g * h * (layer_in + h) + biases)

    above = layer(dirs * h)  # each of the layers 1 .. L-1
    if kind == "dglstm":
        above += h * h + 2 * h + (h if bias else 0)
    # closed form: a count for any number of layers costs the same
    return layer(input_size) + (num_layers - 1) * above


def param_formula(kind: str, num_layers: int = 1) -> str:
    """The count of :func:`count_params` (bias, one direction) in terms of I, H and L.

    Written with ``·`` for products and ``²`` for squares.
    """
    check_kind(kind)
    one = "H·(I+H) + 2·H" if num_layers == 1 else "H·(I+H) + 2·H + (L-1)·(2·H² + 2·H)"
    g = gate_count(kind)
    core = one if g == 1 else f"{g}·({one})"
    if kind == "dglstm" and num_layers > 1:
        core += " + (L-1)·(H² + 3·H)"
    return core
