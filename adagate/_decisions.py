"""The one contract for decisions, shared by fusion, losses, routing and FLOP accounting.

Decisions are tensors of dtype bool, integer or floating point: hard decisions hold 0 or 1
(a straight-through gate's output, or a thresholded one), soft decisions are probabilities in
[0, 1]. A row is *selected* (routing computes it) where its decision is nonzero: the rule under
which routing never changes what the fusion computes, since the fusion multiplies each
segment's logits by its decision and a zero decision is the only one that ignores them.
"""

from __future__ import annotations

import torch
from torch import Tensor

ACCEPTED = "a bool, integer or floating tensor"


def check_decisions(decisions: object, layout: str, *, name: str = "decisions") -> Tensor:
    """Return ``decisions`` if it is an accepted tensor laid out as ``layout``, else raise.

    ``layout`` names the axes, e.g. ``"(B, T, M)"``; a ``...`` axis stands for any number of
    axes, so ``"(B, ..., M)"`` needs at least two.
    """
    axes = layout.strip("()").split(", ")
    fixed = len(axes) - axes.count("...")
    if not isinstance(decisions, Tensor):
        raise ValueError(f"{name}: expected {ACCEPTED} {layout}, got {type(decisions).__name__}")
    if decisions.dtype.is_complex:
        raise ValueError(f"{name}: expected {ACCEPTED}, got dtype {decisions.dtype}")
    if decisions.dim() < fixed or ("..." not in axes and decisions.dim() != fixed):
        raise ValueError(f"{name}: expected {layout}, got shape {tuple(decisions.shape)}")
    return decisions


def selected(decisions: Tensor) -> Tensor:
    """The rows to compute: a bool tensor, True where a decision is nonzero (NaN included)."""
    return decisions.detach() != 0


def floating(decisions: Tensor) -> Tensor:
    """Decisions in a floating dtype for arithmetic: their own, or torch's default dtype."""
    if decisions.is_floating_point():
        return decisions
    return decisions.to(torch.get_default_dtype())
