"""Tests of examples/adamml/timing.py: interleaved repeats, median, spread, ratios."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "adamml"))

from timing import TimeStats, interleaved_times, time_ratio, total_times


class FakeMachine:
    """A clock that moves only when a fake function runs, by the seconds it is told to take."""

    def __init__(self) -> None:
        self.now = 0.0
        self.calls: list[str] = []

    def clock(self) -> float:
        return self.now

    def fn(self, name: str, seconds: list[float]) -> Callable[[], None]:
        """A function that takes ``seconds[k]`` on its k-th call and records that it ran."""
        calls = iter(seconds)

        def run() -> None:
            self.calls.append(name)
            self.now += next(calls)

        return run


def test_functions_are_interleaved_within_each_round() -> None:
    machine = FakeMachine()
    fns = {name: machine.fn(name, [1.0] * 4) for name in ("a", "b", "c")}
    interleaved_times(fns, repeats=3, warmup=1, clock=machine.clock)
    assert machine.calls == ["a", "b", "c"] * 4


def test_median_spread_and_times_of_the_timed_rounds() -> None:
    machine = FakeMachine()
    fns = {
        "fast": machine.fn("fast", [1.0, 2.0, 3.0, 9.0, 1.0, 4.0]),
        "slow": machine.fn("slow", [5.0, 10.0, 30.0, 20.0, 40.0, 10.0]),
    }
    stats = interleaved_times(fns, repeats=5, warmup=1, clock=machine.clock)
    assert list(stats) == ["fast", "slow"]
    assert stats["fast"] == TimeStats(3.0, 8.0, (2.0, 3.0, 9.0, 1.0, 4.0))
    assert stats["slow"] == TimeStats(20.0, 30.0, (10.0, 30.0, 20.0, 40.0, 10.0))


def test_warmup_rounds_are_run_but_not_counted() -> None:
    machine = FakeMachine()
    fns = {"f": machine.fn("f", [100.0, 100.0, 1.0, 2.0, 3.0])}
    stats = interleaved_times(fns, repeats=3, warmup=2, clock=machine.clock)
    assert machine.calls == ["f"] * 5
    assert stats["f"].times == (1.0, 2.0, 3.0) and stats["f"].median == 2.0


def test_without_warmup_every_round_counts() -> None:
    machine = FakeMachine()
    stats = interleaved_times(
        {"f": machine.fn("f", [7.0, 1.0])}, repeats=2, warmup=0, clock=machine.clock
    )
    assert stats["f"].times == (7.0, 1.0) and stats["f"].median == 4.0


def test_sync_brackets_every_timed_call() -> None:
    events: list[str] = []
    fns = {"a": lambda: events.append("a"), "b": lambda: events.append("b")}
    interleaved_times(fns, repeats=1, warmup=0, sync=lambda: events.append("sync"))
    assert events == ["sync", "a", "sync", "sync", "b", "sync"]


def test_real_functions_are_timed_with_the_real_clock() -> None:
    stats = interleaved_times({"noop": lambda: None, "sum": lambda: sum(range(1000))})
    assert all(len(s.times) == 5 and min(s.times) >= 0 for s in stats.values())
    assert all(s.spread == max(s.times) - min(s.times) for s in stats.values())


@pytest.mark.parametrize(
    ("repeats", "warmup", "message"),
    [(0, 1, "repeats: expected >= 1, got 0"), (5, -1, "warmup: expected >= 0, got -1")],
)
def test_bad_counts_are_refused_naming_the_argument(
    repeats: int, warmup: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        interleaved_times({"f": lambda: None}, repeats=repeats, warmup=warmup)


def test_ratio_is_of_the_medians_and_its_spread_of_the_per_round_ratios() -> None:
    row = TimeStats.of([2.0, 3.0, 6.0])
    reference = TimeStats.of([1.0, 2.0, 2.0])
    ratio, spread = time_ratio(row, reference)
    assert ratio == 3.0 / 2.0
    assert spread == pytest.approx(3.0 - 1.5)


def test_a_ratio_of_different_round_counts_is_refused() -> None:
    with pytest.raises(ValueError, match="denominator: expected 2 rounds"):
        time_ratio(TimeStats.of([1.0, 2.0]), TimeStats.of([1.0]))


def test_total_sums_the_parts_round_by_round() -> None:
    total = total_times([TimeStats.of([1.0, 5.0, 2.0]), TimeStats.of([3.0, 0.0, 1.0])])
    assert total == TimeStats(4.0, 2.0, (4.0, 5.0, 3.0))
    with pytest.raises(ValueError, match="parts: expected the same number of rounds"):
        total_times([TimeStats.of([1.0]), TimeStats.of([1.0, 2.0])])
    with pytest.raises(ValueError, match="parts: expected at least one"):
        total_times([])


@given(st.lists(st.floats(0.0, 1e3), min_size=1, max_size=20))
def test_median_lies_within_the_spread(times: list[float]) -> None:
    stats = TimeStats.of(times)
    assert min(times) <= stats.median <= max(times)
    assert stats.spread >= 0 and stats.times == tuple(times)
