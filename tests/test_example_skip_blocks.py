"""The skip_blocks example: a ResNet that skips residual blocks per image (BlockDrop style).

Runs a tiny configuration of ``examples/skip_blocks/train.py`` end to end, and checks the parts
it relies on: skipped blocks pass images through, measured MACs are the parts × how often they
ran, the policy is trained through the gates.
"""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from torch.nn import functional as F

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "skip_blocks"
sys.path.insert(0, str(EXAMPLE))

from shapes import CLASSES, make_shapes  # noqa: E402
from skipnet import BlockDropNet, BlockPolicy, GatedBlock, SkipResNet  # noqa: E402

from adagate.flops import count_macs  # noqa: E402


def _load_train():
    # A unique module name: other examples may also have a "train" module.
    spec = importlib.util.spec_from_file_location("skip_blocks_train", EXAMPLE / "train.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


train = _load_train()


def _mixed_policy_net(widths=(4, 8), blocks_per_stage=2):
    """A net whose policy keeps some blocks for some images: random logits layer."""
    torch.manual_seed(0)
    backbone = SkipResNet(len(CLASSES), widths, blocks_per_stage)
    policy = BlockPolicy(len(backbone.blocks), width=4)
    torch.nn.init.normal_(policy.logits.weight, std=3.0)
    torch.nn.init.normal_(policy.logits.bias, std=1.0)
    return BlockDropNet(backbone, policy).eval()


def test_bad_noise_floor_exits_with_one_line_naming_the_flag(capsys):
    with pytest.raises(SystemExit) as exited:
        train.parse_args(["--noise-floor", "-0.5"])
    assert exited.value.code == 2
    assert "--noise-floor: expected a number in [0, 1]" in capsys.readouterr().err


def test_shapes_are_deterministic_and_hard_images_are_grey():
    first, second = make_shapes(64, seed=3), make_shapes(64, seed=3)
    assert torch.equal(first.images, second.images)
    assert torch.equal(first.labels, second.labels)
    assert first.images.shape == (64, 3, 32, 32)
    assert float(first.images.min()) >= 0 and float(first.images.max()) <= 1
    # Grey shapes on a grey background: every channel has the same mean, up to pixel noise;
    # a coloured shape moves the channel means apart.
    means = first.images.mean(dim=(2, 3))
    spread = means.amax(1) - means.amin(1)
    assert float(spread[first.hard].max()) < 0.015 < float(spread[~first.hard].min())


def test_make_shapes_rejects_bad_arguments():
    with pytest.raises(ValueError, match="hard_fraction"):
        make_shapes(8, hard_fraction=1.5)


def test_skipped_block_passes_images_through_unchanged():
    torch.manual_seed(0)
    block = GatedBlock(4, 4).eval()
    x = torch.rand(6, 4, 8, 8)  # non-negative, like the output of a previous block
    gate = torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0, 1.0])
    out = block(x, gate)
    assert torch.equal(out[gate == 0], x[gate == 0])
    torch.testing.assert_close(out[gate == 1], block(x[gate == 1]))


def test_routed_macs_are_the_parts_times_how_often_they_ran():
    net = _mixed_policy_net()
    images = torch.rand(16, 3, 32, 32)
    costs = train.measure_costs(net.backbone, net.policy, images[:1])
    decisions = net.policy(images)[0]
    assert 0 < int(decisions.sum()) < decisions.numel()
    expected = len(images) * (costs.always + costs.policy) + int(
        (decisions.sum(0).long() * torch.tensor(costs.blocks)).sum()
    )
    assert count_macs(net, images) == expected
    assert count_macs(net.backbone, images) == len(images) * costs.dense


def test_policy_gets_gradient_through_the_gates_in_training():
    net = _mixed_policy_net().train()
    images, labels = torch.rand(8, 3, 32, 32), torch.randint(len(CLASSES), (8,))
    logits, _ = net(images)
    F.cross_entropy(logits, labels).backward()
    assert net.policy.logits.weight.grad is not None
    assert float(net.policy.logits.weight.grad.abs().sum()) > 0


def test_tiny_run_end_to_end_respects_budget_and_skips_blocks(tmp_path):
    out = tmp_path / "results.json"
    budget = 0.5
    results = train.main(
        [
            "--train-size", "1024", "--test-size", "256", "--image-size", "16",
            "--widths", "8", "16", "--blocks-per-stage", "2",
            "--pretrain-epochs", "2", "--epochs", "10", "--batch-size", "64",
            "--budget", str(budget), "--budget-step", "0.1", "--timing-repeats", "1",
            "--threads", "1", "--out", str(out),
        ]
    )  # fmt: skip
    assert json.loads(out.read_text())["rows"] == results["rows"]
    dense, adaptive, random_skip = results["rows"]
    assert dense["keep_rate_per_block"] == [1.0] * 4
    # Budget: the last epoch's expected cost of the gated blocks is near its target, and the
    # measured (deterministic) cost of the adaptive net is well below the dense one.
    last = results["log"][-1]
    assert abs(last["budget_used"] - last["budget_target"]) < 0.15
    assert adaptive["macs_vs_dense"] < 0.8
    # Gates switch: some blocks are skipped, but not all of them for every image.
    assert 0 < adaptive["blocks_easy"] + adaptive["blocks_hard"] < 2 * 4
    # The random baseline draws from the policy's per-block rates.
    for policy_rate, random_rate in zip(
        adaptive["keep_rate_per_block"], random_skip["keep_rate_per_block"], strict=True
    ):
        assert abs(policy_rate - random_rate) < 0.15


def test_fixable_marks_wrong_images_the_dense_network_gets_right_and_keeps_batchnorm_stats():
    torch.manual_seed(0)
    backbone = SkipResNet(len(CLASSES), (4, 8), 1).train()
    images, labels = torch.rand(32, 3, 16, 16), torch.randint(len(CLASSES), (32,))
    gated = torch.randn(32, len(CLASSES))  # stands in for the logits under the gates
    running = {name: buffer.clone() for name, buffer in backbone.named_buffers()}
    fixable = train.fixable(backbone, images, gated, labels)
    assert backbone.training  # left in the mode it was given
    for name, buffer in backbone.named_buffers():
        assert torch.equal(buffer, running[name]), name
    with torch.no_grad():
        dense_right = backbone.eval()(images).argmax(1) == labels
    assert torch.equal(fixable, (gated.argmax(1) != labels) & dense_right)
    assert fixable.dtype == torch.bool and fixable.shape == (32,)
    assert 0 < int(fixable.sum()) < len(labels)  # the comparison above is not vacuous
