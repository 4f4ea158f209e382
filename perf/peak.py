"""The GEMM peak a report compares against, measured in the same run.

A recurrent layer is a chain of matrix products, so the fairest ceiling on
this machine is what a large square ``torch.mm`` reaches at the same dtype and
thread count, measured moments before the RNN runs (shared machines drift;
a datasheet peak would hide that).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from nervana_lstm.perf.runner import pinned_threads, time_callable
from nervana_lstm.precision import torch_dtype

__all__ = ["GemmPeak", "measure_gemm_peak"]


@dataclass(frozen=True)
class GemmPeak:
    """Best GEMM throughput seen: ``2·n³`` FLOPs over the fastest call."""

    dtype: str
    threads: int
    size: int
    gflops: float
    median_gflops: float

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def measure_gemm_peak(dtype: str, threads: int, size: int = 1024, repeats: int = 15) -> GemmPeak:
    """Time ``C = A @ B`` with square ``size`` matrices of ``dtype`` (``fp32`` or ``bf16``).

    The peak uses the fastest call (a ceiling, not a typical figure); the
    median is kept alongside it to show how steady the machine was.
    """
    import torch

    dt = torch_dtype(dtype)
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(size, size, generator=gen).to(dt)
    b = torch.randn(size, size, generator=gen).to(dt)
    out = torch.empty(size, size, dtype=dt)
    flops = 2.0 * size**3
    with pinned_threads(threads), torch.no_grad():
        timing = time_callable(lambda: torch.mm(a, b, out=out), warmup=3, repeats=repeats)
    return GemmPeak(
        dtype=dtype,
        threads=threads,
        size=size,
        gflops=flops / (timing.min_ms * 1e6),
        median_gflops=flops / (timing.median_ms * 1e6),
    )
