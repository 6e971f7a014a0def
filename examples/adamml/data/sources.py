"""One read path: a :class:`Source` gives a video's RGB frames, flow images and audio windows;
:func:`read_clip` turns sampled frame indices into the :class:`Decoded` arrays that every
modality's input builder (``modalities.MODALITIES[m].build``) reads.

Three sources share the protocol: a video file (:class:`VideoFileSource`, PyAV), a frame folder
in ``prepare.py``'s layout (:class:`FrameFolderSource`) and a decode-cache entry
(:class:`CachedSource`). ``VideoDataset`` reads its items through :func:`read_clip`, and
``predict.py`` its windows, so a prediction is computed on the tensors evaluation sees.

    >>> from data import DataConfig, frame_indices, open_source, read_clip, segment_starts
    >>> from modalities import reads
    >>> config = DataConfig.demo()
    >>> source = open_source("clip.mp4", config)  # doctest: +SKIP
    >>> starts = segment_starts(source.num_frames, 10, config.span, train=False)  # doctest: +SKIP
    >>> indices = frame_indices(starts, 4, 2, source.num_frames)  # (T, F)  # doctest: +SKIP
    >>> decoded = read_clip(source, indices, reads(config.modalities), 1.28)  # doctest: +SKIP
    >>> decoded.frames.shape  # (T, F, K, H, W, 3)  # doctest: +SKIP
    torch.Size([10, 4, 1, 80, 80, 3])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from modalities import Reads

from .cache import DecodeCache
from .config import DataConfig
from .decoding import (
    VIDEO_SUFFIXES,
    BadVideoError,
    decode_audio,
    decode_video_frames,
    downscaled_size,
    frame_folder_audio,
    frame_folder_fps,
    open_media,
    probe_media,
    read_frame_folder,
)
from .sampling import audio_windows, stacked_indices

Window = tuple[float, float]


class Source(Protocol):
    """An open video that gives frames, flow images and audio windows by frame index.

    Attributes:
        name: the path, at the start of every error message.
        num_frames: frames in the video (index 0 is its first frame).
        fps: frame rate.
        duration: seconds.
        has_audio: whether there is an audio track; without one :meth:`audio` gives silence.
    """

    name: str
    num_frames: int
    fps: float
    duration: float
    has_audio: bool

    @property
    def height(self) -> int:
        """Height of the frames :meth:`frames` returns."""
        ...

    @property
    def width(self) -> int:
        """Their width."""
        ...

    def frames(self, indices: torch.Tensor) -> torch.Tensor:
        """``(*indices.shape, H, W, 3)`` uint8 RGB frames, 0-based indices in ``[0, N)``."""
        ...

    def flow(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(*indices.shape, H, W)`` uint8 horizontal and vertical flow; image ``i`` holds the
        motion from frame ``i`` to ``i + 1``."""
        ...

    def audio(self, windows: Sequence[Window]) -> list[np.ndarray]:
        """One mono float32 waveform of ``round(duration * sample_rate)`` samples per
        ``(start, duration)`` window, decoded in order in a fresh decoder."""
        ...

    def close(self) -> None:
        """Release what the source holds open."""
        ...


@dataclass
class Decoded:
    """What :func:`read_clip` gives for T segments, before the transforms.

    Attributes:
        indices: ``(T, F)`` sampled frames.
        fps: frame rate.
        height: frame height (also when no frames were read).
        width: frame width.
        frames: ``(T, F, K, H, W, 3)`` uint8, each sampled frame and the K - 1 after it, when
            an input reads RGB frames.
        flow_x: ``(T, F, stack, H, W)`` uint8 horizontal flow, when an input reads flow.
        flow_y: ``(T, F, stack, H, W)`` uint8 vertical flow, likewise.
        audio: one mono waveform per segment, when an input reads audio.
    """

    indices: torch.Tensor
    fps: float
    height: int
    width: int
    frames: torch.Tensor | None = None
    flow_x: torch.Tensor | None = None
    flow_y: torch.Tensor | None = None
    audio: list[np.ndarray] | None = None

    def select(
        self, segments: torch.Tensor | None = None, rows: Sequence[int] | None = None
    ) -> Decoded:
        """The same arrays for some segments (the T axis) and some sampled frames (the F axis).

        Args:
            segments: ``(K,)`` segment indices; None keeps every segment.
            rows: sampled frames to keep in each segment; None keeps every one.

        Returns:
            A :class:`Decoded` of ``(K, len(rows), ...)`` arrays; the audio follows the segments.
        """
        keep = torch.arange(len(self.indices)) if segments is None else segments.cpu().long()
        columns = list(range(self.indices.shape[1])) if rows is None else list(rows)

        def take(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else x[keep][:, columns]

        audio = None if self.audio is None else [self.audio[int(t)] for t in keep]
        return replace(
            self, indices=self.indices[keep][:, columns], frames=take(self.frames),
            flow_x=take(self.flow_x), flow_y=take(self.flow_y), audio=audio,
        )  # fmt: skip


def read_clip(source: Source, indices: torch.Tensor, reads: Reads, audio_seconds: float) -> Decoded:
    """Read what ``reads`` asks for of the segments sampled at ``indices``.

    Stacks that run past the last frame loop to the first (:func:`~data.sampling.stacked_indices`);
    flow stacks loop one frame earlier, since the last frame has no flow image.

    Args:
        source: the open video.
        indices: ``(T, F)`` sampled frames, 0-based.
        reads: RGB frames and flow images per sampled frame, and whether to read audio
            (``modalities.reads``).
        audio_seconds: the audio window centred on each segment.

    Returns:
        The :class:`Decoded` arrays; silence for the audio of a video without a track.

    Raises:
        BadVideoError: a frame, flow image or audio window that cannot be read.
    """
    frames = None
    if reads.frames:
        frames = source.frames(stacked_indices(indices, reads.frames, source.num_frames))
    # After the frames: a frame folder knows its size from them, without reading one more.
    decoded = Decoded(indices, source.fps, source.height, source.width, frames)
    if reads.flow:
        # Flow file i holds the motion from frame i to i+1: the last frame has none.
        flow = stacked_indices(indices, reads.flow, max(source.num_frames - 1, 1))
        decoded.flow_x, decoded.flow_y = source.flow(flow)
    if reads.audio:
        decoded.audio = source.audio(audio_windows(indices, source.fps, audio_seconds))
    return decoded


def video_paths(paths: Sequence[Path]) -> list[Path]:
    """Each path as given, except a folder of video files (a folder without the numbered images
    of a frame folder): its files with a :data:`~data.decoding.VIDEO_SUFFIXES` suffix, sorted,
    subfolders included. A frame folder stays one video."""
    videos = []
    for path in paths:
        inside: list[Path] = []
        if path.is_dir() and not any(path.glob("[0-9]*.jpg")):
            inside = sorted(p for p in path.rglob("*") if p.suffix.lower() in VIDEO_SUFFIXES)
        videos += inside or [path]
    return videos


def open_source(
    path: str | Path,
    config: DataConfig,
    *,
    frame_range: tuple[int, int] | None = None,
    cache: DecodeCache | None = None,
    store_audio: bool = False,
) -> Source:
    """The source of a video file or, for a directory, of a frame folder.

    Args:
        path: the video file or frame folder.
        config: the decode short side (``resize_range[1]``), the audio rate, and the frame rate
            of a frame folder without ``meta.json``.
        frame_range: a frame folder's first and last frame numbers (a list file's
            ``start_frame end_frame``); default: the numbered images it holds.
        cache: read a video file from this decode cache (decoded and stored on first use); a
            file that does not decode to its end is read directly.
        store_audio: keep the audio windows read from ``cache`` (draws that repeat, at test).

    Raises:
        BadVideoError: a missing path, an unreadable video, or a folder without frames.
    """
    path = Path(path)
    if path.is_dir():
        return FrameFolderSource(path, config, frame_range)
    if not path.exists():
        raise BadVideoError(f"{path}: no such file or directory")
    cached = cache.video(path) if cache is not None else None
    if cache is not None and cached is not None:
        return CachedSource(path, cached.frames, cached.fps, cached.audio_rate is not None,
                            cache, config.sample_rate, store_audio)  # fmt: skip
    return VideoFileSource(path, config.resize_range[1], config.sample_rate)


def _as_tensor(images: Mapping[int, np.ndarray], indices: torch.Tensor) -> torch.Tensor:
    """``(*indices.shape, ...)``: the image of each index, laid out as ``indices``."""
    picked = np.stack([images[int(i)] for i in indices.reshape(-1)])
    return torch.from_numpy(picked).reshape(*indices.shape, *picked.shape[1:])


def _silence(windows: Sequence[Window], sample_rate: int) -> list[np.ndarray]:
    return [np.zeros(round(d * sample_rate), np.float32) for _, d in windows]


def _decode_audio_file(path: Path, windows: Sequence[Window], sample_rate: int) -> list[np.ndarray]:
    # A fresh container each time: FFmpeg's AAC decoder keeps state across seeks (see cache.py).
    with open_media(path) as container:
        return decode_audio(container, windows, sample_rate)


class VideoFileSource:
    """A video file read with PyAV: frames decoded at the short side ``short_side``.

    Args:
        path: the file.
        short_side: frames whose short side is larger are downscaled to it.
        sample_rate: audio rate after resampling.

    Raises:
        BadVideoError: a file that cannot be opened or has no video stream.
    """

    def __init__(self, path: Path, short_side: int, sample_rate: int) -> None:
        self.name, self.path = str(path), path
        self.short_side, self.sample_rate = short_side, sample_rate
        self.container = open_media(path)
        try:
            info = probe_media(self.container)
        except BaseException:
            self.container.close()
            raise
        self.num_frames, self.fps, self.duration = info.num_frames, info.fps, info.duration
        self.width, self.height = downscaled_size(info.width, info.height, short_side)
        self.has_audio = info.audio_rate is not None

    def frames(self, indices: torch.Tensor) -> torch.Tensor:
        wanted = indices.reshape(-1).tolist()
        decoded = decode_video_frames(self.container, wanted, short_side=self.short_side)
        return _as_tensor(decoded, indices)

    def flow(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise BadVideoError(f"{self.name}: flow needs the frame-folder layout (prepare.py --flow)")

    def audio(self, windows: Sequence[Window]) -> list[np.ndarray]:
        if not self.has_audio:
            return _silence(windows, self.sample_rate)
        return _decode_audio_file(self.path, windows, self.sample_rate)

    def close(self) -> None:
        self.container.close()


class CachedSource:
    """A video file's decode-cache entry (:class:`~data.cache.DecodeCache`): frames indexed in
    memory-mapped storage, audio windows stored per draw.

    Args:
        path: the file the entry was decoded from.
        frames: ``(N, H, W, 3)`` uint8, every frame.
        fps: frame rate.
        has_audio: whether the file has an audio track.
        cache: the cache, for the audio windows.
        sample_rate: audio rate after resampling.
        store_audio: keep the windows decoded for a draw (test draws repeat every epoch).
    """

    def __init__(
        self, path: Path, frames: torch.Tensor, fps: float, has_audio: bool,
        cache: DecodeCache, sample_rate: int, store_audio: bool,
    ) -> None:  # fmt: skip
        self.name, self.path, self.cache = str(path), path, cache
        self.all_frames, self.fps, self.has_audio = frames, fps, has_audio
        self.num_frames, self.height, self.width = frames.shape[:3]
        self.duration = self.num_frames / fps
        self.sample_rate, self.store_audio = sample_rate, store_audio

    def frames(self, indices: torch.Tensor) -> torch.Tensor:
        picked = self.all_frames[indices.reshape(-1)]
        return picked.reshape(*indices.shape, *self.all_frames.shape[1:])

    def flow(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise BadVideoError(f"{self.name}: flow needs the frame-folder layout (prepare.py --flow)")

    def audio(self, windows: Sequence[Window]) -> list[np.ndarray]:
        if not self.has_audio:
            return _silence(windows, self.sample_rate)
        return self.cache.audio(
            self.path, windows, lambda: _decode_audio_file(self.path, windows, self.sample_rate),
            store=self.store_audio,
        )  # fmt: skip

    def close(self) -> None:
        """Nothing is held open: the entry is memory-mapped."""


class FrameFolderSource:
    """A frame folder in ``prepare.py``'s layout: ``00001.jpg`` ..., ``x_00001.jpg`` and
    ``y_00001.jpg`` (flow), ``audio.wav``, ``meta.json`` (fps); each image read when asked for.

    Args:
        folder: the folder.
        config: the frame rate without ``meta.json`` and the audio rate.
        frame_range: first and last frame numbers; default: the numbered images in the folder.

    Raises:
        BadVideoError: a missing folder, or one without numbered images.
    """

    def __init__(
        self, folder: Path, config: DataConfig, frame_range: tuple[int, int] | None = None
    ) -> None:
        self.name, self.folder = str(folder), folder
        if not folder.is_dir():
            raise BadVideoError(f"{folder}: no such frame folder")
        if frame_range is None:
            numbers = sorted(int(p.stem) for p in folder.glob("[0-9]*.jpg") if p.stem.isdigit())
            if not numbers:
                raise BadVideoError(
                    f"{folder}: expected a frame folder with 00001.jpg, ..., got none"
                )
            frame_range = numbers[0], numbers[-1]
        self.first_frame = frame_range[0]
        self.num_frames = frame_range[1] - frame_range[0] + 1
        self.fps = frame_folder_fps(folder, config.frame_folder_fps)
        self.duration = self.num_frames / self.fps
        self.audio_file = frame_folder_audio(folder)
        self.has_audio = self.audio_file is not None
        self.sample_rate = config.sample_rate
        self._size: tuple[int, int] | None = None

    @property
    def height(self) -> int:
        return self._frame_size()[0]

    @property
    def width(self) -> int:
        return self._frame_size()[1]

    def _frame_size(self) -> tuple[int, int]:
        if self._size is None:
            self.frames(torch.zeros(1, dtype=torch.long))
        assert self._size is not None
        return self._size

    def frames(self, indices: torch.Tensor) -> torch.Tensor:
        files = indices + self.first_frame
        frames = _as_tensor(read_frame_folder(self.folder, files.reshape(-1).tolist()), files)
        self._size = (frames.shape[-3], frames.shape[-2])
        return frames

    def flow(self, indices: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        files = indices + self.first_frame
        x, y = (
            _as_tensor(
                read_frame_folder(self.folder, files.reshape(-1).tolist(), f"{axis}_{{:05d}}.jpg",
                                  gray=True),
                files,
            )
            for axis in ("x", "y")
        )  # fmt: skip
        return x, y

    def audio(self, windows: Sequence[Window]) -> list[np.ndarray]:
        if self.audio_file is None:
            return _silence(windows, self.sample_rate)
        return _decode_audio_file(self.audio_file, windows, self.sample_rate)

    def close(self) -> None:
        """Nothing is held open: each image and the audio file are opened when read."""
