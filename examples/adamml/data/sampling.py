"""TSN sampling (AdaMML §4.1, supplementary B): segment starts, frame indices, audio windows,
and the windows of a long video that ``predict.py`` predicts one by one.

Every function takes plain sizes and returns index tensors, so it can drive any decoder.
"""

from __future__ import annotations

import torch


def segment_starts(
    num_frames: int,
    num_segments: int,
    span: int,
    *,
    train: bool,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """First frame of each segment, TSN style (AdaMML supplementary B).

    The video is cut into ``num_segments`` equal regions; a segment of ``span`` frames starts
    at a random offset in its region when training, and is centred in it at test. A segment
    longer than its region is kept inside the video; a video shorter than ``span`` starts
    every segment at 0 (frames then loop, see :func:`frame_indices`).

    Args:
        num_frames: frames in the video.
        num_segments: T.
        span: frames one segment covers.
        train: random offsets (True) or centred (False).
        generator: randomness for the offsets.

    Returns:
        starts: (T,) int64.

    Raises:
        ValueError: a non-positive argument.
    """
    if num_frames < 1 or num_segments < 1 or span < 1:
        raise ValueError(
            f"num_frames, num_segments and span must be >= 1, got {num_frames}, "
            f"{num_segments}, {span}"
        )
    edges = torch.arange(num_segments + 1, dtype=torch.float64) * num_frames / num_segments
    edges = edges.floor().long()
    region_start = edges[:-1]
    slack = (edges[1:] - region_start - span).clamp(min=0)
    if train:
        offset = torch.rand(num_segments, generator=generator, dtype=torch.float64) * (slack + 1)
        offset = offset.floor().long()
    else:
        offset = slack // 2
    starts = region_start + offset
    return starts.clamp(min=0, max=max(num_frames - span, 0))


def frame_indices(
    starts: torch.Tensor, frames_per_segment: int, stride: int, num_frames: int
) -> torch.Tensor:
    """Frames sampled per segment; indices past the end loop back to the start.

    Looping (rather than repeating the last frame) keeps motion in RGBDiff/flow of clips
    shorter than the sampled span.

    Args:
        starts: (T,) first frame per segment.
        frames_per_segment: F.
        stride: distance between sampled frames.
        num_frames: frames in the video.

    Returns:
        indices: (T, F) int64 in ``[0, num_frames)``.
    """
    offsets = torch.arange(frames_per_segment) * stride
    return (starts[:, None] + offsets[None, :]) % num_frames


def stacked_indices(indices: torch.Tensor, count: int, num_frames: int) -> torch.Tensor:
    """``count`` consecutive frames from each sampled frame, looping past the end.

    Args:
        indices: (T, F).
        count: frames per stack (6 for 5 RGB differences, 5 for 5 flow pairs).
        num_frames: frames in the video.

    Returns:
        (T, F, count) int64.
    """
    return (indices[..., None] + torch.arange(count)) % num_frames


def segment_centres(indices: torch.Tensor, fps: float) -> torch.Tensor:
    """Time of the middle of each segment's sampled frames.

    Args:
        indices: (T, F) sampled frames.
        fps: video frame rate.

    Returns:
        (T,) float64 seconds.
    """
    return (indices[:, 0].double() + indices[:, -1].double() + 1) / 2 / fps


def audio_windows(indices: torch.Tensor, fps: float, seconds: float) -> list[tuple[float, float]]:
    """``(start, duration)`` of the audio window centred on each segment's sampled frames.

    Args:
        indices: (T, F) sampled frames.
        fps: video frame rate.
        seconds: window length (paper: 1.28 s).

    Returns:
        T windows in seconds; starts may be negative or past the end (padded with silence).
    """
    return [(float(c) - seconds / 2, seconds) for c in segment_centres(indices, fps)]


def window_spans(
    num_frames: int, fps: float, window_seconds: float | None, stride_seconds: float | None
) -> list[tuple[int, int]]:
    """``(first frame, frame count)`` of each window of a video; one for the whole video when
    ``window_seconds`` is None.

    Windows start every ``stride_seconds`` (default: ``window_seconds``, back to back); when
    they do not reach the end, a last window is aligned with it, so every frame is in some
    window.
    """
    if window_seconds is None:
        return [(0, num_frames)]
    length = max(1, min(num_frames, round(window_seconds * fps)))
    stride = max(1, round((stride_seconds or window_seconds) * fps))
    starts = list(range(0, num_frames - length + 1, stride))
    if starts[-1] + length < num_frames:
        starts.append(num_frames - length)
    return [(start, length) for start in starts]


def window_indices(
    first: int, count: int, num_segments: int, span: int, frames_per_segment: int, stride: int
) -> torch.Tensor:
    """``(T, F)`` frames sampled in the window ``[first, first + count)`` as at test: centred TSN
    segments (:func:`segment_starts` with ``train=False``, then :func:`frame_indices`)."""
    starts = segment_starts(count, num_segments, span, train=False)
    return frame_indices(starts, frames_per_segment, stride, count) + first
