"""The named implementations a benchmark compares, each built the same way from one spec.

Every builder takes a :class:`Spec` (kind, shape, mode, dtype, threads) and
returns a :class:`Variant` whose ``call()`` is exactly what the runner times:

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
openvino    the fused module converted by :func:`export.convert_rnn`, compiled with a
            pinned ``INFERENCE_PRECISION_HINT`` (f32/bf16) or quantized by NNCF (int8).
==========  ================================================================

Modes: ``infer`` is one forward under ``torch.no_grad``; ``train`` is one step:
forward, a mean-square loss, backward and an SGD update. ``bf16`` runs torch
paths under ``torch.autocast("cpu", dtype=torch.bfloat16)`` (weights stay fp32,
as in mixed-precision training); ``int8`` exists only through OpenVINO + NNCF.

A path that cannot run here raises :class:`Unavailable` with the reason.
"""

from __future__ import annotations

import contextlib
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "DTYPES",
    "IMPLS",
    "MODES",
    "ONEDNN_BACKED",
    "Spec",
    "Unavailable",
    "Variant",
    "build",
]

# torch warns about TF32 on Intel GPUs each time mkldnn flags are set (the native path)
warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")
# IPEX's LSTM op has no registered autograd kernel and torch says so at every backward;
# its fp32 gradients match torch.nn.LSTM's (checked by the cells tests), so the notice is noise
warnings.filterwarnings("ignore", message=r"torch_ipex::ipex_lstm: an autograd kernel")

IMPLS: tuple[str, ...] = (
    "onednn",
    "native",
    "unfused",
    "premul",
    "compiled",
    "ipex",
    "openvino",
)
MODES: tuple[str, ...] = ("infer", "train")
DTYPES: tuple[str, ...] = ("fp32", "bf16", "int8")
#: implementations whose measurements are rerun under ONEDNN_VERBOSE (native: to show none ran)
ONEDNN_BACKED: tuple[str, ...] = ("onednn", "ipex", "native")


class Unavailable(Exception):
    """This implementation cannot run for this spec here; ``str(exc)`` is the reason."""


@dataclass(frozen=True)
class Spec:
    """One measurement: what to build and how to call it."""

    kind: str
    impl: str
    mode: str
    dtype: str
    threads: int
    seq_len: int
    batch: int
    input_size: int
    hidden_size: int
    num_layers: int = 1

    @property
    def shape(self) -> dict[str, int]:
        return {
            "seq_len": self.seq_len,
            "batch": self.batch,
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
        }

    @property
    def key(self) -> str:
        """A stable id: ``lstm-T25-N64-I256-H256-L1/onednn/infer/fp32/t2``."""
        s = self.shape
        return (
            f"{self.kind}-T{s['seq_len']}-N{s['batch']}-I{s['input_size']}-H{s['hidden_size']}"
            f"-L{s['num_layers']}/{self.impl}/{self.mode}/{self.dtype}/t{self.threads}"
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Variant:
    """A built implementation: ``call()`` runs one measured forward or training step."""

    spec: Spec
    call: Callable[[], object]
    backend: str  # what executes the recurrence, in words
    build_s: float = 0.0  # seconds to build (compile, convert, quantize, optimize)
    proof: dict[str, Any] = field(default_factory=dict)  # e.g. OpenVINO runtime precisions
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- helpers


def _torch_dtype(dtype: str) -> Any:
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]


def _autocast(dtype: str) -> contextlib.AbstractContextManager[Any]:
    import torch

    if dtype == "bf16":
        return torch.autocast("cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _inputs(spec: Spec) -> Any:
    import torch

    gen = torch.Generator().manual_seed(1)
    return torch.randn(spec.seq_len, spec.batch, spec.input_size, generator=gen)  # (T, N, I)


def _make(spec: Spec, cells_impl: str) -> Any:
    import torch

    from nervana_lstm.cells import make_rnn

    torch.manual_seed(0)
    try:
        return make_rnn(spec.kind, cells_impl, spec.input_size, spec.hidden_size, spec.num_layers)
    except (ValueError, NotImplementedError) as exc:
        raise Unavailable(f"make_rnn({spec.kind!r}, {cells_impl!r}) failed: {exc}") from exc


def _output(result: Any) -> Any:
    """The per-step output of ``net(x)`` (tensor or ``(out, state)``)."""
    return result[0] if isinstance(result, tuple) else result


def _torch_call(
    spec: Spec,
    forward: Callable[[Any], Any],
    params: list[Any],
    outer: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
    optimizer: Any = None,
) -> Callable[[], object]:
    """The measured call for a torch path: inference forward, or forward+backward+SGD step."""
    import torch

    x = _inputs(spec)
    if spec.mode == "infer":

        def infer() -> object:
            with outer(), torch.no_grad(), _autocast(spec.dtype):
                return forward(x)

        return infer

    opt = optimizer if optimizer is not None else torch.optim.SGD(params, lr=1e-3)

    def train() -> object:
        with outer():
            opt.zero_grad(set_to_none=True)
            with _autocast(spec.dtype):
                out = _output(forward(x))
            loss = out.float().square().mean()
            loss.backward()
            opt.step()
        return loss

    return train


def _check_torch_dtype(spec: Spec) -> None:
    if spec.dtype == "int8":
        raise Unavailable("int8 is measured through OpenVINO with NNCF only (impl openvino)")


# --------------------------------------------------------------------------- builders


def _build_onednn(spec: Spec) -> Variant:
    _check_torch_dtype(spec)
    net = _make(spec, "fused")
    net.train(spec.mode == "train")
    call = _torch_call(spec, net, list(net.parameters()))
    backend = {
        "lstm": "oneDNN fused RNN primitive",
        "dglstm": "toolkit's fused DG-LSTM: hoisted input GEMM, one recurrent GEMM per step",
    }.get(spec.kind, "ATen per-step kernels")
    notes = []
    if spec.kind in ("gru", "rnn"):
        notes.append(f"torch has no oneDNN path for nn.{spec.kind.upper()}: same code as native")
    return Variant(spec, call, backend, notes=notes)


def _build_native(spec: Spec) -> Variant:
    import torch

    _check_torch_dtype(spec)
    net = _make(spec, "fused")
    net.train(spec.mode == "train")

    def no_mkldnn() -> contextlib.AbstractContextManager[Any]:
        return torch.backends.mkldnn.flags(enabled=False)

    call = _torch_call(spec, net, list(net.parameters()), outer=no_mkldnn)
    return Variant(spec, call, "ATen per-step kernels (mkldnn disabled)")


def _build_unfused(spec: Spec) -> Variant:
    _check_torch_dtype(spec)
    net = _make(spec, "reference")
    net.train(spec.mode == "train")
    call = _torch_call(spec, net, list(net.parameters()))
    return Variant(spec, call, "reference cell: one matmul per gate per step")


def _build_premul(spec: Spec) -> Variant:
    from perf.premul import premul_forward

    _check_torch_dtype(spec)
    net = _make(spec, "reference")
    forward = premul_forward(net)
    call = _torch_call(spec, forward, list(net.parameters()))
    return Variant(spec, call, "reference cell, input projection hoisted into one GEMM")


def _build_compiled(spec: Spec) -> Variant:
    import torch

    from perf.premul import premul_forward

    _check_torch_dtype(spec)
    # dynamo keeps its compiled graphs per function and stops compiling (runs eager) after
    # a few recompilations of one function; start each measurement from a clean slate
    torch._dynamo.reset()
    net = _make(spec, "reference")
    forward = premul_forward(net, compile_step=True)
    call = _torch_call(spec, forward, list(net.parameters()))
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


def _build_ipex(spec: Spec) -> Variant:
    import torch

    from nervana_lstm.backends import BackendUnavailable, import_ipex, quiet_native_output

    _check_torch_dtype(spec)
    try:
        ipex = import_ipex()
    except BackendUnavailable as exc:
        raise Unavailable(str(exc)) from exc
    net = _make(spec, "fused")
    t0 = time.perf_counter()
    dtype = _torch_dtype(spec.dtype)
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
    call = _torch_call(spec, net, list(net.parameters()), optimizer=opt)
    with quiet_native_output():  # IPEX's first backward prints an autograd-kernel notice
        call()
    swapped = any("ipex" in type(m).__module__ for m in net.modules())
    backend = "IPEX LSTM (oneDNN)" if swapped else "torch module after ipex.optimize"
    notes = [] if swapped else [f"ipex.optimize replaced nothing: the {spec.kind} runs as torch's"]
    return Variant(spec, call, backend, build_s=build_s, notes=notes)


def _build_openvino(spec: Spec) -> Variant:
    from perf.openvino_impl import build_openvino

    return build_openvino(spec)


_BUILDERS: dict[str, Callable[[Spec], Variant]] = {
    "onednn": _build_onednn,
    "native": _build_native,
    "unfused": _build_unfused,
    "premul": _build_premul,
    "compiled": _build_compiled,
    "ipex": _build_ipex,
    "openvino": _build_openvino,
}


def build(spec: Spec) -> Variant:
    """Build the implementation ``spec.impl`` for ``spec``; raise :class:`Unavailable` if it can't."""
    from perf.runner import pinned_threads

    if spec.impl not in _BUILDERS:
        raise ValueError(f"unknown implementation {spec.impl!r}; expected one of {IMPLS}")
    with pinned_threads(spec.threads):
        return _BUILDERS[spec.impl](spec)
