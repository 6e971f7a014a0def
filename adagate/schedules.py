"""Temperature schedules for Gumbel gates, and a helper that applies one to a whole model.

AdaMML §4.1 anneals the Gumbel-Softmax temperature as ``tau = 5 * 0.965 ** epoch``
(`ExponentialDecay`'s defaults); cosine and linear decays are the usual alternatives.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from torch import nn

from adagate.gates import GumbelGate, _check_noise, _check_tau

__all__ = ["CosineDecay", "ExponentialDecay", "LinearDecay", "TemperatureSchedule", "set_tau"]


@dataclasses.dataclass
class TemperatureSchedule:
    """Base class: a callable ``schedule(epoch) -> tau`` whose state is its fields.

    ``epoch`` may be fractional (``epoch + step / steps_per_epoch``) to anneal per step.

    Shape:
        epoch: scalar (python float) → tau: scalar (python float).
    """

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{field.name}: expected a finite number >= 0, got {value}")

    def __call__(self, epoch: float) -> float:
        if not epoch >= 0:
            raise ValueError(f"epoch: expected a number >= 0, got {epoch}")
        return self._tau(float(epoch))

    def _tau(self, epoch: float) -> float:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        """The schedule's parameters, for checkpoints."""
        return dataclasses.asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore parameters saved by ``state_dict``."""
        restored = type(self)(**state)
        for field in dataclasses.fields(self):
            setattr(self, field.name, getattr(restored, field.name))


@dataclasses.dataclass
class ExponentialDecay(TemperatureSchedule):
    """``tau(epoch) = max(minimum, start * rate ** epoch)``; defaults are AdaMML's schedule.

    Args:
        start: temperature at epoch 0 (> 0).
        rate: decay per epoch, in (0, 1].
        minimum: floor of the temperature (>= 0; the result is never below it).

    Shape:
        epoch: scalar → tau: scalar (python floats).

    Example:
        >>> round(ExponentialDecay()(10), 4)
        3.5014
    """

    start: float = 5.0
    rate: float = 0.965
    minimum: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.start > 0:
            raise ValueError(f"start: expected a number > 0, got {self.start}")
        if not 0 < self.rate <= 1:
            raise ValueError(f"rate: expected a number in (0, 1], got {self.rate}")

    def _tau(self, epoch: float) -> float:
        return max(self.minimum, float(self.start * self.rate**epoch))


@dataclasses.dataclass
class _DecayToEnd(TemperatureSchedule):
    start: float = 5.0
    end: float = 0.5
    epochs: float = 100.0

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("start", "end", "epochs"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name}: expected a number > 0, got {getattr(self, name)}")

    def _progress(self, epoch: float) -> float:
        return min(epoch / self.epochs, 1.0)


@dataclasses.dataclass
class CosineDecay(_DecayToEnd):
    """Half-cosine from ``start`` at epoch 0 to ``end`` at ``epochs``, constant after.

    Args:
        start: temperature at epoch 0 (> 0).
        end: temperature from ``epochs`` on (> 0).
        epochs: length of the decay (> 0).

    Shape:
        epoch: scalar → tau: scalar (python floats).

    Example:
        >>> CosineDecay(start=5.0, end=1.0, epochs=10)(5)
        3.0
    """

    def _tau(self, epoch: float) -> float:
        cosine = (1 + math.cos(math.pi * self._progress(epoch))) / 2
        return self.end + (self.start - self.end) * cosine


@dataclasses.dataclass
class LinearDecay(_DecayToEnd):
    """Straight line from ``start`` at epoch 0 to ``end`` at ``epochs``, constant after.

    Args:
        start: temperature at epoch 0 (> 0).
        end: temperature from ``epochs`` on (> 0).
        epochs: length of the decay (> 0).

    Shape:
        epoch: scalar → tau: scalar (python floats).

    Example:
        >>> LinearDecay(start=5.0, end=1.0, epochs=4)(1)
        4.0
    """

    def _tau(self, epoch: float) -> float:
        return self.start + (self.end - self.start) * self._progress(epoch)


def set_tau(model: nn.Module, tau: float, *, noise: float | None = None) -> int:
    """Set the temperature (and, if given, the noise scale) of every `GumbelGate` in ``model``.

    Args:
        model: any module; its submodules (and itself) are searched.
        tau: the new temperature (> 0), typically ``schedule(epoch)``.
        noise: the new scale (>= 0) of the sampling noise, or None to leave it: 1 samples the
            Gumbel-Softmax, 0 makes training decide exactly as ``eval()`` does.

    Returns:
        How many gates were updated.

    Shape:
        tau, noise: scalars (python floats), applied to gates of any logit shape.

    Example:
        >>> set_tau(nn.Sequential(GumbelGate(), GumbelGate()), ExponentialDecay()(3), noise=0.5)
        2
    """
    # Both checked first: a bad value changes no gate.
    tau = _check_tau(tau)
    noise = None if noise is None else _check_noise(noise)
    gates = [module for module in model.modules() if isinstance(module, GumbelGate)]
    for gate in gates:
        gate.tau = tau
        if noise is not None:
            gate.noise = noise
    return len(gates)
