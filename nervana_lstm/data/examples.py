"""A small example data set in the user-file formats: noisy sine waves, slow or fast.

Each sequence is ``sin(w t + phase)`` plus noise for 8 to 40 steps, with ``w`` drawn
around 0.3 ("slow") or 0.9 ("fast"); the task is to tell which. A recurrent net
learns it in a few hundred steps, which makes it a quick check that a CSV or NPZ
pipeline works end to end. ``configs/data/sines.csv`` was written by
``write_example_csv("configs/data/sines.csv")``.
"""

from __future__ import annotations

import csv

import numpy as np
import torch

from nervana_lstm.atomic import atomic_path
from nervana_lstm.data.seeding import generator_for

__all__ = ["sine_sequences", "write_example_csv", "write_example_npz"]


def sine_sequences(n: int = 120, seed: int = 0) -> tuple[list[torch.Tensor], list[str]]:
    """``n`` sequences of shape (T_i, 1) and their labels, "slow" or "fast"."""
    gen = generator_for(seed, "examples/sines")
    lengths = torch.randint(8, 41, (n,), generator=gen)
    fast = torch.rand(n, generator=gen) < 0.5
    omega = torch.where(fast, 0.9, 0.3) * (1 + 0.2 * (torch.rand(n, generator=gen) - 0.5))
    phase = 2 * torch.pi * torch.rand(n, generator=gen)
    seqs = []
    for i in range(n):
        t = torch.arange(int(lengths[i]), dtype=torch.float32)
        noise = 0.1 * torch.randn(len(t), generator=gen)
        seqs.append((torch.sin(omega[i] * t + phase[i]) + noise).unsqueeze(1))
    return seqs, ["fast" if f else "slow" for f in fast.tolist()]


def _atomic_write(path: str, write) -> None:
    with atomic_path(path) as tmp, open(tmp, "w" if path.endswith(".csv") else "wb") as f:
        write(f)


def write_example_csv(path: str, n: int = 120, seed: int = 0) -> None:
    """Write the example as a long-format CSV (columns sequence_id, t, value, target)."""
    seqs, labels = sine_sequences(n, seed)

    def write(f) -> None:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(["sequence_id", "t", "value", "target"])
        for i, (s, label) in enumerate(zip(seqs, labels, strict=True)):
            for t, v in enumerate(s[:, 0].tolist()):
                out.writerow([f"s{i}", t, f"{v:.3f}", label if t == 0 else ""])

    _atomic_write(path, write)


def write_example_npz(path: str, n: int = 120, seed: int = 0) -> None:
    """Write the example as an NPZ in the padded layout (x (N, T, 1), lengths, y)."""
    seqs, labels = sine_sequences(n, seed)
    lengths = np.array([len(s) for s in seqs])
    x = np.zeros((n, lengths.max(), 1), dtype=np.float32)
    for i, s in enumerate(seqs):
        x[i, : len(s)] = s.numpy()
    _atomic_write(path, lambda f: np.savez(f, x=x, lengths=lengths, y=np.array(labels)))
