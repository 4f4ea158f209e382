"""Build a trained model as an OpenVINO graph from its weights, with the opset API.

The graph is written op by op from the weights (numpy arrays named as in the
checkpoint), never traced, for three reasons: the recurrent sequence ops take a
``sequence_lengths`` input that a traced ``nn.LSTM`` does not expose; DG-LSTM
has no sequence op, so its recurrence needs a ``TensorIterator`` with a
dynamic trip count, which tracing cannot give; and this module needs no torch.

The model, batch first as OpenVINO tools such as ``benchmark_app`` expect::

    x        (N, T) int64 token ids  ->  e = Gather(embedding, x)       # (N, T, E)
             (N, T, F) float32 features  ->  e = x                       # (N, T, F)
    layer k  y_k, h_n[k], c_n[k] = <Kind>Sequence(y_{k-1}, lengths)      # (N, T, D*H)
    logits   classify_steps: W y_{L-1} + b                               # (N, T, O)
             *_last:         W last(y_{L-1}) + b                         # (N, O)

``last`` is each sequence's output at its own last valid step: the forward
direction's final state, which the sequence op stops at ``lengths``, joined
for a bidirectional stack with the backward direction's final state (the
backward direction ends at step 0, having read the whole sequence). States
``h_0``/``h_n`` (and ``c_0``/``c_n``) are (N, L*D, H): batch first too, row
``k*D + d`` for layer ``k`` and direction ``d``, as in torch's (L*D, N, H)
with the first two axes swapped.

Gate order is the one thing that differs between the two libraries; it is
reordered in :func:`ov_gate_order` alone (torch i,f,g,o -> OpenVINO f,i,c,o for
LSTM; torch r,z,n -> OpenVINO z,r,h for GRU).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from nervana_lstm.choices import has_cell_state
from nervana_lstm.errors import UsageError

if TYPE_CHECKING:
    import openvino as ov

__all__ = [
    "SEQUENCE_OPS",
    "GraphSpec",
    "build_model",
    "build_stack",
    "build_stack_model",
    "ov_gate_order",
    "sequence_op_counts",
]

#: kind -> the OpenVINO op its layers become (dglstm: a TensorIterator per layer)
SEQUENCE_OPS: dict[str, str] = {
    "rnn": "RNNSequence",
    "lstm": "LSTMSequence",
    "gru": "GRUSequence",
    "dglstm": "TensorIterator",
}

#: torch gate block -> OpenVINO gate block, per kind (blocks of H rows)
_GATE_ORDER: dict[str, list[int]] = {"rnn": [0], "lstm": [1, 0, 2, 3], "gru": [1, 0, 2]}


@dataclass(frozen=True)
class GraphSpec:
    """What the graph computes; everything else comes from the weights.

    input_kind: ``"tokens"`` (int64 ids, embedding ``embed.weight``) or ``"features"``.
    per_step: True for ``classify_steps`` (logits at every step), else logits at the last.
    lengths: add an int64 ``lengths`` (N,) input; without it every sequence has T steps.
    state_inputs: add ``h_0`` (and ``c_0``) inputs; without them the state starts at zero.
    batch: a fixed batch size (stateful models need one), or None for a dynamic batch.
    """

    kind: str
    input_size: int
    hidden_size: int
    num_layers: int
    bidirectional: bool
    output_size: int
    input_kind: str
    per_step: bool
    lengths: bool = False
    state_inputs: bool = False
    batch: int | None = None

    @property
    def directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def state_names(self) -> tuple[str, ...]:
        return ("h", "c") if has_cell_state(self.kind) else ("h",)


def ov_gate_order(kind: str, torch_rows: np.ndarray) -> np.ndarray:
    """Reorder the gate blocks along axis 0 from torch's order to OpenVINO's."""
    if kind not in _GATE_ORDER:
        raise UsageError(f"{kind} has no OpenVINO sequence op; expected one of rnn, lstm, gru")
    blocks = np.split(np.asarray(torch_rows), len(_GATE_ORDER[kind]), axis=0)
    return np.concatenate([blocks[i] for i in _GATE_ORDER[kind]], axis=0)


def _weight(weights: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    if name not in weights:
        raise UsageError(
            f"the weights have no {name!r}; found {', '.join(sorted(weights)[:8])}"
            + (" ..." if len(weights) > 8 else "")
        )
    return np.ascontiguousarray(weights[name], dtype=np.float32)


def _port(node: Any) -> Any:
    """The first output of a node, or the output itself."""
    return node.output(0) if hasattr(node, "output") else node


def _const(ops: Any, value: np.ndarray | list[int] | int, dtype: Any = np.int64) -> Any:
    return ops.constant(np.asarray(value, dtype=dtype))


def _layer_weights(
    weights: Mapping[str, np.ndarray], prefix: str, kind: str, k: int, directions: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``W`` (D, G*H, I), ``R`` (D, G*H, H), ``B`` of layer ``k`` in OpenVINO's gate order.

    ``B`` is (D, G*H), the input and recurrent biases summed, except for a GRU,
    whose candidate gate applies the recurrent bias inside the reset gate
    (``linear_before_reset``): (D, 4H), ``[b_z, b_r, b_ih_n, b_hh_n]``.
    """
    ws, rs, bs = [], [], []
    for d in range(directions):
        sfx = f"l{k}" + ("_reverse" if d else "")
        w = ov_gate_order(kind, _weight(weights, f"{prefix}weight_ih_{sfx}"))
        r = ov_gate_order(kind, _weight(weights, f"{prefix}weight_hh_{sfx}"))
        b_ih = ov_gate_order(kind, _weight(weights, f"{prefix}bias_ih_{sfx}"))
        b_hh = ov_gate_order(kind, _weight(weights, f"{prefix}bias_hh_{sfx}"))
        if kind == "gru":
            h = b_ih.shape[0] // 3
            b = np.concatenate([b_ih[: 2 * h] + b_hh[: 2 * h], b_ih[2 * h :], b_hh[2 * h :]])
        else:
            b = b_ih + b_hh
        ws.append(w)
        rs.append(r)
        bs.append(b)
    return np.stack(ws), np.stack(rs), np.stack(bs)


def _state_rows(ops: Any, state: Any, start: int, stop: int) -> Any:
    """Rows ``start:stop`` of a batch-first state (N, L*D, H)."""
    return ops.slice(
        state, _const(ops, [start]), _const(ops, [stop]), _const(ops, [1]), _const(ops, [1])
    )


def _zero_state(ops: Any, x: Any, rows: int, hidden: int) -> Any:
    """Zeros (N, rows, H) with the batch of ``x`` (N, T, I)."""
    batch = ops.gather(ops.shape_of(x), _const(ops, [0]), _const(ops, 0))
    shape = ops.concat([batch, _const(ops, [rows, hidden])], 0)
    return ops.broadcast(_const(ops, 0.0, np.float32), shape)


def _full_lengths(ops: Any, x: Any) -> Any:
    """Every sequence at T steps: (N,) int64 from ``x`` (N, T, I)."""
    shape = ops.shape_of(x)
    batch = ops.gather(shape, _const(ops, [0]), _const(ops, 0))
    steps = ops.gather(shape, _const(ops, 1), _const(ops, 0))
    return ops.broadcast(steps, batch)


def _sequence_op(
    ops: Any,
    kind: str,
    x: Any,
    init: list[Any],
    lengths: Any,
    w: tuple[np.ndarray, ...],
    hidden: int,
    direction: str,
    name: str,
) -> Any:
    """One rnn/lstm/gru sequence op; outputs ``Y`` (N, D, T, H), ``H_n`` (N, D, H) (, ``C_n``)."""
    wc, rc, bc = (_const(ops, a, np.float32) for a in w)
    if kind == "lstm":
        return ops.lstm_sequence(
            x, init[0], init[1], lengths, wc, rc, bc, hidden, direction, name=name
        )
    if kind == "gru":
        return ops.gru_sequence(
            x, init[0], lengths, wc, rc, bc, hidden, direction, linear_before_reset=True, name=name
        )
    return ops.rnn_sequence(x, init[0], lengths, wc, rc, bc, hidden, direction, name=name)


def _sequence_layer(
    ops: Any, spec: GraphSpec, x: Any, init: list[Any], w: tuple[np.ndarray, ...], k: int
) -> tuple[Any, list[Any]]:
    """One rnn/lstm/gru layer over full-length sequences: ``(y (N, T, D*H), finals)``.

    ``finals`` are ``h_n`` (and ``c_n``), each (N, D, H).
    """
    h, d = spec.hidden_size, spec.directions
    direction = "bidirectional" if spec.bidirectional else "forward"
    seq = _sequence_op(ops, spec.kind, x, init, _full_lengths(ops, x), w, h, direction, f"layer{k}")
    y = ops.transpose(seq.output(0), _const(ops, [0, 2, 1, 3]))  # (N, T, D, H)
    y = ops.reshape(y, _const(ops, [0, 0, d * h]), special_zero=True)  # (N, T, D*H)
    return y, [seq.output(j) for j in range(1, 1 + len(spec.state_names))]


def _sequence_layer_with_lengths(
    ops: Any,
    spec: GraphSpec,
    x: Any,
    init: list[Any],
    lengths: Any,
    w: tuple[np.ndarray, ...],
    k: int,
) -> tuple[Any, Any]:
    """One rnn/lstm/gru layer on padded sequences: ``(y (N, T, D*H), h_n (N, D, H))``.

    The CPU plugin runs a sequence op with a dynamic shape over all T steps
    whatever ``sequence_lengths`` says (measured with OpenVINO 2026.4: padded
    steps are computed and the final state is the one after step T). So each
    direction runs forward-only: padding follows the valid steps, which leaves
    every valid output exact, and ``h_n`` is read at each sequence's last valid
    step. The backward direction runs on the valid steps reversed in place
    (``ReverseSequence``, padding stays at the end) and is reversed back; its
    final state is its output at step 0. The cell state at each sequence's
    last step is not an output of the op, so a model with lengths has no ``c_n``.
    """
    h = spec.hidden_size
    last = ops.subtract(lengths, _const(ops, 1))  # (N,)
    axis1 = _const(ops, [1])
    ys, finals = [], []
    for d in range(spec.directions):
        wd = tuple(a[d : d + 1] for a in w)
        first = [_state_rows(ops, s, d, d + 1) for s in init]
        xd = ops.reverse_sequence(x, lengths, 0, 1) if d else x
        seq = _sequence_op(
            ops,
            spec.kind,
            xd,
            first,
            lengths,
            wd,
            h,
            "forward",
            f"layer{k}_{'bwd' if d else 'fwd'}",
        )
        y = ops.squeeze(seq.output(0), axis1)  # (N, T, H)
        if d:
            y = ops.reverse_sequence(y, lengths, 0, 1)
            h_n = ops.gather(y, _const(ops, 0), _const(ops, 1))  # (N, H): step 0
        else:
            h_n = ops.gather(y, last, _const(ops, 1), 1)  # (N, H): each sequence's last step
        ys.append(y)
        finals.append(ops.unsqueeze(h_n, axis1))
    y = ys[0] if len(ys) == 1 else ops.concat(ys, 2)
    return y, finals[0] if len(finals) == 1 else ops.concat(finals, 1)


def _dglstm_layer(
    ops: Any,
    weights: Mapping[str, np.ndarray],
    prefix: str,
    spec: GraphSpec,
    x: Any,
    init: list[Any],
    mask: Any | None,
    lower: Any | None,
    k: int,
) -> tuple[Any, list[Any], Any]:
    """One DG-LSTM layer as a ``TensorIterator`` over the steps of ``x`` (N, T, I).

    The input's share of every gate (and of the depth gate above layer 0) is
    one MatMul before the loop; the body does the recurrent part of one step,
    in torch's gate order (i, f, g, o), with the equations of
    :func:`nervana_lstm.cells.dglstm.dglstm_step`. ``mask`` (N, T, 1) float,
    1 inside a sequence, holds the state over padded steps and zeroes their
    output, as the torch stack does. Returns ``y`` (N, T, H), ``[h_n, c_n]``
    each (N, 1, H), and the cell of every step ``c`` (N, T, H) for the layer above.
    """
    import openvino as ov

    h = spec.hidden_size
    w_ih = _weight(weights, f"{prefix}weight_ih_l{k}")
    b_ih = _weight(weights, f"{prefix}bias_ih_l{k}")
    w_hh = _weight(weights, f"{prefix}weight_hh_l{k}")
    b_hh = _weight(weights, f"{prefix}bias_hh_l{k}")
    upper = k > 0
    if upper:
        w_ih = np.concatenate([w_ih, _weight(weights, f"{prefix}weight_xd_l{k}")])
        b_ih = np.concatenate([b_ih, _weight(weights, f"{prefix}bias_d_l{k}")])
    gx = ops.add(
        ops.matmul(x, _const(ops, w_ih, np.float32), False, True), _const(ops, b_ih, np.float32)
    )  # (N, T, 4H or 5H)

    # ---- the body: one step
    width = 5 * h if upper else 4 * h
    p_gx = ops.parameter([-1, 1, width], np.float32, name="gx_t")
    p_h = ops.parameter([-1, h], np.float32, name="h")
    p_c = ops.parameter([-1, h], np.float32, name="c")
    params = [p_gx, p_h, p_c]
    axis1 = _const(ops, [1])
    g_all = ops.squeeze(p_gx, axis1)  # (N, G)
    rec = ops.add(
        ops.matmul(p_h, _const(ops, w_hh, np.float32), False, True), _const(ops, b_hh, np.float32)
    )  # (N, 4H)
    parts = ops.split(g_all, _const(ops, 1), 5 if upper else 4)
    gates = ops.add(
        ops.concat([parts.output(j) for j in range(4)], 1) if upper else g_all, rec
    )  # (N, 4H)
    i, f, g, o = (ops.split(gates, _const(ops, 1), 4).output(j) for j in range(4))
    i, f, o = ops.sigmoid(i), ops.sigmoid(f), ops.sigmoid(o)
    c_new = ops.add(ops.multiply(f, p_c), ops.multiply(i, ops.tanh(g)))
    if upper:
        p_low = ops.parameter([-1, 1, h], np.float32, name="c_lower_t")
        params.append(p_low)
        c_low = ops.squeeze(p_low, axis1)
        w_cd = _const(ops, _weight(weights, f"{prefix}weight_cd_l{k}"), np.float32)
        w_ld = _const(ops, _weight(weights, f"{prefix}weight_ld_l{k}"), np.float32)
        d = ops.sigmoid(
            ops.add(ops.add(parts.output(4), ops.multiply(w_cd, p_c)), ops.multiply(w_ld, c_low))
        )
        c_new = ops.add(c_new, ops.multiply(d, c_low))
    h_new = ops.multiply(o, ops.tanh(c_new))
    out = h_new
    if mask is not None:
        p_m = ops.parameter([-1, 1, 1], np.float32, name="mask_t")
        params.append(p_m)
        m = ops.squeeze(p_m, axis1)  # (N, 1)
        keep = ops.subtract(_const(ops, 1.0, np.float32), m)
        out = ops.multiply(m, h_new)
        h_new = ops.add(out, ops.multiply(keep, p_h))
        c_new = ops.add(ops.multiply(m, c_new), ops.multiply(keep, p_c))
    results = [ops.result(h_new), ops.result(c_new)]
    results += [ops.result(ops.unsqueeze(out, axis1)), ops.result(ops.unsqueeze(c_new, axis1))]
    body = ov.Model(results, params, f"dglstm_step_l{k}")

    ti = ops.tensor_iterator()
    ti.set_body(body)
    ti.set_sliced_input(p_gx, _port(gx), 0, 1, 1, -1, 1)
    ti.set_merged_input(p_h, _port(ops.squeeze(init[0], axis1)), results[0].output(0))
    ti.set_merged_input(p_c, _port(ops.squeeze(init[1], axis1)), results[1].output(0))
    if upper:
        ti.set_sliced_input(p_low, _port(lower), 0, 1, 1, -1, 1)
    if mask is not None:
        ti.set_sliced_input(p_m, _port(mask), 0, 1, 1, -1, 1)
    h_n = ti.get_iter_value(results[0].output(0), -1)
    c_n = ti.get_iter_value(results[1].output(0), -1)
    y = ti.get_concatenated_slices(results[2].output(0), 0, 1, 1, -1, 1)  # (N, T, H)
    cells = ti.get_concatenated_slices(results[3].output(0), 0, 1, 1, -1, 1)  # (N, T, H)
    ti.set_friendly_name(f"layer{k}")
    finals = [ops.unsqueeze(h_n, axis1), ops.unsqueeze(c_n, axis1)]  # each (N, 1, H)
    return y, finals, cells


def build_stack(
    ops: Any,
    weights: Mapping[str, np.ndarray],
    prefix: str,
    spec: GraphSpec,
    x: Any,
    init: list[Any] | None,
    lengths: Any | None,
) -> tuple[Any, list[Any]]:
    """The recurrent stack on ``x`` (N, T, I): ``(y (N, T, D*H), finals)``.

    ``init`` holds the batch-first initial states (N, L*D, H), or None for zeros;
    ``lengths`` (N,) int64 or None. ``finals`` are ``h_n`` (and ``c_n``), (N, L*D, H).
    """
    rows = spec.num_layers * spec.directions
    if init is None:
        init = [_zero_state(ops, x, rows, spec.hidden_size) for _ in spec.state_names]
    finals: list[list[Any]] = [[] for _ in spec.state_names]
    # one DG-LSTM layer has no lower cell: it is an LSTM, and gets the LSTM sequence op
    kind = "lstm" if spec.kind == "dglstm" and spec.num_layers == 1 else spec.kind
    if kind == "dglstm":
        mask = None
        if lengths is not None:
            steps = ops.range(
                _const(ops, 0),
                ops.gather(ops.shape_of(x), _const(ops, 1), _const(ops, 0)),
                _const(ops, 1),
                "i64",
            )  # (T,)
            valid = ops.less(
                ops.unsqueeze(steps, _const(ops, 0)), ops.unsqueeze(lengths, _const(ops, 1))
            )
            mask = ops.unsqueeze(ops.convert(valid, "f32"), _const(ops, 2))  # (N, T, 1)
        lower = None
        for k in range(spec.num_layers):
            first = [_state_rows(ops, s, k, k + 1) for s in init]
            x, last, lower = _dglstm_layer(ops, weights, prefix, spec, x, first, mask, lower, k)
            for slot, s in zip(finals, last, strict=True):
                slot.append(s)
    else:
        layer_spec = GraphSpec(**{**spec.__dict__, "kind": kind})
        d = spec.directions
        for k in range(spec.num_layers):
            first = [_state_rows(ops, s, k * d, (k + 1) * d) for s in init]
            w = _layer_weights(weights, prefix, kind, k, d)
            if lengths is None:
                x, last = _sequence_layer(ops, layer_spec, x, first, w, k)
            else:
                x, h_n = _sequence_layer_with_lengths(ops, layer_spec, x, first, lengths, w, k)
                last = [h_n]
            for slot, s in zip(finals, last, strict=False):
                slot.append(s)
        finals = [slot for slot in finals if slot]
    return x, [s[0] if len(s) == 1 else ops.concat(s, 1) for s in finals]


def _named_model(
    spec: GraphSpec, first: str, output: Any, finals: list[Any], params: list[Any], name: str
) -> ov.Model:
    """The model with outputs ``first``, ``h_n`` (, ``c_n``) and inputs named as their parameters."""
    import openvino as ov

    outputs = [output, *finals]
    names = [first, *(f"{s}_n" for s in spec.state_names[: len(finals)])]
    for node, label in zip(outputs, names, strict=True):
        _port(node).get_tensor().set_names({label})
    for p in params:
        p.output(0).get_tensor().set_names({p.get_friendly_name()})
    return ov.Model([_port(n) for n in outputs], params, name)


def build_model(weights: Mapping[str, np.ndarray], spec: GraphSpec) -> ov.Model:
    """The whole model (module docstring) from a trained model's weights.

    ``weights`` maps the checkpoint's parameter names (``embed.weight``,
    ``rnn.weight_ih_l0`` ..., ``head.weight``, ``head.bias``) to float arrays.
    """
    import openvino.opset13 as ops

    if spec.kind not in SEQUENCE_OPS:
        raise UsageError(
            f"cannot export kind {spec.kind!r}; expected one of {', '.join(SEQUENCE_OPS)}"
        )
    batch = -1 if spec.batch is None else spec.batch
    params = []
    if spec.input_kind == "tokens":
        x = ops.parameter([batch, -1], np.int64, name="x")
        inputs = ops.gather(
            _const(ops, _weight(weights, "embed.weight"), np.float32), x, _const(ops, 0)
        )
    else:
        x = ops.parameter([batch, -1, spec.input_size], np.float32, name="x")
        inputs = x
    params.append(x)
    lengths = None
    if spec.lengths:
        lengths = ops.parameter([batch], np.int64, name="lengths")
        params.append(lengths)
    init = None
    if spec.state_inputs:
        rows = spec.num_layers * spec.directions
        init = [
            ops.parameter([batch, rows, spec.hidden_size], np.float32, name=f"{s}_0")
            for s in spec.state_names
        ]
        params += init
    y, finals = build_stack(ops, weights, "rnn.", spec, inputs, init, lengths)
    if not spec.per_step:
        # each sequence's last valid output: the final state of the top layer's directions
        y = ops.reshape(
            _state_rows(
                ops,
                finals[0],
                (spec.num_layers - 1) * spec.directions,
                spec.num_layers * spec.directions,
            ),
            _const(ops, [0, spec.directions * spec.hidden_size]),
            special_zero=True,
        )
    logits = ops.add(
        ops.matmul(y, _const(ops, _weight(weights, "head.weight"), np.float32), False, True),
        _const(ops, _weight(weights, "head.bias"), np.float32),
    )
    return _named_model(spec, "logits", logits, finals, params, f"nervana_lstm_{spec.kind}")


def build_stack_model(
    weights: Mapping[str, np.ndarray],
    spec: GraphSpec,
    *,
    prefix: str = "",
    batch_first: bool = True,
    torch_states: bool = False,
) -> ov.Model:
    """The recurrent stack alone as a model: per-step outputs ``y`` and the final states.

    The same layers as :func:`build_model` (one sequence op per rnn/lstm/gru
    layer, a ``TensorIterator`` per DG-LSTM layer above the first), without
    embedding or head. ``weights`` maps ``{prefix}weight_ih_l{k}`` ... (torch.nn's
    names) to float arrays. Of ``spec`` it reads ``kind``, the sizes,
    ``bidirectional``, ``lengths``, ``state_inputs`` and ``batch``; ``output_size``,
    ``input_kind`` and ``per_step`` do not apply to a bare stack.

    Tensors, batch first as in :func:`build_model`; ``batch_first=False`` swaps the
    first two axes of ``x`` and ``y`` (torch's time-major layout), ``torch_states``
    those of the states (torch's ``(L*D, N, H)``, whatever the layout of ``x``)::

        x                  (N, T, I) float32
        lengths            (N,) int64                  with spec.lengths
        h_0, c_0           (N, L*D, H)                 with spec.state_inputs (c_0: lstm, dglstm)
        y                  (N, T, D*H)                 every step's output of the top layer
        h_n, c_n           (N, L*D, H)                 c_n: lstm and dglstm

    With ``lengths``, a stack of sequence ops has no ``c_n`` (see
    :func:`build_stack`); a DG-LSTM stack of two or more layers keeps it.
    """
    import openvino.opset13 as ops

    if spec.kind not in SEQUENCE_OPS:
        raise UsageError(
            f"cannot export kind {spec.kind!r}; expected one of {', '.join(SEQUENCE_OPS)}"
        )
    batch = -1 if spec.batch is None else spec.batch
    rows = spec.num_layers * spec.directions
    swap = _const(ops, [1, 0, 2])  # (N, T, *) <-> (T, N, *), (N, L*D, H) <-> (L*D, N, H)
    x_dims = [batch, -1] if batch_first else [-1, batch]
    state_dims = [rows, batch] if torch_states else [batch, rows]
    x = ops.parameter([*x_dims, spec.input_size], np.float32, name="x")
    params = [x]
    lengths = None
    if spec.lengths:
        lengths = ops.parameter([batch], np.int64, name="lengths")
        params.append(lengths)
    init = None
    if spec.state_inputs:
        states = [
            ops.parameter([*state_dims, spec.hidden_size], np.float32, name=f"{s}_0")
            for s in spec.state_names
        ]
        params += states
        init = [ops.transpose(s, swap) for s in states] if torch_states else states
    y, finals = build_stack(
        ops, weights, prefix, spec, x if batch_first else ops.transpose(x, swap), init, lengths
    )
    if not batch_first:
        y = ops.transpose(y, swap)
    if torch_states:
        finals = [ops.transpose(s, swap) for s in finals]
    return _named_model(spec, "y", y, finals, params, f"nervana_lstm_{spec.kind}_stack")


def sequence_op_counts(model: ov.Model) -> dict[str, int]:
    """How many ops of each type the model holds (top level; loop bodies not entered)."""
    counts: dict[str, int] = {}
    for op in model.get_ordered_ops():
        name = op.get_type_name()
        counts[name] = counts.get(name, 0) + 1
    return counts
