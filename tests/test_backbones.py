"""Tests for adagate.backbones.resnet, adagate.backbones.mobilenet and their temporal pooling."""

from __future__ import annotations

import functools
from collections.abc import Callable

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor, nn

from adagate.backbones._temporal import temporal_max_pool
from adagate.backbones.convnet import PlainConvNet
from adagate.backbones.mobilenet import MobileNetV2, mobilenet_v2
from adagate.backbones.resnet import (
    BasicBlock,
    Bottleneck,
    TSNResNet,
    tsn_resnet18,
    tsn_resnet34,
    tsn_resnet50,
)
from adagate.flops import count_macs
from adagate.policy import MultiModalPolicy

Builder = Callable[..., nn.Module]
BUILDERS: dict[str, tuple[Builder, int]] = {
    "tsn_resnet18": (tsn_resnet18, 512),
    "tsn_resnet34": (tsn_resnet34, 512),
    "tsn_resnet50": (tsn_resnet50, 2048),
    "mobilenet_v2": (mobilenet_v2, 1280),
}


def tiny_resnet(**kwargs: object) -> TSNResNet:
    return TSNResNet(BasicBlock, (1, 1, 1, 1), **kwargs)  # type: ignore[arg-type]


# --- shapes -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BUILDERS))
@pytest.mark.parametrize("in_channels", [1, 3, 10, 15])
def test_feature_and_logit_shapes_for_every_variant_and_layout(name: str, in_channels: int) -> None:
    builder, dim = BUILDERS[name]
    features = builder(in_channels=in_channels, num_classes=None).eval()
    classifier = builder(in_channels=in_channels, num_classes=7).eval()
    segments = torch.randn(2, 3, in_channels, 32, 32)
    frames = torch.randn(2, in_channels, 32, 32)
    with torch.no_grad():
        assert features(segments).shape == (2, dim)
        assert features(frames).shape == (2, dim)
        assert classifier(segments).shape == (2, 7)
        assert classifier(frames).shape == (2, 7)


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_forward_is_the_head_on_the_pooled_features(name: str) -> None:
    # One pass gives both: what a policy that reads a recogniser's features relies on.
    builder, dim = BUILDERS[name]
    net = builder(in_channels=3, num_classes=7).eval()
    x = torch.randn(2, 4, 3, 32, 32)
    with torch.no_grad():
        pooled = net.forward_features(x)
        assert pooled.shape == (2, dim)
        torch.testing.assert_close(net.forward_head(pooled), net(x), rtol=0, atol=0)
        plain = builder(in_channels=3, num_classes=None).eval()
        features = plain.forward_features(x)
        assert plain.forward_head(features) is features


@given(
    in_channels=st.integers(1, 4),
    widths=st.lists(st.integers(1, 12), min_size=1, max_size=4),
    frames=st.integers(1, 3),
    side=st.integers(5, 24),
)
def test_plain_convnet_shape_and_macs_match_the_formula(
    in_channels: int, widths: list[int], frames: int, side: int
) -> None:
    net = PlainConvNet(in_channels, widths).eval()
    x = torch.randn(2, frames, in_channels, side, side)
    with torch.no_grad():
        assert net(x).shape == (2, widths[-1]) and net.num_features == widths[-1]
    # One 3x3 stride-2 convolution per width: C_in * C_out * 9 MACs per output pixel.
    expected, channels = 0, in_channels
    for width in widths:
        side = (side + 1) // 2
        expected += channels * width * 9 * side * side
        channels = width
    assert count_macs(net, x[:1]) == frames * expected


def test_plain_convnet_averages_frames_and_takes_single_frames() -> None:
    net = PlainConvNet(3, (8, 16)).eval()
    x = torch.randn(2, 3, 3, 32, 32)
    with torch.no_grad():
        per_frame = torch.stack([net(x[:, i]) for i in range(3)], dim=1)
        torch.testing.assert_close(net(x), per_frame.mean(dim=1))


def test_mobilenet_width_mult_follows_torchvision_rounding() -> None:
    net = mobilenet_v2(num_classes=None, width_mult=0.5).eval()
    # 32 * 0.5 = 16 stem channels; the last layer keeps 1280 for width_mult <= 1.
    assert net.features[0][0].out_channels == 16
    assert net(torch.randn(1, 3, 32, 32)).shape == (1, 1280)
    wide = mobilenet_v2(num_classes=None, width_mult=1.4)
    assert wide.num_features == 1792  # round to a multiple of 8 of 1280 * 1.4


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (torch.randn(2, 3, 32), "expected 5 dims"),
        (torch.randn(1, 2, 3, 3, 32, 32), "expected 5 dims"),
        (torch.randn(2, 4, 32, 32), "expected 3 channels"),
        (torch.randn(2, 8, 1, 32, 32), "expected 3 channels"),
    ],
)
def test_bad_input_raises_value_error_with_shape(bad: Tensor, message: str) -> None:
    for net in (tiny_resnet(), mobilenet_v2(width_mult=0.25), PlainConvNet(3, (8,))):
        with pytest.raises(ValueError, match=message) as info:
            net(bad)
        assert str(tuple(bad.shape)) in str(info.value)


@pytest.mark.parametrize(
    ("build", "argument"),
    [
        (lambda: tiny_resnet(in_channels=0), "in_channels"),
        (lambda: tiny_resnet(num_classes=0), "num_classes"),
        (lambda: TSNResNet(BasicBlock, (1, 1, 0, 1)), "layers"),
        (lambda: TSNResNet(Bottleneck, (1, 1, 1)), "layers"),  # type: ignore[arg-type]
        (lambda: MobileNetV2(in_channels=0), "in_channels"),
        (lambda: MobileNetV2(num_classes=-1), "num_classes"),
        (lambda: MobileNetV2(width_mult=0.0), "width_mult"),
        (lambda: PlainConvNet(in_channels=0), "in_channels"),
        (lambda: PlainConvNet(widths=()), "widths"),
        (lambda: PlainConvNet(widths=(8, 0)), "widths"),
    ],
)
def test_bad_constructor_arguments_name_the_argument(
    build: Callable[[], nn.Module], argument: str
) -> None:
    with pytest.raises(ValueError, match=argument):
        build()


# --- temporal pooling ---------------------------------------------------------------------------


def rows_seen_by(net: nn.Module, names: list[str], x: Tensor) -> list[int]:
    """Batch sizes (segments x frames) entering the named submodules."""
    seen: list[int] = []
    modules = dict(net.named_modules())
    handles = [
        modules[name].register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape[0]))
        for name in names
    ]
    with torch.no_grad():
        net(x)
    for handle in handles:
        handle.remove()
    return seen


def test_resnet_temporal_pool_reduces_eight_frames_to_four_two_one() -> None:
    x = torch.randn(2, 8, 3, 32, 32)
    stages = ["layer1", "layer2", "layer3", "layer4"]
    assert rows_seen_by(tiny_resnet().eval(), stages, x) == [16, 8, 4, 2]
    assert rows_seen_by(tiny_resnet(temporal_pool=False).eval(), stages, x) == [16, 16, 16, 16]


def test_mobilenet_temporal_pool_reduces_four_frames_to_two_one() -> None:
    x = torch.randn(3, 4, 3, 32, 32)
    # features.7 starts the 14x14 stage, features.14 the 7x7 stage.
    blocks = ["features.6", "features.7", "features.13", "features.14"]
    net = mobilenet_v2(width_mult=0.25)
    assert rows_seen_by(net.eval(), blocks, x) == [12, 6, 6, 3]
    net.temporal_pool = False
    assert rows_seen_by(net, blocks, x) == [12, 12, 12, 12]


def reference_temporal_pool(x: Tensor) -> Tensor:
    """Kernel 3, stride 2, padding 1 max over x: (N, F, ...), written out window by window."""
    frames = x.shape[1]
    windows = [x[:, max(0, 2 * i - 1) : 2 * i + 2].amax(dim=1) for i in range((frames + 1) // 2)]
    return torch.stack(windows, dim=1)


@given(
    segments=st.integers(1, 3),
    frames=st.integers(1, 12),
    channels_last=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_temporal_max_pool_matches_windowed_max(
    segments: int, frames: int, channels_last: bool, seed: int
) -> None:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(segments, frames, 5, 3, 4, generator=generator)
    flat = x.flatten(0, 1)
    if channels_last:
        flat = flat.contiguous(memory_format=torch.channels_last)
    pooled, out_frames = temporal_max_pool(flat, frames)
    assert out_frames == (frames + 1) // 2
    expected = reference_temporal_pool(x).flatten(0, 1)
    torch.testing.assert_close(pooled, expected, rtol=0, atol=0)
    if channels_last:
        assert pooled.is_contiguous(memory_format=torch.channels_last)


@functools.cache
def tsn_and_plain_pair() -> tuple[TSNResNet, TSNResNet]:
    torch.manual_seed(0)
    tsn = tiny_resnet(num_classes=None).eval()
    plain = tiny_resnet(num_classes=None, temporal_pool=False).eval()
    plain.load_state_dict(tsn.state_dict())
    return tsn, plain


@given(frames=st.integers(1, 9), seed=st.integers(0, 2**16))
def test_tsn_on_identical_frames_equals_2d_network_on_one_frame(frames: int, seed: int) -> None:
    # Max-pooling copies of one frame is the identity: the TSN network reduces to the 2D one.
    tsn, plain = tsn_and_plain_pair()
    frame = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        torch.testing.assert_close(tsn(frame[:, None].expand(-1, frames, -1, -1, -1)), plain(frame))


def test_mobilenet_on_identical_frames_equals_one_frame() -> None:
    net = mobilenet_v2(num_classes=None, width_mult=0.5).eval()
    frame = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(net(frame[:, None].expand(-1, 4, -1, -1, -1)), net(frame))


def test_features_average_the_frames_left_without_pooling() -> None:
    net = tiny_resnet(num_classes=None, temporal_pool=False).eval()
    x = torch.randn(2, 5, 3, 32, 32)
    with torch.no_grad():
        per_frame = torch.stack([net(x[:, i]) for i in range(5)], dim=1)
        torch.testing.assert_close(net(x), per_frame.mean(dim=1))


# --- memory format, autocast, compile -----------------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [
        lambda: tiny_resnet(num_classes=5),
        lambda: mobilenet_v2(3, 5, width_mult=0.25),
        lambda: PlainConvNet(3, (8, 16, 32)),
    ],
)
def test_channels_last_gives_the_same_output(build: Callable[[], nn.Module]) -> None:
    net = build().eval()
    x = torch.randn(2, 4, 3, 32, 32)
    with torch.no_grad():
        expected = net(x)
        net = net.to(memory_format=torch.channels_last)
        frames = x.flatten(0, 1).contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(net(frames.unflatten(0, (2, 4))), expected)


@pytest.mark.parametrize(
    "build", [lambda: tiny_resnet(num_classes=5), lambda: mobilenet_v2(3, 5, width_mult=0.25)]
)
def test_bfloat16_autocast_on_cpu(build: Callable[[], nn.Module]) -> None:
    net = build().eval()
    x = torch.randn(2, 4, 3, 32, 32)
    with torch.no_grad():
        expected = net(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = net(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected, rtol=0.1, atol=0.1)


def test_autocast_backward_reaches_the_stem() -> None:
    net = tiny_resnet(num_classes=5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = net(torch.randn(2, 4, 3, 32, 32)).float().square().mean()
    loss.backward()
    assert net.conv1.weight.grad is not None and net.conv1.weight.grad.abs().sum() > 0


@pytest.mark.slow
@pytest.mark.parametrize(
    "build", [lambda: tiny_resnet(num_classes=5), lambda: mobilenet_v2(3, 5, width_mult=0.25)]
)
def test_torch_compile_matches_eager_in_channels_last(build: Callable[[], nn.Module]) -> None:
    net = build().eval().to(memory_format=torch.channels_last)
    x = torch.randn(2, 4, 3, 32, 32)
    compiled = torch.compile(net)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), net(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "build",
    [
        lambda: tiny_resnet(num_classes=5),
        lambda: mobilenet_v2(3, 5, width_mult=0.25),
        lambda: PlainConvNet(3, (8, 16, 32)),
    ],
)
def test_torch_compile_traces_without_graph_breaks(build: Callable[[], nn.Module]) -> None:
    # fullgraph fails on any graph break; the "eager" backend skips Inductor's slow codegen
    # (exercised by the slow test above).
    net = build().eval()
    x = torch.randn(2, 4, 3, 32, 32)
    compiled = torch.compile(net, backend="eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), net(x))


# --- compute (AdaMML §4, Table 1; MACs reported as "GFLOPs") -------------------------------------

# Per-segment GFLOPs implied by the paper: Table 1/2 give 10 test segments (141.36, 163.39, 3.82),
# §4 gives the policy (RGB + audio) as 0.76; the RGB policy MobileNetV2 figure is 0.375.
PAPER_GFLOPS = {"rgb": 14.136, "flow": 16.339, "audio": 0.382, "policy_rgb": 0.375}


def gmacs(net: nn.Module, *shape: int) -> float:
    return count_macs(net.eval(), torch.zeros(*shape)) / 1e9


@pytest.fixture(scope="module")
def measured() -> dict[str, float]:
    return {
        "rgb": gmacs(tsn_resnet50(3, num_classes=31), 1, 8, 3, 224, 224),
        "flow": gmacs(tsn_resnet50(10, num_classes=31), 1, 8, 10, 224, 224),
        "audio": gmacs(mobilenet_v2(1, num_classes=31), 1, 1, 256, 256),
        "policy_rgb": gmacs(mobilenet_v2(3, num_classes=None), 1, 4, 3, 160, 160),
        "policy_audio": gmacs(mobilenet_v2(1, num_classes=None), 1, 1, 256, 256),
    }


@pytest.mark.parametrize("row", sorted(PAPER_GFLOPS))
def test_macs_match_the_paper_within_two_percent(measured: dict[str, float], row: str) -> None:
    assert measured[row] == pytest.approx(PAPER_GFLOPS[row], rel=0.02)


def test_flow_costs_eight_wider_stems_more_than_rgb(measured: dict[str, float]) -> None:
    # Only conv1 sees the channel count: 64 filters of 7x7 on a 112x112 output, 8 frames.
    extra = 8 * (10 - 3) * 64 * 7 * 7 * 112 * 112 / 1e9
    assert measured["flow"] - measured["rgb"] == pytest.approx(extra, rel=1e-9)


def test_policy_total_matches_the_paper(measured: dict[str, float]) -> None:
    policy = MultiModalPolicy({"rgb": 1280, "audio": 1280}).eval()
    features = {"rgb": torch.zeros(1, 1, 1280), "audio": torch.zeros(1, 1, 1280)}
    joint = count_macs(policy, features) / 1e9
    total = measured["policy_rgb"] + measured["policy_audio"] + joint
    assert total == pytest.approx(0.76, rel=0.02)


def test_temporal_pooling_saves_the_expected_share_of_resnet50() -> None:
    tsn = gmacs(tsn_resnet50(num_classes=None), 1, 8, 3, 224, 224)
    plain = gmacs(tsn_resnet50(num_classes=None, temporal_pool=False), 1, 8, 3, 224, 224)
    single = gmacs(tsn_resnet50(num_classes=None, temporal_pool=False), 1, 3, 224, 224)
    assert plain == pytest.approx(8 * single, rel=1e-9)
    # Stem + stage 1 on 8 frames, stages 2, 3, 4 on 4, 2, 1 frames.
    net = tsn_resnet50(num_classes=None).eval()
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1)
    x = torch.zeros(1, 3, 224, 224)
    expected = 8 * count_macs(stem, x)
    with torch.no_grad():
        x = stem(x)
    for frames, stage in zip((4, 2, 1), (net.layer2, net.layer3, net.layer4), strict=True):
        expected += frames * count_macs(stage, x)
        with torch.no_grad():
            x = stage(x)
    assert tsn == pytest.approx(expected / 1e9, rel=1e-9)
