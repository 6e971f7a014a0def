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

Reported per row: top-1 accuracy and mAP (the table shows the run's ``--metric``), GFLOPs
per video (MACs, 1 GFLOP = 1e9 MACs, the policy included where there is one), selection rate
per modality, measured wall time per video, and, where the data has an ``informative.json``
sidecar (the demo set), the share of segments with an informative modality in which the
decision used one. A second table gives, per class, the accuracy under the policy and
all-modality's, and the selection rates.
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
from adagate.inference import optimize_for_inference

sys.path.insert(0, str(Path(__file__).resolve().parent))
import data as adamml_data
import runs
from model import PRESETS, AdaMML, all_on, example_batch, measure_costs, only

Forward = Callable[[Mapping[str, Tensor]], Any]
METRIC_TITLES = {"top1": "Acc. (%)", "map": "mAP (%)"}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, required=True, help="run directory written by train.py")
    p.add_argument("--val-list", type=Path, help="list to evaluate on (default: the run's)")
    p.add_argument("--test-segments", type=int,
                   help="T at test (default: the run's data configuration, paper: 10)")
    p.add_argument("--batch-size", type=int, default=8, help="videos per batch")
    p.add_argument("--device", default="cpu")
    p.add_argument("--workers", type=int, default=1, help="DataLoader worker processes")
    p.add_argument("--timing-videos", type=int, default=24,
                   help="videos held in memory to time each row's forward pass")  # fmt: skip
    p.add_argument("--timing-repeats", type=int, default=3, help="best of this many passes")
    p.add_argument("--seed", type=int, default=0, help="seed of the random-policy baseline")
    p.add_argument("--no-optimize", dest="optimize", action="store_false",
                   help="skip adagate.optimize_for_inference (BatchNorm folding, layout per "
                   "network) to compare")  # fmt: skip
    args = p.parse_args(argv)
    if not (args.run / runs.CONFIG).is_file():
        p.error(f"--run: expected a run directory with {runs.CONFIG}, got {args.run}")
    if not (args.run / "adamml.pt").is_file():
        p.error(f"--run: {args.run} has no adamml.pt; did training finish?")
    if args.val_list is not None and not args.val_list.is_file():
        p.error(f"--val-list: no such file {args.val_list}")
    for flag in ("test_segments", "batch_size", "timing_repeats"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            p.error(f"--{flag.replace('_', '-')}: expected >= 1, got {value}")
    return args


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Evaluate a run from the command line; see :func:`evaluate`."""
    args = parse_args(argv)
    return evaluate(
        args.run, val_list=args.val_list, test_segments=args.test_segments,
        batch_size=args.batch_size, device=args.device, workers=args.workers,
        timing_videos=args.timing_videos, timing_repeats=args.timing_repeats, seed=args.seed,
        optimize=args.optimize,
    )  # fmt: skip


def evaluate(
    run: Path,
    *,
    val_list: Path | None = None,
    test_segments: int | None = None,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
    workers: int = 1,
    timing_videos: int = 24,
    timing_repeats: int = 3,
    seed: int = 0,
    optimize: bool = True,
) -> dict[str, Any]:
    """Evaluate, print the table, write ``report.md``, ``report.json`` and two PNGs in the run.

    ``optimize=False`` (``--no-optimize``) evaluates the networks without
    ``adagate.optimize_for_inference``; decisions and accuracy are the same either way, within
    floating-point rounding, and the times show what the optimisation saves.

    Returns:
        The report as a dict (what ``report.json`` holds).
    """
    config = runs.load_config(run)
    device = torch.device(device)
    data_config = config.data
    if test_segments is not None:
        data_config = dataclasses.replace(data_config, test_segments=test_segments)
    classes = adamml_data.read_classes(config.classes)
    dataset = adamml_data.VideoDataset(
        val_list or config.val_list, config.data_root, data_config, train=False,
        classes=classes, informative=config.informative,
    )  # fmt: skip
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                        collate_fn=adamml_data.collate)  # fmt: skip
    models = load_models(run, config, len(classes), device, optimize)
    modalities = config.modalities
    costs = measure_costs(models["adamml"], example_batch(data_config, modalities))
    data, timing_batches = collect(models, loader, device, modalities, timing_videos)
    generator = torch.Generator().manual_seed(seed)
    rows, forwards = score_rows(models, data, dataset.multi_label, costs, modalities, generator)
    videos = sum(len(b["label"]) for b in timing_batches)
    best = best_times(forwards, timing_batches, timing_repeats, device)
    for name, row in rows.items():
        row["ms_per_video"] = 1000 * best[name] / videos
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
        "videos": len(data["label"]),
        "test_segments": data_config.test_segments,
        "metric": config.metric,
        "modalities": list(modalities),
        "gflops_per_segment": {m: c / 1e9 for m, c in costs.recognition.items()}
        | {"policy": costs.policy / 1e9},
        "timing_videos": videos,
        "rows": rows,
        "per_class": per_class(data, classes, modalities, dataset.multi_label),
        "by_position": by_position(data["adamml/decisions"], modalities),
    }
    write_report(run, report, data, classes, timing_repeats)
    return report


def load_models(
    run: Path, config: runs.RunConfig, num_classes: int, device: torch.device,
    optimize: bool = True,
) -> dict[str, AdaMML]:  # fmt: skip
    """The run's trained networks in eval mode: ``adamml``, and ``nolstm``, ``allmod``,
    ``unimodal`` where present (the unimodal rows use the all-modality model's recognisers,
    trained as long as AdaMML's, else the pre-trained ones, else AdaMML's). With ``optimize``
    each goes through ``adagate.optimize_for_inference`` (BatchNorm folded, layout measured
    per network on one video of the run's test size)."""
    preset = PRESETS[config.preset]
    example = {
        key: value.to(device)
        for key, value in example_batch(
            config.data, config.modalities, config.data.test_segments
        ).items()
    }
    models: dict[str, AdaMML] = {}
    for name in ("adamml", "nolstm", "allmod", "pretrained"):
        path = run / f"{name}.pt"
        if path.exists():
            net = AdaMML(config.modalities, num_classes, preset, recurrent=name != "nolstm")
            net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
            net = net.to(device, memory_format=torch.channels_last).eval()
            # The policy decides and every recogniser runs densely on the example, so each
            # network's layout is timed.
            models[name] = optimize_for_inference(net, (example,)) if optimize else net
    if "adamml" not in models:
        raise FileNotFoundError(f"run: {run} has no adamml.pt; did training finish?")
    models["unimodal"] = models.get("allmod") or models.pop("pretrained", None) or models["adamml"]
    models.pop("pretrained", None)
    return models


def collect(
    models: Mapping[str, AdaMML], loader: DataLoader[Any], device: torch.device,
    modalities: Sequence[str], timing_videos: int,
) -> tuple[dict[str, Tensor], list[dict[str, Tensor]]]:  # fmt: skip
    """One pass over the data; every row is computed from the same decoded batches.

    Returns:
        ``{key: (N, ...)}`` on the CPU (labels, informative flags, each model's logits and
        decisions, dense segment logits), and the first batches held for timing.
    """
    collected: dict[str, list[Tensor]] = {}

    def keep(key: str, value: Tensor) -> None:
        collected.setdefault(key, []).append(value.detach().float().cpu())

    adamml, unimodal = models["adamml"], models["unimodal"]
    timing_batches: list[dict[str, Tensor]] = []
    with torch.inference_mode():
        for batch in tqdm(loader, desc="evaluate", leave=False, dynamic_ncols=True):
            inputs = {k: v.to(device) for k, v in batch.items() if isinstance(v, Tensor)}
            if sum(len(b["label"]) for b in timing_batches) < timing_videos:
                timing_batches.append(inputs)
            keep("label", inputs["label"])
            if "informative" in batch:
                keep("informative", torch.stack([batch["informative"][m] for m in modalities], -1))
            for name in ("adamml", "nolstm"):
                if name in models:
                    result = models[name](inputs, route=True)
                    keep(f"{name}/logits", result.logits)
                    keep(f"{name}/decisions", result.decisions)
            # Dense per-segment logits of AdaMML's recognisers, for the random-policy row.
            keep("adamml/dense", adamml.recognise(inputs, all_on(inputs, adamml), route=False))
            if "allmod" in models:
                allmod = models["allmod"]
                keep("allmod/logits", allmod(inputs, all_on(inputs, allmod), route=True).logits)
            keep("unimodal/dense", unimodal.recognise(inputs, all_on(inputs, unimodal), False))
    return {key: torch.cat(values) for key, values in collected.items()}, timing_batches


def score_rows(
    models: Mapping[str, AdaMML], data: Mapping[str, Tensor], multi_label: bool,
    costs: ModalityCosts, modalities: Sequence[str], generator: torch.Generator,
) -> tuple[dict[str, dict[str, Any]], dict[str, Forward]]:  # fmt: skip
    """Each row's metrics, and the forward pass that times it."""
    labels, informative = data["label"], data.get("informative")
    ones = torch.ones_like(data["adamml/decisions"])
    rows: dict[str, dict[str, Any]] = {}

    def add(name: str, logits: Tensor, decisions: Tensor, with_policy: bool) -> None:
        rows[name] = {
            "top1": top1(logits, labels),
            "map": mean_average_precision(logits, labels),
            "selection": {m: decisions[..., i].mean().item() for i, m in enumerate(modalities)},
            "gflops": video_gflops(decisions, costs, modalities, with_policy).mean().item(),
            "informative_picked": informative_picked(decisions, informative),
        }

    adamml, unimodal = models["adamml"], models["unimodal"]
    forwards: dict[str, Forward] = {
        "AdaMML": lambda x: adamml(x, route=True)
    }
    add("AdaMML", data["adamml/logits"], data["adamml/decisions"], True)
    if "nolstm" in models:
        add("AdaMML, no LSTM", data["nolstm/logits"], data["nolstm/decisions"], True)
        forwards["AdaMML, no LSTM"] = lambda x: models["nolstm"](x, route=True)
    if "allmod" in models:
        add("All modalities", data["allmod/logits"], ones, False)
        forwards["All modalities"] = lambda x: models["allmod"](
            x, all_on(x, models["allmod"]), route=True
        )
    weights = unimodal.fusion.weights.detach().float().cpu()
    for m in modalities:
        alone = torch.zeros_like(ones)
        alone[..., modalities.index(m)] = 1.0
        add(f"{m} only", fuse(data["unimodal/dense"], alone, weights), alone, False)
        forwards[f"{m} only"] = lambda x, m=m: unimodal(x, only(x, unimodal, m), route=True)
    rates = torch.tensor([rows["AdaMML"]["selection"][m] for m in modalities])
    random_decisions = (torch.rand(ones.shape, generator=generator) < rates).float()
    weights = adamml.fusion.weights.detach().float().cpu()
    name = "Random policy (AdaMML's rates)"
    add(name, fuse(data["adamml/dense"], random_decisions, weights), random_decisions, False)

    def random_forward(x: Mapping[str, Tensor]) -> Any:
        chosen = (torch.rand(all_on(x, adamml).shape, generator=generator) < rates).float()
        return adamml(x, chosen.to(x["label"].device), route=True)

    forwards[name] = random_forward
    return rows, forwards


def best_times(
    forwards: Mapping[str, Forward],
    batches: Sequence[Mapping[str, Tensor]], repeats: int, device: torch.device,
) -> dict[str, float]:  # fmt: skip
    """Best-of-``repeats`` seconds of each forward over ``batches`` held in memory; the rows
    are interleaved within each round so that a change in machine load hits all of them."""
    best = dict.fromkeys(forwards, float("inf"))
    with torch.inference_mode():
        for _ in range(repeats + 1):  # the first round warms up
            for name, forward in forwards.items():
                began = time.perf_counter()
                for inputs in batches:
                    forward(inputs)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                best[name] = min(best[name], time.perf_counter() - began)
    return best


def write_report(
    run: Path, report: Mapping[str, Any], data: Mapping[str, Tensor], classes: Sequence[str],
    repeats: int,
) -> None:  # fmt: skip
    table = markdown_table(report)
    (run / "report.json").write_text(json.dumps(report, indent=1))
    plot_accuracy_vs_gflops(report, run / "accuracy_vs_gflops.png")
    plot_selection_map(data["adamml/decisions"], data.get("informative"), data["label"],
                       report["modalities"], classes, run / "selection_map.png")  # fmt: skip
    (run / "report.md").write_text(
        f"# AdaMML report\n\n{table}\n\n"
        f"{report['videos']} validation videos, T = {report['test_segments']} segments, "
        f"deterministic decisions. GFLOPs are MACs (1 GFLOP = 1e9 MACs) per video, the policy "
        f"included for the rows that have one; wall time is the best of "
        f"{repeats} passes over {report['timing_videos']} videos held in memory, on "
        f"{report['machine']}, {report['date']}.\n\n"
        f"## Per class\n\n{per_class_table(report)}\n\n"
        f"## By segment position\n\n{position_table(report)}\n\n"
        "![accuracy vs GFLOPs](accuracy_vs_gflops.png)\n\n"
        "![per-video selection](selection_map.png)\n"
    )
    print(table)


# ------------------------------------------------------------------------------------------
# Metrics
# ------------------------------------------------------------------------------------------
def fuse(dense: Tensor, decisions: Tensor, weights: Tensor) -> Tensor:
    """Masked late fusion of dense segment logits: equal to the routed model's output (routing
    computes exactly the selected segments, and BatchNorm is in eval mode)."""
    return masked_late_fusion(dense, decisions, weights)


def top1(logits: Tensor, labels: Tensor) -> float:
    """Top-1 accuracy; for multi-hot ``labels`` (N, C), the top class is one of the labels."""
    top = logits.argmax(-1)
    if labels.dim() == 2:
        return (labels.gather(1, top[:, None]) > 0).float().mean().item()
    return (top == labels).float().mean().item()


def mean_average_precision(logits: Tensor, labels: Tensor) -> float:
    """mAP: the mean over classes of average precision (the paper's protocol for ActivityNet
    and FCVID); single labels count as one-hot. Classes without a positive video are left out.

    Args:
        logits: ``(N, C)`` scores.
        labels: ``(N,)`` class indices or ``(N, C)`` multi-hot.
    """
    if labels.dim() == 1:
        labels = torch.nn.functional.one_hot(labels.long(), logits.shape[1])
    positives = labels > 0
    order = logits.argsort(dim=0, descending=True, stable=True)
    hits = positives.gather(0, order).double()
    ranks = torch.arange(1, len(hits) + 1, dtype=torch.float64)[:, None]
    precision = hits.cumsum(0) / ranks
    counts = hits.sum(0)
    present = counts > 0
    if not present.any():
        return 0.0
    return ((precision * hits).sum(0)[present] / counts[present]).mean().item()


def per_class(
    data: Mapping[str, Tensor], classes: Sequence[str], modalities: Sequence[str],
    multi_label: bool,
) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Per class: videos, AdaMML's and all-modality's accuracy, AdaMML's selection rates.

    A class whose accuracy under the policy falls far below all-modality's is where a policy
    has collapsed onto a modality that cannot tell it apart."""
    labels, decisions = data["label"], data["adamml/decisions"]
    table = {}
    for c, name in enumerate(classes):
        members = labels[:, c] > 0 if multi_label else labels == c
        if not members.any():
            continue
        row: dict[str, Any] = {"videos": int(members.sum())}
        for title, key in (("AdaMML", "adamml/logits"), ("All modalities", "allmod/logits")):
            if key in data:
                row[title] = top1(data[key][members], labels[members])
        row["selection"] = {m: decisions[members][..., i].mean().item()
                            for i, m in enumerate(modalities)}  # fmt: skip
        table[name] = row
    return table


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
    metric = METRIC_TITLES[report["metric"]]
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
            f"| {name} | {100 * row[report['metric']]:.1f} | "
            + " | ".join(f"{100 * row['selection'][m]:.1f}" for m in modalities)
            + f" | {row['gflops']:.3f} | {ratio(row['gflops_vs_all'])} | "
            f"{row['ms_per_video']:.1f} | {ratio(row['time_vs_all'])} | "
            + ("–" if picked is None else f"{100 * picked:.1f}")
            + " |"
        )
    return "\n".join(lines)


def per_class_table(report: Mapping[str, Any]) -> str:
    modalities = report["modalities"]
    lines = ["| Class | videos | AdaMML top-1 (%) | all-modality top-1 (%) | "
             + " | ".join(f"{m} sel. (%)" for m in modalities) + " |",
             "|" + "---|" * (4 + len(modalities))]  # fmt: skip
    for name, row in report["per_class"].items():
        both = [row.get(t) for t in ("AdaMML", "All modalities")]
        lines.append(f"| {name} | {row['videos']} | "
                     + " | ".join("–" if v is None else f"{100 * v:.1f}" for v in both) + " | "
                     + " | ".join(f"{100 * row['selection'][m]:.1f}" for m in modalities)
                     + " |")  # fmt: skip
    return "\n".join(lines)


def by_position(decisions: Tensor, modalities: Sequence[str]) -> dict[str, list[float]]:
    """``decisions (N, T, M)`` → per modality, the selection rate at each position ``t``."""
    return {m: decisions[..., i].mean(0).tolist() for i, m in enumerate(modalities)}


def position_table(report: Mapping[str, Any]) -> str:
    """AdaMML's selection rate per modality at each segment position ``t``: a recurrent policy
    trained on fewer segments than it is tested on shows here where it stops looking."""
    rates = report["by_position"]
    positions = len(next(iter(rates.values())))
    lines = ["| modality | " + " | ".join(f"t={t}" for t in range(positions)) + " |",
             "|" + "---|" * (1 + positions)]  # fmt: skip
    lines += [f"| {m} sel. (%) | " + " | ".join(f"{100 * r:.0f}" for r in rate) + " |"
              for m, rate in rates.items()]  # fmt: skip
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
        ax.scatter(row["gflops"], 100 * row[report["metric"]], s=40,
                   marker="*" if name == "AdaMML" else "o")  # fmt: skip
        ax.annotate(name, (row["gflops"], 100 * row[report["metric"]]), fontsize=8,
                    xytext=(4, 4), textcoords="offset points")  # fmt: skip
    ax.set_xlabel("GFLOPs per video (1 GFLOP = 1e9 MACs)")
    ax.set_ylabel(METRIC_TITLES[report["metric"]])
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
