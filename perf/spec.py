"""What every bench implementation shares: the spec it is built from, the variant it returns.

A builder is a function ``Spec -> Variant`` (the :data:`Builder` type); the
table of named builders is :data:`nervana_lstm.perf.impls.BUILDERS`. This
module also holds the helpers the torch builders and the OpenVINO builder call
alike: the seeded input ``x (T, N, I)``, the seeded module, the measured call
(inference forward, or forward + mean-square loss + backward + SGD step) and
the bf16 autocast.

It imports no other module of the bench package, so every implementation
module can import it without forming a cycle.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "Builder",
    "Spec",
    "Unavailable",
    "Variant",
    "WrongResult",
    "check_torch_dtype",
    "make_inputs",
    "make_net",
    "quiet_known_warnings",
    "step_output",
    "torch_call",
]


class Unavailable(Exception):
    """This implementation cannot run for this spec here; ``str(exc)`` is the reason."""


class WrongResult(Exception):
    """This implementation ran but does not compute what its row claims: outputs other than
    torch's, or another precision than the row's. Its row is an error, never ``n/a``."""


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


#: a named implementation's builder; raises :class:`Unavailable` when it cannot run here
Builder = Callable[[Spec], Variant]


@contextlib.contextmanager
def quiet_known_warnings() -> Iterator[None]:
    """Silence, inside the block only, two warnings every measured call would repeat.

    torch warns about TF32 on Intel GPUs each time mkldnn flags are set (the
    ``native`` path); IPEX's LSTM op has no registered autograd kernel and torch
    says so at every backward, although its fp32 gradients match
    ``torch.nn.LSTM``'s (checked by the cells tests).
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")
        warnings.filterwarnings("ignore", message=r"torch_ipex::ipex_lstm: an autograd kernel")
        yield


def make_inputs(spec: Spec) -> Any:
    """The measured input ``x (T, N, I)``, seeded so every implementation sees the same data."""
    import torch

    gen = torch.Generator().manual_seed(1)
    return torch.randn(spec.seq_len, spec.batch, spec.input_size, generator=gen)  # (T, N, I)


def make_net(spec: Spec, cells_impl: str) -> Any:
    """``make_rnn(spec.kind, cells_impl, I, H, L)`` with seeded weights; Unavailable if refused."""
    import torch

    from nervana_lstm.cells import make_rnn

    torch.manual_seed(0)
    try:
        return make_rnn(spec.kind, cells_impl, spec.input_size, spec.hidden_size, spec.num_layers)
    except (ValueError, NotImplementedError) as exc:
        raise Unavailable(f"make_rnn({spec.kind!r}, {cells_impl!r}) failed: {exc}") from exc


def step_output(result: Any) -> Any:
    """The per-step output of ``net(x)`` (tensor or ``(out, state)``)."""
    return result[0] if isinstance(result, tuple) else result


def torch_call(
    spec: Spec,
    forward: Callable[[Any], Any],
    params: list[Any],
    outer: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext,
    optimizer: Any = None,
) -> Callable[[], object]:
    """The measured call for a torch path: inference forward, or forward+backward+SGD step.

    ``train``: ``loss = mean(out²)`` in fp32, ``loss.backward()``, one SGD step
    (lr 1e-3) over ``params`` (or ``optimizer``'s, when given).
    """
    import torch

    from nervana_lstm.precision import autocast

    x = make_inputs(spec)
    if spec.mode == "infer":

        def infer() -> object:
            with outer(), torch.no_grad(), autocast(spec.dtype):
                return forward(x)

        return infer

    opt = optimizer if optimizer is not None else torch.optim.SGD(params, lr=1e-3)

    def train() -> object:
        with outer():
            opt.zero_grad(set_to_none=True)
            with autocast(spec.dtype):
                out = step_output(forward(x))
            loss = out.float().square().mean()
            loss.backward()
            opt.step()
        return loss

    return train


def check_torch_dtype(spec: Spec) -> None:
    """Refuse ``int8`` on a torch path: it exists only through OpenVINO with NNCF."""
    if spec.dtype == "int8":
        raise Unavailable("int8 is measured through OpenVINO with NNCF only (impl openvino)")
