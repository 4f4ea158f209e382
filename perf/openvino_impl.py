"""The ``openvino`` implementation: the fused module converted, compiled and timed.

The module is converted by :func:`nervana_lstm.export.convert_rnn`, which builds
the graph from its weights (one ``*Sequence`` op per rnn/lstm/gru layer, a
``TensorIterator`` per layer of a DG-LSTM stack). ``fp32`` and ``bf16`` compile it
with ``INFERENCE_PRECISION_HINT`` pinned to ``f32``/``bf16``. ``int8`` first runs
NNCF's post-training quantization (``nncf.quantize``) on random calibration
inputs, then compiles with the hint pinned to ``f32`` so only what NNCF
quantized runs in 8 bits. The compiled model's runtime graph is the proof of
what ran: each row records the precision of the recurrent layers, ``RNNSeq``
(the CPU plugin's name for LSTM/GRU/RNNSequence) or ``TensorIterator``.

Before timing, the outputs are compared with the torch module's in fp32:
``max |y_OpenVINO - y_torch| <= TOLERANCES[dtype]``. A path that cannot run here
(no BF16 or INT8 in the plugin, a kind NNCF does not quantize) raises
:class:`~nervana_lstm.perf.spec.Unavailable`; one that runs but computes something
else (outputs beyond the tolerance, an int8 LSTM left in float) raises
:class:`~nervana_lstm.perf.spec.WrongResult`, so its row is an error, not ``n/a``.
"""

from __future__ import annotations

import time
from typing import Any

from nervana_lstm.perf.spec import (
    Spec,
    Unavailable,
    Variant,
    WrongResult,
    make_inputs,
    make_net,
)

__all__ = ["GRU_INT8_REASON", "TOLERANCES", "build_openvino"]

GRU_INT8_REASON = (
    "NNCF does not quantize GRUSequence with linear_before_reset=True, which is what a "
    "PyTorch GRU converts to; int8 GRU is not supported"
)
_PRECISION = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
#: the CPU plugin's names of the layers that run the recurrence
_SEQ_LAYERS = ("RNNSeq", "TensorIterator")
#: largest |OpenVINO - torch fp32| output difference accepted before timing. int8: a
#: correctly quantized one-layer LSTM was measured at 2.3e-2 to 7.2e-2 over shapes from
#: H=16 to H=256; a broken quantization is off by 0.5 or more.
TOLERANCES: dict[str, float] = {"fp32": 1e-4, "bf16": 5e-2, "int8": 1e-1}
#: kinds whose sequence op NNCF leaves in float (their int8 row is n/a, not an error)
_FLOAT_RECURRENCE_INT8 = ("rnn",)


def _max_error(net: Any, x: Any, feed: dict[str, Any], request: Any) -> float:
    import numpy as np
    import torch

    with torch.no_grad():
        ref = net(torch.from_numpy(x))[0].numpy()  # (T, N, D*H)
    got = request.infer(feed)["y"]
    return float(np.abs(np.asarray(got) - ref).max())


def _state_inputs(model: Any) -> dict[str, tuple[int, int]]:
    """``name -> (L*D, H)`` of the state inputs of a model converted ``with_state``."""
    sizes = {}
    for port in model.inputs[1:]:
        rows, _, hidden = port.partial_shape  # [L*D, -1, H]
        sizes[port.get_any_name()] = (rows.get_length(), hidden.get_length())
    return sizes


def _quantize(model: Any, x: Any) -> Any:
    """NNCF post-training quantization, calibrated with random initial states.

    Calibrating with the states fixed at zero gave int8 models whose output was
    off by about 1.0 here (the quantizer of the state input saw only zeros);
    states drawn from U(-1, 1), the range of ``h`` and typical of ``c``, gave
    errors of a few 1e-2.
    """
    import contextlib
    import io
    import logging

    import nncf
    import numpy as np

    nncf.set_log_level(logging.ERROR)
    rng = np.random.default_rng(0)
    batch = x.shape[1]
    samples = []
    for _ in range(2):
        sample = {"x": x}
        for name, (rows, hidden) in _state_inputs(model).items():
            sample[name] = rng.uniform(-1, 1, (rows, batch, hidden)).astype(np.float32)
        samples.append(sample)
    with contextlib.redirect_stdout(io.StringIO()):  # NNCF draws progress bars on stdout
        return nncf.quantize(model, nncf.Dataset(samples), subset_size=len(samples))


def build_openvino(spec: Spec) -> Variant:
    """Convert, (quantize,) compile and wrap one inference call; see the module docstring."""
    from nervana_lstm.backends import backend_status

    if spec.mode != "infer":
        raise Unavailable("OpenVINO is an inference runtime: it has no training step")
    status = backend_status("openvino")
    if not status.available:
        raise Unavailable(f"OpenVINO is unavailable: {status.reason}")
    if spec.dtype == "int8" and spec.kind == "gru":
        raise Unavailable(GRU_INT8_REASON)
    if spec.dtype == "int8" and not _has_nncf():
        raise Unavailable("nncf is not installed; int8 needs NNCF's post-training quantization")

    from nervana_lstm.errors import UsageError
    from nervana_lstm.export.convert import (
        compile_rnn,
        precision_supported,
        runtime_layers,
        runtime_summary,
    )

    net = make_net(spec, "fused")
    x = make_inputs(spec).numpy()  # (T, N, I)
    precision = _PRECISION[spec.dtype]
    ok, why = precision_supported(precision)
    if not ok:
        raise Unavailable(str(why))
    if spec.dtype == "int8":
        _check_int8_supported()
    t0 = time.perf_counter()
    try:
        from nervana_lstm.export.convert import convert_rnn

        model = convert_rnn(net, spec.input_size, with_state=spec.dtype == "int8")
    except UsageError as exc:
        raise Unavailable(str(exc)) from exc
    notes = []
    feed = {"x": x}
    if spec.dtype == "int8":
        import numpy as np

        from nervana_lstm.backends import quiet_native_output

        for name, (rows, hidden) in _state_inputs(model).items():
            feed[name] = np.zeros((rows, spec.batch, hidden), np.float32)
        with quiet_native_output():
            try:
                model = _quantize(model, x)
            except Exception as exc:  # NNCF raises its own types, not UsageError
                if spec.kind != "dglstm":
                    raise
                raise Unavailable(
                    f"NNCF could not quantize the DG-LSTM graph (a TensorIterator per "
                    f"layer): {type(exc).__name__}: {exc}"
                ) from exc
        notes.append(
            "int8 by nncf.quantize (2 random calibration batches, states ~ U(-1,1)); "
            "hint pinned to f32"
        )
    compiled = compile_rnn(
        model, precision, threads=spec.threads, extra_config={"PERFORMANCE_HINT": "LATENCY"}
    )
    build_s = time.perf_counter() - t0
    request = compiled.create_infer_request()
    summary = runtime_summary(compiled, skip=("Const",))
    seq_rows = [row for row in runtime_layers(compiled) if row["layerType"] in _SEQ_LAYERS]
    seq_layer = "/".join(sorted({row["layerType"] for row in seq_rows})) or "recurrence"
    seq_precision = ",".join(sorted({row["runtimePrecision"] for row in seq_rows}))
    if spec.dtype == "int8" and not any(p in seq_precision for p in ("u8", "i8")):
        why = (
            f"NNCF left the {spec.kind.upper()} sequence op unquantized "
            f"(it ran in {seq_precision or 'no ' + ' or '.join(_SEQ_LAYERS) + ' layer'})"
        )
        if spec.kind in _FLOAT_RECURRENCE_INT8:
            raise Unavailable(why)
        raise WrongResult(f"{why}; not timing float as int8")

    error = _max_error(net, x, feed, request)
    if error > TOLERANCES[spec.dtype]:
        raise WrongResult(
            f"OpenVINO output differs from torch by {error:.2e} (> {TOLERANCES[spec.dtype]:g} "
            f"allowed at {spec.dtype}); not timing a model that computes something else"
        )

    def call() -> object:
        return request.infer(feed)

    proof = {
        "layers": summary,
        "sequence_layer": seq_layer,
        "sequence_precision": seq_precision,
        "precision_hint": precision,
        "max_abs_error_vs_torch": error,
    }
    backend = f"OpenVINO {seq_layer} in {seq_precision or '?'}"
    return Variant(spec, call, backend, build_s=build_s, proof=proof, notes=notes)


def _check_int8_supported() -> None:
    """Unavailable unless the OpenVINO CPU plugin reports INT8 among its capabilities."""
    import openvino as ov

    caps = [str(c) for c in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")]
    if "INT8" not in caps:
        raise Unavailable(f"the OpenVINO CPU plugin reports no INT8 capability here ({caps})")


def _has_nncf() -> bool:
    from nervana_lstm.backends import dist_version

    return dist_version("nncf") is not None
