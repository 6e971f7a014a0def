"""Tests of examples/adamml/data/config.py: DataConfig checks, registry facts, JSON round trip."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "adamml"))

import data as D
from modalities import MODALITIES


def test_paper_spectrogram_arithmetic() -> None:
    config = D.DataConfig.paper()
    assert (config.n_fft, config.stft_win_length, config.stft_hop_length) == (510, 240, 120)
    assert (config.n_freq, config.n_time) == (256, 256)


def test_both_presets_test_on_the_papers_ten_segments() -> None:
    assert D.DataConfig.paper().test_segments == D.DataConfig.demo().test_segments == 10
    assert D.DataConfig.demo(test_segments=5).test_segments == 5


@pytest.mark.parametrize("preset", [D.DataConfig.paper, D.DataConfig.demo])
@pytest.mark.parametrize("modalities", [("rgb", "audio"), ("rgb", "rgbdiff", "flow", "audio")])
def test_json_round_trip_restores_the_config(preset, modalities: tuple[str, ...]) -> None:  # type: ignore[no-untyped-def]
    config = preset(modalities=modalities)
    restored = D.DataConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert restored == config
    assert isinstance(restored.resize_range, tuple) and isinstance(restored.mean, tuple)


def test_from_dict_names_unknown_keys() -> None:
    values = D.DataConfig.demo().to_dict() | {"policy_modalities": ["rgb"]}
    with pytest.raises(ValueError, match=r"values: expected fields .*\['policy_modalities'\]"):
        D.DataConfig.from_dict(values)


def test_policy_inputs_and_span_come_from_the_registry() -> None:
    config = D.DataConfig.demo(modalities=("rgb", "flow", "audio"))
    assert config.policy_sources == ("rgb", "rgbdiff")
    assert [MODALITIES[m].policy_key for m in config.modalities] == [
        "policy_rgb",
        "policy_rgbdiff",
        "audio",
    ]
    plain = (config.frames_per_segment - 1) * config.frame_stride + 1
    assert config.span == plain + MODALITIES["flow"].stack
    assert D.DataConfig.demo(modalities=("rgb", "audio")).span == plain
    assert D.DataConfig.demo(modalities=("audio",)).policy_sources == ()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"stft_window_ms": 100.0}, "stft_window_ms: expected a window of at most n_fft=126"),
        ({"modalities": ("depth",)}, r"modalities: expected distinct names from \['rgb'"),
        ({"modalities": ("rgb", "rgb")}, "modalities: expected distinct names"),
        ({"policy_frames": 5}, "policy_frames: expected 1 to frames_per_segment=4, got 5"),
        ({"test_resize": 32}, "resize_range, test_resize: expected crop_size=64"),
        ({"resize_range": (48, 80)}, r"got \(48, 80\) and 64"),
    ],
)
def test_config_errors_name_the_field(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        D.DataConfig.demo(**overrides)
