"""A small ResNet whose residual blocks are skipped per image, and the policy that decides.

BlockDrop-style (Wu et al., CVPR 2018): a cheap policy looks at a thumbnail of the image once and
emits one keep/skip decision per residual block; the ResNet then runs with those decisions. We
chose this over SkipNet's on-the-fly gates (a gate before each block, fed by the previous block's
output) because all decisions are known before the backbone starts, so each block can gather
exactly the images that need it and run on those alone (``adagate.routing.run_selected``); with
gates computed on the fly, the policy would also have to be interleaved with the backbone.

Decisions are straight-through Gumbel gates (``adagate.gates.GumbelGate``), trained end to end
with the classifier, as AdaMML §3.2 trains its modality decisions, instead of BlockDrop's
REINFORCE.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

from adagate.gates import GumbelGate
from adagate.routing import run_selected


def _conv_bn(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, bias=False),
        nn.BatchNorm2d(out_channels),
    )


class GatedBlock(nn.Module):
    """A ResNet basic block whose residual branch runs only where its gate is on.

    ``out = relu(shortcut(x) + gate · residual(x))``. With an identity shortcut a skipped image
    passes through unchanged (``x`` is already non-negative); a downsampling block keeps its
    1×1 projection shortcut, as in BlockDrop, so the shapes of later blocks stay fixed.

    Training computes the residual for every image and multiplies it by the straight-through
    gate, so the gate gets a gradient for skipped images too (the loss's view of "what if this
    block had run"). Evaluation routes: the residual runs on the kept images only.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.residual = nn.Sequential(
            _conv_bn(in_channels, out_channels, 3, stride),
            nn.ReLU(inplace=True),
            _conv_bn(out_channels, out_channels, 3),
        )
        self.shortcut: nn.Module = (
            nn.Identity()
            if stride == 1 and in_channels == out_channels
            else _conv_bn(in_channels, out_channels, 1, stride)
        )

    def forward(self, x: Tensor, gate: Tensor | None = None) -> Tensor:
        """x: (N, C, H, W); gate: (N,) in {0, 1} (straight-through) or None for "run all"."""
        if gate is None:
            residual = self.residual(x)
        elif self.training:
            residual = gate[:, None, None, None] * self.residual(x)
        else:
            residual = run_selected(self.residual, x, gate)
        return F.relu(self.shortcut(x) + residual)


class SkipResNet(nn.Module):
    """CIFAR-style ResNet: a 3×3 stem, stages of :class:`GatedBlock`, average pool, linear.

    Args:
        num_classes: output classes.
        widths: channels per stage; every stage after the first halves the resolution.
        blocks_per_stage: residual blocks per stage; ``len(widths) * blocks_per_stage`` gates.
    """

    def __init__(
        self, num_classes: int, widths: tuple[int, ...] = (16, 32, 64), blocks_per_stage: int = 2
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(_conv_bn(3, widths[0], 3), nn.ReLU(inplace=True))
        blocks = []
        in_channels = widths[0]
        for stage, width in enumerate(widths):
            for index in range(blocks_per_stage):
                stride = 2 if stage > 0 and index == 0 else 1
                blocks.append(GatedBlock(in_channels, width, stride))
                in_channels = width
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(in_channels, num_classes)
        )

    def forward(self, images: Tensor, decisions: Tensor | None = None) -> Tensor:
        """images: (N, 3, H, W), decisions: (N, K) or None (dense) → logits (N, num_classes)."""
        x = self.stem(images)
        for k, block in enumerate(self.blocks):
            x = block(x, None if decisions is None else decisions[:, k])
        logits: Tensor = self.head(x)
        return logits


class BlockPolicy(nn.Module):
    """One keep/skip decision per residual block, from an area-downsampled thumbnail.

    Args:
        num_blocks: K, the number of gated blocks.
        resolution: side of the thumbnail the policy sees.
        width: channels of the policy's two convolutions.
        tau: initial Gumbel temperature (anneal with ``adagate.schedules.set_tau``).
    """

    def __init__(
        self, num_blocks: int, resolution: int = 8, width: int = 16, tau: float = 5.0
    ) -> None:
        super().__init__()
        # BatchNorm: the cue that matters (here, colour) may be a small share of the thumbnail's
        # variance; unnormalised, the policy did not learn it in 100 steps. Max pool: a cue
        # carried by one small object must not be averaged away with the background.
        self.features = nn.Sequential(
            nn.AdaptiveAvgPool2d(resolution),
            _conv_bn(3, width, 3),
            nn.ReLU(inplace=True),
            _conv_bn(width, 2 * width, 3, stride=2),
            nn.ReLU(inplace=True),
            nn.AdaptiveMaxPool2d(1),
            nn.Flatten(),
        )
        self.logits = nn.Linear(2 * width, num_blocks)
        # Start with every block on (P(keep) ≈ 0.95): the backbone was pretrained dense.
        nn.init.zeros_(self.logits.weight)
        nn.init.constant_(self.logits.bias, 3.0)
        self.gate = GumbelGate(tau=tau)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """images: (N, 3, H, W) → (decisions (N, K) in {0, 1}, logits (N, K))."""
        logits = self.logits(self.features(images))
        decisions: Tensor = self.gate(logits)
        return decisions, logits


class BlockDropNet(nn.Module):
    """Policy + backbone: ``forward(images) -> (logits (N, C), decisions (N, K))``."""

    def __init__(self, backbone: SkipResNet, policy: BlockPolicy) -> None:
        super().__init__()
        self.backbone = backbone
        self.policy = policy

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        decisions, _ = self.policy(images)
        return self.backbone(images, decisions), decisions
