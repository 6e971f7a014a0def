"""How much does deciding cost? Policy per segment ÷ one recognition segment, in time and MACs.

The paper's configuration (AdaMML §4, RGB + Audio): the policy runs a MobileNetV2 on the RGB
segment subsampled to 4x160² and one on the 256x256 audio spectrogram (1280-d features each),
then the joint MLP (2 x 2048), the LSTM (256) and 2 heads; the recognition network runs a TSN
ResNet-50 on 8x224² RGB frames (and a MobileNetV2 on the audio). The paper reports 0.76 GFLOPs
for the policy and 14.52 GFLOPs for recognition, per segment.

Every ratio is measured in this one run (a warm-up round, then the best of several round-robin
repeats), batch 1, as a stream is decided segment by segment. MACs are measured with torch's
flop counter and printed as the paper's "GFLOPs" (1 GFLOP = 1e9 MACs).

    python benchmarks/bench_policy.py [--device cpu|cuda] [--repeats 5]
"""

from __future__ import annotations

import argparse
import functools

import torch
from _timing import best_times
from torch import Tensor, nn

from adagate.backbones import mobilenet_v2, tsn_resnet50
from adagate.flops import count_macs
from adagate.policy import MultiModalPolicy, PolicyState


class PolicyStep(nn.Module):
    """One streaming step of the policy network on ready-made features (what count_macs sees)."""

    def __init__(self, policy: MultiModalPolicy) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, rgb: Tensor, audio: Tensor, state: PolicyState) -> Tensor:
        return self.policy.step({"rgb": rgb, "audio": audio}, state).decisions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)

    policy = MultiModalPolicy({"rgb": 1280, "audio": 1280}, hidden_size=256)
    state = PolicyState(torch.zeros(1, 256), torch.zeros(1, 256), torch.ones(1, 2))
    features = (torch.randn(1, 1280), torch.randn(1, 1280), state)
    policy_rgb = torch.randn(1, 4, 3, 160, 160)
    audio = torch.randn(1, 1, 256, 256)
    recognition_rgb = torch.randn(1, 8, 3, 224, 224)

    rows = [
        (
            "policy network (MLP 2x2048, LSTM 256, 2 heads)",
            "2 x 1280-d",
            PolicyStep(policy),
            features,
        ),
        (
            "policy features: MobileNetV2 (RGB)",
            "4x160²",
            mobilenet_v2(in_channels=3, num_classes=None),
            (policy_rgb,),
        ),
        (
            "policy features: MobileNetV2 (audio)",
            "256²",
            mobilenet_v2(in_channels=1, num_classes=None),
            (audio,),
        ),
        (
            "recognition: TSN ResNet-50 (RGB)",
            "8x224²",
            tsn_resnet50(num_classes=None),
            (recognition_rgb,),
        ),
        (
            "recognition: MobileNetV2 (audio)",
            "256²",
            mobilenet_v2(in_channels=1, num_classes=None),
            (audio,),
        ),
    ]
    calls, macs = [], []
    for _, _, module, inputs in rows:
        module = module.to(device).eval()
        inputs = tuple(
            x.to(device) if isinstance(x, Tensor) else PolicyState(*(t.to(device) for t in x))
            for x in inputs
        )
        macs.append(count_macs(module, *inputs))
        calls.append(functools.partial(module, *inputs))
    # Round-robin repeats, best of each: a busy machine slows every row alike, not the last.
    with torch.inference_mode():
        seconds = best_times(calls, args.repeats)
    measured = [
        (name, shape, count, best)
        for (name, shape, _, _), count, best in zip(rows, macs, seconds, strict=True)
    ]
    totals = [
        ("**policy total** (RGB + audio)", "", measured[:3]),
        ("**recognition total** (RGB + audio)", "", measured[3:]),
    ]
    for name, shape, parts in totals:
        measured.append((name, shape, sum(p[2] for p in parts), sum(p[3] for p in parts)))

    _, _, base_macs, base_seconds = measured[3]
    print(
        f"Per segment, batch 1, {device.type}, {torch.get_num_threads()} threads; "
        "ratios vs one TSN ResNet-50 RGB segment; totals are sums of the rows above."
    )
    print()
    print("| module | input | GFLOPs (1e9 MACs) | MAC ratio | time ratio |")
    print("|---|---|---:|---:|---:|")
    for name, shape, row_macs, row_seconds in measured:
        print(
            f"| {name} | {shape} | {row_macs / 1e9:.3f} | {row_macs / base_macs:.4f} "
            f"| {row_seconds / base_seconds:.4f} |"
        )


if __name__ == "__main__":
    main()
