"""Compute accounting: measured multiply-accumulates (MACs), reported as the paper's "GFLOPs".

AdaMML §4.1 reports the cost of a video as GFLOPs (1 GFLOP = 1e9 MACs here, as in most of the
vision literature): the policy network runs on every segment, each recognition network only on
the segments the policy selected for its modality, except a *shared* one, whose pooled
features the policy reads and which therefore runs on every segment. :class:`ModalityCosts`
holds the per-segment costs, measured once from the real modules; :func:`expected_gflops` turns
a batch of decisions into GFLOPs per video.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from adagate._decisions import check_decisions
from adagate._shapes import NeedsValues, fake_call

__all__ = ["ModalityCosts", "count_macs", "expected_gflops"]

_MACS_PER_GFLOP = 1e9


def count_macs(module: nn.Module, *example_inputs: Any, **example_kwargs: Any) -> int:
    """Count the multiply-accumulates of one forward call, measured with torch's flop counter.

    torch's ``FlopCounterMode`` counts 2 FLOPs per multiply-add for convolutions, matmuls and
    linear layers; we halve it and report MACs, which is what the AdaMML paper (and most of the
    vision literature) calls "GFLOPs" (1 GFLOP = 1e9 MACs). Element-wise ops (BatchNorm, ReLU,
    pooling) are not counted, as in the paper's figures.

    The call runs in eval mode (the inference cost, and BatchNorm running statistics stay
    untouched); every submodule's train/eval flag is restored afterwards. It runs on fake
    tensors (shapes, no data): the count is the same as a real run's, at a small fixed cost
    instead of the full compute. A module that needs real values to run, such as one that
    routes by a mask, is run for real instead; rows that
    :func:`adagate.routing.run_selected` skips are then not computed and so not counted.

    Args:
        module: the network to measure; it is run once under ``torch.no_grad()``.
        *example_inputs: positional inputs of the forward call, e.g. ``x: (N, F, C, H, W)``.
        **example_kwargs: keyword inputs of the forward call.

    Returns:
        MACs of that one call, as an ``int``.

    Shape:
        example_inputs: whatever ``module`` takes; one segment ``(1, ...)`` for a per-segment
        cost.

    Raises:
        ValueError: if ``module`` is not an ``nn.Module``.

    Example:
        >>> count_macs(torch.nn.Linear(4, 3), torch.randn(2, 4))
        24
    """
    if not isinstance(module, nn.Module):
        raise ValueError(f"module: expected an nn.Module, got {type(module).__name__}")
    training = {m: m.training for m in module.modules()}
    try:
        module.eval()
        counter = FlopCounterMode(display=False)
        try:
            fake_call(module, example_inputs, example_kwargs, inside=counter)
        except NeedsValues:
            counter = FlopCounterMode(display=False)
            with torch.no_grad(), counter:
                module(*example_inputs, **example_kwargs)
    finally:
        for m, flag in training.items():
            m.training = flag
    return int(counter.get_total_flops()) // 2


@dataclass(frozen=True)
class ModalityCosts:
    """Per-segment costs of an adaptive multi-modal model, in MACs.

    Args:
        recognition: MACs of one segment through each modality's recognition network, keyed
            by modality name (e.g. ``{"rgb": 4_110_000_000, "audio": 320_000_000}``). Paid only
            for the segments where that modality is selected.
        policy: MACs of the policy for one segment: its own per-modality feature extractors
            plus the policy network (MLP, LSTM, heads). Paid for every segment, whatever it
            decides.
        shared: modalities whose recognition network is also the policy's feature extractor
            for that modality (the policy reads its pooled features). Their recognition cost
            is paid on every segment, as part of the policy, and not again when selected: the
            decision then only says whether their logits enter the fusion. Stored in the
            order of ``recognition``.

    Raises:
        ValueError: if ``recognition`` is empty, or a name is not a string, or a cost is not a
            non-negative ``int`` (costs are MACs: write ``int(14.52e9)``, not ``14.52``), or
            ``shared`` names a modality that is not in ``recognition``, or one twice.

    Use :meth:`measure` to get them from the real modules; :meth:`as_tensor` for the ``(M,)``
    recognition costs in the policy's modality order (e.g. for a compute-budget loss, with
    ``marginal=True``); :attr:`always` for the MACs paid on every segment.

    Example:
        >>> costs = ModalityCosts({"rgb": 14 * 10**9, "audio": 4 * 10**8}, policy=4 * 10**8,
        ...                       shared=("audio",))
        >>> costs.always, costs.as_tensor(marginal=True).tolist()
        (800000000, [14000000000.0, 0.0])
    """

    recognition: Mapping[str, int]
    policy: int = 0
    shared: Sequence[str] = ()

    def __post_init__(self) -> None:
        if not isinstance(self.recognition, Mapping) or not self.recognition:
            raise ValueError(
                f"recognition: expected a non-empty mapping of modality name to MACs, "
                f"got {self.recognition!r}"
            )
        for name, macs in self.recognition.items():
            if not isinstance(name, str):
                raise ValueError(f"recognition: expected modality names as keys, got {name!r}")
            _check_macs(macs, f"recognition[{name!r}]")
        _check_macs(self.policy, "policy")
        shared = self.shared
        if isinstance(shared, str) or not isinstance(shared, Sequence):
            raise ValueError(
                f"shared: expected a sequence of modality names, e.g. ('audio',), got {shared!r}"
            )
        if len(set(shared)) != len(shared) or not set(shared) <= set(self.recognition):
            raise ValueError(
                f"shared: expected distinct names from {list(self.recognition)}, got {list(shared)}"
            )
        # Private copies: the costs of a frozen object must not change under the caller's hands.
        object.__setattr__(self, "recognition", dict(self.recognition))
        object.__setattr__(self, "shared", tuple(m for m in self.recognition if m in shared))

    @property
    def modalities(self) -> tuple[str, ...]:
        """Modality names, in the order ``recognition`` was given."""
        return tuple(self.recognition)

    @property
    def always(self) -> int:
        """MACs paid on every segment: the policy's plus the shared recognition networks'."""
        return self.policy + sum(self.recognition[name] for name in self.shared)

    @classmethod
    def measure(
        cls,
        recognition: Mapping[str, nn.Module],
        inputs: Mapping[str, Any],
        policy: Mapping[str, nn.Module] | None = None,
        policy_inputs: Mapping[str, Any] | None = None,
        shared: Sequence[str] = (),
    ) -> ModalityCosts:
        """Measure the costs with :func:`count_macs`, one segment per module.

        Every example input is **one segment** (leading batch size 1): e.g.
        ``inputs["rgb"]: (1, F, 3, H, W)`` for a TSN backbone, and for a ``MultiModalPolicy``
        features of shape ``(1, 1, D)`` (one video, one segment). An input that is a tuple is
        unpacked as positional arguments; anything else (a tensor, a dict of tensors) is the
        one positional argument.

        Args:
            recognition: recognition network per modality.
            inputs: one-segment example input per modality; same keys as ``recognition``.
            policy: the modules paid for on every segment, under any labels, e.g.
                ``{"rgb_features": mobilenet, "audio_features": audio_net, "policy": policy}``.
            policy_inputs: one-segment example input per ``policy`` entry; same keys.
            shared: modalities whose recognition network the policy reads (see the class);
                leave their networks out of ``policy``: they are counted once, in
                ``recognition``.

        Returns:
            The measured costs; ``policy`` is the sum over the policy modules (0 if none).

        Raises:
            ValueError: if the keys of a module mapping and its inputs differ.

        Example:
            >>> costs = ModalityCosts.measure(
            ...     {"rgb": torch.nn.Linear(8, 2)}, {"rgb": torch.randn(1, 8)},
            ...     policy={"policy": torch.nn.Linear(8, 1)},
            ...     policy_inputs={"policy": torch.randn(1, 8)})
            >>> costs.recognition, costs.policy
            ({'rgb': 16}, 8)
        """
        policy = {} if policy is None else policy
        policy_inputs = {} if policy_inputs is None else policy_inputs
        _check_same_keys(recognition, inputs, "recognition", "inputs")
        _check_same_keys(policy, policy_inputs, "policy", "policy_inputs")
        return cls(
            recognition={name: _measure_one(m, inputs[name]) for name, m in recognition.items()},
            policy=sum(_measure_one(m, policy_inputs[name]) for name, m in policy.items()),
            shared=shared,
        )

    def as_tensor(
        self,
        modalities: Sequence[str] | None = None,
        *,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        marginal: bool = False,
    ) -> Tensor:
        """Recognition MACs per segment as a tensor, in a given modality order.

        Args:
            modalities: the order of the M axis, normally ``policy.modalities``; must name
                exactly the modalities of ``recognition``. Default: their given order.
            dtype: floating dtype of the result (default: torch's default dtype).
            device: device of the result.
            marginal: the MACs that selecting each modality adds: 0 for a ``shared`` one,
                which runs on every segment anyway. Use it where a decision is charged its
                cost, as in a :class:`~adagate.losses.BudgetLoss`.

        Returns:
            ``costs: (M,)`` recognition MACs of one segment, per modality.

        Raises:
            ValueError: if ``modalities`` misses, repeats or adds a modality.
        """
        order = self._order(modalities)
        paid = [0 if marginal and name in self.shared else self.recognition[name] for name in order]
        return torch.tensor([float(macs) for macs in paid], dtype=dtype, device=device)

    def _order(self, modalities: Sequence[str] | None) -> tuple[str, ...]:
        if modalities is None:
            return self.modalities
        order = tuple(modalities)
        if len(set(order)) != len(order) or set(order) != set(self.recognition):
            raise ValueError(
                f"modalities: expected each of {sorted(self.recognition)} exactly once, "
                f"got {list(order)}"
            )
        return order


def expected_gflops(
    decisions: Tensor,
    costs: ModalityCosts | Mapping[str, int],
    modalities: Sequence[str] | None = None,
) -> Tensor:
    """GFLOPs per video for given per-segment decisions, as the AdaMML tables report them.

    ``(Σ_t Σ_{m not shared} decisions[b, t, m] · recognition[m] + T · always) / 1e9`` with
    ``always = policy + Σ_{m shared} recognition[m]``: the policy runs on every segment, and so
    do the recognition networks it reads features from (``costs.shared``); any other
    recognition network m runs on the segments where it is selected (AdaMML §3.1, §4.1). With
    soft decisions (selection probabilities) it is the expected cost, and it is differentiable
    in ``decisions``.

    Args:
        decisions: ``(B, T, M)`` bool, integer or floating, in {0, 1} or, soft, in [0, 1]; the
            M axis in ``modalities`` order. Values are not checked (that would need a device
            sync).
        costs: per-segment MACs; or a mapping modality name → recognition MACs of one
            segment, read as ``ModalityCosts(costs)`` (no policy cost) in the order of
            ``modalities``, which it then needs.
        modalities: the order of the M axis, normally ``policy.modalities``; default: the
            order of ``costs.recognition`` for a :class:`ModalityCosts`.

    Returns:
        ``gflops: (B,)`` in ``decisions``' floating dtype (at least float32), on its device.

    Raises:
        ValueError: if ``decisions`` is not a ``(B, T, M)`` decisions tensor with one entry per
            modality, ``costs`` is neither a :class:`ModalityCosts` nor a mapping of modality
            name to MACs, ``costs`` is a mapping and ``modalities`` is not given, or
            ``modalities`` does not name each modality of ``costs`` exactly once.

    Example:
        >>> costs = ModalityCosts({"rgb": 4_000_000_000, "audio": 1_000_000_000}, policy=10**9)
        >>> expected_gflops(torch.tensor([[[1, 0], [1, 1]]]), costs)
        tensor([11.])
        >>> recognition = {"audio": 1_000_000_000, "rgb": 4_000_000_000}
        >>> expected_gflops(torch.tensor([[[1, 0], [1, 1]]]), recognition, ["rgb", "audio"])
        tensor([9.])
    """
    if isinstance(costs, Mapping):
        if modalities is None:
            # A dict's own order need not be the M axis's (that is the policy's): never guess.
            raise ValueError(
                f"costs: expected a ModalityCosts, or a mapping modality → MACs together with "
                f"modalities= (the order of the M axis, e.g. policy.modalities), got "
                f"{type(costs).__name__} {dict(costs)!r} without modalities"
            )
        try:
            costs = ModalityCosts(costs)
        except ValueError as error:
            raise ValueError(f"costs: read as ModalityCosts(costs): {error}") from error
    if not isinstance(costs, ModalityCosts):
        raise ValueError(
            f"costs: expected a ModalityCosts or a mapping modality → MACs, "
            f"got {type(costs).__name__}"
        )
    order = costs._order(modalities)
    check_decisions(decisions, "(B, T, M)")
    if decisions.shape[2] != len(order):
        raise ValueError(
            f"decisions: expected (B, T, M={len(order)}) for modalities {list(order)}, "
            f"got shape {tuple(decisions.shape)}"
        )
    dtype = torch.float32
    if decisions.is_floating_point():
        dtype = torch.promote_types(decisions.dtype, torch.float32)
    # Scale to GFLOPs in float64 first: per-segment MACs (~1e10) are not exact in float32.
    recognition = (costs.as_tensor(order, dtype=torch.float64, marginal=True) / _MACS_PER_GFLOP).to(
        dtype=dtype, device=decisions.device
    )
    segments = decisions.shape[1]
    # Element-wise multiply and sum rather than a matmul, so autocast cannot lower it to fp16.
    selected = (decisions.to(dtype) * recognition).sum(dim=(1, 2))
    return selected + segments * costs.always / _MACS_PER_GFLOP


def _check_macs(macs: object, name: str) -> None:
    if isinstance(macs, bool) or not isinstance(macs, int) or macs < 0:
        hint = (
            " (costs are MACs as int: int(14.52e9), not 14.52)" if isinstance(macs, float) else ""
        )
        raise ValueError(f"{name}: expected a non-negative int of MACs, got {macs!r}{hint}")


def _check_same_keys(
    modules: Mapping[str, Any], inputs: Mapping[str, Any], what: str, inputs_name: str
) -> None:
    if set(modules) != set(inputs):
        raise ValueError(
            f"{inputs_name}: expected one entry per {what} module, got missing "
            f"{sorted(set(modules) - set(inputs))}, extra {sorted(set(inputs) - set(modules))}"
        )


def _measure_one(module: nn.Module, example: Any) -> int:
    arguments = example if isinstance(example, tuple) else (example,)
    return count_macs(module, *arguments)
