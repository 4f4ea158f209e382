"""How an exported IR is compiled and called when it is timed against PyTorch.

The CPU plugin's defaults suit a server, not a one-request latency measurement,
so every choice is explicit here and recorded in the report (each OpenVINO row's
``proof["openvino"]["compiled"]`` holds the values read back from the compiled
model, not only what was asked for):

==========================  =========================================================
``INFERENCE_PRECISION_HINT`` always pinned (``f32``/``bf16``): the plugin runs bf16 by
                            default on CPUs with AVX512_BF16 or AMX
``PERFORMANCE_HINT``        ``LATENCY``: one stream for one request; ``THROUGHPUT``
                            opens several streams and slows a single request down
``INFERENCE_NUM_THREADS``   the bench's ``--threads``, the same count torch gets
``ENABLE_CPU_PINNING``      ``True``: OpenVINO's threads stay on their cores
``NUM_STREAMS``             ``1``: every thread works on the one request
inputs                      wrapped once as ``ov.Tensor(array, shared_memory=True)``
                            and set on the one reused infer request; each timed call
                            is ``request.infer(share_outputs=True)``: no input copy,
                            no output copy (torch's call likewise reads its input
                            tensor in place)
==========================  =========================================================

:data:`TIMED` is that choice. :data:`SETTINGS_LADDER` adds one setting at a
time, from the plugin's defaults up to :data:`TIMED` (plus a throughput hint
and a static-shape model), so ``nervana-lstm bench --model RUN --ov-settings``
shows on a quiet machine what each step is worth.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    import openvino as ov

__all__ = [
    "READ_BACK",
    "SETTINGS_LADDER",
    "TIMED",
    "IrSettings",
    "compile_for_timing",
    "compiled_properties",
    "feed_call",
]

#: the compiled model's properties recorded with every OpenVINO row
READ_BACK: tuple[str, ...] = (
    "INFERENCE_PRECISION_HINT",
    "PERFORMANCE_HINT",
    "INFERENCE_NUM_THREADS",
    "NUM_STREAMS",
    "ENABLE_CPU_PINNING",
    "ENABLE_HYPER_THREADING",
    "EXECUTION_MODE_HINT",
    "OPTIMAL_NUMBER_OF_INFER_REQUESTS",
)


@dataclass(frozen=True)
class IrSettings:
    """One way of compiling and calling an IR for timing.

    config: CPU plugin properties besides the precision hint (always pinned).
    threads: set ``INFERENCE_NUM_THREADS`` to the bench's thread count.
    inputs: ``shared`` = tensors set once, zero copy; ``copied`` = ``infer(feed)``,
        which copies every input into the request and every output out of it.
    static: reshape the model to the timed input shapes before compiling.
    """

    name: str
    config: dict[str, Any] = field(default_factory=dict)
    threads: bool = True
    inputs: Literal["shared", "copied"] = "shared"
    static: bool = False

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in self.config.items()]
        if self.threads:
            parts.append("INFERENCE_NUM_THREADS=threads")
        parts.append("inputs set once, shared" if self.inputs == "shared" else "inputs copied")
        if self.static:
            parts.append("static input shapes")
        return ", ".join(parts) or "plugin defaults"


_PINNED = {"PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": True, "NUM_STREAMS": 1}

#: what the bench's OpenVINO rows use (see the module docstring)
TIMED = IrSettings("timed", dict(_PINNED))

#: one setting added at a time, for ``--ov-settings``
SETTINGS_LADDER: tuple[IrSettings, ...] = (
    IrSettings("defaults", {}, threads=False, inputs="copied"),
    IrSettings("latency", {"PERFORMANCE_HINT": "LATENCY"}, threads=False, inputs="copied"),
    IrSettings("latency+threads", {"PERFORMANCE_HINT": "LATENCY"}, inputs="copied"),
    IrSettings(
        "latency+threads+pinning",
        {"PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": True},
        inputs="copied",
    ),
    IrSettings("latency+threads+pinning+1stream", dict(_PINNED), inputs="copied"),
    TIMED,
    IrSettings("timed+static", dict(_PINNED), static=True),
    IrSettings("throughput-hint", {"PERFORMANCE_HINT": "THROUGHPUT"}),
)


def compile_for_timing(
    model: ov.Model,
    precision: str,
    threads: int,
    settings: IrSettings = TIMED,
    feed: dict[str, np.ndarray] | None = None,
    core: ov.Core | None = None,
) -> ov.CompiledModel:
    """Compile ``model`` on the CPU as ``settings`` say, the precision hint pinned.

    ``feed`` gives the input shapes for a ``static`` setting (the model is
    reshaped in place; pass a freshly read model).
    """
    import openvino as ov

    from nervana_lstm.export.convert import compile_rnn

    if settings.static:
        if feed is None:
            raise ValueError("a static-shape setting needs the feed whose shapes it fixes")
        model.reshape({name: ov.PartialShape(list(a.shape)) for name, a in feed.items()})
    return compile_rnn(
        model,
        precision,
        threads=threads if settings.threads else None,
        core=core,
        extra_config=dict(settings.config),
    )


def compiled_properties(compiled: ov.CompiledModel) -> dict[str, str]:
    """The :data:`READ_BACK` properties as the compiled model reports them."""
    found = {}
    for key in READ_BACK:
        try:
            value = compiled.get_property(key)
        except RuntimeError:  # a property this plugin version does not report
            continue
        found[key] = value.get_type_name() if hasattr(value, "get_type_name") else str(value)
    return found


def feed_call(
    request: ov.InferRequest, feed: dict[str, np.ndarray], settings: IrSettings = TIMED
) -> Callable[[], object]:
    """The timed call on ``request``: zero-copy tensors set once, or ``infer(feed)`` copies."""
    import openvino as ov

    if settings.inputs == "copied":
        return lambda: request.infer(feed)
    # shared memory needs C-contiguous arrays that live as long as the call does
    arrays = {name: np.ascontiguousarray(array) for name, array in feed.items()}
    for name, array in arrays.items():
        request.set_tensor(name, ov.Tensor(array, shared_memory=True))

    def call(_keep: dict[str, np.ndarray] = arrays) -> object:  # _keep: the shared memory
        return request.infer(share_outputs=True)

    return call
