import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from adagate.fusion import MaskedLateFusion, masked_late_fusion
from adagate.gates import gumbel_sigmoid

dims = st.tuples(
    st.integers(1, 3),  # B
    st.integers(1, 5),  # T
    st.integers(1, 4),  # M
    st.integers(1, 6),  # C
)
seeds = st.integers(0, 2**31 - 1)


def make(shape: tuple[int, int, int, int], seed: int, p: float = 0.5):
    """Random float64 logits, a random 0/1 mask (kept with probability p), positive weights."""
    b, t, m, c = shape
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(b, t, m, c, generator=g, dtype=torch.float64)
    decisions = (torch.rand(b, t, m, generator=g, dtype=torch.float64) < p).to(torch.float64)
    weights = torch.rand(m, generator=g, dtype=torch.float64) + 0.1
    return logits, decisions, weights


def loop_reference(logits, decisions, weights, normalize=False):
    """Paper's fusion written out as plain loops over segments and modalities."""
    b, t, m, c = logits.shape
    out = torch.zeros(b, c, dtype=logits.dtype)
    for i in range(b):
        used = 0.0
        for j in range(t):
            for k in range(m):
                out[i] += weights[k] * decisions[i, j, k] * logits[i, j, k]
                used += float(weights[k] * decisions[i, j, k])
        out[i] /= used if normalize and used > 0 else t
    return out


@given(dims, seeds, st.booleans())
def test_matches_loop_reference(shape, seed, normalize):
    logits, decisions, weights = make(shape, seed)
    got = masked_late_fusion(logits, decisions, weights, normalize=normalize)
    torch.testing.assert_close(got, loop_reference(logits, decisions, weights, normalize))


@given(dims, seeds)
def test_all_ones_mask_is_plain_weighted_late_fusion(shape, seed):
    logits, _, weights = make(shape, seed)
    ones = torch.ones(shape[:3], dtype=logits.dtype)
    plain = (logits * weights[:, None]).sum(dim=2).mean(dim=1)
    torch.testing.assert_close(masked_late_fusion(logits, ones, weights), plain)
    torch.testing.assert_close(
        masked_late_fusion(logits, ones, weights, normalize=True), plain / weights.sum()
    )


@given(dims, seeds, st.booleans())
def test_zero_mask_gives_zero(shape, seed, normalize):
    logits, _, weights = make(shape, seed)
    zeros = torch.zeros(shape[:3], dtype=logits.dtype)
    out = masked_late_fusion(logits, zeros, weights, normalize=normalize)
    assert torch.equal(out, torch.zeros(shape[0], shape[3], dtype=logits.dtype))


@given(dims, seeds, st.floats(-3, 3), st.floats(-3, 3), st.booleans())
def test_linear_in_logits(shape, seed, a, b, normalize):
    first, decisions, weights = make(shape, seed)
    second = torch.randn_like(first)
    fuse = lambda x: masked_late_fusion(x, decisions, weights, normalize=normalize)  # noqa: E731
    torch.testing.assert_close(fuse(a * first + b * second), a * fuse(first) + b * fuse(second))


@given(dims, seeds)
def test_default_is_linear_in_weights(shape, seed):
    logits, decisions, first = make(shape, seed)
    second = torch.rand_like(first)
    torch.testing.assert_close(
        masked_late_fusion(logits, decisions, first + second),
        masked_late_fusion(logits, decisions, first)
        + masked_late_fusion(logits, decisions, second),
    )


@given(dims, seeds)
def test_normalized_times_used_weight_equals_default_times_segments(shape, seed):
    logits, decisions, weights = make(shape, seed)
    used = (decisions * weights).sum(dim=(1, 2))
    normalized = masked_late_fusion(logits, decisions, weights, normalize=True)
    default = masked_late_fusion(logits, decisions, weights)
    torch.testing.assert_close(normalized * used[:, None], default * shape[1])


@given(dims, seeds, st.floats(0.01, 100.0))
def test_normalized_is_invariant_to_weight_scale(shape, seed, scale):
    logits, decisions, weights = make(shape, seed)
    torch.testing.assert_close(
        masked_late_fusion(logits, decisions, weights * scale, normalize=True),
        masked_late_fusion(logits, decisions, weights, normalize=True),
    )


@given(dims, seeds)
def test_normalized_is_a_weighted_mean_of_the_selected_logits(shape, seed):
    _, decisions, weights = make(shape, seed)
    b, t, m, c = shape
    constant = torch.randn(b, 1, 1, c, dtype=torch.float64).expand(b, t, m, c)
    out = masked_late_fusion(constant, decisions, weights, normalize=True)
    selected = decisions.sum(dim=(1, 2)) > 0
    torch.testing.assert_close(out[selected], constant[selected, 0, 0])


@given(dims, seeds, st.booleans(), st.sampled_from([torch.bool, torch.int64, torch.uint8]))
def test_bool_integer_and_float_decisions_agree(shape, seed, normalize, dtype):
    logits, decisions, weights = make(shape, seed)
    torch.testing.assert_close(
        masked_late_fusion(logits, decisions.to(dtype), weights, normalize=normalize),
        masked_late_fusion(logits, decisions, weights, normalize=normalize),
    )


@given(dims, seeds)
def test_gradient_to_decisions_is_weight_times_logits_over_segments(shape, seed):
    logits, decisions, weights = make(shape, seed)
    decisions.requires_grad_(True)
    out = masked_late_fusion(logits, decisions, weights)
    upstream = torch.randn_like(out)
    (grad,) = torch.autograd.grad(out, decisions, upstream)
    expected = weights[:, None] * logits / shape[1]  # ∂out[b, c] / ∂d[b, t, m]
    torch.testing.assert_close(grad, torch.einsum("btmc,bc->btm", expected, upstream))


@given(dims, seeds)
def test_normalized_all_skipped_has_zero_output_and_finite_default_gradient(shape, seed):
    logits, _, weights = make(shape, seed)
    zeros = torch.zeros(shape[:3], dtype=logits.dtype, requires_grad=True)
    out = masked_late_fusion(logits, zeros, weights, normalize=True)
    (grad,) = torch.autograd.grad(out.sum(), zeros)
    assert torch.equal(out, torch.zeros_like(out))
    torch.testing.assert_close(grad, (weights[:, None] * logits).sum(-1) / shape[1])


def test_gradient_reaches_gate_logits_through_straight_through_decisions():
    g = torch.Generator().manual_seed(0)
    gate_logits = torch.zeros(2, 3, 2, requires_grad=True)
    decisions = gumbel_sigmoid(gate_logits, tau=1.0, hard=True, generator=g)
    logits = torch.randn(2, 3, 2, 5, generator=g)
    out = masked_late_fusion(logits, decisions, torch.ones(2))
    out[:, 0].sum().backward()
    assert gate_logits.grad is not None
    assert (gate_logits.grad != 0).all()


def test_output_keeps_logits_dtype():
    logits = torch.randn(2, 3, 2, 4, dtype=torch.bfloat16)
    out = masked_late_fusion(logits, torch.ones(2, 3, 2, dtype=torch.bool), torch.ones(2))
    assert out.dtype == torch.bfloat16
    assert out.shape == (2, 4)


@pytest.mark.parametrize("normalize", [False, True])
def test_runs_under_autocast_with_gradients(normalize):
    logits = torch.randn(2, 3, 2, 4)
    decisions = torch.ones(2, 3, 2, requires_grad=True)
    weights = torch.ones(2, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = masked_late_fusion(logits, decisions, weights, normalize=normalize)
    out.float().sum().backward()
    reference = masked_late_fusion(logits, decisions.detach(), weights.detach(), normalize)
    torch.testing.assert_close(out.float(), reference, atol=2e-2, rtol=2e-2)
    assert decisions.grad is not None and weights.grad is not None
    assert torch.isfinite(decisions.grad).all() and torch.isfinite(weights.grad).all()


@pytest.mark.parametrize(
    ("logits", "decisions", "weights", "match"),
    [
        ((2, 3, 4), (2, 3, 2), (2,), r"logits: expected \(B, T, M, C\), got shape \(2, 3, 4\)"),
        ((2, 3, 2, 4), (2, 3), (2,), r"decisions: expected \(B, T, M\), got shape \(2, 3\)"),
        ((2, 3, 2, 4), (2, 4, 2), (2,), r"decisions: expected .* got shape \(2, 4, 2\)"),
        ((2, 3, 2, 4), (1, 3, 2), (2,), r"decisions: expected .* got shape \(1, 3, 2\)"),
        ((2, 3, 2, 4), (2, 3, 2), (3,), r"weights: expected \(M,\) = \(2,\).* got shape \(3,\)"),
        ((2, 3, 2, 4), (2, 3, 2), (1, 2), r"weights: expected .* got shape \(1, 2\)"),
    ],
)
def test_bad_shapes_raise(logits, decisions, weights, match):
    with pytest.raises(ValueError, match=match):
        masked_late_fusion(torch.zeros(logits), torch.ones(decisions), torch.ones(weights))


def test_complex_decisions_raise():
    with pytest.raises(ValueError, match=r"decisions: expected a bool, integer or floating"):
        masked_late_fusion(
            torch.zeros(1, 2, 2, 3), torch.ones(1, 2, 2, dtype=torch.complex64), torch.ones(2)
        )


@pytest.mark.parametrize("bad", [0.0, -1.0])
def test_normalize_with_non_positive_weight_raises(bad):
    weights = torch.tensor([1.0, bad])
    with pytest.raises(ValueError, match=r"weights: expected positive weights with normalize"):
        masked_late_fusion(torch.zeros(1, 2, 2, 3), torch.ones(1, 2, 2), weights, normalize=True)
    masked_late_fusion(torch.zeros(1, 2, 2, 3), torch.ones(1, 2, 2), weights)


@pytest.mark.parametrize("normalize", [False, True])
def test_module_matches_functional(normalize):
    fusion = MaskedLateFusion(["rgb", "audio", "flow"], normalize=normalize)
    logits, decisions, _ = make((2, 4, 3, 5), seed=1)
    logits, decisions = logits.float(), decisions.float()
    torch.testing.assert_close(
        fusion(logits, decisions),
        masked_late_fusion(logits, decisions, torch.full((3,), 1 / 3), normalize=normalize),
    )


def test_module_starts_as_an_average_and_its_weights_get_gradients():
    fusion = MaskedLateFusion(["rgb", "audio"])
    torch.testing.assert_close(fusion.weights, torch.full((2,), 0.5))
    assert [name for name, _ in fusion.named_parameters()] == ["weight_logits"]
    fusion(torch.randn(2, 3, 2, 4), torch.ones(2, 3, 2)).sum().backward()
    assert fusion.weight_logits.grad is not None
    assert (fusion.weight_logits.grad != 0).all()


@given(steps=st.lists(st.floats(-50, 50), min_size=3, max_size=3))
def test_module_weights_stay_positive_and_sum_to_one_whatever_the_optimiser_does(steps):
    fusion = MaskedLateFusion(["rgb", "audio", "flow"], normalize=True)
    with torch.no_grad():
        fusion.weight_logits.add_(torch.tensor(steps))
    assert bool((fusion.weights > 0).all())
    torch.testing.assert_close(fusion.weights.sum(), torch.tensor(1.0))
    assert torch.isfinite(fusion(torch.randn(1, 2, 3, 4), torch.ones(1, 2, 3))).all()


def test_module_fixed_weights_are_a_saved_buffer():
    fusion = MaskedLateFusion(["rgb", "audio"], learnable=False)
    assert list(fusion.parameters()) == []
    assert torch.equal(fusion.state_dict()["weight_logits"], torch.zeros(2))
    torch.testing.assert_close(fusion.weights, torch.full((2,), 0.5))
    assert fusion.modalities == ("rgb", "audio")


@pytest.mark.parametrize("modalities", [[], ["rgb", "rgb"]])
def test_module_bad_modalities_raise(modalities):
    with pytest.raises(ValueError, match=r"modalities: expected non-empty unique names"):
        MaskedLateFusion(modalities)


def test_module_wrong_modality_count_raises():
    fusion = MaskedLateFusion(["rgb", "audio"])
    with pytest.raises(ValueError, match=r"weights: expected \(M,\) = \(3,\)"):
        fusion(torch.zeros(1, 2, 3, 4), torch.ones(1, 2, 3))
