"""Segment layout and temporal max-pooling shared by the TSN backbones (AdaMML appendix B)."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import Tensor


def flatten_segments(x: Tensor, in_channels: int) -> tuple[Tensor, int]:
    """Fold the frame axis into the batch so 2D layers see one frame per row.

    Args:
        x: ``(N, F, C, H, W)`` (N segments of F frames) or ``(N, C, H, W)`` (one frame each).
        in_channels: the channel count ``C`` the network was built for.

    Returns:
        ``(frames_flat, F)``: ``frames_flat: (N * F, C, H, W)`` and the number of frames.

    Raises:
        ValueError: if ``x`` is not 4- or 5-dimensional or has the wrong channel count.
    """
    if x.dim() not in (4, 5):
        raise ValueError(
            f"x: expected 5 dims (N, F, C, H, W) or 4 dims (N, C, H, W), got shape {tuple(x.shape)}"
        )
    if x.size(-3) != in_channels:
        raise ValueError(
            f"x: expected {in_channels} channels (the network's in_channels) at dim -3, "
            f"got shape {tuple(x.shape)}"
        )
    if x.dim() == 4:
        return x, 1
    return rearrange(x, "n f c h w -> (n f) c h w"), x.size(1)


def temporal_max_pool(x: Tensor, frames: int) -> tuple[Tensor, int]:
    """Max-pool over time with kernel 3, stride 2, padding 1 (AdaMML appendix B): F -> ceil(F / 2).

    The output keeps the memory format of ``x`` (channels-last stays channels-last).

    Args:
        x: ``(N * F, C, H, W)`` frames of N segments, frame axis folded into the batch.
        frames: ``F``, the number of frames per segment.

    Returns:
        ``(pooled, F_out)`` with ``pooled: (N * F_out, C, H, W)``; one frame is returned as is.
    """
    if frames == 1:
        return x, 1
    # Window i covers frames 2i - 1, 2i, 2i + 1 of its segment. Clamping to the segment repeats an
    # edge frame, which for a max is the same as -inf padding. Row gathers and element-wise maxima
    # are much faster on CPU than max_pool3d over a permuted tensor, and keep channels-last.
    centres = torch.arange(0, frames, 2, device=x.device)
    starts = torch.arange(0, x.size(0), frames, device=x.device)[:, None]
    pooled = x[(starts + centres).flatten()]
    for shift in (-1, 1):
        neighbours = (centres + shift).clamp(0, frames - 1)
        pooled = torch.maximum(pooled, x[(starts + neighbours).flatten()])
    return pooled, centres.numel()


def average_frames(x: Tensor, frames: int) -> Tensor:
    """TSN consensus on features: average the frames left after temporal pooling.

    Args:
        x: ``(N * F, D)`` per-frame features.
        frames: ``F``.

    Returns:
        ``(N, D)``.
    """
    return torch.mean(rearrange(x, "(n f) d -> n f d", f=frames), dim=1)
