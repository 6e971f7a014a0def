"""A plain stack of strided convolutions: a policy feature extractor that is cheap in wall time.

On CPU at the policy's small input sizes, MobileNetV2 is slow for its MACs: 50-odd layers of
small depthwise and 1x1 convolutions, each a pass over memory and a kernel launch with little
arithmetic. Four or five regular 3x3 convolutions with stride 2 reach the same or fewer MACs in
a fraction of the time (``benchmarks/bench_policy.py`` measures both; see docs/backbones.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.fx
from torch import Tensor, nn

from adagate.backbones._temporal import average_frames, flatten_segments
from adagate.backbones.resnet import _init_conv_bn

# Opaque to torch.fx, as in the other backbones: they branch on shapes.
torch.fx.wrap("flatten_segments")
torch.fx.wrap("average_frames")

__all__ = ["PlainConvNet"]


class PlainConvNet(nn.Module):
    """Stride-2 3x3 convolutions, each followed by BatchNorm and ReLU, then a global average.

    Frames are folded into the batch; the features are averaged over space and over the frames
    (the TSN consensus). There is no classifier: the network is a feature extractor.

    Args:
        in_channels: input channels per frame (3 RGB, 15 RGB difference, 1 spectrogram, ...).
        widths: output channels of each convolution, one stride-2 layer each, so an input of
            side ``S`` ends at side ``ceil(S / 2 ** len(widths))``.

    Raises:
        ValueError: if ``in_channels`` is not positive or ``widths`` is empty or holds a
            non-positive width.

    Shape:
        ``x: (N, F, C, H, W)`` or ``(N, C, H, W)`` -> ``(N, D)`` with ``D = widths[-1]``.

    Example:
        >>> net = PlainConvNet(3, widths=(24, 48, 96, 192, 384))
        >>> net(torch.randn(2, 4, 3, 160, 160)).shape
        torch.Size([2, 384])
    """

    def __init__(self, in_channels: int = 3, widths: Sequence[int] = (32, 64, 128, 256)) -> None:
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels: expected a positive int, got {in_channels}")
        widths = tuple(widths)
        if not widths or any(not isinstance(w, int) or w < 1 for w in widths):
            raise ValueError(f"widths: expected one or more positive ints, got {widths}")
        self.in_channels = in_channels
        self.num_features = widths[-1]
        layers: list[nn.Module] = []
        for width in widths:
            layers.append(
                nn.Sequential(
                    nn.Conv2d(in_channels, width, 3, stride=2, padding=1, bias=False),
                    nn.BatchNorm2d(width),
                    nn.ReLU(inplace=True),
                )
            )
            in_channels = width
        self.features = nn.Sequential(*layers)
        _init_conv_bn(self)

    def forward(self, x: Tensor) -> Tensor:
        """Pooled features.

        Args:
            x: ``(N, F, C, H, W)`` or ``(N, C, H, W)``.

        Returns:
            ``(N, D)``, averaged over space and frames.

        Raises:
            ValueError: if ``x`` has the wrong number of dims or channels.
        """
        x, frames = flatten_segments(x, self.in_channels)
        return average_frames(self.features(x).mean(dim=(2, 3)), frames)
