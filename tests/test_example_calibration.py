"""examples/adamml/calibration.py: the operating point chosen on held-back data, and
runs.stage_times."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "adamml"))

import runs
from calibration import Dense, Rule, calibrate, point_record, reference_point, thresholds_of
from model import PRESETS, AdaMML, example_batch, measure_costs

from adagate import OperatingPoint, log_likelihood, top1_accuracy

N, T, C = 12, 4, 3


@pytest.fixture(scope="module")
def setup() -> tuple[AdaMML, Dense, object]:
    torch.manual_seed(0)
    model = AdaMML(("rgb", "audio"), C, PRESETS["tiny"]).eval()
    costs = measure_costs(model, example_batch(_config(), model.modalities))
    dims = {m: model.policy.feature_dims[m] for m in model.modalities}
    dense = Dense({m: torch.randn(N, T, d) for m, d in dims.items()},
                  torch.randn(N, T, 2, C), torch.randint(C, (N,)))  # fmt: skip
    return model, dense, costs


def _config():  # type: ignore[no-untyped-def]
    import data

    return data.DataConfig.demo(**PRESETS["tiny"].data)


def test_the_budget_rule_keeps_the_point_within_the_budget_and_sets_the_thresholds(setup) -> None:  # type: ignore[no-untyped-def]
    model, dense, costs = setup
    found = calibrate(model, dense, costs, Rule(budget=0.5), points=9)
    chosen, curve, reference = found.chosen, found.curve, found.reference
    assert chosen.gflops <= 0.5 * reference.gflops + 1e-9
    # Within the budget the choice compares log-likelihoods, each the metric at those thresholds.
    within = [i for i, p in enumerate(curve) if p.gflops <= 0.5 * reference.gflops + 1e-9]
    assert found.likelihood == max(found.likelihoods[i] for i in within)
    logits = model.fusion(dense.segment_logits, _decisions(model, dense)).float()
    assert found.likelihood == pytest.approx(log_likelihood(logits, dense.labels), abs=1e-6)
    assert chosen.score == pytest.approx(top1_accuracy(logits, dense.labels))
    assert torch.equal(model.policy.thresholds, chosen.thresholds)
    # The reference is every modality on without the policy: the all-modality model's cost.
    recognition = sum(costs.recognition.values()) * T / 1e9
    assert reference.gflops == pytest.approx(recognition)


def test_the_drop_rule_takes_the_cheapest_point_within_the_drop(setup) -> None:  # type: ignore[no-untyped-def]
    model, dense, costs = setup
    found = calibrate(model, dense, costs, Rule(max_drop=10.0), points=9)
    chosen, curve, reference = found.chosen, found.curve, found.reference
    good = [p for p in curve if p.score >= reference.score - 0.1 - 1e-9]
    assert chosen.gflops == min(p.gflops for p in good)


def _decisions(model: AdaMML, dense: Dense) -> torch.Tensor:
    with torch.no_grad():
        return model.policy.eval()(dense.features).decisions


def test_the_budget_rule_compares_likelihoods_not_accuracies() -> None:
    reference = OperatingPoint(torch.zeros(2), 1.0, 10.0, torch.ones(2))
    scores = [(0.97, 4.0), (0.95, 4.5), (0.99, 6.0)]
    curve = [OperatingPoint(torch.full((2,), float(k)), score, gflops, torch.ones(2))
             for k, (score, gflops) in enumerate(scores)]  # fmt: skip
    rule = Rule(budget=0.5)
    assert rule.choose(curve, reference) is curve[0]
    assert rule.choose(curve, reference, [-0.3, -0.1, 0.0]) is curve[1]
    with pytest.raises(ValueError, match="zip"):
        rule.choose(curve, reference, [-0.3])
    # A drop is in points of accuracy: the likelihoods do not enter it.
    assert Rule(max_drop=5.0).choose(curve, reference, [-2.0, -1.0, 0.0]) is curve[0]


def test_rule_keys_prefer_a_point_within_the_budget_then_accuracy() -> None:
    reference = OperatingPoint(torch.zeros(2), 1.0, 10.0, torch.ones(2))

    def point(score: float, gflops: float) -> OperatingPoint:
        return OperatingPoint(torch.zeros(2), score, gflops, torch.ones(2))

    rule = Rule(budget=0.5)
    assert rule.key(point(0.9, 4.0), reference) > rule.key(point(0.95, 6.0), reference)
    assert rule.key(point(0.95, 4.0), reference) > rule.key(point(0.9, 3.0), reference)
    # Equal scores within the budget: the point that spends more of it, as Rule.choose.
    assert rule.key(point(0.95, 4.5), reference) > rule.key(point(0.95, 3.0), reference)
    drop = Rule(max_drop=5.0)
    assert drop.key(point(0.96, 3.0), reference) > drop.key(point(0.97, 4.0), reference)
    assert drop.key(point(0.96, 9.0), reference) > drop.key(point(0.9, 1.0), reference)


def test_a_point_record_round_trips_its_thresholds_through_json() -> None:
    point = OperatingPoint(torch.tensor([float("inf"), -1.5]), 0.9, 2.0, torch.tensor([0.0, 1.0]))
    reference = OperatingPoint(torch.zeros(2), 1.0, 4.0, torch.ones(2))
    record = point_record(point, reference, ("rgb", "audio"))
    assert record["thresholds"] == {"rgb": "inf", "audio": -1.5}
    assert record["gflops_vs_all"] == 0.5
    assert thresholds_of(record, ("rgb", "audio")).tolist() == [float("inf"), -1.5]
    assert "log_likelihood" not in record
    assert point_record(point, reference, ("rgb", "audio"), -0.25)["log_likelihood"] == -0.25


def test_reference_point_is_every_modality_on(setup) -> None:  # type: ignore[no-untyped-def]
    model, dense, costs = setup
    reference = reference_point(model, dense, costs)
    assert reference.selection.tolist() == [1.0, 1.0]


def test_stage_times_add_the_rest_of_the_run_and_shares_sum_to_one() -> None:
    rows = runs.stage_times({"a": 3.0, "b": 5.0}, 10.0)
    assert [r["stage"] for r in rows][:2] == ["a", "b"] and rows[-1]["seconds"] == 2.0
    assert sum(r["share"] for r in rows) == pytest.approx(1.0)
    assert "| **total** | 10 | 100 % |" in runs.stage_time_table(rows)
