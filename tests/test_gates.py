import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from adagate.gates import GumbelGate, gumbel_sigmoid, gumbel_softmax
from adagate.schedules import set_tau

HALF_DTYPES = [torch.float16, torch.bfloat16]
ALL_DTYPES = [torch.float32, torch.float64, *HALF_DTYPES]


def seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def binomial_bound(p: torch.Tensor, n: int) -> torch.Tensor:
    # 5 standard deviations plus one count of slack for the p ≈ 0 or 1 cases.
    return 5 * torch.sqrt(p * (1 - p) / n) + 1 / n


@given(
    logits=st.lists(st.floats(-60, 60), min_size=1, max_size=6),
    seed=st.integers(0, 2**31),
)
def test_hard_gate_probability_matches_sigmoid(logits: list[float], seed: int) -> None:
    n = 20_000
    x = torch.tensor(logits, dtype=torch.float64).expand(n, -1)
    frequency = gumbel_sigmoid(x, generator=seeded(seed)).mean(0)
    p = torch.sigmoid(torch.tensor(logits, dtype=torch.float64))
    assert ((frequency - p).abs() <= binomial_bound(p, n)).all()


@given(
    logits=st.lists(st.floats(-30, 30), min_size=2, max_size=5),
    seed=st.integers(0, 2**31),
)
def test_hard_categorical_frequencies_match_softmax(logits: list[float], seed: int) -> None:
    n = 20_000
    x = torch.tensor(logits, dtype=torch.float64).expand(n, -1)
    frequency = gumbel_softmax(x, generator=seeded(seed)).mean(0)
    p = torch.softmax(torch.tensor(logits, dtype=torch.float64), -1)
    assert ((frequency - p).abs() <= binomial_bound(p, n)).all()


@given(
    logits=st.lists(st.floats(-8, 8), min_size=1, max_size=4),
    noise=st.floats(0.05, 3),
    seed=st.integers(0, 2**31),
)
def test_noise_scale_sets_the_probability_of_on(
    logits: list[float], noise: float, seed: int
) -> None:
    n = 20_000
    x = torch.tensor(logits, dtype=torch.float64).expand(n, -1)
    frequency = gumbel_sigmoid(x, noise=noise, generator=seeded(seed)).mean(0)
    p = torch.sigmoid(torch.tensor(logits, dtype=torch.float64) / noise)
    assert ((frequency - p).abs() <= binomial_bound(p, n)).all()
    categorical = torch.tensor([[logits[0], 0.0]], dtype=torch.float64).expand(n, -1)
    frequency = gumbel_softmax(categorical, noise=noise, generator=seeded(seed)).mean(0)
    p = torch.softmax(categorical[0] / noise, -1)
    assert ((frequency - p).abs() <= binomial_bound(p, n)).all()


@given(
    logits=st.lists(st.floats(-20, 20), min_size=2, max_size=6),
    tau=st.floats(0.1, 10),
)
def test_zero_noise_decides_as_eval_with_the_relaxed_gradient(
    logits: list[float], tau: float
) -> None:
    x = torch.tensor(logits, dtype=torch.float64, requires_grad=True)
    out = gumbel_sigmoid(x, tau, noise=0.0)
    assert torch.equal(out.detach(), GumbelGate().eval()(x.detach()))
    (grad,) = torch.autograd.grad(out.sum(), x)
    torch.testing.assert_close(grad, torch.sigmoid(x / tau) * torch.sigmoid(-x / tau) / tau)
    rows = x.detach().reshape(1, -1)
    one_hot = gumbel_softmax(rows, tau, noise=0.0)
    assert torch.equal(one_hot, GumbelGate(dim=-1).eval()(rows))


def test_unit_noise_is_the_gumbel_softmax_draw_for_draw() -> None:
    x = torch.randn(64, 3, generator=seeded(5))
    assert torch.equal(gumbel_sigmoid(x, 0.5, noise=1.0, generator=seeded(1)),
                       gumbel_sigmoid(x, 0.5, generator=seeded(1)))  # fmt: skip
    assert torch.equal(gumbel_softmax(x, 0.5, noise=1.0, generator=seeded(1)),
                       gumbel_softmax(x, 0.5, generator=seeded(1)))  # fmt: skip


def test_masked_category_is_never_drawn() -> None:
    x = torch.tensor([0.0, -math.inf, 2.0]).expand(5000, -1)
    samples = gumbel_softmax(x, generator=seeded())
    assert samples[:, 1].sum() == 0
    assert samples[:, 0].sum() > 0 and samples[:, 2].sum() > 0


@given(
    shape=st.lists(st.integers(1, 5), min_size=1, max_size=3),
    tau=st.floats(0.05, 20),
    scale=st.floats(0, 100),
    seed=st.integers(0, 2**31),
)
def test_hard_outputs_are_exact_and_soft_outputs_are_distributions(
    shape: list[int], tau: float, scale: float, seed: int
) -> None:
    x = torch.randn(shape, generator=seeded(seed)) * scale
    hard = gumbel_sigmoid(x, tau, generator=seeded(seed))
    assert ((hard == 0) | (hard == 1)).all()
    soft = gumbel_sigmoid(x, tau, hard=False, generator=seeded(seed))
    assert ((soft >= 0) & (soft <= 1)).all()
    # The hard decision is the soft sample rounded at 0.5, under the same noise.
    assert torch.equal(hard, (soft > 0.5).float())

    one_hot = gumbel_softmax(x, tau, generator=seeded(seed))
    assert ((one_hot == 0) | (one_hot == 1)).all()
    assert torch.equal(one_hot.sum(-1), torch.ones(shape[:-1]))
    probabilities = gumbel_softmax(x, tau, hard=False, generator=seeded(seed))
    torch.testing.assert_close(probabilities.sum(-1), torch.ones(shape[:-1]))
    assert torch.equal(one_hot.argmax(-1), probabilities.argmax(-1))


@given(
    shape=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    tau=st.floats(0.1, 10),
    seed=st.integers(0, 2**31),
)
def test_straight_through_gradient_equals_soft_sample_gradient(
    shape: list[int], tau: float, seed: int
) -> None:
    x = torch.randn(shape, generator=seeded(seed)) * 3
    upstream = torch.randn(shape, generator=seeded(seed + 1))
    for sample in (gumbel_sigmoid, gumbel_softmax):
        grads = []
        for hard in (True, False):
            leaf = x.clone().requires_grad_()
            (sample(leaf, tau, hard, generator=seeded(seed)) * upstream).sum().backward()
            grads.append(leaf.grad)
        torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=0)
    # ... and both are the analytic derivative of sigmoid((x + noise) / tau).
    soft = gumbel_sigmoid(x, tau, hard=False, generator=seeded(seed))
    leaf = x.clone().requires_grad_()
    (gumbel_sigmoid(leaf, tau, generator=seeded(seed)) * upstream).sum().backward()
    torch.testing.assert_close(leaf.grad, upstream * soft * (1 - soft) / tau)


@given(logits=st.lists(st.floats(-5, 5), min_size=2, max_size=6), seed=st.integers(0, 2**31))
def test_temperature_limits(logits: list[float], seed: int) -> None:
    x = torch.tensor(logits)
    # tau → 0: the relaxed sample becomes the hard sample drawn with the same noise.
    for sample in (gumbel_sigmoid, gumbel_softmax):
        cold = sample(x, 1e-6, hard=False, generator=seeded(seed))
        hard = sample(x, 1e-6, hard=True, generator=seeded(seed))
        torch.testing.assert_close(cold, hard, rtol=0, atol=1e-4)
    # tau → ∞: the noise and the logits are washed out.
    hot = gumbel_sigmoid(x, 1e6, hard=False, generator=seeded(seed))
    torch.testing.assert_close(hot, torch.full_like(x, 0.5), rtol=0, atol=1e-4)
    uniform = gumbel_softmax(x, 1e6, hard=False, generator=seeded(seed))
    torch.testing.assert_close(uniform, torch.full_like(x, 1 / len(logits)), rtol=0, atol=1e-4)


def test_extreme_temperatures_stay_finite() -> None:
    x = torch.tensor([[1e4, -1e4, 0.0, -math.inf]])
    for tau in (1e-38, 1e38):
        for hard in (True, False):
            assert torch.isfinite(gumbel_softmax(x, tau, hard)).all()
            assert torch.isfinite(gumbel_sigmoid(x, tau, hard)[..., :3]).all()


@pytest.mark.parametrize("dtype", ALL_DTYPES)
@pytest.mark.parametrize("hard", [True, False])
def test_no_nan_for_extreme_and_masked_logits(dtype: torch.dtype, hard: bool) -> None:
    base = torch.tensor([1e4, -1e4, 0.0, 3.0, -math.inf, 50.0]).expand(2000, -1).contiguous()
    x = base.to(dtype).requires_grad_()
    upstream = torch.randn(base.shape, generator=seeded(3)).to(dtype)
    for sample in (gumbel_softmax, gumbel_sigmoid):
        x.grad = None
        y = sample(x, 0.5, hard, generator=seeded(1))
        assert y.dtype == dtype
        assert torch.isfinite(y).all()
        (y * upstream).sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()
    # torch's own sampler turns such inputs into NaN in low precision (torch issue 101620).
    assert torch.isfinite(gumbel_softmax(x.detach(), 0.5, hard)).all()


@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_nan_logit_gives_nan_decision(dtype: torch.dtype) -> None:
    x = torch.tensor([[0.0, math.nan, 1.0], [0.0, 1.0, 2.0]], dtype=dtype)
    assert torch.isnan(gumbel_sigmoid(x)).tolist() == [[False, True, False]] + [[False] * 3]
    rows = torch.isnan(gumbel_softmax(x)).all(-1)
    assert rows.tolist() == [True, False]
    for eval_mode in ("argmax", "soft"):
        binary = GumbelGate(eval_mode=eval_mode).eval()
        assert torch.isnan(binary(x)).tolist() == [[False, True, False]] + [[False] * 3]
        categorical = GumbelGate(eval_mode=eval_mode, dim=-1).eval()
        assert torch.isnan(categorical(x)).all(-1).tolist() == [True, False]


def test_same_seed_same_samples_and_different_seed_differs() -> None:
    x = torch.randn(64, 8)
    for sample in (gumbel_sigmoid, gumbel_softmax):
        assert torch.equal(sample(x, generator=seeded(7)), sample(x, generator=seeded(7)))
        assert not torch.equal(sample(x, generator=seeded(7)), sample(x, generator=seeded(8)))


def test_gate_training_samples_and_eval_is_deterministic() -> None:
    x = torch.zeros(4096)
    gate = GumbelGate(tau=1.0)
    sampled = gate(x)
    assert 0.4 < sampled.mean() < 0.6
    gate.eval()
    logits = torch.randn(4096)
    assert torch.equal(gate(logits), (logits > 0).float())
    assert torch.equal(gate(logits), gate(logits))
    categorical = GumbelGate(dim=-1).eval()
    scores = torch.randn(100, 5)
    assert torch.equal(categorical(scores).argmax(-1), scores.argmax(-1))


def test_gate_eval_modes() -> None:
    logits = torch.randn(1000, 3)
    # "soft" is the expected value of the hard sample, P(on), whatever the temperature.
    soft = GumbelGate(tau=2.0, eval_mode="soft").eval()
    torch.testing.assert_close(soft(logits), torch.sigmoid(logits))
    sampled = gumbel_sigmoid(logits.expand(4000, -1, -1), tau=2.0, generator=seeded(5)).mean(0)
    torch.testing.assert_close(sampled, soft(logits), rtol=0, atol=0.05)
    soft_categorical = GumbelGate(tau=2.0, eval_mode="soft", dim=1).eval()
    torch.testing.assert_close(soft_categorical(logits), torch.softmax(logits, 1))
    sample = GumbelGate(eval_mode="sample").eval()
    first = sample(logits, generator=seeded(0))
    assert torch.equal(first, gumbel_sigmoid(logits, generator=seeded(0)))
    assert not torch.equal(first, sample(logits, generator=seeded(1)))


def test_gate_tau_is_settable_and_saved_in_state_dict() -> None:
    gate = GumbelGate(tau=5.0)
    gate.tau = 0.25
    restored = GumbelGate(tau=1.0)
    restored.load_state_dict(gate.state_dict())
    assert restored.tau == 0.25
    with pytest.raises(ValueError, match="tau"):
        gate.tau = 0.0
    assert "tau=0.25" in repr(gate)


def test_gate_noise_is_settable_saved_and_optional_in_old_state_dicts() -> None:
    gate = GumbelGate(noise=0.5)
    assert set_tau(torch.nn.Sequential(gate), 2.0, noise=0.25) == 1
    assert (gate.tau, gate.noise) == (2.0, 0.25)
    set_tau(gate, 3.0)
    assert gate.noise == 0.25  # None leaves it
    restored = GumbelGate()
    restored.load_state_dict(gate.state_dict())
    assert restored.noise == 0.25 and "noise=0.25" in repr(restored)
    old = {"_extra_state": {"tau": 0.5}}  # an adagate 0.1.0 gate
    restored.load_state_dict(old)
    assert (restored.tau, restored.noise) == (0.5, 1.0)
    for bad in (-0.1, math.nan, math.inf):
        with pytest.raises(ValueError, match="noise: expected a finite number >= 0"):
            gate.noise = bad
        with pytest.raises(ValueError, match="noise"):
            gumbel_sigmoid(torch.zeros(2), noise=bad)
        with pytest.raises(ValueError, match="noise"):
            gumbel_softmax(torch.zeros(2), noise=bad)


def test_gate_state_dict_survives_weights_only_load(tmp_path: "pytest.TempPathFactory") -> None:
    path = f"{tmp_path}/gate.pt"
    torch.save(torch.nn.Sequential(GumbelGate(tau=0.7)).state_dict(), path)
    model = torch.nn.Sequential(GumbelGate())
    model.load_state_dict(torch.load(path, weights_only=True))
    assert model[0].tau == 0.7


@pytest.mark.parametrize("tau", [0.0, -1.0, math.nan, math.inf])
def test_bad_tau_is_rejected(tau: float) -> None:
    for sample in (gumbel_sigmoid, gumbel_softmax):
        with pytest.raises(ValueError, match="tau"):
            sample(torch.zeros(3), tau)
    with pytest.raises(ValueError, match="tau"):
        GumbelGate(tau=tau)


def test_bad_inputs_are_rejected() -> None:
    for sample in (gumbel_sigmoid, gumbel_softmax):
        with pytest.raises(ValueError, match="logits: expected a floating-point tensor"):
            sample(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="logits: expected at least one category along dim=-1"):
        gumbel_softmax(torch.zeros(4, 0))
    with pytest.raises(ValueError, match="logits: expected at least one category"):
        gumbel_softmax(torch.tensor(1.0))
    with pytest.raises(ValueError, match=r"dim: expected an axis of logits.*\(4, 3\), got 2"):
        gumbel_softmax(torch.zeros(4, 3), dim=2)
    with pytest.raises(ValueError, match="eval_mode: expected one of"):
        GumbelGate(eval_mode="median")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="logits: expected a floating-point"):
        GumbelGate().eval()(torch.zeros(3, dtype=torch.int64))
    with pytest.raises(TypeError):
        GumbelGate()(torch.zeros(3), torch.Generator())  # type: ignore[misc]
    assert gumbel_sigmoid(torch.zeros(0)).shape == (0,)


@pytest.mark.parametrize(
    "backend", ["aot_eager", pytest.param("inductor", marks=pytest.mark.slow)]
)
def test_gates_under_torch_compile(backend: str) -> None:
    # aot_eager traces forward and backward whole (fullgraph: no graph break) in a second;
    # inductor also generates code, which takes half a minute on CPU.
    @torch.compile(backend=backend, fullgraph=True)
    def gate(x: torch.Tensor) -> torch.Tensor:
        return gumbel_sigmoid(x, 0.5) + gumbel_softmax(x, 0.5)

    x = torch.randn(256, 2, requires_grad=True)
    y = gate(x)
    assert set(y.unique().tolist()) <= {0.0, 1.0, 2.0}
    y.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
