"""Random generators addressed by keys, so any batch can be rebuilt from its coordinates.

``generator_for(seed, "train", step)`` always yields the same stream, whatever was
drawn before it: a resumed run or another process gets the same numbers without
sharing any sampler state. The keys are mixed with SplitMix64 (Steele et al. 2014),
whose finaliser spreads neighbouring inputs (step 41, step 42) over unrelated seeds.
"""

from __future__ import annotations

import hashlib

import torch

__all__ = ["derive_seed", "generator_for"]

_MASK64 = (1 << 64) - 1


def _splitmix64(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def _key_int(key: int | str) -> int:
    if isinstance(key, bool) or not isinstance(key, int | str):
        raise TypeError(f"seed keys must be int or str, got {type(key).__name__}")
    if isinstance(key, str):
        # A stable digest: Python's own str hash changes from process to process.
        return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")
    return key & _MASK64


def derive_seed(seed: int, *keys: int | str) -> int:
    """A 63-bit seed that depends on ``seed`` and every key, in order."""
    z = _splitmix64(_key_int(seed))
    for key in keys:
        z = _splitmix64(z ^ _key_int(key))
    return z >> 1  # torch.Generator.manual_seed takes any non-negative 63-bit value


def generator_for(seed: int, *keys: int | str) -> torch.Generator:
    """A fresh CPU generator seeded from ``(seed, *keys)``."""
    gen = torch.Generator()
    gen.manual_seed(derive_seed(seed, *keys))
    return gen
