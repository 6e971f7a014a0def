"""The benchmarks' timing: ``examples/adamml/timing.py``, plus how a benchmark prints a ratio.

Every time ratio a benchmark prints is the median of at least five interleaved rounds with its
spread (max - min of the per-round ratios), as :func:`ratio_text` writes it: ``0.512 (0.031)``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import torch

_EXAMPLE = str(Path(__file__).resolve().parents[1] / "examples" / "adamml")
if _EXAMPLE not in sys.path:
    sys.path.insert(0, _EXAMPLE)

from timing import TimeStats, interleaved_times, time_ratio, total_times  # noqa: E402

__all__ = [
    "TimeStats",
    "interleaved_times",
    "ratio_text",
    "sync_for",
    "time_ratio",
    "total_times",
]


def sync_for(device: torch.device) -> Callable[[], None] | None:
    """What :func:`interleaved_times` calls around each function: CUDA's synchronize on a GPU,
    so that queued kernels are counted, else nothing."""
    if device.type != "cuda":
        return None
    return lambda: torch.cuda.synchronize(device)


def ratio_text(numerator: TimeStats, denominator: TimeStats, spec: str = ".3f") -> str:
    """``numerator`` ÷ ``denominator`` as ``ratio (spread)``, both in the format ``spec``."""
    ratio, spread = time_ratio(numerator, denominator)
    return f"{ratio:{spec}} ({spread:{spec}})"
