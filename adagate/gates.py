"""Straight-through Gumbel gates: binary (`gumbel_sigmoid`) and categorical (`gumbel_softmax`).

AdaMML §3.2 trains its discrete modality decisions end to end with Gumbel-Softmax sampling and a
straight-through estimator: the forward pass uses the hard decision, the backward pass the
gradient of the relaxed (soft) sample.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torch import Tensor, nn

__all__ = ["GumbelGate", "gumbel_sigmoid", "gumbel_softmax"]

EvalMode = Literal["argmax", "sample", "soft"]
_EVAL_MODES = ("argmax", "sample", "soft")


def _check_tau(tau: float) -> float:
    tau = float(tau)
    if not (math.isfinite(tau) and tau > 0):
        raise ValueError(f"tau: expected a positive finite number, got {tau}")
    return tau


def _check_noise(noise: float) -> float:
    noise = float(noise)
    if not (math.isfinite(noise) and noise >= 0):
        raise ValueError(f"noise: expected a finite number >= 0, got {noise}")
    return noise


def _check_logits(logits: Tensor) -> None:
    if not isinstance(logits, Tensor):
        raise ValueError(f"logits: expected a torch.Tensor, got {type(logits).__name__}")
    if not logits.is_floating_point():
        raise ValueError(f"logits: expected a floating-point tensor, got dtype {logits.dtype}")


def _compute_dtype(logits: Tensor) -> torch.dtype:
    # fp16/bf16 noise is too coarse near 0 and 1 (log of a rounded-to-0 uniform is -inf, the
    # NaN source in torch issues 22442/101620): sample and relax in fp32, cast the result back.
    return torch.float32 if logits.element_size() < 4 else logits.dtype


def _uniform(
    logits: Tensor, dtype: torch.dtype, generator: torch.Generator | None
) -> Tensor:
    return torch.empty(logits.shape, dtype=dtype, device=logits.device).uniform_(
        generator=generator
    )


def _straight_through(hard: Tensor, soft: Tensor) -> Tensor:
    # `soft - soft.detach()` is exactly 0 in value (NaN where soft is NaN), so the output is
    # exactly the hard sample while its gradient is the soft sample's.
    return hard + (soft - soft.detach())


def gumbel_sigmoid(
    logits: Tensor,
    tau: float = 1.0,
    hard: bool = True,
    *,
    noise: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Sample a binary relaxed-Bernoulli gate: the 2-way Gumbel-Softmax with one random draw.

    The difference of two independent Gumbel variables is logistic, so the 2-way Gumbel-Softmax
    ``softmax(([l, 0] + [g1, g2]) / tau)[0]`` equals ``sigmoid((l + L) / tau)`` with one logistic
    sample ``L = log(U) - log(1 - U)``. ``P(hard output = 1) = sigmoid(logits)``.

    Args:
        logits: log-odds of "on" for each gate, any shape, floating dtype (fp16/bf16 are
            computed in fp32 and cast back).
        tau: temperature > 0. Small values approach the hard decision, large ones 0.5.
        hard: if True, return exact {0, 1} decisions whose gradient is the soft sample's
            (straight-through); else the soft sample in [0, 1].
        noise: scale ``s >= 0`` of the logistic sample, ``sigmoid((l + s L) / tau)``: 1 is the
            Gumbel-Softmax; smaller values make the decision more deterministic,
            ``P(hard output = 1) = sigmoid(logits / s)``; 0 gives exactly the eval-mode decision
            ``logits > 0`` with the gradient of ``sigmoid(logits / tau)``. Annealed towards 0,
            training decides as evaluation will (see ``adagate.set_tau``).
        generator: optional ``torch.Generator`` (on the logits' device) for repeatable noise.

    Returns:
        Tensor of the same shape and dtype as ``logits``. A NaN logit gives a NaN output.

    Shape:
        logits: (*) → output: (*)

    Raises:
        ValueError: if ``tau`` is not a positive finite number, ``noise`` is negative or not
            finite, or ``logits`` is not floating.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> gumbel_sigmoid(torch.zeros(4), tau=0.5, generator=g).tolist()
        [0.0, 1.0, 0.0, 0.0]
    """
    tau, noise = _check_tau(tau), _check_noise(noise)
    _check_logits(logits)
    dtype = _compute_dtype(logits)
    eps = torch.finfo(dtype).eps
    perturbed = logits.to(dtype)
    if noise > 0:
        perturbed = perturbed + _uniform(logits, dtype, generator).logit_(eps).mul_(noise)
    soft = torch.sigmoid(perturbed / tau)
    if hard:
        # The sign of the perturbed logit, not ``soft > 0.5``: the same decision, without the
        # rounding of the sigmoid (a logit of 1e-300 is "on" in eval mode too).
        soft = _straight_through((perturbed > 0).to(dtype), soft)
    return soft.to(logits.dtype)


def gumbel_softmax(
    logits: Tensor,
    tau: float = 1.0,
    hard: bool = True,
    dim: int = -1,
    *,
    noise: float = 1.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Sample a categorical Gumbel-Softmax, NaN-free where ``torch.nn.functional``'s is not.

    Differences from ``torch.nn.functional.gumbel_softmax``: the uniform noise is clamped away
    from 0 and 1 so every Gumbel sample is finite; the relaxation is shifted by its (detached)
    maximum before dividing by ``tau``, so a tiny ``tau`` or logits of ±1e4 cannot overflow;
    ``-inf`` logits (masked categories) get probability 0 and gradient 0; fp16/bf16 inputs are
    computed in fp32. A row whose logits are all ``-inf``, or that holds a NaN, has no valid
    category and gives NaN.

    Args:
        logits: unnormalised log-probabilities, floating dtype.
        tau: temperature > 0.
        hard: if True, return exact one-hot samples with the soft sample's gradient
            (straight-through); else the soft sample, which sums to 1 along ``dim``.
        dim: the category axis.
        noise: scale ``s >= 0`` of the Gumbel samples: 1 is the Gumbel-Softmax, 0 the
            deterministic argmax with the gradient of ``softmax(logits / tau)`` (as
            `gumbel_sigmoid`).
        generator: optional ``torch.Generator`` for repeatable noise.

    Returns:
        Tensor of the same shape and dtype as ``logits``.

    Shape:
        logits: (*, K, *) with K categories along ``dim`` → output: same shape.

    Raises:
        ValueError: if ``tau`` is not positive and finite, ``noise`` is negative or not
            finite, ``logits`` is not floating, ``dim`` is out of range, or ``logits`` has no
            category along ``dim``.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> gumbel_softmax(torch.tensor([[0.0, 5.0, -float("inf")]]), generator=g).tolist()
        [[0.0, 1.0, 0.0]]
    """
    tau, noise = _check_tau(tau), _check_noise(noise)
    _check_logits(logits)
    if logits.dim() > 0 and not -logits.dim() <= dim < logits.dim():
        raise ValueError(
            f"dim: expected an axis of logits of shape {tuple(logits.shape)}, got {dim}"
        )
    if logits.dim() == 0 or logits.shape[dim] == 0:
        raise ValueError(
            f"logits: expected at least one category along dim={dim}, "
            f"got shape {tuple(logits.shape)}"
        )
    dtype = _compute_dtype(logits)
    tiny, eps = torch.finfo(dtype).tiny, torch.finfo(dtype).eps
    perturbed = logits.to(dtype)
    if noise > 0:
        uniform = _uniform(logits, dtype, generator).clamp_(tiny, 1 - eps)
        perturbed = perturbed - uniform.log_().neg_().log_().mul_(noise)
    shifted = perturbed - perturbed.amax(dim, keepdim=True).detach()
    soft = torch.softmax(shifted / tau, dim)
    if hard:
        index = perturbed.argmax(dim, keepdim=True)
        soft = _straight_through(torch.zeros_like(soft).scatter_(dim, index, 1.0), soft)
    return soft.to(logits.dtype)


class GumbelGate(nn.Module):
    """A straight-through Gumbel gate with a settable temperature and a deterministic eval mode.

    In training it samples (``gumbel_sigmoid`` when ``dim is None``, else ``gumbel_softmax``
    along ``dim``). In ``eval()`` it follows ``eval_mode``:

    - ``"argmax"`` (default): deterministic decision, ``logits > 0`` (binary) or a one-hot
      argmax (categorical). Unlike the AdaMML reference code, test-time decisions are not
      sampled.
    - ``"sample"``: keep sampling, as in training.
    - ``"soft"``: the probability of "on" (``sigmoid(logits)``) or of each category
      (``softmax(logits)``), i.e. the expected value of the hard sample, whatever ``tau``; feed
      it to `adagate.expected_gflops` to get an expected cost.

    ``tau`` and ``noise`` are plain floats (reading them never syncs a device) saved in
    ``state_dict`` through the module's extra state; set them every epoch from a schedule
    (``adagate.set_tau``). ``noise`` scales the sampling noise: annealed from 1 towards 0, the
    decisions made in training become the ``"argmax"`` decisions of evaluation, so the cost
    and accuracy trained for are the ones measured (see the concept page on gates).

    Args:
        tau: initial temperature > 0.
        hard: return exact decisions with straight-through gradients (training and "sample").
        eval_mode: "argmax", "sample" or "soft".
        dim: None for independent binary gates, or the category axis of a categorical gate.
        noise: initial scale >= 0 of the sampling noise (1: Gumbel-Softmax; 0: deterministic).

    Shape:
        logits: (*) → decisions: (*), same dtype; NaN logits give NaN decisions.

    Example:
        >>> gate = GumbelGate(tau=5.0)
        >>> gate.eval()(torch.tensor([-1.0, 2.0])).tolist()
        [0.0, 1.0]
    """

    def __init__(
        self,
        tau: float = 1.0,
        hard: bool = True,
        eval_mode: EvalMode = "argmax",
        dim: int | None = None,
        noise: float = 1.0,
    ) -> None:
        super().__init__()
        if eval_mode not in _EVAL_MODES:
            raise ValueError(f"eval_mode: expected one of {_EVAL_MODES}, got {eval_mode!r}")
        self.tau = tau
        self.noise = noise
        self.hard = hard
        self.eval_mode: EvalMode = eval_mode
        self.dim = dim

    @property
    def tau(self) -> float:
        """The temperature used by the next call."""
        return self._tau

    @tau.setter
    def tau(self, value: float) -> None:
        self._tau = _check_tau(value)

    @property
    def noise(self) -> float:
        """The scale of the sampling noise used by the next training call."""
        return self._noise

    @noise.setter
    def noise(self, value: float) -> None:
        self._noise = _check_noise(value)

    def forward(self, logits: Tensor, *, generator: torch.Generator | None = None) -> Tensor:
        """Gate ``logits``.

        Args:
            logits: the gate logits, floating dtype.
            generator: optional ``torch.Generator`` for the noise when sampling.

        Returns:
            Decisions of the same shape and dtype as ``logits``.

        Shape:
            logits: (*) → output: (*)
        """
        if self.training or self.eval_mode == "sample":
            if self.dim is None:
                return gumbel_sigmoid(
                    logits, self.tau, self.hard, noise=self.noise, generator=generator
                )
            return gumbel_softmax(
                logits, self.tau, self.hard, self.dim, noise=self.noise, generator=generator
            )
        _check_logits(logits)
        if self.eval_mode == "soft":
            if self.dim is None:
                return torch.sigmoid(logits)
            return torch.softmax(logits, self.dim)
        if self.dim is None:
            return torch.where(logits.isnan(), logits, (logits > 0).to(logits.dtype))
        index = logits.argmax(self.dim, keepdim=True)
        one_hot = torch.zeros_like(logits).scatter_(self.dim, index, 1.0)
        invalid = logits.isnan().any(self.dim, keepdim=True)
        return one_hot.masked_fill(invalid, math.nan)

    def get_extra_state(self) -> dict[str, float]:
        return {"tau": self.tau, "noise": self.noise}

    def set_extra_state(self, state: dict[str, float]) -> None:
        self.tau = state["tau"]
        self.noise = state.get("noise", 1.0)  # absent from adagate 0.1.0 checkpoints

    def extra_repr(self) -> str:
        return (
            f"tau={self.tau}, noise={self.noise}, hard={self.hard}, "
            f"eval_mode={self.eval_mode!r}, dim={self.dim}"
        )
