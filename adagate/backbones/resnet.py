"""TSN-style ResNets with temporal max-pooling, the recognition networks of AdaMML (§4, app. B).

Module names are torchvision's (``conv1``, ``bn1``, ``layer1.0.conv1``, ``layer1.0.downsample.0``,
``fc``), so a torchvision ImageNet checkpoint loads key for key; see
:func:`adagate.backbones.load_torchvision_weights`.
"""

from __future__ import annotations

from typing import ClassVar

import torch.fx
from torch import Tensor, nn

from adagate.backbones._temporal import average_frames, flatten_segments, temporal_max_pool

# Opaque to torch.fx: they branch on shapes and frame counts, which a symbolic trace cannot, so a
# trace of the whole network (adagate.inference folds its stem's BatchNorm from one) keeps them
# as calls.
torch.fx.wrap("flatten_segments")
torch.fx.wrap("temporal_max_pool")
torch.fx.wrap("average_frames")

__all__ = ["BasicBlock", "Bottleneck", "TSNResNet", "tsn_resnet18", "tsn_resnet34", "tsn_resnet50"]


def _init_conv_bn(module: nn.Module) -> None:
    """torchvision's ResNet initialisation for every ``Conv2d`` and ``BatchNorm2d`` in
    ``module``: Kaiming-normal (fan-out, ReLU) convolutions, BatchNorm weight 1 and bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 3, stride=stride, padding=1, bias=False)


def _conv1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """ResNet-18/34 residual block: two 3x3 convolutions.

    Args:
        inplanes: input channels.
        planes: output channels.
        stride: stride of the first convolution.
        downsample: projection of the shortcut when shape changes, else ``None``.

    Shape:
        ``x: (B, inplanes, H, W)`` -> ``(B, planes, H / stride, W / stride)``.
    """

    expansion: ClassVar[int] = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        """Residual block forward; ``x: (B, C, H, W)``."""
        identity = x if self.downsample is None else self.downsample(x)
        out: Tensor = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = self.relu(out + identity)
        return out


class Bottleneck(nn.Module):
    """ResNet-50 bottleneck block, stride on the 3x3 convolution (torchvision's "v1.5").

    Args:
        inplanes: input channels.
        planes: bottleneck width; the block outputs ``4 * planes`` channels.
        stride: stride of the 3x3 convolution.
        downsample: projection of the shortcut when shape changes, else ``None``.

    Shape:
        ``x: (B, inplanes, H, W)`` -> ``(B, 4 * planes, H / stride, W / stride)``.
    """

    expansion: ClassVar[int] = 4

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv1x1(inplanes, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = _conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        """Residual block forward; ``x: (B, C, H, W)``."""
        identity = x if self.downsample is None else self.downsample(x)
        out: Tensor = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = self.relu(out + identity)
        return out


class TSNResNet(nn.Module):
    """A ResNet that runs on segments of frames and max-pools over time between stages.

    Frames are folded into the batch and go through 2D layers; with ``temporal_pool`` a temporal
    max-pool (kernel 3, stride 2, padding 1) sits at the start of stages 2, 3 and 4, so 8 frames
    become 4, 2 and 1 (AdaMML appendix B). Features left after stage 4 are averaged over space
    and over any remaining frames (the TSN consensus), then classified by ``fc``.

    Args:
        block: :class:`BasicBlock` (ResNet-18/34) or :class:`Bottleneck` (ResNet-50).
        layers: number of blocks in each of the four stages, e.g. ``(3, 4, 6, 3)``.
        in_channels: input channels per frame: 3 RGB, 10 optical flow (5 x/y pairs),
            15 RGB difference, 1 audio spectrogram.
        num_classes: size of ``fc``; ``None`` builds no classifier and returns features.
        temporal_pool: whether to pool over time between stages.

    Raises:
        ValueError: if ``layers`` does not have four positive entries, or ``in_channels`` or
            ``num_classes`` is not positive.

    Shape:
        ``x: (N, F, C, H, W)`` or ``(N, C, H, W)`` -> ``(N, num_classes)``, or ``(N, D)`` with
        ``D = 512 * block.expansion`` when ``num_classes`` is ``None``.

    Example:
        >>> net = TSNResNet(BasicBlock, (2, 2, 2, 2), num_classes=5)
        >>> net(torch.randn(2, 8, 3, 64, 64)).shape
        torch.Size([2, 5])
    """

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: tuple[int, int, int, int],
        in_channels: int = 3,
        num_classes: int | None = 1000,
        temporal_pool: bool = True,
    ) -> None:
        super().__init__()
        if len(layers) != 4 or min(layers) < 1:
            raise ValueError(f"layers: expected four positive block counts, got {layers}")
        if in_channels < 1:
            raise ValueError(f"in_channels: expected a positive int, got {in_channels}")
        if num_classes is not None and num_classes < 1:
            raise ValueError(f"num_classes: expected a positive int or None, got {num_classes}")
        self.in_channels = in_channels
        self.temporal_pool = temporal_pool
        self.num_features = 512 * block.expansion
        self.inplanes = 64
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, 64, layers[0])
        self.layer2 = self._make_layer(block, 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc: nn.Module = (
            nn.Identity() if num_classes is None else nn.Linear(self.num_features, num_classes)
        )
        _init_conv_bn(self)

    def _make_layer(
        self, block: type[BasicBlock | Bottleneck], planes: int, blocks: int, stride: int = 1
    ) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                _conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

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
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        for stage in (self.layer2, self.layer3, self.layer4):
            if self.temporal_pool:
                x, frames = temporal_max_pool(x, frames)
            x = stage(x)
        return average_frames(self.avgpool(x).flatten(1), frames)

    def forward_head(self, features: Tensor) -> Tensor:
        """The classifier on pooled features: ``forward(x) == forward_head(forward_features(x))``.

        Lets a caller that needs both the pooled features and the logits (a policy reading
        the recogniser's features) run the network once.

        Args:
            features: ``(N, D)`` from :meth:`forward_features`.

        Returns:
            ``(N, num_classes)`` logits, or ``features`` itself when ``num_classes`` is ``None``.
        """
        out: Tensor = self.fc(features)
        return out

    def forward(self, x: Tensor) -> Tensor:
        """Classify segments.

        Args:
            x: ``(N, F, C, H, W)`` or ``(N, C, H, W)``.

        Returns:
            ``(N, num_classes)`` logits, or ``(N, D)`` features when ``num_classes`` is ``None``.

        Raises:
            ValueError: if ``x`` has the wrong number of dims or channels.
        """
        return self.forward_head(self.forward_features(x))


def tsn_resnet18(
    in_channels: int = 3, num_classes: int | None = 1000, temporal_pool: bool = True
) -> TSNResNet:
    """TSN ResNet-18 (``D = 512``); arguments as in :class:`TSNResNet`.

    Args:
        in_channels: input channels per frame.
        num_classes: classifier size, or ``None`` for features.
        temporal_pool: max-pool over time before stages 2, 3 and 4.

    Returns:
        The network; ``x: (N, F, C, H, W)`` or ``(N, C, H, W)`` -> ``(N, num_classes)``.
    """
    return TSNResNet(BasicBlock, (2, 2, 2, 2), in_channels, num_classes, temporal_pool)


def tsn_resnet34(
    in_channels: int = 3, num_classes: int | None = 1000, temporal_pool: bool = True
) -> TSNResNet:
    """TSN ResNet-34 (``D = 512``); arguments as in :class:`TSNResNet`.

    Args:
        in_channels: input channels per frame.
        num_classes: classifier size, or ``None`` for features.
        temporal_pool: max-pool over time before stages 2, 3 and 4.

    Returns:
        The network; ``x: (N, F, C, H, W)`` or ``(N, C, H, W)`` -> ``(N, num_classes)``.
    """
    return TSNResNet(BasicBlock, (3, 4, 6, 3), in_channels, num_classes, temporal_pool)


def tsn_resnet50(
    in_channels: int = 3, num_classes: int | None = 1000, temporal_pool: bool = True
) -> TSNResNet:
    """TSN ResNet-50 (``D = 2048``), AdaMML's RGB and flow recogniser; see :class:`TSNResNet`.

    Args:
        in_channels: input channels per frame.
        num_classes: classifier size, or ``None`` for features.
        temporal_pool: max-pool over time before stages 2, 3 and 4.

    Returns:
        The network; ``x: (N, F, C, H, W)`` or ``(N, C, H, W)`` -> ``(N, num_classes)``.
    """
    return TSNResNet(Bottleneck, (3, 4, 6, 3), in_channels, num_classes, temporal_pool)
