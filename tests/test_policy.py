import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from adagate.gates import GumbelGate
from adagate.policy import MultiModalPolicy, PolicyOutput, PolicyState
from adagate.schedules import set_tau

NAMES = ("rgb", "audio", "flow")


def make_policy(dims=None, **kwargs):
    dims = dims or {"rgb": 6, "audio": 4}
    kwargs.setdefault("hidden_size", 5)
    kwargs.setdefault("mlp_sizes", (7,))
    torch.manual_seed(0)
    return MultiModalPolicy(dims, **kwargs)


def make_features(dims, batch, segments, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return {
        name: torch.randn(batch, segments, size, generator=generator) for name, size in dims.items()
    }


def run_steps(policy, features, seed, state=None):
    generator = torch.Generator().manual_seed(seed)
    segments = next(iter(features.values())).shape[1]
    outs = []
    for t in range(segments):
        out = policy.step({k: v[:, t] for k, v in features.items()}, state, generator=generator)
        state = out.state
        outs.append(out)
    decisions = torch.stack([out.decisions for out in outs], 1)
    logits = torch.stack([out.logits for out in outs], 1)
    return decisions, logits, state


configs = st.fixed_dictionaries(
    {
        "num_modalities": st.integers(1, 3),
        "batch": st.integers(1, 4),
        "segments": st.integers(1, 5),
        "recurrent": st.booleans(),
        "mlp_sizes": st.sampled_from([(), (7,), (9, 3)]),
        "always_on_first": st.booleans(),
        "seed": st.integers(0, 2**16),
    }
)


def build(config):
    dims = {name: 2 + i for i, name in enumerate(NAMES[: config["num_modalities"]])}
    always_on = (NAMES[0],) if config["always_on_first"] and len(dims) > 1 else ()
    policy = make_policy(
        dims, recurrent=config["recurrent"], mlp_sizes=config["mlp_sizes"], always_on=always_on
    )
    features = make_features(dims, config["batch"], config["segments"], config["seed"])
    return policy, features


@given(configs)
def test_forward_shapes_and_binary_decisions(config):
    policy, features = build(config)
    batch, segments, modalities = config["batch"], config["segments"], len(policy.modalities)
    out = policy(features, generator=torch.Generator().manual_seed(config["seed"]))
    assert isinstance(out, PolicyOutput)
    assert out.decisions.shape == (batch, segments, modalities)
    assert out.logits.shape == (batch, segments, modalities, 2)
    assert set(out.decisions.unique().tolist()) <= {0.0, 1.0}
    if config["recurrent"]:
        assert isinstance(out.state, PolicyState)
        assert out.state.hidden.shape == out.state.cell.shape == (batch, 5)
        assert torch.equal(out.state.decisions, out.decisions[:, -1])
    else:
        assert out.state is None


@given(configs)
def test_forward_equals_looped_step_with_same_seed(config):
    policy, features = build(config)
    seed = config["seed"]
    out = policy(features, generator=torch.Generator().manual_seed(seed))
    decisions, logits, state = run_steps(policy, features, seed)
    assert torch.equal(out.decisions, decisions)
    torch.testing.assert_close(out.logits, logits)
    if config["recurrent"]:
        torch.testing.assert_close(out.state.hidden, state.hidden)
        torch.testing.assert_close(out.state.cell, state.cell)


@given(configs, st.integers(1, 4))
def test_forward_continues_from_state_like_one_long_call(config, split):
    policy, features = build(config)
    split = min(split, config["segments"])
    generator = torch.Generator().manual_seed(config["seed"])
    whole = policy(features, generator=generator)
    generator.manual_seed(config["seed"])
    first = policy({k: v[:, :split] for k, v in features.items()}, generator=generator)
    if split == config["segments"]:
        assert torch.equal(first.decisions, whole.decisions)
        return
    rest = policy({k: v[:, split:] for k, v in features.items()}, first.state, generator=generator)
    assert torch.equal(torch.cat([first.decisions, rest.decisions], 1), whole.decisions)


def test_step_returns_one_segment_without_time_axis():
    policy = make_policy()
    out = policy.step({"rgb": torch.randn(3, 6), "audio": torch.randn(3, 4)})
    assert out.decisions.shape == (3, 2)
    assert out.logits.shape == (3, 2, 2)
    assert out.state.hidden.shape == (3, 5)


def test_modalities_follow_mapping_order():
    policy = make_policy({"audio": 4, "rgb": 6, "flow": 3})
    assert policy.modalities == ("audio", "rgb", "flow")
    features = make_features({"audio": 4, "rgb": 6, "flow": 3}, 2, 3)
    with torch.no_grad():
        policy.heads["rgb"].bias.copy_(torch.tensor([0.0, -1e3]))
    policy.eval()
    decisions = policy(features).decisions
    assert decisions[..., 1].eq(0).all()
    assert decisions[..., [0, 2]].eq(1).all()


@pytest.mark.parametrize("recurrent", [True, False])
def test_gradients_reach_every_head_mlp_and_lstm(recurrent):
    policy = make_policy({"rgb": 6, "audio": 4, "flow": 3}, recurrent=recurrent, mlp_sizes=(8, 8))
    features = make_features({"rgb": 6, "audio": 4, "flow": 3}, 4, 5)
    decisions = policy(features, generator=torch.Generator().manual_seed(0)).decisions
    weights = torch.randn(decisions.shape, generator=torch.Generator().manual_seed(1))
    (decisions * weights).sum().backward()
    named = dict(policy.named_parameters())
    assert any(name.startswith("lstm.") for name in named) == recurrent
    for name, parameter in named.items():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().sum() > 0, name


def test_gradient_sign_follows_straight_through_sigmoid():
    # d decision / d (logit difference) is the soft sample's derivative, which is positive.
    policy = make_policy()
    features = make_features({"rgb": 6, "audio": 4}, 8, 3)
    out = policy(features, generator=torch.Generator().manual_seed(0))
    out.decisions.sum().backward()
    for head in policy.heads.values():
        assert head.bias.grad[1] > 0 > head.bias.grad[0]


def test_always_on_modality_is_one_without_head_or_gradient_and_is_fed_back():
    dims = {"rgb": 6, "audio": 4}
    policy = make_policy(dims, always_on=("audio",))
    assert set(policy.heads) == {"rgb"}
    assert policy.lstm.input_size == 7 + 2
    features = make_features(dims, 3, 4)
    for mode in (policy.train(), policy.eval()):
        out = mode(features, generator=torch.Generator().manual_seed(0))
        assert out.decisions[..., 1].eq(1).all()
        assert out.state.decisions[:, 1].eq(1).all()
        assert out.logits[..., 1, 1].eq(1e4).all() and out.logits[..., 1, 0].eq(0).all()
        assert torch.sigmoid(out.logits[..., 1, 1] - out.logits[..., 1, 0]).eq(1).all()
    policy.train()
    out = policy(features, generator=torch.Generator().manual_seed(0))
    grad = torch.autograd.grad(out.decisions[..., 1].sum(), policy.mlp[0].weight, allow_unused=True)
    assert grad[0] is None or grad[0].abs().sum() == 0


def test_state_may_be_a_plain_tuple():
    policy = make_policy()
    out = policy(GOOD)
    again = policy(GOOD, tuple(out.state), generator=torch.Generator().manual_seed(0))
    assert again.decisions.shape == (2, 3, 2)


def test_generator_is_keyword_only():
    policy = make_policy()
    for call, features in ((policy, GOOD), (policy.step, {k: v[:, 0] for k, v in GOOD.items()})):
        with pytest.raises(TypeError):
            call(features, None, torch.Generator())


def test_lstm_reads_previous_decisions():
    # The same features and LSTM state with different previous decisions give different logits.
    policy = make_policy()
    features = {"rgb": torch.randn(2, 6), "audio": torch.randn(2, 4)}
    zeros = torch.zeros(2, 5)
    on = policy.step(features, PolicyState(zeros, zeros, torch.ones(2, 2))).logits
    off = policy.step(features, PolicyState(zeros, zeros, torch.zeros(2, 2))).logits
    assert not torch.allclose(on, off)


@pytest.mark.parametrize("recurrent", [True, False])
def test_history_matters_only_when_recurrent(recurrent):
    policy = make_policy(recurrent=recurrent).eval()
    features = make_features({"rgb": 6, "audio": 4}, 2, 3)
    changed = {k: v.clone() for k, v in features.items()}
    changed["rgb"][:, 0] += 5.0
    later = policy(features).logits[:, 1:]
    later_changed = policy(changed).logits[:, 1:]
    assert torch.allclose(later, later_changed) != recurrent


def test_eval_is_deterministic_and_thresholds_logits():
    policy = make_policy().eval()
    features = make_features({"rgb": 6, "audio": 4}, 16, 4)
    first = policy(features, generator=torch.Generator().manual_seed(0))
    second = policy(features, generator=torch.Generator().manual_seed(1))
    assert torch.equal(first.decisions, second.decisions)
    expected = (first.logits[..., 1] > first.logits[..., 0]).float()
    assert torch.equal(first.decisions, expected)


def test_eval_mode_sample_keeps_sampling():
    policy = make_policy(eval_mode="sample").eval()
    features = make_features({"rgb": 6, "audio": 4}, 64, 4)
    first = policy(features, generator=torch.Generator().manual_seed(0))
    second = policy(features, generator=torch.Generator().manual_seed(1))
    assert not torch.equal(first.decisions, second.decisions)


@pytest.mark.parametrize("probability", [0.5, 0.9, 0.2])
def test_initial_selection_probability(probability):
    # With zero head weights the logit difference is the bias, logit(p), so P(use) = p.
    policy = make_policy(initial_on_probability=probability)
    with torch.no_grad():
        for head in policy.heads.values():
            head.weight.zero_()
    features = make_features({"rgb": 6, "audio": 4}, 2000, 5)
    decisions = policy(features, generator=torch.Generator().manual_seed(0)).decisions
    count = decisions.numel()
    tolerance = 5 * math.sqrt(probability * (1 - probability) / count)
    assert abs(decisions.mean().item() - probability) < tolerance


def test_default_initial_selection_rate_is_high():
    policy = MultiModalPolicy({"rgb": 32, "audio": 16}, hidden_size=64, mlp_sizes=(64,))
    features = make_features({"rgb": 32, "audio": 16}, 256, 5)
    decisions = policy(features, generator=torch.Generator().manual_seed(0)).decisions
    assert decisions.mean() > 0.8


def test_state_dict_round_trip_keeps_tau_and_outputs():
    policy = make_policy()
    assert set_tau(policy, 1.25) == 1
    assert sum(isinstance(m, GumbelGate) for m in policy.modules()) == 1
    restored = MultiModalPolicy({"rgb": 6, "audio": 4}, hidden_size=5, mlp_sizes=(7,))
    restored.load_state_dict(policy.state_dict())
    assert restored.gate.tau == 1.25
    features = make_features({"rgb": 6, "audio": 4}, 3, 4)
    a = policy(features, generator=torch.Generator().manual_seed(3))
    b = restored(features, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a.decisions, b.decisions)
    assert torch.equal(a.logits, b.logits)
    assert not any("gated_mask" in key for key in policy.state_dict())


def test_autocast_bfloat16_on_cpu():
    policy = make_policy()
    features = make_features({"rgb": 6, "audio": 4}, 3, 4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = policy(features, generator=torch.Generator().manual_seed(0))
        decisions, _, _ = run_steps(policy, features, seed=0)
    assert set(out.decisions.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(out.decisions, decisions)
    out.decisions.float().sum().backward()
    assert policy.heads["rgb"].weight.grad is not None


def test_generator_makes_training_decisions_repeatable():
    policy = make_policy()
    features = make_features({"rgb": 6, "audio": 4}, 32, 4)
    a = policy(features, generator=torch.Generator().manual_seed(7)).decisions
    b = policy(features, generator=torch.Generator().manual_seed(7)).decisions
    c = policy(features, generator=torch.Generator().manual_seed(8)).decisions
    assert torch.equal(a, b) and not torch.equal(a, c)


GOOD = {"rgb": torch.randn(2, 3, 6), "audio": torch.randn(2, 3, 4)}


@pytest.mark.parametrize(
    ("features", "match"),
    [
        ({"rgb": GOOD["rgb"]}, r"missing \['audio'\]"),
        ({**GOOD, "flow": torch.randn(2, 3, 1)}, r"extra \['flow'\]"),
        (
            {**GOOD, "audio": torch.randn(2, 4)},
            r"features\['audio'\]: expected \(B, T, D\).*\(2, 4\)",
        ),
        ({**GOOD, "rgb": torch.randn(2, 3, 5)}, r"features\['rgb'\].*D = 6.*\(2, 3, 5\)"),
        ({**GOOD, "audio": torch.randn(3, 3, 4)}, r"features: expected one.*'audio': \(3, 3, 4\)"),
        ({**GOOD, "audio": torch.randn(2, 2, 4)}, r"features: expected one.*'rgb': \(2, 3, 6\)"),
        ({"rgb": torch.randn(2, 0, 6), "audio": torch.randn(2, 0, 4)}, r"T >= 1"),
        ({**GOOD, "audio": [1.0]}, r"features\['audio'\].*list"),
    ],
)
def test_bad_features_raise_value_error(features, match):
    with pytest.raises(ValueError, match=match):
        make_policy()(features)


def test_bad_step_features_raise_value_error():
    with pytest.raises(ValueError, match=r"features\['rgb'\]: expected \(B, D\).*\(2, 3, 6\)"):
        make_policy().step(GOOD)


def test_features_must_be_a_mapping():
    with pytest.raises(ValueError, match="features: expected a mapping"):
        make_policy()([GOOD["rgb"], GOOD["audio"]])


def test_bad_state_raises_value_error():
    policy = make_policy()
    zeros = torch.zeros(2, 5)
    with pytest.raises(ValueError, match=r"state: expected.*\(2, 3\)"):
        policy(GOOD, PolicyState(zeros, zeros, torch.zeros(2, 3)))
    with pytest.raises(ValueError, match=r"state: expected.*got \(\(2, 5\), \(2, 5\)\)"):
        policy(GOOD, (zeros, zeros))
    with pytest.raises(ValueError, match="state: expected None when recurrent=False"):
        make_policy(recurrent=False)(GOOD, PolicyState(zeros, zeros, torch.zeros(2, 2)))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"feature_dims": {}}, "at least one modality"),
        ({"feature_dims": {"rgb": 0}}, "rgb: expected a positive size, got 0"),
        ({"hidden_size": 0}, "hidden_size"),
        ({"mlp_sizes": (4, -1)}, r"mlp_sizes\[1\]"),
        ({"always_on": ("depth",)}, r"always_on: expected names of modalities.*got \['depth'\]"),
        ({"always_on": ("rgb", "audio")}, "always_on: expected at least one modality left"),
        ({"initial_on_probability": 1.0}, r"initial_on_probability: expected a value in \(0, 1\)"),
        ({"eval_mode": "random"}, "eval_mode"),
        ({"tau": 0.0}, "tau"),
    ],
)
def test_bad_construction_raises_value_error(kwargs, match):
    kwargs = {"feature_dims": {"rgb": 6, "audio": 4}, **kwargs}
    with pytest.raises(ValueError, match=match):
        MultiModalPolicy(**kwargs)
