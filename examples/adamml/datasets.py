"""Write the list files and classes.txt of the paper's datasets for train.py.

One sub-command per source (AdaMML §4.1 and appendix A)::

    # Kinetics-Sounds: Kinetics-400 annotation CSVs + downloaded clips
    python examples/adamml/datasets.py kinetics-sounds --data-root k400/videos \\
        --annotations k400/train.csv k400/validate.csv --out lists/kinetics-sounds
    # ActivityNet v1.3: the annotation JSON + downloaded videos (multi-label lines)
    python examples/adamml/datasets.py activitynet --data-root anet/videos \\
        --json activity_net.v1-3.min.json --out lists/activitynet
    # one folder per class (FCVID, Mini-Sports1M, your own videos)
    python examples/adamml/datasets.py folders --data-root videos/ --val-fraction 0.25 --seed 0

Each writes, under ``--out`` (default: ``--data-root``): ``train.txt`` and ``val.txt`` with
``path label`` lines (paths relative to ``--data-root``, integer labels, ``3,7`` for several
labels), ``classes.txt`` (one name per line, line order = label index), ``missing.txt`` (clips
the annotations name but the folder lacks) and ``unknown.txt`` (labels that could not be
placed). Labels are written as integers because class names contain spaces, which the
whitespace-separated list format cannot hold; paths that contain whitespace make every list a
CSV file (``train.csv``, ``val.csv``), the one list format that can hold them (docs/data.md).

Missing clips and unknown labels are counted, listed and left out; nothing is written until
every input has been read, and every file is replaced atomically. Bad input (a missing file,
malformed JSON, wrong CSV columns) stops with one line naming the file and line, exit status 2.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import random
import re
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

# Kept in step with data.py's VIDEO_SUFFIXES; not imported because data.py is being split into a
# package and this script must run without importing torch.
VIDEO_SUFFIXES = (".mp4", ".mkv", ".webm", ".avi", ".mov", ".m4v")

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
ACTIVITYNET_SUBSETS = {"training": "train", "validation": "val", "testing": None}
# Downloaders name a trimmed clip youtubeid_start_end with 6-digit zero-padded seconds; the
# YouTube id itself may contain '_' and '-', so only the two numeric fields are anchored.
TRIMMED_CLIP = re.compile(r"(?P<id>.+)_(?P<start>\d{6})_(?P<end>\d{6})")
ClipKey = tuple[str, int | None, int | None]


class InputError(ValueError):
    """Bad input; the message starts with the file (and line) it comes from."""


@dataclass(frozen=True)
class Entry:
    """One list line: a video path relative to the data root and its label indices."""

    path: str
    labels: tuple[int, ...]


@dataclass
class Built:
    """What a sub-command found, before anything is written.

    Attributes:
        classes: class names; the index is the label.
        splits: ``{"train": [...], "val": [...]}`` list entries.
        missing: ``split<TAB>clip[<TAB>file:line]`` per clip the annotations name but the
            folder lacks.
        unknown: ``label<TAB>reason`` per label that could not be placed.
        skipped: other counts for the summary (``{"rows of other classes": 12}``).
    """

    classes: list[str]
    splits: dict[str, list[Entry]] = field(default_factory=lambda: {"train": [], "val": []})
    missing: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)


# --------------------------------------------------------------------------------------------
# Scanning and writing
# --------------------------------------------------------------------------------------------
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


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path``, then rename it over ``path``.

    A reader (or a crash) never sees half a list: ``path`` holds either the old content or the
    new one, and the temporary file is removed when the write fails.
    """
    # Not tempfile.mkstemp: its files are private (0600) and the lists are often shared.
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "w", encoding="utf-8", newline="") as file:
            file.write(text)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def list_text(entries: Sequence[Entry], as_csv: bool) -> str:
    """The list file's content: ``path label`` lines, or CSV rows under a ``path,label`` header."""
    if not as_csv:
        return "".join(f"{e.path} {','.join(map(str, e.labels))}\n" for e in entries)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "label"])
    writer.writerows([e.path, ",".join(map(str, e.labels))] for e in entries)
    return buffer.getvalue()


def write_outputs(built: Built, out: Path) -> list[Path]:
    """Write the lists, ``classes.txt``, ``missing.txt`` and ``unknown.txt``; return the lists."""
    out.mkdir(parents=True, exist_ok=True)
    as_csv = any(re.search(r"\s", e.path) for entries in built.splits.values() for e in entries)
    suffix = ".csv" if as_csv else ".txt"
    write_atomic(out / "classes.txt", "".join(f"{name}\n" for name in built.classes))
    lists = []
    for split, entries in built.splits.items():
        target = out / f"{split}{suffix}"
        write_atomic(target, list_text(entries, as_csv))
        lists.append(target)
    write_atomic(out / "missing.txt", "".join(f"{line}\n" for line in built.missing))
    write_atomic(out / "unknown.txt", "".join(f"{line}\n" for line in built.unknown))
    return lists


def summary(built: Built, out: Path) -> str:
    """One line: videos per split, classes, missing clips and unknown labels, other skips."""
    sizes = ", ".join(f"{split} {len(entries)}" for split, entries in built.splits.items())
    line = (
        f"videos: {sizes}; classes: {len(built.classes)}; "
        f"missing clips: {len(built.missing)} (listed in {out / 'missing.txt'}); "
        f"unknown labels: {len(built.unknown)} (listed in {out / 'unknown.txt'})"
    )
    if built.skipped:
        line += "; left out: " + ", ".join(f"{what} {n}" for what, n in built.skipped.items())
    return line


# --------------------------------------------------------------------------------------------
# Kinetics-Sounds
# --------------------------------------------------------------------------------------------
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


def read_text(path: Path) -> str:
    """The file's text; a missing or undecodable file is an :class:`InputError`."""
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read: {error}") from None


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
            built.splits[row.split].append(Entry(pick(found), (label,)))
        else:
            built.missing.append(f"{row.split}\t{row.clip}\t{row.source}")
    built.unknown = [
        f"{name}\tno annotation row names this class"
        for i, name in enumerate(classes)
        if i not in seen
    ]
    return built


# --------------------------------------------------------------------------------------------
# ActivityNet v1.3
# --------------------------------------------------------------------------------------------
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
            built.splits[video.split].append(Entry(pick(candidates), labels))
        else:
            built.missing.append(f"{video.split}\t{video.video_id}")
    built.unknown = [f"{label}\tnot in --classes ({n} videos)" for label, n in unknown.items()]
    return built


# --------------------------------------------------------------------------------------------
# Class folders
# --------------------------------------------------------------------------------------------
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
            built.splits["train"] += [Entry(p, (label,)) for p in train]
            built.splits["val"] += [Entry(p, (label,)) for p in val]
        else:
            built.splits[split] += [Entry(p, (label,)) for p in paths]
    reason = "not in --classes" if classes is not None else "no folder of that name in train/"
    built.unknown = [f"{folder}\t{reason} ({n} videos)" for folder, n in unknown.items()]
    return built


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------
def read_class_file(path: Path) -> list[str]:
    """``classes.txt``: one name per line; duplicates are an :class:`InputError`."""
    names = [line.strip() for line in read_text(path).splitlines() if line.strip()]
    duplicates = sorted(name for name, n in Counter(names).items() if n > 1)
    if duplicates:
        raise InputError(f"{path}: duplicate class names {duplicates}")
    return names


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        prog="datasets.py",
        description=__doc__.split("\n\n")[0],
        epilog="Writes OUT/{train,val}.txt (.csv when a path has a space), OUT/classes.txt, "
        "OUT/missing.txt and OUT/unknown.txt.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="DATASET")

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=summary, description=summary)
        sub.add_argument(
            "--data-root",
            type=Path,
            required=True,
            help="folder holding the videos; list paths are relative to it",
        )
        sub.add_argument(
            "--out", type=Path, help="folder for the lists and classes.txt (default: --data-root)"
        )
        return sub

    kinetics = command(
        "kinetics-sounds",
        "Kinetics-400 CSVs + clips -> the 31 Kinetics-Sounds classes (AdaMML §4.1)",
    )
    kinetics.add_argument(
        "--annotations",
        type=Path,
        nargs="+",
        required=True,
        metavar="CSV",
        help="Kinetics-400 annotation CSVs (train.csv validate.csv ...); rows "
        "go to train.txt or val.txt by their split column, test rows are left "
        "out",
    )
    activitynet = command(
        "activitynet",
        "ActivityNet v1.3 JSON + videos -> untrimmed-video lists with every label of a video",
    )
    activitynet.add_argument("--json", type=Path, required=True, help="activity_net.v1-3.min.json")
    activitynet.add_argument(
        "--classes",
        type=Path,
        help="fix the class order with this classes.txt (default: sorted labels of the JSON)",
    )
    folders = command(
        "folders",
        "one folder per class (FCVID, Mini-Sports1M, your own videos); "
        "train/ and val/ sub-folders give the split, else it is drawn",
    )
    folders.add_argument(
        "--val-fraction",
        type=float,
        help="share of each class drawn for validation (default 0.2); not with "
        "train/ and val/ sub-folders",
    )
    folders.add_argument("--seed", type=int, default=0, help="seed of the drawn split")
    folders.add_argument(
        "--classes",
        type=Path,
        help="fix the classes and their order with this classes.txt (default: sorted folder names)",
    )
    return parser, parser.parse_args(argv)


def build(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Built:
    """Read the inputs of ``args.command`` and match them with the videos under the data root."""
    root: Path = args.data_root
    if args.command == "kinetics-sounds":
        rows = [row for path in args.annotations for row in read_kinetics_csv(path)]
        return build_kinetics_sounds(rows, scan_videos(root), KINETICS_SOUNDS_CLASSES)
    classes = read_class_file(args.classes) if args.classes else None
    if args.command == "activitynet":
        return build_activitynet(read_activitynet_json(args.json), scan_videos(root), classes)
    given_split = has_split_folders(root)
    if given_split and args.val_fraction is not None:
        parser.error(f"--val-fraction: {root} already has train/ and val/ sub-folders")
    val_fraction = 0.2 if args.val_fraction is None else args.val_fraction
    if not 0.0 <= val_fraction < 1.0:
        parser.error(f"--val-fraction must be in [0, 1), got {val_fraction}")
    return build_folders(
        scan_videos(root),
        given_split=given_split,
        val_fraction=val_fraction,
        seed=args.seed,
        classes=classes,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run one sub-command; 0 when the lists were written (argparse exits with 2 on bad input)."""
    parser, args = parse_args(argv)
    if not args.data_root.is_dir():
        parser.error(f"--data-root {args.data_root}: not a directory")
    try:
        built = build(args, parser)
    except InputError as error:
        parser.error(str(error))
    if not built.splits["train"]:
        parser.error(
            f"no training video found under {args.data_root} "
            f"({len(built.missing)} missing); check --data-root"
        )
    out = args.out or args.data_root
    try:
        lists = write_outputs(built, out)
    except OSError as error:
        parser.error(f"--out {out}: cannot write: {error}")
    print(f"{args.command}: wrote {', '.join(map(str, lists))}, {out / 'classes.txt'}")
    print(summary(built, out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
