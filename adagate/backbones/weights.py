"""Load torchvision-format ImageNet checkpoints from disk, inflating the stem for non-RGB inputs."""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from typing import Literal, TypeVar

import torch
from torch import Tensor, nn

__all__ = ["inflate_conv_weight", "load_torchvision_weights"]

ModuleT = TypeVar("ModuleT", bound=nn.Module)

# The first convolution of torchvision's ResNets and MobileNetV2: the only weights whose input
# channels depend on the modality.
_STEM_WEIGHTS = ("conv1.weight", "features.0.0.weight")
# The ImageNet classifiers, dropped by ``skip_head=True``.
_HEAD_PREFIXES = ("fc.", "classifier.")


def inflate_conv_weight(weight: Tensor, in_channels: int) -> Tensor:
    """Inflate an RGB convolution to ``in_channels`` inputs, TSN-style (cross-modality init).

    Each new input channel gets the sum of the RGB filters divided by ``in_channels``: the
    RGB mean, replicated, times ``3 / in_channels``. A grey input (the same image on every
    channel) then gives exactly the response of the RGB filters to that grey image.

    Args:
        weight: ``(O, C_rgb, kH, kW)`` convolution weight.
        in_channels: new input-channel count.

    Returns:
        ``(O, in_channels, kH, kW)``.

    Raises:
        ValueError: if ``weight`` is not 4-D or ``in_channels`` is not positive.
    """
    if weight.dim() != 4:
        raise ValueError(f"weight: expected 4 dims (O, C, kH, kW), got shape {tuple(weight.shape)}")
    if in_channels < 1:
        raise ValueError(f"in_channels: expected a positive int, got {in_channels}")
    summed = weight.sum(dim=1, keepdim=True) / in_channels
    return summed.expand(-1, in_channels, -1, -1).contiguous()


def _read_state_dict(
    path_or_state_dict: str | os.PathLike[str] | Mapping[str, Tensor],
) -> dict[str, Tensor]:
    if isinstance(path_or_state_dict, Mapping):
        state = dict(path_or_state_dict)
    else:
        try:
            # weights_only: a checkpoint file must never run code on load.
            loaded = torch.load(path_or_state_dict, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as err:
            raise ValueError(
                f"path_or_state_dict: {os.fspath(path_or_state_dict)!r} holds objects other than "
                f"tensors, refused by torch.load(weights_only=True): {err}"
            ) from err
        if not isinstance(loaded, Mapping):
            raise ValueError(
                f"path_or_state_dict: expected the file to hold a state_dict, "
                f"got {type(loaded).__name__}"
            )
        state = dict(loaded)
    not_tensors = sorted(str(k) for k, v in state.items() if not isinstance(v, Tensor))
    if not_tensors:
        raise ValueError(f"path_or_state_dict: entries that are not tensors: {not_tensors}")
    return state


def load_torchvision_weights(
    model: ModuleT,
    path_or_state_dict: str | os.PathLike[str] | Mapping[str, Tensor],
    inflate: Literal["mean"] | None = "mean",
    strict: bool = True,
    skip_head: bool = False,
) -> ModuleT:
    """Load a torchvision ResNet or MobileNetV2 state_dict into an adagate backbone.

    Keys match one for one (our backbones keep torchvision's module names). When the model's
    first convolution takes other than 3 channels, the RGB stem is inflated with
    :func:`inflate_conv_weight`. A checkpoint without ``num_batches_tracked`` buffers (older
    torchvision files) is accepted. Nothing is downloaded; files are read with
    ``torch.load(weights_only=True)``.

    Args:
        model: a :class:`TSNResNet` or :class:`MobileNetV2` (or any module with the same names).
        path_or_state_dict: a ``.pth`` file holding a state_dict, or the state_dict itself.
        inflate: ``"mean"`` to inflate the stem to the model's input channels, ``None`` to
            treat a channel mismatch as an error.
        strict: raise on keys present on one side only (shape mismatches always raise).
        skip_head: ignore the checkpoint's classifier (``fc.*`` / ``classifier.*``) and keep
            the model's own, for a model built with another ``num_classes`` (or ``None``).

    Returns:
        ``model``, with the weights loaded in place.

    Raises:
        ValueError: listing the missing, unexpected and mismatched-shape keys; or if the file
            holds anything but tensors.

    Shape:
        checkpoint ``conv1.weight: (64, 3, 7, 7)`` → model ``conv1.weight: (64, C_in, 7, 7)``
        (inflated when ``C_in != 3``); every other tensor keeps its shape.

    Example:
        >>> from adagate.backbones import tsn_resnet18
        >>> net = tsn_resnet18(in_channels=10, num_classes=31)
        >>> checkpoint = tsn_resnet18(num_classes=1000).state_dict()  # torchvision's key names
        >>> load_torchvision_weights(net, checkpoint, skip_head=True) is net
        True
    """
    if inflate not in ("mean", None):
        raise ValueError(f"inflate: expected 'mean' or None, got {inflate!r}")
    state = _read_state_dict(path_or_state_dict)
    own = model.state_dict()
    if skip_head:
        state = {k: v for k, v in state.items() if not k.startswith(_HEAD_PREFIXES)}
        own = {k: v for k, v in own.items() if not k.startswith(_HEAD_PREFIXES)}
    if inflate == "mean":
        for key in _STEM_WEIGHTS:
            if key in state and key in own and state[key].shape[1] != own[key].shape[1]:
                state[key] = inflate_conv_weight(state[key], own[key].shape[1])

    missing = [k for k in own if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in own]
    mismatched = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
        for k in state
        if k in own and state[k].shape != own[k].shape
    ]
    problems = []
    if mismatched:
        problems.append(f"shape mismatches: {mismatched}")
    if strict and missing:
        problems.append(f"missing from the checkpoint: {missing}")
    if strict and unexpected:
        problems.append(f"unexpected in the checkpoint: {unexpected}")
    if problems:
        hint = (
            " (pass skip_head=True to keep the model's own classifier)"
            if any(k.startswith(_HEAD_PREFIXES) for k in [*missing, *unexpected, *mismatched])
            else ""
        )
        raise ValueError(
            f"path_or_state_dict: expected a state_dict that fits {type(model).__name__}, got "
            + "; ".join(problems)
            + hint
        )
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    return model
