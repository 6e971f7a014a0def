"""Tests of examples/adamml/data/transforms.py: spatial sampling, visual inputs, spectrograms."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "adamml"))

import data as D

CONFIG = D.DataConfig.demo()
SPATIAL = D.SpatialSampler(CONFIG.crop_size, CONFIG.resize_range, CONFIG.test_resize)


def spectrogram(config: D.DataConfig) -> D.LogSpectrogram:
    return D.InputTransforms.from_config(config).spectrogram


# -------------------------------------------------------------------------------- spectrograms
@pytest.mark.parametrize("preset", [D.DataConfig.paper, D.DataConfig.demo])
def test_spectrogram_shape_matches_the_config(preset) -> None:  # type: ignore[no-untyped-def]
    config = preset()
    samples = round(config.audio_seconds * config.sample_rate)
    spec = spectrogram(config)(torch.zeros(samples))
    assert spec.shape == (1, config.n_freq, config.n_time)
    assert torch.allclose(spec, torch.tensor(math.log(1e-6)))


@given(bin_index=st.integers(2, CONFIG.n_freq - 3), preset=st.sampled_from(["paper", "demo"]))
def test_pure_tone_lands_in_its_frequency_bin(bin_index: int, preset: str) -> None:
    config = D.DataConfig.paper() if preset == "paper" else D.DataConfig.demo()
    rate = config.sample_rate
    t = torch.arange(round(config.audio_seconds * rate), dtype=torch.float64) / rate
    waveform = torch.sin(2 * math.pi * bin_index * rate / config.n_fft * t).float()
    spec = spectrogram(config)(waveform)
    assert int(spec[0].mean(dim=1).argmax()) == bin_index


def test_spectrogram_of_a_short_waveform_is_padded_to_n_time() -> None:
    spec = D.log_spectrogram(torch.ones(100), n_fft=62, win_length=40, hop_length=20, n_time=16)
    assert spec.shape == (1, 32, 16)
    assert torch.equal(spec[0, :, 6:], torch.full((32, 10), math.log(1e-6)))
    with pytest.raises(ValueError, match=r"waveform: expected \(N,\), got shape \(2, 100\)"):
        D.log_spectrogram(torch.ones(2, 100), n_fft=62, win_length=40, hop_length=20, n_time=16)


# --------------------------------------------------------------------------- per-modality inputs
def test_rgb_input_normalises_and_crops() -> None:
    frames = torch.full((2, 3, 80, 100, 3), 255, dtype=torch.uint8)
    params = D.SpatialParams(short_side=64, top=0, left=5, size=64, flip=False)
    out = D.RGBInput()(frames, params)
    assert out.shape == (2, 3, 3, 64, 64)
    expected = (1 - torch.tensor(D.IMAGENET_MEAN)) / torch.tensor(D.IMAGENET_STD)
    assert torch.allclose(out[0, 0, :, 10, 10], expected, atol=1e-5)
    grey = D.rgb_input(frames, params, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    assert torch.allclose(grey, torch.tensor(2.0))


def test_spatial_sampling_ranges() -> None:
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        params = SPATIAL(96, 128, train=True, generator=generator)
        assert CONFIG.resize_range[0] <= params.short_side < CONFIG.resize_range[1]
        height, width = params.short_side, round(128 * params.short_side / 96)
        assert 0 <= params.top <= height - params.size and 0 <= params.left <= width - params.size
    centre = SPATIAL(96, 128, train=False)
    assert (centre.short_side, centre.top, centre.flip) == (CONFIG.test_resize, 0, False)
    assert centre.left == (round(128 * 64 / 96) - 64) // 2


def test_spatial_sampler_draws_what_sample_spatial_draws() -> None:
    bound = SPATIAL(96, 128, train=True, generator=torch.Generator().manual_seed(3))
    plain = D.sample_spatial(
        96, 128, crop_size=64, resize_range=(64, 80), test_resize=64, train=True,
        generator=torch.Generator().manual_seed(3),
    )  # fmt: skip
    assert bound == plain


def test_rgbdiff_layout_is_five_consecutive_rgb_differences() -> None:
    frames = torch.randint(0, 256, (2, 3, 6, 64, 64, 3), dtype=torch.uint8)
    params = D.SpatialParams(64, 0, 0, 64, flip=False)
    out = D.RGBDiffInput(CONFIG.mean, CONFIG.std)(frames, params)
    assert out.shape == (2, 3, 15, 64, 64)
    mean = torch.tensor(CONFIG.mean).view(3, 1, 1)
    std = torch.tensor(CONFIG.std).view(3, 1, 1)
    normalised = (frames.permute(0, 1, 2, 5, 3, 4).float() / 255 - mean) / std
    for k in range(5):
        expected = normalised[:, :, k + 1] - normalised[:, :, k]
        assert torch.allclose(out[:, :, 3 * k : 3 * k + 3], expected, atol=1e-5)
    flipped = D.rgbdiff_input(frames, D.SpatialParams(64, 0, 0, 64, flip=True))
    assert torch.allclose(flipped, out.flip(-1))


def test_rgbdiff_stack_is_an_argument() -> None:
    frames = torch.randint(0, 256, (1, 2, 3, 8, 8, 3), dtype=torch.uint8)
    out = D.RGBDiffInput(stack=2)(frames, D.SpatialParams(8, 0, 0, 8, flip=False))
    assert out.shape == (1, 2, 6, 8, 8)


def test_flow_layout_interleaves_x_y_and_flip_negates_x() -> None:
    flow_x = torch.randint(0, 256, (2, 3, 5, 32, 32), dtype=torch.uint8)
    flow_y = torch.randint(0, 256, (2, 3, 5, 32, 32), dtype=torch.uint8)
    plain = D.FlowInput()(flow_x, flow_y, D.SpatialParams(32, 0, 0, 32, flip=False))
    assert plain.shape == (2, 3, 10, 32, 32)
    assert torch.allclose(plain[:, :, 0::2], flow_x.float() / 127.5 - 1)
    assert torch.allclose(plain[:, :, 1::2], flow_y.float() / 127.5 - 1)
    flipped = D.flow_input(flow_x, flow_y, D.SpatialParams(32, 0, 0, 32, flip=True))
    assert torch.allclose(flipped[:, :, 0::2], -plain[:, :, 0::2].flip(-1))
    assert torch.allclose(flipped[:, :, 1::2], plain[:, :, 1::2].flip(-1))


def test_policy_input_takes_evenly_spaced_frames_at_low_resolution() -> None:
    recognition = torch.arange(8.0).view(1, 8, 1, 1, 1).expand(2, 8, 3, 16, 16)
    out = D.PolicyInput(frames=4, size=8)(recognition)
    assert out.shape == (2, 4, 3, 8, 8)
    assert out[0, :, 0, 0, 0].tolist() == [0.0, 2.0, 5.0, 7.0]
    with pytest.raises(ValueError, match=r"recognition: expected .* F >= frames=9"):
        D.policy_input(recognition, 9, 8)


@pytest.mark.parametrize(
    ("transform", "args", "message"),
    [
        (D.RGBInput(), (torch.zeros(2, 8, 8, 3, dtype=torch.uint8),), r"frames: expected \(T, F"),
        (D.RGBDiffInput(), (torch.zeros(1, 1, 5, 8, 8, 3, dtype=torch.uint8),), "T, F, 6"),
        (
            D.FlowInput(),
            (torch.zeros(1, 1, 4, 8, 8, dtype=torch.uint8),) * 2,
            r"flow_x, flow_y: expected equal shapes \(T, F, 5, H, W\)",
        ),
    ],
)
def test_visual_inputs_reject_wrong_shapes(transform, args, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=message):
        transform(*args, D.SpatialParams(8, 0, 0, 8, False))


def test_apply_spatial_rejects_frames_that_are_not_4d() -> None:
    with pytest.raises(ValueError, match=r"frames: expected \(N, C, H, W\), got shape \(8, 8\)"):
        D.apply_spatial(torch.zeros(8, 8), D.SpatialParams(8, 0, 0, 8, False))
