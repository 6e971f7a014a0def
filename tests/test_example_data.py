"""Tests of examples/adamml/data/ decoding.py, dataset.py and inspection.py on small media
files written with PyAV."""

from __future__ import annotations

import math
import subprocess
import sys
import warnings
from pathlib import Path

import av
import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "adamml"))

import data as D
from data.inspection import main as inspect_main
from make_dataset import write_mp4
from modalities import MODALITIES

FPS = 10
NUM_FRAMES = 40
SAMPLE_RATE = 16000
SIZE = 64
ROOT = Path(__file__).resolve().parents[1]
CONFIG = D.DataConfig.demo()
# A tone that falls exactly on bin 20 of the demo spectrogram (bin k is k * rate / n_fft Hz).
TONE_BIN = 20
TONE_HZ = TONE_BIN * CONFIG.sample_rate / CONFIG.n_fft


def frame_value(index: int) -> int:
    return 20 + 5 * index


def ramp_frames(count: int = NUM_FRAMES, size: int = SIZE) -> np.ndarray:
    """Uniform grey frames whose value encodes the frame index."""
    values = np.array([frame_value(i) for i in range(count)], dtype=np.uint8)
    return np.broadcast_to(values[:, None, None, None], (count, size, size, 3)).copy()


def tone(seconds: float, rate: int = SAMPLE_RATE, hz: float = TONE_HZ) -> np.ndarray:
    t = np.arange(round(seconds * rate)) / rate
    return (0.4 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("media")
    write_mp4(root / "good.mp4", ramp_frames(), FPS, tone(NUM_FRAMES / FPS), SAMPLE_RATE)
    write_mp4(root / "silent_track.mp4", ramp_frames(), FPS, None)
    write_mp4(root / "short.mp4", ramp_frames(6), FPS, tone(0.6), SAMPLE_RATE)
    (root / "corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(5000))
    good = (root / "good.mp4").read_bytes()
    (root / "truncated.mp4").write_bytes(good[: len(good) // 2])
    (root / "classes.txt").write_text("alpha\nbeta\ngamma\n")
    return root


def write_list(root: Path, name: str, lines: list[str]) -> Path:
    path = root / name
    path.write_text("\n".join(lines) + "\n")
    return path


# -------------------------------------------------------------------------- decoding round trip
def test_probe_recovers_frame_count_fps_size_and_sample_rate(media: Path) -> None:
    with D.open_media(media / "good.mp4") as container:
        info = D.probe_media(container)
    assert (info.num_frames, info.fps, info.width, info.height) == (NUM_FRAMES, FPS, SIZE, SIZE)
    assert info.audio_rate == SAMPLE_RATE and info.audio_channels == 1
    assert info.duration == pytest.approx(NUM_FRAMES / FPS, abs=0.05)


@pytest.mark.parametrize("seek", [True, False])
def test_decoded_frames_are_the_requested_ones(media: Path, seek: bool) -> None:
    wanted = [0, 3, 17, 18, 39, 3]
    with D.open_media(media / "good.mp4") as container:
        frames = D.decode_video_frames(container, wanted, seek=seek)
    assert sorted(frames) == sorted(set(wanted))
    for index, frame in frames.items():
        assert frame.shape == (SIZE, SIZE, 3)
        assert abs(float(frame.mean()) - frame_value(index)) < 3


def test_mkv_without_a_frame_count_in_its_header_round_trips(tmp_path: Path) -> None:
    write_mp4(tmp_path / "clip.mkv", ramp_frames(23), FPS, tone(2.3), SAMPLE_RATE)
    with D.open_media(tmp_path / "clip.mkv") as container:
        assert container.streams.video[0].frames == 0
        info = D.probe_media(container)
        assert (info.num_frames, info.fps, info.audio_rate) == (23, FPS, SAMPLE_RATE)
        frames = D.decode_video_frames(container, [0, 22])
    assert abs(float(frames[22].mean()) - frame_value(22)) < 3


def test_decoding_downscales_to_the_short_side(media: Path) -> None:
    with D.open_media(media / "good.mp4") as container:
        frames = D.decode_video_frames(container, [5], short_side=32)
    assert frames[5].shape == (32, 32, 3)


def test_decoded_audio_is_mono_resampled_and_silence_padded(media: Path) -> None:
    rate = 8000
    with D.open_media(media / "good.mp4") as container:
        inside, before = D.decode_audio(container, [(1.0, 1.0), (-0.5, 1.0)], rate)
    assert inside.shape == before.shape == (rate,)
    expected = 0.4 / math.sqrt(2)
    assert np.sqrt(np.mean(inside**2)) == pytest.approx(expected, rel=0.1)
    assert np.abs(before[: rate // 2 - 100]).max() == 0
    assert np.sqrt(np.mean(before[rate // 2 + 400 :] ** 2)) == pytest.approx(expected, rel=0.1)


def test_every_frame_decodes_in_order_at_the_short_side(media: Path) -> None:
    with D.open_media(media / "good.mp4") as container:
        frames = list(D.decode_all_frames(container, short_side=32))
    assert len(frames) == NUM_FRAMES and frames[0].shape == (32, 32, 3)
    assert all(abs(float(f.mean()) - frame_value(i)) < 3 for i, f in enumerate(frames))


def test_resampled_audio_includes_what_the_resampler_held_back(media: Path) -> None:
    rate = 8000
    with D.open_media(media / "good.mp4") as container:
        frames = list(container.decode(container.streams.audio[0]))
    unflushed = av.AudioResampler(format="flt", layout="mono", rate=rate)
    held_back = sum(f.samples for frame in frames for f in unflushed.resample(frame))
    resampled = list(D.resample_audio(frames, rate))
    assert all(f.layout.name == "mono" and f.rate == rate for f in resampled)
    total = sum(f.samples for f in resampled)
    assert total > held_back and abs(total - NUM_FRAMES / FPS * rate) < 512


def test_frame_folder_fps_reads_meta_json_or_falls_back(tmp_path: Path) -> None:
    assert D.frame_folder_fps(tmp_path, 30.0) == 30.0
    (tmp_path / "meta.json").write_text('{"fps": 12}')
    assert D.frame_folder_fps(tmp_path, 30.0) == 12.0


# ------------------------------------------------------------------------------ dataset, collate
def test_tone_in_an_mp4_lands_in_its_bin_through_the_dataset(media: Path) -> None:
    path = write_list(media, "tone.txt", ["good.mp4 1"])
    item = D.VideoDataset(path, media, CONFIG, train=False)[0]
    assert item["audio"].shape == (CONFIG.test_segments, 1, CONFIG.n_freq, CONFIG.n_time)
    peaks = item["audio"][:, 0].mean(dim=2).argmax(dim=1)
    assert peaks.tolist() == [TONE_BIN] * CONFIG.test_segments


def test_items_have_the_documented_keys_and_shapes(media: Path) -> None:
    config = D.DataConfig.demo(modalities=("rgb", "rgbdiff", "audio"))
    path = write_list(media, "one.txt", ["good.mp4 beta"])
    dataset = D.VideoDataset(path, media, config, train=True, classes=["alpha", "beta"])
    item = dataset[0]
    t, f, s, p = config.num_segments, config.frames_per_segment, config.crop_size, 48
    assert item["rgb"].shape == (t, f, 3, s, s)
    assert item["rgbdiff"].shape == (t, f, 15, s, s)
    assert item["audio"].shape == (t, 1, config.n_freq, config.n_time)
    assert item["policy_rgb"].shape == (t, config.policy_frames, 3, p, p)
    assert item["policy_rgbdiff"].shape == (t, config.policy_frames, 15, p, p)
    for modality in ("rgb", "rgbdiff"):
        assert item[modality].shape[2] == MODALITIES[modality].channels
    assert item["label"].dtype == torch.int64 and int(item["label"]) == 1
    assert (item["video_id"], item["skipped"], item["issues"]) == ("good.mp4", [], [])


def test_test_mode_is_deterministic_and_training_mode_is_not(media: Path) -> None:
    path = write_list(media, "one.txt", ["good.mp4 0"])
    test_set = D.VideoDataset(path, media, CONFIG, train=False)
    assert torch.equal(test_set[0]["rgb"], test_set[0]["rgb"])
    train_set = D.VideoDataset(path, media, CONFIG, train=True)
    assert any(not torch.equal(train_set[0]["rgb"], train_set[0]["rgb"]) for _ in range(5))
    record = train_set.records[0]
    seeded = [train_set.load(record, torch.Generator().manual_seed(4)) for _ in range(2)]
    assert torch.equal(seeded[0]["rgb"], seeded[1]["rgb"])


def test_collate_batches_items_and_informative_flags(media: Path, tmp_path: Path) -> None:
    sidecar = tmp_path / "informative.json"
    sidecar.write_text(
        '{"videos": {"good.mp4": {"scenes": [[0, 2], [2, 4]],'
        ' "informative": {"rgb": [true, false], "audio": [false, true]}}}}'
    )
    path = write_list(media, "two.txt", ["good.mp4 0", "good.mp4 1,2"])
    config = D.DataConfig.demo(test_segments=5)
    dataset = D.VideoDataset(path, media, config, train=False, informative=sidecar)
    assert dataset.multi_label and dataset.num_classes == 3
    batch = D.collate([dataset[0], dataset[1]])
    assert batch["rgb"].shape == (2, *dataset[0]["rgb"].shape)
    assert batch["label"].tolist() == [[1, 0, 0], [0, 1, 1]]
    assert batch["video_id"] == ["good.mp4", "good.mp4"]
    # 40 frames, 5 regions of 8, span 7: segments start at 0, 8, 16, 24, 32 and are centred at
    # 0.35, 1.15, 1.95, 2.75, 3.55 s -> scenes 0, 0, 0, 1, 1.
    assert batch["informative"]["rgb"].tolist() == [[True, True, True, False, False]] * 2
    assert batch["informative"]["audio"].tolist() == [[False, False, False, True, True]] * 2


def test_collate_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="'rgb' has different shapes"):
        D.collate([{"rgb": torch.zeros(2, 3)}, {"rgb": torch.zeros(3, 3)}])


def test_dataloader_with_workers_carries_skip_reports(media: Path) -> None:
    path = write_list(media, "mixed.txt", ["good.mp4 0", "missing.mp4 1", "good.mp4 2"])
    dataset = D.VideoDataset(path, media, CONFIG, train=True)
    loader = torch.utils.data.DataLoader(dataset, batch_size=3, num_workers=2, collate_fn=D.collate)
    report = D.SkipReport()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for batch in loader:
            assert batch["rgb"].shape[0] == 3
            report.update(batch)
    assert report.skipped == {"missing.mp4": 1}
    assert "1 loads skipped (1 files)" in report.summary()


# ------------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("missing.mp4", "no such file or directory"),
        ("corrupt.mp4", "not a video FFmpeg can read"),
        ("truncated.mp4", "not a video FFmpeg can read|truncated or corrupt file"),
    ],
)
def test_bad_video_is_skipped_with_one_warning_and_fails_when_strict(
    media: Path, name: str, reason: str
) -> None:
    path = write_list(media, f"bad_{name}.txt", [f"{name} 0", "good.mp4 1"])
    dataset = D.VideoDataset(path, media, CONFIG, train=False)
    with pytest.warns(UserWarning, match=rf"skipping video {name}: .*({reason}).*:1\)"):
        item = dataset[0]
    assert item["video_id"] == "good.mp4"
    assert len(item["skipped"]) == 1 and item["skipped"][0].startswith(name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert dataset[0]["video_id"] == "good.mp4"  # warned once per file
    strict = D.VideoDataset(path, media, CONFIG, train=False, strict=True)
    with pytest.raises(D.BadVideoError, match=name):
        strict[0]


def test_a_list_of_only_bad_videos_raises(media: Path) -> None:
    path = write_list(media, "all_bad.txt", ["missing.mp4 0", "corrupt.mp4 0"])
    dataset = D.VideoDataset(path, media, CONFIG, train=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(D.BadVideoError, match="no loadable video"):
            dataset[0]


def test_clip_without_audio_gets_a_silent_spectrogram_and_is_counted(media: Path) -> None:
    path = write_list(media, "silent.txt", ["silent_track.mp4 0"])
    item = D.VideoDataset(path, media, CONFIG, train=False)[0]
    assert torch.allclose(item["audio"], torch.tensor(math.log(1e-6)))
    assert item["issues"] == [("silent_track.mp4", "no_audio")]
    report = D.SkipReport()
    report.update(D.collate([item]))
    assert report.issues == {"no_audio": 1}
    strict = D.VideoDataset(path, media, CONFIG, train=False, strict=True)
    with pytest.raises(D.BadVideoError, match="no_audio"):
        strict[0]


def test_short_clip_loops_its_frames_and_is_counted(media: Path) -> None:
    path = write_list(media, "short.txt", ["short.mp4 0"])
    dataset = D.VideoDataset(path, media, CONFIG, train=False)
    item = dataset[0]
    assert item["rgb"].shape[:2] == (CONFIG.test_segments, CONFIG.frames_per_segment)
    assert item["issues"] == [("short.mp4", "short_clip_looped")]
    # span 7 > 6 frames: every segment starts at 0 and frame 6 loops back to frame 0.
    frames = item["rgb"][0, :, 0, 10, 10]
    assert torch.allclose(frames[0], frames[3], atol=0.05)
    assert frames[1] > frames[0]


def test_malformed_lines_and_unknown_labels_are_skipped_or_strict_errors(media: Path) -> None:
    path = write_list(media, "lines.txt", ["good.mp4 0", "good.mp4", "good.mp4 zeta"])
    with pytest.warns(UserWarning) as caught:
        dataset = D.VideoDataset(path, media, CONFIG, train=False, classes=["alpha", "beta"])
    messages = [str(w.message) for w in caught]
    assert len(messages) == 2 and "lines.txt:2: expected 'path label'" in messages[0]
    assert "lines.txt:3: unknown label 'zeta'" in messages[1]
    assert len(dataset) == 1 and len(dataset.list_errors) == 2
    with pytest.raises(ValueError, match=r"lines\.txt:2"):
        D.VideoDataset(path, media, CONFIG, train=False, classes=["alpha", "beta"], strict=True)


def test_flow_from_video_files_is_refused(media: Path) -> None:
    path = write_list(media, "one.txt", ["good.mp4 0"])
    with pytest.raises(ValueError, match="frame-folder layout"):
        D.VideoDataset(path, media, D.DataConfig.demo(modalities=("flow",)), train=False)


# ---------------------------------------------------------------------------- frame folders
@pytest.fixture(scope="module")
def frame_folder(media: Path) -> Path:
    from PIL import Image
    from prepare import extract_audio

    root = media / "frames"
    folder = root / "clip"
    folder.mkdir(parents=True)
    for index, frame in enumerate(ramp_frames(), start=1):
        Image.fromarray(frame).save(folder / f"{index:05d}.jpg", quality=95)
        if index < NUM_FRAMES:
            Image.fromarray(np.full((SIZE, SIZE), 200, np.uint8)).save(
                folder / f"x_{index:05d}.jpg"
            )
            Image.fromarray(np.full((SIZE, SIZE), 60, np.uint8)).save(folder / f"y_{index:05d}.jpg")
    (folder / "meta.json").write_text(f'{{"fps": {FPS}}}')
    assert extract_audio(media / "good.mp4", folder / "audio.wav", 24000)
    return root


def test_frame_folder_layout_gives_rgb_flow_and_audio(frame_folder: Path) -> None:
    config = D.DataConfig.demo(modalities=("rgb", "flow", "audio"))
    path = write_list(frame_folder, "list.txt", [f"clip 1 {NUM_FRAMES} 0"])
    item = D.VideoDataset(path, frame_folder, config, train=False)[0]
    t, f, s = config.test_segments, config.frames_per_segment, config.crop_size
    assert item["rgb"].shape == (t, f, 3, s, s)
    assert item["flow"].shape == (t, f, 10, s, s)
    # The policy sees RGB differences in place of flow (AdaMML §4.1), built but not returned.
    assert item["policy_rgbdiff"].shape == (t, config.policy_frames, 15, 48, 48)
    assert "rgbdiff" not in item
    assert torch.allclose(item["flow"][:, :, 0::2], torch.tensor(200 / 127.5 - 1), atol=0.02)
    assert torch.allclose(item["flow"][:, :, 1::2], torch.tensor(60 / 127.5 - 1), atol=0.02)
    peaks = item["audio"][:, 0].mean(dim=2).argmax(dim=1)
    assert peaks.tolist() == [TONE_BIN] * t
    # Frame files are numbered from 1 (start_frame): sampled index i reads file i + 1, which
    # holds ramp frame i.
    expected = D.frame_indices(
        D.segment_starts(NUM_FRAMES, t, config.span, train=False),
        f,
        config.frame_stride,
        NUM_FRAMES,
    )
    mean = torch.tensor(CONFIG.mean[0])
    std = torch.tensor(CONFIG.std[0])
    values = (item["rgb"][:, :, 0, 10, 10] * std + mean) * 255
    assert torch.allclose(values, expected.float() * 5 + 20, atol=3)


def test_missing_frame_in_a_folder_is_skipped(frame_folder: Path) -> None:
    path = write_list(
        frame_folder, "long.txt", [f"clip 1 {NUM_FRAMES + 50} 0", f"clip 1 {NUM_FRAMES} 1"]
    )
    dataset = D.VideoDataset(path, frame_folder, CONFIG, train=False)
    with pytest.warns(UserWarning, match="missing frame"):
        item = dataset[0]
    assert int(item["label"]) == 1


# ---------------------------------------------------------------------------------- inspect
def test_inspect_reports_videos_and_writes_a_png(
    media: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_list(media, "inspect.txt", ["good.mp4 0", "silent_track.mp4 1", "corrupt.mp4 0"])
    code = inspect_main(
        [str(path), "--data-root", str(media), "--preset", "demo", "--out", str(tmp_path)]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "good.mp4: 4.00 s, 10.00 fps, 40 frames, 64x64, audio 16000 Hz" in out
    assert "silent_track.mp4" in out and "WARNING no_audio" in out
    assert "SKIP corrupt.mp4" in out
    assert "2/3 videos load, 1 skipped" in out
    assert (tmp_path / "inspect.png").stat().st_size > 1000


def test_inspect_runs_as_a_command_and_answers_a_bad_flag_in_one_line(media: Path) -> None:
    path = write_list(media, "command.txt", ["good.mp4 0"])
    command = [sys.executable, str(ROOT / "examples/adamml/data"), "inspect", str(path)]
    command += ["--data-root", str(media), "--preset", "demo"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert "1/1 videos load, 0 skipped" in done.stdout
    bad = subprocess.run(
        [*command, "--modalities", "rgb,foo"], capture_output=True, text=True, check=False
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert (
        bad.stderr.strip()
        .splitlines()[-1]
        .endswith(
            "--modalities: expected distinct names from ['rgb', 'rgbdiff', 'flow', 'audio'], "
            "got ['rgb', 'foo']"
        )
    )


def test_inspect_names_a_missing_data_root(media: Path, tmp_path: Path) -> None:
    path = write_list(media, "inspect.txt", ["good.mp4 0"])
    with pytest.raises(SystemExit) as exit_info:
        inspect_main([str(path), "--data-root", str(tmp_path / "nowhere")])
    assert exit_info.value.code == 2
