"""Draw text from an exported character LM with numpy alone (``nervana-lstm sample MODEL_DIR``).

The same rule as :func:`nervana_lstm.train.sampling.generate` on a checkpoint:
the prompt is read first, then each next character is drawn from
``softmax((s - max s) / temperature)`` over the scores ``s`` of the last step,
with the unknown-character id (``len(vocab)``) never drawn; temperature 0 takes
``argmax s``. The random draws come from numpy, so a seed gives other text than
the checkpoint path at temperatures above 0; greedy text is the same.

A model exported without ``--stateful`` takes the state as inputs ``h_0``/``c_0``
and returns ``h_n``/``c_n``: they are fed back at each step. A stateful model
(batch 1) carries the state itself and is fed one character per call.
"""

from __future__ import annotations

import numpy as np

from nervana_lstm.errors import UsageError
from nervana_lstm.export.runtime import ExportedModel

__all__ = ["check_charlm", "generate"]


def check_charlm(model: ExportedModel) -> None:
    """Refuse a model that is not a character LM sampling can drive."""
    meta = model.meta
    if meta.task != "charlm" or meta.vocab is None:
        raise UsageError(
            f"{model.directory} holds a {meta.task!r} model; sampling needs an exported charlm model"
        )
    if meta.stateful and meta.batch != 1:
        raise UsageError(
            f"{model.directory} is a stateful model for a batch of {meta.batch}; sampling draws "
            "one text (export again with --stateful --batch 1)"
        )


def _next(scores: np.ndarray, unk: int, temperature: float, rng: np.random.Generator) -> int:
    scores = scores.astype(np.float64)  # (V,)
    if not np.isfinite(scores).all():
        raise UsageError(
            "the model gave a NaN or infinite score; its weights cannot be sampled from"
        )
    scores[unk] = -np.inf
    if temperature == 0.0:
        return int(np.argmax(scores))
    # In float64, shifted so the best score is 0: every exponent is <= 0, so nothing
    # overflows. A tiny temperature drives the others to -inf (probability 0, never
    # nan: the best stays exp(0) = 1); a huge one drives every exponent to 0 (uniform).
    with np.errstate(over="ignore", under="ignore"):
        probs = np.exp((scores - scores.max()) / float(temperature))
    probs /= probs.sum()
    return int(rng.choice(len(probs), p=probs))


def generate(
    model: ExportedModel,
    prompt: str,
    length: int,
    temperature: float,
    rng: np.random.Generator,
) -> str:
    """``length`` characters continuing ``prompt``; the unknown-character id is never drawn."""
    check_charlm(model)
    unk = len(model.meta.vocab or [])
    ids = model.encode(prompt)[None, :]  # (1, T)
    stateful = model.meta.stateful
    state: dict[str, np.ndarray] | None = None
    if stateful:
        model.reset()
    out: list[int] = []
    result = model.infer(ids)
    for _ in range(length):
        nxt = _next(result["logits"][0, -1], unk, temperature, rng)
        out.append(nxt)
        if not stateful:
            state = {f"{s}_0": result[f"{s}_n"] for s in model.meta.state_names}
        result = model.infer(np.array([[nxt]], dtype=np.int64), state=state)
    if stateful:
        model.reset()
    return model.decode(out)
