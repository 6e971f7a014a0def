"""Train AdaMML (Panda et al., ICCV 2021) stage by stage, then evaluate it against baselines.

    python examples/adamml/train.py                        # demo: data, training, table
    python examples/adamml/train.py --preset paper --data-root DIR --pretrained imagenet
    torchrun --nproc_per_node=8 examples/adamml/train.py --preset paper ...
    python examples/adamml/train.py --out runs/x --resume  # continue a stopped run

The stages (AdaMML §4.1 "Training Details"), one row each of the table built by ``plan``:

0. pretrain: each recognition backbone and policy extractor alone, as a video classifier;
1. warmup: the recognisers with every modality on, the policy fixed;
2. joint: the policy (Adam) and the recognisers (SGD), the gates sampled with an annealed
   temperature, loss = cross-entropy + efficiency loss (Eq. 4); ``--joint-schedule``
   ``together`` steps both every batch, ``alternate`` gives whole epochs to each in turn; the
   gates' sampling noise falls from 1 to ``--noise-floor`` (see ``gate_noise``), so that the
   decisions trained are close to the deterministic ones evaluated;
3. finetune: the recognisers under the frozen policy, each backbone run only on the segments
   the policy selects.

Baselines (``--baselines``, on by default) start from the warm-up weights: the policy without
its LSTM (its own stages 2-3) and the all-modality model (the warm-up continued for as many
epochs as stages 2-3). Then ``evaluate.py`` writes the report.

A checkpoint is written atomically at the end of every epoch, the previous one kept beside it;
``--resume`` continues with the same result as an uninterrupted run.
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
import warnings
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from adagate.flops import ModalityCosts, expected_gflops
from adagate.losses import BudgetLoss, efficiency_loss, recovery_loss
from adagate.schedules import ExponentialDecay, set_tau

sys.path.insert(0, str(Path(__file__).resolve().parent))
import data as adamml_data
import evaluate
import make_dataset
import runs
from modalities import parse_modalities
from model import PRESETS, AdaMML, all_on, example_batch, measure_costs

HERE = Path(__file__).resolve().parent
DEMO_ROOT = HERE / "demo_data"
# Validation accuracy under the policy this far below every-modality-on is reported as a
# possible collapse.
COLLAPSE_POINTS = 5.0
PARTS = ("recognisers", "fusion", "policy_features", "policy", "policy_heads")


# ------------------------------------------------------------------------------------------
# Flags
# ------------------------------------------------------------------------------------------
def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Read and check the flags; a bad flag or file exits with one line naming it."""
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )  # fmt: skip
    a = p.add_argument
    a("--preset", default="demo", choices=sorted(PRESETS),
      help="sizes and hyper-parameters: 'paper' (AdaMML §4.1) or 'demo' (2 CPU cores, minutes)")
    a("--data-root", type=Path, default=DEMO_ROOT,
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
    a("--joint-schedule", choices=("together", "alternate"), default="together",
      help="stage 2: step policy and recognisers on every batch, or alternate whole epochs "
           "(AdaMML §4.1)")
    a("--noise-floor", type=float, default=1.0,
      help="stage 2: the gates' sampling noise falls linearly from 1 (Gumbel-Softmax) towards "
           "0 (the deterministic test-time decision) and is held at this floor; 1 (default) "
           "keeps the paper's constant noise; 0.25 measured cheaper when the policy is tested "
           "on as many segments as it trained on (docs/example.md)")
    a("--batch-size", type=int, help="videos per batch and process (default from the preset)")
    a("--lr", type=float, help="SGD learning rate of the recognisers")
    a("--policy-lr", type=float, help="Adam learning rate of the policy")
    a("--pretrain-lr", type=float, help="SGD learning rate of the unimodal pre-training")
    a("--lambdas", help="cost weights of Eq. 4, e.g. 'rgb=1,audio=0.05' (default: preset; a "
                        "modality not given gets its MACs / the largest modality's MACs)")
    a("--gamma", type=float, help="penalty of a wrong prediction in Eq. 4 (paper: 10)")
    a("--recovery", type=float, default=0.0,
      help="weight of adagate.recovery_loss in units of γ·λ: pulls a gate back on where its "
           "modality would have fixed a wrong video (0: off, Eq. 4 alone)")
    a("--budget-gflops", type=float,
      help="train to this many GFLOPs per video (policy included) with BudgetLoss instead of "
           "the λ-weighted efficiency loss")
    a("--metric", choices=("top1", "map"), default="top1",
      help="the report's figure: top-1 accuracy or mAP over classes (ActivityNet, FCVID)")
    a("--pretrained", choices=("none", "imagenet"), default="none",
      help="start every network that has them from torchvision's ImageNet weights, through "
           "torch.hub's cache ($TORCH_HOME/hub/checkpoints)")
    a("--init", type=Path,
      help="start from a previous run's weights: a run directory (its latest stage output) or "
           "a .pt file; e.g. a run trained with --only-stages pretrain")
    a("--only-stages", help="comma-separated stages to run (pretrain, warmup, joint, finetune); "
                            "default: all")
    a("--validate", action=argparse.BooleanOptionalAction, default=True,
      help="after each epoch with a policy, report validation accuracy under the policy next "
           "to every modality on, and warn when the policy falls far behind")
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
    a("--cache-dir", type=Path,
      help="keep decoded video frames here and reuse them every epoch (the demo set: 582 MB; "
           "measured 7%% less training CPU, 1.7-2.4x faster validation; see docs/data.md)")
    a("--stop-after-steps", type=int,
      help="exit after this many optimiser steps, as if killed (to test --resume)")
    args = p.parse_args(argv)
    check_args(p, args)
    return args


def check_args(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Turn each flag into its checked value, or ``p.error`` with a line naming it."""
    try:
        args.modalities = parse_modalities(args.modalities)
    except ValueError as error:
        p.error(f"--{error}")
    stages = ("pretrain", "warmup", "joint", "finetune")
    args.only_stages = tuple(s.strip() for s in (args.only_stages or ",".join(stages)).split(","))
    if not args.only_stages or any(s not in stages for s in args.only_stages):
        p.error(f"--only-stages: expected names from {list(stages)}, got {list(args.only_stages)}")
    try:
        args.lambdas = parse_lambdas(args.lambdas, args.modalities)
    except ValueError as error:
        p.error(f"--lambdas: {error}")
    for flag in ("epochs", "pretrain_epochs", "warmup_epochs", "finetune_epochs", "workers",
                 "recovery"):  # fmt: skip
        if (getattr(args, flag) or 0) < 0:
            p.error(f"--{flag.replace('_', '-')}: expected >= 0, got {getattr(args, flag)}")
    if not 0 <= args.noise_floor <= 1:
        p.error(f"--noise-floor: expected a number in [0, 1], got {args.noise_floor}")
    if args.batch_size is not None and args.batch_size < 1:
        p.error(f"--batch-size: expected >= 1, got {args.batch_size}")
    root = args.data_root
    if root != DEMO_ROOT or (root / "train.txt").exists():
        if not root.is_dir():
            p.error(f"--data-root: expected a directory, got {root}")
        for flag, default in (("train_list", "train.txt"), ("val_list", "val.txt"),
                              ("classes", "classes.txt")):  # fmt: skip
            path = getattr(args, flag) or root / default
            if not path.is_file():
                p.error(f"--{flag.replace('_', '-')}: no such file {path}")
    if args.informative is not None and not args.informative.is_file():
        p.error(f"--informative: no such file {args.informative}")
    if args.init is not None and not args.init.exists():
        p.error(f"--init: no such run directory or file {args.init}")
    if args.resume and args.init is not None:
        p.error("--init: a resumed run keeps the weights of its checkpoint; drop --init")


def parse_lambdas(text: str | None, modalities: Sequence[str]) -> dict[str, float]:
    """``'rgb=1,audio=0.05'`` → ``{'rgb': 1.0, 'audio': 0.05}``; empty for None."""
    lambdas: dict[str, float] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, _, value = item.partition("=")
        try:
            lambdas[name.strip()] = float(value)
        except ValueError:
            raise ValueError(f"expected 'modality=number' items, got {item!r}") from None
    unknown = sorted(set(lambdas) - set(modalities))
    if unknown:
        raise ValueError(f"expected modalities from {list(modalities)}, got {unknown}")
    return lambdas


# ------------------------------------------------------------------------------------------
# The table of stages
# ------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Stage:
    """One training stage: what it trains, with what, and how decisions are made.

    Attributes:
        name: ``pretrain``, ``warmup``, ``joint``, ``finetune`` or ``allmod``.
        model: the network it trains: ``adamml``, ``nolstm`` (the policy without its LSTM) or
            ``allmod`` (all modalities, no policy).
        epochs: epochs of the stage.
        sgd: parts of the model trained by SGD (the recognisers' optimiser).
        adam: parts trained by Adam (the policy's optimiser; AdaMML §4.1).
        lr: SGD learning rate.
        decisions: ``unimodal`` (each network alone), ``all`` (every modality on every
            segment), ``policy`` (sampled gates, computed dense so that they get a gradient) or
            ``frozen`` (the policy's deterministic decisions, routed).
        alternate: SGD and Adam take turns, one whole epoch each, Adam first.
        output: the file the stage's final weights are saved to, or None.
    """

    name: str
    model: str
    epochs: int
    sgd: tuple[str, ...]
    adam: tuple[str, ...] = ()
    lr: float = 0.0
    decisions: str = "all"
    alternate: bool = False
    output: str | None = None

    @property
    def policy_cost(self) -> bool:
        """Whether the policy runs (and its MACs count) in this stage."""
        return self.decisions in ("policy", "frozen")


def plan(config: runs.RunConfig, only: Sequence[str]) -> list[Stage]:
    """The run's stages in order; baselines start from ``warmup.pt``."""
    recognition = ("recognisers", "fusion")
    policy = ("policy_features", "policy")
    epochs = config.epochs
    alternate = config.joint_schedule == "alternate"
    adaptive = [
        Stage("joint", "adamml", epochs["joint"], recognition, policy, config.lr, "policy",
              alternate),
        Stage("finetune", "adamml", epochs["finetune"], recognition, (), config.lr, "frozen",
              output="adamml"),
    ]  # fmt: skip
    stages = [
        Stage("pretrain", "adamml", epochs["pretrain"],
              ("recognisers", "policy_features", "policy_heads"), (), config.pretrain_lr,
              "unimodal", output="pretrained"),
        Stage("warmup", "adamml", epochs["warmup"], recognition, (), config.lr, "all",
              output="warmup"),
        *adaptive,
    ]  # fmt: skip
    stages = [s for s in stages if s.name in only]
    if config.baselines and {"joint", "finetune"} & set(only):
        stages += [dataclasses.replace(s, model="nolstm", output=s.output and "nolstm")
                   for s in adaptive if s.name in only]  # fmt: skip
        allmod_epochs = sum(s.epochs for s in adaptive if s.name in only)
        stages.append(Stage("allmod", "allmod", allmod_epochs, recognition, (), config.lr,
                            "all", output="allmod"))  # fmt: skip
    return stages


# ------------------------------------------------------------------------------------------
# Processes and devices: torchrun sets RANK / WORLD_SIZE / LOCAL_RANK (nanoGPT-style).
# ------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Runtime:
    device: torch.device
    rank: int
    world: int
    autocast: Callable[[], AbstractContextManager[Any]]
    scaler: torch.amp.GradScaler
    compile: bool

    @property
    def distributed(self) -> bool:
        return self.world > 1 or dist.is_initialized()

    @property
    def master(self) -> bool:
        return self.rank == 0

    def log(self, message: str) -> None:
        if self.master:
            tqdm.write(message)


def start(args: argparse.Namespace) -> Runtime:
    device_name = args.device
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    rank, world = 0, 1
    if int(os.environ.get("RANK", -1)) != -1:
        dist.init_process_group("nccl" if device_name.startswith("cuda") else "gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
        if device_name.startswith("cuda"):
            device_name = f"cuda:{int(os.environ['LOCAL_RANK'])}"
            torch.cuda.set_device(device_name)
    device = torch.device(device_name)
    cuda = device.type == "cuda"
    amp_dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float16
    use_amp = cuda and args.amp
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    seed_everything(args.seed + rank)
    return Runtime(
        device, rank, world,
        lambda: torch.autocast("cuda", dtype=amp_dtype) if use_amp else nullcontext(),
        torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16),
        args.compile,
    )  # fmt: skip


# ------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    """Train every stage of the plan, then evaluate; returns the report (rank 0)."""
    args = parse_args(argv)
    rt = start(args)
    out = args.out or HERE / "runs" / args.preset
    out.mkdir(parents=True, exist_ok=True)
    if args.data_root == DEMO_ROOT and not (DEMO_ROOT / "train.txt").exists():
        generate_demo(rt)
    config = resolve_config(args, rt)
    classes = adamml_data.read_classes(config.classes)
    train_set = adamml_data.VideoDataset(
        config.train_list, config.data_root, config.data, train=True, classes=classes,
        strict=args.strict_data, cache_dir=args.cache_dir,
    )  # fmt: skip
    # The same seed on every rank and every epoch index: the shuffle is a function of (seed,
    # epoch), which is what makes a resumed run see the same batches.
    sampler = DistributedSampler(train_set, num_replicas=rt.world, rank=rt.rank, shuffle=True,
                                 seed=config.seed, drop_last=True)  # fmt: skip
    loader = DataLoader(
        train_set, batch_size=config.batch_size, sampler=sampler, num_workers=args.workers,
        collate_fn=adamml_data.collate, pin_memory=rt.device.type == "cuda", drop_last=True,
    )  # fmt: skip
    model = build(config, len(classes), rt)
    batch = example_batch(config.data, config.modalities)
    costs = measure_costs(model, {k: v.to(rt.device) for k, v in batch.items()})
    lambdas = {m: config.lambdas.get(m, c / max(costs.recognition.values()))
               for m, c in costs.recognition.items()}  # fmt: skip
    config = dataclasses.replace(config, lambdas=lambdas)
    if args.init is not None:
        load_init(model, args.init, rt)
    if args.pretrained == "imagenet":
        config = dataclasses.replace(config, weights=load_imagenet_into(model, rt))
    rt.log(f"AdaMML {'+'.join(config.modalities)} ({config.preset}): GFLOPs per segment "
           + ", ".join(f"{m} {c / 1e9:.4f}" for m, c in costs.recognition.items())
           + f", policy {costs.policy / 1e9:.4f} (1 GFLOP = 1e9 MACs); λ = {lambdas}, "
           f"γ = {config.gamma}")  # fmt: skip
    stages = plan(config, args.only_stages)
    if rt.master:
        runs.save_config(out, config)
        if not args.resume:
            (out / "metrics.jsonl").write_text("")
    validation = None
    if args.validate:
        val_set = adamml_data.VideoDataset(config.val_list, config.data_root, config.data,
                                           train=False, classes=classes,
                                           cache_dir=args.cache_dir)  # fmt: skip
        # Its own generator: validating must not move the training's random numbers.
        validation = DataLoader(val_set, batch_size=config.batch_size, num_workers=args.workers,
                                collate_fn=adamml_data.collate, generator=torch.Generator())
    trainer = Trainer(config, rt, loader, sampler, costs, out, len(classes), args, validation)
    trainer.run(stages, model)
    if rt.distributed:
        dist.destroy_process_group()
    if not (rt.master and args.evaluate and (out / "adamml.pt").exists()):
        return None
    return evaluate.evaluate(out, device=rt.device)


def generate_demo(rt: Runtime) -> None:
    if rt.master:
        began = time.perf_counter()
        counts = make_dataset.make_dataset(make_dataset.DemoSpec(), DEMO_ROOT, workers=2)
        rt.log(f"generated the demo set ({counts['train']} train + {counts['val']} val mp4 "
               f"clips) in {DEMO_ROOT} in {time.perf_counter() - began:.0f} s")  # fmt: skip
    if rt.distributed:
        dist.barrier()


def resolve_config(args: argparse.Namespace, rt: Runtime) -> runs.RunConfig:
    """The flags, with the preset's values where a flag is not given."""
    preset = PRESETS[args.preset]
    root = args.data_root
    given = {"pretrain": args.pretrain_epochs, "warmup": args.warmup_epochs,
             "joint": args.epochs, "finetune": args.finetune_epochs}  # fmt: skip
    informative = args.informative or root / "informative.json"
    data_config = adamml_data.DataConfig
    data_preset = data_config.paper if preset.name == "paper" else data_config.demo
    data = data_preset(modalities=args.modalities, **preset.data)
    return runs.RunConfig(
        preset=preset.name, modalities=args.modalities, data_root=str(root),
        train_list=str(args.train_list or root / "train.txt"),
        val_list=str(args.val_list or root / "val.txt"),
        classes=str(args.classes or root / "classes.txt"),
        informative=str(informative) if informative.exists() else None, data=data,
        epochs={stage: getattr(preset, f"{stage}_epochs") if n is None else n
                for stage, n in given.items()},
        batch_size=args.batch_size or preset.batch_size, lr=args.lr or preset.lr,
        pretrain_lr=args.pretrain_lr or preset.pretrain_lr,
        policy_lr=args.policy_lr or preset.policy_lr,
        lambdas=args.lambdas or dict(preset.lambdas),
        gamma=preset.gamma if args.gamma is None else args.gamma, recovery=args.recovery,
        budget_gflops=args.budget_gflops, joint_schedule=args.joint_schedule,
        metric=args.metric, baselines=args.baselines, seed=args.seed, world_size=rt.world,
        weights={}, command=" ".join(sys.argv), noise_floor=args.noise_floor,
    )  # fmt: skip


def build(config: runs.RunConfig, num_classes: int, rt: Runtime, recurrent: bool = True) -> AdaMML:
    """The model on its device; SyncBatchNorm under torchrun on CUDA (gloo has none)."""
    net = AdaMML(config.modalities, num_classes, PRESETS[config.preset], recurrent=recurrent)
    if rt.distributed and rt.device.type == "cuda":
        net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
    net = net.to(rt.device, memory_format=torch.channels_last)
    if rt.compile:
        for module in [*net.recognisers.values(), *net.policy_features.values()]:
            module.compile(dynamic=True)
    return net


def load_init(model: AdaMML, path: Path, rt: Runtime) -> None:
    """``--init``: a checkpoint file, or a run directory's latest stage output; strict keys."""
    if path.is_dir():
        found = [path / f"{n}.pt" for n in ("adamml", "warmup", "pretrained")
                 if (path / f"{n}.pt").exists()]  # fmt: skip
        if not found:
            raise SystemExit(f"--init: {path} has no adamml.pt, warmup.pt or pretrained.pt")
        path = found[0]
    try:
        state = torch.load(path, map_location=rt.device, weights_only=True)
    except (RuntimeError, OSError, EOFError) as error:
        raise SystemExit(f"--init: cannot read {path}: {error}") from None
    try:
        model.load_state_dict(state.get("model", state))
    except RuntimeError as error:
        raise SystemExit(f"--init: {path} does not fit this model: {error}") from None
    rt.log(f"initialised every network from {path}")


def load_imagenet_into(model: AdaMML, rt: Runtime) -> dict[str, str]:
    """``--pretrained imagenet``; returns where each network's weights came from."""
    from pretrained import load_imagenet

    networks: dict[str, nn.Module] = {f"recognisers.{m}": n for m, n in model.recognisers.items()}
    networks |= {f"policy_features.{m}": f.net for m, f in model.policy_features.items()}
    try:
        return load_imagenet(networks, progress=rt.master, log=rt.log)
    except FileNotFoundError as error:
        raise SystemExit(f"--pretrained imagenet: {error}") from None


class Trainer:
    """The generic epoch loop over the table of stages, with checkpoints and resume."""

    def __init__(
        self, config: runs.RunConfig, rt: Runtime, loader: DataLoader[Any],
        sampler: DistributedSampler[Any], costs: ModalityCosts, out: Path, num_classes: int,
        args: argparse.Namespace, validation: DataLoader[Any] | None = None,
    ) -> None:  # fmt: skip
        self.config, self.rt, self.loader, self.sampler = config, rt, loader, sampler
        self.costs, self.out, self.num_classes = costs, out, num_classes
        self.multi_label = loader.dataset.multi_label  # type: ignore[attr-defined]
        self.resume, self.stop_after = args.resume, args.stop_after_steps
        self.validation = validation
        self.steps = 0
        self.tau_schedule = ExponentialDecay(PRESETS[config.preset].tau_start,
                                             PRESETS[config.preset].tau_rate)  # fmt: skip

    def run(self, stages: list[Stage], model: AdaMML) -> None:
        rt = self.rt
        position = {"stage": 0, "epoch": 0}
        current = "adamml"  # the network held in `model`
        resumed = runs.load_checkpoint(self.out, rt.device) if self.resume else None
        if resumed is not None:
            position, current = resumed["position"], resumed["model_name"]
            model = build(self.config, self.num_classes, rt, recurrent=current != "nolstm")
            model.load_state_dict(resumed["model"])
            at = stages[min(position["stage"], len(stages) - 1)].name
            rt.log(f"resumed from {self.out}: stage {position['stage']} ({at}), "
                   f"epoch {position['epoch']}")  # fmt: skip
        global_epoch = sum(s.epochs for s in stages[: position["stage"]]) + position["epoch"]
        for index, stage in enumerate(stages):
            if index < position["stage"] or stage.epochs == 0:
                continue
            if resumed is not None:
                # Before anything draws a random number (a new model's initialisation does).
                restore_rng(resumed["rng"][min(rt.rank, len(resumed["rng"]) - 1)])
                self.tau_schedule.load_state_dict(resumed["tau_schedule"])
            if stage.model != current:
                # The baselines start from the warm-up weights (AdaMML §4.1: same initialisation).
                model = build(self.config, self.num_classes, rt, recurrent=stage.model != "nolstm")
                warm = torch.load(self.out / "warmup.pt", map_location=rt.device, weights_only=True)
                for part in ("recognisers", "fusion", "policy_features"):
                    getattr(model, part).load_state_dict(_part(warm, part))
                current = stage.model
            elif stage.name == "joint" and position["epoch"] == 0 and rt.master:
                runs.atomic_save(model.state_dict(), self.out / "warmup.pt")
            first = position["epoch"] if index == position["stage"] else 0
            mid_stage = resumed if resumed is not None and first > 0 else None
            self.run_stage(stage, index, model, first, global_epoch, mid_stage)
            global_epoch += stage.epochs - first
            resumed = None
            position = {"stage": index + 1, "epoch": 0}

    def optimisers(self, stage: Stage, model: AdaMML) -> dict[str, torch.optim.Optimizer]:
        def params(parts: Sequence[str]) -> list[nn.Parameter]:
            return [p for part in parts for p in getattr(model, part).parameters()]

        found = {"recognisers": torch.optim.SGD(params(stage.sgd), lr=stage.lr, momentum=0.9,
                                                weight_decay=1e-4)}  # fmt: skip
        if stage.adam:
            found["policy"] = torch.optim.Adam(params(stage.adam), lr=self.config.policy_lr)
        return found

    def run_stage(
        self, stage: Stage, index: int, model: AdaMML, first: int, global_epoch: int,
        resumed: dict[str, Any] | None,
    ) -> None:  # fmt: skip
        config, rt = self.config, self.rt
        optimisers = self.optimisers(stage, model)
        # One cosine schedule per optimiser, bound to the optimiser it drives.
        schedulers = {k: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=stage.epochs)
                      for k, o in optimisers.items()}  # fmt: skip
        budget = None
        if stage.decisions == "policy" and config.budget_gflops is not None:
            per_video = config.budget_gflops - self.costs.policy / 1e9 * config.data.num_segments
            budget = BudgetLoss(self.costs.as_tensor(model.modalities), per_video * 1e9)
            budget = budget.to(rt.device)
        if resumed is not None:
            for key, opt in optimisers.items():
                opt.load_state_dict(resumed["optimisers"][key])
            for key, sched in schedulers.items():
                sched.load_state_dict(resumed["schedulers"][key])
            if budget is not None:
                budget.load_state_dict(resumed["budget"])
        for epoch in range(first, stage.epochs):
            # Alternating: Adam (the policy) on even epochs, SGD (the recognisers) on odd ones.
            stepping, trained = list(optimisers), [*stage.sgd, *stage.adam]
            if stage.alternate:
                policy_turn = epoch % 2 == 0
                stepping = ["policy" if policy_turn else "recognisers"]
                trained = list(stage.adam if policy_turn else stage.sgd)
            for name in PARTS:
                getattr(model, name).requires_grad_(name in trained)
            self.sampler.set_epoch(global_epoch + epoch - first)
            record = self.run_epoch(stage, epoch, model, optimisers, stepping, budget)
            if stage.policy_cost and self.validation is not None and rt.master:
                record |= self.validate(model)
            with warnings.catch_warnings():
                # Alternating: the idle optimiser's schedule still follows the stage's epochs.
                warnings.filterwarnings("ignore", "Detected call of `lr_scheduler", UserWarning)
                for sched in schedulers.values():
                    sched.step()
            done = epoch + 1 == stage.epochs
            position = {"stage": index + (1 if done else 0), "epoch": 0 if done else epoch + 1}
            self.save(stage, model, position, optimisers, schedulers, budget, record)

    def run_epoch(
        self, stage: Stage, epoch: int, model: AdaMML,
        optimisers: Mapping[str, torch.optim.Optimizer], stepping: Sequence[str],
        budget: BudgetLoss | None,
    ) -> dict[str, Any]:  # fmt: skip
        """One pass over the data, stepping the optimisers named in ``stepping``."""
        config, rt = self.config, self.rt
        modalities = config.modalities
        model.train()
        if stage.decisions == "policy":
            # AdaMML §4.1: τ = 5 · 0.965^epoch, annealed over the joint epochs.
            set_tau(model, self.tau_schedule(epoch),
                    noise=gate_noise(epoch, stage.epochs, config.noise_floor))  # fmt: skip
        if stage.decisions == "frozen":
            model.policy_features.eval()
            model.policy.eval()
        net: nn.Module = model
        if rt.distributed:
            # Routing may skip a modality for a whole batch: its backbone then has no gradient.
            net = DistributedDataParallel(
                model, device_ids=[rt.device] if rt.device.type == "cuda" else None,
                find_unused_parameters=stage.decisions == "frozen" or stage.alternate,
            )  # fmt: skip
        cost_model = self.costs if stage.policy_cost else ModalityCosts(self.costs.recognition)
        totals = torch.zeros(6 + len(modalities), dtype=torch.float64, device=rt.device)
        skips = adamml_data.SkipReport()
        began = time.perf_counter()
        bar = tqdm(self.loader, disable=not rt.master, leave=False, dynamic_ncols=True,
                   desc=f"{stage.model} {stage.name} {epoch + 1}/{stage.epochs}")  # fmt: skip
        for batch in bar:
            skips.update(batch)
            inputs = {k: v.to(rt.device, non_blocking=True)
                      for k, v in batch.items() if isinstance(v, Tensor)}  # fmt: skip
            with rt.autocast():
                loss, task, efficiency, logits, decisions = self.losses(
                    stage, net, model, inputs, budget
                )
            for key in stepping:
                optimisers[key].zero_grad(set_to_none=True)
            rt.scaler.scale(loss).backward()
            for key in stepping:
                rt.scaler.step(optimisers[key])
            rt.scaler.update()
            self.steps += 1
            if self.stop_after is not None and self.steps >= self.stop_after:
                raise SystemExit(f"stopped after {self.steps} steps (--stop-after-steps)")
            correct = is_correct(logits.detach(), inputs["label"], self.multi_label)
            decisions = decisions.detach().float()
            count = len(correct)
            totals += torch.tensor(
                [count, loss.item() * count, task.item() * count, efficiency.item() * count,
                 correct.sum().item(), expected_gflops(decisions.double(), cost_model).sum().item(),
                 *decisions.mean(1).sum(0).tolist()],
                dtype=torch.float64, device=rt.device,
            )  # fmt: skip
            bar.set_postfix(loss=f"{loss.item():.3f}")
        if rt.distributed:
            dist.all_reduce(totals)
        n, gflops = totals[0].item(), totals[5].item() / totals[0].item()
        all_gflops = sum(self.costs.recognition.values()) / 1e9 * config.data.num_segments
        rates = {m: totals[6 + i].item() / n for i, m in enumerate(modalities)}
        record = {
            "model": stage.model, "stage": stage.name, "epoch": epoch + 1, "epochs": stage.epochs,
            "loss": totals[1].item() / n, "task_loss": totals[2].item() / n,
            "efficiency_loss": totals[3].item() / n, "train_acc": totals[4].item() / n,
            "selection": rates, "gflops_per_video": gflops, "gflops_vs_all": gflops / all_gflops,
            "tau": model.policy.gate.tau, "noise": model.policy.gate.noise,
            "lr": optimisers["recognisers"].param_groups[0]["lr"],
            "trained": list(stepping), "seconds": time.perf_counter() - began,
            "skipped_videos": skips.summary(),
        }  # fmt: skip
        rt.log(f"{stage.model:7s} {stage.name:8s} epoch {epoch + 1}/{stage.epochs}: loss "
               f"{record['loss']:.3f} (task {record['task_loss']:.3f}, efficiency "
               f"{record['efficiency_loss']:.3f}), train acc {100 * record['train_acc']:.1f}%, "
               "selection " + ", ".join(f"{m} {100 * r:.0f}%" for m, r in rates.items())
               + f", {gflops:.3f} GFLOPs/video (T={config.data.num_segments}), "
               f"τ {record['tau']:.2f}, noise {record['noise']:.2f}, "
               f"{record['seconds']:.0f} s")  # fmt: skip
        return record

    def losses(
        self, stage: Stage, net: nn.Module, model: AdaMML, inputs: Mapping[str, Tensor],
        budget: BudgetLoss | None,
    ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:  # fmt: skip
        """``(loss, task loss, efficiency loss, video logits (B, C), decisions (B, T, M))``."""
        labels = inputs["label"]
        zero = torch.zeros((), device=labels.device)
        if stage.decisions == "unimodal":
            # Every recogniser and policy extractor alone, as a video classifier.
            video = net(inputs, unimodal=True).float()
            task = sum(self.task_loss(video[:, k], labels) for k in range(video.shape[1]))
            logits = video[:, : len(model.modalities)].mean(1)
            return task, task, zero, logits, all_on(inputs, model)
        if stage.decisions == "all":
            result = net(inputs, decisions=all_on(inputs, model))
        elif stage.decisions == "policy":
            result = net(inputs)
        else:
            with torch.no_grad():
                decisions = model.decide(inputs)
            result = net(inputs, decisions=decisions, route=True)
        logits = result.logits.float()
        task = self.task_loss(logits, labels)
        efficiency = zero
        if stage.decisions == "policy":
            decisions = result.decisions.float()
            correct = is_correct(logits.detach(), labels, self.multi_label)
            lambdas = torch.tensor(list(self.config.lambdas.values()), device=labels.device)
            efficiency = (
                budget(decisions) if budget is not None
                else efficiency_loss(decisions, correct, lambdas, self.config.gamma)
            )  # fmt: skip
            if self.config.recovery > 0:
                fixable = self.fixable(model, result.segment_logits, decisions, labels, correct)
                weights = self.config.recovery * self.config.gamma * lambdas
                efficiency = efficiency + recovery_loss(decisions, fixable, weights)
        return task + efficiency, task, efficiency, logits, result.decisions

    @torch.no_grad()
    def fixable(
        self, model: AdaMML, segment_logits: Tensor, decisions: Tensor, labels: Tensor,
        correct: Tensor,
    ) -> Tensor:  # fmt: skip
        """``(B, M)`` bool: the video is wrong, and right with modality m on every segment.

        Free while the policy trains dense: every segment's logits are already computed."""
        fixed = []
        for k in range(decisions.shape[-1]):
            on = decisions.detach().clone()
            on[..., k] = 1
            fused = model.fusion(segment_logits.detach(), on).float()
            fixed.append(is_correct(fused, labels, self.multi_label))
        return ~correct[:, None] & torch.stack(fixed, dim=1)

    def validate(self, model: AdaMML) -> dict[str, Any]:
        """The collapse detector: validation accuracy under the policy (routed, deterministic)
        next to the same recognisers' with every modality on, logged and warned about."""
        model.eval()
        hits, videos, gflops = torch.zeros(2), 0, 0.0
        with torch.inference_mode():
            for batch in self.validation or ():
                inputs = {k: v.to(self.rt.device) for k, v in batch.items()
                          if isinstance(v, Tensor)}  # fmt: skip
                labels = inputs["label"]
                result = model(inputs, route=True)
                everything = all_on(inputs, model)
                dense = model(inputs, decisions=everything, route=True).logits
                for i, logits in enumerate((result.logits, dense)):
                    hits[i] += is_correct(logits.float(), labels, self.multi_label).sum().cpu()
                gflops += expected_gflops(result.decisions.double(), self.costs).sum().item()
                videos += len(labels)
        model.train()
        segments = self.config.data.test_segments
        policy, everything_on = (hits / videos).tolist()
        found = {"val_policy": policy, "val_all_on": everything_on,
                 "val_gflops_vs_all": gflops / videos
                 / (sum(self.costs.recognition.values()) / 1e9 * segments)}  # fmt: skip
        self.rt.log(f"        validation: {100 * policy:.1f}% under the policy at "
                    f"{100 * found['val_gflops_vs_all']:.0f}% of the GFLOPs, "
                    f"{100 * everything_on:.1f}% with every modality on")  # fmt: skip
        if everything_on - policy > COLLAPSE_POINTS / 100:
            warnings.warn(
                f"the policy trails every-modality-on by {100 * (everything_on - policy):.1f} "
                "points on the validation set: it may have collapsed onto a modality that "
                "cannot tell some classes apart (see the per-class table of the report; "
                "--recovery pulls such gates back on)", stacklevel=1,
            )  # fmt: skip
        return found

    def task_loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        """Cross-entropy (single label) or binary cross-entropy (multi-label, ActivityNet)."""
        if self.multi_label:
            return F.binary_cross_entropy_with_logits(logits, labels)
        return F.cross_entropy(logits, labels)

    def save(
        self, stage: Stage, model: AdaMML, position: dict[str, int],
        optimisers: Mapping[str, torch.optim.Optimizer],
        schedulers: Mapping[str, torch.optim.lr_scheduler.LRScheduler],
        budget: BudgetLoss | None, record: dict[str, Any],
    ) -> None:  # fmt: skip
        """Log the epoch; write the stage output at its end and the resume point."""
        rt = self.rt
        rng = [rng_state()]
        if rt.distributed:
            gathered: list[Any] = [None] * rt.world
            dist.all_gather_object(gathered, rng[0])
            rng = gathered
        if rt.master:
            with (self.out / "metrics.jsonl").open("a") as f:
                f.write(json.dumps(record) + "\n")
            if stage.output is not None and record["epoch"] == stage.epochs:
                runs.atomic_save(model.state_dict(), self.out / f"{stage.output}.pt")
            runs.save_checkpoint(self.out, {
                "position": position, "model_name": stage.model, "model": model.state_dict(),
                "optimisers": {k: o.state_dict() for k, o in optimisers.items()},
                "schedulers": {k: s.state_dict() for k, s in schedulers.items()},
                "budget": budget.state_dict() if budget is not None else {},
                "tau_schedule": self.tau_schedule.state_dict(), "rng": rng,
            })  # fmt: skip
        if rt.distributed:
            dist.barrier()


# ------------------------------------------------------------------------------------------
# Helpers (small, specific to this script)
# ------------------------------------------------------------------------------------------
def gate_noise(epoch: int, epochs: int, floor: float) -> float:
    """The gates' noise scale in epoch ``epoch`` of ``epochs``: ``max(floor, 1 - epoch / (epochs -
    1))``, from the Gumbel-Softmax (1) at the first epoch towards the test-time decision (0)
    at the last.

    Measured on the demo set (docs/example.md): with the paper's constant noise the last joint
    epoch trained with RGB on 38 % of the segments and evaluation turned it on for 47 %, since
    a gate at P(on) = 0.6 is paid for 60 % of the time in training and every time at test;
    annealing the noise makes the policy pay in training for the decisions it will take. Down
    to 0 it collapses (nothing explores the gates near their boundary any more), hence the
    floor. On the demo's 5-train / 10-test protocol the more decisive LSTM policy learned to
    stop looking after the first segments, so the default floor is 1 (no annealing)."""
    return max(floor, 1.0 - epoch / max(epochs - 1, 1))


def is_correct(logits: Tensor, labels: Tensor, multi_label: bool) -> Tensor:
    """``(B,)`` bool: the top-1 class is (one of) the label(s); Eq. 4's "correct"."""
    top = logits.argmax(-1)
    if multi_label:
        return labels.gather(1, top[:, None]).squeeze(1) > 0
    return top == labels


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


def _part(state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    return {k[len(prefix) + 1 :]: v for k, v in state.items() if k.startswith(prefix + ".")}


if __name__ == "__main__":
    main()
