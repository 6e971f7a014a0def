import io

import pytest
import torch
import torch.distributed as dist
from hypothesis import given
from hypothesis import strategies as st

from adagate.gates import gumbel_sigmoid
from adagate.losses import BudgetLoss, efficiency_loss, recovery_loss

dims = st.tuples(st.integers(1, 4), st.integers(1, 6), st.integers(1, 4))  # B, T, M
seeds = st.integers(0, 2**31 - 1)
gammas = st.floats(0.0, 20.0)


def make(shape: tuple[int, int, int], seed: int):
    """Random 0/1 float64 decisions, random correctness, non-negative lambdas."""
    b, t, m = shape
    g = torch.Generator().manual_seed(seed)
    decisions = (torch.rand(b, t, m, generator=g, dtype=torch.float64) < 0.5).to(torch.float64)
    correct = torch.rand(b, generator=g) < 0.5
    lambdas = torch.rand(m, generator=g, dtype=torch.float64)
    return decisions, correct, lambdas


def loop_reference(decisions, correct, lambdas, gamma):
    """AdaMML Eq. 4, second term, written out per video and modality."""
    b, t, m = decisions.shape
    total = 0.0
    for i in range(b):
        for k in range(m):
            used = float(decisions[i, :, k].sum()) / t
            total += float(lambdas[k]) * (used**2 if correct[i] else gamma)
    return total / b


# ---------------------------------------------------------------- efficiency_loss


def test_value_by_hand():
    # One correct video, T = 4: rgb on 2 of 4 segments, audio on all 4; λ = (1, 0.05).
    decisions = torch.tensor([[[1.0, 1.0], [0.0, 1.0], [1.0, 1.0], [0.0, 1.0]]])
    loss = efficiency_loss(decisions, torch.tensor([True]), [1.0, 0.05], gamma=10.0)
    torch.testing.assert_close(loss, torch.tensor(1.0 * (2 / 4) ** 2 + 0.05 * (4 / 4) ** 2))
    # The same video classified wrongly costs γ per modality, weighted by λ.
    wrong = efficiency_loss(decisions, torch.tensor([False]), [1.0, 0.05], gamma=10.0)
    torch.testing.assert_close(wrong, torch.tensor(10.0 * (1.0 + 0.05)))


@given(dims, seeds, gammas)
def test_matches_loop_reference(shape, seed, gamma):
    decisions, correct, lambdas = make(shape, seed)
    loss = efficiency_loss(decisions, correct, lambdas, gamma)
    assert loss.shape == ()
    assert float(loss) == pytest.approx(loop_reference(decisions, correct, lambdas, gamma))


@given(dims, seeds, gammas, st.sampled_from([torch.bool, torch.int64, torch.uint8]))
def test_bool_or_integer_decisions_and_list_lambdas_agree(shape, seed, gamma, dtype):
    decisions, correct, lambdas = make(shape, seed)
    torch.testing.assert_close(
        efficiency_loss(decisions.to(dtype), correct, lambdas.tolist(), gamma),
        efficiency_loss(decisions, correct, lambdas, gamma).float(),
    )


@given(dims, seeds, gammas, st.integers(1, 3))
def test_segment_axes_between_b_and_m_count_as_one(shape, seed, gamma, split):
    # (B, T, M) with T = split · S read as (B, split, S, M), and (B, M) as (B, 1, M): the
    # segments of a video are every axis between B and M, however they are laid out.
    decisions, correct, lambdas = make((shape[0], shape[1] * split, shape[2]), seed)
    nested = decisions.unflatten(1, (split, shape[1]))
    torch.testing.assert_close(
        efficiency_loss(nested, correct, lambdas, gamma),
        efficiency_loss(decisions, correct, lambdas, gamma),
    )
    torch.testing.assert_close(
        efficiency_loss(decisions[:, 0], correct, lambdas, gamma),
        efficiency_loss(decisions[:, :1], correct, lambdas, gamma),
    )
    costs = lambdas + 0.01
    per_video = 0.5 * decisions.shape[1] * float(costs.sum())
    flat, split_budget = (BudgetLoss(costs, per_video, initial_multiplier=1.0) for _ in range(2))
    torch.testing.assert_close(split_budget(nested), flat(decisions))
    assert split_budget.multiplier == flat.multiplier


@given(dims, seeds, gammas)
def test_more_selection_never_costs_less(shape, seed, gamma):
    decisions, _, lambdas = make(shape, seed)
    correct = torch.ones(shape[0], dtype=torch.bool)
    more = decisions.clone()
    more[0, 0, 0] = 1.0
    before = efficiency_loss(decisions, correct, lambdas, gamma)
    after = efficiency_loss(more, correct, lambdas, gamma)
    if decisions[0, 0, 0] == 0:
        assert after > before  # lambdas[0] > 0 almost surely
    else:
        assert after == before


@given(dims, seeds, gammas)
def test_gradient_is_two_lambda_fraction_over_batch_and_segments(shape, seed, gamma):
    decisions, correct, lambdas = make(shape, seed)
    b, t, _ = shape
    decisions.requires_grad_(True)
    (grad,) = torch.autograd.grad(efficiency_loss(decisions, correct, lambdas, gamma), decisions)
    fraction = decisions.detach().mean(dim=1, keepdim=True)
    expected = 2 * lambdas * fraction / (b * t) * correct[:, None, None]
    torch.testing.assert_close(grad, expected.expand(shape))
    # More selection, higher cost: the gradient never asks for more.
    assert (grad >= 0).all()


@given(dims, seeds, gammas)
def test_wrong_videos_cost_gamma_times_lambda_sum_and_give_no_gradient(shape, seed, gamma):
    decisions, _, lambdas = make(shape, seed)
    wrong = torch.zeros(shape[0], dtype=torch.bool)
    decisions.requires_grad_(True)
    loss = efficiency_loss(decisions, wrong, lambdas, gamma)
    (grad,) = torch.autograd.grad(loss, decisions)
    assert float(loss.detach()) == pytest.approx(gamma * float(lambdas.sum()))
    assert torch.equal(grad, torch.zeros_like(grad))


@given(dims, seeds, gammas, gammas)
def test_gamma_shifts_the_value_only(shape, seed, gamma_a, gamma_b):
    decisions, correct, lambdas = make(shape, seed)
    decisions.requires_grad_(True)
    loss_a = efficiency_loss(decisions, correct, lambdas, gamma_a)
    loss_b = efficiency_loss(decisions, correct, lambdas, gamma_b)
    (grad_a,) = torch.autograd.grad(loss_a, decisions)
    (grad_b,) = torch.autograd.grad(loss_b, decisions)
    wrong_share = float((~correct).double().mean())
    shift = (gamma_a - gamma_b) * float(lambdas.sum()) * wrong_share
    assert float((loss_a - loss_b).detach()) == pytest.approx(shift, abs=1e-9)
    assert torch.equal(grad_a, grad_b)


def test_gradient_reaches_gate_logits_of_correct_videos_only():
    g = torch.Generator().manual_seed(0)
    gate_logits = torch.zeros(2, 5, 2, requires_grad=True)
    decisions = gumbel_sigmoid(gate_logits, hard=True, generator=g)
    efficiency_loss(decisions, torch.tensor([True, False]), [1.0, 0.5], 10.0).backward()
    assert gate_logits.grad is not None
    assert (gate_logits.grad[0] > 0).any()
    assert (gate_logits.grad[0] >= 0).all()
    assert torch.equal(gate_logits.grad[1], torch.zeros(5, 2))


@pytest.mark.parametrize(
    ("decisions", "correct", "lambdas", "gamma", "match"),
    [
        (torch.ones(2), torch.ones(2, dtype=torch.bool), [1.0], 1.0,
         r"decisions: expected \(B, ..., M\), got shape \(2,\)"),
        (torch.ones(2, 3, 2, dtype=torch.complex64), torch.ones(2, dtype=torch.bool), [1.0, 1.0],
         1.0, r"decisions: expected a bool, integer or floating tensor"),
        (torch.ones(2, 3, 2), torch.ones(3, dtype=torch.bool), [1.0, 1.0], 1.0,
         r"correct: expected .*\(2,\), got shape \(3,\)"),
        (torch.ones(2, 3, 2), torch.ones(2), [1.0, 1.0], 1.0, r"correct: expected a bool.*float"),
        (torch.ones(2, 3, 2), torch.ones(2, dtype=torch.bool), [1.0], 1.0,
         r"lambdas: expected \(M,\) = \(2,\), got shape \(1,\)"),
        (torch.ones(2, 3, 2), torch.ones(2, dtype=torch.bool), [1.0, -0.1], 1.0,
         r"lambdas: expected finite non-negative values"),
        (torch.ones(2, 3, 2), torch.ones(2, dtype=torch.bool), [1.0, float("nan")], 1.0,
         r"lambdas: expected finite non-negative values"),
        (torch.ones(2, 3, 2), torch.ones(2, dtype=torch.bool), [1.0, 1.0], -1.0,
         r"gamma: expected a non-negative number, got -1.0"),
        (torch.ones(2, 3, 2), torch.ones(2, dtype=torch.bool), [1.0, 1.0], float("nan"),
         r"gamma: expected a non-negative number, got nan"),
    ],
)  # fmt: skip
def test_efficiency_loss_bad_inputs_raise(decisions, correct, lambdas, gamma, match):
    with pytest.raises(ValueError, match=match):
        efficiency_loss(decisions, correct, lambdas, gamma)


# ---------------------------------------------------------------- recovery_loss


def make_fixable(shape: tuple[int, int, int], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 1)
    return torch.rand(shape[0], shape[2], generator=g) < 0.5


@given(dims, seeds)
def test_recovery_matches_loop_reference(shape, seed):
    decisions, _, weights = make(shape, seed)
    fixable = make_fixable(shape, seed)
    b, t, m = shape
    expected = sum(
        float(weights[k]) * (1 - float(decisions[i, :, k].sum()) / t)
        for i in range(b) for k in range(m) if fixable[i, k]
    ) / b  # fmt: skip
    assert float(recovery_loss(decisions, fixable, weights)) == pytest.approx(expected)


@given(dims, seeds)
def test_recovery_gradient_pushes_fixable_gates_on_and_leaves_the_rest(shape, seed):
    decisions, _, weights = make(shape, seed)
    fixable = make_fixable(shape, seed)
    b, t, _ = shape
    decisions.requires_grad_(True)
    (grad,) = torch.autograd.grad(recovery_loss(decisions, fixable, weights), decisions)
    expected = -(weights * fixable) / (b * t)
    torch.testing.assert_close(grad, expected[:, None, :].expand(shape))
    # Gradient descent only ever raises a decision, and only where it would have helped.
    assert (grad <= 0).all()
    assert torch.equal(grad != 0, (fixable & (weights > 0))[:, None, :].expand(shape))


@given(dims, seeds)
def test_recovery_is_zero_when_nothing_is_fixable_or_everything_is_used(shape, seed):
    decisions, _, weights = make(shape, seed)
    nothing = torch.zeros(shape[0], shape[2], dtype=torch.bool)
    assert float(recovery_loss(decisions, nothing, weights)) == 0.0
    everything = torch.ones(shape[0], dtype=torch.bool)
    assert float(recovery_loss(torch.ones(shape), everything, weights)) == 0.0


@given(dims, seeds)
def test_recovery_video_mask_means_every_modality(shape, seed):
    decisions, _, weights = make(shape, seed)
    videos = torch.rand(shape[0], generator=torch.Generator().manual_seed(seed)) < 0.5
    per_modality = videos[:, None].expand(shape[0], shape[2])
    torch.testing.assert_close(
        recovery_loss(decisions, videos, weights), recovery_loss(decisions, per_modality, weights)
    )
    # One number stands for the same weight on every modality.
    torch.testing.assert_close(
        recovery_loss(decisions, videos, 2.0),
        recovery_loss(decisions, videos, torch.full((shape[2],), 2.0, dtype=torch.float64)),
    )


@pytest.mark.parametrize(
    ("fixable", "weights", "match"),
    [
        (torch.ones(2, 3), [1.0, 1.0], "fixable: expected a bool tensor"),
        (torch.ones(3, 2, dtype=torch.bool), [1.0, 1.0], "fixable: expected a bool tensor"),
        (torch.ones(2, 2, dtype=torch.bool), [1.0], "weights: expected"),
        (torch.ones(2, 2, dtype=torch.bool), [1.0, -1.0], "weights: expected"),
    ],
)
def test_recovery_loss_bad_inputs_raise(fixable, weights, match):
    with pytest.raises(ValueError, match=match):
        recovery_loss(torch.ones(2, 4, 2), fixable, weights)


# ---------------------------------------------------------------- BudgetLoss

COSTS = [4.0, 0.3, 8.0]


def test_penalty_is_multiplier_times_normalised_violation():
    budget = BudgetLoss(COSTS, target=0.25, relative=True, initial_multiplier=2.0)
    decisions = torch.zeros(2, 4, 3)
    decisions[0, :, 0] = 1  # video 0: rgb on every segment
    decisions[1, :2, 2] = 1  # video 1: flow on half of the segments
    used = (4.0 * 4 + 8.0 * 2) / 2 / (4 * sum(COSTS))  # batch-mean cost / all-modality cost
    penalty = budget(decisions)
    torch.testing.assert_close(penalty, torch.tensor(2.0 * (used - 0.25)))
    assert budget.used_fraction == pytest.approx(used)
    assert budget.measured_cost(num_segments=4) == pytest.approx((4.0 * 4 + 8.0 * 2) / 2)


@given(dims, seeds, st.floats(0.0, 5.0))
def test_penalty_gradient_is_multiplier_times_cost_share(shape, seed, multiplier):
    decisions, _, costs = make(shape, seed)
    costs = costs + 0.01
    b, t, _ = shape
    budget = BudgetLoss(costs, target=0.5, relative=True, initial_multiplier=multiplier).double()
    decisions.requires_grad_(True)
    (grad,) = torch.autograd.grad(budget(decisions), decisions)
    expected = multiplier * costs / costs.sum() / (b * t)
    torch.testing.assert_close(grad, expected.expand(shape))


@given(dims, seeds, st.floats(0.05, 1.0))
def test_absolute_and_relative_targets_agree(shape, seed, fraction):
    decisions, _, costs = make(shape, seed)
    costs = costs + 0.01
    per_video = fraction * shape[1] * float(costs.sum())
    relative = BudgetLoss(costs, fraction, relative=True, initial_multiplier=1.0).double()
    absolute = BudgetLoss(costs, per_video, initial_multiplier=1.0).double()
    for _ in range(3):
        torch.testing.assert_close(absolute(decisions), relative(decisions))
        assert absolute.multiplier == pytest.approx(relative.multiplier)


@given(dims, seeds, st.floats(1e-3, 1e9))
def test_cost_units_do_not_matter(shape, seed, scale):
    decisions, _, costs = make(shape, seed)
    costs = costs + 0.01
    small = BudgetLoss(costs, 0.4, relative=True, initial_multiplier=1.0).double()
    large = BudgetLoss(costs * scale, 0.4, relative=True, initial_multiplier=1.0).double()
    for _ in range(3):
        torch.testing.assert_close(large(decisions), small(decisions))
        assert large.multiplier == pytest.approx(small.multiplier)


def test_dual_ascent_step_in_training_only():
    budget = BudgetLoss(COSTS, target=0.5, relative=True, step_size=0.1)
    over = torch.ones(2, 4, 3)  # uses everything: violation 1 - 0.5
    budget(over)
    assert budget.multiplier == pytest.approx(0.1 * (1.0 - 0.5))
    budget.eval()
    budget(over)
    assert budget.multiplier == pytest.approx(0.1 * (1.0 - 0.5))
    budget.train()
    under = torch.zeros(2, 4, 3)  # uses nothing: violation -0.5, clamped at zero
    for _ in range(3):
        budget(under)
        assert budget.multiplier == 0.0


def test_forward_then_backward_survives_the_in_place_update():
    budget = BudgetLoss(COSTS, target=0.5, relative=True, initial_multiplier=1.0)
    decisions = torch.ones(2, 4, 3, requires_grad=True)
    budget(decisions).backward()
    assert decisions.grad is not None
    torch.testing.assert_close(
        decisions.grad, (torch.tensor(COSTS) / sum(COSTS) / 8).expand(2, 4, 3)
    )


def test_state_dict_round_trip_keeps_the_multiplier():
    budget = BudgetLoss(COSTS, target=0.3, relative=True, step_size=0.2)
    for _ in range(4):
        budget(torch.ones(2, 4, 3))
    assert list(budget.state_dict()) == ["lagrange_multiplier"]
    buffer = io.BytesIO()
    torch.save(budget.state_dict(), buffer)
    buffer.seek(0)
    restored = BudgetLoss(COSTS, target=0.3, relative=True, step_size=0.2)
    restored.load_state_dict(torch.load(buffer, weights_only=True))
    assert restored.multiplier == pytest.approx(4 * 0.2 * (1.0 - 0.3))
    assert restored.multiplier == budget.multiplier


def budget_toy(target: float, *, relative: bool, steps: int, seed: int = 0):
    """Gate logits per (segment, modality) under a task loss that wants every modality on.

    The task loss Σ_m a_m (1 - selection rate_m)² stands in for cross-entropy: more compute is
    always better for it, so without the budget every gate would open. Returns the used fraction
    of the sampled decisions and the one expected from the gate probabilities, each averaged
    over the last 100 steps (Adam keeps the logits jittering by about its learning rate), and
    the loss module.
    """
    g = torch.Generator().manual_seed(seed)
    costs = torch.tensor(COSTS)
    preference = torch.tensor([1.0, 0.5, 2.0])
    gate_logits = torch.full((8, 3), 2.0, requires_grad=True)  # starts mostly on: over budget
    optimizer = torch.optim.Adam([gate_logits], lr=0.05)
    budget = BudgetLoss(costs, target, relative=relative, step_size=0.1)
    used, expected = [], []
    for _ in range(steps):
        decisions = gumbel_sigmoid(gate_logits.expand(16, 8, 3), hard=True, generator=g)
        task = (preference * (1 - decisions.mean(dim=(0, 1))).square()).sum()
        loss = task + budget(decisions)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        used.append(budget.used_fraction)
        probabilities = torch.sigmoid(gate_logits.detach())
        expected.append(float((probabilities * costs).sum() / (8 * costs.sum())))
    return sum(used[-100:]) / 100, sum(expected[-100:]) / 100, budget


@pytest.mark.parametrize(("fraction", "relative"), [(0.3, True), (0.6, False)])
def test_budget_loss_settles_within_five_percent_of_the_target(fraction, relative):
    target = fraction if relative else fraction * 8 * sum(COSTS)  # GFLOPs per video
    measured, expected, budget = budget_toy(target, relative=relative, steps=400)
    assert measured == pytest.approx(fraction, rel=0.05)  # from the sampled decisions
    assert expected == pytest.approx(fraction, rel=0.05)  # from the selection probabilities
    assert budget.multiplier > 0  # the budget binds: the task alone would use everything


def test_slack_budget_leaves_the_multiplier_at_zero():
    _, expected, budget = budget_toy(1.0, relative=True, steps=100)
    assert budget.multiplier == 0.0
    assert expected > 0.9  # nothing held the task back


def test_single_process_group_gives_the_same_update(tmp_path):
    decisions = torch.ones(2, 4, 3, requires_grad=True)
    alone = BudgetLoss(COSTS, 0.5, relative=True, step_size=0.1, initial_multiplier=1.0)
    (alone_grad,) = torch.autograd.grad(alone(decisions), decisions)
    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        grouped = BudgetLoss(COSTS, 0.5, relative=True, step_size=0.1, initial_multiplier=1.0)
        (grouped_grad,) = torch.autograd.grad(grouped(decisions), decisions)
    finally:
        dist.destroy_process_group()
    assert grouped.multiplier == alone.multiplier
    assert grouped.used_fraction == alone.used_fraction
    torch.testing.assert_close(grouped_grad, alone_grad)


def test_losses_run_under_autocast_with_gradients():
    decisions = torch.ones(2, 4, 3, requires_grad=True)
    correct = torch.tensor([True, False])
    budget = BudgetLoss(COSTS, 0.5, relative=True, initial_multiplier=1.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = efficiency_loss(decisions, correct, [1.0, 0.1, 2.0], 10.0) + budget(decisions)
    loss.float().backward()
    reference = efficiency_loss(decisions.detach(), correct, [1.0, 0.1, 2.0], 10.0) + 0.5
    torch.testing.assert_close(loss.float(), reference, atol=2e-2, rtol=2e-2)
    assert decisions.grad is not None
    assert torch.isfinite(decisions.grad).all()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"costs": [[1.0, 2.0]], "target": 0.5}, r"costs: expected \(M,\), got shape \(1, 2\)"),
        ({"costs": [1.0, -2.0], "target": 0.5}, r"costs: expected finite non-negative values"),
        ({"costs": [0.0, 0.0], "target": 0.5}, r"costs: expected a positive entry"),
        ({"costs": COSTS, "target": 0.0}, r"target: expected a positive cost, got 0.0"),
        ({"costs": COSTS, "target": 1.5, "relative": True},
         r"target: expected a fraction in \(0, 1\] with relative=True, got 1.5"),
        ({"costs": COSTS, "target": 0.5, "step_size": 0.0}, r"step_size: expected a positive"),
        ({"costs": COSTS, "target": 0.5, "initial_multiplier": -1.0},
         r"initial_multiplier: expected a non-negative number"),
    ],
)  # fmt: skip
def test_budget_loss_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        BudgetLoss(**kwargs)


@pytest.mark.parametrize(
    ("decisions", "match"),
    [
        (torch.ones(3), r"decisions: expected \(B, ..., M\), got shape \(3,\)"),
        (torch.ones(2, 4, 2), r"decisions: expected \(B, ..., M\) with M = 3 .* shape \(2, 4, 2\)"),
        (torch.ones(2, 4, 3, dtype=torch.complex64), r"decisions: expected a bool, integer"),
    ],
)
def test_budget_loss_bad_decisions_raise(decisions, match):
    with pytest.raises(ValueError, match=match):
        BudgetLoss(COSTS, 0.5, relative=True)(decisions)


# ---------------------------------------------------------------- values per modality by name

NAMES = ["rgb", "audio", "flow", "depth"]


@given(dims, seeds, gammas, st.data())
def test_mapping_read_in_the_order_of_modalities_equals_the_sequence(shape, seed, gamma, data):
    decisions, correct, lambdas = make(shape, seed)
    order = data.draw(st.permutations(NAMES[: shape[2]]))
    # Keys in another order than the M axis: only modalities= says which value is which.
    by_name = {name: float(lambdas[i]) for i, name in reversed(list(enumerate(order)))}
    fixable = make_fixable(shape, seed)
    torch.testing.assert_close(
        efficiency_loss(decisions, correct, by_name, gamma, modalities=order),
        efficiency_loss(decisions, correct, lambdas, gamma),
    )
    torch.testing.assert_close(
        recovery_loss(decisions, fixable, by_name, modalities=order),
        recovery_loss(decisions, fixable, lambdas),
    )
    costs = {name: value + 1.0 for name, value in by_name.items()}
    budget = BudgetLoss(costs, target=0.5, relative=True, initial_multiplier=1.0, modalities=order)
    reference = BudgetLoss(lambdas + 1.0, target=0.5, relative=True, initial_multiplier=1.0)
    torch.testing.assert_close(budget.costs, reference.costs.to(budget.costs))
    torch.testing.assert_close(budget(decisions), reference(decisions).to(budget(decisions)))


def test_paper_lambdas_by_name():
    decisions = torch.tensor([[[1.0, 1.0], [0.0, 1.0], [1.0, 1.0], [0.0, 1.0]]])
    loss = efficiency_loss(
        decisions, torch.tensor([True]), {"audio": 0.05, "rgb": 1.0}, 10.0,
        modalities=("rgb", "audio"),
    )  # fmt: skip
    torch.testing.assert_close(loss, torch.tensor(1.0 * (2 / 4) ** 2 + 0.05 * (4 / 4) ** 2))
    lambdas = {"rgb": torch.tensor(1.0), "audio": torch.tensor(0.05)}
    same = efficiency_loss(
        decisions, torch.tensor([True]), lambdas, 10.0, modalities=["rgb", "audio"]
    )
    torch.testing.assert_close(same, loss)


LOSSES_TAKING_VALUES = {
    "lambdas": lambda values, **kw: efficiency_loss(
        torch.ones(2, 3, 2), torch.ones(2, dtype=torch.bool), values, 1.0, **kw
    ),
    "weights": lambda values, **kw: recovery_loss(
        torch.ones(2, 3, 2), torch.ones(2, dtype=torch.bool), values, **kw
    ),
    "costs": lambda values, **kw: BudgetLoss(values, 0.5, relative=True, **kw),
}


@pytest.mark.parametrize("name", LOSSES_TAKING_VALUES)
def test_mapping_without_modalities_is_refused_clearly(name):
    with pytest.raises(
        ValueError,
        match=rf"{name}: expected a sequence or tensor of M.* values in the order of the M axis, "
        r"got dict \{'rgb': 1.0, 'audio': 0.05\}; .*pass modalities=",
    ):
        LOSSES_TAKING_VALUES[name]({"rgb": 1.0, "audio": 0.05})


@pytest.mark.parametrize("name", LOSSES_TAKING_VALUES)
@pytest.mark.parametrize(
    ("values", "modalities", "match"),
    [
        ({"rgb": 1.0}, ["rgb", "audio"], r"NAME: expected one value for each of modalities "
         r"\['rgb', 'audio'\], got \{'rgb': 1.0\} \(missing \['audio'\], extra \[\]\)"),
        ({"rgb": 1.0, "audio": 0.1, "flow": 2.0}, ["rgb", "audio"], r"extra \['flow'\]"),
        ({"rgb": 1.0, "audio": "x"}, ["rgb", "audio"],
         r"NAME\['audio'\]: expected a number, got str 'x'"),
        ({"rgb": 1.0, "audio": -1.0}, ["rgb", "audio"], r"NAME: expected finite non-negative"),
        ({"rgb": 1.0, "audio": 1.0}, ["rgb", "rgb"], r"modalities: expected .*distinct names"),
        ({"rgb": 1.0, "audio": 1.0}, "rgb", r"modalities: expected .*distinct names"),
        ([1.0, 1.0], ["rgb", "audio", "flow"], r"modalities: expected M = 2 distinct names"),
        ({"rgb", "audio"}, None, r"NAME: expected a sequence or tensor of M.* got set"),
        (None, None, r"NAME: expected a sequence or tensor of M.* got NoneType"),
    ],
)  # fmt: skip
def test_bad_values_by_modality_raise(name, values, modalities, match):
    with pytest.raises(ValueError, match=match.replace("NAME", name)):
        LOSSES_TAKING_VALUES[name](values, modalities=modalities)
