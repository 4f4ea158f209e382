"""Several processes under ``torchrun``: process group, DDP, and the few collectives the loop needs.

``torchrun`` sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``LOCAL_WORLD_SIZE`` and
the rendezvous address; a plain ``nervana-lstm train`` has none of them and runs
as one process with no process group at all. The communication backend is gloo,
or oneCCL's ``ccl`` when its bindings (``oneccl-bind-pt``) are installed.

Each process takes its own rows of the global batch
(:func:`nervana_lstm.data.base.shard_slice`); DDP averages gradients, so with
equal shards the update equals the single-process update on the whole batch up
to floating-point summation order.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from nervana_lstm.backends import dist_version

__all__ = ["DistContext", "all_gather_rows", "combine", "init_distributed", "shutdown"]


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    backend: str | None = None  # None: a single process, no process group

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def wrap(self, model: nn.Module) -> nn.Module:
        """DistributedDataParallel over ``model`` when several processes run, else ``model``."""
        if not self.active:
            return model
        return nn.parallel.DistributedDataParallel(model)


def _comm_backend() -> str:
    if dist_version("oneccl-bind-pt") is not None:
        try:
            import oneccl_bindings_for_pytorch  # noqa: F401  (registers the "ccl" backend)
        except Exception:  # a broken install: gloo still works
            return "gloo"
        return "ccl"
    return "gloo"


def init_distributed() -> DistContext:
    """Join the process group ``torchrun`` set up, or return a single-process context."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    backend = _comm_backend()
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistContext(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_world_size=int(os.environ.get("LOCAL_WORLD_SIZE", str(world))),
        backend=backend,
    )


def shutdown(ctx: DistContext) -> None:
    if ctx.active and dist.is_initialized():
        dist.destroy_process_group()


def combine(ctx: DistContext, values: torch.Tensor) -> torch.Tensor:
    """Sum a small float vector over all processes (identity for one process)."""
    if ctx.active:
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def all_gather_rows(ctx: DistContext, tensor: torch.Tensor, dim: int) -> torch.Tensor:
    """Concatenate every process's ``tensor`` along ``dim`` in rank order."""
    if not ctx.active:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(ctx.world_size)]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=dim)


def broadcast_flag(ctx: DistContext, flag: bool) -> bool:
    """Rank 0's decision, on every process."""
    if not ctx.active:
        return flag
    value = torch.tensor([1.0 if flag else 0.0])
    dist.broadcast(value, src=0)
    return bool(value.item())
