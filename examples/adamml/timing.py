"""Wall time of several functions, measured together: the one timing loop of the examples and
benchmarks.

Every time ratio we publish is the median of at least five interleaved repeats, with its
spread: each round calls every function once, one after the other, so a change in machine load
(another process, thermal throttling) hits all of them alike, and round ``i`` of one function
can be divided by round ``i`` of another.

Example:
    >>> fns = {"short": lambda: sum(range(10)), "long": lambda: sum(range(10**5))}
    >>> stats = interleaved_times(fns, repeats=5)
    >>> ratio, spread = time_ratio(stats["long"], stats["short"])
    >>> ratio > 1 and len(stats["long"].times) == 5
    True
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import NamedTuple

import torch


class TimeStats(NamedTuple):
    """Seconds of one function over the timed rounds.

    Attributes:
        median: median of ``times``, the figure to report.
        spread: ``max(times) - min(times)``, how much the rounds disagree.
        times: seconds of each timed round, in round order.
    """

    median: float
    spread: float
    times: tuple[float, ...]

    @classmethod
    def of(cls, times: Iterable[float]) -> TimeStats:
        """The statistics of ``times`` (seconds per round, in round order; at least one)."""
        times = tuple(times)
        if not times:
            raise ValueError("times: expected at least one round, got none")
        return cls(statistics.median(times), max(times) - min(times), times)


def interleaved_times(
    fns: Mapping[str, Callable[[], object]],
    repeats: int = 5,
    warmup: int = 1,
    sync: Callable[[], None] | None = None,
    *,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, TimeStats]:
    """Time every function of ``fns`` over ``warmup + repeats`` interleaved rounds.

    Each round calls the functions once each, in the order of ``fns``; the first ``warmup``
    rounds (caches, lazy initialisation, autotuning) are not timed.

    Args:
        fns: name -> a call without arguments; its result is discarded.
        repeats: timed rounds (at least 1; publish ratios from at least 5).
        warmup: untimed rounds before them.
        sync: called before the clock starts and before it stops, so that work queued on an
            accelerator is counted (``torch.cuda.synchronize``); ``None`` on the CPU.
        clock: seconds as a float (``time.perf_counter``; tests pass a fake one).

    Returns:
        name -> :class:`TimeStats`, in the order of ``fns``.

    Raises:
        ValueError: ``repeats`` below 1 or ``warmup`` below 0.
    """
    if repeats < 1:
        raise ValueError(f"repeats: expected >= 1, got {repeats}")
    if warmup < 0:
        raise ValueError(f"warmup: expected >= 0, got {warmup}")
    times: dict[str, list[float]] = {name: [] for name in fns}
    for round_ in range(warmup + repeats):
        for name, fn in fns.items():
            if sync is not None:
                sync()
            began = clock()
            fn()
            if sync is not None:
                sync()
            elapsed = clock() - began
            if round_ >= warmup:
                times[name].append(elapsed)
    return {name: TimeStats.of(seconds) for name, seconds in times.items()}


def time_ratio(numerator: TimeStats, denominator: TimeStats) -> tuple[float, float]:
    """``numerator`` ÷ ``denominator``: the ratio of the medians, and the spread of the ratios of
    each round (round ``i`` of both ran back to back, under the same machine load).

    Raises:
        ValueError: the two were not timed over the same number of rounds.
    """
    if len(numerator.times) != len(denominator.times):
        raise ValueError(
            f"denominator: expected {len(numerator.times)} rounds like the numerator, "
            f"got {len(denominator.times)}"
        )
    ratios = [n / d for n, d in zip(numerator.times, denominator.times, strict=True)]
    return numerator.median / denominator.median, max(ratios) - min(ratios)


def total_times(parts: Iterable[TimeStats]) -> TimeStats:
    """The statistics of several functions run as one: their seconds summed round by round.

    Raises:
        ValueError: no part, or parts timed over different numbers of rounds.
    """
    parts = list(parts)
    if not parts:
        raise ValueError("parts: expected at least one, got none")
    rounds = {len(part.times) for part in parts}
    if len(rounds) > 1:
        raise ValueError(f"parts: expected the same number of rounds, got {sorted(rounds)}")
    return TimeStats.of(map(sum, zip(*(part.times for part in parts), strict=True)))


class Stopwatch:
    """Seconds per named part of a computation; a part entered inside another pauses the outer
    one (``predict.py``: inputs that routing builds count as decoding). CUDA is synchronised at
    every switch.

    Args:
        parts: the names of the parts.
        device: where the model runs.
        clock: ``time.perf_counter`` (wall time) or ``time.process_time`` (CPU time of the
            process, steadier than wall time on a machine that other work keeps busy).
    """

    def __init__(
        self, parts: Iterable[str], device: torch.device,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:  # fmt: skip
        self.device = device
        self.clock = clock
        self.seconds: dict[str, float] = dict.fromkeys(parts, 0.0)
        self._open: list[str] = []
        self._since = 0.0

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return self.clock()

    @contextmanager
    def __call__(self, part: str) -> Iterator[None]:
        now = self._now()
        if self._open:
            self.seconds[self._open[-1]] += now - self._since
        self._open.append(part)
        self._since = now
        try:
            yield
        finally:
            now = self._now()
            self.seconds[self._open.pop()] += now - self._since
            self._since = now
