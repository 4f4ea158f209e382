"""Draw text from a character LM (rebuilt by :func:`~nervana_lstm.train.checkpoint.load_trained`)."""

from __future__ import annotations

import torch

from nervana_lstm.data.vocab import CharVocab
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
    """``length`` characters continuing ``prompt``; the unknown-character id is never drawn."""
    ids = vocab.encode(prompt).view(-1, 1)  # (T, 1)
    logits, state = model(ids)  # (T, 1, V)
    last = logits[-1, 0]  # (V,)
    out: list[int] = []
    for _ in range(length):
        scores = last.float().clone()
        scores[vocab.unk_id] = -float("inf")
        if temperature == 0.0:
            nxt = int(scores.argmax())
        else:
            # Shift so the best score is 0 before dividing: a tiny temperature then gives
            # -inf for the rest (probability 0) instead of inf - inf = nan.
            probs = torch.softmax((scores - scores.max()) / temperature, dim=-1)
            nxt = int(torch.multinomial(probs, 1, generator=generator))
        out.append(nxt)
        logits, state = model(torch.tensor([[nxt]]), state)  # (1, 1, V)
        last = logits[-1, 0]
    return vocab.decode(out)
