import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from adagate import (
    MaskedLateFusion,
    ModalityCosts,
    MultiModalPolicy,
    OperatingPoint,
    choose_operating_point,
    expected_gflops,
    log_likelihood,
    pareto_front,
    route_segments,
    sweep_thresholds,
    threshold_grid,
    top1_accuracy,
)

B, T, C = 6, 4, 5
DIMS = {"rgb": 8, "audio": 4}
COSTS = ModalityCosts({"rgb": 10**9, "audio": 10**8}, policy=10**7)


def setup(seed: int = 0, recurrent: bool = True):
    torch.manual_seed(seed)
    policy = MultiModalPolicy(DIMS, hidden_size=8, mlp_sizes=(16,), recurrent=recurrent).eval()
    backbones = nn.ModuleDict({
        "rgb": nn.Sequential(nn.Flatten(), nn.Linear(12, C)),
        "audio": nn.Sequential(nn.Flatten(), nn.Linear(6, C)),
    }).eval()  # fmt: skip
    fusion = MaskedLateFusion(policy.modalities)
    features = {m: torch.randn(B, T, d) for m, d in DIMS.items()}
    inputs = {"rgb": torch.randn(B, T, 12), "audio": torch.randn(B, T, 6)}
    labels = torch.randint(C, (B,))
    return policy, backbones, fusion, features, inputs, labels


def test_curve_point_equals_routed_evaluation_at_its_thresholds() -> None:
    policy, backbones, fusion, features, inputs, labels = setup()
    dense = route_segments(backbones, inputs, torch.ones(B, T, 2), policy.modalities, route=False)
    grid = threshold_grid(policy, policy(features).logits, points=5)
    curve = sweep_thresholds(policy, features, dense, labels, grid, fusion=fusion, costs=COSTS)
    assert len(curve) == len(grid)
    for point in curve[::3]:
        policy.set_thresholds(point.thresholds)
        with torch.no_grad():
            decisions = policy(features).decisions
            routed = route_segments(backbones, inputs, decisions, policy.modalities)
            video = fusion(routed, decisions)
        assert point.score == top1_accuracy(video, labels)
        gflops = expected_gflops(decisions.double(), COSTS, policy.modalities).mean().item()
        assert point.gflops == pytest.approx(gflops)
        assert torch.equal(point.selection, decisions.mean((0, 1)))


def test_sweep_restores_thresholds_and_mode() -> None:
    policy, _, fusion, features, _, labels = setup()
    policy.set_thresholds({"rgb": 0.25})
    policy.train()
    sweep_thresholds(policy, features, torch.randn(B, T, 2, C), labels,
                     torch.zeros(3, 2), fusion=fusion, costs=COSTS)  # fmt: skip
    assert policy.training
    assert policy.thresholds.tolist() == [0.25, 0.0]


def test_extreme_thresholds_give_all_on_and_all_off() -> None:
    policy, _, fusion, features, _, labels = setup()
    grid = torch.tensor([[-math.inf, -math.inf], [math.inf, math.inf]])
    on, off = sweep_thresholds(policy, features, torch.randn(B, T, 2, C), labels, grid,
                               fusion=fusion, costs=COSTS)  # fmt: skip
    assert on.selection.tolist() == [1.0, 1.0]
    assert off.selection.tolist() == [0.0, 0.0]
    assert on.gflops == pytest.approx(T * (1.0 + 0.1 + 0.01))
    assert off.gflops == pytest.approx(T * 0.01)


def test_threshold_grid_spans_off_to_on_and_respects_limit() -> None:
    policy, _, _, features, _, _ = setup()
    logits = policy(features).logits
    grid = threshold_grid(policy, logits, points=5)
    assert grid.shape[1] == 2
    for k in range(2):
        assert grid[:, k].min() == -math.inf and grid[:, k].max() == math.inf
    assert len(threshold_grid(policy, logits, points=50, limit=30)) <= 30
    with pytest.raises(ValueError, match="logits: expected"):
        threshold_grid(policy, torch.zeros(3, 3, 2))


def test_always_on_modality_is_not_swept() -> None:
    policy = MultiModalPolicy(DIMS, hidden_size=4, mlp_sizes=(), always_on=("audio",)).eval()
    grid = threshold_grid(policy, policy({m: torch.randn(2, 3, d) for m, d in DIMS.items()}).logits)
    assert set(grid[:, 1].tolist()) == {0.0}


@settings(max_examples=60, deadline=None)
@given(st.floats(-3, 3), st.integers(0, 2**16))
def test_higher_threshold_never_selects_more_without_lstm(shift: float, seed: int) -> None:
    policy, _, _, features, _, _ = setup(seed % 7, recurrent=False)
    policy.set_thresholds([shift, shift])
    low = policy(features).decisions
    policy.set_thresholds([shift + 0.5, shift + 0.5])
    high = policy(features).decisions
    assert (high <= low).all()


def test_thresholds_round_trip_in_state_dict_and_old_state_dicts_load() -> None:
    policy, *_ = setup()
    policy.set_thresholds({"rgb": 1.5, "audio": -math.inf})
    again = MultiModalPolicy(DIMS, hidden_size=8, mlp_sizes=(16,))
    again.load_state_dict(policy.state_dict())
    assert again.thresholds.tolist() == [1.5, -math.inf]
    old = {k: v for k, v in policy.state_dict().items() if k != "thresholds"}
    again.load_state_dict(old)
    assert again.thresholds.tolist() == [0.0, 0.0]


def test_thresholds_are_ignored_in_training() -> None:
    policy, _, _, features, _, _ = setup()
    policy.train()
    policy.set_thresholds([math.inf, math.inf])
    generator = torch.Generator().manual_seed(3)
    with_thresholds = policy(features, generator=generator).decisions
    policy.set_thresholds([0.0, 0.0])
    generator = torch.Generator().manual_seed(3)
    assert torch.equal(with_thresholds, policy(features, generator=generator).decisions)


def test_set_thresholds_rejects_bad_input() -> None:
    policy, *_ = setup()
    with pytest.raises(ValueError, match="thresholds: expected names"):
        policy.set_thresholds({"flow": 1.0})
    with pytest.raises(ValueError, match="thresholds: expected 2 values"):
        policy.set_thresholds([1.0])
    with pytest.raises(ValueError, match="thresholds: expected numbers"):
        policy.set_thresholds([math.nan, 0.0])


points = st.lists(
    st.tuples(st.floats(0, 1), st.floats(0.01, 10)), min_size=1, max_size=30
).map(lambda rows: [OperatingPoint(torch.zeros(2), s, g, torch.zeros(2)) for s, g in rows])


@settings(max_examples=100, deadline=None)
@given(points, st.floats(0.05, 1.0))
def test_budget_choice_is_the_best_score_within_the_budget(curve, budget: float) -> None:
    reference = max(curve, key=lambda p: (p.gflops, p.score))
    allowed = [p for p in curve if p.gflops <= budget * reference.gflops + 1e-9]
    if not allowed:
        with pytest.raises(ValueError, match="budget: expected at least"):
            choose_operating_point(curve, budget=budget)
        return
    chosen = choose_operating_point(curve, budget=budget)
    assert chosen.gflops <= budget * reference.gflops + 1e-9
    assert chosen.score == max(p.score for p in allowed)
    # Ties spend the budget: no equally good point within it costs more.
    assert chosen.gflops == max(p.gflops for p in allowed if p.score == chosen.score)


@settings(max_examples=100, deadline=None)
@given(points, st.floats(0, 0.5))
def test_drop_choice_is_the_cheapest_point_within_the_drop(curve, drop: float) -> None:
    reference = max(curve, key=lambda p: (p.gflops, p.score))
    chosen = choose_operating_point(curve, max_drop=drop)
    assert chosen.score >= reference.score - drop - 1e-9
    good = [p for p in curve if p.score >= reference.score - drop - 1e-9]
    assert chosen.gflops == min(p.gflops for p in good)


def test_choose_rejects_bad_arguments() -> None:
    curve = [OperatingPoint(torch.zeros(1), 0.5, 1.0, torch.zeros(1))]
    with pytest.raises(ValueError, match="exactly one"):
        choose_operating_point(curve)
    with pytest.raises(ValueError, match="exactly one"):
        choose_operating_point(curve, budget=0.5, max_drop=0.1)
    with pytest.raises(ValueError, match="budget: expected relative"):
        choose_operating_point(curve, budget=1.5)
    with pytest.raises(ValueError, match="curve: expected at least one"):
        choose_operating_point([], budget=0.5)


@settings(max_examples=60, deadline=None)
@given(points)
def test_pareto_front_is_increasing_in_cost_and_score(curve) -> None:
    front = pareto_front(curve)
    assert all(a.gflops <= b.gflops and a.score < b.score for a, b in itertools.pairwise(front))
    for point in curve:
        assert any(f.gflops <= point.gflops and f.score >= point.score for f in front)


logits_and_labels = st.integers(1, 6).flatmap(lambda n: st.tuples(
    st.lists(st.floats(-30, 30), min_size=n * C, max_size=n * C),
    st.lists(st.integers(0, C - 1), min_size=n, max_size=n)))  # fmt: skip


@given(logits_and_labels, st.floats(-50, 50))
def test_log_likelihood_is_the_negative_cross_entropy_and_ignores_a_shift(data, shift) -> None:
    values, targets = data
    logits, labels = torch.tensor(values).view(-1, C), torch.tensor(targets)
    value = log_likelihood(logits, labels)
    assert value <= 1e-6
    assert value == pytest.approx(-nn.functional.cross_entropy(logits, labels).item(), abs=1e-5)
    # A constant added to a video's logits changes neither its softmax nor the likelihood.
    assert log_likelihood(logits + shift, labels) == pytest.approx(value, abs=1e-4)


def test_log_likelihood_ranks_confidence_that_accuracy_cannot_see() -> None:
    labels = torch.tensor([0, 1])
    sure, unsure = torch.tensor([[5.0, 0.0], [0.0, 5.0]]), torch.tensor([[0.1, 0.0], [0.0, 0.1]])
    assert top1_accuracy(sure, labels) == top1_accuracy(unsure, labels) == 1.0
    assert log_likelihood(sure, labels) > log_likelihood(unsure, labels)
    assert log_likelihood(torch.tensor([[1e4, 0.0]]), torch.tensor([0])) == 0.0
    # Multi-hot labels: the negative binary cross-entropy over videos and classes.
    multi = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    expected = -nn.functional.binary_cross_entropy_with_logits(sure, multi).item()
    assert log_likelihood(sure, multi) == pytest.approx(expected)
