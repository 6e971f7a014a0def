"""Tests of examples/adamml/make_dataset.py (demo set) and prepare.py (frame-folder layout)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "adamml"))

import data as D
import make_dataset as M
import prepare as P

TINY = M.DemoSpec(
    classes=8, train_per_class=1, val_per_class=1, calib_per_class=1, size=48, fps=8,
    seconds=5.0, scenes=5,
)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("demo")
    counts = M.make_dataset(TINY, root, workers=1)
    assert counts == {"train": 8, "val": 8, "calib": 8}
    return root


def test_clips_are_mp4_files_with_h264_video_and_aac_audio(demo: Path) -> None:
    records, errors = D.parse_list_file(demo / "train.txt", D.read_classes(demo / "classes.txt"))
    assert errors == [] and sorted(r.labels[0] for r in records) == list(range(8))
    for record in records:
        with av.open(str(demo / record.path)) as container:
            video, audio = container.streams.video[0], container.streams.audio[0]
            assert (video.codec_context.name, audio.codec_context.name) == ("h264", "aac")
            assert (video.width, video.height) == (TINY.size, TINY.size)
            assert video.frames == round(TINY.seconds * TINY.fps)
            assert audio.codec_context.sample_rate == TINY.sample_rate


def test_generation_is_reproducible(demo: Path, tmp_path: Path) -> None:
    M.make_dataset(TINY, tmp_path, workers=1)
    for name in ("train.txt", "val.txt", "calib.txt", "classes.txt", "informative.json"):
        assert (tmp_path / name).read_text() == (demo / name).read_text()
    clip = "videos/val/c03_0003.mp4"
    assert (tmp_path / clip).read_bytes() == (demo / clip).read_bytes()


def test_sidecar_marks_informative_only_where_the_signature_is_present_and_needed(
    demo: Path,
) -> None:
    sidecar = json.loads((demo / "informative.json").read_text())
    needed = M.needed_modalities(TINY.classes)
    assert len(sidecar["videos"]) == 24
    for annotation in sidecar["videos"].values():
        need = needed[annotation["label"]]
        assert len(annotation["scenes"]) == TINY.scenes
        states = annotation["states"]
        for modality in ("rgb", "rgbdiff", "flow"):
            assert annotation["informative"][modality] == [
                need["visual"] and s == "on" for s in states["visual"]
            ]
        assert annotation["informative"]["audio"] == [
            need["audio"] and s == "on" for s in states["audio"]
        ]


def test_class_table_has_each_kind_of_pair() -> None:
    needed = M.needed_modalities(12)
    kinds = [(n["visual"], n["audio"]) for n in needed]
    assert kinds.count((True, False)) == 4  # shared sound: only the picture tells them apart
    assert kinds.count((False, True)) == 4  # shared look: only the sound does
    assert kinds.count((True, True)) == 4  # 2 looks × 2 sounds: both are needed
    for (look, sound), (visual, audio) in zip(M.CLASS_TABLE, kinds, strict=True):
        shares_sound = sum(s == sound for _, s in M.CLASS_TABLE) > 1
        shares_look = sum(lk == look for lk, _ in M.CLASS_TABLE) > 1
        assert (visual, audio) == (shares_sound, shares_look)
    assert len(set(M.class_names(12))) == 12


@given(seed=st.integers(0, 2**32 - 1), label=st.integers(0, 11))
def test_every_needed_modality_is_on_in_some_scene(seed: int, label: int) -> None:
    needed = M.needed_modalities(12)[label]
    visual, audio = M.draw_scene_states(np.random.default_rng(seed), M.DemoSpec(), needed)
    assert set(visual) <= set(M.VISUAL_STATES) and set(audio) <= set(M.AUDIO_STATES)
    assert not needed["visual"] or "on" in visual
    assert not needed["audio"] or "on" in audio


def test_scene_states_are_visible_in_cheap_statistics() -> None:
    """What a policy sees at low cost separates the states: object colour and panel in the
    frame; tone energy, broadband energy and silence in the spectrogram."""
    spec = M.DemoSpec(seconds=3.0, scenes=3)
    rng = np.random.default_rng(0)
    frames = M.render_video(rng, spec, 0, ["on", "empty", "occluded"])
    scene = len(frames) // 3
    red = (frames[..., 0] > 180) & (frames[..., 1] < 90)
    assert red[:scene].any(axis=(1, 2)).all() and not red[scene:].any()
    dark = frames.max(axis=-1) < 75
    assert dark[2 * scene :].mean() > 0.2 > dark[: 2 * scene].mean()
    audio = torch.from_numpy(M.render_audio(rng, spec, 0, ["on", "silent", "noise"]))
    rate, third = spec.sample_rate, len(audio) // 3
    power = [torch.fft.rfft(part).abs().square() for part in audio.split(third)[:3]]
    tone_bin = round(M.SOUNDS[0][1] * third / rate)
    on, silent, noise = power
    band = slice(tone_bin - 20, tone_bin + 20)
    assert on[band].sum() > 0.9 * on.sum()
    assert silent.sum() < 1e-3 * on.sum()
    assert noise[band].sum() < 0.05 * noise.sum()


def test_demo_set_loads_with_informative_flags(demo: Path) -> None:
    config = D.DataConfig.demo(test_segments=TINY.scenes)
    dataset = D.VideoDataset(
        demo / "val.txt", demo, config, train=False,
        classes=D.read_classes(demo / "classes.txt"), informative=demo / "informative.json",
    )  # fmt: skip
    batch = D.collate([dataset[i] for i in range(len(dataset))])
    assert batch["rgb"].shape[:2] == (8, config.test_segments)
    assert set(batch["informative"]) == {"rgb", "rgbdiff", "flow", "audio"}
    assert batch["informative"]["audio"].shape == (8, config.test_segments)
    sidecar = json.loads((demo / "informative.json").read_text())["videos"]
    # T = scenes here, so segment t lies in scene t.
    for row, video_id in enumerate(batch["video_id"]):
        assert (
            batch["informative"]["audio"][row].tolist() == sidecar[video_id]["informative"]["audio"]
        )


def test_spec_rejects_bad_sizes() -> None:
    with pytest.raises(ValueError, match="classes must be in"):
        M.DemoSpec(classes=13)
    with pytest.raises(ValueError, match="size must be even"):
        M.DemoSpec(size=95)
    with pytest.raises(ValueError, match=r"frames: expected \(N, H, W, 3\) uint8, got frames of"):
        M.write_mp4("unused.mp4", np.zeros((2, 8, 8), np.uint8), 4)


# ------------------------------------------------------------------------------ prepare.py
def test_prepare_writes_the_frame_folder_layout(demo: Path, tmp_path: Path) -> None:
    source = tmp_path / "videos"
    for name, clip in (("first", "c00_0000"), ("second", "c01_0001")):
        (source / name).mkdir(parents=True)
        (source / name / f"{clip}.mp4").write_bytes(
            (demo / "videos/train" / f"{clip}.mp4").read_bytes()
        )
    (source / "second" / "broken.mp4").write_bytes(b"not a video")
    out = tmp_path / "frames"
    target, errors = P.prepare(source, out, short_side=32, sample_rate=24000)
    assert len(errors) == 1 and "broken.mp4" in errors[0]
    frames = round(TINY.seconds * TINY.fps)
    assert target.read_text().splitlines() == [
        f"first/c00_0000 1 {frames} 0",
        f"second/c01_0001 1 {frames} 1",
    ]
    assert D.read_classes(out / "classes.txt") == ["first", "second"]
    folder = out / "first" / "c00_0000"
    assert len(list(folder.glob("[0-9]*.jpg"))) == frames
    assert json.loads((folder / "meta.json").read_text())["fps"] == TINY.fps
    with av.open(str(folder / "audio.wav")) as container:
        assert container.streams.audio[0].codec_context.sample_rate == 24000
        assert container.streams.audio[0].codec_context.channels == 1
    dataset = D.VideoDataset(
        target,
        out,
        D.DataConfig.demo(crop_size=32, resize_range=(32, 40), test_resize=32, policy_size=24),
        train=True,
    )
    item = dataset[1]
    assert item["rgb"].shape[-2:] == (32, 32) and item["issues"] == []


def test_prepare_with_a_list_file_keeps_its_labels(demo: Path, tmp_path: Path) -> None:
    target, errors = P.prepare(
        demo, tmp_path, list_file=demo / "val.txt", short_side=48, sample_rate=8000
    )
    assert errors == []
    lines = target.read_text().splitlines()
    assert lines[0] == f"videos/val/c00_0000 1 {round(TINY.seconds * TINY.fps)} 0"
    assert len(lines) == 8 and target.name == "val.txt"


def test_flow_without_opencv_gives_a_clear_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(P, "tvl1_factory", lambda: None)
    with pytest.raises(RuntimeError, match="opencv-contrib-python-headless"):
        P.prepare(tmp_path, tmp_path / "out", flow=True)
    assert P.main(["--data-root", str(tmp_path), "--out", str(tmp_path / "o"), "--flow"]) == 2
    assert "OpenCV's contrib module" in capsys.readouterr().err


def test_flow_quantisation_matches_the_reference_layout() -> None:
    flow = np.array([[-30.0, -20.0, 0.0, 10.0, 20.0, 45.0]])
    encoded = P.flow_to_uint8(flow)
    assert encoded.tolist() == [[0, 0, 128, 191, 255, 255]]
    decoded = D.flow_input(
        torch.from_numpy(encoded).expand(1, 1, 5, 1, 6),
        torch.from_numpy(encoded).expand(1, 1, 5, 1, 6),
        D.SpatialParams(1, 0, 0, 6, flip=False),
    )
    # Loader value × FLOW_BOUND recovers the clipped flow in pixels, to one JPEG level.
    recovered = decoded[0, 0, 0, 0] * D.FLOW_BOUND
    assert torch.allclose(recovered, torch.tensor([-20.0, -20.0, 0.0, 10.0, 20.0, 20.0]), atol=0.2)
