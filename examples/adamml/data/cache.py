"""Decode once: :class:`DecodeCache` keeps the decoded frames of each video file on disk.

An entry holds every frame of a video at the decode short side (``resize_range[1]``) as
uint8, with its frame rate and audio rate; TSN sampling and augmentation then index it
instead of decoding the mp4 again, and give the same tensors as a fresh decode.

Audio is cached per *draw*, not per window: FFmpeg's AAC decoder keeps state across seeks
(the noise generator of perceptual noise substitution is not reset by a flush), so the samples
of a window depend on the windows decoded before it in the same container. Only the whole
sequence of an item's windows is a key that reproduces them bit for bit; it repeats every
epoch at test (centred segments), almost never in training, so only test draws are stored.

An entry is named after the file's resolved path and the decode settings, and records the
file's size and modification time: a rewritten file or other settings rebuild it. Entries are
written to a temporary file and renamed into place, so DataLoader workers and torchrun ranks
that build the same entry at once never leave or read a half-written file; an unreadable
entry is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from files import atomic_write

from .decoding import BadVideoError, decode_video_frames, open_media, probe_media

# Bump when what an entry holds changes, so old entries are rebuilt rather than misread.
CACHE_VERSION = 1
# What torch.load raises for a missing, truncated, overwritten or foreign file.
_UNREADABLE = (
    OSError, EOFError, RuntimeError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile,
)  # fmt: skip


@dataclass(frozen=True)
class CachedVideo:
    """One cache entry.

    Attributes:
        frames: (N, H, W, 3) uint8, every frame at the decode short side (memory-mapped).
        fps: frame rate.
        audio_rate: sample rate of the audio track, ``None`` without one.
    """

    frames: torch.Tensor
    fps: float
    audio_rate: int | None


def _source(path: Path) -> list[int]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


class DecodeCache:
    """Decoded frames of video files, and the audio of test draws, under ``directory``.

    Size: an entry is N × H × W × 3 bytes for N frames at the decode short side (the demo
    set: 80 × 80² × 3 = 1.5 MB per clip, 590 MB for its 384 clips), plus
    T × ``audio_seconds`` × ``sample_rate`` × 4 bytes per test draw (200 kB at the demo's T = 10).

    Args:
        directory: where entries go; created when missing.
        short_side: the decode short side, ``DataConfig.resize_range[1]``.
        sample_rate: audio rate after resampling, ``DataConfig.sample_rate``.
    """

    def __init__(self, directory: str | Path, short_side: int, sample_rate: int) -> None:
        self.directory = Path(directory)
        self.short_side = short_side
        self.sample_rate = sample_rate
        self._undecodable: set[Path] = set()
        self._warned = False

    def video(self, path: Path) -> CachedVideo | None:
        """The entry of a video file, decoded and stored on first use.

        Returns:
            The entry, or ``None`` when the file cannot be decoded to its end; the caller then
            decodes the sampled frames as without a cache (and skips the file if those fail).

        Raises:
            BadVideoError: the file is missing or cannot be opened.
        """
        try:
            source = _source(path)
        except FileNotFoundError as error:
            raise BadVideoError(f"{path}: no such file or directory") from error
        if path in self._undecodable:
            return None
        file = self._file(path, "video", self.short_side)
        entry = self._load(file, source)
        if entry is None:
            with open_media(path) as container:
                info = probe_media(container)
                try:
                    decoded = decode_video_frames(
                        container, range(info.num_frames), seek=False, short_side=self.short_side
                    )
                except BadVideoError:
                    self._undecodable.add(path)
                    return None
            frames = torch.from_numpy(np.stack([decoded[i] for i in range(info.num_frames)]))
            entry = {"frames": frames, "fps": info.fps, "audio_rate": info.audio_rate}
            self._store(file, source, entry)
        return CachedVideo(entry["frames"], entry["fps"], entry["audio_rate"])

    def audio(
        self,
        path: Path,
        windows: Sequence[tuple[float, float]],
        decode: Callable[[], list[np.ndarray]],
        *,
        store: bool,
    ) -> list[np.ndarray]:
        """The waveforms of one draw of audio windows: stored ones, else ``decode()``.

        Args:
            path: the video file.
            windows: ``(start, duration)`` of every window of the item, in decoding order.
            decode: decodes the windows as without a cache.
            store: keep what ``decode()`` returns (test draws, which repeat every epoch).

        Returns:
            One float32 waveform per window.
        """
        file = self._file(path, "audio", self.sample_rate, [list(w) for w in windows])
        source = _source(path)
        entry = self._load(file, source)
        if entry is not None:
            return [w.numpy() for w in entry["audio"]]
        audio = decode()
        if store:
            self._store(file, source, {"audio": [torch.from_numpy(w) for w in audio]})
        return audio

    def _file(self, path: Path, kind: str, *settings: Any) -> Path:
        key = json.dumps([CACHE_VERSION, str(path.resolve()), kind, *settings])
        return self.directory / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.{kind}.pt"

    def _load(self, file: Path, source: list[int]) -> dict[str, Any] | None:
        try:
            entry: dict[str, Any] = torch.load(file, mmap=True, weights_only=True)
        except _UNREADABLE:
            return None
        if not isinstance(entry, dict) or entry.get("source") != source:
            return None
        return entry

    def _store(self, file: Path, source: list[int], entry: dict[str, Any]) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            atomic_write(file, lambda out: torch.save({**entry, "source": source}, out))
        except OSError as error:
            # A full or read-only disk costs the speed-up, never the training run.
            if not self._warned:
                self._warned = True
                warnings.warn(f"decode cache: cannot write {file}: {error}", stacklevel=3)
