from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import Tensor, nn

from adagate.flops import ModalityCosts, count_macs, expected_gflops

GIGA = 1e9


@given(
    batch=st.integers(1, 4),
    in_features=st.integers(1, 16),
    out_features=st.integers(1, 16),
    bias=st.booleans(),
)
def test_count_macs_linear_matches_formula(
    batch: int, in_features: int, out_features: int, bias: bool
) -> None:
    layer = nn.Linear(in_features, out_features, bias=bias)
    macs = count_macs(layer, torch.randn(batch, in_features))
    assert macs == batch * in_features * out_features


@given(
    batch=st.integers(1, 2),
    groups=st.integers(1, 2),
    in_per_group=st.integers(1, 3),
    out_per_group=st.integers(1, 3),
    kernel=st.integers(1, 3),
    stride=st.integers(1, 2),
    padding=st.integers(0, 1),
    size=st.integers(3, 9),
)
def test_count_macs_conv2d_matches_formula(
    batch: int,
    groups: int,
    in_per_group: int,
    out_per_group: int,
    kernel: int,
    stride: int,
    padding: int,
    size: int,
) -> None:
    conv = nn.Conv2d(
        in_per_group * groups, out_per_group * groups, kernel, stride, padding, groups=groups
    )
    out_size = (size + 2 * padding - kernel) // stride + 1
    expected = batch * out_per_group * groups * out_size**2 * in_per_group * kernel**2
    assert count_macs(conv, torch.randn(batch, in_per_group * groups, size, size)) == expected


def test_count_macs_leaves_modes_and_batchnorm_statistics_alone() -> None:
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(), nn.Linear(6, 2))
    net.train()
    net[2].eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    count_macs(net, torch.randn(2, 3, 8, 8))
    assert [m.training for m in net.modules()] == [True, True, True, False, True]
    for name, tensor in net.state_dict().items():
        assert torch.equal(tensor, before[name]), name


class Seen(nn.Module):
    """A layer that keeps what it was called with, and a plain tensor attribute (no buffer)."""

    def __init__(self, reads_values: bool = False) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.scale = torch.full((4,), 2.0)
        self.reads_values = reads_values
        self.seen: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        self.seen.append(x)
        if self.reads_values and x.sum() > 1e9:
            x = x * 0
        out: Tensor = self.linear(x * self.scale)
        return out


def test_count_macs_runs_on_fake_tensors_and_for_real_only_when_values_are_read() -> None:
    shapes_only = Seen()
    assert count_macs(shapes_only, torch.randn(5, 4)) == 5 * 4 * 3
    assert [type(x).__name__ for x in shapes_only.seen] == ["FakeTensor"]
    reads = Seen(reads_values=True)
    assert count_macs(reads, torch.randn(5, 4)) == 5 * 4 * 3
    assert [type(x).__name__ for x in reads.seen] == ["FakeTensor", "Tensor"]


def test_count_macs_rejects_non_module() -> None:
    with pytest.raises(ValueError, match=r"module: expected an nn\.Module"):
        count_macs(torch.relu, torch.randn(2))  # type: ignore[arg-type]


def test_modality_costs_copies_and_orders() -> None:
    recognition = {"rgb": 10, "audio": 3}
    costs = ModalityCosts(recognition, policy=2)
    recognition["rgb"] = 99
    assert costs.recognition == {"rgb": 10, "audio": 3}
    assert costs.modalities == ("rgb", "audio")
    assert costs.as_tensor().tolist() == [10.0, 3.0]
    assert costs.as_tensor(["audio", "rgb"]).tolist() == [3.0, 10.0]
    assert costs.as_tensor(dtype=torch.float64).dtype == torch.float64


@pytest.mark.parametrize(
    ("recognition", "policy", "message"),
    [
        ({"rgb": -1}, 0, r"recognition\['rgb'\].*-1"),
        ({"rgb": 1, "audio": 14.52}, 0, r"recognition\['audio'\].*14.52.*int\(14.52e9\)"),
        ({"rgb": True}, 0, r"recognition\['rgb'\].*True"),
        ({"rgb": 1}, -5, r"policy.*-5"),
        ({"rgb": 1}, 0.5, r"policy.*0.5"),
        ({}, 0, r"recognition: expected a non-empty mapping"),
        ({1: 5}, 0, r"recognition: expected modality names as keys, got 1"),
    ],
)
def test_modality_costs_rejects_bad_costs(recognition: Any, policy: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ModalityCosts(recognition, policy=policy)


@pytest.mark.parametrize("order", [["rgb"], ["rgb", "audio", "flow"], ["rgb", "rgb"]])
def test_as_tensor_rejects_wrong_modalities(order: list[str]) -> None:
    costs = ModalityCosts({"rgb": 10, "audio": 3})
    with pytest.raises(ValueError, match=r"modalities: expected each of \['audio', 'rgb'\]"):
        costs.as_tensor(order)


class TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 3), nn.Linear(5, 3)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return self.a(x) + self.b(y)


class DictInput(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 2)

    def forward(self, features: dict[str, Tensor]) -> Tensor:
        return self.fc(torch.cat([features["rgb"], features["audio"]], dim=-1))


def test_measure_uses_count_macs_per_module() -> None:
    rgb, audio = nn.Conv2d(3, 8, 3), TwoInputs()
    rgb_features, policy_net = nn.Linear(12, 4), DictInput()
    rgb_x = torch.randn(1, 3, 7, 7)
    audio_x = (torch.randn(1, 4), torch.randn(1, 5))
    features = {"rgb": torch.randn(1, 1, 4), "audio": torch.randn(1, 1, 2)}
    costs = ModalityCosts.measure(
        {"rgb": rgb, "audio": audio},
        {"rgb": rgb_x, "audio": audio_x},
        policy={"rgb_features": rgb_features, "policy": policy_net},
        policy_inputs={"rgb_features": torch.randn(1, 12), "policy": features},
    )
    assert costs.recognition == {
        "rgb": count_macs(rgb, rgb_x),
        "audio": count_macs(audio, *audio_x),
    }
    assert costs.recognition["audio"] == 4 * 3 + 5 * 3
    assert costs.policy == 12 * 4 + 6 * 2
    assert ModalityCosts.measure({"rgb": rgb}, {"rgb": rgb_x}).policy == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"inputs": {"rgb": torch.randn(1, 2)}},
            r"inputs: expected one entry per recognition.*missing \['audio'\]",
        ),
        (
            {"policy": {"p": nn.Linear(2, 1)}, "policy_inputs": {"q": torch.randn(1, 2)}},
            r"policy_inputs: expected.*missing \['p'\], extra \['q'\]",
        ),
        ({"policy": {"p": nn.Linear(2, 1)}}, r"policy_inputs.*missing \['p'\]"),
    ],
)
def test_measure_rejects_mismatched_keys(kwargs: dict[str, Any], message: str) -> None:
    arguments: dict[str, Any] = {
        "recognition": {"rgb": nn.Linear(2, 1), "audio": nn.Linear(2, 1)},
        "inputs": {"rgb": torch.randn(1, 2), "audio": torch.randn(1, 2)},
        **kwargs,
    }
    with pytest.raises(ValueError, match=message):
        ModalityCosts.measure(**arguments)


def test_expected_gflops_small_case_by_hand() -> None:
    costs = ModalityCosts({"rgb": 4 * 10**9, "audio": 10**9}, policy=5 * 10**8)
    decisions = torch.tensor(
        [
            [[1, 0], [1, 1], [0, 0]],  # rgb twice, audio once, policy three times
            [[0, 0], [0, 0], [0, 0]],  # policy only
        ]
    )
    expected = torch.tensor([4 + 4 + 1 + 3 * 0.5, 3 * 0.5])
    torch.testing.assert_close(expected_gflops(decisions, costs), expected)
    swapped = expected_gflops(decisions.flip(-1), costs, modalities=["audio", "rgb"])
    torch.testing.assert_close(swapped, expected)


def test_expected_gflops_reproduces_paper_table1() -> None:
    # AdaMML Table 1, Kinetics-Sounds, T = 10 segments: RGB alone 141.36, audio alone 3.82
    # GFLOPs per video; the policy costs 0.76 GFLOPs per segment (AdaMML §4.1).
    segments = 10
    costs = ModalityCosts(
        {"rgb": round(141.36e9 / segments), "audio": round(3.82e9 / segments)},
        policy=round(0.76e9),
    )
    fusion = ModalityCosts(costs.recognition)
    all_on = torch.ones(1, segments, 2)
    torch.testing.assert_close(expected_gflops(all_on, fusion), torch.tensor([145.18]))
    # AdaMML row: selection rates 46.47% (RGB) and 94.15% (audio), reported 76.45 GFLOPs;
    # rates are averages over videos, so the per-video mean agrees to within 1%.
    rates = torch.tensor([0.4647, 0.9415]).expand(1, segments, 2)
    assert abs(expected_gflops(rates, costs).item() - 76.45) / 76.45 < 0.01


cost_values = st.integers(0, 20 * 10**9)


@st.composite
def decisions_and_costs(draw: st.DrawFn) -> tuple[Tensor, ModalityCosts]:
    m = draw(st.integers(1, 4))
    b, t = draw(st.integers(1, 3)), draw(st.integers(1, 5))
    recognition = {f"m{i}": draw(cost_values) for i in range(m)}
    bits = draw(st.lists(st.booleans(), min_size=b * t * m, max_size=b * t * m))
    decisions = torch.tensor(bits, dtype=torch.float64).reshape(b, t, m)
    return decisions, ModalityCosts(recognition, policy=draw(cost_values))


@given(case=decisions_and_costs())
def test_expected_gflops_equals_sum_over_segments(case: tuple[Tensor, ModalityCosts]) -> None:
    decisions, costs = case
    b, t, m = decisions.shape
    rec = list(costs.recognition.values())
    expected = [
        sum(rec[k] for s in range(t) for k in range(m) if decisions[i, s, k]) / GIGA
        + t * costs.policy / GIGA
        for i in range(b)
    ]
    result = expected_gflops(decisions, costs)
    assert result.shape == (b,) and result.dtype == torch.float64
    torch.testing.assert_close(result, torch.tensor(expected, dtype=torch.float64))


@given(case=decisions_and_costs())
def test_expected_gflops_all_ones_pays_everything(case: tuple[Tensor, ModalityCosts]) -> None:
    decisions, costs = case
    b, t, _ = decisions.shape
    all_on = expected_gflops(torch.ones_like(decisions), costs)
    total = t * (sum(costs.recognition.values()) + costs.policy) / GIGA
    torch.testing.assert_close(all_on, torch.full((b,), total, dtype=torch.float64))


@given(case=decisions_and_costs(), data=st.data())
def test_expected_gflops_monotone_in_decisions(
    case: tuple[Tensor, ModalityCosts], data: st.DataObject
) -> None:
    decisions, costs = case
    b, t, m = decisions.shape
    i, s, k = (data.draw(st.integers(0, n - 1)) for n in (b, t, m))
    more = decisions.clone()
    more[i, s, k] = 1.0
    gain = expected_gflops(more, costs) - expected_gflops(decisions, costs)
    assert torch.all(gain >= 0)
    step = (1 - decisions[i, s, k]) * costs.recognition[f"m{k}"] / GIGA
    torch.testing.assert_close(gain[i], step)


def test_expected_gflops_dtypes_and_gradient() -> None:
    costs = ModalityCosts({"rgb": 3 * 10**9, "audio": 10**9})
    bits = torch.tensor([[[True, False], [True, True]]])
    for decisions in (bits, bits.long(), bits.half()):
        result = expected_gflops(decisions, costs)
        assert result.dtype == torch.float32
        torch.testing.assert_close(result, torch.tensor([7.0]))
    soft = torch.full((2, 3, 2), 0.5, requires_grad=True)
    expected_gflops(soft, costs).sum().backward()
    assert soft.grad is not None
    torch.testing.assert_close(soft.grad, torch.tensor([3.0, 1.0]).expand(2, 3, 2))


@pytest.mark.parametrize(
    ("decisions", "message"),
    [
        (torch.ones(2, 3), r"decisions: expected \(B, T, M\), got shape \(2, 3\)"),
        (torch.ones(2, 3, 3), r"modalities \['rgb', 'audio'\], got shape \(2, 3, 3\)"),
        ([[[1, 0]]], r"decisions: expected a bool, integer or floating tensor.*got list"),
    ],
)
def test_expected_gflops_rejects_bad_decisions(decisions: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        expected_gflops(decisions, ModalityCosts({"rgb": 1, "audio": 1}))


def test_expected_gflops_rejects_bad_costs_and_modalities() -> None:
    with pytest.raises(ValueError, match=r"costs: expected a ModalityCosts or a mapping.*Tensor"):
        expected_gflops(torch.ones(1, 1, 2), torch.ones(2))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"modalities: expected each of"):
        expected_gflops(torch.ones(1, 1, 2), ModalityCosts({"rgb": 1, "audio": 1}), ["rgb", "x"])


@given(case=decisions_and_costs(), data=st.data())
def test_expected_gflops_reads_a_mapping_in_the_order_of_modalities(
    case: tuple[Tensor, ModalityCosts], data: st.DataObject
) -> None:
    decisions, costs = case
    order = data.draw(st.permutations(costs.modalities))
    shuffled = dict(reversed(list(costs.recognition.items())))
    recognition_only = ModalityCosts(costs.recognition)
    torch.testing.assert_close(
        expected_gflops(decisions, shuffled, order),
        expected_gflops(decisions, recognition_only, order),
    )


def test_expected_gflops_mapping_needs_modalities_and_whole_macs() -> None:
    decisions = torch.ones(1, 2, 2)
    recognition = {"rgb": 4 * 10**9, "audio": 10**9}
    with pytest.raises(ValueError, match=r"costs: expected a ModalityCosts, or a mapping .* "
                       r"modalities= .*got dict \{'rgb': 4000000000, 'audio': 1000000000\}"):
        expected_gflops(decisions, recognition)
    with pytest.raises(ValueError, match=r"modalities: expected each of \['audio', 'rgb'\]"):
        expected_gflops(decisions, recognition, ["rgb", "flow"])
    with pytest.raises(ValueError, match=r"costs: read as ModalityCosts.*recognition\['rgb'\]"):
        expected_gflops(decisions, {"rgb": 4.1, "audio": 0.3}, ["rgb", "audio"])


# --- shared modalities: the policy reads a recogniser's features ------------------------------


@st.composite
def decisions_and_shared_costs(draw: st.DrawFn) -> tuple[Tensor, ModalityCosts]:
    decisions, costs = draw(decisions_and_costs())
    shared = draw(st.lists(st.sampled_from(costs.modalities), unique=True))
    return decisions, ModalityCosts(costs.recognition, costs.policy, shared=shared)


@given(case=decisions_and_shared_costs())
def test_expected_gflops_pays_policy_and_shared_always_and_others_by_decision(
    case: tuple[Tensor, ModalityCosts],
) -> None:
    decisions, costs = case
    b, t, _ = decisions.shape
    rec = list(costs.recognition.values())
    others = [k for k, name in enumerate(costs.modalities) if name not in costs.shared]
    shared = sum(costs.recognition[name] for name in costs.shared)
    by_decision = [sum(rec[k] * decisions[i, :, k].sum() for k in others) for i in range(b)]
    expected = [(t * costs.policy + t * shared + paid) / GIGA for paid in by_decision]
    result = expected_gflops(decisions, costs)
    torch.testing.assert_close(result, torch.tensor(expected, dtype=torch.float64))
    assert costs.always == costs.policy + shared


@given(case=decisions_and_shared_costs(), data=st.data())
def test_shared_decisions_change_no_cost(
    case: tuple[Tensor, ModalityCosts], data: st.DataObject
) -> None:
    # The shared network ran anyway: its gate only says whether its logits enter the fusion.
    decisions, costs = case
    b, t, m = decisions.shape
    bits = data.draw(st.lists(st.booleans(), min_size=b * t * m, max_size=b * t * m))
    other = torch.tensor(bits, dtype=decisions.dtype).reshape(b, t, m)
    is_shared = torch.tensor([name in costs.shared for name in costs.modalities])
    flipped = torch.where(is_shared, other, decisions)
    torch.testing.assert_close(expected_gflops(flipped, costs), expected_gflops(decisions, costs))


@given(case=decisions_and_shared_costs())
def test_sharing_every_modality_makes_the_cost_fixed(case: tuple[Tensor, ModalityCosts]) -> None:
    decisions, costs = case
    everything = ModalityCosts(costs.recognition, costs.policy, shared=costs.modalities)
    b, t, _ = decisions.shape
    not_shared = ModalityCosts(costs.recognition, costs.policy)
    dense = expected_gflops(torch.ones_like(decisions), not_shared)
    torch.testing.assert_close(expected_gflops(decisions, everything), dense)
    assert everything.as_tensor(marginal=True).eq(0).all()
    fixed = torch.full((b,), t * everything.always / GIGA, dtype=torch.float64)
    torch.testing.assert_close(dense, fixed)


def test_shared_costs_are_ordered_marginal_and_differentiable() -> None:
    recognition = {"rgb": 14 * 10**9, "audio": 4 * 10**8, "flow": 16 * 10**9}
    costs = ModalityCosts(recognition, policy=10**8, shared=["flow", "audio"])
    assert costs.shared == ("audio", "flow")
    assert costs.always == 10**8 + 4 * 10**8 + 16 * 10**9
    assert costs.as_tensor().tolist() == [14e9, 4e8, 16e9]
    assert costs.as_tensor(["flow", "rgb", "audio"], marginal=True).tolist() == [0.0, 14e9, 0.0]
    assert costs == ModalityCosts(costs.recognition, 10**8, shared=("audio", "flow"))
    soft = torch.full((2, 3, 3), 0.5, requires_grad=True)
    expected_gflops(soft, costs).sum().backward()
    assert soft.grad is not None
    torch.testing.assert_close(soft.grad, torch.tensor([14.0, 0.0, 0.0]).expand(2, 3, 3))


def test_the_paper_policy_with_the_audio_network_shared() -> None:
    # AdaMML §4.1: policy 0.76 GFLOPs per segment, of which 0.382 is its audio MobileNetV2, the
    # same network on the same spectrogram as the audio recogniser. Reading the recogniser's
    # features instead, audio on every segment costs what the separate extractor did.
    separate = ModalityCosts({"rgb": 14_136_000_000, "audio": 382_000_000}, policy=760_000_000)
    own = 760_000_000 - 382_000_000
    shared = ModalityCosts(separate.recognition, policy=own, shared=("audio",))
    always_audio = torch.tensor([[1.0, 1.0]] * 5 + [[0.0, 1.0]] * 5)[None]  # (1, T=10, M)
    saving = expected_gflops(always_audio, separate) - expected_gflops(always_audio, shared)
    torch.testing.assert_close(saving, torch.tensor([10 * 0.382]))


@pytest.mark.parametrize(
    ("shared", "message"),
    [
        (("depth",), r"shared: expected distinct names from \['rgb', 'audio'\], got \['depth'\]"),
        (("audio", "audio"), r"shared: expected distinct names .*got \['audio', 'audio'\]"),
        ("audio", r"shared: expected a sequence of modality names.*got 'audio'"),
        (None, r"shared: expected a sequence of modality names.*got None"),
    ],
)
def test_modality_costs_rejects_bad_shared(shared: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ModalityCosts({"rgb": 1, "audio": 1}, shared=shared)


def test_measure_passes_shared_and_leaves_shared_networks_out_of_the_policy() -> None:
    audio = nn.Linear(8, 3)
    costs = ModalityCosts.measure(
        {"rgb": nn.Linear(16, 3), "audio": audio},
        {"rgb": torch.randn(1, 16), "audio": torch.randn(1, 8)},
        policy={"policy": nn.Linear(4, 2)},
        policy_inputs={"policy": torch.randn(1, 4)},
        shared=("audio",),
    )
    assert costs.shared == ("audio",) and costs.policy == 8
    assert costs.always == 8 + count_macs(audio, torch.randn(1, 8))
