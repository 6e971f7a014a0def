"""Tests of examples/adamml/data.py on small media files written with PyAV."""

from __future__ import annotations

import math
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "adamml"))

import data as D
from make_dataset import write_mp4

FPS = 10
NUM_FRAMES = 40
SAMPLE_RATE = 16000
SIZE = 64
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


# ---------------------------------------------------------------------------------- list files
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


# ------------------------------------------------------------------------------------ sampling
@given(
    num_frames=st.integers(1, 400),
    segments=st.integers(1, 12),
    span=st.integers(1, 40),
    train=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_segments_stay_in_the_video_and_in_their_region(
    num_frames: int, segments: int, span: int, train: bool, seed: int
) -> None:
    generator = torch.Generator().manual_seed(seed)
    starts = D.segment_starts(num_frames, segments, span, train=train, generator=generator)
    assert starts.shape == (segments,)
    assert starts.min() >= 0 and starts.max() <= max(num_frames - span, 0)
    region = num_frames / segments
    if region >= span:
        index = torch.arange(segments)
        assert (starts >= (index * region).floor()).all()
        assert (starts + span <= ((index + 1) * region).ceil()).all()


def test_test_sampling_is_centred_and_training_sampling_is_seeded() -> None:
    starts = D.segment_starts(100, 5, 10, train=False)
    assert starts.tolist() == [5, 25, 45, 65, 85]  # region 20, slack 10, offset 5
    first = D.segment_starts(100, 5, 10, train=True, generator=torch.Generator().manual_seed(1))
    again = D.segment_starts(100, 5, 10, train=True, generator=torch.Generator().manual_seed(1))
    assert torch.equal(first, again)
    draws = torch.stack([D.segment_starts(100, 5, 10, train=True) for _ in range(200)])
    assert draws.unique().numel() > 20


def test_frame_indices_use_the_stride_and_loop_short_clips() -> None:
    indices = D.frame_indices(torch.tensor([0, 10]), 4, 3, 12)
    assert indices.tolist() == [[0, 3, 6, 9], [10, 1, 4, 7]]
    stacked = D.stacked_indices(torch.tensor([[10]]), 3, 12)
    assert stacked.tolist() == [[[10, 11, 0]]]


def test_audio_window_is_centred_on_the_sampled_frames() -> None:
    windows = D.audio_windows(torch.tensor([[10, 12, 14, 16]]), 10.0, CONFIG)
    start, length = windows[0]
    assert length == CONFIG.audio_seconds
    assert start + length / 2 == pytest.approx((10 + 17) / 2 / 10)


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


# -------------------------------------------------------------------------------- spectrograms
@pytest.mark.parametrize("preset", [D.DataConfig.paper, D.DataConfig.demo])
def test_spectrogram_shape_matches_the_config(preset) -> None:  # type: ignore[no-untyped-def]
    config = preset()
    samples = round(config.audio_seconds * config.sample_rate)
    spec = D.log_spectrogram(torch.zeros(samples), config)
    assert spec.shape == (1, config.n_freq, config.n_time)
    assert torch.allclose(spec, torch.tensor(math.log(1e-6)))


def test_paper_spectrogram_arithmetic() -> None:
    config = D.DataConfig.paper()
    assert (config.n_fft, config.stft_win_length, config.stft_hop_length) == (510, 240, 120)
    assert (config.n_freq, config.n_time) == (256, 256)


@given(bin_index=st.integers(2, CONFIG.n_freq - 3), preset=st.sampled_from(["paper", "demo"]))
def test_pure_tone_lands_in_its_frequency_bin(bin_index: int, preset: str) -> None:
    config = D.DataConfig.paper() if preset == "paper" else D.DataConfig.demo()
    rate = config.sample_rate
    t = torch.arange(round(config.audio_seconds * rate), dtype=torch.float64) / rate
    waveform = torch.sin(2 * math.pi * bin_index * rate / config.n_fft * t).float()
    spec = D.log_spectrogram(waveform, config)
    assert int(spec[0].mean(dim=1).argmax()) == bin_index


def test_tone_in_an_mp4_lands_in_its_bin_through_the_dataset(media: Path) -> None:
    path = write_list(media, "tone.txt", ["good.mp4 1"])
    item = D.VideoDataset(path, media, CONFIG, train=False)[0]
    assert item["audio"].shape == (CONFIG.test_segments, 1, CONFIG.n_freq, CONFIG.n_time)
    peaks = item["audio"][:, 0].mean(dim=2).argmax(dim=1)
    assert peaks.tolist() == [TONE_BIN] * CONFIG.test_segments


# --------------------------------------------------------------------------- per-modality inputs
def test_rgb_input_normalises_and_crops() -> None:
    frames = torch.full((2, 3, 80, 100, 3), 255, dtype=torch.uint8)
    params = D.SpatialParams(short_side=64, top=0, left=5, size=64, flip=False)
    out = D.rgb_input(frames, params, CONFIG)
    assert out.shape == (2, 3, 3, 64, 64)
    expected = (1 - torch.tensor(D.IMAGENET_MEAN)) / torch.tensor(D.IMAGENET_STD)
    assert torch.allclose(out[0, 0, :, 10, 10], expected, atol=1e-5)


def test_spatial_sampling_ranges() -> None:
    generator = torch.Generator().manual_seed(0)
    for _ in range(50):
        params = D.sample_spatial(96, 128, CONFIG, train=True, generator=generator)
        assert CONFIG.resize_range[0] <= params.short_side < CONFIG.resize_range[1]
        height, width = params.short_side, round(128 * params.short_side / 96)
        assert 0 <= params.top <= height - params.size and 0 <= params.left <= width - params.size
    centre = D.sample_spatial(96, 128, CONFIG, train=False)
    assert (centre.short_side, centre.top, centre.flip) == (CONFIG.test_resize, 0, False)
    assert centre.left == (round(128 * 64 / 96) - 64) // 2


def test_rgbdiff_layout_is_five_consecutive_rgb_differences() -> None:
    frames = torch.randint(0, 256, (2, 3, 6, 64, 64, 3), dtype=torch.uint8)
    params = D.SpatialParams(64, 0, 0, 64, flip=False)
    out = D.rgbdiff_input(frames, params, CONFIG)
    assert out.shape == (2, 3, 15, 64, 64)
    mean = torch.tensor(CONFIG.mean).view(3, 1, 1)
    std = torch.tensor(CONFIG.std).view(3, 1, 1)
    normalised = (frames.permute(0, 1, 2, 5, 3, 4).float() / 255 - mean) / std
    for k in range(5):
        expected = normalised[:, :, k + 1] - normalised[:, :, k]
        assert torch.allclose(out[:, :, 3 * k : 3 * k + 3], expected, atol=1e-5)
    flipped = D.rgbdiff_input(frames, D.SpatialParams(64, 0, 0, 64, flip=True), CONFIG)
    assert torch.allclose(flipped, out.flip(-1))


def test_flow_layout_interleaves_x_y_and_flip_negates_x() -> None:
    flow_x = torch.randint(0, 256, (2, 3, 5, 32, 32), dtype=torch.uint8)
    flow_y = torch.randint(0, 256, (2, 3, 5, 32, 32), dtype=torch.uint8)
    plain = D.flow_input(flow_x, flow_y, D.SpatialParams(32, 0, 0, 32, flip=False))
    assert plain.shape == (2, 3, 10, 32, 32)
    assert torch.allclose(plain[:, :, 0::2], flow_x.float() / 127.5 - 1)
    assert torch.allclose(plain[:, :, 1::2], flow_y.float() / 127.5 - 1)
    flipped = D.flow_input(flow_x, flow_y, D.SpatialParams(32, 0, 0, 32, flip=True))
    assert torch.allclose(flipped[:, :, 0::2], -plain[:, :, 0::2].flip(-1))
    assert torch.allclose(flipped[:, :, 1::2], plain[:, :, 1::2].flip(-1))


def test_policy_input_takes_evenly_spaced_frames_at_low_resolution() -> None:
    recognition = torch.arange(8.0).view(1, 8, 1, 1, 1).expand(2, 8, 3, 16, 16)
    out = D.policy_input(recognition, 4, 8)
    assert out.shape == (2, 4, 3, 8, 8)
    assert out[0, :, 0, 0, 0].tolist() == [0.0, 2.0, 5.0, 7.0]


@pytest.mark.parametrize(
    ("function", "args", "message"),
    [
        (D.rgb_input, (torch.zeros(2, 8, 8, 3, dtype=torch.uint8),), r"frames: expected \(T, F"),
        (D.rgbdiff_input, (torch.zeros(1, 1, 5, 8, 8, 3, dtype=torch.uint8),), "T, F, 6"),
    ],
)
def test_visual_inputs_reject_wrong_shapes(function, args, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=message):
        function(*args, D.SpatialParams(8, 0, 0, 8, False), CONFIG)


def test_config_rejects_a_window_longer_than_n_fft() -> None:
    with pytest.raises(ValueError, match="more than n_fft"):
        D.DataConfig.demo(stft_window_ms=100.0)
    with pytest.raises(ValueError, match="unknown modalities"):
        D.DataConfig(modalities=("depth",))


# ------------------------------------------------------------------------------ dataset, collate
def test_items_have_the_documented_keys_and_shapes(media: Path) -> None:
    config = D.DataConfig.demo(
        modalities=("rgb", "rgbdiff", "audio"), policy_modalities=("rgb", "rgbdiff")
    )
    path = write_list(media, "one.txt", ["good.mp4 beta"])
    dataset = D.VideoDataset(path, media, config, train=True, classes=["alpha", "beta"])
    item = dataset[0]
    t, f, s, p = config.num_segments, config.frames_per_segment, config.crop_size, 48
    assert item["rgb"].shape == (t, f, 3, s, s)
    assert item["rgbdiff"].shape == (t, f, 15, s, s)
    assert item["audio"].shape == (t, 1, config.n_freq, config.n_time)
    assert item["policy_rgb"].shape == (t, config.policy_frames, 3, p, p)
    assert item["policy_rgbdiff"].shape == (t, config.policy_frames, 15, p, p)
    assert item["label"].dtype == torch.int64 and int(item["label"]) == 1
    assert (item["video_id"], item["skipped"], item["issues"]) == ("good.mp4", [], [])


def test_test_mode_is_deterministic_and_training_mode_is_not(media: Path) -> None:
    path = write_list(media, "one.txt", ["good.mp4 0"])
    test_set = D.VideoDataset(path, media, CONFIG, train=False)
    assert torch.equal(test_set[0]["rgb"], test_set[0]["rgb"])
    train_set = D.VideoDataset(path, media, CONFIG, train=True)
    assert any(not torch.equal(train_set[0]["rgb"], train_set[0]["rgb"]) for _ in range(5))


def test_collate_batches_items_and_informative_flags(media: Path, tmp_path: Path) -> None:
    sidecar = tmp_path / "informative.json"
    sidecar.write_text(
        '{"videos": {"good.mp4": {"scenes": [[0, 2], [2, 4]],'
        ' "informative": {"rgb": [true, false], "audio": [false, true]}}}}'
    )
    path = write_list(media, "two.txt", ["good.mp4 0", "good.mp4 1,2"])
    dataset = D.VideoDataset(path, media, CONFIG, train=False, informative=sidecar)
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
        ("missing.mp4", "missing file"),
        ("corrupt.mp4", "cannot open"),
        ("truncated.mp4", "cannot open|could not be decoded"),
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
    config = D.DataConfig.demo(modalities=("rgb", "flow", "audio"), policy_modalities=())
    path = write_list(frame_folder, "list.txt", [f"clip 1 {NUM_FRAMES} 0"])
    item = D.VideoDataset(path, frame_folder, config, train=False)[0]
    t, f, s = config.test_segments, config.frames_per_segment, config.crop_size
    assert item["rgb"].shape == (t, f, 3, s, s)
    assert item["flow"].shape == (t, f, 10, s, s)
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
    code = D.inspect_main(
        [str(path), "--data-root", str(media), "--preset", "demo", "--out", str(tmp_path)]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "good.mp4: 4.00 s, 10.00 fps, 40 frames, 64x64, audio 16000 Hz" in out
    assert "silent_track.mp4" in out and "WARNING no_audio" in out
    assert "SKIP corrupt.mp4" in out
    assert "2/3 videos load, 1 skipped" in out
    assert (tmp_path / "inspect.png").stat().st_size > 1000
