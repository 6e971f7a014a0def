from __future__ import annotations

import copy
import datetime
import socket
from collections import namedtuple
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor, nn
from torch._subclasses.fake_tensor import FakeTensor

from adagate.flops import count_macs
from adagate.fusion import masked_late_fusion
from adagate.routing import route_segments, run_selected

masks = st.integers(0, 9).flatmap(lambda n: st.lists(st.booleans(), min_size=n, max_size=n))
fills = st.sampled_from([0.0, -1.5, float("inf")])


def _linear(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 6), nn.Tanh(), nn.Linear(6, 3)).double()


def _dense_reference(net: nn.Module, x: Tensor, mask: Tensor, fill: float) -> Tensor:
    return torch.where(mask[:, None], net(x), torch.full((), fill, dtype=x.dtype))


class Recorder(nn.Module):
    """Linear layer that remembers what it was called with."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.seen: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        self.seen.append(x)
        return self.linear(x)


@given(mask_list=masks, fill=fills)
def test_equals_dense_call_times_mask(mask_list: list[bool], fill: float) -> None:
    net = _linear()
    mask = torch.tensor(mask_list, dtype=torch.bool)
    x = torch.randn(len(mask_list), 4, dtype=torch.float64)
    out = run_selected(net, x, mask, fill=fill)
    assert out.shape == (len(mask_list), 3)
    assert out.dtype == x.dtype
    torch.testing.assert_close(out, _dense_reference(net, x, mask, fill))


@given(mask_list=masks)
def test_gradients_match_dense_on_selected_rows_and_are_zero_elsewhere(
    mask_list: list[bool],
) -> None:
    mask = torch.tensor(mask_list, dtype=torch.bool)
    x = torch.randn(len(mask_list), 4, dtype=torch.float64)
    weight = torch.randn(len(mask_list), 3, dtype=torch.float64)
    routed_net, dense_net = _linear(), _linear()
    x_routed, x_dense = x.clone().requires_grad_(), x.clone().requires_grad_()

    routed = run_selected(routed_net, x_routed, mask)
    dense = dense_net(x_dense) * mask[:, None]
    loss_routed, loss_dense = (routed * weight).sum(), (dense * weight).sum()
    if routed.requires_grad:
        loss_routed.backward()
    loss_dense.backward()

    dense_x_grad = x_dense.grad if x_dense.grad is not None else torch.zeros_like(x)
    routed_x_grad = x_routed.grad if x_routed.grad is not None else torch.zeros_like(x)
    torch.testing.assert_close(routed_x_grad, dense_x_grad)
    assert torch.all(routed_x_grad[~mask] == 0)
    for p_routed, p_dense in zip(routed_net.parameters(), dense_net.parameters(), strict=True):
        assert p_dense.grad is not None
        grad = p_routed.grad if p_routed.grad is not None else torch.zeros_like(p_routed)
        torch.testing.assert_close(grad, p_dense.grad)


def test_no_row_selected_never_calls_module_on_real_data() -> None:
    net = Recorder()
    x = torch.randn(5, 4, requires_grad=True)
    out = run_selected(net, x, torch.zeros(5, dtype=torch.bool), fill=2.0)
    assert torch.equal(out, torch.full((5, 3), 2.0))
    assert not out.requires_grad
    assert all(isinstance(seen, FakeTensor) for seen in net.seen)


def test_empty_batch_gives_empty_output() -> None:
    out = run_selected(nn.Linear(4, 3), torch.randn(0, 4), torch.zeros(0, dtype=torch.bool))
    assert out.shape == (0, 3)


def test_no_row_selected_leaves_batchnorm_untouched() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU()).train()
    before = copy.deepcopy(net.state_dict())
    out = run_selected(net, torch.randn(3, 3, 8, 8), torch.zeros(3, dtype=torch.bool))
    assert out.shape == (3, 4, 6, 6)
    for name, tensor in net.state_dict().items():
        assert torch.equal(tensor, before[name]), name


def test_all_rows_selected_calls_module_on_the_inputs_themselves() -> None:
    net = Recorder()
    x = torch.randn(4, 4)
    out = run_selected(net, x, torch.ones(4, dtype=torch.bool))
    assert len(net.seen) == 1 and net.seen[0] is x
    assert torch.equal(out, net.linear(x))


def test_selected_rows_are_the_only_rows_the_module_sees() -> None:
    net = Recorder()
    x = torch.randn(6, 4)
    mask = torch.tensor([False, True, True, False, False, True])
    run_selected(net, x, mask)
    assert len(net.seen) == 1
    assert torch.equal(net.seen[0], x[mask])


@given(
    mask_list=st.lists(st.booleans(), min_size=3, max_size=10).filter(lambda m: sum(m) != 1)
)
def test_batchnorm_train_statistics_come_from_selected_rows_only(mask_list: list[bool]) -> None:
    # Two or more rows (or none): exactly the module's own train-mode call on the selected
    # rows, bit for bit, in outputs, running statistics and gradients.
    mask = torch.tensor(mask_list, dtype=torch.bool)
    torch.manual_seed(0)
    routed = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).double().train()
    reference = copy.deepcopy(routed)
    x = torch.randn(len(mask_list), 3, 6, 6, dtype=torch.float64)
    x_routed, x_reference = x.clone().requires_grad_(), x.clone().requires_grad_()

    out = run_selected(routed, x_routed, mask)
    assert all(m.training for m in routed.modules())
    if mask.any():
        expected = reference(x_reference[mask])
        assert torch.equal(out[mask], expected)
        weight = torch.randn_like(out)
        (out * weight).sum().backward()
        (expected * weight[mask]).sum().backward()
        assert x_routed.grad is not None and x_reference.grad is not None
        assert torch.equal(x_routed.grad, x_reference.grad)
        for p_routed, p_reference in zip(
            routed.parameters(), reference.parameters(), strict=True
        ):
            assert p_routed.grad is not None and p_reference.grad is not None
            assert torch.equal(p_routed.grad, p_reference.grad)
    for name, tensor in routed.state_dict().items():
        assert torch.equal(tensor, reference.state_dict()[name]), name


class OnePixelNet(nn.Module):
    """The layers a train-mode batch of one row cannot normalise: a BatchNorm2d at 1×1 spatial
    size and a BatchNorm1d after pooling. ``x: (N, 3, 3, 3) -> (N, 5)``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn2d = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 5)
        self.bn1d = nn.BatchNorm1d(5)

    def forward(self, x: Tensor) -> Tensor:
        return self.bn1d(self.fc(self.bn2d(self.conv(x)).flatten(1)))


def _warm_one_pixel_net() -> OnePixelNet:
    """An ``OnePixelNet`` in training mode whose running statistics are not the defaults."""
    torch.manual_seed(0)
    net = OnePixelNet().double().train()
    for _ in range(3):
        net(torch.randn(8, 3, 3, 3, dtype=torch.float64) * 2 + 1)
    return net


def test_one_row_alone_really_crashes_a_train_mode_batchnorm() -> None:
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        _warm_one_pixel_net()(torch.randn(1, 3, 3, 3, dtype=torch.float64))


@pytest.mark.parametrize("rows", [1, 4])
def test_one_selected_row_normalises_with_running_statistics_and_leaves_them_unchanged(
    rows: int,
) -> None:
    # rows=1 is the all-selected path (N = 1); rows=4 gathers the one selected row.
    net = _warm_one_pixel_net()
    before = copy.deepcopy(net.state_dict())
    evaluation = copy.deepcopy(net).eval()
    x = torch.randn(rows, 3, 3, 3, dtype=torch.float64, requires_grad=True)
    mask = torch.zeros(rows, dtype=torch.bool)
    mask[rows // 2] = True

    out = run_selected(net, x, mask, fill=-1.0)

    assert out.shape == (rows, 5)
    torch.testing.assert_close(out[mask], evaluation(x[mask].detach()))
    assert bool((out[~mask] == -1).all())
    for name, tensor in net.state_dict().items():
        assert torch.equal(tensor, before[name]), name
    assert all(m.training for m in net.modules())

    (out[mask] * torch.arange(1.0, 6.0, dtype=torch.float64)).sum().backward()
    assert x.grad is not None
    assert bool((x.grad[mask] != 0).any()) and bool((x.grad[~mask] == 0).all())
    for name, parameter in net.named_parameters():
        assert parameter.grad is not None and bool((parameter.grad != 0).any()), name


def test_one_row_rule_restores_each_layers_own_flag() -> None:
    net = _warm_one_pixel_net()
    net.bn1d.eval()
    net(torch.randn(2, 3, 3, 3, dtype=torch.float64))
    before = copy.deepcopy(net.state_dict())
    run_selected(net, torch.randn(3, 3, 3, 3, dtype=torch.float64), torch.tensor([0, 0, 1]))
    assert [m.training for m in net.modules()] == [True, True, True, True, False]
    for name, tensor in net.state_dict().items():
        assert torch.equal(tensor, before[name]), name


def test_one_row_rule_restores_flags_when_the_module_raises() -> None:
    class Failing(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bn = nn.BatchNorm1d(4)

        def forward(self, x: Tensor) -> Tensor:
            self.bn(x)
            raise RuntimeError("boom")

    net = Failing().train()
    with pytest.raises(RuntimeError, match="boom"):
        run_selected(net, torch.randn(2, 4), torch.tensor([True, False]))
    assert net.training and net.bn.training


def test_one_row_rule_leaves_batchnorm_without_running_statistics_in_training_mode() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4, track_running_stats=False))
    reference = copy.deepcopy(net)
    x = torch.randn(3, 3, 6, 6)
    mask = torch.tensor([False, True, False])
    torch.testing.assert_close(run_selected(net, x, mask)[mask], reference(x[mask]))
    with pytest.raises(ValueError, match="more than 1 value per channel"):
        run_selected(net, torch.randn(3, 3, 3, 3), mask)


def test_route_segments_fine_tunes_two_videos_of_two_segments_with_batchnorm() -> None:
    # The tiny-preset step that crashed: B = 2 videos × T = 2 segments, a modality that the
    # policy kept on one segment only, backbones with BatchNorm in training mode.
    torch.manual_seed(0)
    modules = {"rgb": OnePixelNet().train(), "audio": OnePixelNet().train()}
    inputs = {name: torch.randn(2, 2, 3, 3, 3) for name in modules}
    decisions = torch.tensor([[[1.0, 0.0], [1.0, 1.0]], [[1.0, 0.0], [0.0, 0.0]]])
    logits = route_segments(modules, inputs, decisions, ["rgb", "audio"])
    assert logits.shape == (2, 2, 2, 5) and bool(logits.isfinite().all())
    logits.sum().backward()
    for module in modules.values():
        assert all(p.grad is not None for p in module.parameters())
    assert int(modules["audio"].bn2d.num_batches_tracked) == 0
    assert int(modules["rgb"].bn2d.num_batches_tracked) == 1


Pair = namedtuple("Pair", ["left", "right"])


class Nested(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)

    def forward(self, inputs: dict[str, Any]) -> dict[str, Any]:
        a, (b,) = inputs["a"], inputs["rest"]
        y = self.linear(a) + b.sum(1, keepdim=True)
        return {"logits": y, "pair": Pair(y.sum(1), [a * 2, b.int()])}


@given(mask_list=masks)
def test_nested_inputs_and_outputs_keep_their_structure(mask_list: list[bool]) -> None:
    net = Nested()
    n = len(mask_list)
    mask = torch.tensor(mask_list, dtype=torch.bool)
    inputs = {"a": torch.randn(n, 4), "rest": (torch.randn(n, 2),)}
    out = run_selected(net, inputs, mask, fill=-1.0)
    dense = net(inputs)

    assert set(out) == {"logits", "pair"}
    assert isinstance(out["pair"], Pair) and isinstance(out["pair"].right, list)
    pairs = [
        (out["logits"], dense["logits"]),
        (out["pair"].left, dense["pair"].left),
        (out["pair"].right[0], dense["pair"].right[0]),
        (out["pair"].right[1], dense["pair"].right[1]),
    ]
    for routed, reference in pairs:
        assert routed.shape == reference.shape and routed.dtype == reference.dtype
        fill = torch.full_like(reference, -1)
        selected = mask.reshape(-1, *([1] * (reference.ndim - 1)))
        torch.testing.assert_close(routed, torch.where(selected, reference, fill))


@pytest.mark.parametrize("mask_list", [[True, False, True], [False, False, False], [True] * 3])
def test_autocast_output_dtype(mask_list: list[bool]) -> None:
    net = nn.Linear(4, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = run_selected(net, torch.randn(3, 4), torch.tensor(mask_list))
        reference = net(torch.randn(3, 4))
    assert out.dtype == reference.dtype == torch.bfloat16


@pytest.mark.parametrize("mask_list", [[True, False, True, False], [False] * 4, [True] * 4])
def test_count_macs_counts_only_selected_rows(mask_list: list[bool]) -> None:
    class Routed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = nn.Linear(5, 7)

        def forward(self, x: Tensor, mask: Tensor) -> Tensor:
            return run_selected(self.linear, x, mask)

    mask = torch.tensor(mask_list)
    assert count_macs(Routed(), torch.randn(4, 5), mask) == int(mask.sum()) * 5 * 7


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        (torch.ones(3, dtype=torch.bool), r"shape \(4,\).*shape \(3,\)"),
        (torch.ones(4, dtype=torch.complex64), r"torch.complex64"),
        (torch.ones(4, 1, dtype=torch.bool), r"shape \(4, 1\)"),
        ([True] * 4, r"list"),
    ],
)
def test_bad_mask_raises(mask: Any, message: str) -> None:
    with pytest.raises(ValueError, match=r"mask: expected.*" + message):
        run_selected(nn.Linear(2, 2), torch.randn(4, 2), mask)


@pytest.mark.parametrize(
    "inputs",
    [
        (torch.randn(4, 2), torch.randn(3, 2)),
        {"a": torch.randn(4, 2), "b": "text"},
        torch.tensor(1.0),
        (),
    ],
)
def test_bad_inputs_raise(inputs: Any) -> None:
    with pytest.raises(ValueError, match="inputs"):
        run_selected(nn.Identity(), inputs, torch.ones(4, dtype=torch.bool))


def test_module_must_be_a_module() -> None:
    with pytest.raises(ValueError, match=r"module: expected an nn\.Module, got function"):
        run_selected(lambda x: x, torch.randn(2, 2), torch.ones(2, dtype=torch.bool))


class Pooled(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x.sum(0, keepdim=True)


@pytest.mark.parametrize("mask_list", [[True, False, True], [False] * 3])
def test_module_that_mixes_rows_raises(mask_list: list[bool]) -> None:
    with pytest.raises(ValueError, match=r"one row per input row.*shape \(1, 2\)"):
        run_selected(Pooled(), torch.randn(3, 2), torch.tensor(mask_list))


def test_non_tensor_output_raises() -> None:
    class Text(nn.Module):
        def forward(self, x: Tensor) -> Any:
            return [x, "label"]

    with pytest.raises(ValueError, match=r"module output.*str"):
        run_selected(Text(), torch.randn(3, 2), torch.tensor([True, False, True]))


def test_data_dependent_module_with_no_row_selected_raises_clearly() -> None:
    class ItemScaled(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return x * x.abs().max().item()

    with pytest.raises(RuntimeError, match=r"ItemScaled cannot be inferred.*pass example_output"):
        run_selected(ItemScaled(), torch.randn(3, 2), torch.zeros(3, dtype=torch.bool))
    example = {"scaled": torch.empty(0, 2, dtype=torch.float64)}

    class Named(ItemScaled):
        def forward(self, x: Tensor) -> Any:
            return {"scaled": super().forward(x)}

    out = run_selected(Named(), torch.randn(3, 2), torch.zeros(3), -1.0, example_output=example)
    assert out["scaled"].dtype == torch.float64
    torch.testing.assert_close(out["scaled"], torch.full((3, 2), -1.0, dtype=torch.float64))


def test_example_output_is_checked() -> None:
    with pytest.raises(ValueError, match=r"example_output: expected tensors of >= 1 dims"):
        run_selected(
            nn.Identity(), torch.randn(3, 2), torch.zeros(3), example_output=torch.ones(())
        )


def test_no_row_output_is_inferred_once_per_signature() -> None:
    net = Recorder()
    none = torch.zeros(2, dtype=torch.bool)
    for _ in range(3):
        assert run_selected(net, torch.randn(2, 4), none).shape == (2, 3)
    assert len(net.seen) == 1
    assert run_selected(net, torch.randn(2, 5, 4), none).shape == (2, 5, 3)
    assert len(net.seen) == 2
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert run_selected(net, torch.randn(2, 4), none).dtype == torch.bfloat16
    assert run_selected(net.double(), torch.randn(2, 4).double(), none).dtype == torch.float64
    net.linear = nn.Linear(4, 7).double()
    assert run_selected(net, torch.randn(2, 4).double(), none).shape == (2, 7)
    assert len(net.seen) == 5
    assert all(isinstance(seen, FakeTensor) for seen in net.seen)


def _two_modalities() -> tuple[dict[str, nn.Module], dict[str, Tensor]]:
    torch.manual_seed(0)
    modules = {"rgb": nn.Linear(6, 3).double(), "audio": nn.Linear(2, 3).double()}
    inputs = {"rgb": torch.randn(3, 4, 6).double(), "audio": torch.randn(3, 4, 2).double()}
    return modules, inputs


@given(
    bits=st.lists(st.booleans(), min_size=24, max_size=24),
    fill=st.sampled_from([0.0, -2.0]),
    as_bool=st.booleans(),
)
def test_route_segments_equals_dense_outputs_where_selected(
    bits: list[bool], fill: float, as_bool: bool
) -> None:
    modules, inputs = _two_modalities()
    decisions = torch.tensor(bits).reshape(3, 4, 2)
    if not as_bool:
        decisions = decisions.double()
    routed = route_segments(modules, inputs, decisions, ["rgb", "audio"], fill=fill)
    dense = route_segments(modules, inputs, decisions, ["rgb", "audio"], route=False)
    assert routed.shape == dense.shape == (3, 4, 2, 3)
    for index, name in enumerate(["rgb", "audio"]):
        torch.testing.assert_close(dense[:, :, index], modules[name](inputs[name]))
    selected = decisions.bool()[..., None].expand_as(dense)
    torch.testing.assert_close(routed, torch.where(selected, dense, torch.tensor(fill).double()))


def test_route_segments_follows_the_order_of_modalities() -> None:
    modules, inputs = _two_modalities()
    decisions = torch.ones(3, 4, 2)
    forward = route_segments(modules, inputs, decisions, ["rgb", "audio"])
    backward = route_segments(modules, inputs, decisions, ["audio", "rgb"])
    torch.testing.assert_close(forward, backward.flip(2))


def test_route_segments_rejects_bad_input() -> None:
    modules, inputs = _two_modalities()
    with pytest.raises(ValueError, match=r"decisions: expected \(B, T, M\) with M = 2"):
        route_segments(modules, inputs, torch.ones(3, 4, 3), ["rgb", "audio"])
    with pytest.raises(ValueError, match=r"modalities: expected each.*got \['flow'\]"):
        route_segments(modules, inputs, torch.ones(3, 4, 2), ["rgb", "flow"])
    short = {**inputs, "audio": inputs["audio"][:, :2]}
    with pytest.raises(ValueError, match=r"inputs\['audio'\]: expected.*\(B, T\) = \(3, 4\)"):
        route_segments(modules, short, torch.ones(3, 4, 2), ["rgb", "audio"])
    wide = {**modules, "audio": nn.Linear(2, 5).double()}
    with pytest.raises(ValueError, match="modules: expected outputs of one shape"):
        route_segments(wide, inputs, torch.ones(3, 4, 2), ["rgb", "audio"])


@given(
    values=st.lists(st.sampled_from([0.0, 0.25, 1.0, -1.0, 2.0]), min_size=1, max_size=8),
    dtype=st.sampled_from([torch.float32, torch.float64, torch.int64, torch.uint8, torch.bool]),
)
def test_a_row_is_selected_where_its_decision_is_nonzero_in_every_dtype(
    values: list[float], dtype: torch.dtype
) -> None:
    mask = torch.tensor(values).abs().to(dtype)
    x = torch.randn(len(values), 4, dtype=torch.float64)
    torch.testing.assert_close(
        run_selected(_linear(), x, mask), run_selected(_linear(), x, mask != 0)
    )


@given(levels=st.lists(st.sampled_from([0.0, 0.3, 1.0]), min_size=24, max_size=24))
def test_routing_never_changes_the_fused_logits_even_for_soft_decisions(
    levels: list[float],
) -> None:
    modules, inputs = _two_modalities()
    decisions = torch.tensor(levels, dtype=torch.float64).reshape(3, 4, 2)
    weights = torch.tensor([0.7, 0.3], dtype=torch.float64)
    fused = [
        masked_late_fusion(route_segments(modules, inputs, decisions, modalities, route=route),
                           decisions, weights)
        for modalities in [("rgb", "audio")]
        for route in (True, False)
    ]
    torch.testing.assert_close(fused[0], fused[1])


class CollectiveNorm(nn.SyncBatchNorm):
    """SyncBatchNorm's contract on CPU: every training forward joins an all-reduce of the
    batch statistics (torch's SyncBatchNorm itself needs a GPU), with zero rows allowed."""

    def __init__(self, num_features: int) -> None:
        super().__init__(num_features)
        self.seen_training: list[bool] = []

    def forward(self, x: Tensor) -> Tensor:
        self.seen_training.append(self.training)
        stats = torch.stack([x.sum(0), (x * x).sum(0), x.new_full((x.shape[1],), x.shape[0])])
        dist.all_reduce(stats)
        mean = stats[0] / stats[2]
        var = stats[1] / stats[2] - mean * mean
        return (x - mean) / (var + self.eps).sqrt() * self.weight + self.bias


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _routed_step(rank: int, port: int) -> None:
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=2,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(4, 3), CollectiveNorm(3)).train()
        mask = torch.tensor([True, True, False]) if rank == 0 else torch.zeros(3, dtype=torch.bool)
        out = run_selected(net, torch.randn(3, 4), mask)
        assert out.shape == (3, 3)
        assert bool((out[~mask] == 0).all())
        # One row per rank: the statistics are synchronised over both, so the layer keeps
        # training mode (in eval mode it would skip the collective the other rank waits in).
        net[1].seen_training.clear()
        run_selected(net, torch.randn(3, 4), torch.tensor([False, True, False]))
        assert net[1].seen_training == [True]
    finally:
        dist.destroy_process_group()


def test_a_rank_with_no_row_still_joins_the_sync_batchnorm_collective() -> None:
    # Without the empty-batch call, rank 0 would wait in all_reduce for rank 1 until the
    # process group's timeout; the join below fails well before that would pass silently.
    context = mp.start_processes(
        _routed_step, args=(_free_port(),), nprocs=2, join=False, start_method="spawn"
    )
    deadline = 90.0
    start = datetime.datetime.now()
    while not context.join(timeout=1.0):
        if (datetime.datetime.now() - start).total_seconds() > deadline:
            for process in context.processes:
                process.kill()
            pytest.fail(f"routed SyncBatchNorm step did not finish in {deadline:.0f} s: a hang")
