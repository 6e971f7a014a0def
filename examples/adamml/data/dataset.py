"""The dataset: :class:`VideoDataset` samples, reads and builds every input of an item;
:func:`collate` batches items and :class:`SkipReport` counts the videos it had to skip.

What each modality reads and how its input is built from the decoded arrays come from the
modality registry (``modalities.py``); the reading is :mod:`data.sources`' one read path, the
one ``predict.py`` uses too.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from modalities import MODALITIES, reads
from torch.utils.data import Dataset

from .cache import DecodeCache
from .config import DataConfig
from .decoding import BadVideoError
from .lists import VideoRecord, parse_list_file
from .sampling import frame_indices, segment_centres, segment_starts
from .sources import open_source, read_clip
from .transforms import InputTransforms


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
        self.reads = reads(config.modalities + config.policy_sources)
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
        config, transforms = self.config, self.transforms
        issues: list[str] = []
        path = self.data_root / record.path
        frame_range = None
        if record.is_frame_folder:
            assert record.start_frame is not None and record.end_frame is not None
            frame_range = (record.start_frame, record.end_frame)
        source = open_source(
            path, config, frame_range=frame_range, cache=self.cache, store_audio=not self.train
        )
        try:
            if source.num_frames < config.span:
                issues.append("short_clip_looped")
            starts = segment_starts(
                source.num_frames, self.num_segments, config.span, train=self.train,
                generator=generator,
            )  # fmt: skip
            indices = frame_indices(
                starts, config.frames_per_segment, config.frame_stride, source.num_frames
            )
            decoded = read_clip(source, indices, self.reads, config.audio_seconds)
        finally:
            source.close()
        if self.reads.audio and not source.has_audio:
            issues.append("no_audio")
        if self.strict and issues:
            raise BadVideoError(f"{record.path}: {', '.join(issues)}")
        params = transforms.spatial(
            decoded.height, decoded.width, train=self.train, generator=generator
        )
        item: dict[str, Any] = {
            m: transforms.recognition_input(m, decoded, params) for m in config.modalities
        }
        for source_name in config.policy_sources:
            item[f"policy_{source_name}"] = transforms.policy_input(
                source_name, decoded, params, item.get(source_name)
            )
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
