"""Tests of examples/adamml/predict.py on generated clips and a run directory with random
weights: a window at a time equals the batch path, only the selected segments' recognition
inputs are built, folders of videos are predicted video by video, and bad input gets one line,
never a traceback."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "adamml"))

import data as D
import make_dataset
import predict
import prepare
import runs
from model import PRESETS, AdaMML, all_on, example_batch, measure_costs

from adagate.flops import ModalityCosts, expected_gflops

# 2 s clips at 8 fps, 32²; the tiny preset's networks with 4 frames per segment (2 for the
# policy, so that there are frames to skip) and T = 4.
SPEC = make_dataset.DemoSpec(
    classes=4, train_per_class=1, val_per_class=1, size=32, seconds=2.0, scenes=2
)
DATA = {**PRESETS["tiny"].data, "frames_per_segment": 4, "test_segments": 4}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("clips")
    make_dataset.make_dataset(SPEC, path, workers=1)
    return path


def make_run(root: Path, out: Path, modalities: tuple[str, ...] = ("rgb", "audio")) -> Path:
    """A run directory as train.py writes it, with random weights whose policy skips RGB on
    about half of the segments."""
    out.mkdir(parents=True, exist_ok=True)
    data = D.DataConfig.demo(modalities=modalities, **DATA)
    config = runs.RunConfig(
        preset="tiny", modalities=modalities, data_root=str(root),
        train_list=str(root / "train.txt"), val_list=str(root / "val.txt"),
        classes=str(root / "classes.txt"), informative=None, data=data,
        epochs={"pretrain": 0, "warmup": 0, "joint": 0, "finetune": 0}, batch_size=2, lr=0.01,
        pretrain_lr=0.01, policy_lr=0.001, lambdas={"rgb": 1.0, "audio": 0.05}, gamma=10.0,
        recovery=0.0, budget_gflops=None, joint_schedule="together", metric="top1",
        baselines=False, seed=0, world_size=1, weights={}, command="test",
    )  # fmt: skip
    runs.save_config(out, config)
    torch.manual_seed(0)
    model = AdaMML(modalities, SPEC.classes, PRESETS["tiny"]).eval()
    # Centre each head on the median of its logits over the validation clips, so that every
    # modality is skipped on some segments and used on others.
    dataset = D.VideoDataset(root / "val.txt", root, data, train=False)
    batch = D.collate([dataset.load(record) for record in dataset.records])
    with torch.no_grad():
        logits = model.policy(model.features(batch)).logits
        for i, head in enumerate(model.policy.heads.values()):
            head.bias[1] -= (logits[..., i, 1] - logits[..., i, 0]).median()
        # Unequal fusion weights, so that the tests see the fusion's weighting too.
        model.fusion.weight_logits.copy_(torch.linspace(-0.5, 0.5, len(modalities)))
    torch.save(model.state_dict(), out / "adamml.pt")
    return out


@pytest.fixture(scope="module")
def run_dir(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(root, tmp_path_factory.mktemp("run"))


@pytest.fixture(scope="module")
def loaded(run_dir: Path) -> tuple[runs.RunConfig, AdaMML, list[str]]:
    return predict.load_run(run_dir, None)


# Measuring the MACs takes seconds; the tests that do not check them use these.
COSTS = ModalityCosts({"rgb": 3_000_000, "rgbdiff": 4_000_000, "audio": 100_000}, policy=50_000)


def predictor(
    loaded: tuple[runs.RunConfig, AdaMML, list[str]], **options: object
) -> predict.Predictor:
    config, model, classes = loaded
    costs = ModalityCosts({m: COSTS.recognition[m] for m in model.modalities}, COSTS.policy)
    return predict.Predictor(model, config, classes, torch.device("cpu"), costs=costs, **options)  # type: ignore[arg-type]


def batch_of(root: Path, config: runs.RunConfig, line: str, classes: list[str]) -> dict:
    (root / "one.txt").write_text(line + "\n")
    dataset = D.VideoDataset(root / "one.txt", root, config.data, train=False, classes=classes)
    return D.collate([dataset.load(dataset.records[0])])


VAL = ["videos/val/c00_0000.mp4 0", "videos/val/c01_0001.mp4 1", "videos/val/c03_0003.mp4 3"]


@pytest.mark.parametrize("line", VAL)
def test_streaming_decisions_and_logits_equal_the_batch_path(
    root: Path, loaded: tuple[runs.RunConfig, AdaMML, list[str]], line: str
) -> None:
    config, model, classes = loaded
    result = predictor(loaded).run(root / line.split()[0])
    with torch.inference_mode():
        batch = model(batch_of(root, config, line, classes), route=True)
    (window,) = result.windows
    assert torch.equal(window.decisions, batch.decisions[0])
    torch.testing.assert_close(result.logits, batch.logits[0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(window.logits, batch.logits[0], rtol=1e-5, atol=1e-6)


def test_the_random_policy_of_the_test_run_skips_rgb_on_some_segments_only(
    root: Path, loaded: tuple[runs.RunConfig, AdaMML, list[str]]
) -> None:
    used = torch.cat(
        [predictor(loaded).run(root / line.split()[0]).windows[0].decisions for line in VAL]
    )
    # Otherwise the tests of skipped decoding would check nothing.
    assert 0 < used[:, 0].sum() < len(used)


@pytest.mark.parametrize("layout", ["file", "frame folder"])
def test_window_inputs_are_the_datasets_bit_for_bit(
    root: Path, loaded: tuple[runs.RunConfig, AdaMML, list[str]], layout: str, tmp_path: Path
) -> None:
    config, _, classes = loaded
    clip = "videos/val/c01_0001.mp4"
    if layout == "file":
        path, line = root / clip, f"{clip} 1"
    else:
        path = tmp_path / "c01_0001"
        frames = prepare.extract_video(root / clip, path, 40, False, config.data.sample_rate)
        path, line = path, f"{path} 1 {frames} 1"
    item = batch_of(root, config, line, classes)
    runner = predictor(loaded)
    source = D.open_source(path, config.data)
    data = config.data
    indices = D.window_indices(0, source.num_frames, 4, data.span, data.frames_per_segment,
                               data.frame_stride)  # fmt: skip
    decoded = D.read_clip(source, indices, runner.reads, data.audio_seconds)
    source.close()
    transforms = runner.transforms
    params = transforms.spatial(decoded.height, decoded.width, train=False)
    # The policy's view from its rows alone, and recognition inputs of some segments only.
    assert torch.equal(transforms.policy_input("rgb", decoded, params), item["policy_rgb"][0])
    some = torch.tensor([1, 3])
    for m in ("rgb", "audio"):
        chosen = transforms.recognition_input(m, decoded.select(segments=some), params)
        assert torch.equal(chosen, item[m][0, some])


def test_only_the_selected_segments_recognition_inputs_are_built(
    root: Path, loaded: tuple[runs.RunConfig, AdaMML, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    built: list[tuple[str, tuple[int, ...]]] = []
    original = D.InputTransforms.recognition_input

    def recording(self: D.InputTransforms, modality: str, decoded: D.Decoded, params: object):  # type: ignore[no-untyped-def]
        built.append((modality, tuple(decoded.indices.shape)))
        return original(self, modality, decoded, params)  # type: ignore[arg-type]

    monkeypatch.setattr(D.InputTransforms, "recognition_input", recording)
    result = predictor(loaded).run(root / "videos/val/c00_0000.mp4")
    rgb = int(result.windows[0].decisions[:, 0].sum())
    frames, policy_frames = DATA["frames_per_segment"], PRESETS["tiny"].data.get("policy_frames", 2)
    # The policy's RGB from its rows of every segment, audio once for policy and recognition,
    # RGB for recognition on the selected segments only, in one call.
    expected = [("rgb", (4, policy_frames)), ("audio", (4, frames))]
    assert built == expected + ([("rgb", (rgb, frames))] if rgb else [])
    built.clear()
    predictor(loaded, all_modalities=True).run(root / "videos/val/c00_0000.mp4")
    assert sorted(built) == [("audio", (4, frames)), ("rgb", (4, frames))]


def test_gflops_count_the_policy_and_the_selected_segments(
    root: Path, loaded: tuple[runs.RunConfig, AdaMML, list[str]]
) -> None:
    runner = predictor(loaded)
    result = runner.run(root / "videos/val/c00_0000.mp4")
    decisions = result.windows[0].decisions[None]
    assert result.gflops == pytest.approx(float(expected_gflops(decisions, runner.costs)[0]))
    recognition = ModalityCosts(runner.costs.recognition)
    everything = float(expected_gflops(torch.ones_like(decisions), recognition)[0])
    assert result.gflops_all_modalities == pytest.approx(everything)
    assert set(result.seconds) == {"decode", "policy", "recognition", "total"}
    assert sum(result.seconds[p] for p in predict.TIMED_PARTS) <= result.seconds["total"]


def test_all_modalities_runs_no_policy_and_equals_the_all_on_batch(
    root: Path, loaded: tuple[runs.RunConfig, AdaMML, list[str]]
) -> None:
    config, model, classes = loaded
    line = VAL[1]
    result = predictor(loaded, all_modalities=True).run(root / line.split()[0])
    with torch.inference_mode():
        batch = batch_of(root, config, line, classes)
        expected = model(batch, all_on(batch, model), route=True)
    assert bool(result.windows[0].decisions.eq(1).all()) and result.seconds["policy"] == 0
    torch.testing.assert_close(result.logits, expected.logits[0], rtol=1e-5, atol=1e-6)
    assert result.gflops == pytest.approx(result.gflops_all_modalities)


def test_windows_cover_the_video_and_each_is_predicted_on_its_own(
    root: Path, loaded: tuple[runs.RunConfig, AdaMML, list[str]]
) -> None:
    runner = predictor(loaded)
    clip = root / "videos/val/c01_0001.mp4"
    whole = runner.run(clip)
    halves = runner.run(clip, window_seconds=1.0)
    assert [(w.first, w.count) for w in halves.windows] == [(0, 8), (8, 8)]
    # One window as long as the video is the whole video.
    same = runner.run(clip, window_seconds=SPEC.seconds)
    assert torch.equal(same.logits, whole.logits)
    # The video's logits fuse every segment of every window: the mean of the windows' logits.
    mean = torch.stack([w.logits for w in halves.windows]).mean(0)
    torch.testing.assert_close(halves.logits, mean, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------ command line
def write_clip(path: Path, audio: bool = True, seconds: float = 2.0) -> None:
    frames = np.random.default_rng(0).integers(0, 255, (int(8 * seconds), 32, 32, 3), np.uint8)
    sound = np.zeros(int(16000 * seconds), np.float32) if audio else None
    make_dataset.write_mp4(path, frames, 8, sound, 16000)


def truncate_with_index_first(source: Path, target: Path) -> None:
    """Remux with the index (moov) first, then cut the file: it opens, but frames are gone."""
    with (
        av.open(str(source)) as inp,
        av.open(str(target), "w", options={"movflags": "faststart"}) as out,
    ):
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        for packet in inp.demux():
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                out.mux(packet)
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2])


def test_bad_videos_get_one_line_each_and_the_others_are_predicted(
    root: Path, run_dir: Path, loaded: tuple[runs.RunConfig, AdaMML, list[str]], tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setattr(predict, "measure_costs", lambda *_: predictor(loaded).costs)
    good = root / "videos/val/c00_0000.mp4"
    missing = tmp_path / "missing.mp4"
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    indexed = tmp_path / "indexed_cut.mp4"
    truncate_with_index_first(good, indexed)
    silent = tmp_path / "silent.mp4"
    write_clip(silent, audio=False)
    empty_folder = tmp_path / "no_frames"
    empty_folder.mkdir()
    out = tmp_path / "predictions.jsonl"
    videos = [good, missing, text, cut, indexed, silent, empty_folder, root / VAL[1].split()[0]]
    status = predict.main(
        [*map(str, videos), "--run", str(run_dir), "--json", str(out), "--top", "3"]
    )
    captured = capsys.readouterr()
    assert status == 1
    assert "Traceback" not in captured.err + captured.out
    errors = [line for line in captured.err.splitlines() if "skipped:" in line]
    bad = [missing, text, cut, indexed, empty_folder]
    assert len(errors) == len(bad)
    for path, line in zip(bad, errors, strict=True):
        assert line.startswith(f"{path}: skipped: ")
    assert "no such file" in errors[0] and "not a video" in errors[1]
    assert "truncated or corrupt file?" in errors[3]
    assert f"{silent}: no audio track" in captured.err
    assert "5 of 8 videos could not be read" in captured.err
    printed = [line for line in captured.out.splitlines() if not line.startswith(" ")]
    assert [line.split(":")[0] for line in printed] == [str(good), str(silent), str(videos[-1])]
    lines = captured.out.split(f"{silent}: ")[0].splitlines()
    assert lines[1].startswith("  top ") and lines[1].count(" | ") == 2
    assert lines[2].lstrip().startswith("rgb ") and lines[3].lstrip().startswith("audio ")
    assert "all-modality" in lines[4] and "decode" in lines[5] and "recognition" in lines[5]
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["video"] for r in records] == list(map(str, videos))
    assert [("error" in r) for r in records] == [False, True, True, True, True, False, True, False]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("no weights", "has no adamml.pt"),
        ("no config", "config.json"),
        ("broken weights", "cannot read"),
        ("bad window", "--window-seconds: expected > 0"),
    ],
)
def test_a_bad_run_directory_or_flag_is_one_line_and_exit_2(
    root: Path, run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    setup: str, message: str,
) -> None:  # fmt: skip
    run = tmp_path / "run"
    run.mkdir()
    extra: list[str] = []
    if setup != "no config":
        (run / runs.CONFIG).write_bytes((run_dir / runs.CONFIG).read_bytes())
    if setup == "broken weights":
        (run / "adamml.pt").write_bytes(b"half a checkpoint")
    if setup == "bad window":
        run, extra = run_dir, ["--window-seconds", "0"]
    with pytest.raises(SystemExit) as exit_info:
        predict.main([str(root / VAL[0].split()[0]), "--run", str(run), *extra])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if "error:" in line]) == 1


@pytest.mark.slow
def test_a_run_with_rgbdiff_streams_like_its_batch(root: Path, tmp_path: Path) -> None:
    run = make_run(root, tmp_path / "rgbdiff", ("rgbdiff", "audio"))
    config, model, classes = predict.load_run(run, None)
    line = VAL[2]
    # Costs measured here, as the command line does.
    runner = predict.Predictor(model, config, classes, torch.device("cpu"))
    assert runner.costs == measure_costs(model, example_batch(config.data, model.modalities))
    result = runner.run(root / line.split()[0])
    with torch.inference_mode():
        batch = model(batch_of(root, config, line, classes), route=True)
    assert torch.equal(result.windows[0].decisions, batch.decisions[0])
    torch.testing.assert_close(result.logits, batch.logits[0], rtol=1e-5, atol=1e-6)


def test_a_folder_of_videos_is_predicted_video_by_video_and_a_frame_folder_stays_one_video(
    root: Path, run_dir: Path, loaded: tuple[runs.RunConfig, AdaMML, list[str]], tmp_path: Path,
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setattr(predict, "measure_costs", lambda *_: predictor(loaded).costs)
    clips = tmp_path / "clips"
    (clips / "more").mkdir(parents=True)
    for name in ("b.mp4", "a.mp4", "more/c.mkv"):
        write_clip(clips / name)
    (clips / "notes.txt").write_text("not a video\n")
    frames = tmp_path / "frames"
    prepare.extract_video(root / VAL[0].split()[0], frames, 40, False, 16000)
    out = tmp_path / "predictions.jsonl"
    status = predict.main([str(clips), str(frames), "--run", str(run_dir), "--json", str(out)])
    assert status == 0
    records = [json.loads(line) for line in out.read_text().splitlines()]
    expected = [clips / "a.mp4", clips / "b.mp4", clips / "more/c.mkv", frames]
    assert [r["video"] for r in records] == list(map(str, expected))
    assert all("error" not in r for r in records)
    assert "Traceback" not in capsys.readouterr().err


def test_a_shared_modality_runs_its_recogniser_once_and_equals_the_batch_path(
    root: Path, loaded: tuple[runs.RunConfig, AdaMML, list[str]]
) -> None:
    config, _, classes = loaded
    torch.manual_seed(1)
    preset = dataclasses.replace(PRESETS["tiny"], shared_policy_features=("audio",))
    model = AdaMML(config.modalities, len(classes), preset).eval()
    audio = model.recognisers["audio"]
    calls: list[tuple[str, int]] = []
    audio.register_forward_hook(lambda _, args, __: calls.append(("forward", len(args[0]))))
    features = audio.forward_features

    def counting(x: torch.Tensor) -> torch.Tensor:
        calls.append(("features", len(x)))
        return features(x)  # type: ignore[no-any-return]

    audio.forward_features = counting  # type: ignore[method-assign]
    costs = ModalityCosts({m: COSTS.recognition[m] for m in model.modalities}, COSTS.policy)
    runner = predict.Predictor(model, config, classes, torch.device("cpu"), costs=costs)
    result = runner.run(root / VAL[1].split()[0])
    # Once, on the window's 4 segments: its features for the policy and its logits.
    assert calls == [("features", 4)]
    with torch.inference_mode():
        batch = model(batch_of(root, config, VAL[1], classes), route=True)
    assert torch.equal(result.windows[0].decisions, batch.decisions[0])
    torch.testing.assert_close(result.logits, batch.logits[0], rtol=1e-5, atol=1e-6)


def test_ctrl_c_is_one_line_naming_the_video_to_go_on_from(
    root: Path, run_dir: Path, loaded: tuple[runs.RunConfig, AdaMML, list[str]],
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setattr(predict, "measure_costs", lambda *_: predictor(loaded).costs)
    videos = [root / line.split()[0] for line in VAL]
    original = predict.Predictor.run

    def interrupted(self: predict.Predictor, path: Path, *args: object) -> object:
        if path == videos[1]:
            raise KeyboardInterrupt
        return original(self, path, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(predict.Predictor, "run", interrupted)
    assert predict.main([*map(str, videos), "--run", str(run_dir)]) == 130
    err = capsys.readouterr().err
    assert f"interrupted at {videos[1]} (2 of 3)" in err and "Traceback" not in err
