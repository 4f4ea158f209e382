"""The named implementations a benchmark compares: one table of builders, one ``build``.

Every builder takes a :class:`~nervana_lstm.perf.spec.Spec` (kind, shape,
mode, dtype, threads) and returns a :class:`~nervana_lstm.perf.spec.Variant`
whose ``call()`` is exactly what the runner times. :data:`BUILDERS` names one
builder per bench implementation (``nervana_lstm.choices.BENCH_IMPLS``), as
fastrnns' runner names its runners; the torch builders live in
:mod:`nervana_lstm.perf.torch_impls`, the OpenVINO one in
:mod:`nervana_lstm.perf.openvino_impl`:

==========  ================================================================
onednn      ``make_rnn(kind, "fused")``: torch's fused module. For an LSTM torch
            runs oneDNN's fused RNN primitive; GRU and RNN run ATen's per-step
            kernels (torch has no oneDNN path for them).
native      the same module inside ``torch.backends.mkldnn.flags(enabled=False)``:
            ATen steps one timestep at a time, all gates in one GEMM.
unfused     ``make_rnn(kind, "reference")``: one matmul per gate and per step.
premul      the reference cell with the input projection of all steps hoisted into
            one GEMM before the loop; per-gate recurrent matmuls inside it.
compiled    ``torch.compile`` of the premul step (inductor, CPU).
ipex        ``ipex.optimize`` of the fused module (IPEX swaps ``nn.LSTM`` for its own
            oneDNN-backed LSTM; GRU and RNN are left to torch).
openvino    the fused module converted by :func:`nervana_lstm.export.convert_rnn`,
            compiled with a pinned ``INFERENCE_PRECISION_HINT`` (f32/bf16) or
            quantized by NNCF (int8).
==========  ================================================================

Modes: ``infer`` is one forward under ``torch.no_grad``; ``train`` is one step:
forward, a mean-square loss, backward and an SGD update. ``bf16`` runs torch
paths under ``torch.autocast("cpu", dtype=torch.bfloat16)`` (weights stay fp32,
as in mixed-precision training); ``int8`` exists only through OpenVINO + NNCF.

A path that cannot run here raises
:class:`~nervana_lstm.perf.spec.Unavailable` with the reason.
"""

from __future__ import annotations

from nervana_lstm.choices import BENCH_IMPLS, BenchImpl
from nervana_lstm.perf import torch_impls
from nervana_lstm.perf.openvino_impl import build_openvino
from nervana_lstm.perf.runner import pinned_threads
from nervana_lstm.perf.spec import Builder, Spec, Variant

__all__ = ["BUILDERS", "ONEDNN_BACKED", "build"]

#: implementations whose measurements are rerun under ONEDNN_VERBOSE (native: to show none ran)
ONEDNN_BACKED: tuple[BenchImpl, ...] = ("onednn", "ipex", "native")

#: bench implementation -> its builder, in the order of ``BENCH_IMPLS``
BUILDERS: dict[BenchImpl, Builder] = {
    "onednn": torch_impls.build_onednn,
    "native": torch_impls.build_native,
    "unfused": torch_impls.build_unfused,
    "premul": torch_impls.build_premul,
    "compiled": torch_impls.build_compiled,
    "ipex": torch_impls.build_ipex,
    "openvino": build_openvino,
}


def build(spec: Spec) -> Variant:
    """Build the implementation ``spec.impl`` for ``spec``; raise ``Unavailable`` if it can't.

    Raises ``ValueError`` for a name that is not one of ``BENCH_IMPLS``.
    """
    builder = BUILDERS.get(spec.impl)
    if builder is None:
        raise ValueError(
            f"unknown implementation {spec.impl!r}; expected one of {', '.join(BENCH_IMPLS)}"
        )
    with pinned_threads(spec.threads):
        return builder(spec)
