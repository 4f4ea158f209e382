"""The parity gate: an exported IR must compute what the trained torch model computes.

The IR on disk is read back and run against the torch model (fused cells,
fp32, eval mode) on inputs the export never saw: one sequence of one step,
several batches and lengths, a batch of mixed lengths where the model takes
``lengths``, random initial states where it takes them, and for a stateful
model a sequence fed in chunks (down to single steps) against the whole.

**The error measure** is ``max |ir - torch| / max(1, max |torch|)`` over every
output: absolute for outputs up to magnitude 1, relative beyond. Float32
rounding grows with magnitude (a logit of 20 is only representable to about
2e-6), so a purely absolute bound would fail correct models with large logits,
and a purely relative one would be meaningless near zero.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import openvino as ov
    import torch

    from nervana_lstm.export.graph import GraphSpec

__all__ = ["TOLERANCES", "Case", "parity_cases", "parity_error", "run_parity"]

#: largest error (module docstring) accepted per weight precision at an f32 hint
TOLERANCES: dict[str, float] = {"fp32": 1e-5, "fp16": 2e-3}


@dataclass
class Case:
    """One parity input: batch-first numpy arrays for OpenVINO."""

    label: str
    x: np.ndarray  # (N, T) int64 or (N, T, F) float32
    lengths: np.ndarray | None = None  # (N,) int64
    state: dict[str, np.ndarray] | None = None  # h_0/c_0 (N, L*D, H)
    chunks: list[int] | None = None  # stateful: the step counts fed one call at a time


def parity_error(got: np.ndarray, ref: np.ndarray) -> float:
    """``max |got - ref| / max(1, max |ref|)``; see the module docstring."""
    got = np.asarray(got, dtype=np.float64)
    ref = np.asarray(ref, dtype=np.float64)
    if got.shape != ref.shape:
        return float("inf")
    if ref.size == 0:
        return 0.0
    return float(np.abs(got - ref).max() / max(1.0, float(np.abs(ref).max())))


def parity_cases(spec: GraphSpec, seed: int = 0) -> Iterator[Case]:
    """The inputs the gate runs; sizes chosen so no two cases share (N, T)."""
    rng = np.random.default_rng(seed)

    def x_of(n: int, t: int) -> np.ndarray:
        if spec.input_kind == "tokens":
            # the unknown-character id (the last) is never fed in training or sampling
            return rng.integers(0, max(spec.input_size - 1, 1), (n, t)).astype(np.int64)
        return rng.standard_normal((n, t, spec.input_size)).astype(np.float32)

    def state_of(n: int) -> dict[str, np.ndarray]:
        rows = spec.num_layers * spec.directions
        return {
            f"{s}_0": rng.uniform(-1, 1, (n, rows, spec.hidden_size)).astype(np.float32)
            for s in spec.state_names
        }

    if spec.batch is not None:  # stateful: a fixed batch, fed in chunks
        n = spec.batch
        yield Case("chunks 1+3+1+8 steps", x_of(n, 13), chunks=[1, 3, 1, 8])
        yield Case("one step at a time", x_of(n, 6), chunks=[1] * 6)
        yield Case("one chunk of 9 steps", x_of(n, 9), chunks=[9])
        return
    yield Case("N=1 T=1", x_of(1, 1))
    yield Case("N=1 T=17", x_of(1, 17))
    yield Case("N=5 T=9", x_of(5, 9))
    if spec.lengths:
        lengths = np.array([11, 1, 6, 11, 3, 8], dtype=np.int64)
        yield Case("N=6 T=11, mixed lengths 1..11", x_of(6, 11), lengths=lengths)
    if spec.state_inputs:
        yield Case("N=3 T=7, random initial state", x_of(3, 7), state=state_of(3))


def _torch_outputs(model: torch.nn.Module, spec: GraphSpec, case: Case) -> dict[str, np.ndarray]:
    """The torch model's outputs for ``case``, batch first, named as the IR's."""
    import torch

    x = torch.from_numpy(case.x).transpose(0, 1).contiguous()  # (T, N[, F])
    lengths = None if case.lengths is None else torch.from_numpy(case.lengths)
    state: Any = None
    if case.state is not None:
        parts = [
            torch.from_numpy(case.state[f"{s}_0"]).transpose(0, 1).contiguous()
            for s in spec.state_names
        ]
        state = parts[0] if len(parts) == 1 else tuple(parts)
    with torch.no_grad():
        logits, final = model(x, state, lengths)
    finals = final if isinstance(final, tuple) else (final,)
    out = {"logits": (logits.transpose(0, 1) if spec.per_step else logits).numpy()}
    for name, value in zip(spec.state_names, finals, strict=True):
        out[f"{name}_n"] = value.transpose(0, 1).numpy()
    return out


def _ir_outputs(request: ov.InferRequest, spec: GraphSpec, case: Case) -> dict[str, np.ndarray]:
    feed: dict[str, np.ndarray] = {"x": case.x}
    if spec.lengths:  # every sequence at full length unless the case says otherwise
        feed["lengths"] = (
            case.lengths if case.lengths is not None else np.full(len(case.x), case.x.shape[1])
        )
    if spec.state_inputs and spec.batch is None:  # zeros unless the case gives a state
        rows = spec.num_layers * spec.directions
        zeros = np.zeros((case.x.shape[0], rows, spec.hidden_size), np.float32)
        feed.update({f"{s}_0": zeros for s in spec.state_names})
    if case.state is not None:
        feed.update(case.state)
    if case.chunks is None:
        return {p.get_any_name(): np.array(v) for p, v in request.infer(feed).items()}
    request.reset_state()
    pieces, start = [], 0
    for size in case.chunks:
        out = request.infer({"x": case.x[:, start : start + size]})
        pieces.append(np.array(out["logits"]))
        start += size
    axis = 1 if pieces[0].ndim == 3 else None
    logits = np.concatenate(pieces, axis=1) if axis else pieces[-1]  # *_last: the last chunk's
    return {"logits": logits}


def run_parity(
    compiled: ov.CompiledModel,
    model: torch.nn.Module,
    spec: GraphSpec,
    say: Callable[[str], object] | None = None,
) -> dict[str, Any]:
    """Run every case; ``{"max_error": e, "cases": [{label, error, outputs}]}``.

    Outputs the IR does not have (``c_n`` of a model with lengths, the state of
    a stateful model) are not compared.
    """
    request = compiled.create_infer_request()
    rows, worst = [], 0.0
    for case in parity_cases(spec):
        ref = _torch_outputs(model, spec, case)
        got = _ir_outputs(request, spec, case)
        errors = {name: parity_error(got[name], ref[name]) for name in got if name in ref}
        error = max(errors.values())
        worst = max(worst, error)
        rows.append({"case": case.label, "error": error, "outputs": sorted(errors)})
        if say is not None:
            say(f"  {case.label:<34} error {error:.2e}")
    return {"max_error": worst, "cases": rows}
