"""Train a ResNet that skips residual blocks per image, and compare it with the dense network.

    python examples/skip_blocks/train.py                  # ~3 min on 2 CPU cores
    python examples/skip_blocks/train.py --budget 0.3 --out runs/b30.json

Steps, top to bottom:

1. Generate the shapes image set (``shapes.py``): half the images carry a colour cue that
   shallow features read, half are grey and need depth.
2. Pretrain the ResNet dense for ``--pretrain-epochs``; keep a copy. Continue the dense network
   for ``--epochs`` more: that is the dense baseline, trained as long as the adaptive one.
3. Adaptive: the pretrained copy plus a :class:`~skipnet.BlockPolicy`, trained jointly for
   ``--epochs`` with straight-through Gumbel gates (temperature annealed by
   ``adagate.schedules.CosineDecay``) and ``adagate.losses.BudgetLoss`` holding the expected
   MACs at ``--budget`` × the dense network's. ``adagate.losses.recovery_loss`` (``--recovery``)
   turns the gates back on for images the gates got wrong and every block would get right
   (one extra dense forward pass per batch, no gradient).
4. Evaluate with deterministic gates: accuracy, measured MACs per image (``count_macs`` of every
   part × how often it ran) and wall time per batch relative to the dense network, for the
   dense, adaptive, and random-skip (same per-block rates as the policy) networks.

Prints a markdown table and writes everything to ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import torch
from shapes import CLASSES, Shapes, make_shapes
from skipnet import BlockDropNet, BlockPolicy, SkipResNet
from torch import Tensor
from torch.nn import functional as F

from adagate.flops import count_macs
from adagate.losses import BudgetLoss, recovery_loss
from adagate.schedules import CosineDecay, set_tau


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=4, help="joint (adaptive) epochs")
    parser.add_argument("--pretrain-epochs", type=int, default=4, help="dense epochs first")
    parser.add_argument("--budget", type=float, default=0.5, help="target MACs / dense MACs")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="examples/skip_blocks/runs/results.json")
    parser.add_argument("--train-size", type=int, default=6000)
    parser.add_argument("--test-size", type=int, default=2000)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--hard-fraction", type=float, default=0.5)
    parser.add_argument("--widths", type=int, nargs="+", default=[16, 32, 64])
    parser.add_argument("--blocks-per-stage", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--budget-step", type=float, default=0.05, help="BudgetLoss step_size")
    parser.add_argument("--tau", type=float, nargs=2, default=[5.0, 0.5], help="start end")
    parser.add_argument(
        "--recovery",
        type=float,
        default=5.0,
        help="adagate.recovery_loss weight, in units of the budget's current price; 0: off",
    )
    parser.add_argument(
        "--noise-floor",
        type=float,
        default=1.0,
        help="the gates' sampling noise falls linearly from 1 (Gumbel-Softmax) towards 0 (the "
        "test-time decision) over the joint epochs, held at this floor; 1: constant noise",
    )
    parser.add_argument("--timing-repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0: torch's default")
    args = parser.parse_args(argv)
    if not 0 <= args.noise_floor <= 1:
        parser.error(f"--noise-floor: expected a number in [0, 1], got {args.noise_floor}")
    return args


@dataclass(frozen=True)
class Costs:
    """MACs of one image through each part, measured with ``adagate.flops.count_macs``.

    always: stem, projection shortcuts and head (run for every image); policy: the policy
    network; blocks: the residual branch of each gated block (run only where kept).
    """

    always: int
    policy: int
    blocks: tuple[int, ...]

    @property
    def dense(self) -> int:
        return self.always + sum(self.blocks)

    def per_image(self, keep_rate: Tensor, with_policy: bool = True) -> float:
        """Mean MACs per image, given how often each block ran: ``keep_rate: (K,)``."""
        gated = float((keep_rate.double().cpu() * torch.tensor(self.blocks).double()).sum())
        return self.always + gated + (self.policy if with_policy else 0)


def measure_costs(backbone: SkipResNet, policy: BlockPolicy, image: Tensor) -> Costs:
    """Costs of each part for one ``image: (1, 3, H, W)``."""
    always = count_macs(backbone.stem, image)
    blocks = []
    with torch.no_grad():
        x = backbone.eval().stem(image)
        for block in backbone.blocks:
            blocks.append(count_macs(block.residual, x))
            always += count_macs(block.shortcut, x)
            x = block(x)
    always += count_macs(backbone.head, x)
    return Costs(always, count_macs(policy, image), tuple(blocks))


def batches(count: int, size: int, generator: torch.Generator) -> Iterator[Tensor]:
    order = torch.randperm(count, generator=generator)
    yield from order.split(size)


def train_dense(
    backbone: SkipResNet, data: Shapes, epochs: int, args: argparse.Namespace, log: list[Any]
) -> None:
    optimizer = torch.optim.Adam(backbone.parameters(), lr=args.lr)
    steps = epochs * -(-len(data.labels) // args.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, args.lr, total_steps=steps)
    generator = torch.Generator().manual_seed(args.seed)
    backbone.train()
    for epoch in range(epochs):
        start, total, correct = time.perf_counter(), 0.0, 0
        for index in batches(len(data.labels), args.batch_size, generator):
            images, labels = data.images[index], data.labels[index]
            logits = backbone(images)
            loss = F.cross_entropy(logits, labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += float(loss.detach()) * len(index)
            correct += int((logits.argmax(1) == labels).sum())
        entry = {
            "phase": "dense",
            "epoch": epoch,
            "loss": total / len(data.labels),
            "train_accuracy": correct / len(data.labels),
            "seconds": time.perf_counter() - start,
        }
        log.append(entry)
        print(_format_log(entry), flush=True)


def train_adaptive(
    net: BlockDropNet,
    budget: BudgetLoss,
    data: Shapes,
    epochs: int,
    args: argparse.Namespace,
    log: list[Any],
) -> None:
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
    steps_per_epoch = -(-len(data.labels) // args.batch_size)
    # No warm-up: while the policy's learning rate is small, the budget's multiplier keeps
    # growing unanswered and then overshoots.
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs * steps_per_epoch)
    schedule = CosineDecay(start=args.tau[0], end=args.tau[1], epochs=epochs)
    shares = budget.costs / budget.total_cost
    generator = torch.Generator().manual_seed(args.seed + 1)
    net.train()
    budget.train()
    for epoch in range(epochs):
        start, total, correct, kept = time.perf_counter(), 0.0, 0, 0.0
        used: list[float] = []
        for step, index in enumerate(batches(len(data.labels), args.batch_size, generator)):
            progress = epoch + step / steps_per_epoch
            set_tau(net, schedule(progress), noise=max(args.noise_floor, 1 - progress / epochs))
            images, labels = data.images[index], data.labels[index]
            logits, decisions = net(images)
            loss = F.cross_entropy(logits, labels) + budget(decisions)
            if args.recovery > 0:
                # The budget pushes block k off by multiplier · share_k for every image; this
                # pushes a fixable image's block k on by recovery times that, so its gates go on
                # whatever the price, and the others' go off. A constant weight instead let the
                # multiplier (dual ascent, slow) catch up only after the policy had frozen.
                loss = loss + recovery_loss(
                    decisions,
                    fixable(net.backbone, images, logits, labels),
                    args.recovery * budget.multiplier * shares,
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += float(loss.detach()) * len(index)
            correct += int((logits.argmax(1) == labels).sum())
            kept += float(decisions.detach().sum())
            used.append(budget.used_fraction)
        entry = {
            "phase": "adaptive",
            "epoch": epoch,
            "loss": total / len(data.labels),
            "train_accuracy": correct / len(data.labels),
            "blocks_kept": kept / len(data.labels),
            "budget_used": sum(used) / len(used),
            "budget_target": budget.target_fraction(1),
            "multiplier": budget.multiplier,
            "tau": net.policy.gate.tau,
            "noise": net.policy.gate.noise,
            "seconds": time.perf_counter() - start,
        }
        log.append(entry)
        print(_format_log(entry), flush=True)


@torch.no_grad()
def fixable(backbone: SkipResNet, images: Tensor, logits: Tensor, labels: Tensor) -> Tensor:
    """``(N,)`` bool: wrong under the gates, right with every block on.

    The dense pass runs in ``eval()`` so that it leaves BatchNorm's running statistics, which
    evaluation uses, to the gated training passes.
    """
    backbone.eval()
    dense_right = backbone(images).argmax(1) == labels
    backbone.train()
    return (logits.argmax(1) != labels) & dense_right


def _format_log(entry: dict[str, Any]) -> str:
    return "  ".join(
        f"{key}={value:.4g}" if isinstance(value, float) else f"{key}={value}"
        for key, value in entry.items()
    )


Forward = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]
"""``forward(images (n, 3, H, W), index (n,) into the test set) -> (logits, decisions)``."""


@torch.no_grad()
def predict(forward: Forward, images: Tensor, batch_size: int) -> tuple[Tensor, Tensor]:
    """Run ``forward`` over ``images`` → (predicted classes (N,), decisions (N, K))."""
    predictions, decisions = [], []
    for index in torch.arange(len(images), device=images.device).split(batch_size):
        logits, chosen = forward(images[index], index)
        predictions.append(logits.argmax(1))
        decisions.append(chosen)
    return torch.cat(predictions), torch.cat(decisions)


@torch.no_grad()
def best_times(functions: Sequence[Callable[[], object]], repeats: int) -> list[float]:
    """Best wall time of each function over ``repeats`` rounds, after one warm-up round.

    Within a round the functions run one after the other, so a change of machine load hits all
    of them alike; the ratios between them are the figures to trust, not the absolute times.
    """
    best = [float("inf")] * len(functions)
    for round_ in range(repeats + 1):
        for k, fn in enumerate(functions):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            start = time.perf_counter()
            fn()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            if round_ > 0:
                best[k] = min(best[k], time.perf_counter() - start)
    return best


def evaluate(
    dense: SkipResNet, net: BlockDropNet, costs: Costs, test: Shapes, args: argparse.Namespace
) -> list[dict[str, Any]]:
    """Rows of the results table: dense, adaptive, random skip at the adaptive per-block rates."""
    dense.eval()
    net.eval()
    blocks = len(costs.blocks)
    ones = torch.ones(len(test.labels), blocks, device=test.images.device)
    _, adaptive_decisions = predict(lambda images, _: net(images), test.images, args.batch_size)
    rates = adaptive_decisions.float().mean(0)
    generator = torch.Generator(device=test.images.device).manual_seed(args.seed + 2)
    # One fixed random draw per test image, at the policy's per-block keep rates.
    random_decisions = torch.bernoulli(rates.expand(len(test.labels), -1), generator=generator)

    def random_skip(images: Tensor, index: Tensor) -> tuple[Tensor, Tensor]:
        return net.backbone(images, random_decisions[index]), random_decisions[index]

    models: dict[str, tuple[Forward, bool]] = {
        "dense": (lambda images, index: (dense(images), ones[index]), False),
        "adaptive (policy)": (lambda images, _: net(images), True),
        "random skip, same rates": (random_skip, False),
    }
    timing_index = torch.arange(min(args.batch_size, len(test.labels)), device=test.images.device)
    timing_batch = test.images[timing_index]
    rows: list[dict[str, Any]] = []
    for name, (forward, with_policy) in models.items():
        predictions, decisions = predict(forward, test.images, args.batch_size)
        correct = (predictions == test.labels).float()
        keep = decisions.float()
        rows.append(
            {
                "model": name,
                "accuracy": float(correct.mean()),
                "accuracy_easy": float(correct[~test.hard].mean()),
                "accuracy_hard": float(correct[test.hard].mean()),
                "macs_per_image": costs.per_image(keep.mean(0), with_policy),
                "blocks_easy": float(keep[~test.hard].sum(1).mean()),
                "blocks_hard": float(keep[test.hard].sum(1).mean()),
                "keep_rate_per_block": keep.mean(0).tolist(),
            }
        )
    seconds = best_times(
        [partial(forward, timing_batch, timing_index) for forward, _ in models.values()],
        args.timing_repeats,
    )
    for row, time_per_batch in zip(rows, seconds, strict=True):
        row["seconds_per_batch"] = time_per_batch
    for row in rows:
        row["macs_vs_dense"] = row["macs_per_image"] / rows[0]["macs_per_image"]
        row["time_vs_dense"] = row["seconds_per_batch"] / rows[0]["seconds_per_batch"]
    return rows


def markdown_table(rows: list[dict[str, Any]], blocks: int) -> str:
    lines = [
        "| model | accuracy | easy | hard | MMACs / image | vs dense | blocks run (easy / hard)"
        " | time / batch vs dense |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['model']} | {row['accuracy']:.1%} | {row['accuracy_easy']:.1%} "
            f"| {row['accuracy_hard']:.1%} | {row['macs_per_image'] / 1e6:.2f} "
            f"| {row['macs_vs_dense']:.0%} "
            f"| {row['blocks_easy']:.1f} / {row['blocks_hard']:.1f} of {blocks} "
            f"| {row['time_vs_dense']:.2f}× |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    started = time.perf_counter()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    device = torch.device(args.device)

    def generate(count: int, seed: int) -> Shapes:
        data = make_shapes(count, args.image_size, args.hard_fraction, seed)
        return Shapes(*(t.to(device) for t in data))

    train = generate(args.train_size, args.seed)
    test = generate(args.test_size, args.seed + 10_000)

    backbone = SkipResNet(len(CLASSES), tuple(args.widths), args.blocks_per_stage).to(device)
    policy = BlockPolicy(len(backbone.blocks)).to(device)
    costs = measure_costs(backbone, policy, test.images[:1])
    target = args.budget * costs.dense - costs.always - costs.policy
    if target <= 0:
        raise ValueError(
            f"--budget {args.budget} is below the cost no gate can skip (stem, shortcuts, head, "
            f"policy: {(costs.always + costs.policy) / costs.dense:.1%} of dense)"
        )
    print(
        f"MACs per image: dense {costs.dense / 1e6:.2f}M (stem/shortcuts/head "
        f"{costs.always / 1e6:.2f}M, blocks {[round(c / 1e6, 2) for c in costs.blocks]}M), "
        f"policy {costs.policy / 1e6:.3f}M",
        flush=True,
    )

    log: list[Any] = []
    train_dense(backbone, train, args.pretrain_epochs, args, log)
    pretrained = copy.deepcopy(backbone)
    train_dense(backbone, train, args.epochs, args, log)

    net = BlockDropNet(pretrained, policy)
    # The budget covers the gated blocks; the fixed costs were subtracted from the target.
    budget = BudgetLoss(costs.blocks, target, step_size=args.budget_step).to(device)
    train_adaptive(net, budget, train, args.epochs, args, log)

    rows = evaluate(backbone, net, costs, test, args)
    table = markdown_table(rows, len(costs.blocks))
    runtime = time.perf_counter() - started
    print()
    print(table)
    print(
        f"\nMACs measured with adagate.flops.count_macs (1 GFLOP = 1e9 MACs); time per batch "
        f"of {args.batch_size} is best of {args.timing_repeats}; total {runtime:.0f} s."
    )
    results = {
        "command": " ".join(["python", "examples/skip_blocks/train.py", *(argv or sys.argv[1:])]),
        "args": vars(args),
        "costs": asdict(costs),
        "rows": rows,
        "table": table,
        "log": log,
        "runtime_seconds": runtime,
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "device": str(device),
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_suffix(".tmp")
    temporary.write_text(json.dumps(results, indent=2))
    os.replace(temporary, out)
    print(f"results written to {out}")
    return results


if __name__ == "__main__":
    main()
