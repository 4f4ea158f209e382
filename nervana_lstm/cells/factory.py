"""The one entry point: :func:`make_rnn` builds any kind in either implementation.

Also the parameter arithmetic behind ``nervana-lstm params``:
:func:`count_params` and :func:`param_formula` (they agree with the modules,
which a test checks).
"""

from __future__ import annotations

from torch import nn

from nervana_lstm.cells.common import check_impl, check_kind, check_sizes, gate_count

__all__ = ["count_params", "make_rnn", "param_formula"]


def make_rnn(
    kind: str,
    impl: str,
    input_size: int,
    hidden_size: int,
    num_layers: int = 1,
    *,
    bias: bool = True,
    batch_first: bool = False,
    bidirectional: bool = False,
    dropout: float = 0.0,
) -> nn.Module:
    """A recurrent stack of ``kind`` (``rnn``, ``lstm``, ``gru``, ``dglstm``) built by ``impl``.

    ``impl="fused"`` gives the fastest stock path: ``torch.nn.RNN/LSTM/GRU``
    (reachable as ``net.module``; LSTM runs oneDNN's fused RNN primitive), or for
    ``dglstm`` :class:`~nervana_lstm.cells.dglstm_fused.DGLSTMFused`.
    ``impl="reference"`` gives the unfused textbook form, one matmul per gate and
    step. Both have the same parameters (torch.nn's names and layouts) and load
    each other's ``state_dict``.

    The module's ``forward(x, state=None, lengths=None)`` returns ``(output, state)``:
    ``x`` is (T, N, I) ((N, T, I) with ``batch_first``), ``output`` (T, N, D*H), the
    state ``h`` (rnn, gru) or ``(h, c)`` (lstm, dglstm), each (L*D, N, H).

    Raises:
        UsageError (a ValueError): unknown kind or impl, non-positive sizes,
            dropout outside [0, 1), or a bidirectional dglstm.
    """
    check_kind(kind)
    check_impl(impl)
    check_sizes(kind, input_size, hidden_size, num_layers, bidirectional, dropout)
    options = {
        "bias": bias,
        "batch_first": batch_first,
        "bidirectional": bidirectional,
        "dropout": dropout,
    }
    if impl == "fused" and kind != "dglstm":
        from nervana_lstm.cells.fused import FusedTorchStack

        return FusedTorchStack(kind, input_size, hidden_size, num_layers, **options)
    cls = _stack_class(kind, impl)
    return cls(input_size, hidden_size, num_layers, **options)


def _stack_class(kind: str, impl: str) -> type[nn.Module]:
    if kind == "rnn":
        from nervana_lstm.cells.rnn import RNNReference

        return RNNReference
    if kind == "lstm":
        from nervana_lstm.cells.lstm import LSTMReference

        return LSTMReference
    if kind == "gru":
        from nervana_lstm.cells.gru import GRUReference

        return GRUReference
    if impl == "fused":
        from nervana_lstm.cells.dglstm_fused import DGLSTMFused

        return DGLSTMFused
    from nervana_lstm.cells.dglstm import DGLSTMReference

    return DGLSTMReference


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
    gate: ``W_xd`` (H*H), ``w_cd`` and ``w_ld`` (H each) and ``b_d`` (H).
    """
    check_kind(kind)
    check_sizes(kind, input_size, hidden_size, num_layers, bidirectional, 0.0)
    h, g = hidden_size, gate_count(kind)
    dirs = 2 if bidirectional else 1
    total = 0
    for k in range(num_layers):
        layer_in = input_size if k == 0 else dirs * h
        total += dirs * (g * h * (layer_in + h) + (2 * g * h if bias else 0))
        if kind == "dglstm" and k > 0:
            total += h * h + 2 * h + (h if bias else 0)
    return total


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
