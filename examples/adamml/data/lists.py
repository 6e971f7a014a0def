"""List files: ``classes.txt``, list lines of both source layouts, and :class:`VideoRecord`.

Two layouts are read (``docs/data.md``, "Source layouts"):

* video files (mp4/mkv/webm with an audio track): lines ``path label``;
* frame folders (the reference implementation's layout): lines
  ``path start_frame end_frame label``.

Labels are integers or class names from ``classes.txt``; ``3,7`` is a multi-label line.
:func:`write_list` and :func:`write_classes` write what :func:`parse_list_file` and
:func:`read_classes` read back: every list the examples write goes through them.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from files import atomic_write_text


@dataclass(frozen=True)
class VideoRecord:
    """One list-file line.

    Attributes:
        path: video file or frame folder, relative to the data root.
        labels: class indices (one for single-label data).
        line: ``list.txt:12`` — where the record came from, for messages; empty for a record
            made to be written.
        start_frame: first frame of a frame folder (``None`` for video files).
        end_frame: last frame of a frame folder, inclusive.
    """

    path: str
    labels: tuple[int, ...]
    line: str = ""
    start_frame: int | None = None
    end_frame: int | None = None

    @property
    def is_frame_folder(self) -> bool:
        return self.start_frame is not None

    @property
    def video_id(self) -> str:
        return self.path


def read_classes(path: str | Path) -> list[str]:
    """Read ``classes.txt``: one class name per line, the line order is the label index.

    Raises:
        ValueError: the file holds no name, or a name appears twice.
    """
    text = Path(path).read_text(encoding="utf-8")
    names = [line.strip() for line in text.splitlines() if line.strip()]
    # Without this, every line of every list would be refused as out of range, one warning
    # each, and the error would blame the list file rather than this one.
    if not names:
        raise ValueError(f"{path}: expected one class name per line, got an empty file")
    duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicates:
        raise ValueError(f"{path}: duplicate class names {duplicates}")
    return names


def write_classes(path: str | Path, names: Sequence[str]) -> None:
    """Write ``classes.txt`` (one name per line, line order = label index), atomically.

    Raises:
        ValueError: no name, a duplicate, or a name :func:`read_classes` would not read back
            (empty, with a line break or surrounding whitespace).
    """
    if not names:
        raise ValueError("names: expected at least one class name, got none")
    for name in names:
        if name != name.strip() or len(name.splitlines()) != 1:
            raise ValueError(
                f"names: expected names without surrounding whitespace or line breaks, got {name!r}"
            )
    duplicates = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicates:
        raise ValueError(f"names: expected distinct names, got duplicates {duplicates}")
    atomic_write_text(path, "".join(f"{name}\n" for name in names))


def _parse_labels(text: str, where: str, classes: Sequence[str] | None) -> tuple[int, ...]:
    labels = []
    for token in text.replace(";", ",").split(","):
        token = token.strip()
        if not token:
            raise ValueError(f"{where}: empty label in {text!r}")
        if token.lstrip("-").isdigit():
            index = int(token)
        elif classes is not None and token in classes:
            index = list(classes).index(token)
        else:
            raise ValueError(f"{where}: unknown label {token!r}")
        if index < 0 or (classes is not None and index >= len(classes)):
            limit = f"[0, {len(classes)})" if classes is not None else ">= 0"
            raise ValueError(f"{where}: label {index} out of range {limit}")
        labels.append(index)
    return tuple(labels)


def parse_list_line(
    fields: Sequence[str], where: str, classes: Sequence[str] | None = None
) -> VideoRecord:
    """Parse the fields of one list line: ``path label`` or ``path start end label``.

    Args:
        fields: the line split on whitespace (or a CSV row).
        where: ``file:line`` used in error messages.
        classes: class names; names in the label field map to their index.

    Returns:
        The record.

    Raises:
        ValueError: wrong field count, non-integer frame numbers, unknown or out-of-range label;
            the message starts with ``where``.
    """
    fields = [f.strip() for f in fields]
    if len(fields) == 2:
        return VideoRecord(fields[0], _parse_labels(fields[1], where, classes), where)
    if len(fields) == 4:
        path, start, end, label = fields
        if not (start.isdigit() and end.isdigit()):
            raise ValueError(f"{where}: start/end frames must be integers, got {start!r} {end!r}")
        if int(end) < int(start):
            raise ValueError(f"{where}: end_frame {end} < start_frame {start}")
        return VideoRecord(path, _parse_labels(label, where, classes), where, int(start), int(end))
    raise ValueError(
        f"{where}: expected 'path label' or 'path start_frame end_frame label', "
        f"got {len(fields)} fields: {' '.join(fields)!r}"
    )


def parse_list_file(
    path: str | Path, classes: Sequence[str] | None = None, *, strict: bool = True
) -> tuple[list[VideoRecord], list[str]]:
    """Read a list file (whitespace-separated, or CSV when it ends in ``.csv``).

    Blank lines and lines starting with ``#`` are ignored; a CSV header whose last column is
    ``label``/``labels`` is skipped.

    Args:
        path: the list file.
        classes: class names for name labels and range checks.
        strict: raise on the first malformed line instead of collecting it.

    Returns:
        ``(records, errors)``; ``errors`` holds one message per skipped line.

    Raises:
        ValueError: with ``strict``, the first malformed line (message names ``file:line``).
    """
    path = Path(path)
    text = path.read_text(encoding="utf-8").splitlines()
    rows: Iterable[list[str]]
    rows = csv.reader(text) if path.suffix == ".csv" else (line.split() for line in text)
    records, errors = [], []
    for number, fields in enumerate(rows, start=1):
        if not fields or fields[0].strip().startswith("#"):
            continue
        if path.suffix == ".csv" and number == 1 and fields[-1].strip() in ("label", "labels"):
            continue
        try:
            records.append(parse_list_line(fields, f"{path.name}:{number}", classes))
        except ValueError as error:
            if strict:
                raise
            errors.append(str(error))
    return records, errors


def list_suffix(records: Iterable[VideoRecord]) -> str:
    """``.csv`` when a path contains whitespace (a whitespace-separated list cannot hold it),
    else ``.txt``."""
    return ".csv" if any(re.search(r"\s", record.path) for record in records) else ".txt"


def format_list(records: Iterable[VideoRecord], *, as_csv: bool = False) -> str:
    """The text of a list file holding ``records``: the lines :func:`parse_list_file` reads.

    Each record is ``path label`` or, for a frame folder, ``path start_frame end_frame label``;
    several labels are joined by commas (``3,7``). ``as_csv`` writes CSV rows under a header
    (``path,label``, or ``path,start_frame,end_frame,label`` when a record is a frame folder).
    """
    rows = []
    for record in records:
        frames = [str(record.start_frame), str(record.end_frame)] if record.is_frame_folder else []
        rows.append([record.path, *frames, ",".join(map(str, record.labels))])
    if not as_csv:
        return "".join(" ".join(row) + "\n" for row in rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    frame_columns = ["start_frame", "end_frame"] if any(len(row) == 4 for row in rows) else []
    writer.writerow(["path", *frame_columns, "label"])
    writer.writerows(rows)
    return buffer.getvalue()


def write_list(path: str | Path, records: Iterable[VideoRecord]) -> None:
    """Write ``records`` as a list file, atomically: CSV when ``path`` ends in ``.csv``, else
    whitespace-separated lines (see :func:`format_list`).

    Raises:
        ValueError: a record without a label, or a path with whitespace in a list that is not
            ``.csv`` (:func:`list_suffix` picks the suffix that holds every path).
    """
    path, records = Path(path), list(records)
    as_csv = path.suffix == ".csv"
    for record in records:
        if not record.labels:
            raise ValueError(f"records: expected at least one label, got none for {record.path!r}")
        if not as_csv and re.search(r"\s", record.path):
            raise ValueError(
                f"{path}: expected paths without whitespace in a whitespace-separated list, "
                f"got {record.path!r}; write a .csv list"
            )
    atomic_write_text(path, format_list(records, as_csv=as_csv))
