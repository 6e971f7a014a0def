"""MobileNetV2: AdaMML's audio recogniser and the policy's per-modality feature extractor (§4).

Module names are torchvision's (``features.0.0.weight``, ``features.1.conv.0.0.weight``, ...,
``classifier.1.weight``), so a torchvision ImageNet checkpoint loads key for key.
"""

from __future__ import annotations

import torch.fx
from torch import Tensor, nn

from adagate.backbones._temporal import average_frames, flatten_segments, temporal_max_pool

# Opaque to torch.fx: they branch on shapes and frame counts, which a symbolic trace cannot, so a
# trace of the whole network (adagate.inference folds its stem's BatchNorm from one) keeps them
# as calls.
torch.fx.wrap("flatten_segments")
torch.fx.wrap("temporal_max_pool")
torch.fx.wrap("average_frames")

__all__ = ["InvertedResidual", "MobileNetV2", "mobilenet_v2"]

# (expansion t, output channels c, repeats n, first stride s), MobileNetV2 paper Table 2.
_INVERTED_RESIDUAL_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)

# Indices into ``features`` that start with a temporal max-pool: the blocks that begin the 14x14
# and 7x7 stages (the fourth and fifth spatial reductions), the MobileNetV2 counterpart of the
# ResNet placement in AdaMML appendix B. This placement reproduces the paper's 0.375 GFLOPs for
# the 4 x 3 x 160 x 160 policy input (see docs/backbones.md).
_TEMPORAL_POOL_BEFORE = (7, 14)


def _make_divisible(value: float, divisor: int = 8) -> int:
    # torchvision's rounding of widths under width_mult; channels must match its checkpoints.
    new_value = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


def _conv_bn_relu6(
    in_planes: int, out_planes: int, kernel_size: int = 3, stride: int = 1, groups: int = 1
) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(
            in_planes,
            out_planes,
            kernel_size,
            stride,
            (kernel_size - 1) // 2,
            groups=groups,
            bias=False,
        ),
        nn.BatchNorm2d(out_planes),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expansion, 3x3 depthwise, linear 1x1 projection.

    Args:
        inp: input channels.
        oup: output channels.
        stride: depthwise stride, 1 or 2.
        expand_ratio: hidden width over ``inp``; 1 skips the expansion convolution.

    Shape:
        ``x: (B, inp, H, W)`` -> ``(B, oup, H / stride, W / stride)``; residual when the shape
        is kept.
    """

    def __init__(self, inp: int, oup: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = round(inp * expand_ratio)
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = (
            [] if expand_ratio == 1 else [_conv_bn_relu6(inp, hidden, kernel_size=1)]
        )
        layers += [
            _conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, oup, 1, bias=False),
            nn.BatchNorm2d(oup),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """Block forward; ``x: (B, C, H, W)``."""
        out: Tensor = self.conv(x)
        return x + out if self.use_res_connect else out


class MobileNetV2(nn.Module):
    """MobileNetV2 on single inputs or segments of frames, with optional temporal max-pooling.

    Frames are folded into the batch; with ``temporal_pool`` a temporal max-pool (kernel 3,
    stride 2, padding 1) starts the 14x14 and 7x7 stages, so the policy's 4 frames become 2 and 1
    (AdaMML appendix B: two temporal pools in the policy's MobileNetV2). Final features are
    averaged over space and over the remaining frames.

    Args:
        in_channels: input channels: 1 audio log-spectrogram, 3 RGB, 15 RGB difference, ...
        num_classes: classifier size; ``None`` builds no classifier and returns features.
        width_mult: channel multiplier, rounded to multiples of 8 as torchvision does.
        temporal_pool: whether to pool over time between stages.
        dropout: dropout before the classifier.

    Raises:
        ValueError: if ``in_channels`` or ``num_classes`` is not positive, or ``width_mult``
            is not positive.

    Shape:
        ``x: (N, F, C, H, W)`` or ``(N, C, H, W)`` -> ``(N, num_classes)``, or ``(N, D)`` with
        ``D = 1280`` (for ``width_mult <= 1``) when ``num_classes`` is ``None``.

    Example:
        >>> audio = MobileNetV2(in_channels=1, num_classes=None)
        >>> audio(torch.randn(2, 1, 256, 256)).shape
        torch.Size([2, 1280])
    """

    def __init__(
        self,
        in_channels: int = 3,
        num_classes: int | None = 1000,
        width_mult: float = 1.0,
        temporal_pool: bool = True,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels: expected a positive int, got {in_channels}")
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"num_classes: expected a positive int or None, got {num_classes}")
        if width_mult <= 0:
            raise ValueError(f"width_mult: expected a positive float, got {width_mult}")
        self.in_channels = in_channels
        self.temporal_pool = temporal_pool
        input_channel = _make_divisible(32 * width_mult)
        self.num_features = _make_divisible(1280 * max(1.0, width_mult))
        features: list[nn.Module] = [_conv_bn_relu6(in_channels, input_channel, stride=2)]
        for t, c, n, s in _INVERTED_RESIDUAL_SETTING:
            output_channel = _make_divisible(c * width_mult)
            for i in range(n):
                features.append(
                    InvertedResidual(input_channel, output_channel, s if i == 0 else 1, t)
                )
                input_channel = output_channel
        features.append(_conv_bn_relu6(input_channel, self.num_features, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.classifier: nn.Module = (
            nn.Identity()
            if num_classes is None
            else nn.Sequential(nn.Dropout(dropout), nn.Linear(self.num_features, num_classes))
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        """Pooled features before the classifier.

        Args:
            x: ``(N, F, C, H, W)`` or ``(N, C, H, W)``.

        Returns:
            ``(N, D)``, averaged over space and over the frames left after temporal pooling.

        Raises:
            ValueError: if ``x`` has the wrong number of dims or channels.
        """
        x, frames = flatten_segments(x, self.in_channels)
        for index, layer in enumerate(self.features):
            if self.temporal_pool and index in _TEMPORAL_POOL_BEFORE:
                x, frames = temporal_max_pool(x, frames)
            x = layer(x)
        return average_frames(x.mean(dim=(2, 3)), frames)

    def forward_head(self, features: Tensor) -> Tensor:
        """The classifier on pooled features: ``forward(x) == forward_head(forward_features(x))``.

        Lets a caller that needs both the pooled features and the logits (a policy reading
        the recogniser's features) run the network once.

        Args:
            features: ``(N, D)`` from :meth:`forward_features`.

        Returns:
            ``(N, num_classes)`` logits, or ``features`` itself when ``num_classes`` is ``None``.
        """
        out: Tensor = self.classifier(features)
        return out

    def forward(self, x: Tensor) -> Tensor:
        """Classify inputs.

        Args:
            x: ``(N, F, C, H, W)`` or ``(N, C, H, W)``.

        Returns:
            ``(N, num_classes)`` logits, or ``(N, D)`` features when ``num_classes`` is ``None``.

        Raises:
            ValueError: if ``x`` has the wrong number of dims or channels.
        """
        return self.forward_head(self.forward_features(x))


def mobilenet_v2(
    in_channels: int = 3,
    num_classes: int | None = 1000,
    width_mult: float = 1.0,
    temporal_pool: bool = True,
    dropout: float = 0.2,
) -> MobileNetV2:
    """MobileNetV2 builder; AdaMML uses it for audio (``in_channels=1``) and in the policy.

    Args:
        in_channels: input channels (1 audio spectrogram, 3 RGB, 15 RGB difference).
        num_classes: classifier size (1000, torchvision's ImageNet head, by default), or
            ``None`` for ``(N, 1280)`` features, as the policy's feature extractors use it.
        width_mult: channel multiplier.
        temporal_pool: max-pool over time before the 14x14 and 7x7 stages.
        dropout: dropout before the classifier.

    Returns:
        The network; ``x: (N, F, C, H, W)`` or ``(N, C, H, W)`` -> ``(N, num_classes)``.

    Example:
        >>> mobilenet_v2(15, None)(torch.randn(1, 4, 15, 64, 64)).shape
        torch.Size([1, 1280])
    """
    return MobileNetV2(in_channels, num_classes, width_mult, temporal_pool, dropout)
