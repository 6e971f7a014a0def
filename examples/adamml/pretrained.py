"""ImageNet initialisation of AdaMML's networks from torchvision's files, via torch.hub's cache.

AdaMML §4.1 starts every backbone from ImageNet. torchvision publishes those weights for
ResNet-18/34/50 and for MobileNetV2 at width 1.0; :func:`load_imagenet` recognises which of a
model's networks match one of them, fetches the files with ``torch.hub.load_state_dict_from_url``
(a download when online, the cached file in ``$TORCH_HOME/hub/checkpoints/`` when offline) and
loads them with :func:`adagate.backbones.load_torchvision_weights`, inflating the first
convolution to RGBDiff's 15, flow's 10 or audio's 1 input channel(s).

    >>> sources = load_imagenet({"recognisers.rgb": model.recognisers["rgb"]})  # doctest: +SKIP
    recognisers.rgb: ImageNet ResNet-50 from ~/.cache/torch/hub/checkpoints/resnet50-0676ba61.pth
"""

from __future__ import annotations

import functools
import os
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from adagate.backbones import load_torchvision_weights
from adagate.backbones.mobilenet import MobileNetV2
from adagate.backbones.resnet import BasicBlock, Bottleneck, TSNResNet

__all__ = ["IMAGENET_URLS", "MissingCheckpointError", "imagenet_url", "load_imagenet"]

# torchvision's IMAGENET1K_V1 weights (ResNet*_Weights, MobileNet_V2_Weights): the ImageNet
# models of the paper's time, not the later IMAGENET1K_V2 recipe. The file names are
# torchvision's own, so a cache filled by torchvision serves us too and vice versa.
IMAGENET_URLS: dict[str, str] = {
    "ResNet-18": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    "ResNet-34": "https://download.pytorch.org/models/resnet34-b627a593.pth",
    "ResNet-50": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    "MobileNetV2": "https://download.pytorch.org/models/mobilenet_v2-b0353104.pth",
}

_PUBLISHED_RESNETS: dict[tuple[type[nn.Module], tuple[int, ...]], str] = {
    (BasicBlock, (2, 2, 2, 2)): "ResNet-18",
    (BasicBlock, (3, 4, 6, 3)): "ResNet-34",
    (Bottleneck, (3, 4, 6, 3)): "ResNet-50",
}


class MissingCheckpointError(FileNotFoundError):
    """An ImageNet checkpoint is neither in torch.hub's cache nor downloadable."""


def _conv_widths(network: nn.Module) -> tuple[int, ...]:
    return tuple(m.out_channels for m in network.modules() if isinstance(m, nn.Conv2d))


@functools.cache
def _mobilenet_v2_widths() -> tuple[int, ...]:
    # The meta device builds the width-1.0 reference without allocating its weights.
    with torch.device("meta"):
        return _conv_widths(MobileNetV2(in_channels=3, num_classes=None, width_mult=1.0))


def _describe(network: nn.Module) -> tuple[str, str | None]:
    """Name ``network``'s architecture and the key of its ImageNet checkpoint, if published."""
    if isinstance(network, TSNResNet):
        block = type(network.layer1[0])
        stages = (network.layer1, network.layer2, network.layer3, network.layer4)
        layers = tuple(len(stage) for stage in stages)
        published = _PUBLISHED_RESNETS.get((block, layers))
        if published is not None:
            return published, published
        convs_per_block = 3 if block is Bottleneck else 2
        depth = convs_per_block * sum(layers) + 2
        return f"ResNet-{depth}", None
    if isinstance(network, MobileNetV2):
        widths = _conv_widths(network)
        if widths == _mobilenet_v2_widths():
            return "MobileNetV2 width 1.0", "MobileNetV2"
        # The last block projects to round8(320 * width_mult) channels: the width, to 1/40.
        width = widths[-2] / 320
        return f"MobileNetV2 width {width:g}", None
    return type(network).__name__, None


def imagenet_url(network: nn.Module) -> str | None:
    """The URL of torchvision's ImageNet checkpoint that fits ``network``, or ``None``.

    A :class:`~adagate.backbones.resnet.TSNResNet` fits by block type and blocks per stage
    (ResNet-18, -34, -50), a :class:`~adagate.backbones.mobilenet.MobileNetV2` when every
    convolution has width 1.0's output channels. Input channels and classifier size do not
    matter: the first convolution is inflated and the classifier is kept.

    Args:
        network: any module.

    Returns:
        One of :data:`IMAGENET_URLS`' values, or ``None``.
    """
    key = _describe(network)[1]
    return None if key is None else IMAGENET_URLS[key]


def _fetch(url: str, folder: str, progress: bool) -> tuple[dict[str, Tensor] | None, str]:
    """Read ``url``'s checkpoint from ``folder``, downloading it first when it is missing.

    Returns the state dict, or ``None`` and why the file could not be had.
    """
    try:
        # check_hash as torchvision does: a download must match the hash in its file name.
        state = torch.hub.load_state_dict_from_url(
            url,
            model_dir=folder,
            map_location="cpu",
            progress=progress,
            check_hash=True,
            weights_only=True,
        )
    except OSError as err:
        # URLError, HTTPError, socket timeouts and refused connections are all OSErrors.
        return None, f"{type(err).__name__}: {err}"
    return state, ""


def load_imagenet(
    networks: Mapping[str, nn.Module],
    *,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> dict[str, str]:
    """Load torchvision's ImageNet weights into every network that has them.

    Every checkpoint needed is fetched before any network is touched, so an offline run with
    a file missing stops before training with one error listing each missing file. Networks
    matching no published checkpoint (:func:`imagenet_url` is ``None``: the demo's ResNet-10,
    MobileNetV2 at width 0.25 or 0.5, any other module) keep their weights and are named in
    one warning. Classifiers are never loaded (``skip_head=True``): ours have other classes.

    Args:
        networks: name (e.g. ``"recognisers.flow"``, ``"policy_features.rgb"``) to network.
        progress: show torch.hub's download progress bar.
        log: called with one line per network loaded.

    Returns:
        Name to the source of its weights, for the run's ``config.json``: the checkpoint's
        path, or ``"random (no ImageNet weights for <architecture>)"``.

    Raises:
        ValueError: if a value of ``networks`` is not an ``nn.Module``.
        MissingCheckpointError: if a needed checkpoint is not cached and cannot be downloaded;
            the message names each file, its URL and the folder to put it in.

    Shape:
        checkpoint ``conv1.weight: (64, 3, 7, 7)`` → ``(64, C_in, 7, 7)`` for a ResNet taking
        ``C_in`` channels; MobileNetV2's ``features.0.0.weight: (32, 3, 3, 3)`` likewise.
    """
    for name, network in networks.items():
        if not isinstance(network, nn.Module):
            raise ValueError(
                f"networks[{name!r}]: expected an nn.Module, got {type(network).__name__}"
            )
    described = {name: _describe(network) for name, network in networks.items()}
    needed = sorted({key for _, key in described.values() if key is not None})

    folder = os.path.join(torch.hub.get_dir(), "checkpoints")
    states: dict[str, dict[str, Tensor]] = {}
    missing: list[str] = []
    for key in needed:
        url = IMAGENET_URLS[key]
        state, reason = _fetch(url, folder, progress)
        if state is None:
            users = ", ".join(name for name, (_, k) in described.items() if k == key)
            missing.append(f"  {url.rsplit('/', 1)[1]}  from {url}  (for {users}; {reason})")
        else:
            states[key] = state
    if missing:
        raise MissingCheckpointError(
            f"ImageNet weights not in torch.hub's cache and not downloadable (offline?). "
            f"Put each file in {folder}:\n" + "\n".join(missing)
        )

    sources: dict[str, str] = {}
    without: list[str] = []
    for name, network in networks.items():
        architecture, checkpoint = described[name]
        if checkpoint is None:
            sources[name] = f"random (no ImageNet weights for {architecture})"
            without.append(f"{name} ({architecture})")
            continue
        load_torchvision_weights(network, states[checkpoint], inflate="mean", skip_head=True)
        path = os.path.join(folder, IMAGENET_URLS[checkpoint].rsplit("/", 1)[1])
        sources[name] = path
        in_channels = getattr(network, "in_channels", 3)
        inflated = "" if in_channels == 3 else f", stem inflated from 3 to {in_channels} channels"
        log(f"{name}: ImageNet {architecture} from {path}{inflated}")
    if without:
        warnings.warn(
            "no ImageNet weights published for " + ", ".join(without)
            + "; these networks start from random initialisation",
            stacklevel=2,
        )
    return sources


def load_imagenet_into(model: Any, master: bool, log: Callable[[str], None]) -> dict[str, str]:
    """``train.py --pretrained imagenet`` into every network of an ``AdaMML`` that has ImageNet
    weights; returns where each network's weights came from. Exits with one line naming the
    missing files."""
    networks: dict[str, nn.Module] = {f"recognisers.{m}": n for m, n in model.recognisers.items()}
    networks |= {f"policy_features.{m}": f.net for m, f in model.policy_features.items()}
    try:
        return load_imagenet(networks, progress=master, log=log)
    except FileNotFoundError as error:
        raise SystemExit(f"--pretrained imagenet: {error}") from None
