"""Shared timing helper for the ratio benchmarks: warm-up, interleaved repeats, best-of."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch


def best_times(
    functions: Sequence[Callable[[], object]], repeats: int = 20, warmup: int = 1
) -> list[float]:
    """Best wall time of each function, in seconds, over ``repeats`` interleaved rounds.

    Each round calls every function once, one after the other, so a change of machine load hits
    them all alike and their ratios stay meaningful; ``warmup`` untimed rounds come first. CUDA
    work is synchronised before the clock is read, so a figure is the real duration.
    """
    best = [float("inf")] * len(functions)
    for round_ in range(warmup + repeats):
        for index, function in enumerate(functions):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            start = time.perf_counter()
            function()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            if round_ >= warmup:
                best[index] = min(best[index], time.perf_counter() - start)
    return best
