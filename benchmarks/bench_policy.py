"""How much does deciding cost? Policy per segment ÷ one recognition segment, in time and MACs.

The paper's configuration (AdaMML §4, RGB + Audio): the policy runs a MobileNetV2 on the RGB
segment subsampled to 4x160² and one on the 256x256 audio spectrogram (1280-d features each),
then the joint MLP (2 x 2048), the LSTM (256) and 2 heads; the recognition network runs a TSN
ResNet-50 on 8x224² RGB frames and a MobileNetV2 on the audio. The paper reports 0.76 GFLOPs
for the policy and 14.52 GFLOPs for recognition, per segment.

The policy's audio MobileNetV2 is the audio recogniser's network on the same input, so the
presets share it (``Preset.shared_policy_features``): the policy reads the recogniser's pooled
features, the recogniser runs on every segment (counted once, under recognition), and the
policy pays nothing more for audio. The first table counts exactly that; its last line is the
ratio the issue targets (policy total ÷ one TSN ResNet-50 RGB segment ≤ 0.08), for the
paper's MobileNetV2 RGB extractor and for the plain ConvNet one (``Preset.policy_extractor =
"conv"``). The second table times the preset's RGB extractors against that ConvNet at the
demo's and the paper's sizes, one segment and a batch of segments, and the demo's own audio
extractor against its audio recogniser (what sharing removes vs what it adds).

Times: a warm-up round, then the median of ``--repeats`` interleaved rounds (spread of the
per-round ratios in brackets), batch 1 as a stream is decided segment by segment, networks as
built (eval, NCHW). MACs are measured with torch's flop counter and printed as the paper's
"GFLOPs" (1 GFLOP = 1e9 MACs).

    python benchmarks/bench_policy.py [--device cpu|cuda] [--threads 2] [--repeats 5]
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from _timing import TimeStats, interleaved_times, ratio_text, sync_for, total_times
from torch import Tensor, nn

from adagate.backbones import PlainConvNet, mobilenet_v2, tsn_resnet50
from adagate.flops import count_macs
from adagate.policy import MultiModalPolicy, PolicyState

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "adamml"))
import data as adamml_data
import model as adamml_model

BATCH = 16  # segments in the batched columns of the second table


class PolicyStep(nn.Module):
    """One streaming step of the policy network on ready-made features (what count_macs sees)."""

    def __init__(self, policy: MultiModalPolicy) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, rgb: Tensor, audio: Tensor, state: PolicyState) -> Tensor:
        return self.policy.step({"rgb": rgb, "audio": audio}, state).decisions


class Pooled(nn.Module):
    """The demo's own audio extractor: average-pool the spectrogram, then the network."""

    def __init__(self, net: nn.Module, pool: int) -> None:
        super().__init__()
        self.net, self.pool = net, pool

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.net(F.avg_pool2d(x, self.pool))
        return out


Row = tuple[str, str, nn.Module, tuple[object, ...]]


def measure(
    rows: list[Row], device: torch.device, repeats: int
) -> tuple[dict[str, int], dict[str, TimeStats]]:
    """MACs of each row's first input row, and interleaved times of each row's call."""
    macs, calls = {}, {}
    for name, _, module, inputs in rows:
        module = module.to(device).eval()
        moved = tuple(_to(x, device) for x in inputs)
        first = tuple(x[:1] if isinstance(x, Tensor) else x for x in moved)
        macs[name] = count_macs(module, *first)
        calls[name] = functools.partial(module, *moved)
    with torch.inference_mode():
        times = interleaved_times(calls, repeats, warmup=1, sync=sync_for(device))
    return macs, times


def _to(x: object, device: torch.device) -> object:
    if isinstance(x, Tensor):
        return x.to(device)
    if isinstance(x, PolicyState):
        return PolicyState(*(t.to(device) for t in x))
    return x


def policy_table(device: torch.device, repeats: int) -> None:
    """Paper sizes, batch 1: every part of the policy and of recognition, and the totals."""
    preset = adamml_model.PRESETS["paper"]
    config = adamml_data.DataConfig.paper()
    rgb_clip = torch.randn(1, config.policy_frames, 3, config.policy_size, config.policy_size)
    audio = torch.randn(1, 1, config.n_freq, config.n_time)
    frames = torch.randn(1, config.frames_per_segment, 3, config.crop_size, config.crop_size)
    conv = PlainConvNet(3, preset.policy_conv_widths)
    hidden = preset.policy_hidden
    state = PolicyState(torch.zeros(1, hidden), torch.zeros(1, hidden), torch.ones(1, 2))

    def policy_network(rgb_dim: int) -> Row:
        net = MultiModalPolicy({"rgb": rgb_dim, "audio": 1280}, hidden, preset.policy_mlp)
        step = PolicyStep(net)
        return (f"policy network (MLP, LSTM, 2 heads) on {rgb_dim}-d RGB features",
                f"{rgb_dim} + 1280-d", step,
                (torch.randn(1, rgb_dim), torch.randn(1, 1280), state))  # fmt: skip

    widths = "-".join(map(str, preset.policy_conv_widths))
    size = f"{config.policy_frames}x{config.policy_size}²"
    rows: list[Row] = [
        policy_network(1280),
        policy_network(conv.num_features),
        ("policy RGB extractor: MobileNetV2 (paper)", size,
         mobilenet_v2(3, None, width_mult=preset.policy_width), (rgb_clip,)),
        (f"policy RGB extractor: ConvNet {widths}", size, conv, (rgb_clip,)),
        ("policy audio extractor: own MobileNetV2 (not run when shared)",
         f"{config.n_freq}x{config.n_time}", mobilenet_v2(1, None), (audio,)),
        ("recognition: TSN ResNet-50 (RGB)",
         f"{config.frames_per_segment}x{config.crop_size}²", tsn_resnet50(num_classes=None),
         (frames,)),
        ("recognition: MobileNetV2 (audio; shared: every segment, features to the policy)",
         f"{config.n_freq}x{config.n_time}", mobilenet_v2(1, 31, temporal_pool=False), (audio,)),
    ]  # fmt: skip
    macs, times = measure(rows, device, repeats)
    names = [row[0] for row in rows]
    net_mbv2, net_conv, rgb_mbv2, rgb_conv, own_audio, rgb_recogniser, audio_recogniser = names
    totals = {
        "**policy total, paper preset**: MobileNetV2 RGB + policy network; audio shared (+0)": [
            rgb_mbv2, net_mbv2],
        "**policy total, ConvNet RGB extractor**: ConvNet RGB + policy network; audio shared "
        "(+0)": [rgb_conv, net_conv],
        "policy total without sharing (the paper's): MobileNetV2 RGB + own audio + network": [
            rgb_mbv2, own_audio, net_mbv2],
        "**recognition total**: TSN ResNet-50 (RGB) + MobileNetV2 (audio)": [
            rgb_recogniser, audio_recogniser],
    }  # fmt: skip
    for name, parts in totals.items():
        macs[name] = sum(macs[p] for p in parts)
        times[name] = total_times(times[p] for p in parts)
    shapes = {row[0]: row[1] for row in rows}
    base = rgb_recogniser
    print(
        f"Per segment at the paper's sizes, batch 1, {device.type}, {torch.get_num_threads()} "
        f"threads, median of {repeats} interleaved rounds (spread); ratios vs one TSN ResNet-50 "
        "RGB segment; a total is the sum of the rows it names, round by round."
    )
    print()
    print("| module | input | GFLOPs (1e9 MACs) | MAC ratio | time ratio (spread) | ms |")
    print("|---|---|---:|---:|---:|---:|")
    for name in [*names, *totals]:
        print(
            f"| {name} | {shapes.get(name, '')} | {macs[name] / 1e9:.3f} "
            f"| {macs[name] / macs[base]:.4f} | {ratio_text(times[name], times[base], '.4f')} "
            f"| {1e3 * times[name].median:.2f} |"
        )
    paper_total, conv_total = list(totals)[:2]
    print()
    print(
        "policy total ÷ one TSN ResNet-50 RGB segment, audio shared (target ≤ 0.08): "
        f"paper preset (MobileNetV2 RGB) {ratio_text(times[paper_total], times[base], '.4f')}, "
        f"ConvNet RGB extractor {ratio_text(times[conv_total], times[base], '.4f')}"
    )


def extractor_table(device: torch.device, repeats: int) -> None:
    """The presets' extractors vs the plain ConvNet, one segment and a batch of segments."""
    rows: list[tuple[str, str, str, Callable[[], nn.Module], tuple[int, ...]]] = []
    for sizes in ("demo", "paper"):
        preset = adamml_model.PRESETS[sizes]
        config = getattr(adamml_data.DataConfig, sizes)()
        clip = (config.policy_frames, 3, config.policy_size, config.policy_size)
        widths = "-".join(map(str, preset.policy_conv_widths))
        shape = f"{config.policy_frames}x{config.policy_size}²"
        rows += [
            (sizes, f"RGB: MobileNetV2 width {preset.policy_width:g}", shape,
             functools.partial(mobilenet_v2, 3, None, width_mult=preset.policy_width), clip),
            (sizes, f"RGB: ConvNet {widths}", shape,
             functools.partial(PlainConvNet, 3, preset.policy_conv_widths), clip),
        ]  # fmt: skip
    demo, config = adamml_model.PRESETS["demo"], adamml_data.DataConfig.demo()
    spectrogram = (1, config.n_freq, config.n_time)
    pool = demo.policy_audio_pool

    def own_audio() -> nn.Module:
        return Pooled(mobilenet_v2(1, None, width_mult=demo.policy_width), pool)

    rows += [
        ("demo", f"audio: own MobileNetV2 width {demo.policy_width:g} (what sharing removes)",
         f"{config.n_freq}x{config.n_time}, pooled {pool}x", own_audio, spectrogram),
        ("demo", f"audio: recogniser MobileNetV2 width {demo.audio_width:g} (what sharing runs "
         "on unselected segments)", f"{config.n_freq}x{config.n_time}",
         functools.partial(mobilenet_v2, 1, 31, width_mult=demo.audio_width,
                           temporal_pool=False), spectrogram),
    ]  # fmt: skip
    stats: dict[int, dict[str, TimeStats]] = {}
    macs: dict[str, int] = {}
    for batch in (1, BATCH):
        measured = [
            (f"{sizes} {name}", shape, build(), (torch.randn(batch, *one),))
            for sizes, name, shape, build, one in rows
        ]
        macs, stats[batch] = measure(measured, device, repeats)
    print(
        f"Policy extractors, {device.type}, {torch.get_num_threads()} threads, median of "
        f"{repeats} interleaved rounds; ms per call for 1 and {BATCH} segments; time ratios "
        "(spread) vs the first row of each pair: the preset's MobileNetV2, or for audio the "
        "own extractor."
    )
    print()
    print(
        f"| sizes | extractor | input per segment | GFLOPs (1e9 MACs) | ms, 1 | ms, {BATCH} "
        f"| time ratio, 1 | time ratio, {BATCH} |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|")
    keys = list(macs)
    for index, (sizes, name, shape, _, _) in enumerate(rows):
        key = keys[index]
        base = keys[index - 1] if index % 2 else key
        ratios = [ratio_text(stats[b][key], stats[b][base]) for b in (1, BATCH)]
        print(
            f"| {sizes} | {name} | {shape} | {macs[key] / 1e9:.4f} "
            f"| {1e3 * stats[1][key].median:.2f} | {1e3 * stats[BATCH][key].median:.2f} "
            f"| {ratios[0]} | {ratios[1]} |"
        )
    own, recogniser = keys[-2:]
    # Sharing saves the own extractor on every segment and runs the recogniser on the segments
    # where audio was not selected: it pays above this selection rate.
    breakeven = [
        max(0.0, 1 - stats[b][own].median / stats[b][recogniser].median) for b in (1, BATCH)
    ]
    print()
    print(
        "demo: sharing the audio recogniser is cheaper in time when audio is selected on more "
        f"than {breakeven[0]:.0%} (batch 1) / {breakeven[1]:.0%} (batch {BATCH}) of the segments"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    policy_table(device, args.repeats)
    print()
    extractor_table(device, args.repeats)


if __name__ == "__main__":
    main()
