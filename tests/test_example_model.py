"""Tests of examples/adamml/model.py: shapes, routing equivalence, costs, presets."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "adamml"))

import data as D
import model as M

from adagate.backbones import PlainConvNet
from adagate.flops import count_macs, expected_gflops

PRESET = M.PRESETS["tiny"]
CONFIG = D.DataConfig.demo(**PRESET.data)
CLASSES = 3


def random_batch(modalities: tuple[str, ...], videos: int = 2, segments: int = 3) -> dict:
    generator = torch.Generator().manual_seed(0)
    zeros = M.example_batch(CONFIG, modalities, segments)
    return {
        key: torch.randn((videos, *value.shape[1:]), generator=generator)
        for key, value in zeros.items()
    }


@pytest.fixture(scope="module")
def model() -> M.AdaMML:
    torch.manual_seed(0)
    return M.AdaMML(("rgb", "audio"), CLASSES, PRESET).eval()


def test_forward_shapes_and_binary_decisions(model: M.AdaMML) -> None:
    batch = random_batch(("rgb", "audio"), videos=2, segments=3)
    with torch.no_grad():
        out = model(batch)
    assert out.logits.shape == (2, CLASSES)
    assert out.segment_logits.shape == (2, 3, 2, CLASSES)
    assert out.decisions.shape == (2, 3, 2)
    assert set(out.decisions.unique().tolist()) <= {0.0, 1.0}


def test_unimodal_logits_cover_every_network(model: M.AdaMML) -> None:
    batch = random_batch(("rgb", "audio"))
    with torch.no_grad():
        videos = model(batch, unimodal=True)
    assert videos.shape == (2, 4, CLASSES)
    dense = model.recognise(batch, M.all_on(batch, model), route=False)
    torch.testing.assert_close(videos[:, :2], dense.mean(1))


@settings(max_examples=15)
@given(st.lists(st.booleans(), min_size=12, max_size=12))
def test_routed_output_equals_dense_output_times_mask(model: M.AdaMML, mask: list[bool]) -> None:
    batch = random_batch(("rgb", "audio"), videos=2, segments=3)
    decisions = torch.tensor(mask, dtype=torch.float32).reshape(2, 3, 2)
    with torch.no_grad():
        routed = model(batch, decisions=decisions, route=True)
        dense = model(batch, decisions=decisions, route=False)
    expected = dense.segment_logits * decisions[..., None]
    torch.testing.assert_close(routed.segment_logits, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(routed.logits, dense.logits, rtol=1e-4, atol=1e-5)


def test_only_and_all_on_select_what_they_say(model: M.AdaMML) -> None:
    batch = random_batch(("rgb", "audio"))
    assert M.all_on(batch, model).eq(1).all()
    audio = M.only(batch, model, "audio")
    assert audio[..., 1].eq(1).all() and audio[..., 0].eq(0).all()


def test_costs_are_the_measured_macs_of_each_network(model: M.AdaMML) -> None:
    batch = random_batch(("rgb", "audio"), videos=1, segments=1)
    costs = M.measure_costs(model, batch)
    assert costs.recognition["rgb"] == count_macs(model.recognisers["rgb"], batch["rgb"][0])
    assert costs.recognition["audio"] == count_macs(model.recognisers["audio"], batch["audio"][0])
    # The policy's extractors run on every segment: its cost is at least theirs.
    extractor = count_macs(model.policy_features["rgb"], batch["policy_rgb"][0])
    assert costs.policy > extractor > 0
    # The RGB backbone is the expensive modality, which is what makes skipping it pay.
    assert costs.recognition["rgb"] > 10 * costs.recognition["audio"]
    everything = expected_gflops(torch.ones(1, 4, 2), costs, model.modalities)
    total = 4 * (sum(costs.recognition.values()) + costs.policy) / 1e9
    assert everything.item() == pytest.approx(total)


def test_flow_reads_rgb_differences_in_the_policy() -> None:
    modalities = ("rgb", "flow", "audio")
    net = M.AdaMML(modalities, CLASSES, PRESET).eval()
    batch = random_batch(modalities)
    assert "policy_rgbdiff" in batch and batch["flow"].shape[3] == 10
    with torch.no_grad():
        out = net(batch)
    assert out.segment_logits.shape == (2, 3, 3, CLASSES)


def test_no_lstm_policy_has_no_recurrent_part() -> None:
    net = M.AdaMML(("rgb", "audio"), CLASSES, PRESET, recurrent=False)
    assert net.policy.lstm is None
    assert not any("lstm" in name for name in net.state_dict())


@pytest.mark.parametrize("modalities", [(), ("rgb", "rgb"), ("rgb", "depth")])
def test_bad_modalities_raise(modalities: tuple[str, ...]) -> None:
    with pytest.raises(ValueError, match="modalities"):
        M.AdaMML(modalities, CLASSES, PRESET)


# --- shared policy features and the policy's extractor choice ----------------------------------

SHARED = dataclasses.replace(PRESET, shared_policy_features=("audio",))


@pytest.fixture(scope="module")
def shared_model() -> M.AdaMML:
    torch.manual_seed(0)
    return M.AdaMML(("rgb", "audio"), CLASSES, SHARED).eval()


def count_calls(module: torch.nn.Module) -> list[int]:
    calls: list[int] = []
    module.register_forward_pre_hook(lambda _m, args: calls.append(args[0].shape[0]))
    return calls


def test_paper_and_demo_presets_share_the_audio_recogniser() -> None:
    assert M.PRESETS["paper"].shared_policy_features == ("audio",)
    assert M.PRESETS["demo"].shared_policy_features == ("audio",)
    assert M.PRESETS["paper"].policy_extractor == "mobilenet_v2"


def test_a_shared_modality_has_no_extractor_and_the_policy_reads_its_recogniser(
    shared_model: M.AdaMML,
) -> None:
    assert shared_model.shared == ("audio",)
    assert list(shared_model.policy_features) == list(shared_model.policy_heads) == ["rgb"]
    recogniser = shared_model.recognisers["audio"]
    assert shared_model.policy.feature_dims["audio"] == recogniser.num_features
    batch = random_batch(("rgb", "audio"))
    with torch.no_grad():
        features, logits = shared_model.features_and_logits(batch)
        rows = batch["audio"].flatten(0, 1)
        expected = recogniser.forward_features(rows).unflatten(0, (2, 3))
        torch.testing.assert_close(features["audio"], expected)
        torch.testing.assert_close(logits["audio"], recogniser(rows).unflatten(0, (2, 3)))
    assert list(features) == ["rgb", "audio"] and list(logits) == ["audio"]
    torch.testing.assert_close(shared_model.features(batch)["audio"], features["audio"])


def test_forward_runs_the_shared_recogniser_once_and_reuses_its_logits(
    shared_model: M.AdaMML,
) -> None:
    batch = random_batch(("rgb", "audio"), videos=2, segments=3)
    calls = count_calls(shared_model.recognisers["audio"].features[0])  # the stem
    with torch.no_grad():
        for route in (False, True):
            calls.clear()
            out = shared_model(batch, route=route)
            assert calls == [6]  # every segment, once: for the policy and for the logits
            dense = shared_model.recognise(batch, M.all_on(batch, shared_model), route=False)
            kept = out.decisions[..., 1:, None] if route else 1.0
            torch.testing.assert_close(out.segment_logits[:, :, 1:], dense[:, :, 1:] * kept)
            fused = shared_model.fusion(shared_model.recognise(batch, out.decisions, route),
                                        out.decisions)  # fmt: skip
            torch.testing.assert_close(out.logits, fused)


@settings(max_examples=10)
@given(st.lists(st.booleans(), min_size=12, max_size=12))
def test_shared_routed_output_equals_dense_output_times_mask(
    shared_model: M.AdaMML, mask: list[bool]
) -> None:
    batch = random_batch(("rgb", "audio"), videos=2, segments=3)
    decisions = torch.tensor(mask, dtype=torch.float32).reshape(2, 3, 2)
    with torch.no_grad():
        _, logits = shared_model.features_and_logits(batch)
        routed = shared_model.recognise(batch, decisions, route=True, logits=logits)
        dense = shared_model.recognise(batch, decisions, route=False)
    torch.testing.assert_close(routed, dense * decisions[..., None], rtol=1e-4, atol=1e-5)


def test_policy_losses_do_not_train_the_shared_recogniser_but_recognition_does() -> None:
    torch.manual_seed(0)
    net = M.AdaMML(("rgb", "audio"), CLASSES, SHARED).train()
    batch = random_batch(("rgb", "audio"))
    decisions = net.policy(net.features(batch), generator=torch.Generator().manual_seed(0))
    decisions.logits.sum().backward()
    assert all(p.grad is None for p in net.recognisers["audio"].parameters())
    assert any(p.grad is not None for p in net.policy_features["rgb"].parameters())
    out = net(batch, generator=torch.Generator().manual_seed(0))
    out.logits.sum().backward()
    assert all(p.grad is not None for p in net.recognisers["audio"].parameters())
    dense = net.recognise(batch, M.all_on(batch, net), route=False)
    assert dense.shape == (2, 3, 2, CLASSES)


def test_shared_costs_count_the_recogniser_once_on_every_segment(
    shared_model: M.AdaMML, model: M.AdaMML
) -> None:
    batch = random_batch(("rgb", "audio"), videos=1, segments=1)
    costs = M.measure_costs(shared_model, batch)
    assert costs.shared == ("audio",)
    audio = count_macs(shared_model.recognisers["audio"], batch["audio"][0])
    assert costs.recognition["audio"] == audio
    extractor = count_macs(shared_model.policy_features["rgb"], batch["policy_rgb"][0])
    network = count_macs(shared_model.policy, {"rgb": torch.zeros(1, 1, 1280),
                                               "audio": torch.zeros(1, 1, 1280)})  # fmt: skip
    assert costs.policy == extractor + network and costs.always == costs.policy + audio
    rgb_off = torch.tensor([[[0.0, 0.0], [0.0, 1.0]]])
    assert expected_gflops(rgb_off, costs).item() == pytest.approx(2 * costs.always / 1e9)
    # Without sharing the same model pays an own audio extractor instead.
    separate = M.measure_costs(model, batch)
    own_audio = count_macs(model.policy_features["audio"], batch["audio"][0])
    assert separate.shared == () and separate.policy == extractor + network + own_audio


def test_the_conv_policy_extractor_is_a_plain_convnet_with_the_preset_widths() -> None:
    preset = dataclasses.replace(SHARED, policy_extractor="conv", policy_conv_widths=(8, 16, 24))
    net = M.AdaMML(("rgb", "flow", "audio"), CLASSES, preset).eval()
    assert isinstance(net.policy_features["rgb"].net, PlainConvNet)
    assert net.policy.feature_dims == {"rgb": 24, "flow": 24, "audio": 1280}
    batch = random_batch(("rgb", "flow", "audio"))
    with torch.no_grad():
        out = net(batch)
        videos = net(batch, unimodal=True)
    assert out.segment_logits.shape == (2, 3, 3, CLASSES)
    assert videos.shape == (2, 3 + 2, CLASSES)  # 3 recognisers, 2 own policy extractors


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"policy_extractor": "resnet"}, r"policy_extractor: expected 'mobilenet_v2' or 'conv'"),
        ({"shared_policy_features": ("rgb",)}, r"shared_policy_features: expected .*\['rgb'\]"),
        ({"shared_policy_features": ("audio", "audio")}, r"shared_policy_features: expected"),
    ],
)
def test_bad_policy_settings_raise(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(PRESET, **changes)  # type: ignore[arg-type]
