"""Tests of examples/adamml/model.py: shapes, routing equivalence, costs, presets."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "adamml"))

import data as D
import model as M

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
