"""Character-level language modelling with truncated backpropagation through time.

The training text is cut into ``N`` equal regions, one per row of the global batch
(a *stream*). Batch ``step`` holds, for every stream, the next ``seq_len`` characters
and, as targets, the same characters shifted by one::

    S      = len(train) // N                  stream length
    C      = (S - 1) // seq_len               chunks per pass ("epoch")
    e, k   = divmod(step, C)
    o_e    ~ U{0, ..., S - 1 - C*seq_len}     start offset of pass e (seeded by (seed, e))
    start  = n*S + o_e + k*seq_len            for stream n
    x[:, n] = train[start : start + seq_len]
    y[:, n] = train[start + 1 : start + seq_len + 1]

so chunk ``k + 1`` of a stream continues chunk ``k``, and the model carries its
recurrent state from one batch to the next (``TaskSpec.stateful``). When a pass ends
every stream jumps back to the start of its region; ``Batch.reset`` is True on those
batches (``k == 0``) and the carried state must be zeroed first. Under ``torchrun``
each process takes its rows of the global batch, that is its own streams.

The vocabulary is the training text's characters plus one unknown-character id.
The held-out split is the last ``eval_fraction`` of the text, cut into streams the
same way and read once in order (``reset`` on its first batch).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from nervana_lstm.config import CharLMOptions
from nervana_lstm.data.base import Batch, TaskSpec, shard_slice
from nervana_lstm.data.corpus import load_corpus
from nervana_lstm.data.seeding import generator_for
from nervana_lstm.data.vocab import CharVocab
from nervana_lstm.errors import UsageError

__all__ = ["CharLMTask", "charlm_spec"]


def charlm_spec(vocab: CharVocab) -> TaskSpec:
    """What a character LM over ``vocab`` reads and predicts: token ids in, the next id out."""
    return TaskSpec(
        name="charlm", input_kind="tokens", input_size=vocab.size, output_size=vocab.size,
        target="classify_steps", stateful=True,
    )  # fmt: skip


class CharLMTask:
    """Next-character prediction on ``options.corpus``; ``CharLMOptions`` declares the
    options (``seq_len``, ``corpus``, ``seed``, ``eval_fraction``) and their bounds.

    Attributes:
        vocab: the ``CharVocab``; save ``vocab.chars`` to rebuild it
        corpus_name, corpus_sha256: what text was read
        train_ids, eval_ids: the encoded splits, (L,) int64 each
    """

    def __init__(self, options: CharLMOptions) -> None:
        self.seq_len, self.seed = options.seq_len, options.seed
        self.eval_fraction = options.eval_fraction
        source = load_corpus(options.corpus)
        text = source.text
        cut = len(text) - math.ceil(len(text) * self.eval_fraction)
        if cut < 2 or len(text) - cut < 2:
            raise UsageError(
                f"charlm: corpus {source.name!r} has {len(text)} characters, too few to hold "
                f"out {self.eval_fraction:g} of it (each split needs at least 2)"
            )
        self.corpus_name, self.corpus_sha256 = source.name, source.sha256
        self.vocab = CharVocab.from_text(text[:cut])
        self.train_ids = self.vocab.encode(text[:cut])  # (L,)
        self.eval_ids = self.vocab.encode(text[cut:])  # (M,)
        self.spec = charlm_spec(self.vocab)

    def layout(self, batch_size: int) -> tuple[int, int]:
        """(stream length S, chunks per pass C) for a global batch of ``batch_size`` streams."""
        stream = len(self.train_ids) // batch_size
        if stream < self.seq_len + 1:
            raise UsageError(
                f"charlm: the training text has {len(self.train_ids)} characters, too few for "
                f"{batch_size} streams of seq_len {self.seq_len}: need at least "
                f"{batch_size * (self.seq_len + 1)}; lower batch_size or seq_len"
            )
        return stream, (stream - 1) // self.seq_len

    def steps_per_epoch(self, batch_size: int) -> int:
        """Batches in one pass over the training text (``C``)."""
        return self.layout(batch_size)[1]

    def _chunk(self, ids: torch.Tensor, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        index = starts[:, None] + torch.arange(self.seq_len + 1)  # (N, seq_len + 1)
        window = ids[index]
        return window[:, :-1].t().contiguous(), window[:, 1:].t().contiguous()  # (T, N) each

    def train_batch(self, step: int, batch_size: int, rank: int = 0, world_size: int = 1) -> Batch:
        rows = shard_slice(batch_size, rank, world_size)
        stream, chunks = self.layout(batch_size)
        epoch, k = divmod(step, chunks)
        slack = stream - 1 - chunks * self.seq_len
        gen = generator_for(self.seed, "charlm/offset", epoch)
        offset = int(torch.randint(0, slack + 1, (1,), generator=gen))
        streams = torch.arange(rows.start, rows.stop)
        x, y = self._chunk(self.train_ids, streams * stream + offset + k * self.seq_len)
        reset = torch.full((len(streams),), k == 0, dtype=torch.bool)
        return Batch(x=x, y=y, reset=reset)

    def eval_batches(self, batch_size: int) -> Iterator[Batch]:
        """The held-out text as up to ``batch_size`` streams read in order; carry the
        state from batch to batch, zeroing it where ``reset`` is True (the first batch)."""
        m = len(self.eval_ids)
        streams = max(1, min(batch_size, (m - 1) // self.seq_len))
        stream = m // streams
        if stream - 1 < self.seq_len:  # held-out text shorter than one chunk: one short batch
            ids = self.eval_ids
            yield Batch(
                x=ids[:-1, None].clone(), y=ids[1:, None].clone(), reset=torch.ones(1, dtype=bool)
            )
            return
        base = torch.arange(streams) * stream
        for k in range((stream - 1) // self.seq_len):
            x, y = self._chunk(self.eval_ids, base + k * self.seq_len)
            yield Batch(x=x, y=y, reset=torch.full((streams,), k == 0, dtype=torch.bool))

    def loss(self, output: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Cross-entropy in nats per character; ``output`` is (T, N, V) logits."""
        return F.cross_entropy(output.float().flatten(0, 1), batch.y.flatten())

    def metrics(self, output: torch.Tensor, batch: Batch) -> dict[str, float]:
        loss = float(self.loss(output.detach(), batch))
        return {"loss": loss, "bpc": loss / math.log(2)}
