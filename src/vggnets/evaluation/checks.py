"""Checks of the evaluation API's numeric arguments: integers and lists of scales, with messages that say why."""

from __future__ import annotations

from typing import Any


def int_arg(value: Any, name: str, minimum: int, why: str = "") -> int:
    """An integer argument >= minimum, or a ValueError that says what was expected."""
    if isinstance(value, bool) or not isinstance(value, int):
        try:
            ok = not isinstance(value, bool) and float(value) == int(value)
        except (TypeError, ValueError, OverflowError):
            ok = False
        if not ok:
            raise ValueError(f"{name} must be an integer, got {value!r}")
        value = int(value)
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}{why}, got {value}")
    return value


def scales_arg(scales: Any, minimum: int, why: str) -> tuple[int, ...]:
    """A non-empty tuple of integer scales >= minimum (one number is one scale)."""
    if isinstance(scales, (int, float)) and not isinstance(scales, bool):
        scales = (scales,)
    try:
        items = tuple(scales)
    except TypeError:
        raise ValueError(f"scales must be a sequence of integers, got {scales!r}") from None
    if not items:
        raise ValueError("scales must name at least one scale (smaller image side, in pixels)")
    return tuple(int_arg(q, "every scale", minimum, why) for q in items)
