"""End-to-end time of a trained AdaMML on videos, decoding included: AdaMML ÷ all-modality.

``examples/adamml/predict.py`` takes a window of T segments at a time: it reads the window,
runs the policy's feature extractors once on its T segments and the LSTM over them, then each
recogniser once, on the segments that selected it, building only their inputs. This benchmark
times, per video, reading + policy + recognition of

* AdaMML (what predict.py does);
* all-modality: every modality on every segment, no policy (the run's ``allmod.pt``, or
  AdaMML's recognisers where there is none: the same networks, so the same cost);

on the demo validation set and on a generated 60 s 720p h264 video (30 fps, one keyframe per
second; ``bench_data.write_long_video``), T = the run's test segments over the whole video.
The two are interleaved video by video (``examples/adamml/timing.py``: a warm-up round, then
``--repeats`` rounds), ``--threads`` torch threads; a figure is the median over the rounds of
the time summed over the videos, with the spread of the per-round ratio in brackets. Times are
CPU time of the process (``time.process_time``, decoder threads included), which a busy shared
machine disturbs far less than wall time. The target (issue 20): AdaMML's summed time ≤
all-modality's on the demo validation set.

``--preset paper`` times the same two through the same path at the paper's sizes (AdaMML §4.1:
TSN ResNet-50 on 8×224² RGB, the policy's MobileNetV2 on 4×160², the audio MobileNetV2 on a
256×256 spectrogram read by the policy too), without a trained paper run: the ``paper`` model
with fresh weights, its RGB threshold set to the median of the RGB on-logits over the videos'
segments (so that RGB runs on about half of them) and audio always on, on ``--videos``
generated 10 s 340×256 h264 videos with a 48 kHz audio track (Kinetics' length and TSN's
resolution). Only the cost of a decision counts here, not its quality, so fresh weights
measure it as well as trained ones. The target: end-to-end ratio ≤ GFLOPs ratio +
0.2.

Usage::

    python benchmarks/bench_predict.py [--run examples/adamml/runs/demo] [--videos 24]
    python benchmarks/bench_predict.py --preset paper [--videos 1] [--threads 2]

Prints one markdown table and the ratio against the target.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import torch
from _timing import TimeStats, interleaved_times, ratio_text, time_ratio, total_times
from bench_data import write_long_video
from torch import nn

from adagate.policy import PolicyOutput

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "adamml"))

import make_dataset
import predict
import runs
from data import DataConfig, parse_list_file, read_classes
from model import PRESETS, AdaMML, example_batch, measure_costs

ROOT = Path(__file__).resolve().parents[1]
# ActivityNet's classes: the classifier's size barely moves the ratios.
PAPER_CLASSES = 200
PAPER_MODALITIES = ("rgb", "audio")


def predictors(
    config: runs.RunConfig, adamml: AdaMML, allmod: AdaMML, classes: Sequence[str]
) -> dict[str, predict.Predictor]:
    """AdaMML and all-modality, sharing one measurement of the MACs."""
    costs = measure_costs(adamml, example_batch(config.data, adamml.modalities))
    # Optimised for inference, as predict.py runs them by default; the split into parts in
    # CPU time, like the totals.
    return {
        name: predict.Predictor(
            model,
            config,
            classes,
            torch.device("cpu"),
            all_modalities=name == "allmod",
            costs=costs,
            optimize=True,
            clock=time.process_time,
        )
        for name, model in (("adamml", adamml), ("allmod", allmod))
    }


def run_predictors(run: Path) -> dict[str, predict.Predictor]:
    """A trained run's AdaMML and its all-modality baseline."""
    config, adamml, classes = predict.load_run(run, None)
    _, allmod, _ = predict.load_run(run, None, all_modalities=True)
    return predictors(config, adamml, allmod, classes)


def paper_config() -> runs.RunConfig:
    """A run configuration of the ``paper`` preset, as train.py would write it, without data."""
    preset = PRESETS["paper"]
    data = DataConfig.paper(modalities=PAPER_MODALITIES, **preset.data)
    return runs.RunConfig(
        preset="paper", modalities=PAPER_MODALITIES, data_root="", train_list="", val_list="",
        classes="", informative=None, data=data,
        epochs={"pretrain": 0, "warmup": 0, "joint": 0, "finetune": 0},
        batch_size=preset.batch_size, lr=preset.lr, pretrain_lr=preset.pretrain_lr,
        policy_lr=preset.policy_lr, lambdas=dict(preset.lambdas), gamma=preset.gamma,
        recovery=0.0, budget_gflops=None, joint_schedule="cached", metric="top1",
        baselines=False, seed=0, world_size=1, weights={}, command="bench_predict.py",
    )  # fmt: skip


def write_paper_video(path: Path, seed: int, seconds: int = 10, fps: int = 30) -> None:
    """A 340x256 clip (TSN's Kinetics frames) whose scene changes every second, and a tone whose
    pitch changes with it, so that the policy sees different segments."""
    height, width, rate = 256, 340, 48000
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    tints = rng.uniform(40, 200, size=(seconds, 3)).astype(np.float32)
    waves = rng.uniform(8, 40, size=(seconds, 2)).astype(np.float32)

    def frame(n: int) -> np.ndarray:
        scene, shift = n // fps, 3 * n
        texture = np.sin((xx + shift) / waves[scene, 0]) * np.cos((yy - shift) / waves[scene, 1])
        image = tints[scene] + 50 * texture[..., None]
        return image.clip(0, 255).astype(np.uint8)

    t = np.arange(seconds * rate) / rate
    pitch = rng.uniform(200, 1200, size=seconds)[t.astype(int)]
    audio = (0.3 * np.sin(2 * np.pi * pitch * t)).astype(np.float32)
    frames = (frame(n) for n in range(fps * seconds))
    make_dataset.write_mp4(path, frames, fps, audio, rate, gop=fps, crf=23)


def paper_predictors(videos: Sequence[Path]) -> dict[str, predict.Predictor]:
    """The ``paper`` model with fresh weights, RGB used on about half of the videos' segments
    and audio on all; all-modality runs the same networks."""
    config = paper_config()
    classes = [f"class{i}" for i in range(PAPER_CLASSES)]
    torch.manual_seed(0)
    model = AdaMML(PAPER_MODALITIES, PAPER_CLASSES, PRESETS["paper"]).eval()
    rgb = model.modalities.index("rgb")
    on_logits: list[torch.Tensor] = []

    def record(_: nn.Module, __: tuple[object, ...], output: PolicyOutput) -> None:
        logits = output.logits
        on_logits.append((logits[..., rgb, 1] - logits[..., rgb, 0]).flatten())

    # RGB off while its on-logits are read: only decoding, the policy and audio run.
    model.policy.set_thresholds({"rgb": float("inf"), "audio": float("-inf")})
    reader = predict.Predictor(model, config, classes, torch.device("cpu"), costs=None)
    handle = model.policy.register_forward_hook(record)
    try:
        for video in videos:
            reader.run(video)
    finally:
        handle.remove()
    # Decided on where the on-logit exceeds the threshold: half of the segments lie above the
    # median (the LSTM's feedback of RGB's decisions moves a few; the table reports the share).
    model.policy.set_thresholds({"rgb": float(torch.cat(on_logits).median())})
    return predictors(config, model, model, classes)


@dataclass
class Row:
    """One input's figures.

    Attributes:
        stats: per runner, its seconds summed over the videos, round by round.
        gflops: AdaMML's GFLOPs ÷ all-modality's.
        ms: per runner, median milliseconds per video.
        parts: per runner, median milliseconds per video of each part of ``TIMED_PARTS``.
        used: per modality, the share of AdaMML's segments that used it.
    """

    stats: dict[str, TimeStats]
    gflops: float
    ms: dict[str, float]
    parts: dict[str, dict[str, float]]
    used: dict[str, float]


def measure(runners: Mapping[str, predict.Predictor], videos: list[Path], repeats: int) -> Row:
    """Time every runner on ``videos``, interleaved video by video."""
    totals: dict[str, list[TimeStats]] = {name: [] for name in runners}
    parts = {name: dict.fromkeys(predict.TIMED_PARTS, 0.0) for name in runners}
    gflops = gflops_all = 0.0
    decisions = []
    for video in videos:
        results: dict[str, list[predict.VideoPrediction]] = {name: [] for name in runners}
        fns = {
            name: partial(_run_into, runner, video, results[name])
            for name, runner in runners.items()
        }
        stats = interleaved_times(fns, repeats=repeats, clock=time.process_time)
        for name in runners:
            totals[name].append(stats[name])
            timed = results[name][-repeats:]
            for part in predict.TIMED_PARTS:
                parts[name][part] += sorted(r.seconds[part] for r in timed)[len(timed) // 2]
        gflops += results["adamml"][-1].gflops
        gflops_all += results["adamml"][-1].gflops_all_modalities
        decisions += [w.decisions for w in results["adamml"][-1].windows]
    summed = {name: total_times(stats) for name, stats in totals.items()}
    per_video = 1000 / len(videos)
    shares = torch.cat(decisions).float().mean(0).tolist()
    return Row(
        stats=summed,
        gflops=gflops / gflops_all,
        ms={name: per_video * summed[name].median for name in runners},
        parts={name: {p: per_video * s for p, s in parts[name].items()} for name in runners},
        used=dict(zip(runners["adamml"].modalities, shares, strict=True)),
    )


def _run_into(
    runner: predict.Predictor, video: Path, results: list[predict.VideoPrediction]
) -> None:
    results.append(runner.run(video))


def demo_rows(run: Path, videos: int | None, repeats: int) -> tuple[int, dict[str, Row]]:
    """T and the rows of the trained run: its validation set and a 60 s 720p video."""
    runners = run_predictors(run)
    run_config = runs.load_config(run)
    records, _ = parse_list_file(run_config.val_list, read_classes(run_config.classes))
    # Evenly spaced through the class-ordered list, so that every class is in a subset.
    count = min(videos or len(records), len(records))
    picked = torch.linspace(0, len(records) - 1, count).round().long().tolist()
    val = [Path(run_config.data_root) / records[i].path for i in picked]
    rows = {f"demo validation set ({len(val)} videos)": measure(runners, val, repeats)}
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "long720p.mp4"
        write_long_video(video)
        rows["60 s 720p h264 video"] = measure(runners, [video], repeats)
    return runners["adamml"].segments, rows


def paper_rows(videos: int | None, repeats: int) -> tuple[int, dict[str, Row]]:
    """T and the row of the fresh ``paper`` model on generated 10 s 340x256 videos."""
    count = videos or 1
    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(tmp) / f"paper{i}.mp4" for i in range(count)]
        for seed, path in enumerate(paths):
            write_paper_video(path, seed)
        runners = paper_predictors(paths)
        name = f"paper sizes, fresh weights: {count} × 10 s 340×256 h264 video"
        return runners["adamml"].segments, {name: measure(runners, paths, repeats)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=ROOT / "examples/adamml/runs/demo")
    parser.add_argument(
        "--preset", choices=("demo", "paper"), default="demo",
        help="demo: the trained --run; paper: the paper preset with fresh weights on generated "
        "videos (--run unused)",
    )  # fmt: skip
    parser.add_argument(
        "--videos", type=int,
        help="demo: N validation videos spread over the list (default: all); paper: N generated "
        "videos (default: 1)",
    )  # fmt: skip
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    for flag in ("videos", "repeats", "threads"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            parser.error(f"--{flag}: expected >= 1, got {value}")
    torch.set_num_threads(args.threads)
    if args.preset == "paper":
        segments, rows = paper_rows(args.videos, args.repeats)
    else:
        segments, rows = demo_rows(args.run, args.videos, args.repeats)
    print(
        f"| input (T = {segments}) | GFLOPs AdaMML ÷ all | end-to-end AdaMML ÷ all "
        "| AdaMML CPU ms/video: decode + policy + recognition "
        "| all-modality CPU ms/video: decode + recognition |"
    )
    print("|---|---|---|---|---|")
    for name, row in rows.items():
        adamml, allmod = row.parts["adamml"], row.parts["allmod"]
        ratio = ratio_text(row.stats["adamml"], row.stats["allmod"], ".2f")
        print(
            f"| {name} | {row.gflops:.2f} | **{ratio}** | {row.ms['adamml']:.1f}: "
            f"{adamml['decode']:.1f} + {adamml['policy']:.1f} + {adamml['recognition']:.1f} "
            f"| {row.ms['allmod']:.1f}: {allmod['decode']:.1f} + {allmod['recognition']:.1f} |"
        )
    first = next(iter(rows.values()))
    ratio, spread = time_ratio(first.stats["adamml"], first.stats["allmod"])
    if args.preset == "paper":
        bound = first.gflops + 0.2
        shares = ", ".join(f"{m} {share:.0%}" for m, share in first.used.items())
        print(
            f"\nSegments used by AdaMML: {shares}.\nTarget at the paper's sizes: end-to-end ratio "
            f"≤ GFLOPs ratio + 0.2 = {first.gflops:.2f} + 0.2 = {bound:.2f}; measured "
            f"{ratio:.2f} (spread {spread:.2f}): {'met' if ratio <= bound else 'missed'}."
        )
        return
    verdict = "met" if ratio <= 1 else "missed"
    print(
        f"\nTarget on the demo validation set: AdaMML's time ≤ all-modality's (ratio ≤ 1); "
        f"measured {ratio:.2f} (spread {spread:.2f}): {verdict}."
    )


if __name__ == "__main__":
    main()
