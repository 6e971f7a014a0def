"""Evaluate a trained AdaMML run against its baselines; write report.md, report.json and plots.

    python examples/adamml/evaluate.py --run examples/adamml/runs/demo

Decisions are deterministic (the policy's gates compare their on-logits with the thresholds of
the operating point chosen on the calibration list; no sampling at test time, unlike the
reference code). Every network runs once, densely, on every segment of every validation video;
each row is then the model's fusion of the segment logits its decisions keep — equal to the
routed model's output, since routing computes exactly the selected segments (BatchNorm in eval
mode) — and the wall-time column times the routed forward passes. Rows (AdaMML §4.2-4.3):

* **AdaMML**: the learned policy at its operating point.
* **AdaMML, no LSTM**: the policy without its recurrent part, trained and calibrated the same way.
* **All modalities**: every modality on every segment ("weighted fusion"), trained as long.
* **<modality> only**: each modality alone (the all-modality model's recognisers).
* **Random policy**: AdaMML's recognisers with each modality selected at random at AdaMML's own
  selection rates (AdaMML Table 8, "Random (Test)").

Curves (``report.json["curves"]``, on the validation list): AdaMML's and the no-LSTM policy's
operating points chosen on the calibration list for relative budgets 0.025 to 1 (steps of
0.025); random selection at each of AdaMML's points' rates; and a static schedule (the
costliest modality on every k-th segment, the others always on).
"""

from __future__ import annotations

import os

# OpenMP threads that spin while waiting collapse when the cores are shared (a DataLoader
# worker, another process). Must be set before torch loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import dataclasses
import json
import platform
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader

from adagate.flops import ModalityCosts
from adagate.inference import optimize_for_inference
from adagate.operating import OperatingPoint, sweep_thresholds

sys.path.insert(0, str(Path(__file__).resolve().parent))
import data as adamml_data
import metrics
import report as reporting
import runs
from calibration import Dense, Rule, dense_pass, thresholds_of
from model import AdaMML, all_on, example_batch, measure_costs, only
from timing import TimeStats, interleaved_times, time_ratio

Forward = Callable[[Mapping[str, Tensor]], Any]
BUDGETS = [round(0.025 * k, 3) for k in range(1, 41)]
CHECKED = [round(0.2 + 0.1 * k, 1) for k in range(7)]  # the budgets the report compares at


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
    p.add_argument("--timing-repeats", type=int, default=5,
                   help="timed passes after a warm-up one; the median is reported")  # fmt: skip
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
    run: Path, *, val_list: Path | None = None, test_segments: int | None = None,
    batch_size: int = 8, device: str | torch.device = "cpu", workers: int = 1,
    timing_videos: int = 24, timing_repeats: int = 5, seed: int = 0, optimize: bool = True,
) -> dict[str, Any]:  # fmt: skip
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
        classes=classes, informative=config.informative, multi_label=config.multi_label or None,
    )  # fmt: skip
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                        collate_fn=adamml_data.collate)  # fmt: skip
    models = load_models(run, config, len(classes), device, optimize, data_config)
    modalities = config.modalities
    costs = measure_costs(models["adamml"], example_batch(data_config, modalities))
    metric = config.metric
    dense, timing_batches = collect(models, loader, device, timing_videos)
    generator = torch.Generator().manual_seed(seed)
    rows, forwards, logits, decisions = score_rows(models, dense, costs, generator)
    calibration = json.loads((run / runs.CALIBRATION).read_text()) \
        if (run / runs.CALIBRATION).is_file() else {}  # fmt: skip
    if "adamml" in calibration:
        rows["AdaMML"]["operating_point"] = calibration["adamml"]["chosen"] | {
            "rule": config.rule.describe(), "score_all_on": calibration["adamml"]["all_on"]}
    videos = sum(len(b["label"]) for b in timing_batches)
    times = row_times(forwards, timing_batches, timing_repeats, device)
    all_gflops = metrics.video_gflops(torch.ones_like(decisions["AdaMML"]), costs, modalities,
                                      False).mean().item()  # fmt: skip
    for name, row in rows.items():
        row["gflops_vs_all"] = row["gflops"] / all_gflops
        row["ms_per_video"] = 1000 * times[name].median / videos
        row["ms_spread"] = 1000 * times[name].spread / videos
        row["time_vs_all"], row["time_vs_all_spread"] = (
            time_ratio(times[name], times["All modalities"])
            if "All modalities" in times else (None, None)
        )  # fmt: skip
    curves = trade_off_curves(models, dense, calibration, costs, metric, all_gflops, generator)
    found = {
        "run": str(run), "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": machine(device), "videos": len(dense["adamml"]),
        "test_segments": data_config.test_segments, "metric": config.metric,
        "modalities": list(modalities),
        "gflops_per_segment": {m: c / 1e9 for m, c in costs.recognition.items()}
        | {"policy": costs.policy / 1e9},
        "timing_videos": videos, "timing_repeats": timing_repeats, "rows": rows,
        "curves": curves,
        "curve_check": {"budgets": CHECKED, "best": {
            name: [metrics.best_within(curve, b, metric) for b in CHECKED]
            for name, curve in curves.items()}},
        "per_class": metrics.per_class(
            dense["adamml"].labels,
            {k: v for k, v in logits.items() if k in ("AdaMML", "All modalities")},
            decisions["AdaMML"], classes, modalities),
        "by_position": metrics.by_position(decisions["AdaMML"], modalities),
    }  # fmt: skip
    reporting.write_report(run, found, decisions["AdaMML"], dense["adamml"].informative,
                           dense["adamml"].labels, classes)  # fmt: skip
    return found


def load_models(
    run: Path, config: runs.RunConfig, num_classes: int, device: torch.device,
    optimize: bool = True, data_config: Any = None,
) -> dict[str, AdaMML]:  # fmt: skip
    """The run's trained networks in eval mode: ``adamml``, and ``nolstm`` and ``allmod`` where
    present. With ``optimize`` each goes through ``adagate.optimize_for_inference`` (BatchNorm
    folded, layout measured per network on one video of the test size)."""
    data_config = data_config or config.data
    batch = example_batch(data_config, config.modalities, data_config.test_segments)
    example = {key: value.to(device) for key, value in batch.items()}
    models: dict[str, AdaMML] = {}
    for name in ("adamml", "nolstm", "allmod"):
        if name == "adamml" or (run / f"{name}.pt").exists():
            net = runs.load_model(run, name, config, num_classes, device)
            # The policy decides and every recogniser runs densely on the example, so each
            # network's layout is timed.
            models[name] = optimize_for_inference(net, (example,)) if optimize else net
    return models


def collect(
    models: Mapping[str, AdaMML], loader: DataLoader[Any], device: torch.device,
    timing_videos: int,
) -> tuple[dict[str, Dense], list[dict[str, Tensor]]]:  # fmt: skip
    """One pass over the data: every model's dense outputs (``calibration.dense_pass``) from
    the same decoded batches, and the first batches held in memory for timing."""
    timing_batches: list[dict[str, Tensor]] = []
    batches = []
    for batch in loader:
        if sum(len(b["label"]) for b in timing_batches) < timing_videos:
            timing_batches.append({k: v.to(device) for k, v in batch.items()
                                   if isinstance(v, Tensor)})  # fmt: skip
        batches.append(batch)
    dense = {name: dense_pass(model, batches, device, desc=f"evaluate {name}")
             for name, model in models.items()}  # fmt: skip
    return dense, timing_batches


def decide(model: AdaMML, dense: Dense) -> Tensor:
    """``(N, T, M)`` the policy's deterministic decisions at its stored thresholds."""
    with torch.no_grad():
        return model.policy.eval()(dense.features).decisions.float()


def score_rows(
    models: Mapping[str, AdaMML], dense: Mapping[str, Dense], costs: ModalityCosts,
    generator: torch.Generator,
) -> tuple[dict[str, dict[str, Any]], dict[str, Forward], dict[str, Tensor], dict[str, Tensor]]:
    """Each row's figures, the routed forward pass that times it, its video logits ``(N, C)``
    and its decisions ``(N, T, M)``."""
    adamml = models["adamml"]
    modalities = adamml.modalities
    labels, informative = dense["adamml"].labels, dense["adamml"].informative
    rows: dict[str, dict[str, Any]] = {}
    forwards: dict[str, Forward] = {}
    logits: dict[str, Tensor] = {}
    decisions: dict[str, Tensor] = {}

    def add(name: str, model: AdaMML, key: str, chosen: Tensor, policy: bool,
            forward: Forward) -> None:  # fmt: skip
        with torch.no_grad():
            logits[name] = model.fusion(dense[key].segment_logits, chosen).float()
        decisions[name] = chosen
        rows[name] = metrics.row(logits[name], labels, chosen, costs, modalities, policy,
                                 informative)  # fmt: skip
        forwards[name] = forward

    add("AdaMML", adamml, "adamml", decide(adamml, dense["adamml"]), True,
        lambda x: adamml(x, route=True))
    if "nolstm" in models:
        nolstm = models["nolstm"]
        add("AdaMML, no LSTM", nolstm, "nolstm", decide(nolstm, dense["nolstm"]), True,
            lambda x: nolstm(x, route=True))
    ones = torch.ones_like(decisions["AdaMML"])
    if "allmod" in models:
        allmod = models["allmod"]
        add("All modalities", allmod, "allmod", ones, False,
            lambda x: allmod(x, all_on(x, allmod), route=True))
        for k, m in enumerate(modalities):
            alone = torch.zeros_like(ones)
            alone[..., k] = 1.0
            add(f"{m} only", allmod, "allmod", alone, False,
                lambda x, m=m: allmod(x, only(x, allmod, m), route=True))
    rates = torch.tensor([rows["AdaMML"]["selection"][m] for m in modalities])

    def random_forward(x: Mapping[str, Tensor]) -> Any:
        chosen = (torch.rand(all_on(x, adamml).shape, generator=generator) < rates).float()
        return adamml(x, chosen.to(x["label"].device), route=True)

    add("Random policy (AdaMML's rates)", adamml, "adamml",
        (torch.rand(ones.shape, generator=generator) < rates).float(), False, random_forward)
    return rows, forwards, logits, decisions


def trade_off_curves(
    models: Mapping[str, AdaMML], dense: Mapping[str, Dense], calibration: Mapping[str, Any],
    costs: ModalityCosts, key: str, all_gflops: float, generator: torch.Generator,
    draws: int = 5,
) -> dict[str, list[dict[str, Any]]]:
    """Validation curves: each policy at the points chosen on the calibration list for the
    budgets in ``BUDGETS``; random selection at AdaMML's points' rates (mean of ``draws``);
    the costliest modality on every k-th segment with the others always on. ``key``: the
    metric's name in ``metrics.METRICS``."""
    metric = metrics.METRICS[key]
    curves: dict[str, list[dict[str, Any]]] = {}
    titles = {"adamml": "AdaMML", "nolstm": "AdaMML, no LSTM"}
    for name, title in titles.items():
        if name not in models or name not in calibration:
            continue
        points = calibration_points(calibration[name], models[name].modalities)
        first = calibration[name]["curve"][0]
        reference = OperatingPoint(points[0].thresholds, calibration[name]["all_on"],
                                   first["gflops"] / first["gflops_vs_all"],
                                   points[0].selection)  # fmt: skip
        records = calibration[name]["curve"]
        likelihoods = (None if any("log_likelihood" not in r for r in records)
                       else [r["log_likelihood"] for r in records])  # fmt: skip
        chosen = {b: Rule(budget=b).choose(points, reference, likelihoods) for b in BUDGETS}
        unique = {tuple(p.thresholds.tolist()): p.thresholds for p in chosen.values()}
        model, part = models[name], dense[name]
        swept = sweep_thresholds(model.policy, part.features, part.segment_logits, part.labels,
                                 torch.stack(list(unique.values())), fusion=model.fusion,
                                 costs=costs, metric=metric)  # fmt: skip
        curves[title] = [{"thresholds": dict(zip(model.modalities, p.thresholds.tolist(),
                                                 strict=True)),
                          "gflops_vs_all": p.gflops / all_gflops, key: p.score,
                          "selection": p.selection.tolist()} for p in swept]  # fmt: skip
    adamml, part = models["adamml"], dense["adamml"]
    recognition = ModalityCosts(costs.recognition)
    shape = part.segment_logits.shape[:3]

    def point(decisions: Tensor) -> dict[str, Any]:
        with torch.no_grad():
            video = adamml.fusion(part.segment_logits, decisions).float()
        gflops = metrics.video_gflops(decisions, recognition, adamml.modalities, False).mean()
        return {"gflops_vs_all": gflops.item() / all_gflops, key: metric(video, part.labels)}

    if "AdaMML" in curves:
        curves["Random selection"] = []
        for p in curves["AdaMML"]:
            rates = torch.tensor(p["selection"])
            drawn = [point((torch.rand(shape, generator=generator) < rates).float())
                     for _ in range(draws)]
            curves["Random selection"].append(
                {k: sum(d[k] for d in drawn) / draws for k in drawn[0]})
    costliest = max(range(len(adamml.modalities)),
                    key=lambda k: costs.recognition[adamml.modalities[k]])
    static = []
    for every in range(1, shape[1] + 1):
        decisions = torch.ones(shape)
        decisions[..., costliest] = (torch.arange(shape[1]) % every == 0).float()
        static.append(point(decisions) | {"every": every})
    curves[f"{adamml.modalities[costliest]} every k-th segment"] = static
    return curves


def calibration_points(
    record: Mapping[str, Any], modalities: Sequence[str]
) -> list[OperatingPoint]:
    """The calibration curve saved by ``train.py`` (``calibration.json``) as operating points."""
    return [OperatingPoint(thresholds_of(p, modalities), p["score"], p["gflops"],
                           torch.tensor([p["selection"][m] for m in modalities]))
            for p in record["curve"]]  # fmt: skip


def row_times(
    forwards: Mapping[str, Forward],
    batches: Sequence[Mapping[str, Tensor]], repeats: int, device: torch.device,
) -> dict[str, TimeStats]:  # fmt: skip
    """Seconds of each row's forward over ``batches`` held in memory: ``repeats`` passes after a
    warm-up one, the rows interleaved within each pass (:func:`timing.interleaved_times`) so
    that a change in machine load hits all of them."""

    def over_batches(forward: Forward) -> Callable[[], None]:
        def run() -> None:
            for inputs in batches:
                forward(inputs)

        return run

    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else None
    fns = {name: over_batches(forward) for name, forward in forwards.items()}
    with torch.inference_mode():
        return interleaved_times(fns, repeats, sync=sync)


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} CPU threads"


if __name__ == "__main__":
    main()
