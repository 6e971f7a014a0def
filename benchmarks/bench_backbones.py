"""Backbone cost: TSN temporal pooling's saving in wall time next to its saving in MACs.

Default: time the TSN ResNet-50 on one segment of 8 frames against the plain 2D ResNet-50 on the
same 8 frames (a warm-up round, then the median of ``--repeats`` interleaved rounds), stage by
stage and whole, and print the time ratios (with the spread of the per-round ratios) next to the
MAC ratios, with each stage's share of the 2D network's MACs and time.
``--macs``: print the per-segment MACs of every AdaMML network next to the paper's figures.

    python benchmarks/bench_backbones.py --threads 1   # time ratios vs MAC ratios
    python benchmarks/bench_backbones.py --macs        # the compute table of docs/backbones.md

MACs are reported as "GFLOPs" the way the AdaMML paper does (1 GFLOP = 1e9 MACs).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from functools import partial

import torch
from _timing import interleaved_times, ratio_text
from torch import nn

from adagate.backbones import mobilenet_v2, tsn_resnet18, tsn_resnet50
from adagate.flops import count_macs
from adagate.policy import MultiModalPolicy


def gmacs(module: nn.Module, *inputs: object) -> float:
    return count_macs(module.eval(), *inputs) / 1e9


def macs_table() -> str:
    rgb = gmacs(tsn_resnet50(3, num_classes=31), torch.zeros(1, 8, 3, 224, 224))
    flow = gmacs(tsn_resnet50(10, num_classes=31), torch.zeros(1, 8, 10, 224, 224))
    rgb18 = gmacs(tsn_resnet18(3, num_classes=31), torch.zeros(1, 8, 3, 224, 224))
    audio = gmacs(mobilenet_v2(1, num_classes=31), torch.zeros(1, 1, 256, 256))
    policy_rgb = gmacs(mobilenet_v2(3, num_classes=None), torch.zeros(1, 4, 3, 160, 160))
    policy_audio = gmacs(mobilenet_v2(1, num_classes=None), torch.zeros(1, 1, 256, 256))
    policy = MultiModalPolicy({"rgb": 1280, "audio": 1280})
    joint = gmacs(policy, {"rgb": torch.zeros(1, 1, 1280), "audio": torch.zeros(1, 1, 1280)})
    # Paper figures per segment: Table 1/2 over 10 test segments, §4 for the policy and the
    # RGB + audio recognition total.
    rows = [
        ("TSN ResNet-50, RGB", "8 × 3 × 224²", rgb, 14.136),
        ("TSN ResNet-50, flow", "8 × 10 × 224²", flow, 16.339),
        ("TSN ResNet-18, RGB", "8 × 3 × 224²", rgb18, None),
        ("MobileNetV2, audio", "1 × 1 × 256²", audio, 0.382),
        ("recognition, RGB + audio", "—", rgb + audio, 14.52),
        ("policy, RGB MobileNetV2", "4 × 3 × 160²", policy_rgb, 0.375),
        ("policy, audio MobileNetV2", "1 × 1 × 256²", policy_audio, None),
        ("policy, MLP + LSTM + heads", "2 × 1280 features", joint, None),
        ("policy total, RGB + audio", "—", policy_rgb + policy_audio + joint, 0.76),
    ]
    lines = [
        "| network | input per segment | ours (GFLOPs) | paper (GFLOPs) | difference |",
        "|---|---|---:|---:|---:|",
    ]
    for name, shape, ours, paper in rows:
        diff = "—" if paper is None else f"{100 * (ours / paper - 1):+.2f}%"
        paper_text = "—" if paper is None else f"{paper:.3f}"
        lines.append(f"| {name} | {shape} | {ours:.4f} | {paper_text} | {diff} |")
    return "\n".join(lines)


def time_table(repeats: int, channels_last: bool) -> str:
    memory_format = torch.channels_last if channels_last else torch.contiguous_format
    net = tsn_resnet50(num_classes=None).eval().to(memory_format=memory_format)
    plain = tsn_resnet50(num_classes=None, temporal_pool=False).eval()
    plain.load_state_dict(net.state_dict())
    plain = plain.to(memory_format=memory_format)
    frames = torch.randn(8, 3, 224, 224).contiguous(memory_format=memory_format)
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1)
    # (part, module, frames it sees in the TSN network); the 2D network runs every part on 8.
    parts = [
        ("stem + stage 1", stem, 8),
        ("stage 2", net.layer2, 4),
        ("stage 3", net.layer3, 2),
        ("stage 4", net.layer4, 1),
    ]
    rows = []
    # Every part of both networks in one interleaved run: drifting load hits all alike.
    calls: dict[str, Callable[[], object]] = {}
    x = frames
    with torch.inference_mode():
        for name, module, tsn_frames in parts:
            tsn_x = x[:tsn_frames]
            calls[f"{name}/tsn"] = partial(module, tsn_x)
            calls[f"{name}/2d"] = partial(module, x)
            rows.append(
                (name, f"{tsn_frames} / 8", count_macs(module, tsn_x), count_macs(module, x))
            )
            x = module(x)
        name, segment = "**whole network**", frames.unsqueeze(0)
        calls[f"{name}/tsn"] = partial(net, segment)
        calls[f"{name}/2d"] = partial(plain, frames)
        rows.append((name, "8→1 / 8", count_macs(net, segment), count_macs(plain, frames)))
        stats = interleaved_times(calls, repeats)
    plain_macs, plain_time = rows[-1][3], stats[f"{name}/2d"]
    lines = [
        f"TSN ResNet-50 on one segment of 8 frames vs the 2D ResNet-50 on the same 8 frames, "
        f"224², threads: {torch.get_num_threads()}, channels_last: {channels_last}, "
        f"median of {repeats} interleaved rounds, time ratios with their spread in brackets",
        "",
        "| part | frames TSN / 2D | GFLOPs TSN | GFLOPs 2D | MAC ratio TSN / 2D "
        "| time ratio TSN / 2D | share of 2D MACs | share of 2D time |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, frames_text, tsn_m, plain_m in rows:
        tsn_s, plain_s = stats[f"{name}/tsn"], stats[f"{name}/2d"]
        lines.append(
            f"| {name} | {frames_text} | {tsn_m / 1e9:.3f} | {plain_m / 1e9:.3f} "
            f"| {tsn_m / plain_m:.3f} | {ratio_text(tsn_s, plain_s)} "
            f"| {plain_m / plain_macs:.1%} | {ratio_text(plain_s, plain_time, '.1%')} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--macs", action="store_true", help="print the MAC table instead")
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds per network")
    parser.add_argument("--channels-last", action="store_true", help="NHWC activations")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(macs_table() if args.macs else time_table(args.repeats, args.channels_last))


if __name__ == "__main__":
    main()
