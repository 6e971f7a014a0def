"""Operating points: one trained policy as a family of policies, chosen on held-back data.

A threshold per modality on the gate's on-logit (`MultiModalPolicy.set_thresholds`) moves a
trained policy along an accuracy–cost curve, as an early-exit network's exit thresholds do
(MSDNet's budgeted classification). `sweep_thresholds` computes that curve *exactly* from one
dense pass: the policy features and every segment's per-modality logits are computed once, and
for each candidate threshold vector only the policy (MLP, LSTM, heads) is re-run — the LSTM
reads its previous decisions, so they cannot be thresholded after the fact — and its decisions
mask the dense logits through the model's fusion. Because routing computes exactly the selected
rows (BatchNorm in eval mode), a curve point equals a routed evaluation at those thresholds.
`choose_operating_point` picks a point by a compute budget or by an accuracy drop.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from adagate.flops import ModalityCosts, expected_gflops
from adagate.policy import MultiModalPolicy

__all__ = [
    "OperatingPoint",
    "choose_operating_point",
    "log_likelihood",
    "pareto_front",
    "sweep_thresholds",
    "threshold_grid",
    "top1_accuracy",
]

Fusion = Callable[[Tensor, Tensor], Tensor]
Metric = Callable[[Tensor, Tensor], float]


class OperatingPoint(NamedTuple):
    """One point of a policy's accuracy–cost curve.

    Attributes:
        thresholds: ``(M,)`` the thresholds on the on-logits, in ``policy.modalities`` order.
        score: the metric at these thresholds (top-1 accuracy in [0, 1] by default).
        gflops: mean GFLOPs per video (MACs / 1e9), the policy included.
        selection: ``(M,)`` the share of segments on which each modality is used.
    """

    thresholds: Tensor
    score: float
    gflops: float
    selection: Tensor


def top1_accuracy(logits: Tensor, labels: Tensor) -> float:
    """Top-1 accuracy of ``logits: (N, C)``; for multi-hot ``labels: (N, C)`` the top class is
    one of the labels, else ``labels: (N,)`` are class indices."""
    top = logits.argmax(-1)
    if labels.dim() == 2:
        return (labels.gather(1, top[:, None]) > 0).float().mean().item()
    return (top == labels).float().mean().item()


def log_likelihood(logits: Tensor, labels: Tensor) -> float:
    """Mean log-likelihood of the labels under ``logits: (N, C)`` (at most 0; higher is better).

    For class indices ``labels: (N,)`` the mean log-softmax of the true class (the negative
    cross-entropy); for multi-hot ``labels: (N, C)`` the negative binary cross-entropy averaged
    over videos and classes. Top-1 accuracy on N held-back videos moves in steps of 1/N, so two
    operating points often tie, or differ by a video or two, by chance; the log-likelihood is a
    proper scoring rule that every video moves a little, a lower-variance way to compare points
    of similar accuracy (see `choose_operating_point`).

    Shape:
        logits: (N, C); labels: (N,) or (N, C).
    """
    if labels.dim() == 2:
        return -F.binary_cross_entropy_with_logits(logits.float(), labels.float()).item()
    return -F.cross_entropy(logits.float(), labels).item()


def threshold_grid(
    policy: MultiModalPolicy,
    logits: Tensor,
    points: int | Mapping[str, int] = 17,
    limit: int = 4096,
) -> Tensor:
    """Candidate threshold vectors spanning a policy's curve from all-off to all-on.

    For each gated modality the candidates are ``points`` quantiles of its on-logit
    ``logits[..., 1] - logits[..., 0]`` over the given segments (so the grid follows where the
    policy's decisions actually lie), plus ``±inf``; the grid is their product over modalities
    (always-on modalities get 0). Give an expensive modality more points than a cheap one with
    a mapping. While the grid has more than ``limit`` rows, the largest count is reduced.

    Args:
        policy: the policy (gives the modality order and which modalities are gated).
        logits: ``(..., M, 2)`` the policy's logits on held-back data (threshold 0).
        points: quantiles per gated modality: one count for all, or a count per name (a
            name left out gets 1: its median).
        limit: most rows of the grid.

    Returns:
        ``(P, M)`` threshold vectors, float32, on the CPU.

    Raises:
        ValueError: for ``logits`` whose last dims are not ``(M, 2)``, a count below 1 or an
            unknown name.

    Example:
        >>> policy = MultiModalPolicy({"rgb": 4, "audio": 2}, hidden_size=4, mlp_sizes=())
        >>> logits = policy({"rgb": torch.randn(3, 5, 4), "audio": torch.randn(3, 5, 2)}).logits
        >>> threshold_grid(policy, logits, points={"rgb": 9, "audio": 3}).shape
        torch.Size([55, 2])
    """
    modalities = policy.modalities
    if logits.dim() < 2 or tuple(logits.shape[-2:]) != (len(modalities), 2):
        raise ValueError(
            f"logits: expected (..., M, 2) with M = {len(modalities)}, got {tuple(logits.shape)}"
        )
    counts = dict.fromkeys(modalities, points) if isinstance(points, int) else dict(points)
    unknown = [name for name in counts if name not in modalities]
    if unknown or limit < 1 or any(int(c) < 1 for c in counts.values()):
        raise ValueError(
            f"points, limit: expected counts >= 1 for modalities {list(modalities)} and a limit "
            f">= 1, got {points}, {limit}"
        )
    gated = [name for name in modalities if name not in policy.always_on]
    sizes = {name: int(counts.get(name, 1)) for name in gated}
    while math.prod(n + 2 for n in sizes.values()) > limit and max(sizes.values()) > 1:
        largest = max(sizes, key=lambda name: sizes[name])
        sizes[largest] -= 1
    on = (logits[..., 1] - logits[..., 0]).detach().float().cpu().reshape(-1, len(modalities))
    axes = []
    for k, name in enumerate(modalities):
        if name not in sizes:
            axes.append([0.0])
            continue
        n = sizes[name]
        quantiles = torch.linspace(0, 1, n) if n > 1 else torch.tensor([0.5])
        values: list[float] = torch.unique(torch.quantile(on[:, k], quantiles)).tolist()
        # Thresholds sit just below each observed logit, so that the segment at a quantile is on.
        axes.append([-math.inf, *(v - 1e-6 for v in values), math.inf])
    return torch.tensor(list(itertools.product(*axes)), dtype=torch.float32)


@torch.no_grad()
def sweep_thresholds(
    policy: MultiModalPolicy,
    features: Mapping[str, Tensor],
    segment_logits: Tensor,
    labels: Tensor,
    thresholds: Tensor,
    *,
    fusion: Fusion,
    costs: ModalityCosts,
    metric: Metric = top1_accuracy,
    batch_size: int = 16384,
) -> list[OperatingPoint]:
    """The exact accuracy–cost curve of a policy over candidate thresholds.

    The policy runs in ``eval()`` (deterministic decisions); its own thresholds are not
    changed.

    Args:
        policy: the trained policy.
        features: ``{m: (N, T, D_m)}`` its features on held-back videos.
        segment_logits: ``(N, T, M, C)`` every segment's logits of every modality (dense).
        labels: ``(N,)`` class indices or ``(N, C)`` multi-hot, for ``metric``.
        thresholds: ``(P, M)`` candidates, e.g. from `threshold_grid`.
        fusion: ``(segment_logits (N, T, M, C), decisions (N, T, M)) -> (N, C)``, the model's
            fusion (e.g. its `MaskedLateFusion`).
        costs: per-segment MACs of each modality and of the policy.
        metric: ``(video_logits (N, C), labels) -> float``, higher is better.
        batch_size: (threshold vector, video) pairs per call of the recurrent part; the MLP
            runs once on every video.

    Returns:
        One `OperatingPoint` per row of ``thresholds``, in the same order.

    Raises:
        ValueError: for ``thresholds`` not ``(P, M)`` or ``segment_logits`` not
            ``(N, T, M, C)`` matching the features.
    """
    modalities = policy.modalities
    count = len(modalities)
    if thresholds.dim() != 2 or thresholds.shape[1] != count:
        raise ValueError(
            f"thresholds: expected (P, M) with M = {count}, got {tuple(thresholds.shape)}"
        )
    first = features[modalities[0]]
    expected = (*first.shape[:2], count)
    if segment_logits.dim() != 4 or tuple(segment_logits.shape[:3]) != expected:
        raise ValueError(
            f"segment_logits: expected (N, T, M, C) with (N, T, M) = {expected}, "
            f"got {tuple(segment_logits.shape)}"
        )
    if torch.isnan(thresholds).any():
        raise ValueError("thresholds: expected numbers or ±inf, got NaN")
    was_training = policy.training
    policy.eval()
    try:
        # The MLP once; the recurrent part for every (threshold vector, video) pair at once.
        joint = policy.mlp(policy._concatenate(features, ("B", "T")))
        videos = len(joint)
        rows = thresholds.to(joint.device).repeat_interleave(videos, 0)
        chunk = max(1, batch_size // videos) * videos
        decisions = torch.cat([
            policy._decide_sequence(joint.repeat(len(part) // videos, 1, 1), None, None,
                                    part).decisions
            for part in torch.split(rows, chunk)
        ])  # fmt: skip
    finally:
        policy.train(was_training)
    curve = []
    for row, chosen in zip(thresholds, torch.split(decisions, videos), strict=True):
        chosen = chosen.to(segment_logits.device, segment_logits.dtype)
        video = fusion(segment_logits, chosen)
        curve.append(OperatingPoint(
            row.clone(), metric(video.float(), labels),
            expected_gflops(chosen.double(), costs, modalities).mean().item(),
            chosen.float().mean((0, 1)).cpu(),
        ))  # fmt: skip
    return curve


def pareto_front(curve: Sequence[OperatingPoint]) -> list[OperatingPoint]:
    """The points no other point beats in both score and cost, by increasing GFLOPs.

    Shape:
        each point's ``thresholds`` and ``selection``: (M,).
    """
    front: list[OperatingPoint] = []
    for point in sorted(curve, key=lambda p: (p.gflops, -p.score)):
        if not front or point.score > front[-1].score:
            front.append(point)
    return front


def choose_operating_point(
    curve: Sequence[OperatingPoint],
    *,
    budget: float | None = None,
    max_drop: float | None = None,
    reference: OperatingPoint | None = None,
) -> OperatingPoint:
    """Pick the point of a curve (computed on held-back data) that a trade-off asks for.

    Exactly one of:

    - ``budget``: the best score at most ``budget`` × the reference's GFLOPs (ties: the costlier
      point, which spends more of the budget: held-back scores move in steps of one sample,
      so equal scores are common, and the cheap end of such a plateau is the riskier pick);
    - ``max_drop``: the cheapest point scoring at least the reference's score − ``max_drop``
      (ties: better score).

    The reference is the policy with every modality on (the curve's most expensive point)
    unless given. A budget choice may use any score (a curve from `sweep_thresholds` with
    ``metric=log_likelihood`` is less noisy on a small held-back set than top-1 accuracy);
    ``max_drop`` is in the units of the score of both the curve and the reference.

    Shape:
        each point's ``thresholds`` and ``selection``: (M,).

    Args:
        curve: points from `sweep_thresholds`.
        budget: relative GFLOPs in (0, 1].
        max_drop: score below the reference's, in the metric's units (0.01 = 1 point of
            accuracy), at least 0.
        reference: the point the budget and the drop are relative to.

    Returns:
        The chosen `OperatingPoint`.

    Raises:
        ValueError: for an empty curve, both or neither of ``budget`` and ``max_drop``, a value
            out of range, or a budget below every point's cost (the message gives the cheapest).
    """
    if not curve:
        raise ValueError("curve: expected at least one operating point, got none")
    if (budget is None) == (max_drop is None):
        raise ValueError(f"budget, max_drop: expected exactly one, got {budget}, {max_drop}")
    reference = reference or max(curve, key=lambda p: (p.gflops, p.score))
    if budget is not None:
        if not 0 < budget <= 1:
            raise ValueError(f"budget: expected relative GFLOPs in (0, 1], got {budget}")
        allowed = [p for p in curve if p.gflops <= budget * reference.gflops + 1e-9]
        if not allowed:
            cheapest = min(p.gflops for p in curve) / reference.gflops
            raise ValueError(f"budget: expected at least {cheapest:.3f} (the cheapest point), "
                             f"got {budget}")  # fmt: skip
        return max(allowed, key=lambda p: (p.score, p.gflops))
    assert max_drop is not None
    if max_drop < 0:
        raise ValueError(f"max_drop: expected >= 0, got {max_drop}")
    good = [p for p in curve if p.score >= reference.score - max_drop - 1e-9]
    return min(good or [max(curve, key=lambda p: p.score)], key=lambda p: (p.gflops, -p.score))
