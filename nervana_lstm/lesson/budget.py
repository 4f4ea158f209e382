"""Equal parameter budgets: the hidden size that gives each kind the same parameter count.

A model's trainable parameters, for a task spec and a model config, are

    embedding   V·E                      token tasks only; does not depend on H
    recurrence  count_params(kind, I, H, L)   the formulas of ``nervana-lstm params``
    head        D·H·O + O

with ``I`` the embedding width (token tasks) or the feature count. The count
grows with ``H``, so the hidden size closest to a target count is found by
bisection. :func:`model_params` agrees with ``sum(p.numel())`` of the model
:func:`~nervana_lstm.models.build_model` builds, which the tests check.
"""

from __future__ import annotations

from nervana_lstm.cells.counts import count_params
from nervana_lstm.config import ModelConfig
from nervana_lstm.data.base import TaskSpec
from nervana_lstm.errors import UsageError

__all__ = ["MAX_HIDDEN", "TOLERANCE", "matched_hidden_size", "model_params"]

#: the largest hidden size the solver considers (the config's own bound)
MAX_HIDDEN = 65536
#: how far (relative) a solved count may lie from the target
TOLERANCE = 0.02


def model_params(spec: TaskSpec, model: ModelConfig) -> int:
    """Trainable parameters of ``build_model(spec, model, impl)`` (either impl)."""
    tokens = spec.input_kind == "tokens"
    rnn_input = model.embedding_dim if tokens else spec.input_size
    directions = 2 if model.bidirectional else 1
    embedding = spec.input_size * model.embedding_dim if tokens else 0
    recurrence = count_params(
        model.kind,
        rnn_input,
        model.hidden_size,
        model.num_layers,
        bidirectional=model.bidirectional,
    )
    head = directions * model.hidden_size * spec.output_size + spec.output_size
    return embedding + recurrence + head


def matched_hidden_size(spec: TaskSpec, model: ModelConfig, kind: str, target: int) -> int:
    """The hidden size that brings ``kind`` closest to ``target`` parameters.

    ``model`` supplies every other size (layers, embedding, direction). Raises a
    :class:`UsageError` when no hidden size comes within :data:`TOLERANCE` of
    the target (a target too small for the step between consecutive sizes).
    """

    def count(h: int) -> int:
        return model_params(spec, model.model_copy(update={"kind": kind, "hidden_size": h}))

    lo, hi = 1, MAX_HIDDEN  # count(lo) may already exceed target; count(hi) does
    if count(hi) < target:
        raise UsageError(
            f"a {kind} needs more than hidden size {MAX_HIDDEN} to reach {target:,} parameters"
        )
    while lo < hi:  # the smallest h with count(h) >= target
        mid = (lo + hi) // 2
        if count(mid) >= target:
            hi = mid
        else:
            lo = mid + 1
    best = min((h for h in (lo - 1, lo) if h >= 1), key=lambda h: abs(count(h) - target))
    gap = abs(count(best) - target) / target
    if gap > TOLERANCE:
        raise UsageError(
            f"no {kind} hidden size comes within {TOLERANCE:.0%} of {target:,} parameters "
            f"(closest: H={best} with {count(best):,}); use a larger --hidden-size"
        )
    return best
