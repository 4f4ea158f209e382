"""Rebuild a character LM from its checkpoint and draw text from it."""

from __future__ import annotations

from pathlib import Path

import torch

from nervana_lstm.config import config_from_dict
from nervana_lstm.data.base import TaskSpec
from nervana_lstm.data.vocab import CharVocab
from nervana_lstm.errors import UsageError
from nervana_lstm.models import SequenceModel, build_model
from nervana_lstm.train.checkpoint import load_checkpoint

__all__ = ["generate", "load_sampler"]


def load_sampler(path: Path) -> tuple[SequenceModel, CharVocab]:
    """The model (fused cells, eval mode) and vocabulary saved in a charlm checkpoint."""
    state = load_checkpoint(path)
    cfg = config_from_dict(state["config"], f"config saved in {path}")
    chars = state.get("vocab")
    if cfg.task.name != "charlm" or not isinstance(chars, list):
        raise UsageError(
            f"{path} holds a {cfg.task.name!r} model; sampling needs a charlm checkpoint"
        )
    vocab = CharVocab.from_chars(chars)
    spec = TaskSpec(
        name="charlm", input_kind="tokens", input_size=vocab.size, output_size=vocab.size,
        target="classify_steps", stateful=True,
    )  # fmt: skip
    model = build_model(spec, cfg.model, "fused")
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise UsageError(f"{path}: weights do not fit the saved config ({exc})") from None
    return model.eval(), vocab


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
