"""Train AdaMML (Panda et al., ICCV 2021) stage by stage, then evaluate it against baselines.

    python examples/adamml/train.py                        # demo: data, training, table
    python examples/adamml/train.py --preset paper --data-root DIR --pretrained imagenet
    torchrun --nproc_per_node=8 examples/adamml/train.py --preset paper ...
    python examples/adamml/train.py --out runs/x --resume  # continue a stopped run

The stages (AdaMML §4.1 "Training Details"), one row each of the table built by ``plan``; each
names a decision mode (``modes.py``):

0. pretrain: each recognition backbone and policy extractor alone, as a video classifier;
1. warmup: the recognisers with every modality on, the policy fixed;
2. joint: the policy learns with Gumbel gates and the efficiency loss (Eq. 4). ``cached``
   (default): the recognisers and extractors stay frozen and the policy learns on their dense
   outputs, computed once on augmented training samples as long as the test protocol
   (``policy_stage.py``); ``together`` / ``alternate``: the paper's dense joint training of
   policy (Adam) and recognisers (SGD), every batch or in alternate epochs. After every epoch
   the policy's operating point is chosen on the calibration list and the best epoch is kept;
3. finetune: the recognisers under the frozen policy, each backbone run only on the segments
   the policy selects; then the operating point is chosen again on the calibration list.

Baselines (``--baselines``, on by default) start from the warm-up weights: the policy without
its LSTM (its own stages 2-3) and the all-modality model (the warm-up continued for as many
recogniser epochs as AdaMML's). Then ``evaluate.py`` writes the report on the validation list.

A checkpoint is written atomically at the end of every epoch, the previous one kept beside it;
``--resume`` continues with the same result as an uninterrupted run.
"""

from __future__ import annotations

import os

# OpenMP threads that spin while waiting collapse when the cores are shared (a DataLoader
# worker, another process): measured 16 s vs 1.4 s per demo step on 2 busy cores. Must be set
# before torch loads its OpenMP runtime.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import copy
import dataclasses
import json
import shlex
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from adagate.flops import ModalityCosts, expected_gflops
from adagate.losses import BudgetLoss
from adagate.schedules import ExponentialDecay, set_tau

sys.path.insert(0, str(Path(__file__).resolve().parent))
import data as adamml_data
import evaluate
import flags
import make_dataset
import modes
import runs
from calibration import Calibrated, Dense, calibrate, dense_pass, point_record
from flags import DEMO_ROOT, resolve_config
from loaders import Data
from model import PRESETS, AdaMML, example_batch, measure_costs
from policy_stage import PolicySchedule, learn_policy
from pretrained import load_imagenet_into
from runtime import Runtime, build, restore_rng, rng_state, start

HERE = Path(__file__).resolve().parent
PARTS = ("recognisers", "fusion", "policy_features", "policy", "policy_heads")


def parse_args(argv: Sequence[str] | None = None) -> Any:
    """The checked flags (``flags.py``)."""
    return flags.parse_args(argv, __doc__ or "")


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
        mode: how decisions are made (``modes.py``).
        sgd: parts of the model trained by SGD (the recognisers' optimiser).
        adam: parts trained by Adam (the policy's optimiser; AdaMML §4.1).
        lr: SGD learning rate.
        alternate: SGD and Adam take turns, one whole epoch each, Adam first.
        output: the file the stage's final weights are saved to, or None.
    """

    name: str
    model: str
    epochs: int
    mode: modes.Mode
    sgd: tuple[str, ...] = ()
    adam: tuple[str, ...] = ()
    lr: float = 0.0
    alternate: bool = False
    output: str | None = None


def plan(config: runs.RunConfig, only: Sequence[str]) -> list[Stage]:
    """The run's stages in order; baselines start from ``warmup.pt``."""
    recognition = ("recognisers", "fusion")
    epochs = config.epochs
    if config.joint_schedule == "cached":
        joint = Stage("joint", "adamml", epochs["joint"], modes.CACHED, adam=("policy",))
    else:
        joint = Stage("joint", "adamml", epochs["joint"], modes.JOINT, recognition,
                      ("policy_features", "policy"), config.lr,
                      config.joint_schedule == "alternate")  # fmt: skip
    adaptive = [joint, Stage("finetune", "adamml", epochs["finetune"], modes.FROZEN,
                             recognition, lr=config.lr, output="adamml")]  # fmt: skip
    stages = [
        Stage("pretrain", "adamml", epochs["pretrain"], modes.UNIMODAL,
              ("recognisers", "policy_features", "policy_heads"), lr=config.pretrain_lr,
              output="pretrained"),
        Stage("warmup", "adamml", epochs["warmup"],
              modes.DROPOUT if config.warmup_gating == "random" else modes.ALL_ON, recognition,
              lr=config.lr, output="warmup"),
        *adaptive,
    ]  # fmt: skip
    stages = [s for s in stages if s.name in only]
    if config.baselines and {"joint", "finetune"} & set(only):
        stages += [dataclasses.replace(s, model="nolstm", output=s.output and "nolstm")
                   for s in adaptive if s.name in only]  # fmt: skip
        # As many recogniser epochs as AdaMML's after the warm-up.
        allmod_epochs = sum(s.epochs for s in adaptive if s.name in only and s.sgd)
        stages.append(Stage("allmod", "allmod", allmod_epochs, modes.ALL_ON, recognition,
                            lr=config.lr, output="allmod"))  # fmt: skip
    return stages


# ------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> dict[str, Any] | None:
    """Train every stage of the plan, then evaluate; returns the report (rank 0).

    Ctrl-C stops with one line that gives the command to resume (the last checkpoint is
    intact: it is written atomically)."""
    args = parse_args(argv)
    out = args.out or HERE / "runs" / args.preset
    try:
        return train(args, out)
    except KeyboardInterrupt:
        command = shlex.join([sys.executable, sys.argv[0], *(argv or sys.argv[1:])])
        if "--resume" not in command.split():
            command += " --resume"
        if args.out is None:
            command += f" --out {shlex.quote(str(out))}"
        raise SystemExit(f"\ninterrupted; the last finished epoch is saved in {out}. "
                         f"Resume with:\n  {command}") from None  # fmt: skip


def train(args: Any, out: Path) -> dict[str, Any] | None:
    began = time.perf_counter()
    rt = start(args.device, args.seed, args.amp, args.compile)
    out.mkdir(parents=True, exist_ok=True)
    times: dict[str, float] = {}
    if args.data_root == DEMO_ROOT and not (DEMO_ROOT / "train.txt").exists():
        if rt.master:
            make_dataset.generate(DEMO_ROOT, rt.log)
        if rt.distributed:
            dist.barrier()
        times["demo data generation"] = time.perf_counter() - began
    config = resolve_config(args, rt.world, out)
    classes = adamml_data.read_classes(config.classes)
    data = Data(config, classes, rt, args.workers, args.strict_data, args.cache_dir)
    config = dataclasses.replace(config, multi_label=data.multi_label)
    model = build(config, len(classes), rt)
    batch = example_batch(config.data, config.modalities)
    costs = measure_costs(model, {k: v.to(rt.device) for k, v in batch.items()})
    lambdas = {m: config.lambdas.get(m, c / max(costs.recognition.values()))
               for m, c in costs.recognition.items()}  # fmt: skip
    config = dataclasses.replace(config, lambdas=lambdas)
    if args.init is not None:
        runs.load_init(model, args.init, rt.device)
        rt.log(f"initialised every network from {args.init}")
    if args.pretrained == "imagenet":
        config = dataclasses.replace(config, weights=load_imagenet_into(model, rt.master, rt.log))
    rt.log(f"AdaMML {'+'.join(config.modalities)} ({config.preset}): GFLOPs per segment "
           + ", ".join(f"{m} {c / 1e9:.4f}" for m, c in costs.recognition.items())
           + f", policy {costs.policy / 1e9:.4f} (1 GFLOP = 1e9 MACs); λ = {lambdas}, "
           f"γ = {config.gamma}; operating point: {config.rule.describe()} on "
           f"{len(data.calib.dataset)} calibration videos")  # type: ignore[arg-type]  # fmt: skip
    stages = plan(config, args.only_stages)
    if rt.master:
        runs.save_config(out, config)
        if not args.resume:
            (out / "metrics.jsonl").write_text("")
    trainer = Trainer(config, rt, data, costs, out, len(classes), args)
    trainer.times = times
    trainer.run(stages, model)
    if rt.distributed:
        dist.destroy_process_group()
    if not (rt.master and args.evaluate and (out / "adamml.pt").exists()):
        return None
    evaluated = time.perf_counter()
    report = evaluate.evaluate(out, device=rt.device)
    trainer.times["evaluation"] = time.perf_counter() - evaluated
    report["stage_times"] = runs.stage_times(trainer.times, time.perf_counter() - began)
    runs.atomic_write_text(out / "report.json", json.dumps(report, indent=1))
    print("\n" + runs.stage_time_table(report["stage_times"]))
    return report


class Trainer:
    """The generic epoch loop over the table of stages, with checkpoints and resume."""

    def __init__(self, config: runs.RunConfig, rt: Runtime, data: Data, costs: ModalityCosts,
                 out: Path, num_classes: int, args: Any) -> None:  # fmt: skip
        self.config, self.rt, self.data, self.costs = config, rt, data, costs
        self.out, self.num_classes = out, num_classes
        self.resume, self.stop_after = args.resume, args.stop_after_steps
        self.steps = 0
        preset = PRESETS[config.preset]
        self.tau_schedule = ExponentialDecay(preset.tau_start, preset.tau_rate)
        self.times: dict[str, float] = {}
        self.dense: dict[str, Dense] = {}  # the frozen warm-up networks' dense outputs
        self.calibration: dict[str, Any] = {}
        self.objective = modes.Objective(
            torch.tensor(list(config.lambdas.values())), config.gamma, config.recovery,
            data.multi_label,
        )  # fmt: skip

    def run(self, stages: list[Stage], model: AdaMML) -> None:
        rt = self.rt
        position = {"stage": 0, "epoch": 0}
        current = "adamml"  # the network held in `model`
        resumed = runs.load_checkpoint(self.out, rt.device) if self.resume else None
        if resumed is not None:
            position, current = resumed["position"], resumed["model_name"]
            if position["stage"] >= len(stages):
                rt.log(f"{self.out} finished every stage already; evaluating")
            else:
                at = stages[position["stage"]]
                rt.log(f"resumed from {self.out}: {at.model} {at.name}, epoch "
                       f"{position['epoch'] + 1}")  # fmt: skip
            model = build(self.config, self.num_classes, rt, current)
            model.load_state_dict(resumed["model"])
            self.calibration = resumed.get("calibration", {})
        global_epoch = sum(s.epochs for s in stages[: position["stage"]]) + position["epoch"]
        for index, stage in enumerate(stages):
            if index < position["stage"] or stage.epochs == 0:
                continue
            if resumed is not None:
                # Before anything draws a random number (a new model's initialisation does).
                restore_rng(resumed["rng"][min(rt.rank, len(resumed["rng"]) - 1)], rt.gates)
                self.tau_schedule.load_state_dict(resumed["tau_schedule"])
            if stage.model != current:
                # The baselines start from the warm-up weights (AdaMML §4.1: same initialisation).
                model = build(self.config, self.num_classes, rt, stage.model)
                warm = torch.load(self.out / "warmup.pt", map_location=rt.device, weights_only=True)
                for part in ("recognisers", "fusion", "policy_features"):
                    getattr(model, part).load_state_dict(runs.part(warm, part))
                current = stage.model
            elif stage.mode.policy and not (self.out / "warmup.pt").exists() and rt.master:
                # Started with --init past the warm-up: the baselines start from these weights.
                runs.atomic_save(model.state_dict(), self.out / "warmup.pt")
            first = position["epoch"] if index == position["stage"] else 0
            mid_stage = resumed if resumed is not None and first > 0 else None
            began = time.perf_counter()
            if stage.mode.cached:
                self.run_cached(stage, index, model)
            else:
                self.run_stage(stage, index, model, first, global_epoch, mid_stage)
            key = f"{stage.model} {stage.name}"
            self.times[key] = self.times.get(key, 0.0) + time.perf_counter() - began
            global_epoch += stage.epochs - first
            resumed = None
            position = {"stage": index + 1, "epoch": 0}

    def dense_pass(
        self, model: AdaMML, name: str, loader: DataLoader[Any], repeats: int = 1
    ) -> Dense:
        """A dense pass over every rank's share of ``loader``, gathered on every rank. It draws
        its own random numbers (augmentation): the same after a resume, and the run's RNGs
        untouched."""
        rt = self.rt
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed + rt.rank)
            parts = [dense_pass(model, loader, rt.device, rt.autocast,
                                f"{name} ({r + 1}/{repeats})", rt.master)
                     for r in range(repeats)]  # fmt: skip
        if rt.distributed:
            gathered: list[Any] = [None] * rt.world
            dist.all_gather_object(gathered, parts)
            parts = [p for shard in gathered for p in shard]
        return Dense.cat(parts)

    def run_cached(self, stage: Stage, index: int, model: AdaMML) -> None:
        """Stage 2 on cached dense outputs (``policy_stage.py``)."""
        config, rt = self.config, self.rt
        if "cache" not in self.dense:
            self.dense["cache"] = self.dense_pass(model, "policy cache", self.data.cache,
                                                  config.cache_repeats)  # fmt: skip
            self.dense["calib"] = self.dense_pass(model, "calibration", self.data.calib)
        schedule = PolicySchedule(
            stage.epochs, config.batch_size, config.policy_lr, self.tau_schedule,
            lambda epoch: gate_noise(epoch, stage.epochs, config.noise_floor),
            temperature=config.policy_temperature, restarts=config.policy_restarts,
        )  # fmt: skip
        records = learn_policy(model, self.dense["cache"], self.dense["calib"], self.costs,
                               self.objective, schedule, config.rule, rt.gates, rt.log,
                               stage.model)  # fmt: skip
        if rt.distributed:
            for value in model.policy.state_dict().values():
                dist.broadcast(value, 0)
        for record in records[:-1]:
            self.log_record(record)
        self.save(stage, index, model, {"stage": index + 1, "epoch": 0}, {}, {}, None,
                  records[-1])  # fmt: skip

    def optimisers(self, stage: Stage, model: AdaMML) -> dict[str, torch.optim.Optimizer]:
        def params(parts: Sequence[str]) -> list[nn.Parameter]:
            return [p for part in parts for p in getattr(model, part).parameters()]

        found = {"recognisers": torch.optim.SGD(params(stage.sgd), lr=stage.lr, momentum=0.9,
                                                weight_decay=1e-4)}  # fmt: skip
        if stage.adam:
            found["policy"] = torch.optim.Adam(params(stage.adam), lr=self.config.policy_lr)
        return found

    def run_stage(self, stage: Stage, index: int, model: AdaMML, first: int, global_epoch: int,
                  resumed: dict[str, Any] | None) -> None:  # fmt: skip
        config = self.config
        optimisers = self.optimisers(stage, model)
        # One cosine schedule per optimiser, bound to the optimiser it drives.
        schedulers = {k: torch.optim.lr_scheduler.CosineAnnealingLR(o, T_max=stage.epochs)
                      for k, o in optimisers.items()}  # fmt: skip
        budget = None
        if stage.mode.efficiency and config.budget_gflops is not None:
            # The policy and shared recognisers run on every segment; the budget is the rest.
            per_video = config.budget_gflops - self.costs.always / 1e9 * config.data.num_segments
            budget = BudgetLoss(self.costs.as_tensor(model.modalities, marginal=True),
                                per_video * 1e9)  # fmt: skip
            budget = budget.to(self.rt.device)
        best: tuple[tuple[float, ...], dict[str, Tensor]] | None = None
        if resumed is not None:
            for key, opt in optimisers.items():
                opt.load_state_dict(resumed["optimisers"][key])
            for key, sched in schedulers.items():
                sched.load_state_dict(resumed["schedulers"][key])
            if budget is not None:
                budget.load_state_dict(resumed["budget"])
        objective = dataclasses.replace(self.objective, budget=budget)
        for epoch in range(first, stage.epochs):
            # Alternating: Adam (the policy) on even epochs, SGD (the recognisers) on odd ones.
            stepping, trained = list(optimisers), [*stage.sgd, *stage.adam]
            if stage.alternate:
                policy_turn = epoch % 2 == 0
                stepping = ["policy" if policy_turn else "recognisers"]
                trained = list(stage.adam if policy_turn else stage.sgd)
            for name in PARTS:
                getattr(model, name).requires_grad_(name in trained)
            self.data.sampler.set_epoch(global_epoch + epoch - first)
            record = self.run_epoch(stage, epoch, model, optimisers, stepping, objective)
            if stage.mode.sampled:
                # Checkpoint selection on the calibration list, every epoch with a policy.
                found = self.calibrate(model, stage)
                key = config.rule.key(found.chosen, found.reference)
                record["calibration"] = point_record(found.chosen, found.reference,
                                                     model.modalities, found.likelihood)
                if best is None or key > best[0]:
                    best = (key, copy.deepcopy(model.state_dict()))
            for sched in schedulers.values():
                sched.step()
            done = epoch + 1 == stage.epochs
            if done and best is not None:
                model.load_state_dict(best[1])
            if done and stage.mode.routed:
                self.calibrate(model, stage)
            position = {"stage": index + (1 if done else 0), "epoch": 0 if done else epoch + 1}
            self.save(stage, index, model, position, optimisers, schedulers, budget, record)

    def run_epoch(
        self, stage: Stage, epoch: int, model: AdaMML,
        optimisers: Mapping[str, torch.optim.Optimizer], stepping: Sequence[str],
        objective: modes.Objective,
    ) -> dict[str, Any]:  # fmt: skip
        """One pass over the data, stepping the optimisers named in ``stepping``."""
        config, rt, mode = self.config, self.rt, stage.mode
        modalities = config.modalities
        model.train()
        if mode.sampled:
            # AdaMML §4.1: τ = 5 · 0.965^epoch, annealed over the joint epochs.
            set_tau(model, self.tau_schedule(epoch),
                    noise=gate_noise(epoch, stage.epochs, config.noise_floor))  # fmt: skip
        if mode.policy and not mode.sampled:
            model.policy_features.eval()
            model.policy.eval()
        net: nn.Module = model
        if rt.distributed:
            net = DistributedDataParallel(
                model, device_ids=[rt.device] if rt.device.type == "cuda" else None,
                find_unused_parameters=mode.unused_parameters or stage.alternate,
            )  # fmt: skip
        cost_model = self.costs if mode.policy else ModalityCosts(self.costs.recognition)
        totals = torch.zeros(6 + len(modalities), dtype=torch.float64, device=rt.device)
        skips = adamml_data.SkipReport()
        began = time.perf_counter()
        bar = tqdm(self.data.train, disable=not rt.master, leave=False, dynamic_ncols=True,
                   desc=f"{stage.model} {stage.name} {epoch + 1}/{stage.epochs}")  # fmt: skip
        for batch in bar:
            skips.update(batch)
            inputs = {k: v.to(rt.device, non_blocking=True)
                      for k, v in batch.items() if isinstance(v, Tensor)}  # fmt: skip
            with rt.autocast():
                loss, task, efficiency, logits, decisions = modes.losses(
                    mode, net, model, inputs, objective, rt.gates
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
            correct = modes.is_correct(logits.detach(), inputs["label"], objective.multi_label)
            decisions = decisions.detach().double()
            count = len(correct)
            totals += torch.tensor(
                [count, loss.item() * count, task.item() * count, efficiency.item() * count,
                 correct.sum().item(), expected_gflops(decisions, cost_model).sum().item(),
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
               f"{record['seconds']:.0f} s")  # fmt: skip
        return record

    def calibrate(self, model: AdaMML, stage: Stage) -> Calibrated:
        """Choose the operating point on the calibration list (a fresh dense pass: the
        recognisers changed) and set it in the policy; recorded for ``evaluate.py``."""
        calib = self.dense_pass(model, "calibration", self.data.calib)
        found = calibrate(model, calib, self.costs, self.config.rule)
        chosen, curve, reference = found.chosen, found.curve, found.reference
        self.rt.log(f"        calibration: {100 * chosen.score:.1f}% at "
                    f"{chosen.gflops / reference.gflops:.2f} of the GFLOPs, every modality on "
                    f"{100 * reference.score:.1f}%")  # fmt: skip
        self.calibration[stage.model] = {
            "chosen": point_record(chosen, reference, model.modalities, found.likelihood),
            "all_on": reference.score,
            "curve": [point_record(p, reference, model.modalities, likelihood)
                      for p, likelihood in zip(curve, found.likelihoods, strict=True)],
        }  # fmt: skip
        return found

    def log_record(self, record: Mapping[str, Any]) -> None:
        if self.rt.master:
            with (self.out / "metrics.jsonl").open("a") as f:
                f.write(json.dumps(record) + "\n")

    def save(
        self, stage: Stage, index: int, model: AdaMML, position: dict[str, int],
        optimisers: Mapping[str, torch.optim.Optimizer],
        schedulers: Mapping[str, torch.optim.lr_scheduler.LRScheduler],
        budget: BudgetLoss | None, record: dict[str, Any],
    ) -> None:  # fmt: skip
        """Log the epoch; write the stage output at its end and the resume point."""
        rt = self.rt
        rng = [rng_state(rt.gates)]
        if rt.distributed:
            gathered: list[Any] = [None] * rt.world
            dist.all_gather_object(gathered, rng[0])
            rng = gathered
        self.log_record(record)
        if rt.master:
            if position["stage"] > index and stage.output is not None:
                runs.atomic_save(model.state_dict(), self.out / f"{stage.output}.pt")
                runs.atomic_write_text(self.out / runs.CALIBRATION,
                                       json.dumps(self.calibration, indent=1))  # fmt: skip
            runs.save_checkpoint(self.out, {
                "position": position, "model_name": stage.model, "model": model.state_dict(),
                "optimisers": {k: o.state_dict() for k, o in optimisers.items()},
                "schedulers": {k: s.state_dict() for k, s in schedulers.items()},
                "budget": budget.state_dict() if budget is not None else {},
                "tau_schedule": self.tau_schedule.state_dict(), "rng": rng,
                "calibration": self.calibration,
            })  # fmt: skip
        if rt.distributed:
            dist.barrier()


def gate_noise(epoch: int, epochs: int, floor: float) -> float:
    """The gates' noise scale in epoch ``epoch`` of ``epochs``: ``max(floor, 1 - epoch / (epochs -
    1))``, from the Gumbel-Softmax (1) at the first epoch towards the test-time decision (0)
    at the last. The default floor is 1 (the paper's constant noise); see docs/example.md."""
    return max(floor, 1.0 - epoch / max(epochs - 1, 1))


if __name__ == "__main__":
    main()
