"""Tests of examples/adamml/data/sampling.py: TSN segments, frame indices, audio windows."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "adamml"))

import data as D


@given(
    num_frames=st.integers(1, 400),
    segments=st.integers(1, 12),
    span=st.integers(1, 40),
    train=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_segments_stay_in_the_video_and_in_their_region(
    num_frames: int, segments: int, span: int, train: bool, seed: int
) -> None:
    generator = torch.Generator().manual_seed(seed)
    starts = D.segment_starts(num_frames, segments, span, train=train, generator=generator)
    assert starts.shape == (segments,)
    assert starts.min() >= 0 and starts.max() <= max(num_frames - span, 0)
    region = num_frames / segments
    if region >= span:
        index = torch.arange(segments)
        assert (starts >= (index * region).floor()).all()
        assert (starts + span <= ((index + 1) * region).ceil()).all()


def test_test_sampling_is_centred_and_training_sampling_is_seeded() -> None:
    starts = D.segment_starts(100, 5, 10, train=False)
    assert starts.tolist() == [5, 25, 45, 65, 85]  # region 20, slack 10, offset 5
    first = D.segment_starts(100, 5, 10, train=True, generator=torch.Generator().manual_seed(1))
    again = D.segment_starts(100, 5, 10, train=True, generator=torch.Generator().manual_seed(1))
    assert torch.equal(first, again)
    draws = torch.stack([D.segment_starts(100, 5, 10, train=True) for _ in range(200)])
    assert draws.unique().numel() > 20


def test_segment_starts_reject_non_positive_sizes() -> None:
    with pytest.raises(ValueError, match="must be >= 1, got 0, 5, 10"):
        D.segment_starts(0, 5, 10, train=False)


def test_frame_indices_use_the_stride_and_loop_short_clips() -> None:
    indices = D.frame_indices(torch.tensor([0, 10]), 4, 3, 12)
    assert indices.tolist() == [[0, 3, 6, 9], [10, 1, 4, 7]]
    stacked = D.stacked_indices(torch.tensor([[10]]), 3, 12)
    assert stacked.tolist() == [[[10, 11, 0]]]


def test_audio_window_is_centred_on_the_sampled_frames() -> None:
    windows = D.audio_windows(torch.tensor([[10, 12, 14, 16]]), 10.0, 1.28)
    start, length = windows[0]
    assert length == 1.28
    assert start + length / 2 == pytest.approx((10 + 17) / 2 / 10)


def test_segment_centre_is_the_middle_of_the_sampled_frames() -> None:
    centres = D.segment_centres(torch.tensor([[0, 2, 4, 6], [10, 12, 14, 16]]), 10.0)
    assert centres.dtype == torch.float64
    assert centres.tolist() == [0.35, 1.35]


def test_window_spans_cover_the_video_with_a_last_window_aligned_to_its_end() -> None:
    assert D.window_spans(80, 8.0, None, None) == [(0, 80)]
    assert D.window_spans(80, 8.0, 4.0, 3.0) == [(0, 32), (24, 32), (48, 32)]
    assert D.window_spans(84, 8.0, 5.0, None) == [(0, 40), (40, 40), (44, 40)]
    assert D.window_spans(10, 8.0, 5.0, None) == [(0, 10)]


def test_window_indices_are_the_test_sampling_of_the_window_shifted_to_its_start() -> None:
    window = D.window_indices(40, 40, 4, 7, 4, 2)
    starts = D.segment_starts(40, 4, 7, train=False)
    assert torch.equal(window, D.frame_indices(starts, 4, 2, 40) + 40)
    assert window.shape == (4, 4) and int(window.min()) >= 40 and int(window.max()) < 80
