"""Forward + backward time of `gumbel_sigmoid` vs `F.gumbel_softmax(hard=True)` on two classes.

Both give a straight-through binary decision per gate; adagate's draws one logistic sample per
gate instead of two Gumbels plus a softmax. Prints a markdown table of the speed-up (a ratio
measured in one run: the median of interleaved rounds, with the spread of the per-round ratios).

    python benchmarks/bench_gates.py [--device cpu|cuda] [--threads N]
"""

from __future__ import annotations

import argparse
import platform

import torch
import torch.nn.functional as F
from _timing import interleaved_times, sync_for, time_ratio

from adagate import gumbel_sigmoid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=20, help="timed rounds")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    print(f"device: {device}, torch {torch.__version__}, {args.threads} thread(s), "
          f"{platform.processor() or platform.machine()}; median of {args.repeats} interleaved "
          f"rounds (of {max(5, args.repeats // 4)} for a million gates), speed-up (spread)")
    print()
    print("| gates | F.gumbel_softmax (ms) | gumbel_sigmoid (ms) | speed-up |")
    print("|---:|---:|---:|---:|")
    for n in (1_000, 65_536, 1_048_576):
        one_logit = torch.randn(n, device=device, requires_grad=True)
        two_logits = torch.randn(n, 2, device=device, requires_grad=True)

        def ours(logits: torch.Tensor = one_logit) -> None:
            gumbel_sigmoid(logits).sum().backward()

        def torch_builtin(logits: torch.Tensor = two_logits) -> None:
            F.gumbel_softmax(logits, hard=True)[:, 1].sum().backward()

        repeats = args.repeats if n < 1_000_000 else max(5, args.repeats // 4)
        fns = {"torch": torch_builtin, "adagate": ours}
        stats = interleaved_times(fns, repeats, warmup=3, sync=sync_for(device))
        baseline, adagate = stats["torch"], stats["adagate"]
        speed_up, spread = time_ratio(baseline, adagate)
        print(f"| {n:,} | {baseline.median * 1e3:.3f} | {adagate.median * 1e3:.3f} | "
              f"{speed_up:.1f}× ({spread:.1f}) |")


if __name__ == "__main__":
    main()
