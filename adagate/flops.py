"""Compute accounting: measured multiply-accumulates (MACs), reported as the paper's "GFLOPs"."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_macs"]


def count_macs(module: nn.Module, *example_inputs: Any, **example_kwargs: Any) -> int:
    """Count the multiply-accumulates of one forward call, measured with torch's flop counter.

    torch's ``FlopCounterMode`` counts 2 FLOPs per multiply-add for convolutions, matmuls and
    linear layers; we halve it and report MACs, which is what the AdaMML paper (and most of the
    vision literature) calls "GFLOPs" (1 GFLOP = 1e9 MACs). Element-wise ops (BatchNorm, ReLU,
    pooling) are not counted, as in the paper's figures.

    Args:
        module: the network to measure; it is run once under ``torch.no_grad()``.
        *example_inputs: positional inputs of the forward call, e.g. ``x: (N, F, C, H, W)``.
        **example_kwargs: keyword inputs of the forward call.

    Returns:
        MACs of that one call, as an ``int``.

    Example:
        >>> count_macs(torch.nn.Linear(4, 3), torch.randn(2, 4))
        24
    """
    if not isinstance(module, nn.Module):
        raise ValueError(f"module must be an nn.Module, got {type(module).__name__}")
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        module(*example_inputs, **example_kwargs)
    return int(counter.get_total_flops()) // 2
