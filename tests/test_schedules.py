import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from adagate.gates import GumbelGate
from adagate.schedules import CosineDecay, ExponentialDecay, LinearDecay, set_tau

epochs = st.floats(0, 1000)


@given(epoch=epochs)
def test_exponential_decay_is_the_paper_schedule(epoch: float) -> None:
    assert ExponentialDecay()(epoch) == pytest.approx(5 * 0.965**epoch)


@given(
    start=st.floats(0.1, 10), rate=st.floats(0.5, 1), minimum=st.floats(0, 1), a=epochs, b=epochs
)
def test_exponential_decay_is_monotone_and_floored(
    start: float, rate: float, minimum: float, a: float, b: float
) -> None:
    schedule = ExponentialDecay(start, rate, minimum)
    low, high = sorted((a, b))
    assert schedule(high) <= schedule(low)
    assert schedule(high) >= minimum


@pytest.mark.parametrize("kind", [CosineDecay, LinearDecay])
@given(start=st.floats(0.1, 10), end=st.floats(0.1, 10), length=st.floats(1, 100), t=epochs)
def test_decays_to_end_hit_their_endpoints_and_stay_between(
    kind: type[CosineDecay], start: float, end: float, length: float, t: float
) -> None:
    schedule = kind(start=start, end=end, epochs=length)
    assert schedule(0) == pytest.approx(start)
    assert schedule(length) == pytest.approx(end)
    assert schedule(length + t) == pytest.approx(end)
    assert min(start, end) - 1e-9 <= schedule(t) <= max(start, end) + 1e-9


def test_cosine_and_linear_midpoints() -> None:
    assert CosineDecay(4.0, 2.0, 10)(5) == pytest.approx(3.0)
    assert CosineDecay(4.0, 2.0, 10)(2.5) == pytest.approx(3 + math.cos(math.pi / 4))
    assert LinearDecay(4.0, 2.0, 10)(2.5) == pytest.approx(3.5)


@pytest.mark.parametrize(
    "schedule", [ExponentialDecay(3.0, 0.9, 0.5), CosineDecay(2.0, 0.1, 7), LinearDecay(1, 3, 9)]
)
def test_state_dict_round_trip(schedule: ExponentialDecay) -> None:
    fresh = type(schedule)()
    assert fresh(4) != schedule(4)
    fresh.load_state_dict(schedule.state_dict())
    assert fresh == schedule and fresh(4) == schedule(4)


def test_bad_parameters_are_rejected() -> None:
    with pytest.raises(ValueError, match="rate: expected"):
        ExponentialDecay(rate=1.5)
    with pytest.raises(ValueError, match="start: expected"):
        ExponentialDecay(start=0.0)
    with pytest.raises(ValueError, match="minimum: expected"):
        ExponentialDecay(minimum=-1.0)
    with pytest.raises(ValueError, match="epochs: expected"):
        CosineDecay(epochs=0)
    with pytest.raises(ValueError, match="end: expected"):
        LinearDecay(end=math.nan)
    with pytest.raises(ValueError, match="epoch: expected a number >= 0"):
        ExponentialDecay()(-1)
    with pytest.raises(ValueError, match="rate: expected"):
        ExponentialDecay().load_state_dict({"start": 1.0, "rate": 2.0, "minimum": 0.0})


def test_set_tau_reaches_every_nested_gate() -> None:
    model = nn.Sequential(GumbelGate(), nn.Sequential(nn.Linear(2, 2), GumbelGate(dim=-1)))
    assert set_tau(model, ExponentialDecay()(2)) == 2
    taus = [m.tau for m in model.modules() if isinstance(m, GumbelGate)]
    assert taus == [pytest.approx(5 * 0.965**2)] * 2
    assert set_tau(nn.Linear(2, 2), 1.0) == 0
    with pytest.raises(ValueError, match="tau"):
        set_tau(model, 0.0)
    # A bad noise scale changes no gate, not even the temperature given with it.
    with pytest.raises(ValueError, match="noise"):
        set_tau(model, 2.0, noise=-1.0)
    assert [m.tau for m in model.modules() if isinstance(m, GumbelGate)] == taus
