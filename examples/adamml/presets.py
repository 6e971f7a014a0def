"""Every size and hyper-parameter of the AdaMML example, one :class:`Preset` each: ``paper``
(AdaMML §4.1), ``demo`` (two CPU cores, minutes) and ``tiny`` (tests and smoke runs)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Literal

from modalities import MODALITIES


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
            own audio extractor (1: the spectrogram as is); unused when audio is shared.
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
        policy_extractor: the policy's own feature extractors: ``mobilenet_v2`` (AdaMML §4.1,
            at ``policy_width``) or ``conv`` (:class:`adagate.backbones.PlainConvNet` with
            ``policy_conv_widths``: the same or fewer MACs, several times less CPU time; see
            ``benchmarks/bench_policy.py``).
        policy_conv_widths: channels of the ``conv`` extractor's stride-2 layers.
        shared_policy_features: modalities whose policy features are their recogniser's
            pooled features (one pass gives features and logits), for a modality whose own
            extractor would be the same network on the same input: the recogniser then runs
            on every segment and its gate only decides whether its logits enter the fusion.
            Only modalities whose policy reads the recognition input itself (audio) qualify.
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
    policy_extractor: Literal["mobilenet_v2", "conv"] = "mobilenet_v2"
    policy_conv_widths: tuple[int, ...] = (32, 64, 128, 256)
    shared_policy_features: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.policy_extractor not in ("mobilenet_v2", "conv"):
            raise ValueError(
                "policy_extractor: expected 'mobilenet_v2' or 'conv', "
                f"got {self.policy_extractor!r}"
            )
        shareable = [m for m, modality in MODALITIES.items() if modality.policy_source is None]
        shared = list(self.shared_policy_features)
        if len(set(shared)) != len(shared) or not set(shared) <= set(shareable):
            # A visual modality's policy sees a smaller clip than its recogniser: not the same
            # input, so its recogniser's features are not what the policy would compute.
            raise ValueError(
                f"shared_policy_features: expected distinct names from {shareable} (modalities "
                f"whose policy reads the recognition input itself), got {shared}"
            )


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
        policy_extractor="mobilenet_v2",
        policy_conv_widths=(24, 48, 96, 192, 384),
        # The policy's audio MobileNetV2 is the recogniser's network on the same spectrogram
        # (AdaMML §4.1): read the recogniser's features instead of computing them twice.
        shared_policy_features=("audio",),
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
        joint_epochs=10,
        finetune_epochs=2,
        batch_size=8,
        lr=0.01,
        pretrain_lr=0.01,
        policy_lr=5e-3,
        policy_extractor="mobilenet_v2",
        policy_conv_widths=(12, 24, 48, 96),
        # Not the same network here (the policy's was a width-0.25 MobileNetV2 on a pooled
        # spectrogram), but audio is selected on nearly every segment and the own extractor
        # took 0.8x the audio recogniser's time on CPU: sharing is cheaper in wall time.
        shared_policy_features=("audio",),
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
        policy_extractor="mobilenet_v2",
        policy_conv_widths=(8, 16, 32, 64),
    ),
}
