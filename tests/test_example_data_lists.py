"""Tests of examples/adamml/data/lists.py: classes.txt and list files of both layouts."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "adamml"))

import data as D
from data.lists import format_list, list_suffix, write_classes
from data.lists import write_list as write_records


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


@pytest.mark.parametrize("content", ["", "\n  \n\n"])
def test_read_classes_refuses_an_empty_file_with_one_error_naming_it(
    tmp_path: Path, content: str
) -> None:
    (tmp_path / "classes.txt").write_text(content)
    with pytest.raises(ValueError) as refused:
        D.read_classes(tmp_path / "classes.txt")
    assert str(refused.value) == (
        f"{tmp_path / 'classes.txt'}: expected one class name per line, got an empty file"
    )


def test_classes_written_are_read_back_in_order(tmp_path: Path) -> None:
    names = ["playing bass guitar", "Zumba", "café"]
    write_classes(tmp_path / "classes.txt", names)
    assert D.read_classes(tmp_path / "classes.txt") == names


@pytest.mark.parametrize(
    ("names", "message"),
    [
        ([], "expected at least one class name, got none"),
        (["a", " b"], "without surrounding whitespace or line breaks, got ' b'"),
        (["a", "b\rc"], "got 'b\\rc'"),
        (["a", ""], "got ''"),
        (["a", "b", "a"], "expected distinct names, got duplicates ['a']"),
    ],
)
def test_write_classes_refuses_names_read_classes_would_not_read_back(
    tmp_path: Path, names: list[str], message: str
) -> None:
    with pytest.raises(ValueError, match=f"^names: .*{re.escape(message)}"):
        write_classes(tmp_path / "classes.txt", names)
    assert not (tmp_path / "classes.txt").exists()


RECORDS = [
    D.VideoRecord("a/b.mp4", (2,)),
    D.VideoRecord("c.mp4", (0, 3)),
    D.VideoRecord("frames/d", (1,), start_frame=1, end_frame=40),
]


def test_format_list_writes_both_layouts_and_multi_labels() -> None:
    assert format_list(RECORDS) == "a/b.mp4 2\nc.mp4 0,3\nframes/d 1 40 1\n"
    assert format_list(RECORDS[:2], as_csv=True) == 'path,label\na/b.mp4,2\nc.mp4,"0,3"\n'
    assert format_list(RECORDS[2:], as_csv=True).startswith("path,start_frame,end_frame,label\n")


@pytest.mark.parametrize("name", ["list.txt", "list.csv"])
def test_lists_written_are_parsed_back_to_the_same_records(tmp_path: Path, name: str) -> None:
    records = [*RECORDS, D.VideoRecord("e.mp4", (4,))]
    write_records(tmp_path / name, records)
    parsed, errors = D.parse_list_file(tmp_path / name)
    assert errors == []
    assert [(r.path, r.labels, r.start_frame, r.end_frame) for r in parsed] == [
        (r.path, r.labels, r.start_frame, r.end_frame) for r in records
    ]


def test_a_path_with_whitespace_needs_a_csv_list(tmp_path: Path) -> None:
    records = [D.VideoRecord("ice hockey/a.mp4", (0,))]
    assert list_suffix(records) == ".csv" and list_suffix(RECORDS) == ".txt"
    with pytest.raises(ValueError, match=r"expected paths without whitespace.*'ice hockey/a\.mp4'"):
        write_records(tmp_path / "train.txt", records)
    assert not (tmp_path / "train.txt").exists()
    write_records(tmp_path / "train.csv", records)
    parsed, _ = D.parse_list_file(tmp_path / "train.csv")
    assert [r.path for r in parsed] == ["ice hockey/a.mp4"]


def test_a_record_without_a_label_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="records: expected at least one label, got none"):
        write_records(tmp_path / "train.txt", [D.VideoRecord("a.mp4", ())])
