"""AdaMML assembled from adagate parts: policy + per-modality recognisers + routing + fusion.

One segment of one video goes through (AdaMML §3.1, Figure 2):

1. a cheap feature extractor per modality (a MobileNetV2, or a plain ConvNet, on the
   low-resolution policy input), or, for a *shared* modality, the pooled features of its own
   recognition backbone, which then runs on every segment and is not run again;
2. :class:`adagate.policy.MultiModalPolicy`, which decides which modalities to use;
3. the recognition backbone of every other selected modality, called through
   :func:`adagate.routing.run_selected` so that a skipped segment costs nothing;
4. :class:`adagate.fusion.MaskedLateFusion`, which averages the kept segment predictions.

Presets (:data:`PRESETS`) hold every size and hyper-parameter; ``paper`` is AdaMML §4.1,
``demo`` is small enough to train on two CPU cores in minutes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from modalities import MODALITIES, parse_modalities
from presets import PRESETS as PRESETS  # re-exported: the presets are part of the model
from presets import Preset
from torch import Tensor, nn

from adagate.backbones.convnet import PlainConvNet
from adagate.backbones.mobilenet import mobilenet_v2
from adagate.backbones.resnet import (
    BasicBlock,
    TSNResNet,
    tsn_resnet18,
    tsn_resnet34,
    tsn_resnet50,
)
from adagate.flops import ModalityCosts
from adagate.fusion import MaskedLateFusion
from adagate.policy import MultiModalPolicy
from adagate.routing import route_segments


def tsn_resnet10(
    in_channels: int = 3, num_classes: int | None = 1000, temporal_pool: bool = True
) -> TSNResNet:
    """TSN ResNet-10 (one basic block per stage): the demo's CPU-sized RGB backbone."""
    return TSNResNet(BasicBlock, (1, 1, 1, 1), in_channels, num_classes, temporal_pool)


VISUAL_BACKBONES = {
    "resnet10": tsn_resnet10,
    "resnet18": tsn_resnet18,
    "resnet34": tsn_resnet34,
    "resnet50": tsn_resnet50,
}


class AdaMMLOutput(NamedTuple):
    """What :class:`AdaMML` returns.

    Attributes:
        logits: ``(B, C)`` video logits (masked late fusion of the segment logits).
        segment_logits: ``(B, T, M, C)`` per-segment, per-modality logits; zero where skipped
            when routed.
        decisions: ``(B, T, M)`` the decisions used, in ``{0, 1}``.
    """

    logits: Tensor
    segment_logits: Tensor
    decisions: Tensor


class FeaturesAndLogits(NamedTuple):
    """What the policy reads, and the logits computed on the way there.

    Attributes:
        features: ``{m: (B, T, D_m)}`` policy features in modality order.
        logits: ``{m: (B, T, C)}`` segment logits of the shared modalities' recognisers, from
            the same pass that gave their features.
    """

    features: dict[str, Tensor]
    logits: dict[str, Tensor]


class _PolicyFeatures(nn.Module):
    """One modality's own policy feature extractor, segment by segment.

    Args:
        in_channels: channels of one frame of the policy input.
        preset: ``policy_extractor`` picks a MobileNetV2 at ``policy_width`` or a
            :class:`~adagate.backbones.PlainConvNet` with ``policy_conv_widths``.
        pool: average-pool factor applied to the input first (1: none).
    """

    def __init__(self, in_channels: int, preset: Preset, pool: int) -> None:
        super().__init__()
        self.pool = pool
        self.net: nn.Module = (
            PlainConvNet(in_channels, preset.policy_conv_widths)
            if preset.policy_extractor == "conv"
            else mobilenet_v2(in_channels, None, width_mult=preset.policy_width)
        )

    def forward(self, x: Tensor) -> Tensor:
        """``x: (N, F, C, H, W)`` or ``(N, C, H, W)`` → ``(N, D)``."""
        if self.pool > 1:
            x = F.avg_pool2d(x.flatten(0, -4), self.pool).unflatten(0, x.shape[:-3])
        out: Tensor = self.net(x)
        return out


class AdaMML(nn.Module):
    """Adaptive multi-modal recognition: a policy picks, per segment, the modalities to run.

    Args:
        modalities: recognition modalities, any of ``rgb``, ``rgbdiff``, ``flow``, ``audio``;
            their order is the M axis.
        num_classes: number of classes C.
        preset: sizes of the networks (:data:`PRESETS`).
        recurrent: False drops the policy's LSTM (AdaMML §4.3 "no LSTM" ablation).

    Shape:
        batch: ``{m: (B, T, ...)}`` for every modality ``m`` and every policy input in
        ``modalities.MODALITIES`` → :class:`AdaMMLOutput`.

    Raises:
        ValueError: for an unknown or repeated modality.

    A modality in ``preset.shared_policy_features`` (:attr:`shared`) has no extractor of its
    own in :attr:`policy_features`: the policy reads its recogniser's pooled features, and
    :meth:`forward` reuses that pass's logits instead of running the recogniser again.
    """

    def __init__(
        self,
        modalities: Sequence[str],
        num_classes: int,
        preset: Preset,
        recurrent: bool = True,
    ) -> None:
        super().__init__()
        modalities = parse_modalities(modalities)
        self.modalities = modalities
        self.num_classes = num_classes
        self.shared = tuple(m for m in modalities if m in preset.shared_policy_features)
        self.recognisers = nn.ModuleDict(
            {m: recognition_backbone(m, num_classes, preset) for m in modalities}
        )
        self.policy_features = nn.ModuleDict(
            {
                m: _PolicyFeatures(
                    MODALITIES[MODALITIES[m].policy_source or m].channels,
                    preset,
                    preset.policy_audio_pool if m == "audio" else 1,
                )
                for m in modalities
                if m not in self.shared
            }
        )
        own = {m: int(f.net.num_features) for m, f in self.policy_features.items()}
        dims = {
            m: own[m] if m in own else int(self.recognisers[m].num_features) for m in modalities
        }
        self.policy = MultiModalPolicy(
            dims,
            hidden_size=preset.policy_hidden,
            mlp_sizes=preset.policy_mlp,
            recurrent=recurrent,
            tau=preset.tau_start,
        )
        self.fusion = MaskedLateFusion(modalities)
        # Used only to pre-train the policy's own extractors as unimodal classifiers (stage 0),
        # in place of the ImageNet initialisation of the paper's MobileNetV2s; never at
        # inference.
        self.policy_heads = nn.ModuleDict({m: nn.Linear(d, num_classes) for m, d in own.items()})

    def features_and_logits(self, batch: Mapping[str, Tensor]) -> FeaturesAndLogits:
        """The policy's features of every segment, and the shared recognisers' logits.

        All segments go through each network in one call. A shared modality's recogniser runs
        once, split into its ``forward_features`` and ``forward_head``: the pooled features go
        to the policy, detached (the policy reads them; its losses do not train the
        recogniser), and the logits are returned for :meth:`recognise`.

        Args:
            batch: policy inputs ``{MODALITIES[m].policy_key: (B, T, ...)}`` (for a shared
                modality that is its recognition input ``batch[m]``).

        Returns:
            :class:`FeaturesAndLogits`: features ``{m: (B, T, D_m)}`` in modality order, and
            ``{m: (B, T, C)}`` logits for the shared modalities.
        """
        features, logits = {}, {}
        for m in self.modalities:
            x = batch[MODALITIES[m].policy_key]
            rows, segments = x.flatten(0, 1), x.shape[:2]
            if m in self.shared:
                recogniser = self.recognisers[m]
                pooled = recogniser.forward_features(rows)
                logits[m] = recogniser.forward_head(pooled).unflatten(0, segments)
                features[m] = pooled.detach().unflatten(0, segments)
            else:
                features[m] = self.policy_features[m](rows).unflatten(0, segments)
        return FeaturesAndLogits(features, logits)

    def features(self, batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """The policy's features of every segment, all segments in one call per extractor.

        With shared modalities this runs their recognisers; :meth:`features_and_logits`
        returns their logits as well, for :meth:`recognise` to reuse.

        Args:
            batch: policy inputs ``{MODALITIES[m].policy_key: (B, T, ...)}``.

        Returns:
            ``{m: (B, T, D_m)}`` in modality order.
        """
        return self.features_and_logits(batch).features

    def decide(
        self, batch: Mapping[str, Tensor], *, generator: torch.Generator | None = None
    ) -> Tensor:
        """Run the policy on a batch: ``(B, T, M)`` decisions (sampled in training).

        Args:
            batch: policy inputs ``{MODALITIES[m].policy_key: (B, T, ...)}``.
            generator: draws the gates' noise in training (None: the global RNG).

        Returns:
            ``(B, T, M)`` decisions in ``{0, 1}`` with straight-through gradients; in ``eval()``
            a modality is on where its on-logit exceeds the policy's threshold.
        """
        decisions: Tensor = self.policy(self.features(batch), generator=generator).decisions
        return decisions

    def recognise(
        self,
        batch: Mapping[str, Tensor],
        decisions: Tensor,
        route: bool,
        logits: Mapping[str, Tensor] | None = None,
    ) -> Tensor:
        """Per-segment, per-modality logits.

        Args:
            batch: recognition inputs ``{m: (B, T, ...)}``.
            decisions: ``(B, T, M)``; with ``route`` only the selected segments are computed.
            route: skip unselected segments (evaluation, fine-tuning); otherwise every segment
                is computed, so that the straight-through gradient of a skipped decision,
                ``weight * logits``, is not zero (AdaMML §3.2; see ``run_selected``).
            logits: ``{m: (B, T, C)}`` logits already computed for every segment (the shared
                modalities', from :meth:`features_and_logits`): used instead of running those
                recognisers, and routed by the same rule (zero where skipped). Without them
                every recogniser, shared or not, runs on its selected segments.

        Returns:
            ``(B, T, M, C)`` logits, zero at skipped segments when routed.
        """
        logits = {} if logits is None else logits
        modules = {m: _ALREADY_COMPUTED if m in logits else r for m, r in self.recognisers.items()}
        inputs = {m: logits[m] if m in logits else batch[m] for m in self.modalities}
        return route_segments(modules, inputs, decisions, self.modalities, route=route)

    def unimodal(self, batch: Mapping[str, Tensor]) -> Tensor:
        """Video logits of every network alone, for unimodal pre-training (stage 0).

        Args:
            batch: ``{m: (B, T, ...)}`` recognition and policy inputs.

        Returns:
            ``(B, M + P, C)``: the TSN average (AdaMML §4.1) of each recogniser's segment
            logits, then of each of the P own policy extractors' (:attr:`policy_features`; a
            shared modality has none) through its auxiliary head, in modality order.
        """
        videos = []
        for m, recogniser in self.recognisers.items():
            x = batch[m]
            videos.append(recogniser(x.flatten(0, 1)).unflatten(0, x.shape[:2]).mean(1))
        for m, extractor in self.policy_features.items():
            x = batch[MODALITIES[m].policy_key]
            features = extractor(x.flatten(0, 1)).unflatten(0, x.shape[:2])
            videos.append(self.policy_heads[m](features).mean(1))
        return torch.stack(videos, dim=1)

    def forward(
        self,
        batch: Mapping[str, Tensor],
        decisions: Tensor | None = None,
        route: bool = False,
        unimodal: bool = False,
        generator: torch.Generator | None = None,
    ) -> Any:
        """Classify a batch of videos.

        Args:
            batch: ``{m: (B, T, ...)}`` recognition inputs and the policy inputs.
            decisions: ``(B, T, M)`` fixed decisions (warm-up: all ones; baselines), or None to
                let the policy decide.
            route: run each backbone on its selected segments only.
            unimodal: return :meth:`unimodal` instead (so that DDP sees pre-training too).
            generator: the gates' noise when the policy decides in training.

        Returns:
            :class:`AdaMMLOutput`, or the ``(B, M + P, C)`` tensor of :meth:`unimodal`.
        """
        if unimodal:
            return self.unimodal(batch)
        computed: dict[str, Tensor] = {}
        if decisions is None:
            features, computed = self.features_and_logits(batch)
            decisions = self.policy(features, generator=generator).decisions
        segment_logits = self.recognise(batch, decisions, route, computed)
        return AdaMMLOutput(self.fusion(segment_logits, decisions), segment_logits, decisions)


# Stands in for a recogniser whose logits are already computed, so that routing treats them
# by the one rule (zero where skipped) without running anything.
_ALREADY_COMPUTED = nn.Identity()


def recognition_backbone(modality: str, num_classes: int, preset: Preset) -> nn.Module:
    """The recognition network of one modality: TSN ResNet for visual inputs, MobileNetV2
    for the audio spectrogram (AdaMML §4.1).

    Args:
        modality: ``rgb``, ``rgbdiff``, ``flow`` or ``audio``.
        num_classes: classifier size.
        preset: chooses the ResNet depth and the MobileNetV2 width.

    Returns:
        ``(N, F, C, H, W)`` or ``(N, 1, n_freq, n_time)`` → ``(N, num_classes)``.
    """
    channels = MODALITIES[modality].channels
    if not MODALITIES[modality].visual:
        return mobilenet_v2(channels, num_classes, width_mult=preset.audio_width,
                            temporal_pool=False)  # fmt: skip
    return VISUAL_BACKBONES[preset.visual_backbone](channels, num_classes)


def all_on(batch: Mapping[str, Tensor], model: AdaMML) -> Tensor:
    """``(B, T, M)`` ones: every modality on every segment (warm-up, all-modality baseline)."""
    x = batch[model.modalities[0]]
    return x.new_ones(*x.shape[:2], len(model.modalities))


def only(batch: Mapping[str, Tensor], model: AdaMML, modality: str) -> Tensor:
    """``(B, T, M)`` decisions that use ``modality`` alone (unimodal baselines)."""
    decisions = all_on(batch, model).zero_()
    decisions[..., model.modalities.index(modality)] = 1.0
    return decisions


def example_batch(config: Any, modalities: Sequence[str], segments: int = 1) -> dict[str, Tensor]:
    """Zero inputs of one video with the shapes the data pipeline produces (for MAC counts).

    Args:
        config: the example's ``DataConfig`` (crop, policy and spectrogram sizes).
        modalities: recognition modalities.
        segments: T.

    Returns:
        ``{m: (1, T, ...)}`` for every modality and every policy input it needs.
    """
    frames, size = config.frames_per_segment, config.crop_size
    policy_frames, policy_size = config.policy_frames, config.policy_size
    batch = {}
    for m in modalities:
        modality = MODALITIES[m]
        if not modality.visual:
            batch[m] = torch.zeros(1, segments, modality.channels, config.n_freq, config.n_time)
            continue
        batch[m] = torch.zeros(1, segments, frames, modality.channels, size, size)
        if modality.policy_source is not None:
            channels = MODALITIES[modality.policy_source].channels
            batch[modality.policy_key] = torch.zeros(
                1, segments, policy_frames, channels, policy_size, policy_size
            )
    return batch


def measure_costs(model: AdaMML, batch: Mapping[str, Tensor]) -> ModalityCosts:
    """Measure the MACs of one segment of every network with :func:`adagate.flops.count_macs`.

    Args:
        model: the AdaMML model.
        batch: inputs ``{m: (B, T, ...)}``; only the first segment of the first video is used.

    Returns:
        :class:`adagate.flops.ModalityCosts`: per-modality recognition MACs; the policy's own
        MACs per segment (its own feature extractors + MLP/LSTM + heads); and as ``shared``
        the modalities whose recogniser the policy reads, paid on every segment.
    """
    one = {key: value[:1, :1] for key, value in batch.items() if isinstance(value, Tensor)}
    like = one[model.modalities[0]]
    features = {m: like.new_zeros(1, 1, d) for m, d in model.policy.feature_dims.items()}
    extractors = {f"{m} features": f for m, f in model.policy_features.items()}
    inputs = {f"{m} features": one[MODALITIES[m].policy_key][0] for m in model.policy_features}
    return ModalityCosts.measure(
        dict(model.recognisers.items()),
        {m: one[m][0] for m in model.modalities},
        policy={**extractors, "policy": model.policy},
        policy_inputs={**inputs, "policy": features},
        shared=model.shared,
    )
