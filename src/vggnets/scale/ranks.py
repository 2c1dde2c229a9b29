"""This process's place in a torchrun job for inference: its device, its CPU threads, collectives that agree on errors.

:func:`join` enters the process group through :func:`vggnets.training.distributed.distributed_process` (gloo on the
CPU, nccl on CUDA; ``cuda:LOCAL_RANK`` for a process's GPU), then sets the CPU threads of the process: the cores this
process may run on shared among the processes of this machine (``LOCAL_WORLD_SIZE``), unless ``OMP_NUM_THREADS`` says
otherwise. torchrun itself sets ``OMP_NUM_THREADS=1`` when it is unset and it starts several processes, so that value
with several local processes is read as unset; ``VGGNETS_THREADS`` fixes the number whatever the rest says. Outside
torchrun (no ``RANK``/``WORLD_SIZE``/``LOCAL_RANK`` in the environment) nothing changes: one process, rank 0 of 1.

Only rank 0 prints and writes final outputs; :meth:`Ranks.agree` makes every process raise when one of them met a
problem, so that no process waits for another that gave up.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import VggnetsError
from ..training.distributed import Distributed, distributed_process, gather_over_processes

__all__ = ["Ranks", "join", "launched_by_torchrun", "threads_per_process"]


def launched_by_torchrun() -> bool:
    """True in a process that torchrun (torch.distributed.run) started, even as the only one."""
    return all(name in os.environ for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"))


def threads_per_process(local_processes: int) -> int | None:
    """The CPU threads each of ``local_processes`` processes on this machine should use, or None to keep torch's
    (``OMP_NUM_THREADS`` set by the user). ``VGGNETS_THREADS`` wins over everything."""
    fixed = os.environ.get("VGGNETS_THREADS")
    if fixed:
        try:
            return max(1, int(fixed))
        except ValueError:
            raise VggnetsError(f"VGGNETS_THREADS must be a whole number, got {fixed!r}.") from None
    omp = os.environ.get("OMP_NUM_THREADS")
    if omp and not (
        omp.strip() == "1" and local_processes > 1
    ):  # "1" with several processes: torchrun's default
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cores // max(1, local_processes))


@dataclass(frozen=True)
class Ranks:
    """This process in the job: rank, world size, device; ``launched`` when torchrun started it."""

    dist: Distributed
    device: torch.device
    launched: bool = False

    @property
    def rank(self) -> int:
        return self.dist.rank

    @property
    def world_size(self) -> int:
        return self.dist.world_size

    @property
    def is_main(self) -> bool:
        return self.dist.is_main

    def gather(self, value: Any) -> list[Any]:
        """Every process's ``value`` (picklable), in rank order; collective."""
        return gather_over_processes(value)

    def from_main(self, value: Any) -> Any:
        """Rank 0's ``value`` on every process; collective."""
        return self.gather(value if self.is_main else None)[0]

    def agree(self, problem: str | None) -> None:
        """Collective: raise on every process when any of them had a ``problem`` (a message, None for none).
        Rank 0 raises the first problem as a :class:`VggnetsError` (printed once); the others exit quietly with 2."""
        self.settle(self.gather(problem))

    def settle(self, problems: list[str | None]) -> None:
        """Raise as :meth:`agree` does when any of the gathered ``problems`` is set."""
        found = [p for p in problems if p]
        if not found:
            return
        if self.is_main:
            raise VggnetsError(found[0])
        raise SystemExit(2)

    def say(self, text: str, *, err: bool = True) -> None:
        """Print on rank 0 only (stderr by default)."""
        if self.is_main:
            print(text, file=sys.stderr if err else sys.stdout, flush=True)


@contextmanager
def join(device: torch.device) -> Iterator[Ranks]:
    """This process's :class:`Ranks` for the body of a ``with``: under torchrun, in the process group (left after),
    on its own device, with its share of the CPU threads; otherwise rank 0 of 1 on ``device``, nothing changed."""
    if not launched_by_torchrun():
        yield Ranks(Distributed(), device)
        return
    with distributed_process(device) as (dist, device):
        local = int(os.environ.get("LOCAL_WORLD_SIZE", str(dist.world_size)))
        threads = threads_per_process(local)
        if threads is not None:
            torch.set_num_threads(threads)
        yield Ranks(dist, device, launched=True)
