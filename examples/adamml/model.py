"""AdaMML assembled from adagate parts: policy + per-modality recognisers + routing + fusion.

One segment of one video goes through (AdaMML §3.1, Figure 2):

1. a cheap feature extractor per modality (a MobileNetV2 on the low-resolution policy input);
2. :class:`adagate.policy.MultiModalPolicy`, which decides which modalities to use;
3. the recognition backbone of every selected modality, called through
   :func:`adagate.routing.run_selected` so that a skipped segment costs nothing;
4. :class:`adagate.fusion.MaskedLateFusion`, which averages the kept segment predictions.

Presets (:data:`PRESETS`) hold every size and hyper-parameter; ``paper`` is AdaMML §4.1,
``demo`` is small enough to train on two CPU cores in minutes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from modalities import MODALITIES, parse_modalities
from torch import Tensor, nn

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


@dataclasses.dataclass(frozen=True)
class Preset:
    """Every size and hyper-parameter of one AdaMML configuration.

    Attributes:
        name: preset name.
        data: overrides of the example's ``DataConfig`` preset of the same name
            (``DataConfig.paper()`` / ``DataConfig.demo()``).
        visual_backbone: TSN ResNet for RGB / RGBDiff / flow (``resnet18|34|50``).
        audio_width: width multiplier of the audio MobileNetV2 recogniser.
        policy_width: width multiplier of the policy's MobileNetV2 feature extractors.
        policy_audio_pool: average-pool factor applied to the spectrogram before the policy's
            audio extractor (1: the spectrogram as is).
        policy_mlp: widths of the policy's joint MLP (paper: two 2048-wide layers).
        policy_hidden: LSTM hidden size (paper: 256).
        lambdas: cost weight λ per modality in Eq. 4; modalities not listed get the ratio of
            their measured MACs to the most expensive modality's (AdaMML §4.1: "λ_k is set to
            the ratio of the computational load between modalities").
        gamma: penalty γ for a wrong prediction in Eq. 4 (paper: 10).
        tau_start: initial Gumbel temperature (paper: 5).
        tau_rate: per-epoch decay of the temperature (paper: 0.965).
        pretrain_epochs: unimodal pre-training of each backbone (0 skips it).
        warmup_epochs: recognisers trained with every modality on, policy fixed (paper: 5).
        joint_epochs: policy and recognisers trained together (paper: 20).
        finetune_epochs: recognisers fine-tuned under the frozen policy (paper: 10).
        batch_size: videos per batch (per process).
        lr: SGD learning rate of the recognisers (paper: 1e-3, momentum 0.9, wd 1e-4).
        pretrain_lr: SGD learning rate of the unimodal pre-training.
        policy_lr: Adam learning rate of the policy.
    """

    name: str
    data: Mapping[str, Any]
    visual_backbone: str
    audio_width: float
    policy_width: float
    policy_audio_pool: int
    policy_mlp: tuple[int, ...]
    policy_hidden: int
    lambdas: Mapping[str, float]
    gamma: float
    tau_start: float
    tau_rate: float
    pretrain_epochs: int
    warmup_epochs: int
    joint_epochs: int
    finetune_epochs: int
    batch_size: int
    lr: float
    pretrain_lr: float
    policy_lr: float


PRESETS = {
    "paper": Preset(
        name="paper",
        data={},
        visual_backbone="resnet50",
        audio_width=1.0,
        policy_width=1.0,
        policy_audio_pool=1,
        policy_mlp=(2048, 2048),
        policy_hidden=256,
        lambdas={"rgb": 1.0, "audio": 0.05},
        gamma=10.0,
        tau_start=5.0,
        tau_rate=0.965,
        pretrain_epochs=0,
        warmup_epochs=5,
        joint_epochs=20,
        finetune_epochs=10,
        batch_size=8,
        lr=1e-3,
        pretrain_lr=1e-2,
        policy_lr=1e-4,
    ),
    "demo": Preset(
        name="demo",
        data={},
        visual_backbone="resnet10",
        audio_width=0.5,
        policy_width=0.25,
        policy_audio_pool=2,
        policy_mlp=(256,),
        policy_hidden=64,
        lambdas={"rgb": 1.0, "audio": 0.05},
        gamma=10.0,
        tau_start=5.0,
        tau_rate=0.8,
        pretrain_epochs=2,
        warmup_epochs=1,
        joint_epochs=7,
        finetune_epochs=1,
        batch_size=8,
        lr=0.01,
        pretrain_lr=0.01,
        policy_lr=2e-3,
    ),
    # For tests and smoke runs: the demo models on 32² inputs, one epoch per stage.
    "tiny": Preset(
        name="tiny",
        data={
            "crop_size": 32,
            "resize_range": (32, 40),
            "test_resize": 32,
            "policy_size": 32,
            "frames_per_segment": 2,
            "num_segments": 2,
            "test_segments": 2,
        },
        visual_backbone="resnet18",
        audio_width=0.25,
        policy_width=0.25,
        policy_audio_pool=2,
        policy_mlp=(32,),
        policy_hidden=16,
        lambdas={"rgb": 1.0, "audio": 0.05},
        gamma=10.0,
        tau_start=5.0,
        tau_rate=0.8,
        pretrain_epochs=1,
        warmup_epochs=1,
        joint_epochs=1,
        finetune_epochs=1,
        batch_size=2,
        lr=0.01,
        pretrain_lr=0.01,
        policy_lr=1e-3,
    ),
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


class _PolicyFeatures(nn.Module):
    """A MobileNetV2 feature extractor for one modality's policy input, segment by segment."""

    def __init__(self, in_channels: int, width: float, pool: int) -> None:
        super().__init__()
        self.pool = pool
        self.net = mobilenet_v2(in_channels, None, width_mult=width)

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
        self.recognisers = nn.ModuleDict(
            {m: recognition_backbone(m, num_classes, preset) for m in modalities}
        )
        self.policy_features = nn.ModuleDict(
            {
                m: _PolicyFeatures(
                    MODALITIES[MODALITIES[m].policy_source or m].channels,
                    preset.policy_width,
                    preset.policy_audio_pool if m == "audio" else 1,
                )
                for m in modalities
            }
        )
        dims = {m: int(f.net.num_features) for m, f in self.policy_features.items()}
        self.policy = MultiModalPolicy(
            dims,
            hidden_size=preset.policy_hidden,
            mlp_sizes=preset.policy_mlp,
            recurrent=recurrent,
            tau=preset.tau_start,
        )
        self.fusion = MaskedLateFusion(modalities)
        # Used only to pre-train the policy's extractors as unimodal classifiers (stage 0), in
        # place of the ImageNet initialisation of the paper's MobileNetV2s; never at inference.
        self.policy_heads = nn.ModuleDict(
            {m: nn.Linear(d, num_classes) for m, d in dims.items()}
        )

    def decide(self, batch: Mapping[str, Tensor]) -> Tensor:
        """Run the policy on a batch: ``(B, T, M)`` decisions (sampled in training).

        Args:
            batch: policy inputs ``{MODALITIES[m].policy_key: (B, T, ...)}``.

        Returns:
            ``(B, T, M)`` decisions in ``{0, 1}`` with straight-through gradients.
        """
        features = {}
        for m, extractor in self.policy_features.items():
            x = batch[MODALITIES[m].policy_key]
            features[m] = extractor(x.flatten(0, 1)).unflatten(0, x.shape[:2])
        decisions: Tensor = self.policy(features).decisions
        return decisions

    def recognise(self, batch: Mapping[str, Tensor], decisions: Tensor, route: bool) -> Tensor:
        """Per-segment, per-modality logits.

        Args:
            batch: recognition inputs ``{m: (B, T, ...)}``.
            decisions: ``(B, T, M)``; with ``route`` only the selected segments are computed.
            route: skip unselected segments (evaluation, fine-tuning); otherwise every segment
                is computed, so that the straight-through gradient of a skipped decision,
                ``weight * logits``, is not zero (AdaMML §3.2; see ``run_selected``).

        Returns:
            ``(B, T, M, C)`` logits, zero at skipped segments when routed.
        """
        return route_segments(
            self.recognisers, batch, decisions, list(self.recognisers), route=route
        )

    def unimodal(self, batch: Mapping[str, Tensor]) -> Tensor:
        """Video logits of every network alone, for unimodal pre-training (stage 0).

        Args:
            batch: ``{m: (B, T, ...)}`` recognition and policy inputs.

        Returns:
            ``(B, 2M, C)``: the TSN average (AdaMML §4.1) of each recogniser's segment logits,
            then of each policy extractor's through its auxiliary head, in modality order.
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
    ) -> Any:
        """Classify a batch of videos.

        Args:
            batch: ``{m: (B, T, ...)}`` recognition inputs and the policy inputs.
            decisions: ``(B, T, M)`` fixed decisions (warm-up: all ones; baselines), or None to
                let the policy decide.
            route: run each backbone on its selected segments only.
            unimodal: return :meth:`unimodal` instead (so that DDP sees pre-training too).

        Returns:
            :class:`AdaMMLOutput`, or the ``(B, 2M, C)`` tensor of :meth:`unimodal`.
        """
        if unimodal:
            return self.unimodal(batch)
        if decisions is None:
            decisions = self.decide(batch)
        segment_logits = self.recognise(batch, decisions, route)
        return AdaMMLOutput(self.fusion(segment_logits, decisions), segment_logits, decisions)


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
        :class:`adagate.flops.ModalityCosts`: per-modality recognition MACs, and the policy's
        (feature extractors + MLP/LSTM + heads) MACs per segment.
    """
    one = {key: value[:1, :1] for key, value in batch.items() if isinstance(value, Tensor)}
    return ModalityCosts.measure(
        dict(model.recognisers.items()),
        {m: one[m].flatten(0, 1) for m in model.modalities},
        policy={"policy": _PolicyOnly(model)},
        policy_inputs={"policy": one},
    )


class _PolicyOnly(nn.Module):
    def __init__(self, model: AdaMML) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: Mapping[str, Tensor]) -> Tensor:
        return self.model.decide(batch)
