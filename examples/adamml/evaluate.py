"""Evaluate a trained AdaMML run against its baselines; write report.md, report.json and plots.

    python examples/adamml/evaluate.py --run examples/adamml/runs/demo

Decisions are deterministic (the policy's gates threshold their logits; no sampling at test
time, unlike the reference code) and every backbone runs only on the segments its modality was
selected for. Rows of the table (AdaMML §4.2-4.3):

* **AdaMML**: the learned policy, routed.
* **AdaMML, no LSTM**: the policy without its recurrent part, trained the same way.
* **All modalities**: every modality on every segment ("weighted fusion"), trained as long.
* **<modality> only**: each unimodal model alone (from pre-training).
* **Random policy**: AdaMML's recognisers with each modality selected at random at AdaMML's own
  selection rates (AdaMML Table 8, "Random (Test)").

Reported per row: top-1 accuracy (mAP for multi-label data), GFLOPs per video (MACs, 1 GFLOP =
1e9 MACs, the policy included where there is one), selection rate per modality, measured wall
time per video, and, where the data has an ``informative.json`` sidecar (the demo set), the
share of segments with an informative modality in which the decision used one.
"""

from __future__ import annotations

import os

# OpenMP threads that spin while waiting collapse when the cores are shared (a DataLoader
# worker, another process): measured 16 s vs 1.4 s per demo step on 2 busy cores. Must be set
# before torch loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import dataclasses
import json
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader
from tqdm import tqdm

from adagate.flops import ModalityCosts, expected_gflops
from adagate.fusion import masked_late_fusion

sys.path.insert(0, str(Path(__file__).resolve().parent))
import data as adamml_data
from model import PRESETS, AdaMML, all_on, example_batch, measure_costs, only


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, required=True, help="run directory written by train.py")
    p.add_argument("--val-list", type=Path, help="list to evaluate on (default: the run's)")
    p.add_argument("--test-segments", type=int, default=10, help="T at test (paper: 10)")
    p.add_argument("--batch-size", type=int, default=8, help="videos per batch")
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=1, help="DataLoader worker processes")
    p.add_argument("--timing-videos", type=int, default=24,
                   help="videos held in memory to time each row's forward pass")  # fmt: skip
    p.add_argument("--timing-repeats", type=int, default=3, help="best of this many passes")
    p.add_argument("--seed", type=int, default=0, help="seed of the random-policy baseline")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Evaluate, print the table, write ``report.md``, ``report.json`` and two PNGs in the run.

    Returns:
        The report as a dict (what ``report.json`` holds).
    """
    args = parse_args(argv)
    run = args.run
    config = json.loads((run / "config.json").read_text())
    preset = PRESETS[config["preset"]]
    modalities = tuple(config["modalities"])
    device = torch.device(args.device)
    fields = {
        k: tuple(v) if isinstance(v, list) else v for k, v in config["data_config"].items()
    }
    data_config = dataclasses.replace(
        adamml_data.DataConfig(**fields), test_segments=args.test_segments
    )
    classes = adamml_data.read_classes(config["classes"])
    dataset = adamml_data.VideoDataset(
        args.val_list or config["val_list"], config["data_root"], data_config, train=False,
        classes=classes, informative=config["informative"],
    )  # fmt: skip
    loader = DataLoader(
        dataset, batch_size=args.batch_size, num_workers=args.workers,
        collate_fn=adamml_data.collate,
    )  # fmt: skip

    def load(name: str, recurrent: bool = True) -> AdaMML | None:
        path = run / f"{name}.pt"
        if not path.exists():
            return None
        net = AdaMML(modalities, len(classes), preset, recurrent=recurrent)
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return net.to(device, memory_format=torch.channels_last).eval()

    adamml = load("adamml")
    if adamml is None:
        raise ValueError(f"--run: {run} has no adamml.pt; did training finish?")
    nolstm = load("nolstm", recurrent=False)
    allmod = load("allmod")
    # Unimodal rows: each recogniser of the all-modality model alone (trained as long as AdaMML),
    # else the unimodal pre-training's, else AdaMML's.
    unimodal = allmod or load("pretrained") or adamml
    costs = measure_costs(adamml, example_batch(data_config, modalities))

    # One pass over the data; every row is computed from the same decoded batches.
    collected: dict[str, list[Tensor]] = {}

    def keep(key: str, value: Tensor) -> None:
        collected.setdefault(key, []).append(value.detach().float().cpu())

    timing_batches: list[dict[str, Tensor]] = []
    with torch.inference_mode():
        for batch in tqdm(loader, desc="evaluate", leave=False, dynamic_ncols=True):
            inputs = {k: v.to(device) for k, v in batch.items() if isinstance(v, Tensor)}
            if sum(len(b["label"]) for b in timing_batches) < args.timing_videos:
                timing_batches.append(inputs)
            keep("label", inputs["label"])
            if "informative" in batch:
                keep("informative", torch.stack([batch["informative"][m] for m in modalities], -1))
            result = adamml(inputs, route=True)
            keep("adamml/logits", result.logits)
            keep("adamml/decisions", result.decisions)
            # Dense per-segment logits of AdaMML's recognisers, for the random-policy row.
            keep("adamml/dense", adamml.recognise(inputs, all_on(inputs, adamml), route=False))
            if nolstm is not None:
                result = nolstm(inputs, route=True)
                keep("nolstm/logits", result.logits)
                keep("nolstm/decisions", result.decisions)
            if allmod is not None:
                keep("allmod/logits", allmod(inputs, all_on(inputs, allmod), route=True).logits)
            keep("unimodal/dense", unimodal.recognise(inputs, all_on(inputs, unimodal), False))
    data = {key: torch.cat(values) for key, values in collected.items()}
    labels, informative = data["label"], data.get("informative")
    multi_label = dataset.multi_label
    ones = torch.ones_like(data["adamml/decisions"])

    rows: dict[str, dict[str, Any]] = {}

    def add(name: str, logits: Tensor, decisions: Tensor, with_policy: bool) -> None:
        rows[name] = {
            "accuracy": score(logits, labels, multi_label),
            "selection": {m: decisions[..., i].mean().item() for i, m in enumerate(modalities)},
            "gflops": video_gflops(decisions, costs, modalities, with_policy).mean().item(),
            "informative_picked": informative_picked(decisions, informative),
        }

    add("AdaMML", data["adamml/logits"], data["adamml/decisions"], True)
    if nolstm is not None:
        add("AdaMML, no LSTM", data["nolstm/logits"], data["nolstm/decisions"], True)
    if allmod is not None:
        add("All modalities", data["allmod/logits"], ones, False)
    for m in modalities:
        alone = torch.zeros_like(ones)
        alone[..., modalities.index(m)] = 1.0
        weights = unimodal.fusion.weights.detach().float().cpu()
        add(f"{m} only", fuse(data["unimodal/dense"], alone, weights), alone, False)
    rates = torch.tensor([rows["AdaMML"]["selection"][m] for m in modalities])
    generator = torch.Generator().manual_seed(args.seed)
    random_decisions = (torch.rand(ones.shape, generator=generator) < rates).float()
    weights = adamml.fusion.weights.detach().float().cpu()
    add("Random policy (AdaMML's rates)", fuse(data["adamml/dense"], random_decisions, weights),
        random_decisions, False)  # fmt: skip

    # Wall time per video, each row's own forward pass, on batches held in memory.
    def random_forward(inputs: Mapping[str, Tensor]) -> Any:
        shape = (*inputs["label"].shape[:1], data_config.test_segments, len(modalities))
        chosen = (torch.rand(shape, generator=generator) < rates).float().to(device)
        return adamml(inputs, chosen, route=True)

    forwards: dict[str, Callable[[Mapping[str, Tensor]], Any]] = {
        "AdaMML": lambda x: adamml(x, route=True),
        "Random policy (AdaMML's rates)": random_forward,
    }
    if nolstm is not None:
        forwards["AdaMML, no LSTM"] = lambda x: nolstm(x, route=True)
    if allmod is not None:
        forwards["All modalities"] = lambda x: allmod(x, all_on(x, allmod), route=True)
    for m in modalities:
        forwards[f"{m} only"] = lambda x, m=m: unimodal(x, only(x, unimodal, m), route=True)
    videos = sum(len(b["label"]) for b in timing_batches)
    best = dict.fromkeys(forwards, float("inf"))
    with torch.inference_mode():
        for _ in range(args.timing_repeats + 1):  # the first round warms up
            for name, forward in forwards.items():
                start = time.perf_counter()
                for inputs in timing_batches:
                    forward(inputs)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                best[name] = min(best[name], time.perf_counter() - start)
    for name in rows:
        rows[name]["ms_per_video"] = 1000 * best[name] / videos

    reference = rows.get("All modalities")
    for row in rows.values():
        row["gflops_vs_all"] = row["gflops"] / reference["gflops"] if reference else None
        row["time_vs_all"] = (
            row["ms_per_video"] / reference["ms_per_video"] if reference else None
        )
    report = {
        "run": str(run),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(device),
        "videos": len(labels),
        "test_segments": data_config.test_segments,
        "metric": "mAP" if multi_label else "top-1 accuracy",
        "modalities": list(modalities),
        "gflops_per_segment": {m: c / 1e9 for m, c in costs.recognition.items()}
        | {"policy": costs.policy / 1e9},
        "timing_videos": videos,
        "rows": rows,
    }
    table = markdown_table(report)
    (run / "report.json").write_text(json.dumps(report, indent=1))
    plot_accuracy_vs_gflops(report, run / "accuracy_vs_gflops.png")
    plot_selection_map(data["adamml/decisions"], informative, labels, modalities, classes,
                       run / "selection_map.png")  # fmt: skip
    (run / "report.md").write_text(
        f"# AdaMML report\n\n{table}\n\n"
        f"{len(labels)} validation videos, T = {data_config.test_segments} segments, "
        f"deterministic decisions. GFLOPs are MACs (1 GFLOP = 1e9 MACs) per video, the policy "
        f"included for the rows that have one; wall time is the best of "
        f"{args.timing_repeats} passes over {videos} videos held in memory, on "
        f"{report['machine']}, {report['date']}.\n\n"
        "![accuracy vs GFLOPs](accuracy_vs_gflops.png)\n\n"
        "![per-video selection](selection_map.png)\n"
    )
    print(table)
    return report


# ------------------------------------------------------------------------------------------
# Metrics
# ------------------------------------------------------------------------------------------
def fuse(dense: Tensor, decisions: Tensor, weights: Tensor) -> Tensor:
    """Masked late fusion of dense segment logits: equal to the routed model's output (routing
    computes exactly the selected segments, and BatchNorm is in eval mode)."""
    return masked_late_fusion(dense, decisions, weights)


def score(logits: Tensor, labels: Tensor, multi_label: bool) -> float:
    """Top-1 accuracy, or mAP (mean over classes of average precision) for multi-label data."""
    if not multi_label:
        return (logits.argmax(-1) == labels).float().mean().item()
    precisions = []
    for c in range(labels.shape[1]):
        positives = labels[:, c] > 0
        if positives.any():
            order = logits[:, c].argsort(descending=True)
            hits = positives[order].float()
            precision_at = hits.cumsum(0) / torch.arange(1, len(hits) + 1)
            precisions.append((precision_at * hits).sum().item() / hits.sum().item())
    return sum(precisions) / max(len(precisions), 1)


def video_gflops(
    decisions: Tensor, costs: ModalityCosts, modalities: Sequence[str], with_policy: bool
) -> Tensor:
    """``(B,)`` GFLOPs per video; the policy's share only where a policy ran."""
    if with_policy:
        return expected_gflops(decisions, costs, modalities)
    return expected_gflops(decisions, ModalityCosts(costs.recognition), modalities)


def informative_picked(decisions: Tensor, informative: Tensor | None) -> float | None:
    """Share of the segments with an informative modality where the decisions used one."""
    if informative is None:
        return None
    informative = informative > 0
    has = informative.any(-1)
    if not has.any():
        return None
    hit = ((decisions > 0.5) & informative).any(-1)
    return (hit & has).sum().item() / has.sum().item()


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} CPU threads"


def markdown_table(report: Mapping[str, Any]) -> str:
    modalities = report["modalities"]
    metric = "mAP (%)" if report["metric"] == "mAP" else "Acc. (%)"
    head = (
        f"| Method | {metric} | "
        + " | ".join(f"{m} sel. (%)" for m in modalities)
        + " | GFLOPs/video | GFLOPs vs all | ms/video | time vs all | informative picked (%) |"
    )
    lines = [head, "|" + "---|" * (7 + len(modalities))]

    def ratio(x: float | None) -> str:
        return "–" if x is None else f"{x:.2f}"

    for name, row in report["rows"].items():
        picked = row["informative_picked"]
        lines.append(
            f"| {name} | {100 * row['accuracy']:.1f} | "
            + " | ".join(f"{100 * row['selection'][m]:.1f}" for m in modalities)
            + f" | {row['gflops']:.3f} | {ratio(row['gflops_vs_all'])} | "
            f"{row['ms_per_video']:.1f} | {ratio(row['time_vs_all'])} | "
            + ("–" if picked is None else f"{100 * picked:.1f}")
            + " |"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------
# Plots
# ------------------------------------------------------------------------------------------
def plot_accuracy_vs_gflops(report: Mapping[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name, row in report["rows"].items():
        ax.scatter(row["gflops"], 100 * row["accuracy"], s=40,
                   marker="*" if name == "AdaMML" else "o")  # fmt: skip
        ax.annotate(name, (row["gflops"], 100 * row["accuracy"]), fontsize=8,
                    xytext=(4, 4), textcoords="offset points")  # fmt: skip
    ax.set_xlabel("GFLOPs per video (1 GFLOP = 1e9 MACs)")
    ax.set_ylabel("mAP (%)" if report["metric"] == "mAP" else "top-1 accuracy (%)")
    ax.set_title(f"AdaMML vs baselines, T = {report['test_segments']}")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_selection_map(
    decisions: Tensor,
    informative: Tensor | None,
    labels: Tensor,
    modalities: Sequence[str],
    classes: Sequence[str],
    path: Path,
    videos: int = 24,
) -> None:
    """One panel per modality: rows are videos, columns segments; filled = selected, a dot =
    the segment is informative for that modality (demo sidecar)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = min(videos, decisions.shape[0])
    # Spread the shown videos over the (class-ordered) list so every class appears.
    index = torch.linspace(0, decisions.shape[0] - 1, count).round().long()
    size = (3 + 2.2 * len(modalities), 0.3 * count + 1.5)
    fig, axes = plt.subplots(1, len(modalities), figsize=size, squeeze=False)
    for i, (ax, m) in enumerate(zip(axes[0], modalities, strict=True)):
        ax.imshow(decisions[index, :, i].numpy(), cmap="Greens", vmin=0, vmax=1.4, aspect="auto")
        if informative is not None:
            rows, cols = torch.nonzero(informative[index, :, i] > 0, as_tuple=True)
            ax.scatter(cols.numpy(), rows.numpy(), s=8, c="black", marker="o")
        ax.set_title(f"{m} (green: used, dot: informative)", fontsize=8)
        ax.set_xlabel("segment")
        ax.set_yticks(range(count))
        names = [] if labels.dim() != 1 else [classes[int(labels[j])] for j in index]
        ax.set_yticklabels(names if i == 0 else [], fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
