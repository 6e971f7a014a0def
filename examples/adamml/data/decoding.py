"""Decoding with PyAV: open and probe a container, decode sampled video frames or every frame,
resample audio, and read the frame-folder layout.

Each function raises :class:`BadVideoError` for input it cannot read, which the dataset turns
into a skipped video.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import VideoReformatter

VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")


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
        raise BadVideoError(f"{path}: no such file or directory") from error
    except av.FFmpegError as error:
        raise BadVideoError(
            f"{path}: not a video FFmpeg can read ({error.strerror or error})"
        ) from error


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


class _ToRGB:
    """Converts decoded frames of one stream to (H, W, 3) uint8, downscaled to ``short_side``."""

    def __init__(self, stream: av.video.stream.VideoStream, short_side: int | None) -> None:
        self.width, self.height = downscaled_size(
            stream.codec_context.width, stream.codec_context.height, short_side
        )
        # One reformatter keeps its scaling context across frames; a fresh one per frame costs
        # several times the conversion itself at 720p.
        self.reformatter = VideoReformatter()

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        rgb = self.reformatter.reformat(
            frame, format="rgb24", width=self.width, height=self.height, interpolation="AREA"
        )
        return rgb.to_ndarray()


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
        seek: seek between runs; ``False`` decodes the stream from the start. Either way a
            container can be decoded from again, by later calls.
        short_side: downscale frames whose short side is larger (keeps the aspect ratio).

    Returns:
        ``{index: (H, W, 3) uint8}`` for every listed index.

    Raises:
        BadVideoError: the stream is corrupt or ends before a listed frame (truncated file).
    """
    wanted = sorted(set(indices))
    stream = container.streams.video[0]
    # Settable until the codec opens, at the first decode; later calls on the container keep it.
    if not stream.codec_context.is_open:
        stream.thread_type = "AUTO"
    fps = Fraction(stream.average_rate or stream.guessed_rate)
    time_base = stream.time_base
    start_pts = stream.start_time or 0
    to_rgb = _ToRGB(stream, short_side)
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
                    frames[index] = to_rgb(frame)
                if index >= run[-1]:
                    break
    except av.FFmpegError as error:
        raise BadVideoError(
            f"{container.name}: decoding failed (truncated or corrupt file?): "
            f"{error.strerror or error}"
        ) from error
    missing = [i for i in wanted if i not in frames]
    if missing:
        raise BadVideoError(
            f"{container.name}: frames {missing[:3]}{'...' if len(missing) > 3 else ''} "
            f"could not be decoded (truncated or corrupt file?)"
        )
    return frames


def decode_all_frames(
    container: av.container.InputContainer, *, short_side: int | None = None
) -> Iterator[np.ndarray]:
    """Every frame of the first video stream in decoding order, as RGB.

    Args:
        container: from ``av.open``.
        short_side: downscale frames whose short side is larger (keeps the aspect ratio).

    Yields:
        (H, W, 3) uint8 frames.

    Raises:
        BadVideoError: no video stream, or a decoding error (the message says after how many
            frames).
    """
    if not container.streams.video:
        raise BadVideoError(f"{container.name}: no video stream")
    stream = container.streams.video[0]
    stream.thread_type = "AUTO"
    to_rgb = _ToRGB(stream, short_side)
    count = 0
    try:
        for frame in container.decode(stream):
            yield to_rgb(frame)
            count += 1
    except av.FFmpegError as error:
        raise BadVideoError(
            f"{container.name}: decoding failed after {count} frames: {error}"
        ) from error


def resample_audio(
    frames: Iterable[av.AudioFrame], sample_rate: int, *, sample_format: str = "flt"
) -> Iterator[av.AudioFrame]:
    """Decoded audio frames downmixed to mono and resampled with ``av.AudioResampler``.

    The resampler is flushed when ``frames`` ends, so the samples it holds back come out too.

    Args:
        frames: decoded frames of one audio stream.
        sample_rate: output rate in Hz.
        sample_format: PyAV sample format of the output (``flt``: float32, ``s16``: int16).

    Yields:
        Mono frames at ``sample_rate``.
    """
    resampler = av.AudioResampler(format=sample_format, layout="mono", rate=sample_rate)
    for frame in frames:
        yield from resampler.resample(frame)
    yield from resampler.resample(None)


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
    try:
        return [
            _decode_window(container, start, duration, sample_rate) for start, duration in windows
        ]
    except av.FFmpegError as error:
        raise BadVideoError(f"{container.name}: audio decoding failed: {error}") from error


def _decode_window(
    container: av.container.InputContainer, start: float, duration: float, sample_rate: int
) -> np.ndarray:
    stream = container.streams.audio[0]
    length = round(duration * sample_rate)
    out = np.zeros(length, dtype=np.float32)
    if stream.time_base is not None:
        container.seek(max(int(start / stream.time_base), 0), stream=stream, backward=True)
    first_time: float | None = None
    chunks: list[np.ndarray] = []
    collected = 0

    def until_window_end() -> Iterator[av.AudioFrame]:
        nonlocal first_time
        for frame in container.decode(stream):
            if first_time is None:
                first_time = frame.time if frame.time is not None else 0.0
            yield frame
            if first_time + collected / sample_rate >= start + duration:
                return

    for resampled in resample_audio(until_window_end(), sample_rate):
        chunks.append(resampled.to_ndarray().reshape(-1))
        collected += chunks[-1].size
    if chunks and first_time is not None:
        samples = np.concatenate(chunks)
        offset = round((start - first_time) * sample_rate)
        source_lo, dest_lo = max(offset, 0), max(-offset, 0)
        count = max(min(samples.size - source_lo, length - dest_lo), 0)
        out[dest_lo : dest_lo + count] = samples[source_lo : source_lo + count]
    return out


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


def frame_folder_fps(folder: Path, default: float) -> float:
    """Frame rate of a frame folder from its ``meta.json``; ``default`` without one."""
    meta = folder / "meta.json"
    return float(json.loads(meta.read_text())["fps"]) if meta.exists() else default


def probe_audio_rate(container: av.container.InputContainer) -> int | None:
    """Sample rate of the first audio stream, ``None`` without one."""
    return container.streams.audio[0].codec_context.sample_rate if container.streams.audio else None


def frame_folder_audio(folder: Path) -> Path | None:
    """The audio file of a frame folder: ``audio.wav`` inside it or ``<folder>.wav`` beside it."""
    for candidate in (folder / "audio.wav", folder.with_suffix(".wav"), folder / "audio.m4a"):
        if candidate.exists():
            return candidate
    return None
