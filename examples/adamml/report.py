"""The evaluation report: markdown tables, ``report.json``, ``report.md`` and two plots.

Everything here reads the report dict that ``evaluate.py`` builds (what ``report.json`` holds);
nothing computes a figure.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from files import atomic_write_text
from torch import Tensor

METRIC_TITLES = {"top1": "Acc. (%)", "map": "mAP (%)"}


def write_report(
    run: Path, report: Mapping[str, Any], decisions: Tensor, informative: Tensor | None,
    labels: Tensor, classes: Sequence[str],
) -> None:  # fmt: skip
    """Write ``report.json``, ``report.md``, ``accuracy_vs_gflops.png`` and
    ``selection_map.png`` into ``run`` and print the main table.

    Args:
        run: the run directory.
        report: what ``evaluate.evaluate`` returns.
        decisions: ``(N, T, M)`` AdaMML's decisions on the validation videos.
        informative: ``(N, T, M)`` the demo's informative flags, or None.
        labels: ``(N,)`` or ``(N, C)``.
        classes: class names.
    """
    table = markdown_table(report)
    atomic_write_text(run / "report.json", json.dumps(report, indent=1))
    plot_curves(report, run / "accuracy_vs_gflops.png")
    plot_selection_map(decisions, informative, labels, report["modalities"], classes,
                       run / "selection_map.png")  # fmt: skip
    point = report["rows"]["AdaMML"].get("operating_point")
    chosen = "" if point is None else (
        f"AdaMML's operating point was chosen on the calibration list ({point['rule']}): "
        f"{100 * point['score']:.1f}% there at {point['gflops_vs_all']:.2f} of the GFLOPs; "
        "thresholds " + ", ".join(f"{m} {t}" for m, t in point["thresholds"].items()) + ".\n\n"
    )  # fmt: skip
    atomic_write_text(run / "report.md", (
        f"# AdaMML report\n\n{table}\n\n"
        f"{report['videos']} validation videos, T = {report['test_segments']} segments, "
        f"deterministic decisions. GFLOPs are MACs (1 GFLOP = 1e9 MACs) per video, the policy "
        f"included for the rows that have one; wall time is the median of "
        f"{report['timing_repeats']} interleaved passes over {report['timing_videos']} videos "
        f"held in memory (± the spread of the per-pass ratios), on {report['machine']}, "
        f"{report['date']}.\n\n{chosen}"
        f"## Trade-off curves\n\n{curve_table(report)}\n\n"
        f"## Per class\n\n{per_class_table(report)}\n\n"
        f"## By segment position\n\n{position_table(report)}\n\n"
        "![accuracy vs GFLOPs](accuracy_vs_gflops.png)\n\n"
        "![per-video selection](selection_map.png)\n"
    ))  # fmt: skip
    print(table)


def markdown_table(report: Mapping[str, Any]) -> str:
    """One row per method: the metric, selection rates, GFLOPs, wall time, informative."""
    modalities = report["modalities"]
    metric = METRIC_TITLES[report["metric"]]
    head = (
        f"| Method | {metric} | "
        + " | ".join(f"{m} sel. (%)" for m in modalities)
        + " | GFLOPs/video | GFLOPs vs all | ms/video | time vs all | informative picked (%) |"
    )
    lines = [head, "|" + "---|" * (7 + len(modalities))]

    def ratio(x: float | None, spread: float | None = None) -> str:
        if x is None:
            return "–"
        return f"{x:.2f}" if spread is None else f"{x:.2f} ± {spread / 2:.2f}"

    for name, row in report["rows"].items():
        picked = row["informative_picked"]
        lines.append(
            f"| {name} | {100 * row[report['metric']]:.1f} | "
            + " | ".join(f"{100 * row['selection'][m]:.1f}" for m in modalities)
            + f" | {row['gflops']:.3f} | {ratio(row['gflops_vs_all'])} | "
            f"{row['ms_per_video']:.1f} | "
            f"{ratio(row['time_vs_all'], row.get('time_vs_all_spread'))} | "
            + ("–" if picked is None else f"{100 * picked:.1f}")
            + " |"
        )
    return "\n".join(lines)


def curve_table(report: Mapping[str, Any]) -> str:
    """Each method's best metric within relative GFLOPs budgets (the report's ``curve_check``)."""
    check = report.get("curve_check")
    if not check:
        return "(no policy curves)"
    budgets = check["budgets"]
    lines = ["| method | " + " | ".join(f"≤ {b:.2f}" for b in budgets) + " |",
             "|" + "---|" * (1 + len(budgets))]  # fmt: skip
    for name, scores in check["best"].items():
        cells = ("–" if s is None else f"{100 * s:.1f}" for s in scores)
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
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


def plot_curves(report: Mapping[str, Any], path: Path) -> None:
    """Accuracy against relative GFLOPs: each method's curve on the validation list, the rows
    of the table as markers (named in the legend, so labels never overlap), AdaMML's chosen
    operating point as a star."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = report["metric"]
    fig, ax = plt.subplots(figsize=(9.5, 4.5))
    for name, curve in report.get("curves", {}).items():
        points = sorted(curve, key=lambda p: p["gflops_vs_all"])
        ax.plot([p["gflops_vs_all"] for p in points], [100 * p[metric] for p in points],
                marker=".", linewidth=1, label=f"{name} (curve)")  # fmt: skip
    markers = "s^vD<>ph"
    for i, (name, row) in enumerate(report["rows"].items()):
        star = name == "AdaMML"
        ax.scatter(row["gflops_vs_all"], 100 * row[metric], s=160 if star else 40, zorder=3,
                   marker="*" if star else markers[i % len(markers)], edgecolors="black",
                   label=f"{name}{' (chosen on calibration)' if star else ''}")  # fmt: skip
    ax.set_xlabel("GFLOPs relative to every modality on (1 GFLOP = 1e9 MACs)")
    ax.set_ylabel(METRIC_TITLES[metric])
    ax.set_title(f"Validation, T = {report['test_segments']}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_selection_map(
    decisions: Tensor, informative: Tensor | None, labels: Tensor, modalities: Sequence[str],
    classes: Sequence[str], path: Path, videos: int = 24,
) -> None:  # fmt: skip
    """One panel per modality: rows are videos, columns segments; filled = selected, a dot =
    the segment is informative for that modality (demo sidecar)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

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
