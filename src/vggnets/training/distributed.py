"""Several processes under ``torchrun``: the process group, the wrapped model (SyncBN, DDP, compile), summed metrics.

The training order is a ``DistributedSampler``'s even with one process (:mod:`vggnets.training.data`), so K processes
with batch B/K take the same global batches as one process with batch B; validation counts are summed over processes,
so every process sees the same accuracy and the plateau schedule drops the rate on all of them at once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn


@dataclass(frozen=True)
class Distributed:
    """This process's place in a ``torchrun`` job (rank 0 of 1 without one)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> Distributed:
    """Join the process group that ``torchrun`` describes in the environment (RANK, WORLD_SIZE, LOCAL_RANK,
    MASTER_ADDR, MASTER_PORT): nccl for CUDA, gloo otherwise. Without torchrun (WORLD_SIZE unset or 1) it does nothing.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Distributed()
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        # torchrun's store outlives a restart (--max-restarts): without a namespace per attempt, a process of the new
        # group can read the address a process of the failed one published, and fail to connect to it.
        store, rank, world_size = next(dist.rendezvous("env://"))
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        dist.init_process_group(
            "nccl" if device_type == "cuda" else "gloo",
            store=dist.PrefixStore(f"vggnets/attempt-{attempt}", store),
            rank=rank,
            world_size=world_size,
        )
    return Distributed(dist.get_rank(), dist.get_world_size(), local_rank)


@contextmanager
def distributed_process(device: torch.device) -> Iterator[tuple[Distributed, torch.device]]:
    """Join ``torchrun``'s process group (:func:`init_distributed`) for the body of a ``with``, and leave it after.

    Yields this process's place and its device: under torchrun, CUDA becomes the process's own GPU
    (``cuda:LOCAL_RANK``) and, unless OMP_NUM_THREADS is set, the CPU threads are shared out among the processes.
    """
    dist = init_distributed(device.type)
    try:
        if dist.world_size > 1:
            if device.type == "cuda":
                device = torch.device("cuda", dist.local_rank)
            if "OMP_NUM_THREADS" not in os.environ:
                torch.set_num_threads(max(1, (os.cpu_count() or 1) // dist.world_size))
        yield dist, device
        if dist.world_size > 1 and torch.distributed.is_initialized():
            # After success, leave together: a process that tears its gloo connections down while a peer still
            # uses them makes that peer abort ("terminate called without an active exception"). After an error
            # there is no barrier (a peer may never arrive), but the group is still destroyed, so its connections
            # are closed before torchrun restarts the job (--max-restarts).
            torch.distributed.barrier()
    finally:
        if dist.world_size > 1 and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def wrap_model(
    model: nn.Module, device: torch.device, dist: Distributed, *, sync_bn: bool = False, compile: bool = False
) -> nn.Module:
    """Move ``model`` to ``device``; in a process group, convert BatchNorm to SyncBatchNorm (``sync_bn``; CUDA only)
    and wrap it in DistributedDataParallel; then ``torch.compile`` it (``compile``). :func:`unwrap` gives it back."""
    model.to(device)
    if dist.world_size > 1:
        if sync_bn:
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        ids = [dist.local_rank] if device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    if compile:
        model = torch.compile(model)
    return model


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside DistributedDataParallel and ``torch.compile`` wrappers: its state_dict has the plain keys
    (no ``module.`` or ``_orig_mod.`` prefixes)."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


def is_distributed() -> bool:
    """Whether this process is in an initialised process group."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def current_process() -> Distributed:
    """This process's place in the current process group (rank 0 of 1 outside one)."""
    if not is_distributed():
        return Distributed()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    return Distributed(torch.distributed.get_rank(), torch.distributed.get_world_size(), local_rank)


def sum_over_processes(values: list[float], device: torch.device) -> list[float]:
    """Each value summed over the processes of the group (the values themselves outside one); collective."""
    if not is_distributed():
        return values
    total = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(total)
    return total.tolist()


def gather_over_processes(value: Any) -> list[Any]:
    """Every process's ``value`` (picklable), in rank order (``[value]`` outside a group); collective."""
    if not is_distributed():
        return [value]
    values: list[Any] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(values, value)
    return values
