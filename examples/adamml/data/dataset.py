"""The dataset: :class:`VideoDataset` samples, decodes and builds every input of an item;
:func:`collate` batches items and :class:`SkipReport` counts the videos it had to skip.

What each modality needs (channels, the policy's input, the frame stack, frame folders) comes
from the modality registry (``modalities.py``); how its input is built from the decoded
arrays is one entry of :data:`INPUT_BUILDERS`.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from modalities import MODALITIES
from torch.utils.data import Dataset

from .cache import CachedVideo, DecodeCache
from .config import DataConfig
from .decoding import (
    BadVideoError,
    decode_audio,
    decode_video_frames,
    frame_folder_audio,
    frame_folder_fps,
    open_media,
    probe_media,
    read_frame_folder,
)
from .lists import VideoRecord, parse_list_file
from .sampling import audio_windows, frame_indices, segment_centres, segment_starts, stacked_indices
from .transforms import (
    FlowInput,
    LogSpectrogram,
    PolicyInput,
    RGBDiffInput,
    RGBInput,
    SpatialParams,
    SpatialSampler,
)


@dataclass(frozen=True)
class InputTransforms:
    """The transforms of every modality, built once from a :class:`DataConfig`."""

    spatial: SpatialSampler
    rgb: RGBInput
    rgbdiff: RGBDiffInput
    flow: FlowInput
    spectrogram: LogSpectrogram
    policy: PolicyInput

    @classmethod
    def from_config(cls, config: DataConfig) -> InputTransforms:
        return cls(
            spatial=SpatialSampler(config.crop_size, config.resize_range, config.test_resize),
            rgb=RGBInput(config.mean, config.std),
            rgbdiff=RGBDiffInput(config.mean, config.std, MODALITIES["rgbdiff"].stack),
            flow=FlowInput(MODALITIES["flow"].stack),
            spectrogram=LogSpectrogram(
                config.n_fft, config.stft_win_length, config.stft_hop_length, config.n_time
            ),
            policy=PolicyInput(config.policy_frames, config.policy_size),
        )


@dataclass
class Decoded:
    """What one video gives before the transforms.

    Attributes:
        indices: (T, F) sampled frames.
        fps: frame rate.
        frames: (T, F, K, H, W, 3) uint8, each sampled frame and the K - 1 after it.
        flow_x: (T, F, stack, H, W) uint8 horizontal flow, when a modality reads flow images.
        flow_y: (T, F, stack, H, W) uint8 vertical flow, likewise.
        audio: one mono waveform per segment, when ``audio`` is a modality.
    """

    indices: torch.Tensor
    fps: float
    frames: torch.Tensor
    flow_x: torch.Tensor | None = None
    flow_y: torch.Tensor | None = None
    audio: list[np.ndarray] | None = None


def _spectrograms(decoded: Decoded, t: InputTransforms, _: SpatialParams) -> torch.Tensor:
    assert decoded.audio is not None
    return torch.stack([t.spectrogram(torch.from_numpy(w)) for w in decoded.audio])


def _flow(decoded: Decoded, t: InputTransforms, params: SpatialParams) -> torch.Tensor:
    assert decoded.flow_x is not None and decoded.flow_y is not None
    return t.flow(decoded.flow_x, decoded.flow_y, params)


# One entry per modality of the registry: its recognition input from the decoded arrays.
INPUT_BUILDERS: dict[str, Callable[[Decoded, InputTransforms, SpatialParams], torch.Tensor]] = {
    "rgb": lambda decoded, t, params: t.rgb(decoded.frames[:, :, 0], params),
    "rgbdiff": lambda decoded, t, params: t.rgbdiff(decoded.frames, params),
    "flow": _flow,
    "audio": _spectrograms,
}


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
    * ``policy_<source>``: (T, policy_frames, C, P, P) for each of ``config.policy_sources``;
    * ``label``: () int64, or (num_classes,) float multi-hot when ``multi_label``;
    * ``video_id``: the list-file path; ``informative``: ``{modality: (T,) bool}`` when a
      sidecar annotates the video; ``skipped`` and ``issues``: lists (usually empty).

    Args:
        list_file: list file (see :func:`~data.lists.parse_list_file`).
        data_root: directory list paths are relative to.
        config: input sizes; :meth:`DataConfig.paper` or :meth:`DataConfig.demo`.
        train: TSN random sampling and augmentation (True) or centred, deterministic (False).
        classes: class names (``classes.txt``), for name labels and ``num_classes``.
        informative: sidecar JSON of per-segment informative modalities (``make_dataset.py``).
        strict: raise on any bad input instead of skipping it.
        multi_label: multi-hot labels; default: True when any line has several labels.
        cache_dir: keep decoded video files here and decode each only once
            (:class:`~data.cache.DecodeCache`); items are bit-identical to those decoded
            fresh. ``None`` (default) decodes every time. Frame folders are never cached.

    Raises:
        ValueError: no usable line, a frame-folder-only modality (flow) requested for video
            files, or (strict) a bad line.
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
        cache_dir: str | Path | None = None,
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
        inputs = [MODALITIES[m] for m in dict.fromkeys(config.modalities + config.policy_sources)]
        folder_only = [m.name for m in inputs if m.frame_folder_only]
        if folder_only and any(not r.is_frame_folder for r in self.records):
            raise ValueError(
                f"config.modalities: {folder_only} need the frame-folder layout (run "
                f"prepare.py); {list_file} lists video files"
            )
        # RGB frames per sampled frame: RGBDiff reads the frames after it; flow has its own
        # images, so only modalities built from RGB count.
        self.rgb_stack = 1 + max(m.frames_after for m in inputs if not m.frame_folder_only)
        self.flow_stack = max((m.stack for m in inputs if m.frame_folder_only), default=0)
        self.transforms = InputTransforms.from_config(config)
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
        self.cache = (
            DecodeCache(cache_dir, config.resize_range[1], config.sample_rate)
            if cache_dir is not None
            else None
        )

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
            decoded = self._decode_frame_folder(record, path, generator, issues)
        else:
            decoded = self._decode_video_file(path, generator, issues)
        if self.strict and issues:
            raise BadVideoError(f"{record.path}: {', '.join(issues)}")
        height, width = decoded.frames.shape[-3:-1]
        params = self.transforms.spatial(height, width, train=self.train, generator=generator)
        item: dict[str, Any] = {
            m: INPUT_BUILDERS[m](decoded, self.transforms, params) for m in config.modalities
        }
        for source in config.policy_sources:
            recognition = item.get(source)
            if recognition is None:
                recognition = INPUT_BUILDERS[source](decoded, self.transforms, params)
            item[f"policy_{source}"] = self.transforms.policy(recognition)
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
            item["informative"] = _informative(annotation, decoded.indices, decoded.fps)
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

    def _silence(self, windows: Sequence[tuple[float, float]]) -> list[np.ndarray]:
        return [np.zeros(round(d * self.config.sample_rate), np.float32) for _, d in windows]

    def _decode_video_file(
        self, path: Path, generator: torch.Generator | None, issues: list[str]
    ) -> Decoded:
        cached = self.cache.video(path) if self.cache is not None else None
        if cached is not None:
            return self._decode_cached(path, cached, generator, issues)
        config = self.config
        with open_media(path) as container:
            info = probe_media(container)
            indices = self._sample(info.num_frames, generator, issues)
            stack = stacked_indices(indices, self.rgb_stack, info.num_frames)
            frames = decode_video_frames(
                container, stack.reshape(-1).tolist(), short_side=config.resize_range[1]
            )
            decoded = Decoded(indices, info.fps, _as_tensor(frames, stack))
            if "audio" in config.modalities:
                decoded.audio = self._video_audio(
                    indices, info.fps, info.audio_rate, issues,
                    lambda windows: decode_audio(container, windows, config.sample_rate),
                )  # fmt: skip
        return decoded

    def _decode_cached(
        self, path: Path, cached: CachedVideo, generator: torch.Generator | None,
        issues: list[str],
    ) -> Decoded:  # fmt: skip
        assert self.cache is not None
        cache, config = self.cache, self.config
        num_frames = cached.frames.shape[0]
        indices = self._sample(num_frames, generator, issues)
        stack = stacked_indices(indices, self.rgb_stack, num_frames)
        frames = cached.frames[stack.reshape(-1)].reshape(*stack.shape, *cached.frames.shape[1:])
        decoded = Decoded(indices, cached.fps, frames)
        if "audio" in config.modalities:

            def decode(windows: list[tuple[float, float]]) -> list[np.ndarray]:
                fresh = partial(_decode_audio_file, path, windows, config.sample_rate)
                return cache.audio(path, windows, fresh, store=not self.train)

            decoded.audio = self._video_audio(
                indices, cached.fps, cached.audio_rate, issues, decode
            )
        return decoded

    def _video_audio(
        self, indices: torch.Tensor, fps: float, audio_rate: int | None, issues: list[str],
        decode: Callable[[list[tuple[float, float]]], list[np.ndarray]],
    ) -> list[np.ndarray]:  # fmt: skip
        """The audio windows of the segments: ``decode(windows)``, silence without a track."""
        windows = audio_windows(indices, fps, self.config.audio_seconds)
        if audio_rate is None:
            issues.append("no_audio")
            return self._silence(windows)
        return decode(windows)

    def _decode_frame_folder(
        self,
        record: VideoRecord,
        folder: Path,
        generator: torch.Generator | None,
        issues: list[str],
    ) -> Decoded:
        config = self.config
        if not folder.is_dir():
            raise BadVideoError(f"missing frame folder {folder}")
        assert record.start_frame is not None and record.end_frame is not None
        num_frames = record.end_frame - record.start_frame + 1
        fps = frame_folder_fps(folder, config.frame_folder_fps)
        indices = self._sample(num_frames, generator, issues)
        stack = stacked_indices(indices, self.rgb_stack, num_frames)
        frames = read_frame_folder(folder, (stack.reshape(-1) + record.start_frame).tolist())
        decoded = Decoded(indices, fps, _as_tensor(frames, stack + record.start_frame))
        if self.flow_stack:
            # Flow file i holds the motion from frame i to i+1: the last frame has none.
            flow_stack = stacked_indices(indices, self.flow_stack, max(num_frames - 1, 1))
            flow_stack = flow_stack + record.start_frame
            flow = [
                read_frame_folder(
                    folder, flow_stack.reshape(-1).tolist(), f"{axis}_{{:05d}}.jpg", gray=True
                )
                for axis in ("x", "y")
            ]
            decoded.flow_x, decoded.flow_y = (_as_tensor(f, flow_stack) for f in flow)
        if "audio" in config.modalities:
            windows = audio_windows(indices, fps, config.audio_seconds)
            audio_path = frame_folder_audio(folder)
            if audio_path is None:
                issues.append("no_audio")
                decoded.audio = self._silence(windows)
            else:
                with open_media(audio_path) as container:
                    decoded.audio = decode_audio(container, windows, config.sample_rate)
        return decoded


def _decode_audio_file(
    path: Path, windows: list[tuple[float, float]], sample_rate: int
) -> list[np.ndarray]:
    with open_media(path) as container:
        return decode_audio(container, windows, sample_rate)


def _informative(
    annotation: Mapping[str, Any], indices: torch.Tensor, fps: float
) -> dict[str, torch.Tensor]:
    """Per-segment informative flags from the sidecar's scenes, looked up at segment centres."""
    centres = segment_centres(indices, fps).tolist()
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
