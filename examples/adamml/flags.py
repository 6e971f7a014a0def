"""``train.py``'s flags: read, checked (one ``parser.error`` line naming a bad flag or file), and
resolved against the preset into a :class:`runs.RunConfig`."""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Sequence
from pathlib import Path

import data as adamml_data
import runs
from calibration import Rule
from data.lists import write_list
from modalities import parse_modalities
from model import PRESETS

HERE = Path(__file__).resolve().parent
DEMO_ROOT = HERE / "demo_data"
STAGES = ("pretrain", "warmup", "joint", "finetune")


def parse_args(argv: Sequence[str] | None, doc: str) -> argparse.Namespace:
    """Read and check the flags (``doc``: the script's docstring, for ``--help``); a bad flag or
    file exits with one line naming it."""
    p = argparse.ArgumentParser(
        description=doc.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=doc.split("\n\n", 1)[1],
    )  # fmt: skip
    a = p.add_argument
    a("--preset", default="demo", choices=sorted(PRESETS),
      help="sizes and hyper-parameters: 'paper' (AdaMML §4.1), 'demo' (2 CPU cores, minutes) "
           "or 'tiny' (32² inputs, 2 segments, one epoch per stage: a smoke test)")
    a("--data-root", type=Path, default=DEMO_ROOT,
      help="directory the list files' paths are relative to; the demo set is generated here "
           "if it is missing (default: examples/adamml/demo_data)")
    a("--train-list", type=Path, help="training list: 'path label' lines (default ROOT/train.txt)")
    a("--val-list", type=Path, help="validation list, only reported on (default ROOT/val.txt)")
    a("--calib-list", type=Path,
      help="calibration list: checkpoints and the operating point are chosen on it (default "
           "ROOT/calib.txt if present, else --calib-fraction of the training list)")
    a("--calib-fraction", type=float, default=0.1,
      help="without a calibration list: this stratified share of the training list is held "
           "back for calibration (lists written into the run directory)")
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
    a("--joint-schedule", choices=("cached", "together", "alternate"), default="cached",
      help="stage 2: the policy alone on cached dense outputs of the frozen networks "
           "(default), or the paper's dense joint training, policy and recognisers stepped on "
           "every batch or in alternate epochs (AdaMML §4.1)")
    a("--cache-repeats", type=int, default=4,
      help="stage 2 cached: augmented samples of each training video in the cache")
    a("--policy-restarts", type=int, default=2,
      help="stage 2 cached: trainings of the policy from new weights; the best epoch of all "
           "on the calibration list is kept")
    a("--policy-temperature", type=float, default=10.0,
      help="stage 2 cached: the policy's task loss is the cross-entropy of the fused logits "
           "divided by this (1: the paper's; see policy_stage.py)")
    a("--point-budget", type=float,
      help="operating point: the thresholds with the highest log-likelihood on the "
           "calibration list at most this share of every modality's GFLOPs (default 0.5 "
           "unless --point-max-drop)")
    a("--point-max-drop", type=float,
      help="operating point: the cheapest thresholds at most this many points of accuracy "
           "below every modality on, on the calibration list")
    a("--policy-extractor", choices=("mobilenet_v2", "conv"),
      help="the policy's own feature extractors: MobileNetV2 (AdaMML §4.1) or a plain strided "
           "ConvNet, several times cheaper in CPU time (default: the preset's)")
    a("--warmup-gating", choices=("all", "random"), default="all",
      help="stage 1: every modality on every segment, or each on with probability 1/2 (the "
           "reference code's warm-up under an untrained policy)")
    a("--noise-floor", type=float, default=1.0,
      help="stage 2: the gates' sampling noise falls linearly from 1 (Gumbel-Softmax) towards "
           "0 (the deterministic test-time decision) and is held at this floor; 1 (default) "
           "keeps the paper's constant noise")
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
      help="the report's figure and the calibration's: top-1 accuracy or mAP over classes")
    a("--pretrained", choices=("none", "imagenet"), default="none",
      help="start every network that has them from torchvision's ImageNet weights, through "
           "torch.hub's cache ($TORCH_HOME/hub/checkpoints)")
    a("--init", type=Path,
      help="start from a previous run's weights: a run directory (its latest stage output) or "
           "a .pt file; e.g. a run trained with --only-stages pretrain")
    a("--only-stages", help="comma-separated stages to run (pretrain, warmup, joint, finetune); "
                            "default: all")
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
      help="keep decoded video frames here and reuse them every epoch (see docs/data.md)")
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
    args.only_stages = tuple(s.strip() for s in (args.only_stages or ",".join(STAGES)).split(","))
    if not args.only_stages or any(s not in STAGES for s in args.only_stages):
        p.error(f"--only-stages: expected names from {list(STAGES)}, got {list(args.only_stages)}")
    try:
        args.lambdas = parse_lambdas(args.lambdas, args.modalities)
    except ValueError as error:
        p.error(f"--lambdas: {error}")
    for flag in ("epochs", "pretrain_epochs", "warmup_epochs", "finetune_epochs", "workers",
                 "recovery", "point_max_drop"):  # fmt: skip
        if (getattr(args, flag) or 0) < 0:
            p.error(f"--{flag.replace('_', '-')}: expected >= 0, got {getattr(args, flag)}")
    if not 0 <= args.noise_floor <= 1:
        p.error(f"--noise-floor: expected a number in [0, 1], got {args.noise_floor}")
    for flag in ("batch_size", "cache_repeats", "policy_restarts"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')}: expected >= 1, got {getattr(args, flag)}")
    if args.point_budget is not None and not 0 < args.point_budget <= 1:
        p.error(f"--point-budget: expected a share of the GFLOPs in (0, 1], got "
                f"{args.point_budget}")  # fmt: skip
    if args.point_budget is not None and args.point_max_drop is not None:
        p.error("--point-max-drop: expected either it or --point-budget, got both")
    if not args.policy_temperature > 0:
        p.error(f"--policy-temperature: expected > 0, got {args.policy_temperature}")
    if not 0 < args.calib_fraction < 1:
        p.error(f"--calib-fraction: expected a share in (0, 1), got {args.calib_fraction}")
    root = args.data_root
    if root != DEMO_ROOT or (root / "train.txt").exists():
        if not root.is_dir():
            p.error(f"--data-root: expected a directory, got {root}")
        for flag, default in (("train_list", "train.txt"), ("val_list", "val.txt"),
                              ("classes", "classes.txt")):  # fmt: skip
            path = getattr(args, flag) or root / default
            if not path.is_file():
                p.error(f"--{flag.replace('_', '-')}: no such file {path}")
    for flag in ("informative", "calib_list"):
        path = getattr(args, flag)
        if path is not None and not path.is_file():
            p.error(f"--{flag.replace('_', '-')}: no such file {path}")
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


def resolve_config(args: argparse.Namespace, world: int, out: Path) -> runs.RunConfig:
    """The flags, with the preset's values where a flag is not given."""
    preset = PRESETS[args.preset]
    root = args.data_root
    given = {"pretrain": args.pretrain_epochs, "warmup": args.warmup_epochs,
             "joint": args.epochs, "finetune": args.finetune_epochs}  # fmt: skip
    informative = args.informative or root / "informative.json"
    data_config = adamml_data.DataConfig
    data_preset = data_config.paper if preset.name == "paper" else data_config.demo
    data = data_preset(modalities=args.modalities, **preset.data)
    train_list, calib_list = calibration_lists(args, out)
    budget = args.point_budget
    if budget is None and args.point_max_drop is None:
        budget = 0.5
    return runs.RunConfig(
        preset=preset.name, modalities=args.modalities, data_root=str(root),
        train_list=str(train_list), val_list=str(args.val_list or root / "val.txt"),
        calib_list=str(calib_list), classes=str(args.classes or root / "classes.txt"),
        informative=str(informative) if informative.exists() else None, data=data,
        epochs={stage: getattr(preset, f"{stage}_epochs") if n is None else n
                for stage, n in given.items()},
        batch_size=args.batch_size or preset.batch_size, lr=args.lr or preset.lr,
        pretrain_lr=args.pretrain_lr or preset.pretrain_lr,
        policy_lr=args.policy_lr or preset.policy_lr,
        lambdas=args.lambdas or dict(preset.lambdas),
        gamma=preset.gamma if args.gamma is None else args.gamma, recovery=args.recovery,
        budget_gflops=args.budget_gflops, joint_schedule=args.joint_schedule,
        metric=args.metric, baselines=args.baselines, seed=args.seed, world_size=world,
        weights={}, command=" ".join(sys.argv), noise_floor=args.noise_floor,
        cache_repeats=args.cache_repeats, rule=Rule(budget, args.point_max_drop),
        policy_restarts=args.policy_restarts, policy_temperature=args.policy_temperature,
        policy_extractor=args.policy_extractor, warmup_gating=args.warmup_gating,
    )  # fmt: skip


def calibration_lists(args: argparse.Namespace, out: Path) -> tuple[Path, Path]:
    """``(training list, calibration list)``: the given or ``ROOT/calib.txt``, else a stratified
    ``--calib-fraction`` of the training list (at least one video of each class with two or
    more), both written into ``out`` in the training list's format."""
    root = args.data_root
    train_list = args.train_list or root / "train.txt"
    calib = args.calib_list or root / "calib.txt"
    if args.calib_list is not None or calib.is_file():
        return train_list, calib
    classes = adamml_data.read_classes(args.classes or root / "classes.txt")
    records, _ = adamml_data.parse_list_file(train_list, classes)
    by_label: dict[tuple[int, ...], list[int]] = {}
    for index, record in enumerate(records):
        by_label.setdefault(record.labels, []).append(index)
    rng = random.Random(args.seed)
    held: set[int] = set()
    for members in by_label.values():
        if len(members) > 1:
            held.update(rng.sample(members, max(1, round(args.calib_fraction * len(members)))))
    suffix = Path(train_list).suffix if Path(train_list).suffix == ".csv" else ".txt"
    train_out, calib_out = out / f"train_split{suffix}", out / f"calib_split{suffix}"
    write_list(train_out, [r for i, r in enumerate(records) if i not in held])
    write_list(calib_out, [r for i, r in enumerate(records) if i in held])
    return train_out, calib_out
