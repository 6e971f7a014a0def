"""Shared timing helper for the ratio benchmarks: warm-up, repeats, best-of."""

from __future__ import annotations

import time
from collections.abc import Callable

import torch


def best_time(fn: Callable[[], object], repeats: int = 20, warmup: int = 3) -> float:
    """Best wall time of ``fn()`` in seconds over ``repeats`` runs, after ``warmup`` runs.

    CUDA work is synchronised before the clock is read, so the figure is the real duration.
    """
    for _ in range(warmup):
        fn()
    best = float("inf")
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best
