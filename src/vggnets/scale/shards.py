"""Units of work: the ordered input list cut into fixed slices of a few hundred items, shared out among processes.

A unit is a contiguous slice of the input list (files in input order; a directory's files sorted by path). Its size is
a multiple of the batch size, so the batches of a unit are exactly the batches one process makes over the whole list:
the same images go through the model together wherever the unit runs, and the results are equal bit for bit (a
matrix product's rounding depends on the rows it is computed with). Units are numbered from 0 and depend only on the
list, the unit size and the batch size, never on the number of processes: a run resumed with a different number of
processes reuses the units another run committed. Processes share the units still to do round-robin (unit ``i`` of the
pending list goes to rank ``i mod world_size``), so a resumed run spreads what is left evenly.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from ..errors import VggnetsError

__all__ = ["DEFAULT_UNIT", "Unit", "by_unit", "make_units", "shard", "unit_size"]

#: Images per committed unit, before rounding up to a multiple of the batch size.
DEFAULT_UNIT = 256

T = TypeVar("T")


@dataclass(frozen=True)
class Unit:
    """Items ``start`` .. ``stop - 1`` of the input list, unit ``index`` of ``count``."""

    index: int
    count: int
    start: int
    stop: int

    def __len__(self) -> int:
        return self.stop - self.start

    @property
    def name(self) -> str:
        """``unit-000003-of-000040``: the stem of the unit's part files."""
        return f"unit-{self.index:06d}-of-{self.count:06d}"

    def take(self, items: Sequence[T]) -> list[T]:
        """This unit's slice of ``items``."""
        return list(items[self.start : self.stop])


def unit_size(requested: int | None, batch_size: int) -> int:
    """The unit size in items: ``requested`` (default :data:`DEFAULT_UNIT`) rounded up to a multiple of
    ``batch_size``."""
    size = DEFAULT_UNIT if requested is None else int(requested)
    if size < 1 or batch_size < 1:
        raise VggnetsError(f"the unit size and batch size must be at least 1, got {size} and {batch_size}.")
    return -(-size // batch_size) * batch_size


def make_units(items: int, size: int) -> list[Unit]:
    """The units of a list of ``items`` items, ``size`` per unit (the last one shorter)."""
    count = -(-items // size) if items else 0
    return [Unit(i, count, i * size, min(items, (i + 1) * size)) for i in range(count)]


def shard(units: Sequence[Unit], rank: int, world_size: int) -> list[Unit]:
    """Rank ``rank``'s share of ``units`` (round-robin), in order."""
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside 0 .. {world_size - 1}")
    return list(units[rank::world_size])


def by_unit(units: Sequence[Unit], items: Iterable[T]) -> Iterator[list[T]]:
    """The results of the concatenated ``units`` (one item per input, in order) cut back into one list per unit."""
    stream = iter(items)
    for unit in units:
        chunk = [item for _, item in zip(range(len(unit)), stream)]
        if len(chunk) != len(unit):
            raise ValueError(f"{unit.name} has {len(unit)} inputs, got {len(chunk)} results")
        yield chunk
