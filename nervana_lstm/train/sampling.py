"""Draw text from a character LM (rebuilt by :func:`~nervana_lstm.train.checkpoint.load_trained`)."""

from __future__ import annotations

import torch

from nervana_lstm.data.vocab import CharVocab
from nervana_lstm.errors import UsageError
from nervana_lstm.models import SequenceModel

__all__ = ["generate"]


@torch.no_grad()
def generate(
    model: SequenceModel,
    vocab: CharVocab,
    prompt: str,
    length: int,
    temperature: float,
    generator: torch.Generator,
) -> str:
    """``length`` characters continuing ``prompt``; the unknown-character id is never drawn.

    Each next character is drawn from ``softmax((s - max s) / temperature)`` over the
    last step's scores ``s``, computed in float64, so any finite temperature > 0 gives
    a distribution (0 takes ``argmax s``).
    """
    ids = vocab.encode(prompt).view(-1, 1)  # (T, 1)
    logits, state = model(ids)  # (T, 1, V)
    last = logits[-1, 0]  # (V,)
    out: list[int] = []
    for _ in range(length):
        scores = last.double().clone()  # (V,) float64: 1e-300 is 0 in float32, 1e39 is inf
        if not bool(torch.isfinite(scores).all()):
            raise UsageError(
                "the model gave a NaN or infinite score; its weights cannot be sampled from"
            )
        scores[vocab.unk_id] = -float("inf")
        if temperature == 0.0:
            nxt = int(scores.argmax())
        else:
            # Shifted so the best score is 0 before dividing: every exponent is <= 0, so
            # nothing overflows. A tiny temperature drives the rest to -inf (probability 0,
            # never nan: the best stays exp(0) = 1); a huge one drives all to 0 (uniform).
            probs = torch.softmax((scores - scores.max()) / float(temperature), dim=-1)
            nxt = int(torch.multinomial(probs, 1, generator=generator))
        out.append(nxt)
        logits, state = model(torch.tensor([[nxt]]), state)  # (1, 1, V)
        last = logits[-1, 0]
    return vocab.decode(out)
