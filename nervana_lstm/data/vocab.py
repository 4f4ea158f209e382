"""A character vocabulary that round-trips through plain JSON data."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

from nervana_lstm.errors import UsageError

__all__ = ["CharVocab"]


class CharVocab:
    """Characters ``chars[i]`` have id ``i``; one extra id, ``unk_id = len(chars)``, stands
    for any character the training text did not contain.

    The vocabulary is saved as nothing more than ``vocab.chars`` (a list of one-character
    strings), so a checkpoint holding it loads with ``torch.load(weights_only=True)`` or JSON.
    """

    unk_text = "\ufffd"  # what ``decode`` writes for ``unk_id``

    def __init__(self, chars: Sequence[str]) -> None:
        chars = list(chars)
        bad = [c for c in chars if not isinstance(c, str) or len(c) != 1]
        if bad:
            raise UsageError(f"vocabulary entries must be single characters, got {bad[:5]!r}")
        if len(set(chars)) != len(chars):
            raise UsageError("vocabulary has repeated characters")
        self.chars: list[str] = chars
        self._ids = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> CharVocab:
        """Every distinct character of ``text``, in code-point order."""
        return cls(sorted(set(text)))

    @classmethod
    def from_chars(cls, chars: Sequence[str]) -> CharVocab:
        """Rebuild a vocabulary from its saved ``chars`` list."""
        return cls(chars)

    @property
    def size(self) -> int:
        """Number of ids, the unknown-character id included."""
        return len(self.chars) + 1

    @property
    def unk_id(self) -> int:
        return len(self.chars)

    def __len__(self) -> int:
        return self.size

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CharVocab) and other.chars == self.chars

    def encode(self, text: str) -> torch.Tensor:
        """(len(text),) int64 ids; characters outside the vocabulary become ``unk_id``."""
        unk, ids = self.unk_id, self._ids
        return torch.tensor([ids.get(c, unk) for c in text], dtype=torch.int64)

    def decode(self, ids: torch.Tensor | Iterable[int]) -> str:
        """Text for a sequence of ids; ``unk_id`` becomes U+FFFD."""
        if isinstance(ids, torch.Tensor):
            ids = ids.reshape(-1).tolist()
        out = []
        for i in ids:
            if not 0 <= i <= self.unk_id:
                raise ValueError(f"id {i} is outside the vocabulary (0..{self.unk_id})")
            out.append(self.chars[i] if i < self.unk_id else self.unk_text)
        return "".join(out)
