"""Class folders: one folder per class (FCVID, Mini-Sports1M, your own videos).

Input: ``<class>/...`` (the validation split is drawn per class) or ``train|val/<class>/...``
(the split is given). Folder names match class names with ``_`` read as a space.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from data.lists import VideoRecord

from .common import Built, class_key


def has_split_folders(root: Path) -> bool:
    """``root/train`` and ``root/val`` both exist: the split is given, not drawn."""
    return (root / "train").is_dir() and (root / "val").is_dir()


def class_folders(
    files: Iterable[str], given_split: bool
) -> tuple[list[tuple[str | None, str, list[str]]], int]:
    """Group files by class folder.

    Args:
        files: paths relative to the data root.
        given_split: the layout is ``train|val/<class>/...`` rather than ``<class>/...``.

    Returns:
        ``([(split, folder, files), ...], files outside a class folder)``, sorted; ``split`` is
        ``None`` without a given split. Files deeper inside a class folder belong to it.
    """
    depth = 1 if given_split else 0
    groups: dict[tuple[str | None, str], list[str]] = {}
    loose = 0
    for path in files:
        parts = path.split("/")
        split = parts[0] if given_split else None
        if len(parts) < depth + 2 or (given_split and split not in ("train", "val")):
            loose += 1
        else:
            groups.setdefault((split, parts[depth]), []).append(path)
    grouped = [(split, folder, sorted(paths)) for (split, folder), paths in sorted(groups.items())]
    return grouped, loose


def split_class(
    files: Sequence[str], name: str, val_fraction: float, seed: int
) -> tuple[list[str], list[str]]:
    """Draw ``round(len(files) * val_fraction)`` validation files of one class.

    The generator is seeded with the seed *and* the class name, so adding or removing a class
    leaves every other class's split unchanged; ``random.Random`` hashes a string seed with
    SHA-512, the same in every process (unlike ``hash()``).
    """
    shuffled = sorted(files)
    random.Random(f"{seed}/{name}").shuffle(shuffled)
    count = round(len(shuffled) * val_fraction)
    return sorted(shuffled[count:]), sorted(shuffled[:count])


def build_folders(
    files: Sequence[str],
    *,
    given_split: bool,
    val_fraction: float,
    seed: int,
    classes: Sequence[str] | None,
) -> Built:
    """Lists from class folders: ``class/*`` split by ``val_fraction``, or ``train|val/class/*``.

    Classes are ``classes`` or else the sorted folder names (of ``train/`` for a given split);
    a folder outside them is listed as unknown and its videos left out. Folder names match
    class names with ``_`` read as a space.
    """
    groups, loose = class_folders(files, given_split)
    names = (
        list(classes)
        if classes is not None
        else sorted({folder for split, folder, _ in groups if split != "val"})
    )
    built = Built(classes=names)
    if loose:
        built.skipped["files outside a class folder"] = loose
    index_of = {class_key(name): i for i, name in enumerate(names)}
    unknown: Counter[str] = Counter()
    for split, folder, paths in groups:
        label = index_of.get(class_key(folder))
        if label is None:
            unknown[folder] += len(paths)
            continue
        if split is None:
            train, val = split_class(paths, folder, val_fraction, seed)
            built.splits["train"] += [VideoRecord(p, (label,)) for p in train]
            built.splits["val"] += [VideoRecord(p, (label,)) for p in val]
        else:
            built.splits[split] += [VideoRecord(p, (label,)) for p in paths]
    reason = "not in --classes" if classes is not None else "no folder of that name in train/"
    built.unknown = [f"{folder}\t{reason} ({n} videos)" for folder, n in unknown.items()]
    return built
