"""Tests of examples/adamml/files.py: atomic writes."""

from __future__ import annotations

import multiprocessing
import os
import sys
from pathlib import Path
from typing import BinaryIO

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "adamml"))

import files


def test_text_is_written_as_utf8_with_the_line_ends_given(tmp_path: Path) -> None:
    files.atomic_write_text(tmp_path / "classes.txt", "café\nsinging\r\n")
    assert (tmp_path / "classes.txt").read_bytes() == "café\nsinging\r\n".encode()
    assert os.listdir(tmp_path) == ["classes.txt"]


def test_a_failed_rename_leaves_the_old_file_and_no_temporary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "train.txt"
    target.write_text("old 0\n")

    def broken_replace(source: str, destination: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(files.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        files.atomic_write_text(target, "new 1\n" * 1000)
    assert target.read_text() == "old 0\n"
    assert os.listdir(tmp_path) == ["train.txt"]


def test_a_writer_that_fails_half_way_leaves_the_old_file_and_no_temporary(
    tmp_path: Path,
) -> None:
    target = tmp_path / "checkpoint.pt"
    target.write_bytes(b"old")

    def half(file: BinaryIO) -> None:
        file.write(b"new, half")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        files.atomic_write(target, half)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["checkpoint.pt"]


def test_written_files_get_the_permissions_of_ordinary_files(tmp_path: Path) -> None:
    (tmp_path / "ordinary.txt").write_text("")
    files.atomic_write_text(tmp_path / "train.txt", "a.mp4 0\n")
    assert (tmp_path / "train.txt").stat().st_mode == (tmp_path / "ordinary.txt").stat().st_mode


def _write_many(target: Path, byte: int) -> None:
    for _ in range(50):
        files.atomic_write(target, lambda file: file.write(bytes([byte]) * 10_000))


def test_processes_writing_one_target_at_once_leave_one_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "entry.pt"
    context = multiprocessing.get_context("fork")
    writers = [context.Process(target=_write_many, args=(target, b)) for b in (1, 2, 3)]
    for process in writers:
        process.start()
    for process in writers:
        process.join(timeout=60)
        assert process.exitcode == 0
    content = target.read_bytes()
    assert len(content) == 10_000 and len(set(content)) == 1
    assert os.listdir(tmp_path) == ["entry.pt"]
