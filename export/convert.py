"""Convert a fused torch RNN module to an OpenVINO model; compile it with a pinned precision.

:func:`convert_rnn` reads the module's weights (torch.nn's names,
``weight_ih_l{k}`` ...) and builds the graph from them with OpenVINO's opset
API through :func:`nervana_lstm.export.graph.build_stack_model`, the same
builder that exports a whole trained model; nothing is traced. ``nn.LSTM`` /
``nn.GRU`` / ``nn.RNN`` and the toolkit's fused rnn/lstm/gru become one
``LSTMSequence`` / ``GRUSequence`` / ``RNNSequence`` per layer (gates reordered
from torch's i,f,g,o / r,z,n to OpenVINO's f,i,c,o / z,r,h in
:func:`~nervana_lstm.export.graph.ov_gate_order`); the toolkit's fused DG-LSTM,
which has no sequence op, becomes a ``TensorIterator`` per layer (one layer alone
has no lower cell: it is an LSTM and becomes an ``LSTMSequence``). Steps and
batch stay dynamic either way. Two facts shape the rest of this module:

* The CPU plugin runs **bf16 by default** on CPUs with AVX512_BF16 or AMX, so a
  caller that wants fp32 numbers must say so: :func:`compile_rnn` always sets
  ``INFERENCE_PRECISION_HINT`` explicitly.
* What actually ran is only visible in the compiled model's runtime graph:
  :func:`runtime_layers` reads each executed op's ``layerType`` and
  ``runtimePrecision`` so a report can prove it.

Tensors are named ``x`` (input, ``(T, N, F)`` or ``(N, T, F)`` with
``batch_first``), optionally ``h_0`` (+ ``c_0``), ``y`` (per-step output) and
``h_n`` (+ ``c_n`` for LSTMs and DG-LSTMs); states are ``(L*D, N, H)`` as in torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from nervana_lstm.choices import gate_count
from nervana_lstm.errors import UsageError

if TYPE_CHECKING:  # imported lazily at run time
    import numpy as np
    import openvino as ov
    import torch

__all__ = [
    "PRECISIONS",
    "compile_rnn",
    "convert_rnn",
    "precision_supported",
    "runtime_layers",
    "runtime_summary",
]

#: precision name -> the ``INFERENCE_PRECISION_HINT`` value the CPU plugin takes
PRECISIONS: dict[str, str] = {"f32": "f32", "bf16": "bf16"}

#: ``torch.nn.RNNBase.mode`` -> kind
_TORCH_MODES: dict[str, str] = {"RNN_TANH": "rnn", "LSTM": "lstm", "GRU": "gru"}


def _describe(module: torch.nn.Module) -> tuple[str, torch.nn.Module]:
    """``(kind, weight holder)`` of a module convert_rnn takes; UsageError for any other.

    The weight holder is the module whose ``state_dict`` carries torch.nn's names:
    a ``torch.nn`` RNN itself, or the toolkit module (whose state_dict drops the
    ``module.`` prefix of the torch module it wraps).
    """
    import torch

    from nervana_lstm.cells.base import ReferenceStack

    name = type(module).__name__
    inner = getattr(module, "module", module)
    if isinstance(inner, torch.nn.RNNBase):
        if inner.mode not in _TORCH_MODES:
            raise UsageError(
                f"convert_rnn converts tanh RNNs, LSTMs and GRUs; {name} has mode {inner.mode!r} "
                "(OpenVINO's RNNSequence is built here with tanh only)"
            )
        if getattr(inner, "proj_size", 0):
            raise UsageError(
                f"convert_rnn converts LSTMs without projection; {name} has "
                f"proj_size={inner.proj_size} (LSTMSequence has no projection), expected 0"
            )
        return _TORCH_MODES[inner.mode], module
    if isinstance(module, ReferenceStack):
        if module.impl != "fused":
            # both implementations hold the same weights; the fused one is what the
            # bench's openvino rows stand for, and the one this function documents
            raise UsageError(
                f"convert_rnn converts fused modules; {name} is the reference implementation "
                "(it steps through time in Python, one matmul per gate): load its state_dict "
                f"into make_rnn({module.kind!r}, 'fused', ...) and convert that"
            )
        return module.kind, module
    raise UsageError(
        "convert_rnn converts fused torch.nn.LSTM/GRU/RNN modules, a toolkit module wrapping "
        f"one as .module, or make_rnn('dglstm', 'fused', ...); got {name}"
    )


def _weights(
    holder: torch.nn.Module, kind: str, layers: int, directions: int, hidden: int
) -> dict[str, np.ndarray]:
    """The module's weights as float32 arrays under torch.nn's names; zero biases if it has none."""
    import numpy as np
    import torch

    weights = {
        name: t.detach().to(device="cpu", dtype=torch.float32).numpy()
        for name, t in holder.state_dict().items()
    }
    rows = gate_count(kind) * hidden
    for k in range(layers):
        for sfx in ("", "_reverse")[:directions]:
            for name in (f"bias_ih_l{k}{sfx}", f"bias_hh_l{k}{sfx}"):
                weights.setdefault(name, np.zeros(rows, np.float32))
        if kind == "dglstm" and k > 0:
            weights.setdefault(f"bias_d_l{k}", np.zeros(hidden, np.float32))
    return weights


def convert_rnn(
    module: torch.nn.Module,
    input_size: int | None = None,
    *,
    batch_first: bool | None = None,
    with_state: bool = False,
) -> ov.Model:
    """Build an ``ov.Model`` computing ``forward(x[, state]) -> (y, state)`` of a fused module.

    Args:
        module: an ``nn.LSTM``/``nn.GRU``/``nn.RNN`` (tanh, no projection), or a toolkit
            module built by ``make_rnn(kind, "fused", ...)`` for any kind. It is read,
            not changed; dropout does not apply (inference).
        input_size: features per step; read from the module when omitted, and must
            match it when given.
        batch_first: layout of ``x`` and ``y``; read from the module when omitted (for a
            toolkit module, its own ``batch_first``: the wrapped torch module is
            time-major).
        with_state: add the initial state as inputs ``h_0`` (and ``c_0`` for an LSTM or
            DG-LSTM), each ``[L*D, -1, H]``; without it the state starts at zero inside
            the model.

    Returns:
        A model with input ``x`` of shape ``[-1, -1, F]`` (steps and batch dynamic)
        (+ ``h_0``/``c_0``) and outputs ``y`` (``[-1, -1, D*H]``, same layout as ``x``),
        ``h_n`` and, for an LSTM or DG-LSTM, ``c_n`` (each ``[L*D, -1, H]``). rnn, lstm
        and gru hold one ``*Sequence`` op per layer.

    Raises:
        UsageError: the module is not one of the above, or ``input_size`` does not match.
    """
    from nervana_lstm.export.graph import GraphSpec, build_stack_model

    kind, holder = _describe(module)
    inner = getattr(module, "module", module)
    size = int(inner.input_size)
    if input_size is not None and int(input_size) != size:
        raise UsageError(
            f"convert_rnn: the module reads {size} features per step; input_size={input_size} "
            "was given"
        )
    # a toolkit wrapper holds a time-major torch module and transposes itself
    first = bool(
        batch_first
        if batch_first is not None
        else getattr(module, "batch_first", inner.batch_first)
    )
    directions = 2 if inner.bidirectional else 1
    spec = GraphSpec(
        kind=kind,
        input_size=size,
        hidden_size=int(inner.hidden_size),
        num_layers=int(inner.num_layers),
        bidirectional=bool(inner.bidirectional),
        output_size=directions * int(inner.hidden_size),
        input_kind="features",
        per_step=True,
        state_inputs=with_state,
    )
    weights = _weights(holder, kind, spec.num_layers, directions, spec.hidden_size)
    return build_stack_model(weights, spec, batch_first=first, torch_states=True)


def precision_supported(precision: str, core: ov.Core | None = None) -> tuple[bool, str | None]:
    """Whether the CPU plugin can run ``precision`` here; the reason when it cannot."""
    import openvino as ov

    if precision not in PRECISIONS:
        raise UsageError(
            f"unknown OpenVINO precision {precision!r}; expected one of: {', '.join(PRECISIONS)}"
        )
    if precision == "f32":
        return True, None
    caps = [str(c) for c in (core or ov.Core()).get_property("CPU", "OPTIMIZATION_CAPABILITIES")]
    if "BF16" not in caps:
        return False, f"the OpenVINO CPU plugin reports no BF16 capability here ({caps})"
    return True, None


def compile_rnn(
    model: ov.Model,
    precision: str = "f32",
    *,
    threads: int | None = None,
    core: ov.Core | None = None,
    extra_config: dict[str, Any] | None = None,
) -> ov.CompiledModel:
    """Compile ``model`` on the CPU with ``INFERENCE_PRECISION_HINT`` pinned to ``precision``.

    Args:
        precision: ``"f32"`` or ``"bf16"``; always set, never left to the plugin's
            default (bf16 on CPUs with AVX512_BF16/AMX).
        threads: ``INFERENCE_NUM_THREADS``; the plugin's default when None.
        extra_config: further CPU plugin properties (they may not override the precision).

    Raises:
        UsageError: unknown precision, or one this CPU cannot run.
    """
    import openvino as ov

    core = core or ov.Core()
    ok, why = precision_supported(precision, core)
    if not ok:
        raise UsageError(f"cannot compile for {precision}: {why}")
    config: dict[str, Any] = dict(extra_config or {})
    config["INFERENCE_PRECISION_HINT"] = PRECISIONS[precision]
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = int(threads)
    return core.compile_model(model, "CPU", config)


def runtime_layers(compiled: ov.CompiledModel) -> list[dict[str, str]]:
    """Each executed op of the compiled model: name, ``layerType`` and ``runtimePrecision``."""
    layers = []
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        row = {"name": op.get_friendly_name()}
        for key in ("layerType", "runtimePrecision"):
            row[key] = str(info[key].astype(str)) if key in info else ""
        layers.append(row)
    return layers


def runtime_summary(compiled: ov.CompiledModel, skip: tuple[str, ...] = ()) -> dict[str, str]:
    """``layerType -> runtimePrecision`` of the compute ops (not inputs, outputs or ``skip``)."""
    summary: dict[str, str] = {}
    for row in runtime_layers(compiled):
        kind = row["layerType"]
        if kind in ("Input", "Output", "Parameter", "Result", *skip):
            continue
        summary.setdefault(kind, row["runtimePrecision"])
        if row["runtimePrecision"] not in summary[kind].split("/"):
            summary[kind] += "/" + row["runtimePrecision"]
    return summary
