"""Tests of adagate/streaming.py: one segment, or one window of segments, at a time gives what
the batch path gives."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from adagate import (
    FusionState,
    MultiModalPolicy,
    masked_late_fusion,
    online_late_fusion,
    route_segment,
    route_segments,
    stream_step,
)
from adagate.streaming import route_window, stream_window

DTYPES = [torch.bool, torch.int64, torch.float32]


@given(
    batch=st.integers(1, 3),
    segments=st.integers(1, 6),
    modalities=st.integers(1, 4),
    classes=st.integers(1, 5),
    dtype=st.sampled_from(DTYPES),
    normalize=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_online_fusion_after_each_segment_equals_masked_late_fusion_of_the_prefix(
    batch: int, segments: int, modalities: int, classes: int, dtype: torch.dtype,
    normalize: bool, seed: int,
) -> None:  # fmt: skip
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch, segments, modalities, classes, generator=generator)
    decisions = torch.rand(batch, segments, modalities, generator=generator) < 0.5
    decisions = decisions.to(dtype)
    # Positive weights, as normalize needs them.
    weights = torch.rand(modalities, generator=generator) + 0.1
    logits = logits * decisions[..., None].float()  # zeros where skipped, as a router leaves them
    state = None
    for t in range(segments):
        fused, state = online_late_fusion(logits[:, t], decisions[:, t], weights, state, normalize)
        expected = masked_late_fusion(logits[:, : t + 1], decisions[:, : t + 1], weights, normalize)
        torch.testing.assert_close(fused, expected, rtol=1e-5, atol=1e-6)
    assert state is not None and state.segments == segments
    assert state.weighted_sum.shape == (batch, classes) and state.used_weight.shape == (batch,)


def test_online_fusion_of_nothing_selected_is_zero_and_finite_with_normalize() -> None:
    fused, state = online_late_fusion(
        torch.randn(2, 3, 4), torch.zeros(2, 3), torch.ones(3), normalize=True
    )
    assert torch.equal(fused, torch.zeros(2, 4)) and torch.equal(state.used_weight, torch.zeros(2))


def test_online_fusion_passes_gradients_to_logits_and_decisions_like_the_batch() -> None:
    logits = torch.randn(2, 3, 2, 4, requires_grad=True)
    decisions = torch.ones(2, 3, 2, requires_grad=True)
    weights = torch.tensor([0.3, 0.7])
    state = None
    for t in range(3):
        fused, state = online_late_fusion(logits[:, t], decisions[:, t], weights, state)
    online = torch.autograd.grad(fused.square().sum(), (logits, decisions))
    batch = masked_late_fusion(logits, decisions, weights)
    expected = torch.autograd.grad(batch.square().sum(), (logits, decisions))
    for got, want in zip(online, expected, strict=True):
        torch.testing.assert_close(got, want)


LOGITS, ONES = torch.randn(2, 3, 4), torch.ones(2, 3)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((torch.randn(2, 3), ONES, torch.ones(3)), r"logits_t: expected \(B, M, C\)"),
        ((LOGITS, torch.ones(2, 2), torch.ones(3)), r"decisions_t: expected \(B, M\) = \(2, 3\)"),
        ((LOGITS, ONES, torch.ones(2)), r"weights: expected \(M,\) = \(3,\)"),
        ((LOGITS, torch.ones(2, 3, 1), torch.ones(3)), r"decisions_t: expected"),
    ],
)
def test_online_fusion_names_the_bad_argument(args: tuple[torch.Tensor, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        online_late_fusion(*args)


def test_online_fusion_rejects_a_state_of_another_shape_and_nonpositive_weights() -> None:
    _, state = online_late_fusion(torch.randn(2, 3, 4), torch.ones(2, 3), torch.ones(3))
    with pytest.raises(ValueError, match=r"state: expected a FusionState of \(B, C\) = \(1, 4\)"):
        online_late_fusion(torch.randn(1, 3, 4), torch.ones(1, 3), torch.ones(3), state)
    with pytest.raises(ValueError, match="weights: expected positive weights"):
        online_late_fusion(
            torch.randn(2, 3, 4), torch.ones(2, 3), torch.tensor([1.0, 0.0, 1.0]), normalize=True
        )
    assert isinstance(state, FusionState)


# ------------------------------------------------------------------------------ route_segment
def modules() -> dict[str, nn.Module]:
    torch.manual_seed(0)
    return {"rgb": nn.Linear(6, 3), "audio": nn.Linear(2, 3)}


# One set of modules for every example: run_selected caches the shape of a no-row output per
# module, and inferring it anew for each example would dominate the test's time.
NETS = modules()


@given(rows=st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=4))
def test_route_segment_equals_one_segment_of_route_segments(rows: list[tuple[bool, bool]]) -> None:
    nets = NETS
    inputs = {"rgb": torch.randn(len(rows), 6), "audio": torch.randn(len(rows), 2)}
    decisions = torch.tensor(rows, dtype=torch.float32)
    expected = route_segments(
        nets, {k: v[:, None] for k, v in inputs.items()}, decisions[:, None], ["rgb", "audio"]
    )[:, 0]
    lazy = {name: (lambda x=x: x) for name, x in inputs.items()}
    for given_inputs in (inputs, lazy):
        out = route_segment(nets, given_inputs, decisions, ["rgb", "audio"],
                            example_output=torch.zeros(1, 3))  # fmt: skip
        torch.testing.assert_close(out, expected)


def test_route_segment_builds_a_lazy_input_only_when_a_row_selects_it() -> None:
    calls: list[str] = []

    def build(name: str, width: int) -> torch.Tensor:
        calls.append(name)
        return torch.randn(2, width)

    inputs = {"rgb": lambda: build("rgb", 6), "audio": lambda: build("audio", 2)}
    out = route_segment(modules(), inputs, torch.tensor([[0, 1], [0, 0]]), ["rgb", "audio"])
    assert calls == ["audio"]
    assert torch.equal(out[:, 0], torch.zeros(2, 3)) and torch.equal(out[1], torch.zeros(2, 3))
    assert not torch.equal(out[0, 1], torch.zeros(3))


def test_route_segment_with_nothing_selected_needs_an_example_output_for_lazy_inputs() -> None:
    inputs = {"rgb": lambda: torch.randn(1, 6), "audio": lambda: torch.randn(1, 2)}
    skipped = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="example_output: expected an"):
        route_segment(modules(), inputs, skipped, ["rgb", "audio"])
    out = route_segment(modules(), inputs, skipped, ["rgb", "audio"], fill=-1.0,
                        example_output=torch.zeros(5, 3))  # fmt: skip
    assert torch.equal(out, torch.full((1, 2, 3), -1.0))
    # Tensor inputs need none: run_selected infers the shape.
    tensors = {"rgb": torch.randn(1, 6), "audio": torch.randn(1, 2)}
    assert route_segment(modules(), tensors, skipped, ["rgb", "audio"]).shape == (1, 2, 3)


def test_route_segment_names_the_bad_argument() -> None:
    inputs = {"rgb": torch.randn(1, 6), "audio": torch.randn(1, 2)}
    with pytest.raises(ValueError, match=r"decisions_t: expected \(B, M\) with M = 2"):
        route_segment(modules(), inputs, torch.ones(1, 3), ["rgb", "audio"])
    with pytest.raises(ValueError, match=r"modalities: expected each to have a module"):
        route_segment(modules(), {"rgb": inputs["rgb"]}, torch.ones(1, 2), ["rgb", "audio"])
    nets = {"rgb": nn.Linear(6, 3), "audio": nn.Linear(2, 4)}
    with pytest.raises(ValueError, match="modules: expected outputs of one shape"):
        route_segment(nets, inputs, torch.ones(1, 2), ["rgb", "audio"])


# -------------------------------------------------------------------------------- stream_step
@pytest.mark.parametrize("train", [False, True], ids=["eval", "sampled"])
@pytest.mark.parametrize("recurrent", [True, False])
def test_stream_step_over_a_video_equals_policy_routing_and_fusion_in_one_batch(
    train: bool, recurrent: bool
) -> None:
    torch.manual_seed(1)
    policy = MultiModalPolicy({"rgb": 5, "audio": 3}, hidden_size=8, mlp_sizes=(16,),
                              recurrent=recurrent, initial_on_probability=0.5)  # fmt: skip
    policy.train(train)
    nets = modules()
    features = {"rgb": torch.randn(3, 7, 5), "audio": torch.randn(3, 7, 3)}
    inputs = {"rgb": torch.randn(3, 7, 6), "audio": torch.randn(3, 7, 2)}
    weights = torch.tensor([0.4, 0.6])
    with torch.no_grad():
        batch = policy(features, generator=torch.Generator().manual_seed(5))
        routed = route_segments(nets, inputs, batch.decisions, policy.modalities)
        expected = masked_late_fusion(routed, batch.decisions, weights)
        generator = torch.Generator().manual_seed(5)
        state = None
        for t in range(7):
            out = stream_step(
                policy, nets, {k: v[:, t] for k, v in features.items()},
                {k: (lambda v=v, t=t: v[:, t]) for k, v in inputs.items()}, weights, state,
                generator=generator, example_output=torch.zeros(1, 3),
            )  # fmt: skip
            assert torch.equal(out.decisions, batch.decisions[:, t])
            torch.testing.assert_close(out.policy_logits, batch.logits[:, t])
            torch.testing.assert_close(out.segment_logits, routed[:, t])
            state = out.state
    assert 0 < batch.decisions.mean() < 1
    torch.testing.assert_close(out.logits, expected, rtol=1e-5, atol=1e-6)
    assert out.state.fusion.segments == 7 and (out.state.policy is None) == (not recurrent)


# ------------------------------------------------------------------- route_window, stream_window
def lazy(
    x: torch.Tensor, calls: list[list[int]] | None = None
) -> Callable[[torch.Tensor], torch.Tensor]:
    """A window input built on demand: the rows of ``x`` (B, T, ...) at the flat positions asked."""

    def build(segments: torch.Tensor) -> torch.Tensor:
        if calls is not None:
            calls.append(segments.tolist())
        return x.flatten(0, 1)[segments]

    return build


@given(
    decisions=st.lists(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1,
                                max_size=4), min_size=1, max_size=3),
)  # fmt: skip
def test_route_window_equals_route_segments_with_tensor_or_lazy_inputs(
    decisions: list[list[tuple[bool, bool]]],
) -> None:
    segments = min(len(row) for row in decisions)
    chosen = torch.tensor([row[:segments] for row in decisions], dtype=torch.float32)
    batch, frames = chosen.shape[:2]
    inputs = {"rgb": torch.randn(batch, frames, 6), "audio": torch.randn(batch, frames, 2)}
    expected = route_segments(NETS, inputs, chosen, ["rgb", "audio"])
    calls: list[list[int]] = []
    built = {"rgb": lazy(inputs["rgb"], calls), "audio": inputs["audio"]}
    out = route_window(NETS, built, chosen, ["rgb", "audio"], example_output=torch.zeros(1, 3))
    torch.testing.assert_close(out, expected)
    # One call, with the selected segments only, or none when nothing selected RGB.
    selected_rgb = chosen[..., 0].flatten().nonzero().squeeze(1).tolist()
    assert calls == ([selected_rgb] if selected_rgb else [])


def test_route_window_runs_each_network_once_per_window() -> None:
    calls: list[int] = []
    nets = modules()
    for net in nets.values():
        net.register_forward_hook(lambda _, args, __: calls.append(len(args[0])))
    decisions = torch.tensor([[[1, 1], [0, 1], [1, 1], [0, 0]]])
    inputs = {"rgb": lazy(torch.randn(1, 4, 6)), "audio": lazy(torch.randn(1, 4, 2))}
    route_window(nets, inputs, decisions, ["rgb", "audio"])
    assert calls == [2, 3]


def test_route_window_names_the_bad_argument() -> None:
    decisions = torch.ones(1, 3, 2)
    with pytest.raises(ValueError, match=r"decisions: expected \(B, T, M\) with M = 2"):
        route_window(NETS, {"rgb": torch.randn(1, 3, 6)}, torch.ones(1, 3, 3), ["rgb", "audio"])
    with pytest.raises(ValueError, match=r"inputs\['rgb'\]: expected \(B, T, ...\)"):
        route_window(NETS, {"rgb": torch.randn(3, 6), "audio": torch.randn(1, 3, 2)},
                     decisions, ["rgb", "audio"])  # fmt: skip
    short = {"rgb": lambda segments: torch.randn(1, 6), "audio": torch.randn(1, 3, 2)}
    with pytest.raises(ValueError, match=r"inputs\['rgb'\]: expected .* K = 3 .*got \(1, 6\)"):
        route_window(NETS, short, decisions, ["rgb", "audio"])
    nothing = {"rgb": lazy(torch.randn(1, 3, 6)), "audio": lazy(torch.randn(1, 3, 2))}
    with pytest.raises(ValueError, match="example_output: expected an"):
        route_window(NETS, nothing, torch.zeros(1, 3, 2), ["rgb", "audio"])
    out = route_window(NETS, nothing, torch.zeros(1, 3, 2), ["rgb", "audio"], fill=-1.0,
                       example_output=torch.zeros(1, 3))  # fmt: skip
    assert torch.equal(out, torch.full((1, 3, 2, 3), -1.0))


@pytest.mark.parametrize("train", [False, True], ids=["eval", "sampled"])
@pytest.mark.parametrize("recurrent", [True, False])
def test_stream_window_over_windows_equals_the_batch_path_and_stream_step(
    train: bool, recurrent: bool
) -> None:
    torch.manual_seed(1)
    policy = MultiModalPolicy({"rgb": 5, "audio": 3}, hidden_size=8, mlp_sizes=(16,),
                              recurrent=recurrent, initial_on_probability=0.5)  # fmt: skip
    policy.train(train)
    features = {"rgb": torch.randn(2, 9, 5), "audio": torch.randn(2, 9, 3)}
    inputs = {"rgb": torch.randn(2, 9, 6), "audio": torch.randn(2, 9, 2)}
    weights = torch.tensor([0.4, 0.6])
    with torch.no_grad():
        batch = policy(features, generator=torch.Generator().manual_seed(5))
        routed = route_segments(NETS, inputs, batch.decisions, policy.modalities)
        expected = masked_late_fusion(routed, batch.decisions, weights, normalize=True)
        generator = torch.Generator().manual_seed(5)
        state = None
        for window in (slice(0, 4), slice(4, 5), slice(5, 9)):
            out = stream_window(
                policy, NETS, {k: v[:, window] for k, v in features.items()},
                {"rgb": lazy(inputs["rgb"][:, window]), "audio": inputs["audio"][:, window]},
                weights, state, normalize=True, generator=generator,
                example_output=torch.zeros(1, 3),
            )  # fmt: skip
            assert torch.equal(out.decisions, batch.decisions[:, window])
            torch.testing.assert_close(out.policy_logits, batch.logits[:, window])
            torch.testing.assert_close(out.segment_logits, routed[:, window])
            state = out.state
    assert 0 < batch.decisions.mean() < 1
    torch.testing.assert_close(out.logits, expected, rtol=1e-5, atol=1e-6)
    assert out.state.fusion.segments == 9 and (out.state.policy is None) == (not recurrent)
