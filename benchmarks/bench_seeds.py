"""The AdaMML demo across data seeds: the default training command on demo sets generated with
``make_dataset.py --seed S``, one table row per seed and model, the mean, and AdaMML's gap to the
all-modality model per seed with its mean and spread.

    python benchmarks/bench_seeds.py [--seeds 0 1 2] [--work DIR] [-- extra train.py flags]

Each seed generates its own demo set and trains AdaMML with its baselines exactly as
``python examples/adamml/train.py`` does (the default command's time per seed, see its stage
time table); the table is what each run's ``report.json`` holds. Seed 0 is the default
command's data set.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "adamml"))

import make_dataset  # noqa: E402
import train  # noqa: E402

ROWS = ("AdaMML", "AdaMML, no LSTM", "All modalities")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    runs = ROOT / "examples" / "adamml" / "runs"
    parser.add_argument("--work", type=Path, default=runs / "seeds")
    parser.add_argument("extra", nargs="*", help="flags passed on to train.py (after --)")
    args = parser.parse_args(argv)
    reports = {}
    for seed in args.seeds:
        root = args.work / f"data{seed}"
        if not (root / "train.txt").exists():
            make_dataset.make_dataset(make_dataset.DemoSpec(seed=seed), root, workers=2)
        out = args.work / f"run{seed}"
        report = out / "report.json"
        if not report.exists():
            train.main(["--data-root", str(root), "--out", str(out), *args.extra])
        reports[seed] = json.loads(report.read_text())
    print("| data seed | method | Acc. (%) | GFLOPs vs all | informative picked (%) |")
    print("|---|---|---:|---:|---:|")
    for name in ROWS:
        values = []
        for seed, report in reports.items():
            row = report["rows"][name]
            values.append(row)
            print(f"| {seed} | {name} | {100 * row['top1']:.1f} | {row['gflops_vs_all']:.2f} | "
                  f"{100 * (row['informative_picked'] or 0):.1f} |")  # fmt: skip
        mean = {k: statistics.mean(r[k] or 0 for r in values)
                for k in ("top1", "gflops_vs_all", "informative_picked")}  # fmt: skip
        print(f"| mean | {name} | {100 * mean['top1']:.1f} | {mean['gflops_vs_all']:.2f} | "
              f"{100 * mean['informative_picked']:.1f} |")  # fmt: skip
    gaps = [100 * (r["rows"]["AdaMML"]["top1"] - r["rows"]["All modalities"]["top1"])
            for r in reports.values()]  # fmt: skip
    costs = [r["rows"]["AdaMML"]["gflops_vs_all"] for r in reports.values()]
    print(f"\nAdaMML − all modalities per seed: {', '.join(f'{g:+.1f}' for g in gaps)} points; "
          f"mean {statistics.mean(gaps):+.1f}, spread (max − min) {max(gaps) - min(gaps):.1f}; "
          f"AdaMML's GFLOPs vs all: {', '.join(f'{c:.2f}' for c in costs)} (max {max(costs):.2f})")
    # The runs' own times (a run already on disk is read, not repeated).
    times = [sum(row["seconds"] for row in r.get("stage_times", [])) for r in reports.values()]
    print(f"Each run's time, its stage table's total: {', '.join(f'{t:.0f} s' for t in times)}.")

if __name__ == "__main__":
    main()
