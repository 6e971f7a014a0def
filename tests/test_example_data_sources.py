"""Tests of examples/adamml/data/sources.py: the three sources give the same arrays by frame
index, read_clip reads what the registry asks for, and bad paths get one message naming them."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "adamml"))

import data as D
from make_dataset import write_mp4
from modalities import Reads, reads

FPS = 8
SIZE = 48
NUM_FRAMES = 24
SAMPLE_RATE = 16000
CONFIG = D.DataConfig.demo(resize_range=(32, 40), crop_size=32, test_resize=32, policy_size=16)


def ramp(count: int = NUM_FRAMES) -> np.ndarray:
    """Frames whose value encodes their index, with a moving bar so that frames differ."""
    frames = np.zeros((count, SIZE, SIZE, 3), np.uint8)
    for i in range(count):
        frames[i] = 20 + 8 * i
        frames[i, i : i + 6] = 250
    return frames


def tone(seconds: float) -> np.ndarray:
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from PIL import Image

    root = tmp_path_factory.mktemp("sources")
    write_mp4(root / "clip.mp4", ramp(), FPS, tone(NUM_FRAMES / FPS), SAMPLE_RATE)
    write_mp4(root / "silent.mp4", ramp(), FPS, None)
    folder = root / "folder"
    folder.mkdir()
    # Files numbered from 3, as a list line "folder 3 26 0" would cut them.
    for i, frame in enumerate(ramp()):
        Image.fromarray(frame).save(folder / f"{i + 3:05d}.jpg", quality=95)
        for axis, value in (("x", 10 + i), ("y", 200 - i)):
            Image.fromarray(np.full((SIZE, SIZE), value, np.uint8)).save(
                folder / f"{axis}_{i + 3:05d}.jpg"
            )
    (folder / "meta.json").write_text(f'{{"fps": {FPS}}}')
    return root


INDICES = torch.tensor([[1, 3], [10, 12], [22, 23]])


def test_a_video_file_and_its_cache_entry_give_the_same_frames_and_audio(
    media: Path, tmp_path: Path
) -> None:
    cache = D.DecodeCache(tmp_path, CONFIG.resize_range[1], CONFIG.sample_rate)
    fresh = D.open_source(media / "clip.mp4", CONFIG)
    cached = D.open_source(media / "clip.mp4", CONFIG, cache=cache)
    assert isinstance(fresh, D.VideoFileSource) and isinstance(cached, D.CachedSource)
    for source in (fresh, cached):
        assert (source.num_frames, source.fps, source.has_audio) == (NUM_FRAMES, FPS, True)
        assert (source.height, source.width) == (40, 40)
    frames = fresh.frames(INDICES)
    assert frames.shape == (3, 2, 40, 40, 3) and frames.dtype == torch.uint8
    assert torch.equal(frames, cached.frames(INDICES))
    windows = [(0.5, 1.0), (2.0, 1.0)]
    for got, want in zip(cached.audio(windows), fresh.audio(windows), strict=True):
        assert np.array_equal(got, want) and got.shape == (CONFIG.sample_rate,)
    fresh.close()
    cached.close()


def test_repeated_and_backward_reads_of_one_video_file_give_the_same_frames(media: Path) -> None:
    source = D.open_source(media / "clip.mp4", CONFIG)
    first = source.frames(INDICES)
    # Windows of a long video read one after another, and overlapping ones seek back.
    assert torch.equal(source.frames(INDICES[1:]), first[1:])
    assert torch.equal(source.frames(INDICES[:1]), first[:1])
    source.close()


def test_a_frame_folder_is_indexed_from_its_first_file_with_its_flow(media: Path) -> None:
    source = D.open_source(media / "folder", CONFIG)
    assert isinstance(source, D.FrameFolderSource)
    assert (source.num_frames, source.fps, source.has_audio) == (NUM_FRAMES, FPS, False)
    assert (source.height, source.width) == (SIZE, SIZE)
    frames = source.frames(INDICES)
    # Index 0 is the first file, 00003.jpg: the ramp's values follow the index.
    assert abs(float(frames[1, 0, :4].float().mean()) - (20 + 8 * 10)) < 3
    x, y = source.flow(INDICES)
    assert x.shape == y.shape == (3, 2, SIZE, SIZE)
    assert abs(int(x[2, 1, 0, 0]) - (10 + 23)) <= 2 and abs(int(y[0, 0, 0, 0]) - 199) <= 2
    cut = D.open_source(media / "folder", CONFIG, frame_range=(5, 14))
    assert cut.num_frames == 10
    assert torch.equal(cut.frames(INDICES[:1]), source.frames(INDICES[:1] + 2))


def test_without_an_audio_track_the_windows_are_silence_of_their_length(media: Path) -> None:
    for source in (D.open_source(media / "silent.mp4", CONFIG),
                   D.open_source(media / "folder", CONFIG)):  # fmt: skip
        assert not source.has_audio
        silence = source.audio([(-0.5, 1.0), (1.0, 0.5)])
        assert [w.shape for w in silence] == [(4000,), (2000,)]
        assert all(not w.any() for w in silence)
        source.close()


def test_flow_from_a_video_file_names_the_file_and_the_layout(media: Path) -> None:
    source = D.open_source(media / "clip.mp4", CONFIG)
    with pytest.raises(D.BadVideoError, match=r"clip\.mp4: flow needs the frame-folder layout"):
        source.flow(INDICES)
    source.close()


def test_read_clip_reads_what_the_registry_asks_for_and_nothing_else(media: Path) -> None:
    source = D.open_source(media / "folder", CONFIG)
    clip = D.read_clip(source, INDICES, reads(["rgbdiff", "flow"]), CONFIG.audio_seconds)
    assert clip.frames is not None and clip.frames.shape == (3, 2, 6, SIZE, SIZE, 3)
    assert clip.flow_x is not None and clip.flow_x.shape == (3, 2, 5, SIZE, SIZE)
    assert clip.audio is None
    # Stacks loop past the end; flow images stop one frame short (the last frame has none).
    assert torch.equal(clip.frames[2, 1, 1], source.frames(torch.tensor(0)))
    audio_only = D.read_clip(source, INDICES, Reads(0, 0, True), CONFIG.audio_seconds)
    assert audio_only.frames is None and audio_only.flow_x is None
    assert audio_only.audio is not None and len(audio_only.audio) == 3
    assert (audio_only.height, audio_only.width) == (SIZE, SIZE)


def test_decoded_select_keeps_the_chosen_segments_and_rows(media: Path) -> None:
    source = D.open_source(media / "clip.mp4", CONFIG)
    clip = D.read_clip(source, INDICES, reads(["rgb", "audio"]), CONFIG.audio_seconds)
    source.close()
    some = clip.select(segments=torch.tensor([2, 0]), rows=[1])
    assert torch.equal(some.indices, torch.tensor([[23], [3]]))
    assert clip.frames is not None and some.frames is not None
    assert torch.equal(some.frames, clip.frames[[2, 0]][:, [1]])
    assert clip.audio is not None and some.audio is not None
    assert [w is clip.audio[t] for w, t in zip(some.audio, (2, 0), strict=True)] == [True, True]
    assert (some.fps, some.height, some.width) == (clip.fps, clip.height, clip.width)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("missing.mp4", "missing.mp4: no such file or directory"),
        ("notes.mp4", "notes.mp4: not a video FFmpeg can read"),
        ("empty", "empty: expected a frame folder with 00001.jpg, ..., got none"),
    ],
)
def test_a_path_that_is_no_video_gets_one_message_naming_it(
    tmp_path: Path, name: str, message: str
) -> None:
    (tmp_path / "notes.mp4").write_text("not a video\n")
    (tmp_path / "empty").mkdir()
    with pytest.raises(D.BadVideoError, match=message):
        D.open_source(tmp_path / name, CONFIG)


def test_folders_of_videos_are_expanded_and_frame_folders_kept(media: Path, tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    (videos / "sub").mkdir(parents=True)
    for name in ("b.mp4", "a.MKV", "sub/c.webm", "notes.txt"):
        (videos / name).write_bytes(b"")
    empty = tmp_path / "empty"
    empty.mkdir()
    paths = [media / "clip.mp4", videos, media / "folder", empty]
    assert D.video_paths(paths) == [
        media / "clip.mp4", videos / "a.MKV", videos / "b.mp4", videos / "sub/c.webm",
        media / "folder", empty,
    ]  # fmt: skip
