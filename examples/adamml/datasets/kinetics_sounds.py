"""Kinetics-Sounds: the 31 classes of Kinetics-400 the AdaMML authors used (AdaMML §4.1).

Input: the Kinetics-400 annotation CSVs (``label,youtube_id,time_start,time_end,split[,is_cc]``)
and the downloaded clips, named ``youtubeid_start_end`` (any folder, any video suffix) or
``youtubeid``.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from data.lists import VideoRecord

from .common import Built, InputError, class_key, pick, read_text

# The 31 classes the AdaMML authors used, as Rameswar Panda listed them in IBM/AdaMML issue #3
# ("Missing categories in Kinetics-Sound Dataset", 2022-03-22,
# https://github.com/IBM/AdaMML/issues/3). The paper (§4.1 footnote, appendix A) says only that
# 3 of the 34 classes of Arandjelović & Zisserman were removed from Kinetics, "as in [16]".
KINETICS_SOUNDS_CLASSES = (
    "blowing nose",
    "blowing out candles",
    "bowling",
    "chopping wood",
    "dribbling basketball",
    "laughing",
    "mowing lawn",
    "playing accordion",
    "playing bagpipes",
    "playing bass guitar",
    "playing clarinet",
    "playing drums",
    "playing guitar",
    "playing harmonica",
    "playing keyboard",
    "playing organ",
    "playing piano",
    "playing saxophone",
    "playing trombone",
    "playing trumpet",
    "playing violin",
    "playing xylophone",
    "ripping paper",
    "shoveling snow",
    "shuffling cards",
    "singing",
    "stomping grapes",
    "tap dancing",
    "tapping guitar",
    "tapping pen",
    "tickling",
)

KINETICS_COLUMNS = ("label", "youtube_id", "time_start", "time_end", "split")
KINETICS_SPLITS = {"train": "train", "val": "val", "validate": "val", "validation": "val"}
# Downloaders name a trimmed clip youtubeid_start_end with 6-digit zero-padded seconds; the
# YouTube id itself may contain '_' and '-', so only the two numeric fields are anchored.
TRIMMED_CLIP = re.compile(r"(?P<id>.+)_(?P<start>\d{6})_(?P<end>\d{6})")
ClipKey = tuple[str, int | None, int | None]


@dataclass(frozen=True)
class KineticsRow:
    """One Kinetics annotation row; ``split`` is ``train``, ``val`` or ``test``."""

    label: str
    youtube_id: str
    start: int
    end: int
    split: str
    source: str

    @property
    def clip(self) -> str:
        return f"{self.youtube_id}_{self.start:06d}_{self.end:06d}"


def read_kinetics_csv(path: Path) -> list[KineticsRow]:
    """Read a Kinetics annotation CSV (``label,youtube_id,time_start,time_end,split[,is_cc]``).

    Raises:
        InputError: missing columns, a short row, non-numeric times or an unknown split; the
            message names ``file:line``.
    """
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
    columns = reader.fieldnames or []
    absent = [name for name in KINETICS_COLUMNS if name not in columns]
    if absent:
        raise InputError(
            f"{path}:1: expected columns {','.join(KINETICS_COLUMNS)}[,is_cc], "
            f"got {','.join(columns) or 'nothing'} (missing {','.join(absent)})"
        )
    rows = []
    for record in reader:
        where = f"{path}:{reader.line_num}"
        if any(record.get(name) is None for name in KINETICS_COLUMNS):
            raise InputError(f"{where}: expected {len(columns)} fields, got a shorter row")
        try:
            start, end = int(float(record["time_start"])), int(float(record["time_end"]))
        except ValueError:
            raise InputError(
                f"{where}: time_start/time_end must be numbers, "
                f"got {record['time_start']!r} {record['time_end']!r}"
            ) from None
        split = record["split"].strip()
        if split != "test" and split not in KINETICS_SPLITS:
            raise InputError(f"{where}: unknown split {split!r} (expected train, val or test)")
        label, youtube_id = record["label"].strip(), record["youtube_id"].strip()
        rows.append(
            KineticsRow(label, youtube_id, start, end, KINETICS_SPLITS.get(split, split), where)
        )
    return rows


def index_kinetics_clips(paths: Iterable[str]) -> dict[ClipKey, list[str]]:
    """Files by ``(youtube_id, start, end)``; ``youtubeid.mp4`` files have no times."""
    index: dict[ClipKey, list[str]] = {}
    for path in paths:
        stem = Path(path).stem
        match = TRIMMED_CLIP.fullmatch(stem)
        key = (match["id"], int(match["start"]), int(match["end"])) if match else (stem, None, None)
        index.setdefault(key, []).append(path)
    return index


def build_kinetics_sounds(
    rows: Iterable[KineticsRow], videos: Sequence[str], classes: Sequence[str]
) -> Built:
    """Keep the rows of ``classes`` and find their clips.

    A clip is ``youtubeid_start_end`` (any folder, any video suffix) or, failing that,
    ``youtubeid``. Rows of other Kinetics classes and test rows are counted, not listed; a class
    of ``classes`` that no row names is listed as unknown (the CSVs then come from a Kinetics
    version that renamed it).
    """
    built = Built(classes=list(classes))
    index_of = {class_key(name): i for i, name in enumerate(classes)}
    clips = index_kinetics_clips(videos)
    seen = set()
    for row in rows:
        if row.split == "test":
            built.skipped["test rows"] += 1
            continue
        label = index_of.get(class_key(row.label))
        if label is None:
            built.skipped["rows of other classes"] += 1
            continue
        seen.add(label)
        found = clips.get((row.youtube_id, row.start, row.end)) or clips.get(
            (row.youtube_id, None, None)
        )
        if found:
            built.splits[row.split].append(VideoRecord(pick(found), (label,)))
        else:
            built.missing.append(f"{row.split}\t{row.clip}\t{row.source}")
    built.unknown = [
        f"{name}\tno annotation row names this class"
        for i, name in enumerate(classes)
        if i not in seen
    ]
    return built
