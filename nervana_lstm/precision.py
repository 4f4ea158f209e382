"""Precision names to torch: the dtype a name stands for, and the autocast it trains or runs under.

``fp32`` is plain float32. ``bf16`` is mixed precision as CPU training uses it:
weights (and the optimizer's master copy) stay float32, and matmuls run in
bfloat16 under ``torch.autocast("cpu", dtype=torch.bfloat16)``. ``int8`` has no
torch path here; it exists only through OpenVINO + NNCF.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

__all__ = ["autocast", "torch_dtype"]

#: precision name -> name of the torch dtype (torch is imported only when a dtype is asked for,
#: so the bench can import this without importing torch)
_TORCH_DTYPES: dict[str, str] = {"fp32": "float32", "bf16": "bfloat16"}


def torch_dtype(name: str) -> torch.dtype:
    """``fp32`` -> ``torch.float32``, ``bf16`` -> ``torch.bfloat16``."""
    import torch

    if name not in _TORCH_DTYPES:
        raise ValueError(
            f"precision {name!r} has no torch dtype; expected one of {', '.join(_TORCH_DTYPES)}"
        )
    return getattr(torch, _TORCH_DTYPES[name])


def autocast(name: str) -> contextlib.AbstractContextManager[object]:
    """``bf16``: CPU autocast to bfloat16 (weights stay fp32); ``fp32``: nothing."""
    dtype = torch_dtype(name)  # an unknown name is an error, not silently fp32
    if name == "bf16":
        import torch

        return torch.autocast("cpu", dtype=dtype)
    return contextlib.nullcontext()
