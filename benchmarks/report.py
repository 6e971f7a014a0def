"""Run every benchmark and write docs/benchmarks.md from what they print.

Each table on that page is the verbatim output of the command shown above it, run by this
script on the machine and date it records; rerun it to refresh the page:

    python benchmarks/report.py [--out docs/benchmarks.md] [--only gates routing ...]

With ``--only``, the sections of the benchmarks not named are kept from the existing page as
they were, with the date they were run.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]

# (name, arguments, what the table shows)
BENCHMARKS = [
    ("gates", ["--threads", "1"],
     "Forward + backward of `gumbel_sigmoid` vs `torch.nn.functional.gumbel_softmax(hard=True)` "
     "on two classes (issue target: ≥ 6× at 65k gates on CPU, never slower at 1k)."),
    ("routing", ["--threads", "1", "--plot", "docs/img/routing.png"],
     "`run_selected` vs the dense call on a TSN ResNet-18 over 32 segments: routed ÷ dense ÷ "
     "selected fraction (target ≤ 1.05)."),
    ("backbones", ["--macs"],
     "Per-segment MACs of the AdaMML networks next to the paper's figures."),
    ("backbones", ["--threads", "1"],
     "TSN temporal pooling: wall-time ratio vs MAC ratio against the 2D ResNet-50 on 8 frames."),
    ("policy", [],
     "What deciding costs: policy per segment ÷ one recognition segment, in time and MACs."),
    ("inference", ["--threads", "1"],
     "Where the time goes vs where the MACs go, per part of one all-modality AdaMML pass, at the "
     "demo's and the paper's sizes, before and after `adagate.optimize_for_inference` (issue "
     "target at the paper's sizes: policy time ÷ recognition time ≤ 0.08)."),
    ("data", [],
     "Data pipeline: DataLoader throughput on the demo set, and seeking vs decoding a whole "
     "60 s 720p video (target ≤ 0.3)."),
    ("predict", ["--videos", "24"],
     "End to end with decoding, the trained demo run through `examples/adamml/predict.py`, a "
     "window at a time (decode, policy over the window, routed recognisers): AdaMML ÷ "
     "all-modality (target on the demo validation set: AdaMML no slower than all-modality)."),
    ("seeds", [],
     "The AdaMML demo's default command on demo sets generated with three data seeds (seed 0 "
     "is the default command's own run): accuracy, GFLOPs ratio and informative picks per "
     "seed, and the mean. Runs already under `examples/adamml/runs/seeds` are read, not "
     "repeated: the time in brackets is this page's, each run's own is in the last line."),
]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return (
        f"{os.cpu_count()} CPU cores ({cpu}), {device}, Python {platform.python_version()}, "
        f"torch {torch.__version__}"
    )


def previous_sections(page: Path) -> dict[str, str]:
    """The body of each ``## `command` `` section of an existing page, keyed by its heading."""
    if not page.is_file():
        return {}
    bodies: dict[str, str] = {}
    heading = None
    for line in page.read_text().splitlines(keepends=True):
        if line.startswith("## "):
            heading = line if line.startswith("## `") else None
            if heading is not None:
                bodies[heading] = ""
        elif heading is not None:
            bodies[heading] += line
    return {key: body.strip("\n") + "\n" for key, body in bodies.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "benchmarks.md"))
    parser.add_argument("--only", nargs="*", help="benchmark names to run (default: all)")
    args = parser.parse_args()

    today = datetime.date.today().isoformat()
    kept = previous_sections(Path(args.out)) if args.only else {}
    sections = [
        "# Benchmarks\n",
        "Every table below is the output of the command above it, run by "
        "`python benchmarks/report.py`, which wrote this page "
        f"on {today} on this machine: {machine()}. Performance figures are ratios measured "
        "within one run (a warm-up, then the median of interleaved rounds, with the spread of "
        "the per-round ratios in brackets), never absolute times compared across runs. "
        "Cost figures are MACs reported as the paper's GFLOPs (1 GFLOP = 1e9 MACs).\n",
    ]
    for name, extra, what in BENCHMARKS:
        command = ["python", f"benchmarks/bench_{name}.py", *extra]
        if args.only and name not in args.only:
            heading = f"## `{shlex.join(command)}`\n"
            if heading in kept:
                sections += [heading, kept[heading]]
            continue
        print("running:", shlex.join(command), file=sys.stderr, flush=True)
        start = time.perf_counter()
        result = subprocess.run(
            [sys.executable, *command[1:]], cwd=ROOT, capture_output=True, text=True, check=True
        )
        seconds = time.perf_counter() - start
        sections += [
            f"## `{shlex.join(command)}`\n",
            f"{what} ({seconds:.0f} s, run on {today})\n",
            result.stdout.strip() + "\n",
        ]
        if "--plot" in extra:
            image = extra[extra.index("--plot") + 1].removeprefix("docs/")
            sections.append(f"![{name}]({image})\n")
    sections += [
        "## Accuracy against compute: the AdaMML example\n",
        "From `python examples/adamml/train.py` (the default demo run; its table and the "
        "machine it ran on are on [the example's page](example.md#results-on-the-demo-set)):\n",
        "![accuracy vs GFLOPs](img/adamml_demo_accuracy_vs_gflops.png)\n",
    ]
    Path(args.out).write_text("\n".join(sections))
    print(f"wrote {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
