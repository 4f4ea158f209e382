"""The one entry point: :func:`make_rnn` builds any kind in either implementation."""

from __future__ import annotations

from torch import nn

from nervana_lstm.cells.common import check_impl, check_kind, check_sizes

__all__ = ["make_rnn"]


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
