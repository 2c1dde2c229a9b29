"""The units of a run across the processes of a job: committed to parts and merged, or gathered as they finish.

:func:`run_units` is the one loop every command shares. Each process gets its share of the units still to do
(:func:`~vggnets.scale.shards.shard`) and calls ``work`` once with them: ``work`` yields one payload per unit, in
order (one decoding loader for the whole share, so workers keep prefetching across units). Then, either

- with a :class:`~vggnets.scale.parts.Parts` folder, each payload is committed to its part files as soon as it is
  done; when every process has finished, rank 0 reads the parts of all units back in input order and yields them
  (the merge); units committed by an earlier run of the same command are not redone; or
- without one, the processes take their units round by round and rank 0 receives each round's payloads over the
  process group, yielding them in input order as they arrive (nothing is written; memory stays that of one round).

Other ranks yield nothing. A problem (a :class:`~vggnets.errors.VggnetsError`) in any process stops every process at
the next meeting point with that problem's message (:meth:`~vggnets.scale.ranks.Ranks.agree`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import VggnetsError
from .parts import Parts
from .ranks import Ranks
from .shards import Unit, shard

__all__ = ["Codec", "Progress", "open_parts", "run_units"]

#: ``work(units)``: one payload per unit of ``units``, in order.
Work = Callable[[Sequence[Unit]], Iterable[Any]]


@dataclass(frozen=True)
class Codec:
    """How a unit's payload goes to its part files and back: ``write(parts, unit, payload)`` commits it (see
    :meth:`Parts.commit`), ``read(parts, unit)`` loads it."""

    write: Callable[[Parts, Unit, Any], None]
    read: Callable[[Parts, Unit], Any]


@dataclass
class Progress:
    """What a run did: units in all, units found committed by an earlier run, units this process computed."""

    units: int = 0
    resumed: list[int] = field(default_factory=list)
    computed: int = 0


def open_parts(
    ranks: Ranks, folder: Path, fingerprint: dict[str, Any], *, marker: str, restart: bool = False
) -> Parts:
    """The parts folder of this run, opened (created, or checked against ``fingerprint``) by rank 0 before any
    process starts work; a refusal is raised on every process (see :meth:`Parts.open`)."""
    parts, problem = Parts(folder, marker), None
    if ranks.is_main:
        try:
            parts = Parts.open(folder, fingerprint, marker=marker, restart=restart)
        except VggnetsError as exc:
            problem = str(exc)
    ranks.agree(problem)
    return parts


def run_units(
    ranks: Ranks,
    units: Sequence[Unit],
    work: Work,
    *,
    parts: Parts | None = None,
    codec: Codec | None = None,
    progress: Progress | None = None,
) -> Iterator[tuple[Unit, Any]]:
    """(unit, payload) for every unit in order on rank 0 (nothing on the others), computed by ``work`` across the
    processes; with ``parts`` (and its ``codec``) committed there first, and committed units reused."""
    progress = progress if progress is not None else Progress()
    progress.units = len(units)
    if parts is None:
        yield from _gathered(ranks, units, work, progress)
        return
    if codec is None:
        raise ValueError("a Codec is needed to write and read parts")
    done = ranks.from_main([u.index for u in parts.committed(units)] if ranks.is_main else None)
    progress.resumed = list(done)
    skipped = set(done)
    todo = shard([u for u in units if u.index not in skipped], ranks.rank, ranks.world_size)
    problem = None
    try:
        for unit, payload in zip(todo, work(todo), strict=True):
            codec.write(parts, unit, payload)
            progress.computed += 1
    except VggnetsError as exc:
        problem = str(exc)
    ranks.agree(problem)
    if ranks.is_main:
        for unit in units:
            yield unit, codec.read(parts, unit)


def _gathered(
    ranks: Ranks, units: Sequence[Unit], work: Work, progress: Progress
) -> Iterator[tuple[Unit, Any]]:
    """Round r: rank k computes unit r * world_size + k; rank 0 gathers the round and yields it in order."""
    world = ranks.world_size
    mine = shard(units, ranks.rank, world)
    payloads = iter(work(mine))
    for start in range(0, len(units), world):
        payload, problem = None, None
        if start + ranks.rank < len(units):
            try:
                payload = next(payloads)
                progress.computed += 1
            except VggnetsError as exc:
                problem = str(exc)
        gathered = ranks.gather((payload, problem))
        ranks.settle([p for _, p in gathered])
        if ranks.is_main:
            for offset, (payload, _) in enumerate(gathered):
                if start + offset < len(units):
                    yield units[start + offset], payload
