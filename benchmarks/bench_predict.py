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
``--repeats`` rounds), one torch thread; a figure is the median over the rounds of the time
summed over the videos, with the spread of the per-round ratio in brackets. Times are CPU
time of the process (``time.process_time``, decoder threads included), which a busy shared
machine disturbs far less than wall time. The target (issue 20): AdaMML's summed time ≤
all-modality's on the demo validation set.

Usage::

    python benchmarks/bench_predict.py [--run examples/adamml/runs/demo] [--videos 24]

Prints one markdown table and the ratio against the target.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from _timing import TimeStats, interleaved_times, ratio_text, time_ratio, total_times
from bench_data import write_long_video

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "adamml"))

import predict
import runs
from data import parse_list_file, read_classes
from model import example_batch, measure_costs

ROOT = Path(__file__).resolve().parents[1]


def predictors(run: Path) -> dict[str, predict.Predictor]:
    """AdaMML and all-modality, sharing one measurement of the MACs."""
    config, adamml, classes = predict.load_run(run, None)
    _, allmod, _ = predict.load_run(run, None, all_modalities=True)
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


@dataclass
class Row:
    """One input's figures.

    Attributes:
        stats: per runner, its seconds summed over the videos, round by round.
        gflops: AdaMML's GFLOPs ÷ all-modality's.
        ms: per runner, median milliseconds per video.
        parts: per runner, median milliseconds per video of each part of ``TIMED_PARTS``.
    """

    stats: dict[str, TimeStats]
    gflops: float
    ms: dict[str, float]
    parts: dict[str, dict[str, float]]


def measure(runners: Mapping[str, predict.Predictor], videos: list[Path], repeats: int) -> Row:
    """Time every runner on ``videos``, interleaved video by video."""
    totals: dict[str, list[TimeStats]] = {name: [] for name in runners}
    parts = {name: dict.fromkeys(predict.TIMED_PARTS, 0.0) for name in runners}
    gflops = gflops_all = 0.0
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
    summed = {name: total_times(stats) for name, stats in totals.items()}
    per_video = 1000 / len(videos)
    return Row(
        stats=summed,
        gflops=gflops / gflops_all,
        ms={name: per_video * summed[name].median for name in runners},
        parts={name: {p: per_video * s for p, s in parts[name].items()} for name in runners},
    )


def _run_into(
    runner: predict.Predictor, video: Path, results: list[predict.VideoPrediction]
) -> None:
    results.append(runner.run(video))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=ROOT / "examples/adamml/runs/demo")
    parser.add_argument(
        "--videos", type=int, help="N validation videos spread over the list (default: all)"
    )
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    runners = predictors(args.run)
    config = runners["adamml"].data
    run_config = runs.load_config(args.run)
    records, _ = parse_list_file(run_config.val_list, read_classes(run_config.classes))
    # Evenly spaced through the class-ordered list, so that every class is in a subset.
    count = min(args.videos or len(records), len(records))
    picked = torch.linspace(0, len(records) - 1, count).round().long().tolist()
    val = [Path(run_config.data_root) / records[i].path for i in picked]
    rows = {f"demo validation set ({len(val)} videos)": measure(runners, val, args.repeats)}
    with tempfile.TemporaryDirectory() as tmp:
        video = Path(tmp) / "long720p.mp4"
        write_long_video(video)
        rows["60 s 720p h264 video"] = measure(runners, [video], args.repeats)
    print(
        f"| input (T = {config.test_segments}) | GFLOPs AdaMML ÷ all | end-to-end AdaMML ÷ all "
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
    demo = next(iter(rows.values())).stats
    ratio, spread = time_ratio(demo["adamml"], demo["allmod"])
    verdict = "met" if ratio <= 1 else "missed"
    print(
        f"\nTarget on the demo validation set: AdaMML's time ≤ all-modality's (ratio ≤ 1); "
        f"measured {ratio:.2f} (spread {spread:.2f}): {verdict}."
    )


if __name__ == "__main__":
    main()
