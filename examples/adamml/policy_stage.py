"""The policy learns on cached dense outputs, and the best epoch on held-back data is kept.

With the recognisers and the policy's feature extractors frozen (after the warm-up), what a
policy step needs from a video — its policy features and every segment's logits of every
modality — does not change from epoch to epoch. So it is computed once, by a dense pass over
``repeats`` augmented samples of every training video, and the policy (MLP, LSTM, heads) then
learns with Gumbel gates and Eq. 4 on those tensors, epoch after epoch, at a tiny fraction of
the cost of a pass over the videos. The samples have as many segments as the test protocol
(``test_segments``), so a recurrent policy learns on the sequence length it will be used on.

After every epoch the policy's curve on the calibration list (its dense pass is computed once
too) gives the operating point the :class:`calibration.Rule` asks for; the epoch whose point is
best is kept. The recognisers are then fine-tuned under the frozen policy (``train.py``).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from calibration import Dense, Rule, calibrate, point_record
from model import AdaMML
from modes import Objective, is_correct
from torch import Tensor

from adagate.flops import ModalityCosts, expected_gflops
from adagate.schedules import set_tau


@dataclass(frozen=True)
class PolicySchedule:
    """How the cached policy stage learns.

    Attributes:
        epochs: passes over the cache, per restart.
        batch_size: sequences per step.
        lr: Adam learning rate.
        tau: the Gumbel temperature of an epoch.
        noise: the gates' noise scale of an epoch.
        grid_points: quantiles of the costliest modality's threshold grid for checkpoint
            selection.
        temperature: the task loss is the cross-entropy of the fused logits divided by it.
            The recognisers are confident on their own training videos: at 1, a correctly
            classified video's cross-entropy is flat, its straight-through gradient vanishes
            and only the efficiency loss acts, so the policy keeps whichever few segments
            keep the video right, whatever they show (measured on the demo: no better than
            random selection at the same rates). At 10 a correct video still ranks its
            segments by how far their logits favour the true class.
        restarts: trainings from new weights; the best epoch of all is kept.
    """

    epochs: int
    batch_size: int
    lr: float
    tau: Callable[[int], float]
    noise: Callable[[int], float]
    grid_points: int = 33
    temperature: float = 10.0
    restarts: int = 1


def learn_policy(
    model: AdaMML, cache: Dense, calib: Dense, costs: ModalityCosts, objective: Objective,
    schedule: PolicySchedule, rule: Rule, generator: torch.Generator,
    log: Callable[[str], None], name: str = "adamml",
) -> list[dict[str, Any]]:  # fmt: skip
    """Train ``model.policy`` on ``cache`` ``schedule.restarts`` times from new weights; keep
    the (restart, epoch) whose operating point on ``calib`` is best under ``rule``.

    Args:
        model: the model; only its policy's parameters change (thresholds included: set to
            the chosen operating point of the kept epoch).
        cache: dense outputs on the training videos.
        calib: dense outputs on the calibration videos.
        costs: per-segment MACs.
        objective: the loss's constants.
        schedule: epochs, restarts, batch size, learning rate, temperatures, noise.
        rule: how the operating point is chosen.
        generator: the gates' noise, the shuffling and the restarts' weights.
        log: one line per epoch.
        name: the model's name in logs.

    Returns:
        One record per epoch of every restart (``metrics.jsonl``).
    """
    policy = model.policy
    records: list[dict[str, Any]] = []
    best: tuple[tuple[float, ...], dict[str, Tensor]] | None = None
    model.requires_grad_(False)
    policy.requires_grad_(True)
    policy.standardize(cache.features)
    for restart in range(schedule.restarts):
        if restart > 0:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(torch.randint(2**31, (1,), generator=generator)))
                policy.reset_parameters()
        optimizer = torch.optim.Adam(policy.parameters(), lr=schedule.lr)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=schedule.epochs)
        for epoch in range(schedule.epochs):
            began = time.perf_counter()
            set_tau(policy, schedule.tau(epoch), noise=schedule.noise(epoch))
            record = train_epoch(model, cache, objective, schedule, optimizer, generator)
            scheduler.step()
            found = calibrate(model, calib, costs, rule, schedule.grid_points)
            chosen, reference = found.chosen, found.reference
            key = rule.key(chosen, reference)
            kept = best is None or key > best[0]
            if kept:
                best = (key, copy.deepcopy(policy.state_dict()))
            record |= {
                "model": name, "stage": "joint", "restart": restart + 1, "epoch": epoch + 1,
                "epochs": schedule.epochs, "tau": policy.gate.tau, "noise": policy.gate.noise,
                "gflops_vs_all": expected_gflops(
                    torch.tensor([[list(record["selection"].values())]]), costs,
                    model.modalities).item() / (sum(costs.recognition.values()) / 1e9),
                "calibration": point_record(chosen, reference, model.modalities,
                                            found.likelihood),
                "calibration_all_on": reference.score, "kept": kept,
                "seconds": time.perf_counter() - began,
            }  # fmt: skip
            records.append(record)
            log(f"{name:7s} joint    restart {restart + 1}/{schedule.restarts} epoch "
                f"{epoch + 1}/{schedule.epochs}: task {record['task_loss']:.3f}, train acc "
                f"{100 * record['train_acc']:.1f}%, selection "
                + ", ".join(f"{m} {100 * r:.0f}%" for m, r in record["selection"].items())
                + f", τ {record['tau']:.2f}; calibration: {100 * chosen.score:.1f}% at "
                f"{chosen.gflops / reference.gflops:.2f} of the GFLOPs (all on "
                f"{100 * reference.score:.1f}%){' *' if kept else ''}, "
                f"{record['seconds']:.1f} s")  # fmt: skip
    assert best is not None
    policy.load_state_dict(best[1])
    return records


def train_epoch(
    model: AdaMML, cache: Dense, objective: Objective, schedule: PolicySchedule,
    optimizer: torch.optim.Optimizer, generator: torch.Generator,
) -> dict[str, Any]:  # fmt: skip
    """One pass over the cache in random order; returns the epoch's means (task loss, train
    accuracy, selection rate per modality)."""
    policy = model.policy
    policy.train()
    totals = torch.zeros(3 + len(model.modalities), dtype=torch.float64)
    for index in torch.randperm(len(cache), generator=generator).split(schedule.batch_size):
        part = cache.take(index)
        out = policy(part.features, generator=generator)
        logits = model.fusion(part.segment_logits, out.decisions).float()
        task = objective.task(logits / schedule.temperature, part.labels)
        loss = task + objective.efficiency(part.segment_logits, out.decisions, logits,
                                           part.labels, model.fusion)  # fmt: skip
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        correct = is_correct(logits.detach(), part.labels, objective.multi_label)
        totals += torch.tensor([len(index), task.item() * len(index), correct.sum().item(),
                                *out.decisions.detach().double().mean(1).sum(0).tolist()],
                               dtype=torch.float64)  # fmt: skip
    n = totals[0].item()
    rates = {m: totals[3 + i].item() / n for i, m in enumerate(model.modalities)}
    return {"task_loss": totals[1].item() / n, "train_acc": totals[2].item() / n,
            "selection": rates}  # fmt: skip
