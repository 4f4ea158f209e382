"""Convert a fused torch RNN module to an OpenVINO model; compile it with a pinned precision.

``ov.convert_model`` turns ``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN`` into
``LSTMSequence`` / ``GRUSequence`` / ``RNNSequence`` and reorders the gates
itself (torch i,f,g,o -> OpenVINO f,i,c,o). Two facts shape this module:

* The CPU plugin runs **bf16 by default** on CPUs with AVX512_BF16 or AMX, so a
  caller that wants fp32 numbers must say so: :func:`compile_rnn` always sets
  ``INFERENCE_PRECISION_HINT`` explicitly.
* What actually ran is only visible in the compiled model's runtime graph:
  :func:`runtime_layers` reads each executed op's ``layerType`` and
  ``runtimePrecision`` so a report can prove it.

Tensors are named ``x`` (input, ``(T, N, F)`` or ``(N, T, F)`` with
``batch_first``), optionally ``h_0`` (+ ``c_0``), ``y`` (per-step output) and
``h_n`` (+ ``c_n`` for LSTMs).
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

from nervana_lstm.errors import UsageError

if TYPE_CHECKING:  # imported lazily at run time
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


def _flat_outputs_module(
    module: torch.nn.Module, with_state: bool, transpose: bool = False
) -> torch.nn.Module:
    """Wrap ``module`` so it returns a flat tuple ``(y, h_n[, c_n])`` for tracing.

    With ``with_state`` the wrapper also takes the initial state as plain tensors:
    ``(x, h_0)`` or, for an LSTM, ``(x, h_0, c_0)``. With ``transpose`` it swaps the
    first two axes of ``x`` and ``y``, for a caller whose layout differs from the module's.
    """
    import torch

    class FlatOutputs(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
            init = None if not with_state else (state[0] if len(state) == 1 else state)
            out, final = self.inner(x.transpose(0, 1) if transpose else x, init)
            out = out.transpose(0, 1) if transpose else out
            if isinstance(final, tuple):  # LSTM: (h_n, c_n)
                return (out, *final)
            return out, final

    return FlatOutputs(module)


def convert_rnn(
    module: torch.nn.Module,
    input_size: int | None = None,
    *,
    batch_first: bool | None = None,
    with_state: bool = False,
    example_steps: int = 3,
    example_batch: int = 2,
) -> ov.Model:
    """Convert a fused recurrent module ``forward(x[, state]) -> (y, state)`` to an ``ov.Model``.

    Args:
        module: an ``nn.LSTM``/``nn.GRU``/``nn.RNN``, or a toolkit module built by
            ``make_rnn(kind, "fused", ...)`` for rnn/lstm/gru (its inner ``.module`` is
            converted, so the result holds a single ``*Sequence`` op). The module is put
            in eval mode.
        input_size: features per step; read from the module when omitted.
        batch_first: layout of ``x``; read from the module when omitted (for a toolkit
            module, its own ``batch_first``: the wrapped torch module is time-major).
        with_state: add the initial state as inputs ``h_0`` (and ``c_0`` for an LSTM),
            each ``[L*D, -1, H]``; without it the state starts at zero inside the model.
        example_steps, example_batch: size of the example used for tracing.

    Returns:
        A model with input ``x`` of shape ``[-1, -1, F]`` (steps and batch dynamic)
        (+ ``h_0``/``c_0``) and outputs ``y``, ``h_n`` and, for an LSTM, ``c_n``.

    Raises:
        UsageError: the module is not a fused torch RNN, or conversion fails.
    """
    import openvino as ov
    import torch

    inner = getattr(module, "module", module)
    if not isinstance(inner, torch.nn.RNNBase):
        # tracing a Python loop over time would unroll it to the example's length and
        # give a model that is silently wrong for any other sequence length
        raise UsageError(
            f"convert_rnn converts fused torch.nn.LSTM/GRU/RNN modules (or a toolkit module "
            f"wrapping one as .module); {type(module).__name__} steps through time in Python"
        )
    size = int(input_size if input_size is not None else inner.input_size)
    # a toolkit wrapper holds a time-major torch module and transposes itself
    first = bool(
        batch_first
        if batch_first is not None
        else getattr(module, "batch_first", inner.batch_first)
    )
    inner = inner.eval()
    dims = (example_batch, example_steps) if first else (example_steps, example_batch)
    examples = [torch.zeros(*dims, size)]
    shapes = [ov.PartialShape([-1, -1, size])]
    names = ["x"]
    if with_state:
        rows = inner.num_layers * (2 if inner.bidirectional else 1)
        state_names = ["h_0", "c_0"] if isinstance(inner, torch.nn.LSTM) else ["h_0"]
        for name in state_names:
            examples.append(torch.zeros(rows, example_batch, inner.hidden_size))
            shapes.append(ov.PartialShape([rows, -1, inner.hidden_size]))
            names.append(name)
    try:
        # torch.nn's size checks warn when traced; the example sizes are not baked in
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            model = ov.convert_model(
                _flat_outputs_module(inner, with_state, first != bool(inner.batch_first)),
                example_input=tuple(examples) if with_state else examples[0],
                input=shapes,
            )
    except Exception as exc:  # conversion errors come from several frontends
        raise UsageError(f"OpenVINO could not convert {type(inner).__name__}: {exc}") from exc
    for port, name in zip(model.inputs, names, strict=True):
        port.get_tensor().set_names({name})
    for port, name in zip(model.outputs, ["y", "h_n", "c_n"], strict=False):
        port.get_tensor().set_names({name})
    return model


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
