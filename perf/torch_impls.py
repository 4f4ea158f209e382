"""The torch implementations of the bench: ``onednn``, ``native``, ``unfused``, ``premul``, ``compiled``, ``ipex``.

Each ``build_<name>(spec) -> Variant`` builds one row of the table in
:mod:`nervana_lstm.perf.impls` from the shared helpers of
:mod:`nervana_lstm.perf.spec`. ``bf16`` runs under
``torch.autocast("cpu", dtype=torch.bfloat16)`` with fp32 weights; ``int8`` is
refused here (it exists only through OpenVINO + NNCF).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

from nervana_lstm.perf.spec import (
    Spec,
    Unavailable,
    Variant,
    check_torch_dtype,
    make_net,
    torch_call,
)
from nervana_lstm.precision import torch_dtype

__all__ = [
    "build_compiled",
    "build_ipex",
    "build_native",
    "build_onednn",
    "build_premul",
    "build_unfused",
]


def build_onednn(spec: Spec) -> Variant:
    check_torch_dtype(spec)
    net = make_net(spec, "fused")
    net.train(spec.mode == "train")
    call = torch_call(spec, net, list(net.parameters()))
    backend = {
        "lstm": "oneDNN fused RNN primitive",
        "dglstm": "toolkit's fused DG-LSTM: hoisted input GEMM, one recurrent GEMM per step",
    }.get(spec.kind, "ATen per-step kernels")
    notes = []
    if spec.kind in ("gru", "rnn"):
        notes.append(f"torch has no oneDNN path for nn.{spec.kind.upper()}: same code as native")
    return Variant(spec, call, backend, notes=notes)


def build_native(spec: Spec) -> Variant:
    import torch

    check_torch_dtype(spec)
    net = make_net(spec, "fused")
    net.train(spec.mode == "train")

    def no_mkldnn() -> contextlib.AbstractContextManager[Any]:
        return torch.backends.mkldnn.flags(enabled=False)

    call = torch_call(spec, net, list(net.parameters()), outer=no_mkldnn)
    return Variant(spec, call, "ATen per-step kernels (mkldnn disabled)")


def build_unfused(spec: Spec) -> Variant:
    check_torch_dtype(spec)
    net = make_net(spec, "reference")
    net.train(spec.mode == "train")
    call = torch_call(spec, net, list(net.parameters()))
    return Variant(spec, call, "reference cell: one matmul per gate per step")


def build_premul(spec: Spec) -> Variant:
    from nervana_lstm.perf.premul import premul_forward

    check_torch_dtype(spec)
    net = make_net(spec, "reference")
    forward = premul_forward(net)
    call = torch_call(spec, forward, list(net.parameters()))
    return Variant(spec, call, "reference cell, input projection hoisted into one GEMM")


def build_compiled(spec: Spec) -> Variant:
    import torch

    from nervana_lstm.perf.premul import premul_forward

    check_torch_dtype(spec)
    # dynamo keeps its compiled graphs per function and stops compiling (runs eager) after
    # a few recompilations of one function; start each measurement from a clean slate
    torch._dynamo.reset()
    net = make_net(spec, "reference")
    forward = premul_forward(net, compile_step=True)
    call = torch_call(spec, forward, list(net.parameters()))
    t0 = time.perf_counter()
    call()  # the first call compiles; keep it out of the warm-up
    build_s = time.perf_counter() - t0
    return Variant(
        spec,
        call,
        "torch.compile (inductor) of the premul step",
        build_s=build_s,
        notes=[f"first call (compile) took {build_s:.1f} s"],
    )


def build_ipex(spec: Spec) -> Variant:
    import torch

    from nervana_lstm.backends import BackendUnavailable, import_ipex, quiet_native_output

    check_torch_dtype(spec)
    try:
        ipex = import_ipex()
    except BackendUnavailable as exc:
        raise Unavailable(str(exc)) from exc
    net = make_net(spec, "fused")
    t0 = time.perf_counter()
    dtype = torch_dtype(spec.dtype)
    with quiet_native_output():
        if spec.mode == "train":
            net.train()
            opt = torch.optim.SGD(net.parameters(), lr=1e-3)
            net, opt = ipex.optimize(net, optimizer=opt, dtype=dtype)
        else:
            net.eval()
            opt = None
            net = ipex.optimize(net, dtype=dtype)
    build_s = time.perf_counter() - t0
    call = torch_call(spec, net, list(net.parameters()), optimizer=opt)
    with quiet_native_output():  # IPEX's first backward prints an autograd-kernel notice
        call()
    swapped = any("ipex" in type(m).__module__ for m in net.modules())
    backend = "IPEX LSTM (oneDNN)" if swapped else "torch module after ipex.optimize"
    notes = [] if swapped else [f"ipex.optimize replaced nothing: the {spec.kind} runs as torch's"]
    return Variant(spec, call, backend, build_s=build_s, notes=notes)
