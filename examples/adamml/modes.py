"""Decision modes as data: how a training stage's forward pass decides what to compute.

Each stage of ``train.py`` names one :class:`Mode`; the epoch loop reads its fields and never
compares names. :func:`losses` is the one forward pass of every mode.

=========  =========  =======  ======  ==========  ===========================================
mode       policy     sampled  routed  efficiency  used by
=========  =========  =======  ======  ==========  ===========================================
UNIMODAL   no         no       no      no          pre-training: each network alone
ALL_ON     no         no       no      no          warm-up, the all-modality baseline
DROPOUT    random     yes      no      no          warm-up under random gating (optional)
JOINT      decides    yes      no      yes         dense joint training (paper's schedule)
CACHED     decides    yes      no      yes         the policy alone, on cached dense outputs
FROZEN     decides    no       yes     no          fine-tuning under the frozen policy
=========  =========  =======  ======  ==========  ===========================================
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from model import AdaMML, all_on
from torch import Tensor, nn

from adagate.losses import BudgetLoss, efficiency_loss, recovery_loss


@dataclass(frozen=True)
class Mode:
    """One way of making decisions in training.

    Attributes:
        name: for logs and the metrics file only.
        unimodal: every recogniser and policy extractor alone, as a video classifier.
        policy: the policy decides (otherwise every modality is on); its MACs count.
        sampled: the gates sample (Gumbel, temperature annealed) and get gradients; otherwise
            the policy runs in ``eval()`` without gradients (deterministic decisions).
        routed: each recogniser runs on its selected segments only.
        efficiency: the loss adds the efficiency term (Eq. 4 or the budget loss).
        cached: the policy learns on dense outputs computed once by frozen networks
            (``policy_stage.py``) instead of a pass over the videos per step.
        dropout: without a policy, each modality of each segment is on with probability 1/2
            (what an untrained policy does in the reference code's warm-up), so the
            recognisers learn to be fused from a random subset.
    """

    name: str
    unimodal: bool = False
    policy: bool = False
    sampled: bool = False
    routed: bool = False
    efficiency: bool = False
    cached: bool = False
    dropout: bool = False

    @property
    def unused_parameters(self) -> bool:
        """DDP must expect parameters without gradient: routing may skip a modality for a whole
        batch."""
        return self.routed


UNIMODAL = Mode("unimodal", unimodal=True)
ALL_ON = Mode("all")
DROPOUT = Mode("dropout", dropout=True)
JOINT = Mode("joint", policy=True, sampled=True, efficiency=True)
CACHED = Mode("cached", policy=True, sampled=True, efficiency=True, cached=True)
FROZEN = Mode("frozen", policy=True, routed=True)


@dataclass(frozen=True)
class Objective:
    """The loss's constants.

    Attributes:
        lambdas: ``(M,)`` cost weights of Eq. 4.
        gamma: penalty of a wrong prediction in Eq. 4.
        recovery: weight of ``recovery_loss`` in units of ``γ · λ`` (0: off).
        multi_label: binary cross-entropy over multi-hot labels instead of cross-entropy.
        budget: the budget loss, replacing Eq. 4, or None.
    """

    lambdas: Tensor
    gamma: float
    recovery: float
    multi_label: bool
    budget: BudgetLoss | None = None

    def task(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Cross-entropy (single label) or binary cross-entropy (multi-label)."""
        if self.multi_label:
            return F.binary_cross_entropy_with_logits(logits, labels)
        return F.cross_entropy(logits, labels)

    def efficiency(
        self, segment_logits: Tensor, decisions: Tensor, logits: Tensor, labels: Tensor,
        fusion: nn.Module,
    ) -> Tensor:  # fmt: skip
        """Eq. 4 (or the budget loss), plus the recovery term where its weight is set.

        Args:
            segment_logits: ``(B, T, M, C)`` dense per-segment logits.
            decisions: ``(B, T, M)`` sampled decisions with straight-through gradients.
            logits: ``(B, C)`` fused video logits.
            labels: ``(B,)`` or ``(B, C)``.
            fusion: the model's fusion (for the recovery term's counterfactuals).
        """
        decisions = decisions.float()
        correct = is_correct(logits.detach(), labels, self.multi_label)
        lambdas = self.lambdas.to(decisions.device)
        if self.budget is not None:
            loss = self.budget(decisions)
        else:
            loss = efficiency_loss(decisions, correct, lambdas, self.gamma)
        if self.recovery > 0:
            fixable = self.fixable(fusion, segment_logits, decisions, labels, correct)
            loss = loss + recovery_loss(decisions, fixable, self.recovery * self.gamma * lambdas)
        return loss

    @torch.no_grad()
    def fixable(
        self, fusion: nn.Module, segment_logits: Tensor, decisions: Tensor, labels: Tensor,
        correct: Tensor,
    ) -> Tensor:  # fmt: skip
        """``(B, M)`` bool: the video is wrong, and right with modality m on every segment.

        Free while the policy learns on dense logits: every segment's logits are there."""
        fixed = []
        for k in range(decisions.shape[-1]):
            on = decisions.detach().clone()
            on[..., k] = 1
            fused = fusion(segment_logits.detach(), on).float()
            fixed.append(is_correct(fused, labels, self.multi_label))
        return ~correct[:, None] & torch.stack(fixed, dim=1)


def losses(
    mode: Mode, net: nn.Module, model: AdaMML, inputs: Mapping[str, Tensor],
    objective: Objective, generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
    """One forward pass of a stage in ``mode`` on a batch of videos.

    Args:
        mode: how decisions are made.
        net: the model as called (DDP-wrapped under torchrun).
        model: the AdaMML model itself.
        inputs: ``{key: (B, T, ...)}`` and ``label``.
        objective: the loss's constants.
        generator: the gates' noise.

    Returns:
        ``(loss, task loss, efficiency loss, video logits (B, C), decisions (B, T, M))``.
    """
    labels = inputs["label"]
    zero = torch.zeros((), device=labels.device)
    ones = all_on(inputs, model)
    if mode.unimodal:
        video = net(inputs, unimodal=True).float()
        task = sum((objective.task(video[:, k], labels) for k in range(video.shape[1])), zero)
        return task, task, zero, video[:, : len(model.modalities)].mean(1), ones
    if mode.dropout:
        device = ones.device if generator is None else generator.device
        drawn = torch.rand(ones.shape, generator=generator, device=device)
        decisions: Tensor | None = (drawn < 0.5).to(ones)
    elif not mode.policy:
        decisions = ones
    elif mode.sampled:
        decisions = None
    else:
        with torch.no_grad():
            decisions = model.decide(inputs)
    result = net(inputs, decisions=decisions, route=mode.routed, generator=generator)
    logits = result.logits.float()
    task = objective.task(logits, labels)
    efficiency = zero
    if mode.efficiency:
        efficiency = objective.efficiency(result.segment_logits, result.decisions, logits,
                                          labels, model.fusion)  # fmt: skip
    return task + efficiency, task, efficiency, logits, result.decisions


def is_correct(logits: Tensor, labels: Tensor, multi_label: bool) -> Tensor:
    """``(B,)`` bool: the top-1 class is (one of) the label(s); Eq. 4's "correct"."""
    top = logits.argmax(-1)
    if multi_label:
        return labels.gather(1, top[:, None]).squeeze(1) > 0
    return top == labels
