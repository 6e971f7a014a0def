"""Train AdaMML (Panda et al., ICCV 2021) in three stages, then evaluate it against baselines.

    python examples/adamml/train.py                        # demo: data, training, table
    python examples/adamml/train.py --preset paper --data-root DIR --train-list ... --val-list ...
    torchrun --nproc_per_node=8 examples/adamml/train.py --preset paper ...
    python examples/adamml/train.py --out runs/x --resume  # continue a stopped run

The stages (AdaMML §4.1 "Training Details"):

0. unimodal pre-training of each recognition backbone (the paper starts from unimodal models);
1. warm-up: the recognisers with every modality on, the policy fixed;
2. joint training: the policy (Adam) and the recognisers (SGD) together, the policy's gates
   sampled with an annealed temperature, loss = cross-entropy + efficiency loss (Eq. 4);
3. fine-tuning: the recognisers under the frozen policy, each backbone run only on the
   segments the policy selects.

Baselines trained by the same command (``--baselines``, on by default): the policy without its
LSTM (its own stages 2-3 from the same warm-up) and the all-modality "weighted fusion" model
(the warm-up continued for as many epochs as stages 2-3). Then ``evaluate.py`` writes the report.

A checkpoint is written atomically at the end of every epoch; ``--resume`` continues from it
with the same result as an uninterrupted run.
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
import random
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from adagate.losses import BudgetLoss, efficiency_loss
from adagate.schedules import ExponentialDecay, set_tau

sys.path.insert(0, str(Path(__file__).resolve().parent))
import data as adamml_data
import evaluate
import make_dataset
from model import PRESETS, AdaMML, all_on, example_batch, measure_costs

HERE = Path(__file__).resolve().parent


# ------------------------------------------------------------------------------------------
# Flags
# ------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )  # fmt: skip
    a = p.add_argument
    a("--preset", default="demo", choices=sorted(PRESETS),
      help="sizes and hyper-parameters: 'paper' (AdaMML §4.1) or 'demo' (2 CPU cores, minutes)")
    a("--data-root", type=Path, default=HERE / "demo_data",
      help="directory the list files' paths are relative to; the demo set is generated here "
           "if it is missing (default: examples/adamml/demo_data)")
    a("--train-list", type=Path, help="training list: 'path label' lines (default ROOT/train.txt)")
    a("--val-list", type=Path, help="validation list (default ROOT/val.txt)")
    a("--classes", type=Path, help="classes.txt, one name per line (default ROOT/classes.txt)")
    a("--informative", type=Path,
      help="sidecar of per-segment informative modalities (default ROOT/informative.json if "
           "present; the demo set has one)")
    a("--modalities", default="rgb,audio",
      help="comma-separated recognition modalities from rgb, rgbdiff, flow, audio")
    a("--epochs", type=int, help="joint-training epochs (stage 2; default from the preset)")
    a("--pretrain-epochs", type=int, help="unimodal pre-training epochs (stage 0; 0 skips it)")
    a("--warmup-epochs", type=int, help="warm-up epochs with the policy fixed (stage 1)")
    a("--finetune-epochs", type=int, help="fine-tuning epochs with the policy frozen (stage 3)")
    a("--batch-size", type=int, help="videos per batch and process (default from the preset)")
    a("--lr", type=float, help="SGD learning rate of the recognisers")
    a("--policy-lr", type=float, help="Adam learning rate of the policy")
    a("--pretrain-lr", type=float, help="SGD learning rate of the unimodal pre-training")
    a("--lambdas", help="cost weights of Eq. 4, e.g. 'rgb=1,audio=0.05' (default: preset; a "
                        "modality not given gets its MACs / the largest modality's MACs)")
    a("--gamma", type=float, help="penalty of a wrong prediction in Eq. 4 (paper: 10)")
    a("--budget-gflops", type=float,
      help="train to this many GFLOPs per video (policy included) with BudgetLoss instead of "
           "the λ-weighted efficiency loss")
    a("--baselines", action=argparse.BooleanOptionalAction, default=True,
      help="also train the no-LSTM policy and the all-modality model for the report")
    a("--evaluate", action=argparse.BooleanOptionalAction, default=True,
      help="run evaluate.py on the validation list after training")
    a("--device", default="auto", help="'cpu', 'cuda', 'cuda:1' or 'auto'")
    a("--amp", action=argparse.BooleanOptionalAction, default=True,
      help="mixed precision on CUDA (bf16 where supported, else fp16 with a grad scaler)")
    a("--compile", action="store_true", help="torch.compile the networks")
    a("--workers", type=int, default=1, help="DataLoader worker processes per process")
    a("--out", type=Path, help="run directory (default examples/adamml/runs/PRESET)")
    a("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    a("--seed", type=int, default=0, help="seed of everything random")
    a("--strict-data", action="store_true", help="fail on a bad video instead of skipping it")
    a("--stop-after-steps", type=int,
      help="exit after this many optimiser steps, as if killed (to test --resume)")
    return p.parse_args(argv)


args = parse_args() if __name__ == "__main__" else None


def main(args: argparse.Namespace) -> dict[str, Any] | None:
    preset = PRESETS[args.preset]
    modalities = tuple(m.strip() for m in args.modalities.split(",") if m.strip())
    given = {"pretrain": args.pretrain_epochs, "warmup": args.warmup_epochs,
             "joint": args.epochs, "finetune": args.finetune_epochs}  # fmt: skip
    epochs = {
        stage: getattr(preset, f"{stage}_epochs") if value is None else value
        for stage, value in given.items()
    }
    batch_size = args.batch_size or preset.batch_size
    lr = args.lr or preset.lr
    policy_lr = args.policy_lr or preset.policy_lr
    pretrain_lr = args.pretrain_lr or preset.pretrain_lr
    gamma = preset.gamma if args.gamma is None else args.gamma
    out = args.out or HERE / "runs" / args.preset
    root = args.data_root
    train_list = args.train_list or root / "train.txt"
    val_list = args.val_list or root / "val.txt"
    classes_file = args.classes or root / "classes.txt"

    # --------------------------------------------------------------------------------------
    # Processes and devices: torchrun sets RANK / WORLD_SIZE / LOCAL_RANK (nanoGPT-style).
    # --------------------------------------------------------------------------------------
    distributed = int(os.environ.get("RANK", -1)) != -1
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if distributed:
        backend = "nccl" if args.device.startswith("cuda") else "gloo"
        dist.init_process_group(backend)
        rank, world = dist.get_rank(), dist.get_world_size()
        if args.device.startswith("cuda"):
            args.device = f"cuda:{int(os.environ['LOCAL_RANK'])}"
            torch.cuda.set_device(args.device)
    else:
        rank, world = 0, 1
    master = rank == 0
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    amp_dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float16
    autocast = (
        torch.autocast("cuda", dtype=amp_dtype) if cuda and args.amp else nullcontext()
    )
    scaler = torch.amp.GradScaler("cuda", enabled=cuda and args.amp and amp_dtype == torch.float16)
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    seed_everything(args.seed + rank)

    def log(message: str) -> None:
        if master:
            tqdm.write(message)

    # --------------------------------------------------------------------------------------
    # Data: the demo set is generated on first use.
    # --------------------------------------------------------------------------------------
    if args.data_root == HERE / "demo_data" and not (root / "train.txt").exists():
        if master:
            start = time.perf_counter()
            counts = make_dataset.make_dataset(make_dataset.DemoSpec(), root, workers=2)
            log(f"generated the demo set ({counts['train']} train + {counts['val']} val mp4 "
                f"clips) in {root} in {time.perf_counter() - start:.0f} s")  # fmt: skip
        if distributed:
            dist.barrier()
    informative = args.informative or root / "informative.json"
    config_name = "demo" if preset.name != "paper" else "paper"
    policy_inputs = tuple(
        dict.fromkeys("rgbdiff" if m in ("rgbdiff", "flow") else "rgb" for m in modalities
                      if m != "audio")
    )  # fmt: skip
    data_config = getattr(adamml_data.DataConfig, config_name)(
        modalities=modalities, policy_modalities=policy_inputs, **preset.data
    )
    classes = adamml_data.read_classes(classes_file)
    train_set = adamml_data.VideoDataset(
        train_list, root, data_config, train=True, classes=classes, strict=args.strict_data
    )
    # The same seed on every rank and every epoch index: the shuffle is a function of (seed,
    # epoch), which is what makes a resumed run see the same batches.
    sampler = DistributedSampler(
        train_set, num_replicas=world, rank=rank, shuffle=True, seed=args.seed, drop_last=True
    )
    loader = DataLoader(
        train_set, batch_size=batch_size, sampler=sampler, num_workers=args.workers,
        collate_fn=adamml_data.collate, pin_memory=cuda, drop_last=True,
    )  # fmt: skip
    multi_label = train_set.multi_label
    skips = adamml_data.SkipReport()

    # --------------------------------------------------------------------------------------
    # Model, costs, loss weights.
    # --------------------------------------------------------------------------------------
    def build(recurrent: bool = True) -> nn.Module:
        net = AdaMML(modalities, len(classes), preset, recurrent=recurrent)
        if distributed and cuda:
            net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
        # On CPU / gloo SyncBatchNorm does not run: each process normalises its own batch.
        net = net.to(device, memory_format=torch.channels_last)
        if args.compile:
            for module in [*net.recognisers.values(), *net.policy_features.values()]:
                module.compile(dynamic=True)
        return net

    model = build()
    costs = measure_costs(model, {k: v.to(device) for k, v in example_batch(
        data_config, modalities).items()})  # fmt: skip
    all_gflops = sum(costs.recognition.values()) / 1e9
    lambdas = resolve_lambdas(args.lambdas, preset.lambdas, costs.recognition)
    log(f"AdaMML {'+'.join(modalities)} ({args.preset}): GFLOPs per segment "
        + ", ".join(f"{m} {c / 1e9:.4f}" for m, c in costs.recognition.items())
        + f", policy {costs.policy / 1e9:.4f} (1 GFLOP = 1e9 MACs); λ = {lambdas}, γ = {gamma}")
    tau_schedule = ExponentialDecay(preset.tau_start, preset.tau_rate)

    # The plan: (stage, model name, epochs). Baselines start from the warm-up weights.
    stages = [("pretrain", "adamml", epochs["pretrain"]), ("warmup", "adamml", epochs["warmup"]),
              ("joint", "adamml", epochs["joint"]), ("finetune", "adamml", epochs["finetune"])]
    if args.baselines:
        stages += [("joint", "nolstm", epochs["joint"]), ("finetune", "nolstm", epochs["finetune"]),
                   ("allmod", "allmod", epochs["joint"] + epochs["finetune"])]  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    metrics_file = out / "metrics.jsonl"
    if master:
        run_config = {
            "preset": args.preset, "modalities": list(modalities), "data_root": str(root),
            "val_list": str(val_list), "classes": str(classes_file),
            "informative": str(informative) if informative.exists() else None,
            "data_config": dataclasses.asdict(data_config), "epochs": epochs,
            "batch_size": batch_size, "lr": lr, "policy_lr": policy_lr, "lambdas": lambdas,
            "gamma": gamma, "budget_gflops": args.budget_gflops, "seed": args.seed,
            "world_size": world, "stages": stages, "command": " ".join(sys.argv),
        }  # fmt: skip
        (out / "config.json").write_text(json.dumps(run_config, indent=1))
        if not args.resume:
            metrics_file.write_text("")

    # --------------------------------------------------------------------------------------
    # Resume.
    # --------------------------------------------------------------------------------------
    position = {"stage": 0, "epoch": 0}
    current = "adamml"  # the model held in `model`
    resumed: dict[str, Any] | None = None
    checkpoint_file = out / "checkpoint.pt"
    if args.resume and checkpoint_file.exists():
        resumed = torch.load(checkpoint_file, map_location=device, weights_only=True)
        position = resumed["position"]
        current = resumed["model_name"]
        model = build(recurrent=current != "nolstm")
        model.load_state_dict(resumed["model"])
        log(f"resumed from {checkpoint_file}: stage {position['stage']} "
            f"({stages[min(position['stage'], len(stages) - 1)][0]}), epoch {position['epoch']}")

    # --------------------------------------------------------------------------------------
    # The stages.
    # --------------------------------------------------------------------------------------
    steps_taken = 0
    global_epoch = sum(n for _, _, n in stages[: position["stage"]]) + position["epoch"]
    for stage_index, (stage, name, stage_epochs) in enumerate(stages):
        if stage_index < position["stage"] or stage_epochs == 0:
            continue
        if resumed is not None:
            # Before anything draws a random number (a new model's initialisation does).
            restore_rng(resumed["rng"][rank] if rank < len(resumed["rng"]) else resumed["rng"][0])
            tau_schedule.load_state_dict(resumed["tau_schedule"])
        if name != current:
            # The baselines start from the warm-up weights (AdaMML §4.1: same initialisation).
            model = build(recurrent=name != "nolstm")
            warm = torch.load(out / "warmup.pt", map_location=device, weights_only=True)
            for part in ("recognisers", "fusion", "policy_features"):
                getattr(model, part).load_state_dict(_part(warm, part))
            current = name
        elif (stage, name) == ("joint", "adamml") and position["epoch"] == 0 and master:
            atomic_save(model.state_dict(), out / "warmup.pt")
        raw = model
        trainable = {
            "pretrain": [raw.recognisers, raw.policy_features, raw.policy_heads],
            "warmup": [raw.recognisers, raw.fusion],
            "joint": [raw.recognisers, raw.fusion, raw.policy_features, raw.policy],
            "finetune": [raw.recognisers, raw.fusion],
            "allmod": [raw.recognisers, raw.fusion],
        }[stage]
        for p in raw.parameters():
            p.requires_grad_(False)
        for part in trainable:
            for p in part.parameters():
                p.requires_grad_(True)
        policy_parts = (raw.policy_features, raw.policy)
        recogniser_params = [
            p for part in trainable if stage == "pretrain" or part not in policy_parts
            for p in part.parameters()
        ]  # fmt: skip
        optimisers = {"recognisers": torch.optim.SGD(
            recogniser_params, lr=pretrain_lr if stage == "pretrain" else lr,
            momentum=0.9, weight_decay=1e-4)}  # fmt: skip
        if stage == "joint":
            policy_params = [*raw.policy_features.parameters(), *raw.policy.parameters()]
            optimisers["policy"] = torch.optim.Adam(policy_params, lr=policy_lr)
        # One cosine schedule per optimiser, bound to the optimiser it drives.
        schedulers = {
            key: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=stage_epochs)
            for key, opt in optimisers.items()
        }
        budget = None
        if stage == "joint" and args.budget_gflops is not None:
            per_video = args.budget_gflops - costs.policy / 1e9 * data_config.num_segments
            budget = BudgetLoss(costs.as_tensor(raw.modalities), per_video * 1e9).to(device)
        if resumed is not None:
            if stage_index == position["stage"] and position["epoch"] > 0:
                # Mid-stage: the optimisers, schedulers and budget of this very stage.
                for key, opt in optimisers.items():
                    opt.load_state_dict(resumed["optimisers"][key])
                for key, sched in schedulers.items():
                    sched.load_state_dict(resumed["schedulers"][key])
                if budget is not None:
                    budget.load_state_dict(resumed["budget"])
            resumed = None
        net: nn.Module = (
            # Routing may skip a modality for a whole batch: its backbone then has no gradient.
            DistributedDataParallel(raw, device_ids=[device] if cuda else None,
                                    find_unused_parameters=stage == "finetune")
            if distributed else raw
        )  # fmt: skip
        first_epoch = position["epoch"] if stage_index == position["stage"] else 0
        for epoch in range(first_epoch, stage_epochs):
            sampler.set_epoch(global_epoch)
            raw.train()
            if stage == "joint":
                # AdaMML §4.1: τ = 5 · 0.965^epoch, annealed over the joint epochs.
                set_tau(raw, tau_schedule(epoch))
            if stage == "finetune":
                raw.policy_features.eval()
                raw.policy.eval()
            totals = torch.zeros(5 + len(modalities), dtype=torch.float64, device=device)
            started = time.perf_counter()
            bar = tqdm(loader, disable=not master, leave=False, dynamic_ncols=True,
                       desc=f"{name} {stage} {epoch + 1}/{stage_epochs}")  # fmt: skip
            for batch in bar:
                skips.update(batch)
                inputs = {
                    key: value.to(device, non_blocking=True)
                    for key, value in batch.items() if isinstance(value, torch.Tensor)
                }  # fmt: skip
                labels = inputs["label"]
                with autocast:
                    if stage == "pretrain":
                        # Every recogniser and policy extractor alone, as a video classifier.
                        video = net(inputs, unimodal=True).float()
                        task = sum(classification_loss(video[:, k], labels, multi_label)
                                   for k in range(video.shape[1]))  # fmt: skip
                        logits = video[:, : len(modalities)].mean(1)
                        decisions = all_on(inputs, raw)
                    elif stage in ("warmup", "allmod"):
                        result = net(inputs, decisions=all_on(inputs, raw))
                    elif stage == "joint":
                        result = net(inputs)
                    else:
                        with torch.no_grad():
                            decisions = raw.decide(inputs)
                        result = net(inputs, decisions=decisions, route=True)
                    if stage != "pretrain":
                        logits = result.logits.float()
                        task = classification_loss(logits, labels, multi_label)
                    correct = is_correct(logits.detach(), labels, multi_label)
                    efficiency = torch.zeros((), device=device)
                    if stage == "joint":
                        decisions = result.decisions.float()
                        efficiency = (
                            budget(decisions) if budget is not None
                            else efficiency_loss(decisions, correct, list(lambdas.values()), gamma)
                        )  # fmt: skip
                    loss = task + efficiency
                for opt in optimisers.values():
                    opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                for opt in optimisers.values():
                    scaler.step(opt)
                scaler.update()
                steps_taken += 1
                if args.stop_after_steps is not None and steps_taken >= args.stop_after_steps:
                    raise SystemExit(f"stopped after {steps_taken} steps (--stop-after-steps)")
                if stage != "pretrain":
                    decisions = result.decisions
                decisions = decisions.detach().float()
                count = labels.shape[0]
                totals += torch.tensor(
                    [count, loss.item() * count, task.item() * count,
                     efficiency.item() * count, correct.sum().item(),
                     *decisions.mean(1).sum(0).tolist()],
                    dtype=torch.float64, device=device,
                )  # fmt: skip
                bar.set_postfix(loss=f"{loss.item():.3f}")
            for sched in schedulers.values():
                sched.step()
            if distributed:
                dist.all_reduce(totals)
            n = totals[0].item()
            rates = {m: totals[5 + i].item() / n for i, m in enumerate(modalities)}
            if stage == "pretrain":
                rates = dict.fromkeys(modalities, 1.0)
            gflops = (costs.policy * data_config.num_segments * (stage in ("joint", "finetune"))
                      + sum(rates[m] * costs.recognition[m] for m in modalities)
                      * data_config.num_segments) / 1e9  # fmt: skip
            record = {
                "model": name, "stage": stage, "epoch": epoch + 1, "epochs": stage_epochs,
                "loss": totals[1].item() / n, "task_loss": totals[2].item() / n,
                "efficiency_loss": totals[3].item() / n, "train_acc": totals[4].item() / n,
                "selection": rates, "gflops_per_video": gflops,
                "gflops_vs_all": gflops / (all_gflops * data_config.num_segments),
                "tau": raw.policy.gate.tau, "lr": optimisers["recognisers"].param_groups[0]["lr"],
                "seconds": time.perf_counter() - started, "skipped_videos": skips.summary(),
            }  # fmt: skip
            log(f"{name:7s} {stage:8s} epoch {epoch + 1}/{stage_epochs}: loss {record['loss']:.3f}"
                f" (task {record['task_loss']:.3f}, efficiency {record['efficiency_loss']:.3f}),"
                f" train acc {100 * record['train_acc']:.1f}%, selection "
                + ", ".join(f"{m} {100 * r:.0f}%" for m, r in rates.items())
                + f", {gflops:.3f} GFLOPs/video (T={data_config.num_segments}),"
                f" τ {record['tau']:.2f}, {record['seconds']:.0f} s")  # fmt: skip
            skips = adamml_data.SkipReport()
            global_epoch += 1
            position = (
                {"stage": stage_index, "epoch": epoch + 1} if epoch + 1 < stage_epochs
                else {"stage": stage_index + 1, "epoch": 0}
            )  # fmt: skip
            rng = [rng_state()]
            if distributed:
                gathered: list[Any] = [None] * world
                dist.all_gather_object(gathered, rng[0])
                rng = gathered
            if master:
                with metrics_file.open("a") as f:
                    f.write(json.dumps(record) + "\n")
                if epoch + 1 == stage_epochs:
                    # Stage outputs: the weights each later stage / the report starts from.
                    final = {"pretrain": "pretrained", "warmup": "warmup", "finetune": name,
                             "allmod": "allmod"}.get(stage)  # fmt: skip
                    if final is not None:
                        atomic_save(raw.state_dict(), out / f"{final}.pt")
                atomic_save({
                    "position": position, "model_name": name, "model": raw.state_dict(),
                    "optimisers": {k: o.state_dict() for k, o in optimisers.items()},
                    "schedulers": {k: s.state_dict() for k, s in schedulers.items()},
                    "budget": budget.state_dict() if budget is not None else {},
                    "tau_schedule": tau_schedule.state_dict(), "rng": rng,
                }, checkpoint_file)  # fmt: skip
            if distributed:
                dist.barrier()
        position = {"stage": stage_index + 1, "epoch": 0}

    if distributed:
        dist.destroy_process_group()
    if not (master and args.evaluate):
        return None
    return evaluate.main(["--run", str(out), "--device", str(device)])


# ------------------------------------------------------------------------------------------
# Helpers (small, specific to this script)
# ------------------------------------------------------------------------------------------
def classification_loss(logits: torch.Tensor, labels: torch.Tensor, multi_label: bool) -> Any:
    """Cross-entropy (single label) or binary cross-entropy (multi-label, ActivityNet)."""
    if multi_label:
        return F.binary_cross_entropy_with_logits(logits, labels)
    return F.cross_entropy(logits, labels)


def is_correct(logits: torch.Tensor, labels: torch.Tensor, multi_label: bool) -> torch.Tensor:
    """``(B,)`` bool: the top-1 class is (one of) the label(s); Eq. 4's "correct"."""
    top = logits.argmax(-1)
    if multi_label:
        return labels.gather(1, top[:, None]).squeeze(1) > 0
    return top == labels


def resolve_lambdas(
    flag: str | None, preset: dict[str, float] | Any, costs: dict[str, int]
) -> dict[str, float]:
    """λ per modality: the flag, else the preset, else the modality's share of the largest
    per-segment cost (AdaMML §4.1)."""
    given = dict(preset)
    if flag:
        given = {k.strip(): float(v) for k, v in (item.split("=") for item in flag.split(","))}
    largest = max(costs.values())
    return {m: given.get(m, costs[m] / largest) for m in costs}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every RNG the run draws from, in a form ``torch.load(weights_only=True)`` accepts."""
    version, keys, gauss = random.getstate()
    kind, np_keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(keys), gauss],
        "numpy": [kind, torch.from_numpy(np_keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    version, keys, gauss = state["python"]
    random.setstate((version, tuple(keys), gauss))
    kind, np_keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np_keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file, then rename: a kill never leaves half a file."""
    temporary = path.with_name(path.name + ".tmp")
    torch.save(obj, temporary)
    os.replace(temporary, path)


def _part(state: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) + 1 :]: v for k, v in state.items() if k.startswith(prefix + ".")}


if __name__ == "__main__":
    assert args is not None
    main(args)
