"""ActivityNet v1.3: untrimmed videos with every label of a video (multi-label lines).

Input: the annotation JSON (``{"database": {id: {"subset", "annotations"}}}``) and the
downloaded videos, named ``v_<id>.mp4`` (the official download's names) or ``<id>.<suffix>``.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from data.lists import VideoRecord

from .common import Built, InputError, pick, read_text

ACTIVITYNET_SUBSETS = {"training": "train", "validation": "val", "testing": None}


@dataclass(frozen=True)
class ActivityNetVideo:
    """One video of the ActivityNet JSON: its id, ``train``/``val``/``None`` and labels."""

    video_id: str
    split: str | None
    labels: tuple[str, ...]


def read_activitynet_json(path: Path) -> list[ActivityNetVideo]:
    """Read the v1.3 annotation JSON (``{"database": {id: {"subset", "annotations"}}}``).

    Each video's labels are its annotations' labels, each once, in order of appearance.

    Raises:
        InputError: invalid JSON (message names ``file:line``) or an entry without the v1.3
            fields (message names the video id).
    """
    try:
        data = json.loads(read_text(path))
    except json.JSONDecodeError as error:
        raise InputError(f"{path}:{error.lineno}: not valid JSON: {error.msg}") from None
    database = data.get("database") if isinstance(data, dict) else None
    if not isinstance(database, dict):
        raise InputError(f"{path}: expected an object with a 'database' object (ActivityNet v1.3)")
    videos = []
    for video_id, entry in database.items():
        where = f"{path}: video {video_id!r}"
        subset = entry.get("subset") if isinstance(entry, dict) else None
        if subset not in ACTIVITYNET_SUBSETS:
            raise InputError(
                f"{where}: 'subset' must be training, validation or testing, got {subset!r}"
            )
        annotations = entry.get("annotations", [])
        if not isinstance(annotations, list) or not all(
            isinstance(a, dict) and isinstance(a.get("label"), str) for a in annotations
        ):
            raise InputError(f"{where}: 'annotations' must be a list of objects with a 'label'")
        labels = tuple(dict.fromkeys(a["label"] for a in annotations))
        videos.append(ActivityNetVideo(video_id, ACTIVITYNET_SUBSETS[subset], labels))
    return videos


def index_activitynet_videos(paths: Iterable[str]) -> dict[str, list[str]]:
    """Files by video id: ``v_<id>.mp4`` (the official download's names) or ``<id>.<suffix>``."""
    index: dict[str, list[str]] = {}
    for path in paths:
        stem = Path(path).stem
        index.setdefault(stem, []).append(path)
        if stem.startswith("v_"):
            index.setdefault(stem[2:], []).append(path)
    return index


def build_activitynet(
    videos: Iterable[ActivityNetVideo], files: Sequence[str], classes: Sequence[str] | None
) -> Built:
    """One multi-label entry per training / validation video, with every label it has.

    Classes are ``classes`` or else the sorted labels of the training and validation videos.
    Labels outside ``classes`` are listed as unknown and dropped from their videos; a video
    left with no label, and a testing video (labels withheld), is counted and left out.
    """
    videos = list(videos)
    names = (
        list(classes)
        if classes is not None
        else sorted({label for v in videos if v.split is not None for label in v.labels})
    )
    built = Built(classes=names)
    index_of = {name: i for i, name in enumerate(names)}
    found = index_activitynet_videos(files)
    unknown: Counter[str] = Counter()
    for video in videos:
        if video.split is None:
            built.skipped["testing videos"] += 1
            continue
        unknown.update(label for label in video.labels if label not in index_of)
        labels = tuple(sorted({index_of[label] for label in video.labels if label in index_of}))
        if not labels:
            built.skipped["videos without a known label"] += 1
            continue
        candidates = found.get(video.video_id)
        if candidates:
            built.splits[video.split].append(VideoRecord(pick(candidates), labels))
        else:
            built.missing.append(f"{video.split}\t{video.video_id}")
    built.unknown = [f"{label}\tnot in --classes ({n} videos)" for label, n in unknown.items()]
    return built
