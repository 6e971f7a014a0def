"""What every recipe shares: scanning the videos, matching names, and writing the outputs.

A recipe reads its annotations into a :class:`Built` (classes, list entries per split, missing
clips, unknown labels); :func:`write_outputs` writes it only once every input has been read.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from data.decoding import VIDEO_SUFFIXES
from data.lists import VideoRecord, list_suffix, read_classes, write_classes, write_list
from files import atomic_write_text
from tqdm import tqdm


class InputError(ValueError):
    """Bad input; the message starts with the file (and line) it comes from."""


@dataclass
class Built:
    """What a recipe found, before anything is written.

    Attributes:
        classes: class names; the index is the label.
        splits: ``{"train": [...], "val": [...]}`` list entries.
        missing: ``split<TAB>clip[<TAB>file:line]`` per clip the annotations name but the
            folder lacks.
        unknown: ``label<TAB>reason`` per label that could not be placed.
        skipped: other counts for the summary (``{"rows of other classes": 12}``).
    """

    classes: list[str]
    splits: dict[str, list[VideoRecord]] = field(default_factory=lambda: {"train": [], "val": []})
    missing: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)


def scan_videos(root: Path) -> list[str]:
    """Every video file under ``root`` as a sorted POSIX path relative to it (progress bar)."""
    found = []
    with tqdm(desc=f"scanning {root}", unit=" files", leave=False, disable=None) as bar:
        # Dataset folders are often symlinks to other disks.
        for folder, _, names in os.walk(root, followlinks=True):
            for name in names:
                bar.update()
                if Path(name).suffix.lower() in VIDEO_SUFFIXES:
                    found.append((Path(folder) / name).relative_to(root).as_posix())
    return sorted(found)


def pick(candidates: Sequence[str]) -> str:
    """The file to use when several match one video: an ``.mp4`` first, then path order."""
    return min(candidates, key=lambda path: (not path.lower().endswith(".mp4"), path))


def class_key(name: str) -> str:
    """Folder names use ``_`` where class names have spaces (``playing_bass_guitar``)."""
    return " ".join(name.replace("_", " ").split()).lower()


def read_text(path: Path) -> str:
    """The file's text; a missing or undecodable file is an :class:`InputError`."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read: {error}") from None


def read_class_file(path: Path) -> list[str]:
    """``--classes``: :func:`data.lists.read_classes`, its errors as :class:`InputError`."""
    try:
        return read_classes(path)
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read: {error}") from None
    except ValueError as error:
        raise InputError(str(error)) from None


def write_outputs(built: Built, out: Path) -> list[Path]:
    """Write the lists, ``classes.txt``, ``missing.txt`` and ``unknown.txt``; return the lists.

    The lists are CSV files when a path contains whitespace, which ``path label`` lines cannot
    hold (docs/data.md); each file is replaced atomically.
    """
    out.mkdir(parents=True, exist_ok=True)
    suffix = list_suffix(record for records in built.splits.values() for record in records)
    write_classes(out / "classes.txt", built.classes)
    lists = []
    for split, records in built.splits.items():
        target = out / f"{split}{suffix}"
        write_list(target, records)
        lists.append(target)
    atomic_write_text(out / "missing.txt", "".join(f"{line}\n" for line in built.missing))
    atomic_write_text(out / "unknown.txt", "".join(f"{line}\n" for line in built.unknown))
    return lists


def summary(built: Built, out: Path) -> str:
    """One line: videos per split, classes, missing clips and unknown labels, other skips."""
    sizes = ", ".join(f"{split} {len(records)}" for split, records in built.splits.items())
    line = (
        f"videos: {sizes}; classes: {len(built.classes)}; "
        f"missing clips: {len(built.missing)} (listed in {out / 'missing.txt'}); "
        f"unknown labels: {len(built.unknown)} (listed in {out / 'unknown.txt'})"
    )
    if built.skipped:
        line += "; left out: " + ", ".join(f"{what} {n}" for what, n in built.skipped.items())
    return line
