"""End-to-end test of examples/adamml/train.py and evaluate.py on a tiny generated mp4 set:
all stages run, the report is written, and a run killed mid-epoch then resumed ends with
exactly the weights of an uninterrupted run."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "adamml"))

import flags
import make_dataset
import metrics
import train

# 4 clips of 2 s at 32², batch 2: 2 optimiser steps per epoch.
SPEC = make_dataset.DemoSpec(
    classes=4, train_per_class=1, val_per_class=1, calib_per_class=1, size=32, seconds=2.0,
    scenes=2,
)
STAGES = ["--pretrain-epochs", "1", "--warmup-epochs", "1", "--epochs", "2",
          "--finetune-epochs", "1"]  # fmt: skip


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny_demo")
    make_dataset.make_dataset(SPEC, path, workers=1)
    return path


def run(root: Path, out: Path, *extra: str) -> None:
    argv = ["--preset", "tiny", "--data-root", str(root), "--out", str(out), "--workers", "0",
            "--device", "cpu", "--seed", "3", *STAGES, *extra]  # fmt: skip
    train.main(argv)


def weights(path: Path) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = torch.load(path, weights_only=True)
    return state


@pytest.fixture(scope="module")
def whole(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run with every baseline and the evaluation."""
    out = tmp_path_factory.mktemp("whole")
    run(root, out)
    return out


@pytest.mark.slow
def test_killed_and_resumed_run_ends_with_the_uninterrupted_weights(
    root: Path, whole: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"
    # Optimiser steps over the videos: 1-2 pre-train, 3-4 warm-up, (the joint stage learns on
    # its cache), 5-6 fine-tune, then the no-LSTM baseline's fine-tuning 7-8 and the
    # all-modality baseline 9-10. The first kill is in the fine-tuning (the joint stage's
    # policy, thresholds and the RNGs must resume); the second in the no-LSTM baseline's
    # fine-tuning, after its joint stage ran on a cache rebuilt after the resume.
    with pytest.raises(SystemExit, match="stopped after 5 steps"):
        run(root, broken, "--no-evaluate", "--stop-after-steps", "5")
    checkpoint = torch.load(broken / "checkpoint.pt", weights_only=True)
    assert checkpoint["position"] == {"stage": 3, "epoch": 0}
    assert not (broken / "adamml.pt").exists()
    with pytest.raises(SystemExit, match="stopped after 3 steps"):
        run(root, broken, "--no-evaluate", "--resume", "--stop-after-steps", "3")
    checkpoint = torch.load(broken / "checkpoint.pt", weights_only=True)
    assert checkpoint["position"] == {"stage": 5, "epoch": 0}
    run(root, broken, "--no-evaluate", "--resume")
    for name in ("adamml", "nolstm", "allmod"):
        expected, resumed = weights(whole / f"{name}.pt"), weights(broken / f"{name}.pt")
        assert expected.keys() == resumed.keys()
        for key, value in expected.items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(value, resumed[key]), (name, key)
            else:  # the gate's extra state, {"tau": ...}
                assert value == resumed[key], (name, key)
    # Training changed the weights (the comparison is not between two initialisations).
    warm, final = weights(whole / "warmup.pt"), weights(whole / "adamml.pt")
    assert not torch.equal(warm["policy.heads.rgb.weight"], final["policy.heads.rgb.weight"])


@pytest.mark.slow
def test_a_finished_run_resumed_says_so_and_evaluates(
    whole: Path, root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    report = train.main(["--preset", "tiny", "--data-root", str(root), "--out", str(whole),
                         "--workers", "0", "--device", "cpu", "--seed", "3", *STAGES,
                         "--resume"])  # fmt: skip
    assert "finished every stage already" in capsys.readouterr().out
    assert report is not None and "AdaMML" in report["rows"]


def test_ctrl_c_stops_with_one_line_giving_the_resume_command(
    root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(train.Trainer, "run", interrupted)
    with pytest.raises(SystemExit) as stopped:
        run(root, tmp_path / "stopped")
    message = str(stopped.value)
    assert "interrupted" in message and "Traceback" not in message
    assert message.strip().endswith("--resume")
    assert f"--out {tmp_path / 'stopped'}" in message


def test_metrics_log_one_line_per_epoch_with_the_annealed_temperature(whole: Path) -> None:
    records = [json.loads(line) for line in (whole / "metrics.jsonl").read_text().splitlines()]
    joint = [("joint", r, e) for r in (1, 2) for e in (1, 2)]
    assert [(r["stage"], r.get("restart"), r["epoch"]) for r in records] == [
        ("pretrain", None, 1), ("warmup", None, 1), *joint, ("finetune", None, 1), *joint,
        ("finetune", None, 1), ("allmod", None, 1),
    ]  # fmt: skip
    assert [r["model"] for r in records] == ["adamml"] * 7 + ["nolstm"] * 5 + ["allmod"]
    # τ follows AdaMML's schedule over the joint epochs: start · rate^epoch, per restart.
    preset = train.PRESETS["tiny"]
    assert records[3]["tau"] == pytest.approx(preset.tau_start * preset.tau_rate)
    assert records[5]["tau"] == pytest.approx(preset.tau_start * preset.tau_rate)
    # The default keeps the paper's constant noise.
    assert [records[i]["noise"] for i in (2, 3, 4, 5)] == [1.0] * 4
    # Exactly one epoch per model is the one kept, on the calibration list.
    for model in ("adamml", "nolstm"):
        kept = [r for r in records if r["model"] == model and r.get("kept")]
        assert kept and all("calibration" in r for r in records if r["stage"] == "joint")
    calibration = json.loads((whole / "calibration.json").read_text())
    assert set(calibration) == {"adamml", "nolstm"}
    final = weights(whole / "adamml.pt")["policy.thresholds"]
    chosen = calibration["adamml"]["chosen"]["thresholds"]
    assert final.tolist() == [float(chosen[m]) for m in ("rgb", "audio")]


@pytest.mark.parametrize(
    ("epoch", "epochs", "floor", "expected"),
    [(0, 7, 0.25, 1.0), (3, 7, 0.25, 0.5), (5, 7, 0.25, 0.25), (6, 7, 0.0, 0.0),
     (0, 1, 0.25, 1.0), (4, 7, 1.0, 1.0)],
)  # fmt: skip
def test_gate_noise_falls_linearly_to_its_floor(
    epoch: int, epochs: int, floor: float, expected: float
) -> None:
    assert train.gate_noise(epoch, epochs, floor) == pytest.approx(expected)


def test_report_has_every_baseline_and_consistent_costs(whole: Path) -> None:
    report = json.loads((whole / "report.json").read_text())
    assert report["metric"] == "top1"
    # Every validation video is counted once in the per-class table (single-label data).
    assert sum(row["videos"] for row in report["per_class"].values()) == report["videos"]
    assert "## Per class" in (whole / "report.md").read_text()
    # Selection by segment position averages, over positions, to the row's selection rate.
    by_position = report["by_position"]
    assert len(by_position["rgb"]) == report["test_segments"]
    assert sum(by_position["rgb"]) / report["test_segments"] == pytest.approx(
        report["rows"]["AdaMML"]["selection"]["rgb"], abs=1e-6
    )
    assert "## By segment position" in (whole / "report.md").read_text()
    assert list(report["rows"]) == [
        "AdaMML", "AdaMML, no LSTM", "All modalities", "rgb only", "audio only",
        "Random policy (AdaMML's rates)",
    ]  # fmt: skip
    rows = report["rows"]
    assert rows["All modalities"]["selection"] == {"rgb": 1.0, "audio": 1.0}
    assert rows["audio only"]["selection"] == {"rgb": 0.0, "audio": 1.0}
    # The all-modality row costs both recognisers on every segment and no policy.
    per_segment = report["gflops_per_segment"]
    all_gflops = report["test_segments"] * (per_segment["rgb"] + per_segment["audio"])
    assert rows["All modalities"]["gflops"] == pytest.approx(all_gflops)
    # AdaMML pays for its policy on every segment, whatever it selects.
    adamml = rows["AdaMML"]
    selected = sum(adamml["selection"][m] * per_segment[m] for m in ("rgb", "audio"))
    expected = report["test_segments"] * (per_segment["policy"] + selected)
    assert adamml["gflops"] == pytest.approx(expected)
    for name in ("report.md", "accuracy_vs_gflops.png", "selection_map.png"):
        assert (whole / name).stat().st_size > 0
    assert "| AdaMML |" in (whole / "report.md").read_text()
    # The trade-off: AdaMML's and the no-LSTM policy's curves (points chosen on calibration),
    # random selection at AdaMML's points' rates, and RGB on every k-th segment.
    curves = report["curves"]
    assert set(curves) == {"AdaMML", "AdaMML, no LSTM", "Random selection",
                           "rgb every k-th segment"}  # fmt: skip
    assert len(curves["Random selection"]) == len(curves["AdaMML"])
    assert [p["every"] for p in curves["rgb every k-th segment"]] == [1, 2]
    assert curves["rgb every k-th segment"][0]["gflops_vs_all"] == pytest.approx(1.0)
    point = rows["AdaMML"]["operating_point"]
    assert point["rule"] and set(point["thresholds"]) == {"rgb", "audio"}
    assert set(report["curve_check"]["best"]) == set(curves)
    assert "## Trade-off curves" in (whole / "report.md").read_text()


@pytest.mark.slow
def test_damaged_checkpoint_falls_back_to_the_previous_one(
    root: Path, whole: Path, tmp_path: Path
) -> None:
    out = tmp_path / "damaged"
    with pytest.raises(SystemExit, match="stopped after 5 steps"):
        run(root, out, "--no-evaluate", "--no-baselines", "--stop-after-steps", "5")
    # The last completed stage is the cached joint stage (position stage 3); the one before
    # it, the warm-up (stage 2).
    (out / "checkpoint.pt").write_bytes(b"not a zip file")
    with pytest.warns(UserWarning, match="cannot read .*checkpoint.pt"):
        run(root, out, "--no-evaluate", "--no-baselines", "--resume")
    expected, resumed = weights(whole / "adamml.pt"), weights(out / "adamml.pt")
    for key, value in expected.items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, resumed[key]), key


@pytest.mark.slow
def test_stage_zero_alone_then_init_from_its_run(root: Path, tmp_path: Path) -> None:
    first, second = tmp_path / "unimodal", tmp_path / "joint"
    run(root, first, "--only-stages", "pretrain", "--no-evaluate")
    assert (first / "pretrained.pt").exists() and not (first / "warmup.pt").exists()
    run(root, second, "--init", str(first), "--only-stages", "warmup,joint,finetune",
        "--no-baselines", "--joint-schedule", "alternate", "--noise-floor", "0.25")  # fmt: skip
    # The dense joint training also chose its best epoch on the calibration list.
    assert json.loads((second / "calibration.json").read_text())["adamml"]["chosen"]
    # The gates' noise fell from 1 to the floor over the joint epochs (two here).
    records = [json.loads(line) for line in (second / "metrics.jsonl").read_text().splitlines()]
    assert [r["noise"] for r in records if r["stage"] == "joint"] == [1.0, 0.25]
    assert json.loads((second / "config.json").read_text())["noise_floor"] == 0.25
    pretrained, warm = weights(first / "pretrained.pt"), weights(second / "warmup.pt")
    # The warm-up started from stage 0's weights: the policy extractors (not trained in the
    # warm-up) are still exactly stage 0's.
    key = next(k for k in pretrained if k.startswith("policy_features.") and k.endswith("weight"))
    assert torch.equal(pretrained[key], warm[key])
    records = [json.loads(x) for x in (second / "metrics.jsonl").read_text().splitlines()]
    joint = [r["trained"] for r in records if r["stage"] == "joint"]
    assert joint == [["policy"], ["recognisers"]]  # alternating whole epochs, policy first
    assert json.loads((second / "report.json").read_text())["rows"]["AdaMML"]["map"] >= 0


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--modalities", "rgb,foo"], "--modalities: expected distinct names"),
        (["--lambdas", "rgb=abc"], "--lambdas: expected 'modality=number'"),
        (["--lambdas", "flow=1"], "--lambdas: expected modalities from"),
        (["--data-root", "/nonexistent"], "--data-root: expected a directory"),
        (["--only-stages", "warm"], "--only-stages: expected names"),
        (["--init", "/nonexistent.pt"], "--init: no such run directory or file"),
        (["--noise-floor", "1.5"], "--noise-floor: expected a number in [0, 1]"),
        (["--point-budget", "0"], "--point-budget: expected a share"),
        (["--point-budget", "0.4", "--point-max-drop", "1"], "--point-max-drop: expected either"),
        (["--calib-list", "/nonexistent.txt"], "--calib-list: no such file"),
        (["--calib-fraction", "1.5"], "--calib-fraction: expected a share in (0, 1)"),
        (["--policy-restarts", "0"], "--policy-restarts: expected >= 1"),
    ],
)
def test_bad_flags_exit_with_one_line_naming_the_flag(
    root: Path, flags: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        train.parse_args(["--data-root", str(root), *flags])
    assert exited.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert message in error and "Traceback" not in error


def test_map_matches_a_hand_computation() -> None:
    # Class 0: positives ranked 1st and 3rd -> AP = (1/1 + 2/3) / 2; class 1: the single
    # positive ranked 2nd -> AP = 1/2; class 2 has no positive and is left out.
    logits = torch.tensor([[0.9, 0.1, 0.0], [0.5, 0.3, 0.0], [0.2, 0.8, 0.0]])
    labels = torch.tensor([0, 1, 0])
    expected = ((1 + 2 / 3) / 2 + (1 / 2)) / 2
    assert metrics.mean_average_precision(logits, labels) == pytest.approx(expected)
    multi_hot = torch.tensor([[1.0, 0, 0], [0, 1, 0], [1, 0, 0]])
    assert metrics.mean_average_precision(logits, multi_hot) == pytest.approx(expected)
    assert metrics.top1(logits, labels) == pytest.approx(1 / 3)
    assert metrics.top1(logits, multi_hot) == pytest.approx(1 / 3)


def test_without_a_calibration_list_a_stratified_share_of_training_is_held_back(
    tmp_path: Path,
) -> None:
    lines = [f"videos/c{c}_{i}.mp4 {c}" for c in range(3) for i in range(10)] + ["solo.mp4 3"]
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "classes.txt").write_text("a\nb\nc\nd\n")
    args = argparse.Namespace(data_root=tmp_path, train_list=None, calib_list=None,
                              classes=None, calib_fraction=0.2, seed=0)  # fmt: skip
    train_list, calib_list = flags.calibration_lists(args, tmp_path)
    kept, held = train_list.read_text().splitlines(), calib_list.read_text().splitlines()
    assert sorted(kept + held) == sorted(lines) and not set(kept) & set(held)
    # Two of each class's ten; a class with one video keeps it for training.
    assert sorted(line.split()[-1] for line in held) == ["0", "0", "1", "1", "2", "2"]
    (tmp_path / "calib.txt").write_text("x 0\n")
    assert flags.calibration_lists(args, tmp_path)[1] == tmp_path / "calib.txt"


def test_warmup_under_random_gating_is_a_plan_row_in_the_dropout_mode(
    root: Path, tmp_path: Path
) -> None:
    import modes

    args = train.parse_args(["--data-root", str(root), "--warmup-gating", "random"])
    config = flags.resolve_config(args, 1, tmp_path)
    stages = {s.name: s for s in train.plan(config, flags.STAGES)}
    assert stages["warmup"].mode is modes.DROPOUT and stages["allmod"].mode is modes.ALL_ON
    default = flags.resolve_config(train.parse_args(["--data-root", str(root)]), 1, tmp_path)
    assert train.plan(default, flags.STAGES)[1].mode is modes.ALL_ON


def test_a_csv_training_list_is_split_into_csv_lists(tmp_path: Path) -> None:
    rows = [f"videos/c {c}_{i}.mp4,{c}" for c in range(2) for i in range(5)]
    (tmp_path / "train.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    (tmp_path / "classes.txt").write_text("a\nb\n")
    args = argparse.Namespace(
        data_root=tmp_path, train_list=tmp_path / "train.csv", calib_list=None, classes=None,
        calib_fraction=0.2, seed=0,
    )
    train_list, calib_list = flags.calibration_lists(args, tmp_path)
    assert train_list.suffix == calib_list.suffix == ".csv"
    kept = train_list.read_text().splitlines()
    held = calib_list.read_text().splitlines()
    assert kept[0] == held[0] == "path,label"
    assert sorted(kept[1:] + held[1:]) == sorted(rows) and len(held) == 3
