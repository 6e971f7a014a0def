"""The multi-modal policy network: per segment, decide which modalities to compute.

AdaMML §3.2: the policy features of all modalities are joined by a small MLP, an LSTM carries
the video's history from segment to segment (AdaMML Eq. 1), and one 2-way fully connected head
per modality gives the logits of "skip" and "use", from which a straight-through Gumbel gate
draws the decision (AdaMML Eqs. 2-3).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import torch
from torch import Tensor, nn

from adagate.gates import EvalMode, GumbelGate

__all__ = ["MultiModalPolicy", "PolicyOutput", "PolicyState"]

# Logit difference reported for always-on modalities: finite (a softmax or log-softmax over it
# stays NaN-free even in fp16) and large enough that sigmoid(1e4) is exactly 1 in fp32.
_ALWAYS_ON_LOGIT = 1e4


class PolicyState(NamedTuple):
    """The recurrent state carried from one segment to the next.

    Attributes:
        hidden: ``(B, hidden_size)`` LSTM hidden state ``h_t``.
        cell: ``(B, hidden_size)`` LSTM cell state ``o_t`` (AdaMML Eq. 1).
        decisions: ``(B, M)`` the decisions of the segment just decided, fed to the next step.
    """

    hidden: Tensor
    cell: Tensor
    decisions: Tensor


class PolicyOutput(NamedTuple):
    """What the policy returns.

    Attributes:
        decisions: ``(B, T, M)`` from ``forward``, ``(B, M)`` from ``step``; exactly 0.0 or
            1.0 in the dtype of the logits, with straight-through gradients in training.
        logits: ``(B, T, M, 2)`` / ``(B, M, 2)`` the head outputs ``[skip, use]``;
            ``P(use) = sigmoid(logits[..., 1] - logits[..., 0])``. Always-on modalities have no
            head: their rows are the constants ``[0, 1e4]``.
        state: the `PolicyState` after the last segment, or None when ``recurrent=False``.
    """

    decisions: Tensor
    logits: Tensor
    state: PolicyState | None


class MultiModalPolicy(nn.Module):
    """AdaMML's policy: joint MLP → LSTMCell → one 2-way head and one Gumbel gate per modality.

    For segment ``t`` the modalities' policy features are concatenated (in the order of
    ``feature_dims``, which is also the order of the M axis, see `modalities`) and passed through
    an MLP (Linear + ReLU per entry of ``mlp_sizes``; the paper uses two 2048-wide layers). An
    ``nn.LSTMCell`` takes that joint feature together with the previous segment's M decisions
    (zeros before the first segment) and gives ``h_t``; head ``k`` maps ``h_t`` to the 2 logits
    ``z_{t,k} = [skip, use]``. The decision is ``gumbel_sigmoid(z[..., 1] - z[..., 0])`` through
    one shared `GumbelGate` (so ``adagate.set_tau`` finds it): the difference of two Gumbel
    variables is logistic, so this is exactly the paper's 2-way Gumbel-Softmax with one random
    draw per decision.

    Differences from the AdaMML reference code, on purpose: the LSTM input carries the previous
    *decisions* (M values, straight-through) rather than the previous raw logits (2M values), so
    the same state is available when streaming; in ``eval()`` decisions are deterministic
    (``logits[..., 1] > logits[..., 0]``) unless ``eval_mode="sample"``.

    Operating point: in ``eval()`` the gate of modality ``k`` reads ``z[..., 1] - z[..., 0] -
    thresholds[k]``, so a threshold above 0 uses the modality less and one below 0 more; ``-inf``
    keeps it always on, ``+inf`` always off. The thresholds are a buffer (saved in the
    state_dict, zeros by default and for state_dicts saved before they existed), set with
    `set_thresholds`, typically to an operating point chosen on held-back data
    (`adagate.operating`). Training (sampling) ignores them.

    Initialisation: the heads' biases are set so that every gated modality starts selected with
    probability ``initial_on_probability`` (default 0.9). AdaMML §4 warms the recognition
    network up before learning the policy; starting the policy mostly "on" keeps the
    recognition networks seeing every modality at the start of joint training, and the
    efficiency loss then switches off what is not needed (its gradient is largest when a
    modality is on). Use 0.5 for the reference code's unbiased start.

    Args:
        feature_dims: modality name → size of its policy feature, e.g.
            ``{"rgb": 1280, "audio": 1280}``. Its order is the order of the M axis.
        hidden_size: LSTM hidden size (paper: 256).
        mlp_sizes: widths of the joint MLP's layers (paper: ``(2048, 2048)``); ``()`` feeds the
            concatenated features to the LSTM (or heads) directly.
        recurrent: False removes the LSTM (AdaMML §4.3, "Effectiveness of LSTM"): the heads read
            the MLP output and segments are decided independently.
        always_on: modalities that are always used (e.g. a cheap audio anchor): their decision
            is the constant 1 (no head, no gradient) and is still fed back to the LSTM.
        tau: initial Gumbel temperature (paper: 5, annealed by ``ExponentialDecay``).
        eval_mode: the gate's behaviour in ``eval()``: "argmax" (deterministic), "sample" or
            "soft" (see `GumbelGate`).
        initial_on_probability: initial probability in (0, 1) that a gated modality is used.

    Raises:
        ValueError: for an empty ``feature_dims``, a non-positive size, an ``always_on`` name
            that is not a modality, every modality always on, or a probability outside (0, 1).

    Shape:
        forward: ``features[name]: (B, T, D_name)`` → decisions ``(B, T, M)``,
        logits ``(B, T, M, 2)``.
        step: ``features_t[name]: (B, D_name)`` → decisions ``(B, M)``, logits ``(B, M, 2)``.

    Example:
        >>> policy = MultiModalPolicy({"rgb": 16, "audio": 8}, hidden_size=8, mlp_sizes=(32,))
        >>> out = policy({"rgb": torch.randn(2, 5, 16), "audio": torch.randn(2, 5, 8)})
        >>> out.decisions.shape, out.logits.shape
        (torch.Size([2, 5, 2]), torch.Size([2, 5, 2, 2]))
    """

    _gated_mask: Tensor
    thresholds: Tensor
    input_mean: Tensor
    input_std: Tensor

    def __init__(
        self,
        feature_dims: Mapping[str, int],
        hidden_size: int = 256,
        mlp_sizes: Sequence[int] = (2048, 2048),
        recurrent: bool = True,
        always_on: Sequence[str] = (),
        tau: float = 5.0,
        eval_mode: EvalMode = "argmax",
        initial_on_probability: float = 0.9,
    ) -> None:
        super().__init__()
        self.feature_dims = {str(name): int(size) for name, size in feature_dims.items()}
        if not self.feature_dims:
            raise ValueError("feature_dims: expected at least one modality, got none")
        sizes = {"hidden_size": hidden_size, **self.feature_dims}
        sizes.update({f"mlp_sizes[{i}]": int(width) for i, width in enumerate(mlp_sizes)})
        for name, size in sizes.items():
            if size <= 0:
                raise ValueError(f"{name}: expected a positive size, got {size}")
        unknown = [name for name in always_on if name not in self.feature_dims]
        if unknown:
            raise ValueError(
                f"always_on: expected names of modalities {list(self.feature_dims)}, "
                f"got {unknown}"
            )
        self.always_on = tuple(name for name in self.feature_dims if name in always_on)
        gated = [name for name in self.feature_dims if name not in self.always_on]
        if not gated:
            raise ValueError(
                f"always_on: expected at least one modality left to decide, got every "
                f"modality {list(self.feature_dims)}"
            )
        if not 0.0 < initial_on_probability < 1.0:
            raise ValueError(
                f"initial_on_probability: expected a value in (0, 1), "
                f"got {initial_on_probability}"
            )
        self.recurrent = recurrent
        self.hidden_size = hidden_size

        layers: list[nn.Module] = []
        width = sum(self.feature_dims.values())
        for out_width in mlp_sizes:
            layers += [nn.Linear(width, int(out_width)), nn.ReLU(inplace=True)]
            width = int(out_width)
        self.mlp = nn.Sequential(*layers)
        self.lstm = nn.LSTMCell(width + len(self.feature_dims), hidden_size) if recurrent else None
        head_width = hidden_size if recurrent else width
        heads = {name: nn.Linear(head_width, 2) for name in gated}
        self.initial_on_probability = initial_on_probability
        self.heads = nn.ModuleDict(heads)
        self._bias_heads()
        self.gate = GumbelGate(tau=tau, hard=True, eval_mode=eval_mode)
        self.register_buffer(
            "_gated_mask",
            torch.tensor([name not in self.always_on for name in self.feature_dims]),
            persistent=False,
        )
        self.register_buffer("thresholds", torch.zeros(len(self.feature_dims)))
        width = sum(self.feature_dims.values())
        self.register_buffer("input_mean", torch.zeros(width))
        self.register_buffer("input_std", torch.ones(width))

    def _bias_heads(self) -> None:
        p = self.initial_on_probability
        with torch.no_grad():
            for head in self.heads.values():
                assert isinstance(head, nn.Linear)
                head.bias.copy_(torch.tensor([0.0, math.log(p) - math.log1p(-p)]))

    def reset_parameters(self) -> None:
        """Draw new weights as at construction (from the global RNG), the heads biased to
        ``initial_on_probability`` again; thresholds and the gate's temperature are kept.
        For restarts of policy training from the same features."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.LSTMCell)):
                module.reset_parameters()
        self._bias_heads()

    @property
    def modalities(self) -> tuple[str, ...]:
        """Modality names in the order of the M axis of decisions and logits."""
        return tuple(self.feature_dims)

    def set_thresholds(self, thresholds: Mapping[str, float] | Sequence[float] | Tensor) -> None:
        """Set the evaluation thresholds on the on-logits (the operating point).

        Args:
            thresholds: one value per modality: a mapping keyed by modality name (modalities
                left out keep their threshold), or ``(M,)`` values in `modalities` order.
                ``-inf`` keeps a modality always on, ``+inf`` always off; an always-on modality
                ignores its threshold.

        Raises:
            ValueError: for an unknown name, a count other than M, or a NaN.
        """
        values = self.thresholds.detach().clone()
        if isinstance(thresholds, Mapping):
            unknown = [name for name in thresholds if name not in self.feature_dims]
            if unknown:
                raise ValueError(
                    f"thresholds: expected names of modalities {list(self.modalities)}, "
                    f"got {unknown}"
                )
            for name, value in thresholds.items():
                values[self.modalities.index(name)] = float(value)
        else:
            given = torch.as_tensor(thresholds, dtype=values.dtype).flatten()
            if given.numel() != len(values):
                raise ValueError(
                    f"thresholds: expected {len(values)} values (one per modality "
                    f"{list(self.modalities)}), got {given.numel()}"
                )
            values = given
        if torch.isnan(values).any():
            raise ValueError(f"thresholds: expected numbers or ±inf, got {values.tolist()}")
        self.thresholds.copy_(values.to(self.thresholds.device))

    @torch.no_grad()
    def standardize(self, features: Mapping[str, Tensor], eps: float = 1e-3) -> None:
        """Standardise the policy's input from now on with these features' statistics.

        Each input dimension is shifted by its mean and divided by its standard deviation
        (plus ``eps``) over every segment given; the statistics are buffers (saved in the
        state_dict; identity by default). Features from frozen extractors (a MobileNetV2's
        pooled ReLU outputs) differ in scale by orders of magnitude between dimensions; a
        standardised input lets the MLP use each one from the first step.

        Args:
            features: modality name → ``(B, T, D_name)`` (or ``(B, D_name)``) features.

        Raises:
            ValueError: as `forward`.
        """
        axes = ("B", "T") if next(iter(features.values())).dim() == 3 else ("B",)
        self.input_mean.zero_()
        self.input_std.fill_(1.0)
        joint = self._concatenate(features, axes).flatten(0, -2).double()
        self.input_mean.copy_(joint.mean(0))
        self.input_std.copy_(joint.std(0) + eps)

    def _load_from_state_dict(
        self, state_dict: dict[str, Tensor], prefix: str, *args: object, **kwargs: object
    ) -> None:
        # State_dicts saved before operating points and standardisation existed: zeros and the
        # identity, what they were evaluated with.
        state_dict.setdefault(prefix + "thresholds", torch.zeros_like(self.thresholds))
        state_dict.setdefault(prefix + "input_mean", torch.zeros_like(self.input_mean))
        state_dict.setdefault(prefix + "input_std", torch.ones_like(self.input_std))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)  # type: ignore[arg-type]

    def forward(
        self,
        features: Mapping[str, Tensor],
        state: PolicyState | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> PolicyOutput:
        """Decide every segment of a batch of videos, in temporal order.

        Equivalent to calling `step` on ``t = 0, 1, ..., T-1`` with the same generator: the
        gate noise is drawn per segment in that order, so the decisions are identical.

        Args:
            features: modality name → ``(B, T, D_name)`` policy features.
            state: the state to continue from (e.g. the previous clip's final state), or None to
                start fresh (zero LSTM state, zero previous decisions).
            generator: optional ``torch.Generator`` for the gate noise.

        Returns:
            `PolicyOutput` with decisions ``(B, T, M)``, logits ``(B, T, M, 2)`` and the state
            after the last segment (None when ``recurrent=False``).

        Raises:
            ValueError: on missing or extra modalities, a tensor that is not 3-D, a feature size
                other than ``feature_dims[name]``, ``B`` or ``T`` that differ between
                modalities, ``T == 0``, or a state of the wrong shape.
        """
        joint = self.mlp(self._concatenate(features, ("B", "T")))
        return self._decide_sequence(joint, state, generator)

    def _decide_sequence(
        self, joint: Tensor, state: PolicyState | None, generator: torch.Generator | None,
        thresholds: Tensor | None = None,
    ) -> PolicyOutput:  # fmt: skip
        """The recurrent part over ``joint: (B, T, H)``, the MLP's output; ``thresholds``:
        ``(B, M)`` per video in place of the buffer (used by ``adagate.operating``)."""
        decisions, logits = [], []
        for t in range(joint.shape[1]):
            out = self._decide(joint[:, t], state, generator, thresholds)
            decisions.append(out.decisions)
            logits.append(out.logits)
            state = out.state
        return PolicyOutput(torch.stack(decisions, 1), torch.stack(logits, 1), state)

    def step(
        self,
        features_t: Mapping[str, Tensor],
        state: PolicyState | None = None,
        *,
        generator: torch.Generator | None = None,
    ) -> PolicyOutput:
        """Decide one segment, for streams that arrive a segment at a time.

        Args:
            features_t: modality name → ``(B, D_name)`` policy features of the new segment.
            state: the ``state`` returned for the previous segment, or None for the first.
            generator: optional ``torch.Generator`` for the gate noise.

        Returns:
            `PolicyOutput` with decisions ``(B, M)`` (no T axis), logits ``(B, M, 2)`` and the
            state to pass to the next call (None when ``recurrent=False``).

        Raises:
            ValueError: as `forward`, for 2-D inputs.
        """
        joint = self.mlp(self._concatenate(features_t, ("B",)))
        return self._decide(joint, state, generator)

    def _decide(
        self, joint: Tensor, state: PolicyState | None, generator: torch.Generator | None,
        thresholds: Tensor | None = None,
    ) -> PolicyOutput:  # fmt: skip
        batch = joint.shape[0]
        if self.lstm is None:
            if state is not None:
                raise ValueError("state: expected None when recurrent=False, got a PolicyState")
            summary = joint
        else:
            if state is None:
                zeros = joint.new_zeros(batch, self.hidden_size)
                state = PolicyState(zeros, zeros, joint.new_zeros(batch, len(self.modalities)))
            state = self._check_state(state, batch)
            previous = state.decisions.to(joint.dtype)
            hidden, cell = self.lstm(torch.cat([joint, previous], -1), (state.hidden, state.cell))
            summary = hidden
        head_logits = torch.stack([head(summary) for head in self.heads.values()], 1)
        on = head_logits[..., 1] - head_logits[..., 0]
        if not self.training:
            given = self.thresholds if thresholds is None else thresholds
            on = on - given[..., self._gated_mask].to(on.dtype)
        gated = self.gate(on, generator=generator)
        logits = head_logits.new_zeros(batch, len(self.modalities), 2)
        logits[..., 1] = _ALWAYS_ON_LOGIT
        logits = logits.masked_scatter(self._gated_mask[:, None], head_logits)
        decisions = gated.new_ones(batch, len(self.modalities))
        decisions = decisions.masked_scatter(self._gated_mask, gated)
        if self.lstm is None:
            return PolicyOutput(decisions, logits, None)
        return PolicyOutput(decisions, logits, PolicyState(hidden, cell, decisions))

    def _concatenate(self, features: Mapping[str, Tensor], axes: tuple[str, ...]) -> Tensor:
        if not isinstance(features, Mapping):
            raise ValueError(
                f"features: expected a mapping of modality name to tensor, "
                f"got {type(features).__name__}"
            )
        if set(features) != set(self.feature_dims):
            missing = [name for name in self.feature_dims if name not in features]
            extra = [name for name in features if name not in self.feature_dims]
            raise ValueError(
                f"features: expected exactly the modalities {list(self.feature_dims)}, "
                f"got missing {missing}, extra {extra}"
            )
        layout = "(" + ", ".join((*axes, "D")) + ")"
        leading: tuple[int, ...] | None = None
        for name, size in self.feature_dims.items():
            x = features[name]
            if not isinstance(x, Tensor) or x.dim() != len(axes) + 1 or x.shape[-1] != size:
                shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
                raise ValueError(
                    f"features[{name!r}]: expected {layout} with D = {size}, got {shape}"
                )
            if leading is None:
                leading = tuple(x.shape[:-1])
            elif tuple(x.shape[:-1]) != leading:
                shapes = {key: tuple(features[key].shape) for key in self.feature_dims}
                raise ValueError(
                    f"features: expected one {', '.join(axes)} across modalities, got {shapes}"
                )
        if leading is not None and len(axes) == 2 and leading[1] == 0:
            raise ValueError(f"features: expected at least one segment (T >= 1), got {leading}")
        joint = torch.cat([features[name] for name in self.feature_dims], -1)
        return (joint - self.input_mean.to(joint.dtype)) / self.input_std.to(joint.dtype)

    def _check_state(self, state: PolicyState, batch: int) -> PolicyState:
        expected = (
            (batch, self.hidden_size),
            (batch, self.hidden_size),
            (batch, len(self.modalities)),
        )
        seen = tuple(tuple(getattr(part, "shape", ())) for part in state)
        if seen != expected:
            raise ValueError(
                f"state: expected PolicyState(hidden, cell, decisions) of shapes {expected}, "
                f"got {seen}"
            )
        return PolicyState(*state)

    def extra_repr(self) -> str:
        return (
            f"modalities={self.modalities}, always_on={self.always_on}, "
            f"thresholds={[round(t, 4) for t in self.thresholds.tolist()]}"
        )
