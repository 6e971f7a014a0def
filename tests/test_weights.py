"""Tests for adagate.backbones.weights: torchvision key compatibility, loading, inflation."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given
from hypothesis import strategies as st
from torch import nn
from torchvision_fixture import FIXTURE, torchvision_like_state_dict

from adagate.backbones.mobilenet import mobilenet_v2
from adagate.backbones.resnet import tsn_resnet18, tsn_resnet34, tsn_resnet50
from adagate.backbones.weights import inflate_conv_weight, load_torchvision_weights

OURS: dict[str, Callable[..., nn.Module]] = {
    "resnet18": tsn_resnet18,
    "resnet34": tsn_resnet34,
    "resnet50": tsn_resnet50,
    "mobilenet_v2": mobilenet_v2,
}




class NotATensor:
    """A custom class: pickling it into a checkpoint must be refused on load."""

    def __init__(self) -> None:
        self.value = 3


# --- key compatibility --------------------------------------------------------------------------


@pytest.mark.parametrize("arch", sorted(OURS))
def test_state_dict_keys_and_shapes_are_torchvision_s(arch: str) -> None:
    ours = OURS[arch](num_classes=FIXTURE["num_classes"], temporal_pool=False).state_dict()
    assert [(k, list(v.shape)) for k, v in ours.items()] == list(FIXTURE[arch].items())


@pytest.mark.parametrize("arch", sorted(OURS))
def test_every_builder_with_its_defaults_loads_a_torchvision_checkpoint_key_for_key(
    arch: str, tmp_path: Path
) -> None:
    state = torchvision_like_state_dict(arch)
    path = tmp_path / f"{arch}.pth"
    torch.save(state, path)
    model = load_torchvision_weights(OURS[arch](), path)
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0, msg=key)


def test_accepts_checkpoints_without_num_batches_tracked() -> None:
    state = {
        k: v
        for k, v in torchvision_like_state_dict("resnet18").items()
        if not k.endswith("num_batches_tracked")
    }
    model = load_torchvision_weights(tsn_resnet18(num_classes=1000), state)
    torch.testing.assert_close(model.conv1.weight, state["conv1.weight"])


# --- strictness and the classifier --------------------------------------------------------------


def test_wrong_checkpoint_is_rejected_with_the_keys_listed() -> None:
    with pytest.raises(ValueError) as info:
        load_torchvision_weights(tsn_resnet50(), torchvision_like_state_dict("resnet18"))
    message = str(info.value)
    assert "missing from the checkpoint" in message
    assert "layer1.0.conv3.weight" in message  # a ResNet-50 key ResNet-18 lacks
    assert "shape mismatches" in message
    assert "layer1.0.conv1.weight: checkpoint (64, 64, 3, 3) vs model (64, 64, 1, 1)" in message


def test_unexpected_keys_are_listed_and_strict_false_ignores_them() -> None:
    state = torchvision_like_state_dict("resnet18")
    state["extra.weight"] = torch.zeros(2)
    with pytest.raises(ValueError, match=r"unexpected in the checkpoint: \['extra.weight'\]"):
        load_torchvision_weights(tsn_resnet18(), state)
    model = load_torchvision_weights(tsn_resnet18(), state, strict=False)
    torch.testing.assert_close(model.fc.weight, state["fc.weight"])


def test_strict_false_still_rejects_shape_mismatches() -> None:
    state = torchvision_like_state_dict("resnet18")
    state["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    with pytest.raises(ValueError, match=re.escape("layer1.0.conv1.weight")):
        load_torchvision_weights(tsn_resnet18(), state, strict=False)


@pytest.mark.parametrize("num_classes", [31, None])
def test_other_num_classes_needs_skip_head(num_classes: int | None) -> None:
    state = torchvision_like_state_dict("resnet18")
    with pytest.raises(ValueError, match=r"fc\.weight.*skip_head=True"):
        load_torchvision_weights(tsn_resnet18(num_classes=num_classes), state)
    model = tsn_resnet18(num_classes=num_classes)
    head_before = {k: v.clone() for k, v in model.fc.state_dict().items()}
    load_torchvision_weights(model, state, skip_head=True)
    torch.testing.assert_close(model.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    for key, value in model.fc.state_dict().items():
        torch.testing.assert_close(value, head_before[key])


def test_mobilenet_skip_head_keeps_the_audio_classifier() -> None:
    state = torchvision_like_state_dict("mobilenet_v2")
    model = load_torchvision_weights(mobilenet_v2(1, num_classes=31), state, skip_head=True)
    assert model.classifier[1].weight.shape == (31, 1280)
    torch.testing.assert_close(
        model.features[0][0].weight, inflate_conv_weight(state["features.0.0.weight"], 1)
    )


# --- files --------------------------------------------------------------------------------------


def test_weights_only_refuses_a_pickled_object(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "payload": NotATensor()}, path)
    with pytest.raises(ValueError, match=r"weights_only=True"):
        load_torchvision_weights(tsn_resnet18(), path)


def test_a_file_that_is_not_a_state_dict_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], path)
    with pytest.raises(ValueError, match="expected the file to hold a state_dict, got list"):
        load_torchvision_weights(tsn_resnet18(), path)


def test_entries_that_are_not_tensors_are_rejected() -> None:
    state: dict[str, object] = {**torchvision_like_state_dict("resnet18"), "epoch": 3}
    with pytest.raises(ValueError, match=r"not tensors: \['epoch'\]"):
        load_torchvision_weights(tsn_resnet18(), state)  # type: ignore[arg-type]


# --- inflation ----------------------------------------------------------------------------------


@given(
    in_channels=st.integers(1, 16),
    kernel=st.sampled_from([1, 3, 7]),
    seed=st.integers(0, 2**16),
)
def test_inflation_preserves_the_response_to_a_grey_input(
    in_channels: int, kernel: int, seed: int
) -> None:
    generator = torch.Generator(device="cpu").manual_seed(seed)
    weight = torch.randn(8, 3, kernel, kernel, generator=generator, dtype=torch.float64)
    grey = torch.randn(2, 1, 12, 12, generator=generator, dtype=torch.float64)
    inflated = inflate_conv_weight(weight, in_channels)
    assert inflated.shape == (8, in_channels, kernel, kernel)
    torch.testing.assert_close(
        F.conv2d(grey.expand(-1, in_channels, -1, -1), inflated),
        F.conv2d(grey.expand(-1, 3, -1, -1), weight),
    )
    # Every new channel carries the same filter: the RGB mean, scaled by 3 / in_channels.
    mean = weight.mean(dim=1, keepdim=True)
    torch.testing.assert_close(inflated, (mean * 3 / in_channels).expand_as(inflated))


def test_inflated_network_sees_grey_frames_like_the_rgb_network() -> None:
    state = torchvision_like_state_dict("resnet18", seed=1)
    rgb = load_torchvision_weights(tsn_resnet18(num_classes=1000), state).eval()
    flow = load_torchvision_weights(tsn_resnet18(10, num_classes=1000), state).eval()
    grey = torch.randn(2, 8, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(
            flow(grey.expand(-1, -1, 10, -1, -1)),
            rgb(grey.expand(-1, -1, 3, -1, -1)),
            rtol=1e-4,
            atol=1e-4,
        )


def test_inflate_none_reports_the_stem_mismatch() -> None:
    state = torchvision_like_state_dict("resnet18")
    expected = "conv1.weight: checkpoint (64, 3, 7, 7) vs model (64, 10, 7, 7)"
    with pytest.raises(ValueError, match=re.escape(expected)):
        load_torchvision_weights(tsn_resnet18(10), state, inflate=None)


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda: inflate_conv_weight(torch.zeros(8, 3, 3), 2), "weight"),
        (lambda: inflate_conv_weight(torch.zeros(8, 3, 3, 3), 0), "in_channels"),
        (
            lambda: load_torchvision_weights(tsn_resnet18(), {}, inflate="sum"),  # type: ignore[arg-type]
            "inflate",
        ),
    ],
)
def test_bad_arguments_name_the_argument(call: Callable[[], object], argument: str) -> None:
    with pytest.raises(ValueError, match=argument):
        call()
