"""Data-parallel training under PyTorch's own launcher, ``torchrun``.

``torchrun --standalone --nproc-per-node N -m mnistseg train ...`` starts N processes and
tells each its ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` in the environment. Each
process (rank) holds the whole model, trains on its own shard of every batch, and
``DistributedDataParallel`` averages the gradients across ranks in ``backward()``, so all
copies stay identical. NCCL carries that traffic between GPUs, Gloo between CPUs.

Without torchrun's variables everything here is a no-op for a single process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from mnistseg.device import resolve_device


@dataclass(frozen=True)
class DistributedContext:
    """Who this process is among the training processes.

    Attributes:
        rank: this process's number, 0..world_size-1; rank 0 prints and writes.
        world_size: how many processes train together (1: not distributed).
        local_rank: this process's number on its own machine (picks its GPU).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """True when more than one process trains."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True for the one process that prints and writes files."""
        return self.rank == 0


def _environment_int(name: str) -> int:
    try:
        return int(os.environ[name])
    except ValueError:
        raise ValueError(f"environment variable {name}={os.environ[name]!r} is not an integer") from None


def setup(device_name: str) -> tuple[DistributedContext, torch.device]:
    """Join the process group that torchrun describes, if any, and pick this rank's device.

    Args:
        device_name: the ``--device`` value; under torchrun, "auto" and "cuda" mean this
            rank's own GPU (``cuda:LOCAL_RANK``).

    Returns:
        ``(context, device)``.
    """
    if "WORLD_SIZE" not in os.environ or _environment_int("WORLD_SIZE") <= 1:
        return DistributedContext(), resolve_device(device_name)
    context = DistributedContext(
        rank=_environment_int("RANK"),
        world_size=_environment_int("WORLD_SIZE"),
        local_rank=_environment_int("LOCAL_RANK"),
    )
    device = resolve_device(device_name)
    if device.type == "cuda":
        device = torch.device("cuda", context.local_rank)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise ValueError(f"distributed training runs on cuda (NCCL) or cpu (Gloo), not {device.type}")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return context, device


def teardown(context: DistributedContext) -> None:
    """Leave the process group (a no-op for one process).

    After a run that went well, call ``barrier`` first: a rank that tears Gloo down while
    a peer is still at work can abort ("terminate called without an active exception").
    """
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(tensor: torch.Tensor, context: DistributedContext) -> torch.Tensor:
    """Sum ``tensor`` over all ranks, in place, and return it (unchanged for one process)."""
    if context.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def gather_interleaved(tensor: torch.Tensor, total: int, context: DistributedContext) -> torch.Tensor:
    """Put back together rows that ranks took in turns (rank r held rows r, r + world_size, ...).

    Args:
        tensor: this rank's rows ``[n_r, ...]``, in its order.
        total: the rows of all ranks together.
        context: who this rank is.

    Returns:
        ``[total, ...]`` in the original order, on every rank (``tensor`` itself for one process).
    """
    if not context.enabled:
        return tensor
    longest = -(-total // context.world_size)
    padded = tensor.new_zeros((longest, *tensor.shape[1:]))
    padded[: len(tensor)] = tensor
    parts = [torch.empty_like(padded) for _ in range(context.world_size)]
    dist.all_gather(parts, padded)
    whole = tensor.new_zeros((total, *tensor.shape[1:]))
    for rank, part in enumerate(parts):
        rows = len(range(rank, total, context.world_size))
        whole[rank :: context.world_size] = part[:rows]
    return whole


def barrier(context: DistributedContext) -> None:
    """Wait until every rank gets here (a no-op for one process)."""
    if context.enabled:
        dist.barrier()


def per_rank_batch_size(global_batch_size: int, context: DistributedContext) -> int:
    """The batch each rank takes so that together they make the preset's global batch.

    Raises:
        ValueError: if the world size does not divide the global batch size.
    """
    if global_batch_size % context.world_size:
        raise ValueError(
            f"the global batch size {global_batch_size} does not divide among {context.world_size} processes; "
            f"choose --batch-size as a multiple of {context.world_size}"
        )
    return global_batch_size // context.world_size
