"""Choices made on held-back data: dense passes, a policy's curve and its operating point.

A *dense pass* computes, for every video of a list, the policy's features and every segment's
logits of every modality, once. From it ``adagate.sweep_thresholds`` gives the policy's exact
accuracy–GFLOPs curve over thresholds on its on-logits, and a :class:`Rule` picks the operating
point (the most likely point within a relative compute budget, or the cheapest within an
accuracy drop below every modality on). The
training list trains, the calibration list chooses (checkpoints, thresholds), the validation
list only reports.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from model import AdaMML, all_on
from torch import Tensor
from tqdm import tqdm

from adagate.flops import ModalityCosts, expected_gflops
from adagate.operating import (
    OperatingPoint,
    choose_operating_point,
    log_likelihood,
    sweep_thresholds,
    threshold_grid,
    top1_accuracy,
)

Metric = Callable[[Tensor, Tensor], float]


@dataclass
class Dense:
    """What a dense pass computed for N videos.

    Attributes:
        features: ``{m: (N, T, D_m)}`` the policy's features.
        segment_logits: ``(N, T, M, C)`` every segment's logits of every modality.
        labels: ``(N,)`` class indices or ``(N, C)`` multi-hot.
        informative: ``(N, T, M)`` the demo's informative flags, or None.
    """

    features: dict[str, Tensor]
    segment_logits: Tensor
    labels: Tensor
    informative: Tensor | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def take(self, index: Tensor) -> Dense:
        """The videos at ``index`` (``(n,)`` int)."""
        return Dense({m: f[index] for m, f in self.features.items()}, self.segment_logits[index],
                     self.labels[index],
                     None if self.informative is None else self.informative[index])  # fmt: skip

    @staticmethod
    def cat(parts: Sequence[Dense]) -> Dense:
        """The videos of every part, in order."""
        informative = [p.informative for p in parts]
        return Dense(
            {m: torch.cat([p.features[m] for p in parts]) for m in parts[0].features},
            torch.cat([p.segment_logits for p in parts]), torch.cat([p.labels for p in parts]),
            None if any(i is None for i in informative) else torch.cat(informative),  # type: ignore[arg-type]
        )  # fmt: skip


@torch.no_grad()
def dense_pass(
    model: AdaMML, batches: Iterable[Mapping[str, Any]], device: torch.device,
    autocast: Callable[[], AbstractContextManager[Any]] = nullcontext, desc: str = "dense pass",
    show: bool = True,
) -> Dense:  # fmt: skip
    """Every network of ``model`` in ``eval()`` on every segment of every batch (CPU output).

    Args:
        model: the model; its train/eval mode is restored afterwards.
        batches: collated batches (``data.collate``).
        device: where the model is.
        autocast: mixed-precision context for the forward passes.
        desc: progress bar label.
        show: show the progress bar.
    """
    was_training = model.training
    model.eval()
    parts = []
    for batch in tqdm(batches, desc=desc, leave=False, dynamic_ncols=True, disable=not show):
        inputs = {k: v.to(device) for k, v in batch.items() if isinstance(v, Tensor)}
        with autocast():
            features = model.features(inputs)
            logits = model.recognise(inputs, all_on(inputs, model), route=False)
        informative = batch.get("informative")
        parts.append(Dense(
            {m: f.float().cpu() for m, f in features.items()}, logits.float().cpu(),
            inputs["label"].cpu(),
            None if informative is None
            else torch.stack([informative[m] for m in model.modalities], -1),
        ))  # fmt: skip
    model.train(was_training)
    return Dense.cat(parts)


@dataclass(frozen=True)
class Rule:
    """How the operating point is chosen: exactly one of ``budget`` (the most likely point at
    most this share of every-modality-on's GFLOPs) and ``max_drop`` (the cheapest point at
    most this many points of accuracy below every modality on).

    Within a budget, a policy's points are compared by their log-likelihood on the held-back
    videos (`adagate.log_likelihood`), not by their top-1 accuracy: 144 calibration videos
    move accuracy in steps of 0.7 points, so among points within a video or two of each other
    the most accurate one is the luckiest, and with a threshold per modality there are many
    such points; the likelihood is moved by every video's confidence (docs/operating.md). A
    drop is in points of accuracy, so ``max_drop`` compares accuracies.
    """

    budget: float | None = None
    max_drop: float | None = None

    def choose(self, curve: Sequence[OperatingPoint], reference: OperatingPoint,
               likelihoods: Sequence[float] | None = None) -> OperatingPoint:  # fmt: skip
        """The point of ``curve`` (accuracy scores) this rule asks for; ``likelihoods``: each
        point's log-likelihood, what a budget choice compares (None: its accuracy)."""
        drop = None if self.max_drop is None else self.max_drop / 100
        if self.budget is None:
            return choose_operating_point(curve, max_drop=drop, reference=reference)
        cheapest = min(p.gflops for p in curve) / reference.gflops
        scored = list(curve) if likelihoods is None else [
            p._replace(score=s) for p, s in zip(curve, likelihoods, strict=True)]  # fmt: skip
        pick = choose_operating_point(scored, budget=max(self.budget, cheapest),
                                      reference=reference)  # fmt: skip
        return curve[next(i for i, p in enumerate(scored) if p is pick)]

    def key(self, point: OperatingPoint, reference: OperatingPoint) -> tuple[float, ...]:
        """Larger is better: how two checkpoints' chosen points compare under this rule.

        Checkpoints are compared by the accuracy of their chosen points (then by cost), not by
        likelihood: different checkpoints are different models, and on the demo the likelihood
        was no better a guide between them (docs/operating.md)."""
        if self.budget is not None:
            within = point.gflops <= self.budget * reference.gflops + 1e-9
            return (float(within), point.score, point.gflops)
        assert self.max_drop is not None
        within = point.score >= reference.score - self.max_drop / 100 - 1e-9
        return (float(within), -point.gflops if within else point.score, point.score)

    def describe(self) -> str:
        if self.budget is not None:
            return f"highest log-likelihood at <= {self.budget:.2f} of the GFLOPs"
        return f"cheapest within {self.max_drop} points of every modality on"


class Calibrated(NamedTuple):
    """What :func:`calibrate` found.

    Attributes:
        chosen: the operating point set in the policy (accuracy score).
        curve: the policy's curve (accuracy scores).
        reference: every modality on, without the policy.
        likelihoods: each curve point's log-likelihood.
        likelihood: the chosen point's.
    """

    chosen: OperatingPoint
    curve: list[OperatingPoint]
    reference: OperatingPoint
    likelihoods: list[float]
    likelihood: float


def reference_point(model: AdaMML, dense: Dense, costs: ModalityCosts,
                    metric: Metric = top1_accuracy) -> OperatingPoint:  # fmt: skip
    """Every modality on every segment, without the policy: the all-modality model's cost."""
    ones = torch.ones(dense.segment_logits.shape[:3])
    logits = model.fusion(dense.segment_logits, ones).float()
    recognition = ModalityCosts(costs.recognition)
    gflops = expected_gflops(ones.double(), recognition, model.modalities).mean().item()
    return OperatingPoint(torch.full((len(model.modalities),), -math.inf),
                          metric(logits, dense.labels), gflops, ones.mean((0, 1)))  # fmt: skip


def policy_curve(
    model: AdaMML, dense: Dense, costs: ModalityCosts, thresholds: Tensor | None = None,
    points: int = 33, metric: Metric = top1_accuracy,
) -> list[OperatingPoint]:  # fmt: skip
    """The model's policy's curve on ``dense``, over ``thresholds`` (``(P, M)``) or a grid of
    quantiles of its on-logits (`adagate.threshold_grid`): ``points`` for the costliest
    modality, proportionally fewer (at least 3) for cheaper ones."""
    policy = model.policy
    if thresholds is None:
        was_training, saved = policy.training, policy.thresholds.clone()
        policy.eval()
        policy.set_thresholds(torch.zeros_like(saved))
        with torch.no_grad():
            logits = policy(dense.features).logits
        policy.set_thresholds(saved)
        policy.train(was_training)
        # The grid is finest where a step moves the cost most.
        largest = max(costs.recognition.values())
        counts = {m: max(3, round(points * costs.recognition[m] / largest))
                  for m in model.modalities}  # fmt: skip
        thresholds = threshold_grid(policy, logits, points=counts)
    with torch.no_grad():
        return sweep_thresholds(
            policy, dense.features, dense.segment_logits, dense.labels, thresholds,
            fusion=model.fusion, costs=costs, metric=metric,
        )  # fmt: skip


def calibrate(
    model: AdaMML, dense: Dense, costs: ModalityCosts, rule: Rule, points: int = 33,
    metric: Metric = top1_accuracy,
) -> Calibrated:  # fmt: skip
    """Choose the operating point on held-back data and set it in the model's policy."""
    reference = reference_point(model, dense, costs, metric)
    likelihoods: list[float] = []

    def scored(logits: Tensor, labels: Tensor) -> float:
        # The same fused logits give both scores: one sweep, not one per metric
        # (`sweep_thresholds` calls the metric once per threshold row, in order).
        likelihoods.append(log_likelihood(logits, labels))
        return metric(logits, labels)

    curve = policy_curve(model, dense, costs, points=points, metric=scored)
    assert len(likelihoods) == len(curve)
    chosen = rule.choose(curve, reference, likelihoods)
    model.policy.set_thresholds(chosen.thresholds)
    index = next(i for i, p in enumerate(curve) if p is chosen)
    return Calibrated(chosen, curve, reference, likelihoods, likelihoods[index])


def point_record(point: OperatingPoint, reference: OperatingPoint, modalities: Sequence[str],
                 likelihood: float | None = None) -> dict[str, Any]:  # fmt: skip
    """A point as JSON: thresholds (``±inf`` as strings), score, GFLOPs, relative GFLOPs, and
    its log-likelihood where given."""
    record = {
        "thresholds": {m: _number(t) for m, t in zip(modalities, point.thresholds.tolist(),
                                                     strict=True)},
        "score": point.score, "gflops": point.gflops,
        "gflops_vs_all": point.gflops / reference.gflops,
        "selection": dict(zip(modalities, point.selection.tolist(), strict=True)),
    }  # fmt: skip
    return record if likelihood is None else record | {"log_likelihood": likelihood}


def thresholds_of(record: Mapping[str, Any], modalities: Sequence[str]) -> Tensor:
    """``(M,)`` thresholds of a :func:`point_record`."""
    return torch.tensor([float(record["thresholds"][m]) for m in modalities])


def _number(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)
