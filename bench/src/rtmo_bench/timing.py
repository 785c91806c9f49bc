"""Timing in alternation: every benchmark that compares two ways of doing something times them in turn, so that
load from other processes on the machine falls on both alike."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import TypeVar

__all__ = ["alternate"]

T = TypeVar("T")


def alternate(fns: Mapping[str, Callable[[], T]], *, rounds: int, warmup: int) -> dict[str, list[tuple[T, float]]]:
    """Call every function ``warmup`` times untimed, then ``rounds`` times timed, one after the other in each round.

    Returns:
        For each name, one ``(return value, seconds)`` per round.
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    timed: dict[str, list[tuple[T, float]]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            value = fn()
            timed[name].append((value, time.perf_counter() - start))
    return timed
