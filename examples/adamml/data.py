"""Data pipeline of the AdaMML example: list files, TSN sampling, PyAV decoding, inputs.

Each step is a small function you can reuse on your own data (pytorchvideo style):

* list files: :func:`read_classes`, :func:`parse_list_line`, :func:`parse_list_file`;
* sampling (TSN, AdaMML §4.1 and supplementary B): :func:`segment_starts`, :func:`frame_indices`;
* decoding: :func:`probe_media`, :func:`decode_video_frames` (seeks, decodes only what is
  sampled), :func:`decode_audio` (mono, resampled with PyAV), :func:`read_frame_folder`;
* per-modality inputs: :func:`sample_spatial`, :func:`rgb_input`, :func:`rgbdiff_input`,
  :func:`flow_input`, :func:`policy_input`, :func:`log_spectrogram`;
* :class:`VideoDataset`, :func:`collate` and :class:`SkipReport` tie them together.

Two source layouts are read (see ``docs/data.md``):

* video files (mp4/mkv/webm with an audio track): list lines ``path label``;
* frame folders (the reference implementation's layout): list lines
  ``path start_frame end_frame label`` with ``{:05d}.jpg`` RGB frames, ``x_{:05d}.jpg`` /
  ``y_{:05d}.jpg`` TV-L1 flow, and ``audio.wav`` inside the folder (or ``<folder>.wav``).

Labels are integers or class names from ``classes.txt``; ``3,7`` is a multi-label line.

Run ``python examples/adamml/data.py inspect LIST --data-root DIR`` to check your own data.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import torch
import torch.nn.functional as F
from av.video.reformatter import VideoReformatter
from torch.utils.data import Dataset

VISUAL_MODALITIES = ("rgb", "rgbdiff", "flow")
MODALITIES = (*VISUAL_MODALITIES, "audio")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Reference layout: TV-L1 flow clipped to [-20, 20] px and stored as 0-255 JPEG.
FLOW_BOUND = 20.0
# AdaMML supplementary B: RGBDiff and flow stack 5 consecutive differences / x-y pairs.
STACK = 5
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DataConfig:
    """Sizes of every input; :meth:`paper` and :meth:`demo` are the two presets.

    Attributes:
        modalities: recognition inputs, any of ``rgb``, ``rgbdiff``, ``flow``, ``audio``.
        policy_modalities: visual inputs the policy sees at low resolution (key
            ``policy_<m>``); the policy reads the ``audio`` spectrogram as is (AdaMML §4.1).
        num_segments: T while training (paper: 5).
        test_segments: T at test (paper: 10).
        frames_per_segment: F frames per segment (paper: 8).
        frame_stride: distance between sampled frames (paper: 4, i.e. 8 of 32 frames).
        policy_frames: frames per segment for the policy, taken evenly from the F (paper: 4).
        crop_size: recognition crop (paper: 224).
        policy_size: policy resolution (paper: 160).
        resize_range: training short side drawn from ``[low, high)`` (paper: 256-320).
        test_resize: short side at test before the centre crop (paper: 256).
        sample_rate: audio rate after resampling (paper: 24 kHz).
        audio_seconds: spectrogram window centred on the segment (paper: 1.28 s).
        stft_window_ms: STFT window (paper: 10 ms).
        stft_hop_ms: STFT hop (paper: 5 ms).
        n_freq: frequency bins; ``n_fft = 2 * (n_freq - 1)`` (paper: 256 -> n_fft 510).
        frame_folder_fps: frame rate of a frame folder without ``meta.json``.
    """

    modalities: tuple[str, ...] = ("rgb", "audio")
    policy_modalities: tuple[str, ...] = ("rgb",)
    num_segments: int = 5
    test_segments: int = 10
    frames_per_segment: int = 8
    frame_stride: int = 4
    policy_frames: int = 4
    crop_size: int = 224
    policy_size: int = 160
    resize_range: tuple[int, int] = (256, 320)
    test_resize: int = 256
    sample_rate: int = 24000
    audio_seconds: float = 1.28
    stft_window_ms: float = 10.0
    stft_hop_ms: float = 5.0
    n_freq: int = 256
    frame_folder_fps: float = 30.0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        for name in ("modalities", "policy_modalities"):
            unknown = set(getattr(self, name)) - set(MODALITIES)
            if unknown:
                raise ValueError(f"{name}: unknown modalities {sorted(unknown)}, use {MODALITIES}")
        if "audio" in self.policy_modalities:
            raise ValueError("policy_modalities: the policy reads the 'audio' input directly")
        if not 0 < self.policy_frames <= self.frames_per_segment:
            raise ValueError(
                f"policy_frames must be in [1, frames_per_segment={self.frames_per_segment}], "
                f"got {self.policy_frames}"
            )
        low, high = self.resize_range
        if not self.crop_size <= low <= high or self.test_resize < self.crop_size:
            raise ValueError(
                f"resize_range={self.resize_range} and test_resize={self.test_resize} must be "
                f">= crop_size={self.crop_size}"
            )
        if self.stft_win_length > self.n_fft:
            raise ValueError(
                f"stft_window_ms={self.stft_window_ms} is {self.stft_win_length} samples at "
                f"{self.sample_rate} Hz, more than n_fft={self.n_fft} (n_freq={self.n_freq})"
            )

    @classmethod
    def paper(cls, **overrides: Any) -> DataConfig:
        """Inputs of AdaMML §4.1: 8×224² RGB, 4×160² policy frames, 256×256 spectrogram."""
        return replace(cls(), **overrides)

    @classmethod
    def demo(cls, **overrides: Any) -> DataConfig:
        """Small inputs for the generated demo set, sized for CPU training in minutes.

        4 frames with stride 2 (1 s at the demo's 8 fps) cropped to 64², 2 policy frames at
        48², and a 64×64 spectrogram of 1.28 s at 4 kHz (30 ms window, 20 ms hop).
        """
        demo = cls(
            num_segments=5,
            test_segments=5,
            frames_per_segment=4,
            frame_stride=2,
            policy_frames=2,
            crop_size=64,
            policy_size=48,
            resize_range=(64, 80),
            test_resize=64,
            sample_rate=4000,
            stft_window_ms=30.0,
            stft_hop_ms=20.0,
            n_freq=64,
        )
        return replace(demo, **overrides)

    @property
    def n_fft(self) -> int:
        return 2 * (self.n_freq - 1)

    @property
    def stft_win_length(self) -> int:
        return round(self.sample_rate * self.stft_window_ms / 1000)

    @property
    def stft_hop_length(self) -> int:
        return round(self.sample_rate * self.stft_hop_ms / 1000)

    @property
    def n_time(self) -> int:
        """Spectrogram time frames: ``audio_seconds / hop`` (paper: 1.28 s / 5 ms = 256)."""
        return round(self.audio_seconds * 1000 / self.stft_hop_ms)

    @property
    def span(self) -> int:
        """Frames one segment covers, including the 5 extra frames RGBDiff/flow stack."""
        extra = STACK if {"rgbdiff", "flow"} & set(self.modalities + self.policy_modalities) else 0
        return (self.frames_per_segment - 1) * self.frame_stride + 1 + extra


# --------------------------------------------------------------------------------------------
# List files
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VideoRecord:
    """One list-file line.

    Attributes:
        path: video file or frame folder, relative to the data root.
        labels: class indices (one for single-label data).
        line: ``list.txt:12`` — where the record came from, for messages.
        start_frame: first frame of a frame folder (``None`` for video files).
        end_frame: last frame of a frame folder, inclusive.
    """

    path: str
    labels: tuple[int, ...]
    line: str
    start_frame: int | None = None
    end_frame: int | None = None

    @property
    def is_frame_folder(self) -> bool:
        return self.start_frame is not None

    @property
    def video_id(self) -> str:
        return self.path


def read_classes(path: str | Path) -> list[str]:
    """Read ``classes.txt``: one class name per line, the line order is the label index.

    Raises:
        ValueError: a name appears twice.
    """
    names = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicates:
        raise ValueError(f"{path}: duplicate class names {duplicates}")
    return names


def _parse_labels(text: str, where: str, classes: Sequence[str] | None) -> tuple[int, ...]:
    labels = []
    for token in text.replace(";", ",").split(","):
        token = token.strip()
        if not token:
            raise ValueError(f"{where}: empty label in {text!r}")
        if token.lstrip("-").isdigit():
            index = int(token)
        elif classes is not None and token in classes:
            index = list(classes).index(token)
        else:
            raise ValueError(f"{where}: unknown label {token!r}")
        if index < 0 or (classes is not None and index >= len(classes)):
            limit = f"[0, {len(classes)})" if classes is not None else ">= 0"
            raise ValueError(f"{where}: label {index} out of range {limit}")
        labels.append(index)
    return tuple(labels)


def parse_list_line(
    fields: Sequence[str], where: str, classes: Sequence[str] | None = None
) -> VideoRecord:
    """Parse the fields of one list line: ``path label`` or ``path start end label``.

    Args:
        fields: the line split on whitespace (or a CSV row).
        where: ``file:line`` used in error messages.
        classes: class names; names in the label field map to their index.

    Returns:
        The record.

    Raises:
        ValueError: wrong field count, non-integer frame numbers, unknown or out-of-range label;
            the message starts with ``where``.
    """
    fields = [f.strip() for f in fields]
    if len(fields) == 2:
        return VideoRecord(fields[0], _parse_labels(fields[1], where, classes), where)
    if len(fields) == 4:
        path, start, end, label = fields
        if not (start.isdigit() and end.isdigit()):
            raise ValueError(f"{where}: start/end frames must be integers, got {start!r} {end!r}")
        if int(end) < int(start):
            raise ValueError(f"{where}: end_frame {end} < start_frame {start}")
        return VideoRecord(path, _parse_labels(label, where, classes), where, int(start), int(end))
    raise ValueError(
        f"{where}: expected 'path label' or 'path start_frame end_frame label', "
        f"got {len(fields)} fields: {' '.join(fields)!r}"
    )


def parse_list_file(
    path: str | Path, classes: Sequence[str] | None = None, *, strict: bool = True
) -> tuple[list[VideoRecord], list[str]]:
    """Read a list file (whitespace-separated, or CSV when it ends in ``.csv``).

    Blank lines and lines starting with ``#`` are ignored; a CSV header whose last column is
    ``label``/``labels`` is skipped.

    Args:
        path: the list file.
        classes: class names for name labels and range checks.
        strict: raise on the first malformed line instead of collecting it.

    Returns:
        ``(records, errors)``; ``errors`` holds one message per skipped line.

    Raises:
        ValueError: with ``strict``, the first malformed line (message names ``file:line``).
    """
    path = Path(path)
    text = path.read_text().splitlines()
    rows: Iterable[list[str]]
    rows = csv.reader(text) if path.suffix == ".csv" else (line.split() for line in text)
    records, errors = [], []
    for number, fields in enumerate(rows, start=1):
        if not fields or fields[0].strip().startswith("#"):
            continue
        if path.suffix == ".csv" and number == 1 and fields[-1].strip() in ("label", "labels"):
            continue
        try:
            records.append(parse_list_line(fields, f"{path.name}:{number}", classes))
        except ValueError as error:
            if strict:
                raise
            errors.append(str(error))
    return records, errors


# --------------------------------------------------------------------------------------------
# Sampling (TSN)
# --------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------
class BadVideoError(ValueError):
    """A video that cannot be loaded; the dataset skips it unless ``strict``."""


@dataclass
class MediaInfo:
    """What :func:`probe_media` reads from a container or frame folder.

    Attributes:
        num_frames: video frames (from the header, or duration × fps).
        fps: frames per second.
        duration: seconds.
        width: frame width.
        height: frame height.
        audio_rate: audio sample rate, ``None`` without an audio track.
        audio_channels: audio channels (0 without audio).
    """

    num_frames: int
    fps: float
    duration: float
    width: int
    height: int
    audio_rate: int | None
    audio_channels: int


def open_media(path: str | Path) -> av.container.InputContainer:
    """``av.open`` that raises :class:`BadVideoError` for a missing or unreadable file."""
    try:
        return av.open(str(path))
    except FileNotFoundError as error:
        raise BadVideoError(f"missing file {path}") from error
    except av.FFmpegError as error:
        raise BadVideoError(f"cannot open {path}: {error}") from error


def probe_media(container: av.container.InputContainer) -> MediaInfo:
    """Frame count, fps, size and audio rate of an open container.

    Args:
        container: from ``av.open``.

    Returns:
        The :class:`MediaInfo`.

    Raises:
        BadVideoError: no video stream, or no usable frame rate / frame count.
    """
    if not container.streams.video:
        raise BadVideoError(f"{container.name}: no video stream")
    stream = container.streams.video[0]
    rate = stream.average_rate or stream.guessed_rate
    if not rate:
        raise BadVideoError(f"{container.name}: unknown frame rate")
    fps = float(rate)
    if stream.duration is not None and stream.time_base is not None:
        duration = float(stream.duration * stream.time_base)
    elif container.duration is not None:
        duration = container.duration / av.time_base
    else:
        duration = 0.0
    # mkv/webm headers carry no frame count; flooring the estimate never asks for a frame
    # past the end.
    num_frames = stream.frames or int(duration * fps + 1e-6)
    if num_frames < 1:
        raise BadVideoError(f"{container.name}: no video frames")
    audio = container.streams.audio[0] if container.streams.audio else None
    return MediaInfo(
        num_frames=num_frames,
        fps=fps,
        duration=duration or num_frames / fps,
        width=stream.codec_context.width,
        height=stream.codec_context.height,
        audio_rate=audio.codec_context.sample_rate if audio is not None else None,
        audio_channels=audio.codec_context.channels if audio is not None else 0,
    )


def downscaled_size(width: int, height: int, short_side: int | None) -> tuple[int, int]:
    """``(width, height)`` scaled down to ``short_side`` (even, aspect kept); never upscaled."""
    if short_side is None or min(width, height) <= short_side:
        return width, height
    scale = short_side / min(width, height)
    return max(2, round(width * scale / 2) * 2), max(2, round(height * scale / 2) * 2)


def decode_video_frames(
    container: av.container.InputContainer,
    indices: Iterable[int],
    *,
    seek: bool = True,
    short_side: int | None = None,
) -> dict[int, np.ndarray]:
    """Decode the listed frames of the first video stream, seeking between far-apart runs.

    Indices are grouped into runs; each run starts with a seek to the keyframe before it and
    decodes forward to its last index, so a long video costs about T × (half a GOP + span)
    frames instead of all of them. Only the listed frames are converted to RGB.

    Args:
        container: from ``av.open``.
        indices: frame numbers (0-based, in presentation order); duplicates are fine.
        seek: seek between runs; ``False`` decodes the stream from the start.
        short_side: downscale frames whose short side is larger (keeps the aspect ratio).

    Returns:
        ``{index: (H, W, 3) uint8}`` for every listed index.

    Raises:
        BadVideoError: the stream is corrupt or ends before a listed frame (truncated file).
    """
    wanted = sorted(set(indices))
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    fps = Fraction(stream.average_rate or stream.guessed_rate)
    time_base = stream.time_base
    start_pts = stream.start_time or 0
    width, height = downscaled_size(
        stream.codec_context.width, stream.codec_context.height, short_side
    )
    # Seek again only when the next frame is further away than a typical GOP (~2 s): closer
    # frames are reached faster by decoding on.
    gap = max(int(2 * fps), 32)
    runs: list[list[int]] = []
    for index in wanted:
        if runs and (not seek or index - runs[-1][-1] <= gap):
            runs[-1].append(index)
        else:
            runs.append([index])
    frames: dict[int, np.ndarray] = {}
    # One reformatter keeps its scaling context across frames; a fresh one per frame costs
    # several times the conversion itself at 720p.
    reformatter = VideoReformatter()
    try:
        for run in runs:
            target = set(run)
            if seek:
                pts = start_pts + int(run[0] / fps / time_base)
                container.seek(pts, stream=stream, backward=True, any_frame=False)
            else:
                container.seek(0)
            for frame in container.decode(stream):
                if frame.pts is None:
                    continue
                index = round((frame.pts - start_pts) * time_base * fps)
                if index in target:
                    rgb = reformatter.reformat(
                        frame, format="rgb24", width=width, height=height, interpolation="AREA"
                    )
                    frames[index] = rgb.to_ndarray()
                if index >= run[-1]:
                    break
    except av.FFmpegError as error:
        raise BadVideoError(f"{container.name}: decoding failed: {error}") from error
    missing = [i for i in wanted if i not in frames]
    if missing:
        raise BadVideoError(
            f"{container.name}: frames {missing[:3]}{'...' if len(missing) > 3 else ''} "
            f"could not be decoded (truncated or corrupt file?)"
        )
    return frames


def decode_audio(
    container: av.container.InputContainer,
    windows: Sequence[tuple[float, float]],
    sample_rate: int,
) -> list[np.ndarray]:
    """Mono waveforms for time windows, resampled with PyAV (``av.AudioResampler``).

    Parts of a window outside the audio track are zeros (silence).

    Args:
        container: from ``av.open``; must have an audio stream.
        windows: ``(start_seconds, duration_seconds)`` per window.
        sample_rate: output rate in Hz.

    Returns:
        One float32 array of ``round(duration * sample_rate)`` samples per window, in [-1, 1].

    Raises:
        BadVideoError: no audio stream or a decoding error.
    """
    if not container.streams.audio:
        raise BadVideoError(f"{container.name}: no audio stream")
    stream = container.streams.audio[0]
    outputs = []
    try:
        for start, duration in windows:
            length = round(duration * sample_rate)
            out = np.zeros(length, dtype=np.float32)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
            if stream.time_base is not None:
                container.seek(max(int(start / stream.time_base), 0), stream=stream, backward=True)
            first_time: float | None = None
            chunks: list[np.ndarray] = []
            collected = 0
            for frame in container.decode(stream):
                if first_time is None:
                    first_time = frame.time if frame.time is not None else 0.0
                for resampled in resampler.resample(frame):
                    chunk = resampled.to_ndarray().reshape(-1)
                    chunks.append(chunk)
                    collected += chunk.size
                if first_time + collected / sample_rate >= start + duration:
                    break
            for resampled in resampler.resample(None):
                chunks.append(resampled.to_ndarray().reshape(-1))
            if chunks and first_time is not None:
                samples = np.concatenate(chunks)
                offset = round((start - first_time) * sample_rate)
                source_lo, dest_lo = max(offset, 0), max(-offset, 0)
                count = max(min(samples.size - source_lo, length - dest_lo), 0)
                out[dest_lo : dest_lo + count] = samples[source_lo : source_lo + count]
            outputs.append(out)
    except av.FFmpegError as error:
        raise BadVideoError(f"{container.name}: audio decoding failed: {error}") from error
    return outputs


def _read_jpeg(path: Path, gray: bool) -> np.ndarray:
    # Pillow is installed with matplotlib (the ``examples`` extra).
    from PIL import Image

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("L" if gray else "RGB"))
    except FileNotFoundError as error:
        raise BadVideoError(f"missing frame {path}") from error
    except OSError as error:
        raise BadVideoError(f"corrupt frame {path}: {error}") from error


def read_frame_folder(
    folder: Path, indices: Iterable[int], template: str = "{:05d}.jpg", gray: bool = False
) -> dict[int, np.ndarray]:
    """Read frames of the reference frame-folder layout.

    Args:
        folder: the video's folder.
        indices: frame numbers as written in the file names.
        template: ``{:05d}.jpg`` (RGB), ``x_{:05d}.jpg`` / ``y_{:05d}.jpg`` (flow).
        gray: read single-channel images (flow).

    Returns:
        ``{index: (H, W, 3) or (H, W) uint8}``.

    Raises:
        BadVideoError: a missing or corrupt image.
    """
    return {i: _read_jpeg(folder / template.format(i), gray) for i in sorted(set(indices))}


def frame_folder_audio(folder: Path) -> Path | None:
    """The audio file of a frame folder: ``audio.wav`` inside it or ``<folder>.wav`` beside it."""
    for candidate in (folder / "audio.wav", folder.with_suffix(".wav"), folder / "audio.m4a"):
        if candidate.exists():
            return candidate
    return None


# --------------------------------------------------------------------------------------------
# Per-modality inputs
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SpatialParams:
    """One draw of the spatial augmentation, shared by every frame and modality of an item.

    Attributes:
        short_side: the frame's short side is resized to this.
        top: crop offset after resizing.
        left: crop offset after resizing.
        size: crop size.
        flip: mirror horizontally.
    """

    short_side: int
    top: int
    left: int
    size: int
    flip: bool


def sample_spatial(
    height: int,
    width: int,
    config: DataConfig,
    *,
    train: bool,
    generator: torch.Generator | None = None,
) -> SpatialParams:
    """Random short-side resize in ``resize_range``, random crop and flip; centre crop at test.

    Args:
        height: source frame height.
        width: source frame width.
        config: sizes.
        train: random (True) or centred (False).
        generator: randomness.

    Returns:
        The parameters for :func:`apply_spatial`.
    """
    if train:
        low, high = config.resize_range
        short = int(torch.randint(low, max(high, low + 1), (1,), generator=generator))
    else:
        short = config.test_resize
    new_h, new_w = _scaled_size(height, width, short)
    size = config.crop_size
    if train:
        top = int(torch.randint(0, new_h - size + 1, (1,), generator=generator))
        left = int(torch.randint(0, new_w - size + 1, (1,), generator=generator))
        flip = bool(torch.rand((), generator=generator) < 0.5)
    else:
        top, left, flip = (new_h - size) // 2, (new_w - size) // 2, False
    return SpatialParams(short, top, left, size, flip)


def _scaled_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    scale = short_side / min(height, width)
    return max(short_side, round(height * scale)), max(short_side, round(width * scale))


def apply_spatial(frames: torch.Tensor, params: SpatialParams) -> torch.Tensor:
    """Resize, crop and flip frames.

    Args:
        frames: (N, C, H, W) float.
        params: from :func:`sample_spatial`.

    Returns:
        (N, C, size, size).

    Raises:
        ValueError: ``frames`` is not 4-D.
    """
    if frames.dim() != 4:
        raise ValueError(f"frames: expected (N, C, H, W), got shape {tuple(frames.shape)}")
    new_h, new_w = _scaled_size(frames.shape[-2], frames.shape[-1], params.short_side)
    if (new_h, new_w) != tuple(frames.shape[-2:]):
        frames = F.interpolate(
            frames, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True
        )
    rows = slice(params.top, params.top + params.size)
    cols = slice(params.left, params.left + params.size)
    frames = frames[..., rows, cols]
    return frames.flip(-1) if params.flip else frames


def _to_float(frames: torch.Tensor) -> torch.Tensor:
    """(..., H, W, 3) uint8 -> (N, 3, H, W) float in [0, 1]."""
    return frames.reshape(-1, *frames.shape[-3:]).permute(0, 3, 1, 2).float() / 255


def _normalize(frames: torch.Tensor, config: DataConfig) -> torch.Tensor:
    mean = torch.tensor(config.mean).view(3, 1, 1)
    std = torch.tensor(config.std).view(3, 1, 1)
    return (frames - mean) / std


def rgb_input(frames: torch.Tensor, params: SpatialParams, config: DataConfig) -> torch.Tensor:
    """RGB input: resize/crop/flip, then ImageNet normalisation.

    Args:
        frames: (T, F, H, W, 3) uint8.
        params: spatial augmentation.
        config: mean/std.

    Returns:
        (T, F, 3, S, S) float.

    Raises:
        ValueError: ``frames`` is not (T, F, H, W, 3).
    """
    if frames.dim() != 5 or frames.shape[-1] != 3:
        raise ValueError(f"frames: expected (T, F, H, W, 3), got shape {tuple(frames.shape)}")
    out = _normalize(apply_spatial(_to_float(frames), params), config)
    return out.reshape(*frames.shape[:2], *out.shape[1:])


def rgbdiff_input(frames: torch.Tensor, params: SpatialParams, config: DataConfig) -> torch.Tensor:
    """RGB difference: 5 differences of consecutive frames stacked as 15 channels.

    For sampled frame ``f`` the channels are ``[x(f+1)-x(f), x(f+2)-x(f+1), ...]``, each an
    RGB triple (AdaMML supplementary B, following TSN). Differences are taken of normalised
    frames, so they are on the RGB input's scale; a flip mirrors them, signs are unchanged.

    Args:
        frames: (T, F, 6, H, W, 3) uint8 — each sampled frame and the 5 after it.
        params: spatial augmentation.
        config: mean/std.

    Returns:
        (T, F, 15, S, S) float.

    Raises:
        ValueError: ``frames`` is not (T, F, 6, H, W, 3).
    """
    if frames.dim() != 6 or frames.shape[2] != STACK + 1 or frames.shape[-1] != 3:
        raise ValueError(
            f"frames: expected (T, F, {STACK + 1}, H, W, 3), got shape {tuple(frames.shape)}"
        )
    out = _normalize(apply_spatial(_to_float(frames), params), config)
    out = out.reshape(*frames.shape[:3], *out.shape[1:])
    diff = out[:, :, 1:] - out[:, :, :-1]
    return diff.flatten(2, 3)


def flow_input(flow_x: torch.Tensor, flow_y: torch.Tensor, params: SpatialParams) -> torch.Tensor:
    """Optical flow: 5 x/y pairs interleaved as 10 channels ``[x0, y0, x1, y1, ...]``.

    JPEG values 0-255 map linearly to [-1, 1] (i.e. [-20, 20] px / 20). A horizontal flip
    mirrors the image and negates x, since motion to the right becomes motion to the left.

    Args:
        flow_x: (T, F, 5, H, W) uint8 horizontal flow.
        flow_y: (T, F, 5, H, W) uint8 vertical flow.
        params: spatial augmentation.

    Returns:
        (T, F, 10, S, S) float.

    Raises:
        ValueError: shapes differ or are not (T, F, 5, H, W).
    """
    if flow_x.shape != flow_y.shape or flow_x.dim() != 5 or flow_x.shape[2] != STACK:
        raise ValueError(
            f"flow_x, flow_y: expected equal shapes (T, F, {STACK}, H, W), got "
            f"{tuple(flow_x.shape)} and {tuple(flow_y.shape)}"
        )
    pairs = torch.stack([flow_x, flow_y], dim=3).float() / 127.5 - 1
    lead = pairs.shape[:4]
    out = apply_spatial(pairs.reshape(-1, 1, *pairs.shape[-2:]), params)
    out = out.reshape(*lead, *out.shape[-2:])
    if params.flip:
        out = out.clone()
        out[:, :, :, 0] = -out[:, :, :, 0]
    return out.flatten(2, 3)


def policy_input(recognition: torch.Tensor, frames: int, size: int) -> torch.Tensor:
    """Policy input from a recognition input: ``frames`` evenly spaced frames at ``size``².

    AdaMML §4.1: the policy sees the same segment subsampled in time and space
    (8×224² -> 4×160²).

    Args:
        recognition: (T, F, C, S, S).
        frames: frames to keep, taken evenly from F.
        size: output resolution.

    Returns:
        (T, frames, C, size, size).

    Raises:
        ValueError: ``recognition`` is not 5-D or ``frames`` exceeds F.
    """
    if recognition.dim() != 5 or not 0 < frames <= recognition.shape[1]:
        raise ValueError(
            f"recognition: expected (T, F, C, S, S) with F >= frames={frames}, got shape "
            f"{tuple(recognition.shape)}"
        )
    keep = torch.linspace(0, recognition.shape[1] - 1, frames).round().long()
    picked = recognition[:, keep]
    out = F.interpolate(
        picked.flatten(0, 1),
        size=(size, size),
        mode="bilinear",
        align_corners=False,
        antialias=True,
    )
    return out.reshape(*picked.shape[:3], size, size)


def log_spectrogram(waveform: torch.Tensor, config: DataConfig) -> torch.Tensor:
    """Log-power spectrogram ``log(|S|² + 1e-6)`` with ``torch.stft`` (AdaMML supplementary B).

    Paper settings: 24 kHz, 10 ms Hann window (240 samples) zero-padded to ``n_fft = 510`` so
    that there are 256 bins (bin ``k`` is ``k * sample_rate / n_fft`` Hz), 5 ms hop (120
    samples), ``center=True``; 1.28 s gives 257 frames, the last is dropped -> 256×256.

    Args:
        waveform: (N,) mono samples, N = ``config.n_time * hop``.
        config: STFT sizes.

    Returns:
        (1, n_freq, n_time) float: frequency on dim 1 (low to high), time on dim 2.

    Raises:
        ValueError: ``waveform`` is not 1-D.
    """
    if waveform.dim() != 1:
        raise ValueError(f"waveform: expected (N,), got shape {tuple(waveform.shape)}")
    window = torch.hann_window(config.stft_win_length, dtype=waveform.dtype)
    spec = torch.stft(
        waveform,
        n_fft=config.n_fft,
        hop_length=config.stft_hop_length,
        win_length=config.stft_win_length,
        window=window,
        center=True,
        pad_mode="constant",
        return_complex=True,
    )
    power = spec.abs().square()[:, : config.n_time]
    if power.shape[1] < config.n_time:
        power = F.pad(power, (0, config.n_time - power.shape[1]))
    return torch.log(power + 1e-6).unsqueeze(0)


def audio_windows(
    indices: torch.Tensor, fps: float, config: DataConfig
) -> list[tuple[float, float]]:
    """``(start, duration)`` of the audio window centred on each segment's sampled frames.

    Args:
        indices: (T, F) sampled frames.
        fps: video frame rate.
        config: ``audio_seconds``.

    Returns:
        T windows in seconds; starts may be negative or past the end (padded with silence).
    """
    centres = (indices[:, 0].double() + indices[:, -1].double() + 1) / 2 / fps
    return [(float(c) - config.audio_seconds / 2, config.audio_seconds) for c in centres]


# --------------------------------------------------------------------------------------------
# Dataset
# --------------------------------------------------------------------------------------------
@dataclass
class SkipReport:
    """Counts skipped videos and per-video issues (no audio track, looped short clip).

    Feed it every batch from :func:`collate`; print :meth:`summary` at the end of the epoch.
    """

    skipped: Counter[str] = field(default_factory=Counter)
    issues: Counter[str] = field(default_factory=Counter)
    messages: dict[str, str] = field(default_factory=dict)

    def update(self, batch: Mapping[str, Any]) -> None:
        for message in batch.get("skipped", []):
            key = message.split(": ", 1)[0]
            self.skipped[key] += 1
            self.messages.setdefault(key, message)
        for _, issue in batch.get("issues", []):
            self.issues[issue] += 1

    def summary(self) -> str:
        if not self.skipped and not self.issues:
            return "data: no skipped videos"
        parts = [f"data: {sum(self.skipped.values())} loads skipped ({len(self.skipped)} files)"]
        parts += [f"{count} {issue}" for issue, count in sorted(self.issues.items())]
        return ", ".join(parts)


def _as_tensor(frames: Mapping[int, np.ndarray], indices: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(np.stack([frames[int(i)] for i in indices.reshape(-1)])).reshape(
        *indices.shape, *next(iter(frames.values())).shape
    )


class VideoDataset(Dataset[dict[str, Any]]):
    """Videos from a list file as per-modality, per-segment tensors.

    A video that cannot be loaded (missing, corrupt, truncated) is skipped: the dataset warns
    once per file in each process, returns the next loadable video instead, and lists the
    skip under ``"skipped"`` so :class:`SkipReport` can count it. Malformed list lines are
    skipped when the list is read (``list_errors``). With ``strict=True`` all of these raise.

    Item keys (S = crop_size, P = policy_size):

    * ``rgb``: (T, F, 3, S, S); ``rgbdiff``: (T, F, 15, S, S); ``flow``: (T, F, 10, S, S);
    * ``audio``: (T, 1, n_freq, n_time) log-spectrogram;
    * ``policy_<m>``: (T, policy_frames, C, P, P) for ``m`` in ``config.policy_modalities``;
    * ``label``: () int64, or (num_classes,) float multi-hot when ``multi_label``;
    * ``video_id``: the list-file path; ``informative``: ``{modality: (T,) bool}`` when a
      sidecar annotates the video; ``skipped`` and ``issues``: lists (usually empty).

    Args:
        list_file: list file (see :func:`parse_list_file`).
        data_root: directory list paths are relative to.
        config: input sizes; :meth:`DataConfig.paper` or :meth:`DataConfig.demo`.
        train: TSN random sampling and augmentation (True) or centred, deterministic (False).
        classes: class names (``classes.txt``), for name labels and ``num_classes``.
        informative: sidecar JSON of per-segment informative modalities (``make_dataset.py``).
        strict: raise on any bad input instead of skipping it.
        multi_label: multi-hot labels; default: True when any line has several labels.

    Raises:
        ValueError: no usable line, flow requested for video files, or (strict) a bad line.
    """

    def __init__(
        self,
        list_file: str | Path,
        data_root: str | Path,
        config: DataConfig,
        *,
        train: bool,
        classes: Sequence[str] | None = None,
        informative: str | Path | None = None,
        strict: bool = False,
        multi_label: bool | None = None,
    ) -> None:
        self.data_root = Path(data_root)
        self.config = config
        self.train = train
        self.strict = strict
        self.classes = list(classes) if classes is not None else None
        self.records, self.list_errors = parse_list_file(list_file, self.classes, strict=strict)
        for message in self.list_errors:
            warnings.warn(f"skipping list line {message}", stacklevel=2)
        if not self.records:
            raise ValueError(f"list_file: no usable line in {list_file}")
        needs_flow = "flow" in config.modalities + config.policy_modalities
        if needs_flow and any(not r.is_frame_folder for r in self.records):
            raise ValueError(
                "config.modalities: 'flow' needs the frame-folder layout (run prepare.py); "
                f"{list_file} lists video files"
            )
        if self.classes is not None:
            self.num_classes = len(self.classes)
        else:
            self.num_classes = 1 + max(max(r.labels) for r in self.records)
        if multi_label is None:
            multi_label = any(len(r.labels) > 1 for r in self.records)
        self.multi_label = multi_label
        self.annotations: dict[str, Any] = (
            json.loads(Path(informative).read_text())["videos"] if informative else {}
        )
        self._warned: set[str] = set()

    def __len__(self) -> int:
        return len(self.records)

    @property
    def num_segments(self) -> int:
        return self.config.num_segments if self.train else self.config.test_segments

    def __getitem__(self, index: int) -> dict[str, Any]:
        skipped = []
        for attempt in range(len(self.records)):
            record = self.records[(index + attempt) % len(self.records)]
            try:
                item = self.load(record)
            except BadVideoError as error:
                message = f"{record.path}: {error} ({record.line})"
                if self.strict:
                    raise BadVideoError(message) from error
                if record.path not in self._warned:
                    self._warned.add(record.path)
                    warnings.warn(f"skipping video {message}", stacklevel=2)
                skipped.append(message)
                continue
            item["skipped"] = skipped
            return item
        raise BadVideoError(f"no loadable video in the list; first error: {skipped[0]}")

    def load(self, record: VideoRecord, generator: torch.Generator | None = None) -> dict[str, Any]:
        """Load one record (no skipping): sample, decode, build every input.

        Args:
            record: the list line.
            generator: randomness for sampling and augmentation.

        Returns:
            The item dict described in the class docstring (without ``skipped``).

        Raises:
            BadVideoError: the video cannot be loaded.
        """
        config = self.config
        issues: list[str] = []
        path = self.data_root / record.path
        if record.is_frame_folder:
            raw, info = self._load_frame_folder(record, path, generator, issues)
        else:
            raw, info = self._load_video_file(path, generator, issues)
        if self.strict and issues:
            raise BadVideoError(f"{record.path}: {', '.join(issues)}")
        height, width = raw["frames"].shape[-3:-1]
        params = sample_spatial(height, width, config, train=self.train, generator=generator)
        item: dict[str, Any] = {}
        for modality in dict.fromkeys(config.modalities + config.policy_modalities):
            if modality == "rgb":
                item["rgb"] = rgb_input(raw["frames"][:, :, 0], params, config)
            elif modality == "rgbdiff":
                item["rgbdiff"] = rgbdiff_input(raw["frames"], params, config)
            elif modality == "flow":
                item["flow"] = flow_input(raw["flow_x"], raw["flow_y"], params)
            elif modality == "audio":
                item["audio"] = torch.stack(
                    [log_spectrogram(torch.from_numpy(w), config) for w in raw["audio"]]
                )
        for modality in config.policy_modalities:
            item[f"policy_{modality}"] = policy_input(
                item[modality], config.policy_frames, config.policy_size
            )
        for modality in (
            set(item) - set(config.modalities) - {f"policy_{m}" for m in config.policy_modalities}
        ):
            del item[modality]
        if self.multi_label:
            label = torch.zeros(self.num_classes)
            label[list(record.labels)] = 1.0
            item["label"] = label
        else:
            item["label"] = torch.tensor(record.labels[0])
        item["video_id"] = record.video_id
        item["issues"] = [(record.video_id, issue) for issue in issues]
        annotation = self.annotations.get(record.video_id)
        if annotation is not None:
            item["informative"] = _informative(annotation, raw["indices"], info.fps)
        return item

    def _sample(
        self, num_frames: int, generator: torch.Generator | None, issues: list[str]
    ) -> torch.Tensor:
        config = self.config
        if num_frames < config.span:
            issues.append("short_clip_looped")
        starts = segment_starts(
            num_frames, self.num_segments, config.span, train=self.train, generator=generator
        )
        return frame_indices(starts, config.frames_per_segment, config.frame_stride, num_frames)

    def _frame_stack(self) -> int:
        return (
            STACK + 1 if "rgbdiff" in self.config.modalities + self.config.policy_modalities else 1
        )

    def _load_video_file(
        self, path: Path, generator: torch.Generator | None, issues: list[str]
    ) -> tuple[dict[str, Any], MediaInfo]:
        config = self.config
        with open_media(path) as container:
            info = probe_media(container)
            indices = self._sample(info.num_frames, generator, issues)
            stack = stacked_indices(indices, self._frame_stack(), info.num_frames)
            frames = decode_video_frames(
                container, stack.reshape(-1).tolist(), short_side=config.resize_range[1]
            )
            raw: dict[str, Any] = {"frames": _as_tensor(frames, stack), "indices": indices}
            windows = audio_windows(indices, info.fps, config)
            if "audio" in config.modalities:
                if info.audio_rate is None:
                    issues.append("no_audio")
                    raw["audio"] = [
                        np.zeros(round(d * config.sample_rate), np.float32) for _, d in windows
                    ]
                else:
                    raw["audio"] = decode_audio(container, windows, config.sample_rate)
        return raw, info

    def _load_frame_folder(
        self,
        record: VideoRecord,
        folder: Path,
        generator: torch.Generator | None,
        issues: list[str],
    ) -> tuple[dict[str, Any], MediaInfo]:
        config = self.config
        if not folder.is_dir():
            raise BadVideoError(f"missing frame folder {folder}")
        assert record.start_frame is not None and record.end_frame is not None
        num_frames = record.end_frame - record.start_frame + 1
        meta_path = folder / "meta.json"
        fps = (
            json.loads(meta_path.read_text())["fps"]
            if meta_path.exists()
            else config.frame_folder_fps
        )
        indices = self._sample(num_frames, generator, issues)
        modalities = set(config.modalities + config.policy_modalities)
        raw: dict[str, Any] = {"indices": indices}
        stack = stacked_indices(indices, self._frame_stack(), num_frames)
        frames = read_frame_folder(folder, (stack.reshape(-1) + record.start_frame).tolist())
        raw["frames"] = _as_tensor(frames, stack + record.start_frame)
        if "flow" in modalities:
            # Flow file i holds the motion from frame i to i+1: the last frame has none.
            flow_stack = stacked_indices(indices, STACK, max(num_frames - 1, 1))
            flow_stack = flow_stack + record.start_frame
            for axis in ("x", "y"):
                images = read_frame_folder(
                    folder, flow_stack.reshape(-1).tolist(), f"{axis}_{{:05d}}.jpg", gray=True
                )
                raw[f"flow_{axis}"] = _as_tensor(images, flow_stack)
        height, width = raw["frames"].shape[-3:-1]
        info = MediaInfo(num_frames, float(fps), num_frames / fps, width, height, None, 0)
        if "audio" in config.modalities:
            windows = audio_windows(indices, fps, config)
            audio_path = frame_folder_audio(folder)
            if audio_path is None:
                issues.append("no_audio")
                raw["audio"] = [
                    np.zeros(round(d * config.sample_rate), np.float32) for _, d in windows
                ]
            else:
                with open_media(audio_path) as container:
                    raw["audio"] = decode_audio(container, windows, config.sample_rate)
                    info.audio_rate = container.streams.audio[0].codec_context.sample_rate
        return raw, info


def _informative(
    annotation: Mapping[str, Any], indices: torch.Tensor, fps: float
) -> dict[str, torch.Tensor]:
    """Per-segment informative flags from the sidecar's scenes, looked up at segment centres."""
    centres = ((indices[:, 0] + indices[:, -1] + 1).double() / 2 / fps).tolist()
    ends = [end for _, end in annotation["scenes"]]
    scene = [min(sum(c >= e for e in ends), len(ends) - 1) for c in centres]
    return {
        modality: torch.tensor([bool(flags[s]) for s in scene])
        for modality, flags in annotation["informative"].items()
    }


def collate(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Batch items from :class:`VideoDataset`.

    Tensors are stacked on a new leading B axis (``rgb`` -> (B, T, F, 3, S, S), ``label`` ->
    (B,) or (B, C)); ``informative`` becomes ``{modality: (B, T) bool}`` when every item has
    it; ``video_id`` is a list; ``skipped`` and ``issues`` are concatenated lists.

    Args:
        items: dataset items.

    Returns:
        The batch dict.

    Raises:
        ValueError: empty ``items`` or items with different keys or shapes.
    """
    if not items:
        raise ValueError("items: empty batch")
    batch: dict[str, Any] = {}
    for key, value in items[0].items():
        if key in ("skipped", "issues"):
            batch[key] = [entry for item in items for entry in item.get(key, [])]
        elif key == "informative":
            if all("informative" in item for item in items):
                batch[key] = {m: torch.stack([item[key][m] for item in items]) for m in value}
        elif isinstance(value, torch.Tensor):
            shapes = {tuple(item[key].shape) for item in items}
            if len(shapes) > 1:
                raise ValueError(f"items: {key!r} has different shapes {sorted(shapes)}")
            batch[key] = torch.stack([item[key] for item in items])
        else:
            batch[key] = [item[key] for item in items]
    return batch


# --------------------------------------------------------------------------------------------
# inspect
# --------------------------------------------------------------------------------------------
def _describe(dataset: VideoDataset, record: VideoRecord) -> tuple[str, dict[str, Any] | None]:
    path = dataset.data_root / record.path
    try:
        if record.is_frame_folder:
            assert record.start_frame is not None and record.end_frame is not None
            frames = record.end_frame - record.start_frame + 1
            audio = frame_folder_audio(path)
            rate: int | None = None
            if audio is not None:
                with open_media(audio) as container:
                    rate = probe_audio_rate(container)
            meta = path / "meta.json"
            fps = (
                json.loads(meta.read_text())["fps"]
                if meta.exists()
                else dataset.config.frame_folder_fps
            )
            head = f"{frames / fps:.2f} s, {fps:.2f} fps, {frames} frames, audio {rate} Hz"
        else:
            with open_media(path) as container:
                info = probe_media(container)
            head = (
                f"{info.duration:.2f} s, {info.fps:.2f} fps, {info.num_frames} frames, "
                f"{info.width}x{info.height}, audio {info.audio_rate} Hz"
            )
        item = dataset.load(record)
    except BadVideoError as error:
        return f"SKIP {record.path} ({record.line}): {error}", None
    shapes = ", ".join(
        f"{k} {tuple(v.shape)}" for k, v in item.items() if isinstance(v, torch.Tensor)
    )
    issues = "".join(f" WARNING {issue}" for _, issue in item["issues"])
    return f"{record.path}: {head}; {shapes}{issues}", item


def probe_audio_rate(container: av.container.InputContainer) -> int | None:
    """Sample rate of the first audio stream, ``None`` without one."""
    return container.streams.audio[0].codec_context.sample_rate if container.streams.audio else None


def _plot(item: Mapping[str, Any], config: DataConfig, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rgb = item.get("rgb")
    segments = item["audio"].shape[0] if "audio" in item else rgb.shape[0]  # type: ignore[union-attr]
    rows = int(rgb is not None) + int("audio" in item)
    fig, axes = plt.subplots(rows, segments, figsize=(2 * segments, 2.2 * rows), squeeze=False)
    mean = torch.tensor(config.mean).view(3, 1, 1)
    std = torch.tensor(config.std).view(3, 1, 1)
    row = 0
    if rgb is not None:
        for t in range(segments):
            frame = (rgb[t, rgb.shape[1] // 2] * std + mean).clamp(0, 1).permute(1, 2, 0)
            axes[row, t].imshow(frame.numpy())
            axes[row, t].set_title(f"segment {t}", fontsize=8)
            axes[row, t].axis("off")
        row += 1
    if "audio" in item:
        for t in range(segments):
            axes[row, t].imshow(item["audio"][t, 0].numpy(), origin="lower", aspect="auto")
            axes[row, t].set_xlabel("time", fontsize=7)
            axes[row, t].set_ylabel("frequency bin", fontsize=7)
            axes[row, t].tick_params(labelsize=6)
    fig.suptitle(str(item["video_id"]), fontsize=9)
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    target = out / "inspect.png"
    fig.savefig(target, dpi=100)
    plt.close(fig)
    return target


def inspect_main(argv: Sequence[str]) -> int:
    """``data.py inspect``: decode every listed video and report what the loader sees."""
    parser = argparse.ArgumentParser(prog="data.py inspect", description=inspect_main.__doc__)
    parser.add_argument("list_file")
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--classes", help="classes.txt (default: beside the list file)")
    parser.add_argument("--out", help="directory for inspect.png (sampled frames, spectrogram)")
    parser.add_argument("--preset", choices=["paper", "demo"], default="paper")
    parser.add_argument("--modalities", default="rgb,audio")
    parser.add_argument("--limit", type=int, default=None, help="inspect only the first N")
    args = parser.parse_args(argv)
    classes_path = Path(args.classes or Path(args.list_file).with_name("classes.txt"))
    classes = read_classes(classes_path) if classes_path.exists() else None
    preset = DataConfig.paper if args.preset == "paper" else DataConfig.demo
    config = preset(modalities=tuple(args.modalities.split(",")))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = VideoDataset(args.list_file, args.data_root, config, train=False, classes=classes)
    for message in caught:
        print(f"WARNING {message.message}")
    records = dataset.records[: args.limit]
    skipped, issues, first = 0, Counter[str](), None
    for record in records:
        line, item = _describe(dataset, record)
        print(line)
        if item is None:
            skipped += 1
            continue
        issues.update(issue for _, issue in item["issues"])
        first = first or item
    summary = f"{len(records) - skipped}/{len(records)} videos load, {skipped} skipped"
    summary += f", {len(dataset.list_errors)} malformed list lines"
    summary += "".join(f", {count} {issue}" for issue, count in sorted(issues.items()))
    print(summary)
    if args.out and first is not None:
        print(f"wrote {_plot(first, config, Path(args.out))}")
    return 1 if skipped or dataset.list_errors else 0


if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] != "inspect":
        sys.exit("usage: python examples/adamml/data.py inspect LIST --data-root DIR [--out DIR]")
    sys.exit(inspect_main(sys.argv[2:]))
