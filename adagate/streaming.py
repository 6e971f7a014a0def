"""Streaming: decide, route and fuse a video as it arrives, in memory that does not grow with it.

A video that arrives segment by segment (a camera, a long file decoded as it is read) needs
the same answer as the batch path, ``policy(features)`` → ``route_segments`` →
``masked_late_fusion`` over all T segments, without holding the whole video. The pieces:

* :func:`online_late_fusion` keeps the running sums of :func:`adagate.masked_late_fusion`
  (:class:`FusionState`), so the video logits after segment t are those of the first t + 1
  segments;
* :func:`route_segment` runs each modality's network on one segment if the policy selected it,
  and takes its input as a zero-argument function when building it costs something (decoding):
  the function is called only for a selected modality;
* :func:`stream_step` chains ``MultiModalPolicy.step``, :func:`route_segment` and
  :func:`online_late_fusion`, carrying one :class:`StreamState`;
* :func:`route_window` and :func:`stream_window` do the same for a window of T segments at a
  time: the policy's features of the window come in one call of each extractor, the policy's
  LSTM steps over them (``MultiModalPolicy.forward``), and each recogniser runs once, on the
  segments that selected it. Per segment, a small network pays a fixed cost per call that its
  MACs do not show (tens of layers, each a kernel launch or a thread hand-off); a window pays
  it once.
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
    "WindowOutput",
    "online_late_fusion",
    "route_segment",
    "route_window",
    "stream_step",
    "stream_window",
]

SegmentInput = Tensor | Callable[[], Tensor]
WindowInput = Tensor | Callable[[Tensor], Tensor]


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


def route_window(
    modules: Mapping[str, nn.Module],
    inputs: Mapping[str, WindowInput],
    decisions: Tensor,
    modalities: Sequence[str],
    *,
    fill: float = 0.0,
    example_output: Tensor | None = None,
) -> Tensor:
    """:func:`adagate.route_segments` for inputs that cost something to build: each modality's
    network runs once, on the segments of the window that selected it, and only their inputs
    are built.

    Modality ``modalities[i]`` takes a ``(B, T, ...)`` tensor, computed through
    :func:`adagate.run_selected` where ``decisions[..., i]`` is nonzero, or a function
    ``segments -> (K, ...)``: ``segments`` is a ``(K,)`` int64 tensor, on the device of
    ``decisions``, of the positions in the flattened ``B·T`` axis (ascending) of the K segments
    that selected the modality, and the function returns their inputs in that order. It is
    called once, and not at all when K = 0: that is where a reader builds (decodes, transforms)
    the inputs of the selected segments alone. Outputs are those of :func:`route_segments`
    (one host sync per lazy modality when ``decisions`` is on an accelerator).

    Args:
        modules: modality name → network mapping ``(N, ...)`` to ``(N, C)``.
        inputs: modality name → ``(B, T, ...)`` tensor, or a function of the selected segments.
        decisions: ``(B, T, M)`` decisions in the order of ``modalities``; nonzero selects.
        modalities: the order of the M axis, e.g. ``policy.modalities``.
        fill: value of the outputs of skipped segments.
        example_output: ``(N, C)`` any output of the modules (N is ignored); needed only when
            no segment selects any modality and an input is a function.

    Returns:
        ``(B, T, M, C)`` outputs, ``fill`` where skipped, ready for
        :func:`adagate.masked_late_fusion`.

    Shape:
        inputs[name]: (B, T, ...) or segments (K,) → (K, ...); decisions: (B, T, M) →
        output: (B, T, M, C).

    Raises:
        ValueError: if ``decisions`` is not ``(B, T, M)`` with ``M = len(modalities)``, a
            modality has no module or input, a tensor input's leading axes are not ``(B, T)``,
            a function returns other than K rows, the outputs differ in shape, or nothing was
            computed, an input is a function and ``example_output`` is None.

    Example:
        >>> modules = {"rgb": nn.Linear(6, 3), "audio": nn.Linear(2, 3)}
        >>> built = []
        >>> def rgb_inputs(segments):
        ...     built.extend(segments.tolist())  # decode and transform these segments only
        ...     return torch.randn(len(segments), 6)
        >>> decisions = torch.tensor([[[1.0, 1.0], [0.0, 1.0], [1.0, 1.0]]])
        >>> out = route_window(modules, {"rgb": rgb_inputs, "audio": torch.randn(1, 3, 2)},
        ...                    decisions, ["rgb", "audio"])
        >>> out.shape, built
        (torch.Size([1, 3, 2, 3]), [0, 2])
    """
    names = check_routing_inputs(modules, inputs, decisions, modalities, "(B, T, M)")
    segments = tuple(decisions.shape[:2])
    rows = segments[0] * segments[1]
    outputs: dict[str, Tensor] = {}
    for index, name in enumerate(names):
        x, mask = inputs[name], decisions[..., index].flatten()
        if isinstance(x, Tensor):
            if tuple(x.shape[:2]) != segments:
                raise ValueError(
                    f"inputs[{name!r}]: expected (B, T, ...) with (B, T) = {segments} like "
                    f"decisions, got shape {tuple(x.shape)}"
                )
            outputs[name] = run_selected(modules[name], x.flatten(0, 1), mask, fill)
            continue
        chosen = selected(mask).nonzero().squeeze(1)
        if chosen.numel() == 0:
            continue
        x = x(chosen)
        if not isinstance(x, Tensor) or x.dim() == 0 or x.shape[0] != chosen.numel():
            shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(
                f"inputs[{name!r}]: expected the function to return (K, ...) with K = "
                f"{chosen.numel()} selected segments, got {shape}"
            )
        # All rows selected: run_selected calls the module once, with its one-row rule.
        y = run_selected(modules[name], x, mask.new_ones(chosen.numel()), fill)
        outputs[name] = y.new_full((rows, *y.shape[1:]), fill).index_copy_(
            0, chosen.to(y.device), y
        )
    template = next(iter(outputs.values()), example_output)
    if template is None:
        raise ValueError(
            "example_output: expected an (N, C) output of the modules when no modality is "
            "selected and an input is a function, got None"
        )
    skipped = template.new_full((rows, *template.shape[1:]), fill)
    out = [outputs.get(name, skipped) for name in names]
    shapes = {name: tuple(y.shape[1:]) for name, y in zip(names, out, strict=True)}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"modules: expected outputs of one shape, got {shapes}")
    stacked = torch.stack(out, dim=1)
    return stacked.reshape(*segments, *stacked.shape[1:])


class WindowOutput(NamedTuple):
    """What :func:`stream_window` returns for one window of T segments.

    Attributes:
        logits: ``(B, C)`` video logits over every segment so far, this window's included.
        segment_logits: ``(B, T, M, C)`` the window's per-modality logits, ``fill`` where
            skipped.
        decisions: ``(B, T, M)`` the window's decisions.
        policy_logits: ``(B, T, M, 2)`` the policy's ``[skip, use]`` logits.
        state: the :class:`StreamState` to pass with the next window.
    """

    logits: Tensor
    segment_logits: Tensor
    decisions: Tensor
    policy_logits: Tensor
    state: StreamState


def stream_window(
    policy: MultiModalPolicy,
    modules: Mapping[str, nn.Module],
    features: Mapping[str, Tensor],
    inputs: Mapping[str, WindowInput],
    weights: Tensor,
    state: StreamState | None = None,
    *,
    normalize: bool = False,
    generator: torch.Generator | None = None,
    example_output: Tensor | None = None,
) -> WindowOutput:
    """Decide, route and fuse a window of T segments: :func:`stream_step` T at a time.

    The policy runs over the window's features (``MultiModalPolicy.forward``, its LSTM stepping
    through the T segments from ``state``), :func:`route_window` runs each recogniser once on
    the segments that selected it, and the segments are folded into the running fusion.
    Calling it on consecutive windows gives what :func:`stream_step` gives segment by segment,
    and over a whole video what the batch path gives, up to floating-point rounding: exactly
    the same decisions in ``eval()`` (the same gate noise with the same generator).

    Args:
        policy: the policy; its ``modalities`` give the order of the M axis.
        modules: modality name → recognition network ``(N, ...)`` → ``(N, C)``.
        features: modality name → ``(B, T, D_name)`` policy features of the window, e.g. one
            call of each feature extractor on the window's T segments.
        inputs: modality name → ``(B, T, ...)`` recognition input, or a function of the
            selected segments (see :func:`route_window`).
        weights: ``(M,)`` fusion weights (``MaskedLateFusion.weights``).
        state: the previous window's ``state``, or None for a video's first window.
        normalize: the fusion's ``normalize``.
        generator: optional ``torch.Generator`` for the gate noise.
        example_output: see :func:`route_window`.

    Returns:
        :class:`WindowOutput`.

    Shape:
        features[name]: (B, T, D_name), inputs[name]: (B, T, ...) → logits: (B, C),
        segment_logits: (B, T, M, C), decisions: (B, T, M).

    Raises:
        ValueError: as ``MultiModalPolicy.forward``, :func:`route_window` and
            :func:`online_late_fusion`.

    Example:
        >>> policy = MultiModalPolicy({"rgb": 4, "audio": 2}, hidden_size=8, mlp_sizes=())
        >>> modules = {"rgb": nn.Linear(6, 3), "audio": nn.Linear(2, 3)}
        >>> state = None
        >>> for window in range(3):
        ...     out = stream_window(policy.eval(), modules,
        ...                         {"rgb": torch.randn(1, 5, 4), "audio": torch.randn(1, 5, 2)},
        ...                         {"rgb": lambda segments: torch.randn(len(segments), 6),
        ...                          "audio": torch.randn(1, 5, 2)},
        ...                         torch.full((2,), 0.5), state, example_output=torch.zeros(1, 3))
        ...     state = out.state
        >>> out.logits.shape, out.decisions.shape, state.fusion.segments
        (torch.Size([1, 3]), torch.Size([1, 5, 2]), 15)
    """
    decided = policy(features, None if state is None else state.policy, generator=generator)
    segment_logits = route_window(
        modules, inputs, decided.decisions, policy.modalities, example_output=example_output
    )
    fusion = None if state is None else state.fusion
    for t in range(segment_logits.shape[1]):
        logits, fusion = online_late_fusion(
            segment_logits[:, t], decided.decisions[:, t], weights, fusion, normalize
        )
    assert fusion is not None
    return WindowOutput(
        logits, segment_logits, decided.decisions, decided.logits,
        StreamState(decided.state, fusion),
    )  # fmt: skip
