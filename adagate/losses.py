"""Efficiency losses: AdaMML Eq. 4, and a compute budget held by an adaptive Lagrange multiplier."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence

import torch
import torch.distributed as dist
from einops import rearrange
from torch import Tensor, nn

from adagate._decisions import check_decisions, floating

__all__ = ["BudgetLoss", "efficiency_loss", "recovery_loss"]


def _selected_fraction(decisions: Tensor) -> Tensor:
    """``(B, ..., M)`` decisions → ``(B, M)`` fraction of each video's segments using each one."""
    return rearrange(floating(decisions), "b ... m -> b (...) m").mean(dim=1)


def _per_modality(
    name: str,
    values: Tensor | Sequence[float] | Mapping[str, float],
    num_modalities: int,
    like: Tensor,
    modalities: Sequence[str] | None = None,
) -> Tensor:
    """Validate a non-negative ``(M,)`` vector and move it to ``like``'s device and dtype; a
    mapping is read in the order of ``modalities``."""
    vector = _as_vector(name, values, modalities, num_modalities)
    if vector.dim() != 1 or vector.shape[0] != num_modalities:
        raise ValueError(
            f"{name}: expected (M,) = ({num_modalities},), got shape {tuple(vector.shape)}"
        )
    if not bool(torch.isfinite(vector).all()) or bool((vector < 0).any()):
        raise ValueError(f"{name}: expected finite non-negative values, got {vector.tolist()}")
    return vector.to(device=like.device, dtype=like.dtype)


def _as_vector(
    name: str,
    values: Tensor | Sequence[float] | Mapping[str, float],
    modalities: Sequence[str] | None,
    num_modalities: int | None,
) -> Tensor:
    """``values`` as a detached tensor; a mapping keyed by modality is read in the order of
    ``modalities`` (M names, when ``num_modalities`` is known)."""
    size = "M" if num_modalities is None else f"M = {num_modalities}"
    order = None
    if modalities is not None:
        order = [] if isinstance(modalities, str) else list(modalities)
        count = len(order) if num_modalities is None else num_modalities
        if not order or len(order) != count or len(set(order)) != len(order):
            raise ValueError(
                f"modalities: expected {size} distinct names, the order of the M axis, "
                f"got {modalities!r}"
            )
    if isinstance(values, Mapping):
        if order is None:
            # A dict's own order need not be the M axis's (that is the policy's): never guess.
            raise ValueError(
                f"{name}: expected a sequence or tensor of {size} values in the order of the "
                f"M axis, got {type(values).__name__} {dict(values)!r}; to pass values by "
                f"modality name, also pass modalities= (the order of the M axis, e.g. "
                f"policy.modalities)"
            )
        missing = [m for m in order if m not in values]
        extra = [key for key in values if key not in order]
        if missing or extra:
            raise ValueError(
                f"{name}: expected one value for each of modalities {order}, got "
                f"{dict(values)!r} (missing {missing}, extra {extra})"
            )
        values = [_number(f"{name}[{m!r}]", values[m]) for m in order]
    try:
        return torch.as_tensor(values).detach()
    except (TypeError, ValueError, RuntimeError) as error:
        raise ValueError(
            f"{name}: expected a sequence or tensor of {size} numbers, or a mapping modality "
            f"→ number with modalities=, got {type(values).__name__} {values!r}"
        ) from error


def _number(name: str, value: object) -> float:
    if isinstance(value, Tensor) and value.numel() == 1:
        return float(value.detach())
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name}: expected a number, got {type(value).__name__} {value!r}")
    return float(value)


def efficiency_loss(
    decisions: Tensor,
    correct: Tensor,
    lambdas: Tensor | Sequence[float] | Mapping[str, float],
    gamma: float,
    *,
    modalities: Sequence[str] | None = None,
) -> Tensor:
    """The efficiency term of AdaMML Eq. 4, averaged over the batch.

    For each video, ``Σ_k λ_k · C_k`` with::

        C_k = (fraction of the video's segments that use modality k)²   if the video is correct
        C_k = γ                                                   otherwise

    The squared fraction is differentiable through straight-through gates, so more selection of
    an expensive modality costs more (``∂/∂d[b, t, k] = 2 λ_k · fraction[b, k] / (B · T)`` for a
    correct video). The segments of a video are every axis between ``B`` and ``M``:
    ``(B, T, M)`` for AdaMML, ``(B, M)`` for one decision per input (e.g. residual blocks kept
    per image), ``(B, T, S, M)`` for segments of sub-clips.

    A wrongly classified video contributes the constant ``γ · Σ_k λ_k`` and no gradient: γ only
    shifts the loss value (it makes a wrong prediction look worse than any selection on a right
    one), it is not a gradient signal of its own. The policy is thus only asked to save compute
    on videos it already gets right.

    Differs from the reference implementation, which adds ``γ`` once per wrong video instead of
    ``λ_k · γ`` per modality; we follow the paper. Since that term carries no gradient, the two
    train identically and only the reported loss value differs.

    Args:
        decisions: ``(B, ..., M)`` selection, bool, integer or floating (straight-through
            gates); the axes between ``B`` and ``M`` are the segments of a video.
        correct: ``(B,)`` bool, whether each video was classified correctly; compute it from the
            detached fused logits, e.g. ``fused.detach().argmax(-1) == labels``.
        lambdas: ``(M,)`` non-negative cost weight ``λ_k`` of each modality (the paper uses
            ``λ_rgb = 1``, ``λ_audio = 0.05``), in the order of the M axis; or a mapping
            modality name → weight, e.g. ``{"rgb": 1.0, "audio": 0.05}``, with ``modalities``.
        gamma: non-negative penalty ``γ`` for a wrong prediction (the paper uses 10).
        modalities: the order of the M axis (e.g. ``policy.modalities``); needed when
            ``lambdas`` is a mapping, checked against M when given.
    Returns:
        ``()`` scalar loss, in the floating dtype of ``decisions`` (default dtype for bool).

    Raises:
        ValueError: if ``decisions`` is not a ``(B, ..., M)`` decisions tensor, ``correct`` is
            not ``(B,)`` bool, ``lambdas`` is not ``(M,)`` or has a negative entry, ``gamma``
            is negative, ``modalities`` is not M distinct names, or ``lambdas`` is a mapping
            without ``modalities`` or whose keys are not exactly ``modalities``.

    Shape:
        decisions: (B, ..., M), correct: (B,), lambdas: (M,) → output: ().

    Example:
        >>> decisions = torch.tensor([[[1.0, 1.0], [0.0, 1.0]]])
        >>> efficiency_loss(decisions, torch.tensor([True]), [1.0, 0.05], gamma=10.0)
        tensor(0.3000)
        >>> efficiency_loss(decisions, torch.tensor([True]), {"audio": 0.05, "rgb": 1.0},
        ...                 gamma=10.0, modalities=["rgb", "audio"])
        tensor(0.3000)
    """
    check_decisions(decisions, "(B, ..., M)")
    if correct.dtype != torch.bool or correct.shape != decisions.shape[:1]:
        raise ValueError(
            f"correct: expected a bool tensor of shape (B,) = ({decisions.shape[0]},), "
            f"got shape {tuple(correct.shape)} and dtype {correct.dtype}"
        )
    if not gamma >= 0:
        raise ValueError(f"gamma: expected a non-negative number, got {gamma}")
    fraction = _selected_fraction(decisions)
    weights = _per_modality("lambdas", lambdas, decisions.shape[-1], fraction, modalities)
    per_video = (weights * fraction.square()).sum(dim=1)
    # AdaMML Eq. 4: C_k = γ for a wrong video; torch.where sends no gradient to its decisions.
    wrong = (weights * gamma).sum()
    return torch.where(correct.to(per_video.device), per_video, wrong).mean()


def recovery_loss(
    decisions: Tensor,
    fixable: Tensor,
    weights: Tensor | Sequence[float] | Mapping[str, float] | float = 1.0,
    *,
    modalities: Sequence[str] | None = None,
) -> Tensor:
    """Pull back on the gates whose skipped compute would have fixed a wrong prediction.

    AdaMML Eq. 4 charges a wrong video the constant ``γ · Σ_k λ_k`` with no gradient, so once a
    policy has learnt to skip a modality that some videos need, nothing asks it to use that
    modality again: a collapse onto the cheap modality is stable. This term gives the wrong
    videos a gradient, and only towards the compute that would have helped. With
    ``fixable[b, k]`` true when video ``b`` is wrong under its decisions but right with modality
    ``k`` used on every segment (a counterfactual that costs nothing while the policy trains
    dense: the skipped segments' logits are computed anyway), and ``u[b, k]`` the fraction of
    ``b``'s segments that use ``k``::

        L = 1/B · Σ_b Σ_k  w_k · fixable[b, k] · (1 − u[b, k])

    so ``∂L/∂d[b, t, k] = −w_k / (B · T)`` for a fixable pair: a straight-through gate is pushed
    on exactly where its modality would have turned the prediction right, and nowhere else.
    With ``w = γ · λ``, a wrong video that modality ``k`` would have fixed costs
    ``γ · λ_k · (1 − u_k)``: Eq. 4's constant when ``k`` was skipped entirely, falling to zero
    as ``k`` is used.

    Args:
        decisions: ``(B, ..., M)`` selection, bool, integer or floating (straight-through
            gates); the axes between ``B`` and ``M`` are the segments of a video.
        fixable: ``(B, M)`` bool, or ``(B,)`` bool for "every modality on would fix it" (e.g.
            when only the all-on prediction is available), applied to every modality.
        weights: ``(M,)`` non-negative weight per modality in the order of the M axis, a
            mapping modality name → weight with ``modalities``, or one number for all.
        modalities: the order of the M axis (e.g. ``policy.modalities``); needed when
            ``weights`` is a mapping, checked against M when given.

    Returns:
        ``()`` scalar loss, in the floating dtype of ``decisions``.

    Raises:
        ValueError: if ``decisions`` is not ``(B, ..., M)``, ``fixable`` is not a bool
            ``(B, M)`` or ``(B,)`` tensor, ``weights`` is not ``(M,)`` non-negative, or
            ``weights`` is a mapping without ``modalities`` or whose keys are not exactly them.

    Shape:
        decisions: (B, ..., M), fixable: (B, M) or (B,), weights: (M,) → output: ().

    Example:
        >>> decisions = torch.tensor([[[0.0, 1.0], [1.0, 1.0]]])  # one video, two segments
        >>> recovery_loss(decisions, torch.tensor([[True, False]]), [10.0, 0.5])
        tensor(5.)
    """
    check_decisions(decisions, "(B, ..., M)")
    batch, count = decisions.shape[0], decisions.shape[-1]
    if fixable.dtype != torch.bool or fixable.shape not in ((batch,), (batch, count)):
        raise ValueError(
            f"fixable: expected a bool tensor (B, M) = ({batch}, {count}) or (B,), "
            f"got shape {tuple(fixable.shape)} and dtype {fixable.dtype}"
        )
    fraction = _selected_fraction(decisions)
    if isinstance(weights, (int, float)):
        weights = [float(weights)] * count
    vector = _per_modality("weights", weights, count, fraction, modalities)
    mask = fixable.to(fraction.device)
    if mask.dim() == 1:
        mask = mask[:, None].expand(batch, count)
    return (mask * vector * (1 - fraction)).sum(dim=1).mean()


class BudgetLoss(nn.Module):
    """A compute-budget constraint with an adaptive Lagrange multiplier, instead of hand-set λ.

    Eq. 4's ``λ_k`` and ``γ`` set the accuracy/compute trade-off only indirectly: one has to
    retrain to find which values land on a given GFLOPs figure. ``BudgetLoss`` takes the figure
    itself. With ``costs`` the per-segment cost ``c_m`` of each modality, the expected cost of a
    batch of decisions ``(B, ..., M)`` (the axes between ``B`` and ``M`` are a video's ``T``
    segments), as a fraction of running every modality on every segment, is::

        used = mean_b Σ_t Σ_m c_m · d[b, t, m]  /  (T · Σ_m c_m)       (in [0, 1])

    and the penalty returned by :meth:`forward` is ``multiplier · (used − target_fraction)``,
    whose gradient pushes each decision down by ``multiplier · c_m / (B · T · Σ c)``. Because
    the constraint is a fraction of the all-modality cost, ``step_size`` does not depend on
    the units or magnitude of ``costs`` or on ``T``.

    The multiplier is updated by projected dual ascent,
    ``multiplier ← max(0, multiplier + step_size · (used − target_fraction))``, once per call of
    :meth:`forward` in training mode, *after* the penalty has been computed with the old value
    (like BatchNorm's running statistics; in ``eval()`` it is frozen; with gradient accumulation
    it steps once per micro-batch). Over budget it grows until
    the penalty outweighs the task loss's wish for more compute; under budget it shrinks back to
    zero, so a budget the task does not need costs nothing. It is the only entry of
    ``state_dict`` (``costs`` and ``target`` are constructor arguments), so it resumes with a
    checkpoint. Under ``torch.distributed`` the constraint is
    averaged over ranks before the update, so every rank keeps the same multiplier (each rank
    must then call :meth:`forward` equally often, as DDP already requires).

    A larger ``step_size`` reacts faster but oscillates more around the target; the measured
    cost settles when the multiplier has reached the price at which the task loss's pull and
    the penalty balance. Fixed costs that no gate controls (e.g. the policy network) are not
    part of ``costs``: subtract them from an absolute ``target`` first.

    Args:
        costs: ``(M,)`` non-negative cost of one segment of each modality, e.g. MACs or GFLOPs
            from :func:`adagate.flops.count_macs`, in the order of the M axis; or a mapping
            modality name → cost with ``modalities`` (e.g. ``ModalityCosts.recognition``); at
            least one positive.
        target: with ``relative=False``, the budget per video in the units of ``costs``
            (e.g. GFLOPs per video, summed over its T segments); with ``relative=True``, a
            fraction in ``(0, 1]`` of the all-modality cost ``T · Σ_m c_m``.
        relative: how to read ``target``.
        step_size: dual-ascent step on the normalised constraint; positive.
        initial_multiplier: starting multiplier; non-negative.
        modalities: the order of the M axis of the decisions (e.g. ``policy.modalities``);
            needed when ``costs`` is a mapping, checked against M when given.

    Shape:
        - decisions: ``(B, ..., M)``, bool, integer or floating (straight-through gates); the
          axes between ``B`` and ``M`` count as segments, ``T`` their number
        - output: ``()``

    Raises:
        ValueError: if ``costs`` is not ``(M,)``, non-negative and not all zero, ``target`` is
            not positive (or above 1 when ``relative``), ``step_size`` is not positive,
            ``initial_multiplier`` is negative, ``modalities`` is not M distinct names, or
            ``costs`` is a mapping without ``modalities`` or whose keys are not exactly them.

    Example:
        >>> budget = BudgetLoss(torch.tensor([4.1, 0.3]), target=0.5, relative=True)
        >>> decisions = torch.ones(8, 10, 2, requires_grad=True)
        >>> penalty = budget(decisions)  # add to the task loss, then backward
        >>> round(budget.used_fraction, 2), budget.multiplier > 0
        (1.0, True)
    """

    costs: Tensor
    lagrange_multiplier: Tensor
    last_used: Tensor

    def __init__(
        self,
        costs: Tensor | Sequence[float] | Mapping[str, float],
        target: float,
        *,
        relative: bool = False,
        step_size: float = 0.01,
        initial_multiplier: float = 0.0,
        modalities: Sequence[str] | None = None,
    ) -> None:
        super().__init__()
        costs_tensor = _as_vector("costs", costs, modalities, None)
        if not costs_tensor.is_floating_point():
            costs_tensor = costs_tensor.to(torch.get_default_dtype())
        if costs_tensor.dim() != 1:
            raise ValueError(f"costs: expected (M,), got shape {tuple(costs_tensor.shape)}")
        costs_tensor = _per_modality(
            "costs", costs_tensor, costs_tensor.shape[0], costs_tensor, modalities
        )
        if not bool((costs_tensor > 0).any()):
            raise ValueError(f"costs: expected a positive entry, got {costs_tensor.tolist()}")
        if not target > 0 or (relative and target > 1):
            bound = "a fraction in (0, 1] with relative=True" if relative else "a positive cost"
            raise ValueError(f"target: expected {bound}, got {target}")
        if not step_size > 0:
            raise ValueError(f"step_size: expected a positive number, got {step_size}")
        if not initial_multiplier >= 0:
            raise ValueError(
                f"initial_multiplier: expected a non-negative number, got {initial_multiplier}"
            )
        self.target = float(target)
        self.relative = relative
        self.step_size = float(step_size)
        self.total_cost = float(costs_tensor.sum())
        # Only the multiplier is training state; costs and the last measurement are not.
        self.register_buffer("costs", costs_tensor, persistent=False)
        self.register_buffer("lagrange_multiplier", torch.tensor(float(initial_multiplier)))
        self.register_buffer("last_used", torch.tensor(float("nan")), persistent=False)

    @property
    def multiplier(self) -> float:
        """Current Lagrange multiplier (≥ 0), for logging."""
        return float(self.lagrange_multiplier)

    @property
    def used_fraction(self) -> float:
        """Expected cost of the last batch, as a fraction of the all-modality cost (NaN before
        the first call)."""
        return float(self.last_used)

    def target_fraction(self, num_segments: int) -> float:
        """The target as a fraction of the all-modality cost of ``num_segments`` segments."""
        if self.relative:
            return self.target
        return self.target / (num_segments * self.total_cost)

    def measured_cost(self, num_segments: int) -> float:
        """Expected cost per video of the last batch, in the units of ``costs``, for logging."""
        return self.used_fraction * num_segments * self.total_cost

    def forward(self, decisions: Tensor) -> Tensor:
        """Penalty ``multiplier · (used − target_fraction)``; updates the multiplier in training.

        Args:
            decisions: ``(B, ..., M)`` selection, bool, integer or floating.

        Returns:
            ``()`` penalty to add to the task loss; negative while under budget.

        Raises:
            ValueError: if ``decisions`` is not ``(B, ..., M)`` with ``M = len(costs)``.
        """
        check_decisions(decisions, "(B, ..., M)")
        if decisions.shape[-1] != self.costs.shape[0]:
            raise ValueError(
                f"decisions: expected (B, ..., M) with M = {self.costs.shape[0]} (len(costs)), "
                f"got shape {tuple(decisions.shape)}"
            )
        fraction = _selected_fraction(decisions)
        segments = math.prod(decisions.shape[1:-1])
        shares = (self.costs / self.total_cost).to(fraction)
        used = (fraction * shares).sum(dim=1).mean()
        violation = used - self.target_fraction(segments)
        # A copy: the in-place update below must not touch the value autograd saved.
        penalty = self.lagrange_multiplier.to(violation, copy=True) * violation
        with torch.no_grad():
            measured = used.detach().clone()
            if dist.is_available() and dist.is_initialized():
                dist.all_reduce(measured)
                measured /= dist.get_world_size()
            self.last_used.copy_(measured)
            if self.training:
                step = self.step_size * (measured - self.target_fraction(segments))
                self.lagrange_multiplier.add_(step).clamp_(min=0.0)
        return penalty

    def extra_repr(self) -> str:
        kind = "fraction" if self.relative else "per video"
        return f"target={self.target} ({kind}), step_size={self.step_size}"
