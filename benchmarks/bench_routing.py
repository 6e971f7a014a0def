"""Wall time of `run_selected` vs the dense call, for a TSN ResNet-18 over N segments.

The AdaMML reference code runs every modality on every segment and multiplies the skipped ones
by zero; `run_selected` runs the backbone on the selected segments only. If routing is free,
routed time ÷ dense time equals the selected fraction; the last column is that quotient divided
by the fraction (1.00 = the saving is exactly proportional; target ≤ 1.05). Inference (eval
mode, no grad), variants interleaved in one run; times are medians over the rounds, and each
ratio is printed with its spread (max - min of the per-round ratios). The 0% row is the no-row
path once its output shape is cached (no compute at all); the 100% row the all-rows path (the
plain call plus finding the rows).

    python benchmarks/bench_routing.py [--device cpu|cuda] [--threads N] [--segments 32]
"""

from __future__ import annotations

import argparse
import platform
from collections.abc import Callable
from functools import partial

import torch
from _timing import interleaved_times, sync_for, time_ratio

from adagate.backbones.resnet import tsn_resnet18
from adagate.routing import run_selected


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--segments", type=int, default=32)
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds")
    parser.add_argument("--plot", help="also save routed ÷ dense time by fraction as this PNG")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    generator = torch.Generator().manual_seed(0)
    net = tsn_resnet18(num_classes=400).to(device).eval()
    x = torch.randn(args.segments, 3, args.size, args.size, generator=generator).to(device)
    order = torch.randperm(args.segments, generator=generator)

    def mask_of(fraction: float) -> torch.Tensor:
        mask = torch.zeros(args.segments, dtype=torch.bool)
        mask[order[: round(fraction * args.segments)]] = True
        return mask.to(device)

    fractions = (0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0)
    calls: dict[str, Callable[[], object]] = {"dense": lambda: net(x)}
    for fraction in fractions:
        calls[f"{fraction}"] = partial(run_selected, net, x, mask_of(fraction))
    with torch.no_grad():
        stats = interleaved_times(calls, args.repeats, sync=sync_for(device))

    print(
        f"device: {device}, torch {torch.__version__}, {args.threads} thread(s), "
        f"{platform.processor() or platform.machine()}; TSN ResNet-18, "
        f"{args.segments} segments of 3×{args.size}×{args.size}, inference, "
        f"median of {args.repeats} interleaved rounds, ratio (spread)"
    )
    print()
    print("| selected | routed (ms) | dense (ms) | routed ÷ dense | ÷ selected fraction |")
    print("|---:|---:|---:|---:|---:|")
    dense = stats["dense"]
    ratios = []
    for fraction in fractions:
        routed = stats[f"{fraction}"]
        ratio, spread = time_ratio(routed, dense)
        ratios.append(ratio)
        per_fraction = f"{ratio / fraction:.3f} ({spread / fraction:.3f})" if fraction > 0 else "—"
        print(
            f"| {fraction:.0%} | {routed.median * 1e3:.1f} | {dense.median * 1e3:.1f} | "
            f"{ratio:.3f} ({spread:.3f}) | {per_fraction} |"
        )
    if args.plot:
        save_plot(args.plot, fractions, ratios)


def save_plot(path: str, fractions: tuple[float, ...], ratios: list[float]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(4.5, 3.2), dpi=120)
    axes.plot([0, 1], [0, 1], "--", color="grey", label="proportional (ideal)")
    axes.plot(fractions, ratios, "o-", label="run_selected")
    axes.set_xlabel("fraction of segments selected")
    axes.set_ylabel("routed time ÷ dense time")
    axes.legend()
    axes.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path)


if __name__ == "__main__":
    main()
