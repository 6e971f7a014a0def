"""The report's figures, as plain functions of tensors: top-1, mAP, GFLOPs per video, the share
of informative segments a policy used, per class and by segment position.

Shapes: N videos, T segments, M modalities, C classes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from adagate.flops import ModalityCosts, expected_gflops
from adagate.operating import top1_accuracy


def mean_average_precision(logits: Tensor, labels: Tensor) -> float:
    """mAP: the mean over classes of average precision (the paper's protocol for ActivityNet
    and FCVID); single labels count as one-hot. Classes without a positive video are left out.

    Args:
        logits: ``(N, C)`` scores.
        labels: ``(N,)`` class indices or ``(N, C)`` multi-hot.
    """
    if labels.dim() == 1:
        labels = torch.nn.functional.one_hot(labels.long(), logits.shape[1])
    positives = labels > 0
    order = logits.argsort(dim=0, descending=True, stable=True)
    hits = positives.gather(0, order).double()
    ranks = torch.arange(1, len(hits) + 1, dtype=torch.float64)[:, None]
    precision = hits.cumsum(0) / ranks
    counts = hits.sum(0)
    present = counts > 0
    if not present.any():
        return 0.0
    return ((precision * hits).sum(0)[present] / counts[present]).mean().item()


top1 = top1_accuracy
METRICS: dict[str, Callable[[Tensor, Tensor], float]] = {
    "top1": top1_accuracy, "map": mean_average_precision,
}  # fmt: skip


def video_gflops(
    decisions: Tensor, costs: ModalityCosts, modalities: Sequence[str], with_policy: bool
) -> Tensor:
    """``decisions: (N, T, M)`` → ``(N,)`` GFLOPs per video; the policy's share only where a
    policy ran."""
    if with_policy:
        return expected_gflops(decisions, costs, modalities)
    return expected_gflops(decisions, ModalityCosts(costs.recognition), modalities)


def informative_picked(decisions: Tensor, informative: Tensor | None) -> float | None:
    """Share of the segments with an informative modality where the decisions used one.

    Args:
        decisions: ``(N, T, M)``.
        informative: ``(N, T, M)`` flags (the demo's sidecar), or None.
    """
    if informative is None:
        return None
    informative = informative > 0
    has = informative.any(-1)
    if not has.any():
        return None
    hit = ((decisions > 0.5) & informative).any(-1)
    return (hit & has).sum().item() / has.sum().item()


def row(
    logits: Tensor, labels: Tensor, decisions: Tensor, costs: ModalityCosts,
    modalities: Sequence[str], with_policy: bool, informative: Tensor | None,
) -> dict[str, Any]:  # fmt: skip
    """One row of the report: top-1, mAP, selection rates, GFLOPs, informative picked.

    Args:
        logits: ``(N, C)`` video logits.
        labels: ``(N,)`` or ``(N, C)``.
        decisions: ``(N, T, M)`` the decisions used.
        costs: per-segment MACs.
        modalities: the M axis.
        with_policy: count the policy's MACs.
        informative: ``(N, T, M)`` or None.
    """
    return {
        "top1": top1_accuracy(logits, labels),
        "map": mean_average_precision(logits, labels),
        "selection": {m: decisions[..., i].mean().item() for i, m in enumerate(modalities)},
        "gflops": video_gflops(decisions, costs, modalities, with_policy).mean().item(),
        "informative_picked": informative_picked(decisions, informative),
    }


def per_class(
    labels: Tensor, logits: Mapping[str, Tensor], decisions: Tensor, classes: Sequence[str],
    modalities: Sequence[str],
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Per class: videos, each method's top-1 (``logits``: method → ``(N, C)``), and the
    policy's selection rates (``decisions: (N, T, M)``).

    A class whose accuracy under the policy falls far below all-modality's is where a policy
    has collapsed onto a modality that cannot tell it apart."""
    table = {}
    for c, name in enumerate(classes):
        members = labels[:, c] > 0 if labels.dim() == 2 else labels == c
        if not members.any():
            continue
        entry: dict[str, Any] = {"videos": int(members.sum())}
        for title, values in logits.items():
            entry[title] = top1_accuracy(values[members], labels[members])
        entry["selection"] = {m: decisions[members][..., i].mean().item()
                              for i, m in enumerate(modalities)}  # fmt: skip
        table[name] = entry
    return table


def by_position(decisions: Tensor, modalities: Sequence[str]) -> dict[str, list[float]]:
    """``decisions (N, T, M)`` → per modality, the selection rate at each position ``t``."""
    return {m: decisions[..., i].mean(0).tolist() for i, m in enumerate(modalities)}


def best_within(curve: Sequence[Mapping[str, Any]], budget: float, metric: str) -> float | None:
    """The best ``metric`` of a curve's points at most ``budget`` relative GFLOPs, or None."""
    scores = [p[metric] for p in curve if p["gflops_vs_all"] <= budget + 1e-9]
    return max(scores) if scores else None
