"""Streaming: decide, route and fuse one segment at a time, in memory that does not grow with T.

A video that arrives segment by segment (a camera, a long file decoded as it is read) needs
the same answer as the batch path, ``policy(features)`` → ``route_segments`` →
``masked_late_fusion`` over all T segments, without holding T segments. Three pieces give it:

* :func:`online_late_fusion` keeps the running sums of :func:`adagate.masked_late_fusion`
  (:class:`FusionState`), so the video logits after segment t are those of the first t + 1
  segments;
* :func:`route_segment` runs each modality's network on one segment if the policy selected it,
  and takes its input as a zero-argument function when building it costs something (decoding):
  the function is called only for a selected modality;
* :func:`stream_step` chains ``MultiModalPolicy.step``, :func:`route_segment` and
  :func:`online_late_fusion`, carrying one :class:`StreamState`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from adagate._decisions import floating, selected
from adagate.fusion import check_fusion_inputs
from adagate.policy import MultiModalPolicy, PolicyState
from adagate.routing import check_routing_inputs, run_selected

__all__ = [
    "FusionState",
    "StreamOutput",
    "StreamState",
    "online_late_fusion",
    "route_segment",
    "stream_step",
]

SegmentInput = Tensor | Callable[[], Tensor]


class FusionState(NamedTuple):
    """Running sums of masked late fusion over the segments seen so far.

    Attributes:
        weighted_sum: ``(B, C)`` ``Σ_t Σ_m w_m · d[b, t, m] · logits[b, t, m]``.
        used_weight: ``(B,)`` ``Σ_t Σ_m w_m · d[b, t, m]``, the denominator of
            ``normalize=True``.
        segments: T so far, the denominator of ``normalize=False``.
    """

    weighted_sum: Tensor
    used_weight: Tensor
    segments: int


def online_late_fusion(
    logits_t: Tensor,
    decisions_t: Tensor,
    weights: Tensor,
    state: FusionState | None = None,
    normalize: bool = False,
) -> tuple[Tensor, FusionState]:
    """Add one segment to a masked late fusion and return the video logits so far.

    After segments ``0 … t`` the logits equal ``masked_late_fusion(logits[:, :t+1],
    decisions[:, :t+1], weights, normalize)`` up to floating-point rounding (the sum runs
    segment by segment instead of in one ``einsum``): a skipped segment adds nothing but counts
    in ``1/T``, and with ``normalize`` a video with nothing selected yet scores exactly zero.
    The state is two small tensors and a count, whatever the number of segments.

    Args:
        logits_t: ``(B, M, C)`` the new segment's per-modality logits (finite; zeros where
            skipped, as :func:`route_segment` fills them).
        decisions_t: ``(B, M)`` its decisions, bool, integer or floating.
        weights: ``(M,)`` fusion weights (``MaskedLateFusion.weights``).
        state: what the previous call returned, or None for the first segment.
        normalize: divide by the used weight instead of by T (see
            :func:`adagate.masked_late_fusion`); keep it the same for every call.

    Returns:
        ``(logits, state)``: ``(B, C)`` video logits over the segments so far, in the dtype of
        ``logits_t``, and the state to pass with the next segment.

    Shape:
        logits_t: (B, M, C), decisions_t: (B, M), weights: (M,) → logits: (B, C).

    Raises:
        ValueError: if a tensor has the wrong rank, ``decisions_t`` is not ``(B, M)`` of
            ``logits_t``, ``weights`` does not have M entries, ``normalize`` meets a weight that
            is not positive, or ``state`` does not match ``(B, C)``.

    Example:
        >>> from adagate import masked_late_fusion
        >>> logits, decisions = torch.randn(2, 5, 3, 10), torch.ones(2, 5, 3)
        >>> weights = torch.ones(3)
        >>> state = None
        >>> for t in range(5):
        ...     video, state = online_late_fusion(logits[:, t], decisions[:, t], weights, state)
        >>> torch.allclose(video, masked_late_fusion(logits, decisions, weights), atol=1e-6)
        True
    """
    check_fusion_inputs(logits_t, decisions_t, weights, normalize, "(B, M, C)", suffix="_t")
    used = floating(decisions_t).to(logits_t.dtype) * weights.to(logits_t.dtype)
    weighted_sum = torch.einsum("bm,bmc->bc", used, logits_t)
    used_weight = used.sum(dim=1)
    segments = 1
    if state is not None:
        if state.weighted_sum.shape != weighted_sum.shape or state.segments < 1:
            raise ValueError(
                f"state: expected a FusionState of (B, C) = {tuple(weighted_sum.shape)} after "
                f"at least one segment, got {tuple(state.weighted_sum.shape)} after "
                f"{state.segments}"
            )
        weighted_sum = state.weighted_sum + weighted_sum
        used_weight = state.used_weight + used_weight
        segments = state.segments + 1
    state = FusionState(weighted_sum, used_weight, segments)
    count = torch.full_like(used_weight, segments)
    if not normalize:
        return weighted_sum / count[:, None], state
    # Nothing selected yet: weighted_sum is 0; divide it by T rather than by 0, as the batch
    # fusion does.
    denominator = torch.where(used_weight > 0, used_weight, count)
    return weighted_sum / denominator[:, None], state


def route_segment(
    modules: Mapping[str, nn.Module],
    inputs_t: Mapping[str, SegmentInput],
    decisions_t: Tensor,
    modalities: Sequence[str],
    *,
    fill: float = 0.0,
    example_output: Tensor | None = None,
) -> Tensor:
    """One segment of :func:`adagate.route_segments`: each modality computed only if selected.

    Modality ``modalities[i]`` runs ``modules[name]`` through :func:`adagate.run_selected` on
    the rows whose ``decisions_t[:, i]`` is nonzero; other rows hold ``fill``. Its input is a
    ``(B, ...)`` tensor, or a zero-argument function returning one, called only when at least
    one row selected the modality: that is where a streaming reader decodes the frames of a
    modality the policy asked for, and skips the others (it costs one host sync per modality
    when ``decisions_t`` is on an accelerator).

    Args:
        modules: modality name → network mapping ``(B, ...)`` to ``(B, C)``.
        inputs_t: modality name → ``(B, ...)`` tensor, or a function returning it.
        decisions_t: ``(B, M)`` decisions in the order of ``modalities``; nonzero selects.
        modalities: the order of the M axis, e.g. ``policy.modalities``.
        fill: value of the outputs of skipped rows.
        example_output: ``(N, C)`` any output of the modules (N is ignored); needed only when
            no row selects any modality and an input is a function, so that the all-``fill``
            result has its shape, dtype and device without running anything.

    Returns:
        ``(B, M, C)`` outputs, ``fill`` where skipped, ready for :func:`online_late_fusion`.

    Shape:
        inputs_t[name]: (B, ...), decisions_t: (B, M) → output: (B, M, C).

    Raises:
        ValueError: if ``decisions_t`` is not ``(B, M)`` with ``M = len(modalities)``, a
            modality has no module or input, the modalities' outputs differ in shape, or
            nothing was computed, an input is a function and ``example_output`` is None.

    Example:
        >>> modules = {"rgb": nn.Linear(6, 3), "audio": nn.Linear(2, 3)}
        >>> def decode_rgb():
        ...     raise AssertionError("rgb was not selected, so it is never decoded")
        >>> out = route_segment(modules, {"rgb": decode_rgb, "audio": torch.randn(1, 2)},
        ...                     torch.tensor([[0.0, 1.0]]), ["rgb", "audio"])
        >>> out.shape, bool(out[:, 0].eq(0).all())
        (torch.Size([1, 2, 3]), True)
    """
    names = check_routing_inputs(modules, inputs_t, decisions_t, modalities, "(B, M)", "_t")
    rows = decisions_t.shape[0]
    outputs: dict[str, Tensor] = {}
    for index, name in enumerate(names):
        x = inputs_t[name]
        mask = decisions_t[:, index]
        if not isinstance(x, Tensor):
            if not bool(selected(mask).any()):
                continue
            x = x()
        outputs[name] = run_selected(modules[name], x, mask, fill)
    template = next(iter(outputs.values()), example_output)
    if template is None:
        raise ValueError(
            "example_output: expected an (N, C) output of the modules when no modality is "
            "selected and an input is a function, got None"
        )
    skipped = template.new_full((rows, *template.shape[1:]), fill)
    out = [outputs.get(name, skipped) for name in names]
    shapes = {name: tuple(y.shape) for name, y in zip(names, out, strict=True)}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"modules: expected outputs of one shape, got {shapes}")
    return torch.stack(out, dim=1)


class StreamState(NamedTuple):
    """What :func:`stream_step` carries from one segment to the next.

    Attributes:
        policy: the policy's `PolicyState` (None when the policy is not recurrent).
        fusion: the :class:`FusionState` of the segments so far.

    Shape:
        policy: hidden and cell ``(B, hidden_size)``, decisions ``(B, M)``; fusion:
        ``(B, C)`` and ``(B,)`` sums. Neither grows with the number of segments.
    """

    policy: PolicyState | None
    fusion: FusionState


class StreamOutput(NamedTuple):
    """What :func:`stream_step` returns for one segment.

    Attributes:
        logits: ``(B, C)`` video logits over the segments so far.
        segment_logits: ``(B, M, C)`` this segment's per-modality logits, ``fill`` where
            skipped.
        decisions: ``(B, M)`` this segment's decisions.
        policy_logits: ``(B, M, 2)`` the policy's ``[skip, use]`` logits.
        state: the :class:`StreamState` to pass with the next segment.
    """

    logits: Tensor
    segment_logits: Tensor
    decisions: Tensor
    policy_logits: Tensor
    state: StreamState


def stream_step(
    policy: MultiModalPolicy,
    modules: Mapping[str, nn.Module],
    features_t: Mapping[str, Tensor],
    inputs_t: Mapping[str, SegmentInput],
    weights: Tensor,
    state: StreamState | None = None,
    *,
    normalize: bool = False,
    generator: torch.Generator | None = None,
    example_output: Tensor | None = None,
) -> StreamOutput:
    """Decide, route and fuse one segment: the streaming form of policy → routing → fusion.

    Calling it on segments ``0 … T-1`` gives the decisions of ``policy(features)`` (the same
    gate noise with the same generator, exactly the same decisions in ``eval()``), the
    per-segment logits of :func:`adagate.route_segments` with ``route=True`` and, after the
    last segment, the logits of :func:`adagate.masked_late_fusion`, up to floating-point
    rounding. Only the selected modalities' inputs are built (see :func:`route_segment`).

    Args:
        policy: the policy; its ``modalities`` give the order of the M axis.
        modules: modality name → recognition network ``(B, ...)`` → ``(B, C)``.
        features_t: modality name → ``(B, D_name)`` policy features of the segment.
        inputs_t: modality name → ``(B, ...)`` recognition input, or a function returning it.
        weights: ``(M,)`` fusion weights (``MaskedLateFusion.weights``).
        state: the previous call's ``state``, or None for a video's first segment.
        normalize: the fusion's ``normalize``.
        generator: optional ``torch.Generator`` for the gate noise.
        example_output: see :func:`route_segment`.

    Returns:
        :class:`StreamOutput`.

    Shape:
        features_t[name]: (B, D_name), inputs_t[name]: (B, ...) → logits: (B, C),
        segment_logits: (B, M, C), decisions: (B, M).

    Raises:
        ValueError: as ``MultiModalPolicy.step``, :func:`route_segment` and
            :func:`online_late_fusion`.

    Example:
        >>> policy = MultiModalPolicy({"rgb": 4, "audio": 2}, hidden_size=8, mlp_sizes=())
        >>> modules = {"rgb": nn.Linear(6, 3), "audio": nn.Linear(2, 3)}
        >>> state = None
        >>> for t in range(4):
        ...     out = stream_step(policy.eval(), modules,
        ...                       {"rgb": torch.randn(1, 4), "audio": torch.randn(1, 2)},
        ...                       {"rgb": lambda: torch.randn(1, 6), "audio": torch.randn(1, 2)},
        ...                       torch.full((2,), 0.5), state)
        ...     state = out.state
        >>> out.logits.shape, out.decisions.shape, state.fusion.segments
        (torch.Size([1, 3]), torch.Size([1, 2]), 4)
    """
    decided = policy.step(features_t, None if state is None else state.policy, generator=generator)
    segment_logits = route_segment(
        modules, inputs_t, decided.decisions, policy.modalities, example_output=example_output
    )
    logits, fusion = online_late_fusion(
        segment_logits, decided.decisions, weights, None if state is None else state.fusion,
        normalize,
    )  # fmt: skip
    return StreamOutput(
        logits, segment_logits, decided.decisions, decided.logits,
        StreamState(decided.state, fusion),
    )  # fmt: skip
