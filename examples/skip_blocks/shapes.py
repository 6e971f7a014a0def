"""A synthetic image set where some inputs need depth and others do not.

Each image shows one shape on a textured background with a few distractor strokes. The class is
the shape: circle, ring, square, frame (hollow square), triangle or cross, at a random position,
size and rotation. Inputs come in two kinds:

- **easy**: the shape is painted in its class colour (six hues, slightly jittered). Pooled colour
  statistics, which even the stem of a network (one 3×3 conv) computes, name the class.
- **hard**: the shape is painted grey. Only its geometry tells the class, and the pairs
  circle/ring and square/frame differ only in whether the interior is filled, which takes a
  receptive field the size of the shape: several residual blocks.

So a network that runs every block on every image wastes its depth on the easy half, and a cheap
policy can tell the two kinds apart from a thumbnail (colour saturation). Everything is generated
procedurally from a seed in well under a second; nothing is downloaded.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor
from torch.nn import functional as F

CLASSES = ("circle", "ring", "square", "frame", "triangle", "cross")


class Shapes(NamedTuple):
    """A generated image set.

    images: (N, 3, H, W) float32 in [0, 1]; labels: (N,) int64 class index into ``CLASSES``;
    hard: (N,) bool, True where the shape is grey (no colour cue).
    """

    images: Tensor
    labels: Tensor
    hard: Tensor


def _signed_distance(u: Tensor, v: Tensor, radius: Tensor, labels: Tensor) -> Tensor:
    """Approximate signed distance (pixels, negative inside) to each image's shape.

    u, v: (N, H, W) coordinates in the shape's rotated frame; radius: (N, 1, 1); labels: (N,).
    """
    r = torch.sqrt(u**2 + v**2)
    box = torch.maximum(u.abs(), v.abs())
    triangle = torch.stack(
        [
            u * math.cos(a) + v * math.sin(a)
            for a in (math.pi / 2, 7 * math.pi / 6, 11 * math.pi / 6)
        ]
    ).amax(0)
    arm = 0.35 * radius
    cross = torch.minimum(
        torch.maximum(u.abs() - arm, v.abs() - radius),
        torch.maximum(v.abs() - arm, u.abs() - radius),
    )
    # Sizes are set so that all shapes cover comparable areas and outlines are >= 2 px thick.
    distances = torch.stack(
        [
            r - radius,
            (r - 0.65 * radius).abs() - 0.3 * radius,
            box - 0.85 * radius,
            (box - 0.6 * radius).abs() - 0.25 * radius,
            triangle - 0.55 * radius,
            cross,
        ],
        dim=1,
    )
    return distances.gather(1, labels[:, None, None, None].expand(-1, 1, *u.shape[1:]))[:, 0]


def _hue_to_rgb(hue: Tensor) -> Tensor:
    """(N,) hue in [0, 1) → (N, 3) fully saturated RGB."""
    k = (torch.tensor([5.0, 3.0, 1.0]) + hue[:, None] * 6) % 6
    return 1 - torch.clamp(torch.minimum(k, 4 - k), 0, 1)


def make_shapes(count: int, size: int = 32, hard_fraction: float = 0.5, seed: int = 0) -> Shapes:
    """Generate ``count`` images of ``size``×``size`` pixels, deterministically from ``seed``.

    Args:
        count: number of images (> 0).
        size: image side in pixels (>= 16).
        hard_fraction: share of images whose shape is grey, in [0, 1].
        seed: random seed; the same arguments give the same images.

    Returns:
        ``Shapes(images (N, 3, size, size), labels (N,), hard (N,))``, classes balanced at random.

    Raises:
        ValueError: if ``count``, ``size`` or ``hard_fraction`` is out of range.
    """
    if count <= 0 or size < 16 or not 0 <= hard_fraction <= 1:
        raise ValueError(
            f"need count > 0, size >= 16, 0 <= hard_fraction <= 1; got {count}, {size}, "
            f"{hard_fraction}"
        )
    g = torch.Generator().manual_seed(seed)

    def uniform(low: float, high: float, *shape: int) -> Tensor:
        return low + (high - low) * torch.rand(*shape, generator=g)

    labels = torch.randint(len(CLASSES), (count,), generator=g)
    hard = torch.rand(count, generator=g) < hard_fraction
    scale = size / 32

    # Background: grey level + smooth blotches + pixel noise, the same for both kinds.
    level = uniform(0.3, 0.7, count, 1, 1, 1)
    blotches = F.interpolate(
        uniform(-0.15, 0.15, count, 1, 4, 4), size=(size, size), mode="bilinear"
    )
    background = (level + blotches).expand(-1, 3, -1, -1)

    # The shape: random centre, size and rotation; anti-aliased edge of one pixel.
    radius = uniform(7, 11, count, 1, 1) * scale
    centre_x = uniform(0, 1, count, 1, 1) * (size - 2 * radius) + radius
    centre_y = uniform(0, 1, count, 1, 1) * (size - 2 * radius) + radius
    angle = uniform(0, 2 * math.pi, count, 1, 1)
    ys, xs = torch.meshgrid(
        torch.arange(size, dtype=torch.float32) + 0.5,
        torch.arange(size, dtype=torch.float32) + 0.5,
        indexing="ij",
    )
    dx, dy = xs - centre_x, ys - centre_y
    u = dx * torch.cos(angle) + dy * torch.sin(angle)
    v = -dx * torch.sin(angle) + dy * torch.cos(angle)
    alpha = (0.5 - _signed_distance(u, v, radius, labels)).clamp(0, 1)[:, None]

    # Lighter or darker than the background; easy shapes get their class hue on top.
    contrast = uniform(0.25, 0.4, count, 1, 1, 1) * torch.where(
        torch.rand(count, 1, 1, 1, generator=g) < 0.5, -1.0, 1.0
    )
    hue = (labels.float() + uniform(-0.12, 0.12, count)) / len(CLASSES)
    tint = _hue_to_rgb(hue % 1.0) - 0.5
    saturation = torch.where(hard, 0.0, uniform(0.5, 0.8, count))
    colour = level + contrast + saturation[:, None, None, None] * tint[:, :, None, None]

    images = background * (1 - alpha) + colour * alpha

    # Distractors: three thin grey strokes per image, anywhere.
    for _ in range(3):
        start = uniform(0, size, count, 2, 1, 1)
        end = start + uniform(-8, 8, count, 2, 1, 1) * scale
        direction = end - start
        t = (
            ((xs - start[:, 0]) * direction[:, 0] + (ys - start[:, 1]) * direction[:, 1])
            / (direction**2).sum(1).clamp(min=1e-6)
        ).clamp(0, 1)
        distance = torch.hypot(
            xs - start[:, 0] - t * direction[:, 0], ys - start[:, 1] - t * direction[:, 1]
        )
        stroke = (1.2 - distance).clamp(0, 1)[:, None]
        shade = uniform(0.1, 0.9, count, 1, 1, 1)
        images = images * (1 - stroke) + shade * stroke

    images = images + 0.04 * torch.randn(images.shape, generator=g)
    return Shapes(images.clamp(0, 1), labels, hard)
