"""Where AdaMML's time goes, next to where its MACs go, before and after optimize_for_inference.

For the demo sizes (the example's ``demo`` preset: a batch of 8 videos × 10 segments, as
``examples/adamml/evaluate.py`` runs it) and the paper's sizes (``paper`` preset: one segment,
batch 1, as a stream is decided), each part of one all-modality forward pass — the policy's
two MobileNetV2 feature extractors, its MLP + LSTM + heads, the TSN ResNet's stem + stage 1,
stages 2, 3 and 4 (+ head), and the audio MobileNetV2 — is timed on the input it receives in
that pass. "As built" is the model in eval mode and NCHW; "optimised" is
``adagate.optimize_for_inference(model, (batch,))``: BatchNorm folded into the convolutions,
memory layout measured per network. All parts, both versions, are interleaved in one run
(a warm-up round, then the median of ``--repeats`` rounds), so the shares and ratios are
comparable; each is printed with its spread in brackets (max - min over the rounds), absolute
times are not. The ratio that matters is the last row of each size: policy time ÷
recognition time, next to the MAC ratio (issue target at the paper's sizes: ≤ 0.08).

    python benchmarks/bench_inference.py --threads 1 [--sizes demo paper] [--repeats 5]

MACs are measured with torch's flop counter and printed as the paper's GFLOPs (1e9 MACs).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from _timing import TimeStats, interleaved_times, ratio_text, total_times
from torch import Tensor

from adagate.backbones._temporal import average_frames, temporal_max_pool
from adagate.backbones.resnet import TSNResNet
from adagate.flops import count_macs
from adagate.inference import optimize_for_inference

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "adamml"))
import data as adamml_data
import model as adamml_model

# (preset, videos per batch, segments per video): the demo as evaluate.py batches it, the paper
# as one streamed segment.
SIZES = {"demo": (8, 10), "paper": (1, 1)}

Part = tuple[str, str, Callable[[], Any], int]


class _Callable(torch.nn.Module):
    """A part of a network as a module, so that count_macs can measure it."""

    def __init__(self, function: Callable[[Tensor], Tensor]) -> None:
        super().__init__()
        self.function = function

    def forward(self, x: Tensor) -> Tensor:
        return self.function(x)


def _part(name: str, shape: str, function: Callable[[Tensor], Tensor], x: Tensor) -> Part:
    return name, shape, lambda: function(x), count_macs(_Callable(function), x)


def _layout(net: TSNResNet) -> torch.memory_format:
    cl = net.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    return torch.channels_last if cl else torch.contiguous_format


def resnet_parts(net: TSNResNet, x: Tensor) -> list[Part]:
    """Stem + stage 1, stages 2 and 3, stage 4 + head of a TSN ResNet on ``x: (N, F, C, H, W)``."""
    frames = x.shape[1]
    x = x.flatten(0, 1).contiguous(memory_format=_layout(net))

    def stem(x: Tensor) -> Tensor:
        return net.layer1(net.maxpool(net.relu(net.bn1(net.conv1(x)))))

    def stage(layer: torch.nn.Module, frames: int) -> Callable[[Tensor], Tensor]:
        return lambda x: layer(temporal_max_pool(x, frames)[0])

    def head(x: Tensor) -> Tensor:
        x, left = temporal_max_pool(x, frames // 4)
        out: Tensor = net.fc(average_frames(net.avgpool(net.layer4(x)).flatten(1), left))
        return out

    size = f"{frames}×{x.shape[-1]}²"
    parts = []
    for name, function in (
        ("ResNet stem + stage 1", stem),
        ("ResNet stage 2", stage(net.layer2, frames)),
        ("ResNet stage 3", stage(net.layer3, frames // 2)),
        ("ResNet stage 4 + head", head),
    ):
        parts.append(_part(name, size, function, x))
        with torch.inference_mode():
            x = function(x)
    return parts


def model_parts(model: Any, batch: dict[str, Tensor]) -> list[Part]:
    """Every part of one all-modality forward pass of an AdaMML model, policy first."""
    parts = []
    for m, extractor in model.policy_features.items():
        x = batch[adamml_model.MODALITIES[m].policy_key]
        rows = x.flatten(0, 1)
        size = "×".join(str(s) for s in x.shape[2:])
        parts.append(_part(f"policy: {m} extractor", size, extractor, rows))
    with torch.inference_mode():
        # A shared modality's policy features are its recogniser's (timed with the recognisers).
        features = model.features(batch)
    policy = model.policy
    macs = count_macs(policy, features)
    parts.append(("policy: MLP + LSTM + heads", "features", lambda: policy(features), macs))
    for m, recogniser in model.recognisers.items():
        x = batch[m].flatten(0, 1)
        if isinstance(recogniser, TSNResNet):
            parts += resnet_parts(recogniser, x)
        else:
            size = "×".join(str(s) for s in x.shape[1:])
            parts.append(_part(f"{m}: MobileNetV2", size, recogniser, x))
    return parts


def size_rows(name: str, repeats: int) -> list[str]:
    preset = adamml_model.PRESETS[name]
    videos, segments = SIZES[name]
    config = getattr(adamml_data.DataConfig, name)(**preset.data)
    torch.manual_seed(0)
    built = adamml_model.AdaMML(("rgb", "audio"), 31, preset).eval()
    shapes = adamml_model.example_batch(config, ("rgb", "audio"), segments)
    batch = {key: torch.randn(videos, *value.shape[1:]) for key, value in shapes.items()}
    optimised = optimize_for_inference(built, (batch,))
    before, after = model_parts(built, batch), model_parts(optimised, batch)
    # Keyed by position: two recognisers of one kind would give two parts the same name.
    calls = {str(i): part[2] for i, part in enumerate(before + after)}
    with torch.inference_mode():
        seconds = list(interleaved_times(calls, repeats).values())
    before_s, after_s = seconds[: len(before)], seconds[len(before) :]
    macs = [p[3] for p in before]
    total_macs, total_before, total_after = sum(macs), total_times(before_s), total_times(after_s)
    per_segment = 1e9 * videos * segments
    rows = []
    for (part, shape, _, count), b, a in zip(before, before_s, after_s, strict=True):
        rows.append(
            f"| {name} | {part} | {shape} | {count / per_segment:.4f} | {count / total_macs:.1%} "
            f"| {ratio_text(b, total_before, '.1%')} | {ratio_text(a, total_after, '.1%')} "
            f"| {ratio_text(a, b, '.2f')} |"
        )
    policy = [i for i, p in enumerate(before) if p[0].startswith("policy")]
    recognition = [i for i in range(len(before)) if i not in policy]

    def time_ratio_text(seconds: list[TimeStats]) -> str:
        policy_s = total_times(seconds[i] for i in policy)
        recognition_s = total_times(seconds[i] for i in recognition)
        return ratio_text(policy_s, recognition_s, ".4f")

    mac_ratio = sum(macs[i] for i in policy) / sum(macs[i] for i in recognition)
    rows.append(
        f"| {name} | **all parts** | {videos}×{segments} segments | {total_macs / per_segment:.4f} "
        f"| 100% | 100% | 100% | {ratio_text(total_after, total_before, '.2f')} |"
    )
    rows.append(
        f"| {name} | **policy ÷ recognition** | | MAC ratio {mac_ratio:.4f} | "
        f"| time ratio {time_ratio_text(before_s)} | time ratio {time_ratio_text(after_s)} | |"
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", choices=list(SIZES), default=list(SIZES))
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds (median of)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    print(
        f"cpu, {torch.get_num_threads()} thread(s), median of {args.repeats} interleaved rounds, "
        "spread of the per-round ratios in brackets; shares of one "
        "all-modality forward pass (RGB + audio, policy included); as built: eval, NCHW; "
        "optimised: optimize_for_inference (BatchNorm folded, layout measured per network)"
    )
    print()
    print(
        "| sizes | part | input per segment | GFLOPs per segment | MAC share "
        "| time share, as built | time share, optimised | time optimised ÷ as built |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for name in args.sizes:
        for row in size_rows(name, args.repeats):
            print(row)


if __name__ == "__main__":
    main()
