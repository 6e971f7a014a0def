"""Tests of examples/adamml/data/cache.py: a cached dataset gives the items of a fresh one."""

from __future__ import annotations

import multiprocessing
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "adamml"))

import data as D
from make_dataset import write_mp4

FPS = 8
SIZE = 48
SAMPLE_RATE = 16000
CONFIG = D.DataConfig.demo(resize_range=(32, 40), crop_size=32, test_resize=32, policy_size=16)
CLIPS = ("noisy.mp4", "silent_track.mp4", "short.mp4")


def moving_frames(count: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    frames = np.zeros((count, SIZE, SIZE, 3), np.uint8)
    for i in range(count):
        frames[i, :, :, 0] = (30 + 5 * i) % 256
        frames[i, i % SIZE : i % SIZE + 8] = rng.integers(0, 256, (3,), np.uint8)
    return frames


def noisy_tone(seconds: float, seed: int) -> np.ndarray:
    # Broadband noise makes the AAC encoder use noise substitution, whose decoder state runs
    # across seeks: the case that forces audio to be cached per draw.
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    noise = np.random.default_rng(seed).normal(0, 0.2, t.size)
    return (0.3 * np.sin(2 * np.pi * 440 * t) * (t < seconds / 2) + noise).astype(np.float32)


def write_clips(root: Path, seed: int = 0) -> None:
    write_mp4(root / "noisy.mp4", moving_frames(40, seed), FPS, noisy_tone(5, seed), SAMPLE_RATE)
    write_mp4(root / "silent_track.mp4", moving_frames(32, seed + 1), FPS, None)
    write_mp4(root / "short.mp4", moving_frames(5, seed + 2), FPS, noisy_tone(0.6, seed))


@pytest.fixture
def media(tmp_path: Path) -> Path:
    root = tmp_path / "media"
    root.mkdir()
    write_clips(root)
    (root / "list.txt").write_text("".join(f"{name} {i}\n" for i, name in enumerate(CLIPS)))
    return root


def dataset(
    root: Path, train: bool, cache: Path | None, config: D.DataConfig = CONFIG
) -> D.VideoDataset:
    return D.VideoDataset(root / "list.txt", root, config, train=train, cache_dir=cache)


def assert_same_items(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for key, value in a.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, b[key]), key
        else:
            assert value == b[key], key


def load(data: D.VideoDataset, index: int, seed: int) -> dict[str, Any]:
    return data.load(data.records[index], torch.Generator().manual_seed(seed))


def entries(cache: Path, kind: str) -> list[Path]:
    return sorted(cache.glob(f"*.{kind}.pt"))


@pytest.mark.parametrize("train", [True, False])
def test_cached_items_are_bit_identical_to_fresh_ones(
    media: Path, tmp_path: Path, train: bool
) -> None:
    fresh = dataset(media, train, None)
    cached = dataset(media, train, tmp_path / "cache")
    # Round 0 builds the entries, round 1 reads them back.
    for _ in range(2):
        for index in range(len(CLIPS)):
            for seed in range(3):
                assert_same_items(load(fresh, index, seed), load(cached, index, seed))
    assert len(entries(tmp_path / "cache", "video")) == len(CLIPS)
    # Test draws repeat every epoch and are stored; training draws are not.
    assert len(entries(tmp_path / "cache", "audio")) == (0 if train else 2)


def test_a_rewritten_file_rebuilds_its_entry(media: Path, tmp_path: Path) -> None:
    cached = dataset(media, True, tmp_path / "cache")
    before = load(cached, 0, 0)
    mirrored = np.ascontiguousarray(moving_frames(40, 7)[:, :, ::-1])
    write_mp4(media / "noisy.mp4", mirrored, FPS, noisy_tone(5, 7), SAMPLE_RATE)
    after = load(cached, 0, 0)
    assert not torch.equal(before["rgb"], after["rgb"])
    assert_same_items(load(dataset(media, True, None), 0, 0), after)
    assert len(entries(tmp_path / "cache", "video")) == 1


def test_a_touched_file_rebuilds_its_entry(media: Path, tmp_path: Path) -> None:
    cached = dataset(media, False, tmp_path / "cache")
    load(cached, 0, 0)
    (entry,) = entries(tmp_path / "cache", "video")
    built = entry.stat().st_mtime_ns
    stat = (media / "noisy.mp4").stat()
    os.utime(media / "noisy.mp4", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    load(cached, 0, 0)
    assert entry.stat().st_mtime_ns != built
    assert torch.load(entry, weights_only=True)["source"][1] == stat.st_mtime_ns + 10**9


def test_other_decode_settings_get_their_own_entries(media: Path, tmp_path: Path) -> None:
    wider = D.DataConfig.demo(
        resize_range=(32, 44), crop_size=32, test_resize=32, policy_size=16, sample_rate=3200
    )
    for config in (CONFIG, wider):
        fresh = dataset(media, False, None, config)
        cached = dataset(media, False, tmp_path / "cache", config)
        assert_same_items(load(fresh, 0, 0), load(cached, 0, 0))
    assert len(entries(tmp_path / "cache", "video")) == 2
    assert len(entries(tmp_path / "cache", "audio")) == 2


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_a_corrupt_entry_is_rebuilt(media: Path, tmp_path: Path, damage: str) -> None:
    cached = dataset(media, False, tmp_path / "cache")
    expected = load(cached, 0, 0)
    for entry in [*entries(tmp_path / "cache", "video"), *entries(tmp_path / "cache", "audio")]:
        whole = entry.read_bytes()
        broken = {"truncate": whole[: len(whole) // 2], "garbage": os.urandom(500), "empty": b""}
        entry.write_bytes(broken[damage])
    assert_same_items(expected, load(dataset(media, False, tmp_path / "cache"), 0, 0))
    (entry,) = entries(tmp_path / "cache", "video")
    assert torch.load(entry, weights_only=True)["frames"].shape == (40, 40, 40, 3)


def test_an_unwritable_cache_warns_and_still_gives_the_fresh_items(
    media: Path, tmp_path: Path
) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    cached = dataset(media, False, blocker / "cache")
    with pytest.warns(UserWarning, match="decode cache: cannot write"):
        item = load(cached, 0, 0)
    assert_same_items(load(dataset(media, False, None), 0, 0), item)


def test_a_file_that_does_not_decode_to_its_end_behaves_as_without_a_cache(
    media: Path, tmp_path: Path
) -> None:
    whole = (media / "noisy.mp4").read_bytes()
    (media / "noisy.mp4").write_bytes(whole[: len(whole) // 2])
    for cache in (None, tmp_path / "cache"):
        with pytest.raises(D.BadVideoError):
            load(dataset(media, False, cache), 0, 0)
    assert entries(tmp_path / "cache", "video") == []


def _rebuild_repeatedly(cache: Path, clip: Path, rounds: int) -> None:
    for _ in range(rounds):
        for file in cache.glob("*.video.pt"):
            file.unlink(missing_ok=True)
        D.DecodeCache(cache, CONFIG.resize_range[1], CONFIG.sample_rate).video(clip)


def _read_until(cache: Path, done: Any, queue: Any) -> None:
    read = 0
    while not done.is_set() or read == 0:
        for file in cache.glob("*.video.pt"):
            try:
                torch.load(file, weights_only=True)
            except FileNotFoundError:
                continue
            read += 1
    queue.put(read)


def test_concurrent_writers_leave_only_whole_entries(media: Path, tmp_path: Path) -> None:
    cache, clip = tmp_path / "cache", media / "noisy.mp4"
    D.DecodeCache(cache, CONFIG.resize_range[1], CONFIG.sample_rate).video(clip)
    (entry,) = entries(cache, "video")
    reference = torch.load(entry, weights_only=True)["frames"]
    context = multiprocessing.get_context("fork")
    done, queue = context.Event(), context.Queue()
    writers = [context.Process(target=_rebuild_repeatedly, args=(cache, clip, 8)) for _ in range(3)]
    reader = context.Process(target=_read_until, args=(cache, done, queue))
    for process in (*writers, reader):
        process.start()
    for process in writers:
        process.join(timeout=120)
        assert process.exitcode == 0
    done.set()
    # A reader that met a half-written file would have died on torch.load.
    assert queue.get(timeout=60) > 0
    reader.join(timeout=60)
    assert reader.exitcode == 0
    assert list(cache.glob("*.tmp")) == []
    (entry,) = entries(cache, "video")
    assert torch.equal(torch.load(entry, weights_only=True)["frames"], reference)
