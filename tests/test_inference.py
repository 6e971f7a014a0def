"""optimize_for_inference: same outputs (within the documented tolerance), fewer layers."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from adagate import optimize_for_inference, route_segments, run_selected
from adagate.backbones import mobilenet_v2, tsn_resnet18, tsn_resnet50
from adagate.inference import _fold_batch_norms

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "adamml"
LAYOUTS = ["auto", "channels_last", "contiguous"]


def randomise_batch_norms(net: nn.Module, seed: int = 0) -> nn.Module:
    """Trained-looking BatchNorms: identity statistics would make folding trivially exact."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                shape = m.running_mean.shape
                m.running_mean.copy_(torch.randn(shape, generator=generator) * 0.5)
                m.running_var.copy_(torch.rand(shape, generator=generator) * 2 + 0.1)
                m.weight.copy_(torch.rand(shape, generator=generator) + 0.5)
                m.bias.copy_(torch.randn(shape, generator=generator) * 0.2)
    return net.eval()


def assert_close(actual: Tensor, expected: Tensor) -> None:
    """The tolerance the docstring states: 1e-4, relative to the output's scale."""
    scale = 1.0 + expected.abs().max().item()
    torch.testing.assert_close(actual, expected, atol=1e-4 * scale, rtol=1e-4)


def batch_norms(net: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("builder", [tsn_resnet18, tsn_resnet50], ids=["resnet18", "resnet50"])
def test_tsn_resnet_outputs_match_after_optimisation(builder, layout: str) -> None:
    torch.manual_seed(0)
    net = randomise_batch_norms(builder(3, num_classes=7))
    x = torch.randn(2, 4, 3, 32, 32)
    fast = optimize_for_inference(net, (x,), memory_format=layout, repeats=1)
    with torch.inference_mode():
        assert_close(fast(x), net(x))
    assert batch_norms(fast) == 0


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize(
    ("channels", "frames"), [(3, 4), (15, 4), (1, None)], ids=["rgb", "rgbdiff", "audio"]
)
def test_mobilenet_outputs_match_after_optimisation(channels: int, frames, layout: str) -> None:
    torch.manual_seed(0)
    net = randomise_batch_norms(mobilenet_v2(channels, None, width_mult=0.25, temporal_pool=True))
    shape = (3, channels, 32, 32) if frames is None else (3, frames, channels, 32, 32)
    x = torch.randn(shape)
    fast = optimize_for_inference(net, (x,), memory_format=layout, repeats=1)
    with torch.inference_mode():
        assert_close(fast(x), net(x))
    assert batch_norms(fast) == 0


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    groups=st.sampled_from([1, 4]),
    bias=st.booleans(),
    eps=st.sampled_from([1e-5, 1e-3]),
)
def test_folding_matches_batch_norm_for_random_statistics(
    seed: int, groups: int, bias: bool, eps: float
) -> None:
    torch.manual_seed(seed)
    net = nn.Sequential(
        nn.Conv2d(4, 8, 3, padding=1, groups=groups, bias=bias),
        nn.BatchNorm2d(8, eps=eps),
        nn.ReLU6(),
    )
    randomise_batch_norms(net, seed)
    x = torch.randn(2, 4, 6, 6)
    expected = net(x)
    assert _fold_batch_norms(net) == [("0", "1")]
    assert isinstance(net[1], nn.Identity)
    assert_close(net(x), expected)


def test_state_dict_loses_batch_norm_keys_and_gains_conv_bias() -> None:
    net = tsn_resnet18(3, num_classes=5).eval()
    fast = optimize_for_inference(net, memory_format="keep")
    norms = [n for n, m in net.named_modules() if isinstance(m, nn.BatchNorm2d)]
    convs = [n for n, m in net.named_modules() if isinstance(m, nn.Conv2d)]
    expected = {k for k in net.state_dict() if not any(k.startswith(n + ".") for n in norms)}
    assert set(fast.state_dict()) == expected | {f"{n}.bias" for n in convs}
    assert len(norms) == len(convs) == 20


def test_original_is_untouched_unless_inplace() -> None:
    net = mobilenet_v2(3, 5, width_mult=0.25).eval()
    count = batch_norms(net)
    optimize_for_inference(net, memory_format="keep")
    assert batch_norms(net) == count
    same = optimize_for_inference(net, memory_format="keep", inplace=True)
    assert same is net and batch_norms(net) == 0


def test_returns_eval_mode_module_of_the_same_type() -> None:
    net = tsn_resnet18(3, num_classes=5).train()
    fast = optimize_for_inference(net, (torch.randn(1, 2, 3, 32, 32),), repeats=1)
    assert type(fast) is type(net)
    assert not any(m.training for m in fast.modules())


def test_batch_norm_whose_input_is_read_elsewhere_is_not_folded() -> None:
    class Shared(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 3, 1)
            self.bn = nn.BatchNorm2d(3)

        def forward(self, x: Tensor) -> Tensor:
            y = self.conv(x)
            return self.bn(y) + y

    net = randomise_batch_norms(Shared())
    assert _fold_batch_norms(net) == []
    assert isinstance(net.bn, nn.BatchNorm2d)


def test_batch_norm_in_training_mode_is_not_folded() -> None:
    net = nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)).train()
    assert _fold_batch_norms(net) == []


@pytest.mark.parametrize("layout", ["channels_last", "contiguous"])
def test_layout_hook_overrides_the_callers_layout(layout: str) -> None:
    net = randomise_batch_norms(mobilenet_v2(1, 4, width_mult=0.25))
    fast = optimize_for_inference(net, memory_format=layout)
    x = torch.randn(2, 1, 32, 32)
    other = torch.contiguous_format if layout == "channels_last" else torch.channels_last
    with torch.inference_mode():
        assert_close(fast(x.contiguous(memory_format=other)), net(x))


def test_routing_runs_the_optimised_network_on_selected_rows() -> None:
    torch.manual_seed(0)
    net = randomise_batch_norms(tsn_resnet18(3, num_classes=4))
    x = torch.randn(5, 2, 3, 32, 32)
    fast = optimize_for_inference(net, (x,), repeats=1)
    mask = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0])
    with torch.inference_mode():
        routed, expected = run_selected(fast, x, mask), net(x)
        assert_close(routed[mask.bool()], expected[mask.bool()])
        assert routed[~mask.bool()].eq(0).all()
        assert run_selected(fast, x, torch.zeros(5)).eq(0).all()
        decisions = torch.tensor([[[1.0], [0.0]], [[0.0], [1.0]]])
        segments = route_segments({"rgb": fast}, {"rgb": x[:4].unflatten(0, (2, 2))},
                                  decisions, ["rgb"])  # fmt: skip
    assert segments.shape == (2, 2, 1, 4)
    assert_close(segments[0, 0, 0], expected[0])


def test_bad_arguments_are_refused_with_their_name() -> None:
    net = nn.Sequential(nn.Conv2d(1, 1, 1))
    with pytest.raises(ValueError, match=r"module: expected an nn\.Module"):
        optimize_for_inference("net")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="memory_format: expected"):
        optimize_for_inference(net, memory_format="nhwc")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="example_inputs: expected"):
        optimize_for_inference(net)
    with pytest.raises(ValueError, match="repeats: expected >= 1, got 0"):
        optimize_for_inference(net, (torch.randn(1, 1, 2, 2),), repeats=0)


@pytest.fixture
def adamml_example(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(EXAMPLE))
    for name in ("model", "data", "modalities"):
        sys.modules.pop(name, None)
    import data
    import model

    return model, data


def test_whole_adamml_gives_the_same_decisions_and_logits(adamml_example) -> None:
    model, data = adamml_example
    torch.manual_seed(0)
    preset = model.PRESETS["tiny"]
    net = randomise_batch_norms(model.AdaMML(("rgb", "audio"), 5, preset))
    shapes = model.example_batch(data.DataConfig.demo(**preset.data), ("rgb", "audio"), segments=3)
    batch = {key: torch.randn(4, *value.shape[1:]) for key, value in shapes.items()}
    fast = optimize_for_inference(net, (batch,), repeats=1)
    assert type(fast) is type(net) and batch_norms(fast) == 0
    with torch.inference_mode():
        expected, actual = net(batch, route=True), fast(batch, route=True)
        assert torch.equal(actual.decisions, expected.decisions)
        assert_close(actual.logits, expected.logits)
        assert_close(actual.segment_logits, expected.segment_logits)
        dense = fast.recognise(batch, model.all_on(batch, fast), route=False)
        assert_close(dense, net.recognise(batch, model.all_on(batch, net), route=False))


@pytest.mark.slow
def test_compiled_network_matches() -> None:
    net = randomise_batch_norms(mobilenet_v2(3, 4, width_mult=0.25))
    x = torch.randn(2, 2, 3, 32, 32)
    fast = optimize_for_inference(net, (x,), compile=True, repeats=1)
    with torch.inference_mode():
        assert_close(fast(x), net(x))
