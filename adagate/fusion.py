"""Masked late fusion: weighted average of segment logits over the modalities the policy kept."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from adagate._decisions import check_decisions, floating

__all__ = ["MaskedLateFusion", "masked_late_fusion"]


def masked_late_fusion(
    logits: Tensor, decisions: Tensor, weights: Tensor, normalize: bool = False
) -> Tensor:
    """Fuse per-segment, per-modality logits into video logits, counting only selected segments.

    AdaMML §3.2 and §4 ("late fusion with learnable weights"): the video score is the average of
    the segment predictions, each a weighted sum over the modalities the policy selected::

        score[b] = 1/T · Σ_t Σ_m  w_m · d[b, t, m] · logits[b, t, m]

    A skipped segment contributes zero but still counts in the ``1/T``, as in the paper. The
    decisions enter as a product, so a straight-through gate receives the gradient
    ``∂score[b] / ∂d[b, t, m] = w_m · logits[b, t, m] / T``; that is how the policy learns.

    With ``normalize=True`` the sum is divided by the weight actually used,
    ``Σ_t Σ_m w_m · d[b, t, m]``, instead of ``T``, so the score is a weighted mean over the
    selected (segment, modality) pairs and its scale does not shrink as fewer are selected. A
    video with nothing selected has no such mean: its denominator falls back to ``T``, so its
    score is exactly zero with the same finite gradient as ``normalize=False`` (never NaN).
    Normalising requires positive weights, so that the denominator cannot vanish or change sign.

    Args:
        logits: ``(B, T, M, C)`` per-segment, per-modality class scores; values at skipped
            positions are multiplied by zero, so they must be finite (NaN or inf would still
            propagate); a router fills them with zeros.
        decisions: ``(B, T, M)`` selection, bool, integer or floating (e.g. the straight-through
            output of :func:`adagate.gates.gumbel_sigmoid`); 1 keeps, 0 skips, a value in
            between weights the segment.
        weights: ``(M,)`` per-modality fusion weights.
        normalize: divide by the used weight instead of by ``T`` (see above).

    Returns:
        ``(B, C)`` video logits, in the dtype of ``logits`` (outside autocast).

    Raises:
        ValueError: if a tensor has the wrong rank, ``B, T, M`` of ``logits`` and ``decisions``
            differ, ``weights`` does not have ``M`` entries, ``decisions`` is not a bool,
            integer or floating tensor, or ``normalize`` is set and a weight is not positive.

    Example:
        >>> logits = torch.randn(2, 4, 3, 10)
        >>> decisions = torch.ones(2, 4, 3)
        >>> masked_late_fusion(logits, decisions, torch.ones(3)).shape
        torch.Size([2, 10])
    """
    check_fusion_inputs(logits, decisions, weights, normalize, "(B, T, M, C)")
    used = floating(decisions).to(logits.dtype) * weights.to(logits.dtype)
    fused = torch.einsum("btm,btmc->bc", used, logits)
    segments = torch.full_like(fused[:, :1], logits.shape[1])
    if not normalize:
        return fused / segments
    total = used.sum(dim=(1, 2)).unsqueeze(1)
    # A video with nothing selected has fused == 0; divide it by T rather than by 0.
    return fused / torch.where(total > 0, total, segments)


def check_fusion_inputs(
    logits: Tensor,
    decisions: Tensor,
    weights: Tensor,
    normalize: bool,
    layout: str,
    suffix: str = "",
) -> None:
    """Check ``logits`` laid out as ``layout`` (ending in ``M, C``), ``decisions`` as the same
    without ``C``, and ``(M,)`` weights; argument names in messages end in ``suffix``."""
    names = [f"{n}{suffix}" for n in ("logits", "decisions")]
    axes = layout.strip("()").split(", ")
    decisions_layout = "(" + ", ".join(axes[:-1]) + ")"
    if logits.dim() != len(axes):
        raise ValueError(f"{names[0]}: expected {layout}, got shape {tuple(logits.shape)}")
    check_decisions(decisions, decisions_layout, name=names[1])
    if decisions.shape != logits.shape[:-1]:
        raise ValueError(
            f"{names[1]}: expected {decisions_layout} = {tuple(logits.shape[:-1])} to match "
            f"{names[0]} {tuple(logits.shape)}, got shape {tuple(decisions.shape)}"
        )
    modalities = logits.shape[-2]
    if weights.dim() != 1 or weights.shape[0] != modalities:
        raise ValueError(
            f"weights: expected (M,) = ({modalities},) to match {names[0]} "
            f"{tuple(logits.shape)}, got shape {tuple(weights.shape)}"
        )
    if normalize and bool((weights <= 0).any()):
        raise ValueError(
            f"weights: expected positive weights with normalize=True, got {weights.tolist()}"
        )


class MaskedLateFusion(nn.Module):
    """Module form of :func:`masked_late_fusion`, holding one fusion weight per modality.

    The weights are ``softmax(weight_logits)``: positive and summing to one, as in the
    reference code's fusion, whatever an optimiser does to ``weight_logits``. So
    ``normalize=True`` can never meet a non-positive weight mid-training, and the scale of the
    fused logits does not grow with the number of modalities. ``weight_logits`` start at zero:
    the weights start as a plain average of the modalities, ``1 / M`` each (AdaMML §4, "late
    fusion with learnable weights").

    Args:
        modalities: names of the modalities, in the order of the ``M`` axis (e.g.
            ``policy.modalities``).
        learnable: make ``weight_logits`` an ``nn.Parameter``; otherwise a fixed buffer, and
            the weights stay ``1 / M``.
        normalize: divide by the used weight instead of by ``T`` (see :func:`masked_late_fusion`).

    Shape:
        - logits: ``(B, T, M, C)``
        - decisions: ``(B, T, M)``, bool, integer or floating
        - weights: ``(M,)``, positive, summing to one
        - output: ``(B, C)``

    Raises:
        ValueError: if ``modalities`` is empty or has repeated names.

    Example:
        >>> fusion = MaskedLateFusion(["rgb", "audio"])
        >>> fusion.weights.tolist()
        [0.5, 0.5]
        >>> fusion(torch.randn(2, 4, 2, 10), torch.ones(2, 4, 2)).shape
        torch.Size([2, 10])
    """

    weight_logits: Tensor

    def __init__(
        self, modalities: Sequence[str], learnable: bool = True, normalize: bool = False
    ) -> None:
        super().__init__()
        names = tuple(modalities)
        if not names or len(set(names)) != len(names):
            raise ValueError(f"modalities: expected non-empty unique names, got {list(names)}")
        self.modalities = names
        self.normalize = normalize
        weight_logits = torch.zeros(len(names))
        if learnable:
            self.weight_logits = nn.Parameter(weight_logits)
        else:
            self.register_buffer("weight_logits", weight_logits)

    @property
    def weights(self) -> Tensor:
        """``(M,)`` effective fusion weights, ``softmax(weight_logits)``; differentiable."""
        return torch.softmax(self.weight_logits, dim=0)

    def forward(self, logits: Tensor, decisions: Tensor) -> Tensor:
        """Fuse ``logits: (B, T, M, C)`` under ``decisions: (B, T, M)`` into ``(B, C)``.

        Args:
            logits: ``(B, T, M, C)`` per-segment, per-modality class scores.
            decisions: ``(B, T, M)`` selection, bool, integer or floating.

        Returns:
            ``(B, C)`` video logits.

        Raises:
            ValueError: on mismatched shapes, see :func:`masked_late_fusion`.
        """
        return masked_late_fusion(logits, decisions, self.weights, self.normalize)

    def extra_repr(self) -> str:
        return f"modalities={list(self.modalities)}, normalize={self.normalize}"
