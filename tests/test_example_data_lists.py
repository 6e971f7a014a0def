"""Tests of examples/adamml/data/lists.py: classes.txt and list files of both layouts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "adamml"))

import data as D


def write_list(root: Path, name: str, lines: list[str]) -> Path:
    path = root / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_list_lines_of_both_layouts_with_names_and_multi_labels(tmp_path: Path) -> None:
    lines = ["# comment", "", "a.mp4 2", "b/c 1 50 beta", "d.mp4 0,2", "e 3 9 alpha;gamma"]
    path = write_list(tmp_path, "list.txt", lines)
    records, errors = D.parse_list_file(path, ["alpha", "beta", "gamma"])
    assert errors == []
    assert [(r.path, r.labels, r.start_frame, r.end_frame) for r in records] == [
        ("a.mp4", (2,), None, None),
        ("b/c", (1,), 1, 50),
        ("d.mp4", (0, 2), None, None),
        ("e", (0, 2), 3, 9),
    ]
    assert records[1].line == "list.txt:4"


def test_csv_list_with_header_and_quoted_multi_label(tmp_path: Path) -> None:
    path = write_list(tmp_path, "list.csv", ["path,label", 'x.mp4,"1,2"', "y.mp4,0"])
    records, _ = D.parse_list_file(path)
    assert [(r.path, r.labels) for r in records] == [("x.mp4", (1, 2)), ("y.mp4", (0,))]


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("only_a_path", "got 1 fields"),
        ("a b c", "got 3 fields"),
        ("a.mp4 delta", "unknown label 'delta'"),
        ("a.mp4 7", "out of range"),
        ("a x 9 1", "must be integers"),
        ("a 9 3 1", "end_frame 3 < start_frame 9"),
        ("a.mp4 1,", "empty label"),
    ],
)
def test_malformed_line_error_names_the_line_number(tmp_path: Path, bad: str, message: str) -> None:
    path = write_list(tmp_path, "list.txt", ["ok.mp4 0", bad])
    with pytest.raises(ValueError, match=rf"list\.txt:2: .*{message}"):
        D.parse_list_file(path, ["alpha", "beta"])
    records, errors = D.parse_list_file(path, ["alpha", "beta"], strict=False)
    assert [r.path for r in records] == ["ok.mp4"]
    assert len(errors) == 1 and errors[0].startswith("list.txt:2:")


def test_read_classes_rejects_duplicates(tmp_path: Path) -> None:
    (tmp_path / "classes.txt").write_text("a\nb\na\n")
    with pytest.raises(ValueError, match="duplicate class names"):
        D.read_classes(tmp_path / "classes.txt")
