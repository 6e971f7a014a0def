"""End-to-end time of a trained AdaMML on videos, decoding included: AdaMML ÷ all-modality.

``examples/adamml/predict.py`` runs one segment at a time: it decodes what the policy reads,
decides, then decodes the recognition inputs of the selected modalities only. This benchmark
times, per video, decoding + policy + recognition of

* AdaMML, decoding only what the policy asks for (what predict.py does);
* AdaMML, decoding every input before the policy runs (as the batch data pipeline does);
* all-modality: every modality on every segment, no policy (the run's ``allmod.pt``, or
  AdaMML's recognisers where there is none: the same networks, so the same cost).

on the demo validation set and on a generated 60 s 720p h264 video (30 fps, one keyframe per
second; ``bench_data.write_long_video``), T = the run's test segments over the whole video.
The three are interleaved video by video, best of ``--repeats`` rounds, one torch thread; the
times are CPU time of the process (``time.process_time``, decoder threads included), which a
busy shared machine disturbs far less than wall time. The issue's
target: end-to-end AdaMML ÷ all-modality ≤ its GFLOPs ratio + 0.2 on the demo validation set.

Usage::

    python benchmarks/bench_predict.py [--run examples/adamml/runs/demo] [--repeats 3]

Prints one markdown table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from bench_data import write_long_video

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "adamml"))

import predict
import runs
from data import parse_list_file, read_classes
from model import example_batch, measure_costs

ROOT = Path(__file__).resolve().parents[1]


def predictors(run: Path) -> list[predict.Predictor]:
    """The three variants, sharing one measurement of the MACs."""
    config, adamml, classes = predict.load_run(run, None)
    _, allmod, _ = predict.load_run(run, None, all_modalities=True)
    costs = measure_costs(adamml, example_batch(config.data, adamml.modalities))
    cpu = torch.device("cpu")
    # Optimised for inference, as predict.py runs them by default. CPU time of the process
    # (decoder threads included): on a shared machine it stays put where wall time does not.
    options = {"costs": costs, "optimize": True, "clock": time.process_time}
    return [
        predict.Predictor(adamml, config, classes, cpu, decode="needed", **options),
        predict.Predictor(adamml, config, classes, cpu, decode="all", **options),
        predict.Predictor(allmod, config, classes, cpu, all_modalities=True, **options),
    ]  # fmt: skip


def measure(runners: list[predict.Predictor], videos: list[Path], repeats: int) -> dict[str, float]:
    """Per variant, the best of ``repeats`` rounds per video (after one warm-up round; the
    variants interleaved in each round), summed over the videos: ratios to all-modality,
    milliseconds per video in total and per part, and the GFLOPs ratio."""
    best: list[dict[str, float]] = [
        dict.fromkeys((*predict.TIMED_PARTS, "total"), 0.0) for _ in runners
    ]
    gflops, gflops_all = 0.0, 0.0
    for video in videos:
        fastest: list[predict.VideoPrediction | None] = [None] * len(runners)
        for round_ in range(1 + repeats):
            for index, runner in enumerate(runners):
                result = runner.run(video)
                current = fastest[index]
                if round_ and (
                    current is None or result.seconds["total"] < current.seconds["total"]
                ):
                    fastest[index] = result
        for index, result in enumerate(fastest):
            assert result is not None
            for part, seconds in result.seconds.items():
                best[index][part] += seconds
        assert fastest[0] is not None
        gflops += fastest[0].gflops
        gflops_all += fastest[0].gflops_all_modalities
    adamml, everything, allmod = best
    per_video = 1000 / len(videos)
    return {
        "needed": adamml["total"] / allmod["total"],
        "all": everything["total"] / allmod["total"],
        "gflops": gflops / gflops_all,
        **{f"adamml_{part}": per_video * s for part, s in adamml.items()},
        **{f"allmod_{part}": per_video * s for part, s in allmod.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=ROOT / "examples/adamml/runs/demo")
    parser.add_argument(
        "--videos", type=int, help="N validation videos spread over the list (default: all)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    runners = predictors(args.run)
    config = runners[0].data
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
        "| same, decoding everything first | AdaMML CPU ms/video: decode + policy + recognition "
        "| all-modality CPU ms/video: decode + recognition |"
    )
    print("|---|---|---|---|---|---|")
    for name, row in rows.items():
        print(
            f"| {name} | {row['gflops']:.2f} | **{row['needed']:.2f}** | {row['all']:.2f} | "
            f"{row['adamml_total']:.1f}: {row['adamml_decode']:.1f} + {row['adamml_policy']:.1f} + "
            f"{row['adamml_recognition']:.1f} | {row['allmod_total']:.1f}: "
            f"{row['allmod_decode']:.1f} + {row['allmod_recognition']:.1f} |"
        )
    demo = next(iter(rows.values()))
    target = demo["gflops"] + 0.2
    verdict = "met" if demo["needed"] <= target else "missed"
    print(
        f"\nTarget on the demo validation set: end-to-end ≤ GFLOPs ratio + 0.2 = {target:.2f}; "
        f"measured {demo['needed']:.2f}: {verdict}."
    )


if __name__ == "__main__":
    main()
