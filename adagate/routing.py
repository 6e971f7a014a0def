"""Routing: run a module on the rows a gate selected, and only on those.

The AdaMML reference code computes every modality for every segment and multiplies the skipped
ones by zero, so its GFLOPs savings exist only on paper. :func:`run_selected` gathers the
selected rows, runs the module on them alone, and scatters the result back, so the saving is
real wall-clock time (and BatchNorm statistics see only the rows that were actually computed;
a call on a single row normalises with the running statistics instead, see :func:`run_selected`).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from adagate._decisions import check_decisions, selected
from adagate._shapes import NeedsValues, fake_call

__all__ = ["route_segments", "run_selected"]


def run_selected(
    module: nn.Module,
    inputs: Any,
    mask: Tensor,
    fill: float = 0.0,
    *,
    example_output: Any = None,
) -> Any:
    """Call ``module`` on the rows of ``inputs`` whose ``mask`` is nonzero; ``fill`` elsewhere.

    Gather → run → scatter: ``module`` sees only the selected rows (so skipped rows cost no
    compute and, in train mode, do not enter BatchNorm statistics), and its output rows are
    written back into an ``(N, ...)`` tensor whose other rows hold ``fill``. Gradients reach the
    selected input rows and the module's parameters; skipped input rows get zero gradient.

    ``mask`` follows adagate's one decisions contract: bool, integer or floating, and a row is
    selected where its value is nonzero (``mask != 0``), so policy decisions are passed as they
    are, hard or soft. It is the rule under which routed and dense logits agree after the
    fusion: a soft decision of 0.3 still weights its segment's logits, so they are computed.

    ``inputs`` is passed to ``module`` as its one positional argument; it is a tensor or a
    tuple / list / dict of tensors that all have N rows. For a module with several arguments,
    wrap it in a small ``nn.Module`` that unpacks a tuple. The module's output may likewise be a
    tensor or a (nested) tuple / list / dict of tensors; each leaf must have one row per input
    row, and the same structure comes back with N rows.

    Special cases:

    - **All rows selected**: ``module(inputs)`` is returned as is, with no gather or scatter.
    - **No row selected**: the module is *not* called (an empty batch costs a launch for
      nothing). The output's structure, trailing shapes, dtypes and devices come from
      ``example_output`` when given, else from running the module on fake tensors (no compute,
      no device sync, no change to parameters or buffers, autocast respected), cached per
      module and call signature so that later no-row calls cost microseconds. A module that
      needs real values (``.item()``, data-dependent shapes) cannot run on fake tensors: pass
      ``example_output``. The ``fill`` output has no autograd history, so the module's
      parameters get no gradient in that step (with DDP, use ``find_unused_parameters=True``).
    - **No row selected under torch.distributed with SyncBatchNorm**: when
      ``torch.distributed`` is initialised and ``module`` contains an ``nn.SyncBatchNorm``
      (or a subclass), the module *is* called, on an empty batch. SyncBatchNorm makes a
      collective in every training forward, so a rank that skipped the call would leave the
      other ranks waiting for it forever; on an empty batch it joins with zero rows.
    - **One row selected (or N = 1), BatchNorm in training mode**: every train-mode
      BatchNorm layer of ``module`` normalises that call with its running statistics, as in
      eval mode, and does not update them (``running_mean``, ``running_var`` and
      ``num_batches_tracked`` stay as they were). Gradients still flow to the selected row and
      to the parameters, BatchNorm's affine weights included; each layer's train/eval flag is
      restored when the call returns or raises. Why: one row's batch statistics are its own:
      at 1×1 spatial size or after pooling they are one value per channel, on which a
      train-mode BatchNorm raises (``Expected more than 1 value per channel``); at larger
      sizes they normalise the row by itself, which evaluation never does. The rule goes by
      row count, so it is the same at every input resolution, and calls on two or more rows
      are exactly the module's own. Two kinds of layers keep training mode: a BatchNorm
      without running statistics (``track_running_stats=False``: nothing else to normalise
      with), and an ``nn.SyncBatchNorm`` under an initialised ``torch.distributed`` with more
      than one process in its group (its statistics come from every rank, and in eval mode
      it would skip a collective the other ranks wait in). A module that recomputes its
      forward during backward (activation checkpointing) recomputes in training mode, so it
      still needs two rows.

    Device sync: finding the selected rows (``mask.nonzero()``) needs one host sync when
    ``mask`` lives on an accelerator; that is the only one. Everything else is shape metadata.

    AdaMML use (AdaMML §3.1): per-modality logits where recognition backbone ``m`` runs only
    on the segments the policy selected::

        x = inputs[name]                                        # (B, T, ...)
        logits_m = run_selected(backbone, x.flatten(0, 1), decisions[..., m].flatten())
        logits_m = logits_m.unflatten(0, (B, T))

    The policy is not trained through ``run_selected`` (the mask carries no gradient): its
    gradient flows through the fusion, which multiplies each segment's logits by the
    straight-through decision (AdaMML §3.2, Eq. 3). For a skipped segment that gradient is
    ``weight * logits``, which is zero here because the logits were never computed: routing
    during policy learning leaves the policy no accuracy signal to switch a modality *on*.
    While the policy learns, compute densely (as the reference code does, multiplying by the
    decisions); route at evaluation and while fine-tuning the recognition networks under a
    fixed policy (the last training stage, AdaMML §4.1).

    Args:
        module: the network to run; it must map rows to rows (output leading size = input
            leading size), e.g. a backbone over segments ``x: (N, F, C, H, W) -> (N, C)``.
        inputs: ``(N, ...)`` tensor, or a tuple / list / dict of such tensors.
        mask: ``(N,)`` decisions, bool, integer or floating; rows where it is nonzero are
            computed. On any device.
        fill: value of the output rows that were not computed.
        example_output: used only when no row is selected: a tensor, or structure of tensors,
            like the module's output for any number of rows; its structure, trailing shapes,
            dtypes and devices shape the ``fill`` output. Default: inferred on fake tensors.

    Returns:
        The module's output structure with every leaf ``(N, ...)``: computed rows where
        ``mask`` is nonzero, ``fill`` elsewhere.

    Shape:
        inputs: (N, ...), mask: (N,) → output: (N, ...).

    Raises:
        ValueError: if ``module`` is not an ``nn.Module``, ``inputs`` holds something other
            than tensors of ≥ 1 dims with one shared N, ``mask`` is not an ``(N,)`` decisions
            tensor, or the module's output (or ``example_output``) is not tensors with one row
            per input row.
        RuntimeError: if no row is selected, no ``example_output`` is given and the module
            cannot run on fake tensors.

    Example:
        >>> net = torch.nn.Linear(4, 2)
        >>> x, mask = torch.randn(5, 4), torch.tensor([1.0, 0.0, 1.0, 0.0, 0.0])
        >>> run_selected(net, x, mask).shape
        torch.Size([5, 2])
    """
    if not isinstance(module, nn.Module):
        raise ValueError(f"module: expected an nn.Module, got {type(module).__name__}")
    rows = _rows(inputs)
    check_decisions(mask, "(N,)", name="mask")
    if mask.shape != (rows,):
        raise ValueError(
            f"mask: expected shape ({rows},) to match the N={rows} rows of inputs, "
            f"got shape {tuple(mask.shape)}"
        )
    index = selected(mask).nonzero().squeeze(1)
    chosen = index.numel()
    if chosen == rows and rows > 0:
        return _call(module, inputs, rows)
    if chosen == 0 and not _joins_collectives(module):
        return _fill_like_output(module, inputs, rows, fill, example_output)
    gathered = _map(lambda x: x.index_select(0, index.to(x.device)), inputs, "inputs")
    outputs = _call(module, gathered, chosen)

    def scatter(y: Tensor) -> Tensor:
        _check_rows(y, chosen, "module output")
        out = y.new_full((rows, *y.shape[1:]), fill)
        # In place on a fresh tensor: one allocation; autograd routes the gradient to y.
        return out.index_copy_(0, index.to(y.device), y)

    return _map(scatter, outputs, "module output")


def route_segments(
    modules: Mapping[str, nn.Module],
    inputs: Mapping[str, Tensor],
    decisions: Tensor,
    modalities: Sequence[str],
    *,
    route: bool = True,
    fill: float = 0.0,
) -> Tensor:
    """Per-segment, per-modality outputs, each modality computed only where it was selected.

    For the modality at position ``i`` of ``modalities``, ``modules[name]`` runs on the
    segments ``(b, t)`` whose ``decisions[b, t, i]`` is nonzero, through `run_selected` (and
    its rules, the one-row BatchNorm rule included); the other segments hold ``fill``. With
    ``route=False`` every segment is computed, which is what policy training needs: the
    straight-through gradient of a skipped decision is ``weight * logits`` (AdaMML Eq. 3
    through the fusion), and it is zero when the logits were never computed. Route at
    evaluation and while fine-tuning under a fixed policy.

    Args:
        modules: modality name → network mapping one segment ``(N, ...)`` to ``(N, C)``.
        inputs: modality name → ``(B, T, ...)`` segment inputs.
        decisions: ``(B, T, M)`` decisions in the order of ``modalities``: bool, integer or
            floating (e.g. `PolicyOutput.decisions`); nonzero selects. No gradient flows
            through the selection.
        modalities: the order of the M axis, e.g. ``policy.modalities``.
        route: compute only the selected segments (True) or all of them (False).
        fill: value of the outputs at skipped segments.

    Returns:
        ``(B, T, M, C)`` outputs, ready for `masked_late_fusion`.

    Shape:
        inputs[name]: (B, T, ...), decisions: (B, T, M) → output: (B, T, M, C).

    Raises:
        ValueError: if ``decisions`` is not ``(B, T, M)`` with ``M = len(modalities)``, a
            modality has no module or input, an input's leading axes are not ``(B, T)``, or
            the modalities' outputs differ in shape.

    Example:
        >>> modules = {"rgb": nn.Linear(6, 3), "audio": nn.Linear(2, 3)}
        >>> inputs = {"rgb": torch.randn(2, 4, 6), "audio": torch.randn(2, 4, 2)}
        >>> decisions = torch.tensor([[[1.0, 0.0]] * 4, [[0.0, 1.0]] * 4])
        >>> out = route_segments(modules, inputs, decisions, ["rgb", "audio"])
        >>> out.shape, bool(out[0, :, 1].eq(0).all()), bool(out[1, :, 0].eq(0).all())
        (torch.Size([2, 4, 2, 3]), True, True)
    """
    names = check_routing_inputs(modules, inputs, decisions, modalities, "(B, T, M)")
    segments = tuple(decisions.shape[:2])
    outputs = []
    for index, name in enumerate(names):
        x = inputs[name]
        if tuple(x.shape[:2]) != segments:
            raise ValueError(
                f"inputs[{name!r}]: expected (B, T, ...) with (B, T) = {segments} like "
                f"decisions, got shape {tuple(x.shape)}"
            )
        rows = x.flatten(0, 1)
        if route:
            out = run_selected(modules[name], rows, decisions[..., index].flatten(), fill)
        else:
            out = modules[name](rows)
        outputs.append(out.unflatten(0, segments))
    shapes = {name: tuple(out.shape[2:]) for name, out in zip(names, outputs, strict=True)}
    if len(set(shapes.values())) > 1:
        raise ValueError(f"modules: expected outputs of one shape, got {shapes}")
    return torch.stack(outputs, dim=2)


def check_routing_inputs(
    modules: Mapping[str, Any],
    inputs: Mapping[str, Any],
    decisions: Tensor,
    modalities: Sequence[str],
    layout: str,
    suffix: str = "",
) -> list[str]:
    """Check ``decisions`` laid out as ``layout`` (ending in ``M``) against ``modalities``, each
    of which needs a module and an input; argument names in messages end in ``suffix``.

    Returns:
        The modality names, in order.
    """
    names = list(modalities)
    check_decisions(decisions, layout, name=f"decisions{suffix}")
    if decisions.shape[-1] != len(names):
        raise ValueError(
            f"decisions{suffix}: expected {layout} with M = {len(names)} for modalities "
            f"{names}, got shape {tuple(decisions.shape)}"
        )
    absent = [name for name in names if name not in modules or name not in inputs]
    if absent:
        raise ValueError(
            f"modalities: expected each to have a module and an input, got {absent} without; "
            f"modules have {list(modules)}, inputs{suffix} have {list(inputs)}"
        )
    return names


def _rows(inputs: Any) -> int:
    """The shared leading size N of every tensor in ``inputs``."""
    sizes: list[tuple[int, ...]] = []

    def record(x: Tensor) -> Tensor:
        sizes.append(tuple(x.shape))
        return x

    _map(record, inputs, "inputs")
    if not sizes or any(len(s) == 0 for s in sizes) or len({s[0] for s in sizes}) != 1:
        raise ValueError(
            "inputs: expected a tensor, or a tuple / list / dict of tensors, all with the same "
            f"leading size N; got shapes {sizes}"
        )
    return sizes[0][0]


def _check_rows(y: Tensor, rows: int, what: str) -> Tensor:
    if y.ndim == 0 or y.shape[0] != rows:
        raise ValueError(
            f"{what}: expected one row per input row ({rows} rows), got a tensor of shape "
            f"{tuple(y.shape)}"
        )
    return y


def _call(module: nn.Module, inputs: Any, rows: int) -> Any:
    """``module(inputs)`` on ``rows`` rows; a single row meets train-mode BatchNorm layers
    switched to their running statistics for this call (the rule of :func:`run_selected`)."""
    if rows != 1:
        return module(inputs)
    frozen = [m for m in module.modules() if _normalises_alone(m)]
    for layer in frozen:
        layer.training = False
    try:
        return module(inputs)
    finally:
        for layer in frozen:
            layer.training = True


def _normalises_alone(layer: nn.Module) -> bool:
    """Whether ``layer`` is a train-mode BatchNorm whose batch statistics would come from the
    call's rows alone, and which has running statistics to use instead."""
    if not isinstance(layer, nn.modules.batchnorm._BatchNorm) or not layer.training:
        return False
    if layer.running_mean is None or layer.running_var is None:
        return False
    if isinstance(layer, nn.SyncBatchNorm) and dist.is_available() and dist.is_initialized():
        return dist.get_world_size(layer.process_group) <= 1
    return True


def _joins_collectives(module: nn.Module) -> bool:
    """Whether every rank must call ``module``, even with no row: SyncBatchNorm syncs in forward."""
    return (
        dist.is_available()
        and dist.is_initialized()
        and any(isinstance(m, nn.SyncBatchNorm) for m in module.modules())
    )


# Output of the no-row path per module and call signature, as zero-row tensors (no data):
# inferring it on fake tensors costs tens of milliseconds for a ResNet-50, more than computing
# a few segments on a GPU, so it is done once per signature.
_EMPTY_OUTPUTS: weakref.WeakKeyDictionary[nn.Module, dict[Hashable, Any]] = (
    weakref.WeakKeyDictionary()
)


def _fill_like_output(
    module: nn.Module, inputs: Any, rows: int, fill: float, example_output: Any
) -> Any:
    """``fill`` tensors shaped like ``module(inputs)``, found without computing it."""
    if example_output is not None:
        empty = _map(_no_rows, example_output, "example_output")
    else:
        known = _EMPTY_OUTPUTS.setdefault(module, {})
        key = _signature(module, inputs)
        if key not in known:
            known[key] = _map(
                lambda y: torch.empty((0, *y.shape[1:]), dtype=y.dtype, device=y.device),
                _fake_output(module, inputs, rows),
                "module output",
            )
        empty = known[key]
    return _map(lambda y: y.new_full((rows, *y.shape[1:]), fill), empty, "module output")


def _no_rows(y: Tensor) -> Tensor:
    if y.ndim == 0:
        raise ValueError("example_output: expected tensors of >= 1 dims (N, ...), got a scalar")
    return y.detach()[:0]


def _fake_output(module: nn.Module, inputs: Any, rows: int) -> Any:
    """``module(inputs)`` run on fake tensors: shapes, dtypes and devices, no data."""
    try:
        outputs = fake_call(module, (inputs,))
    except NeedsValues as error:
        raise RuntimeError(
            f"run_selected: no row is selected, and the output of {type(module).__name__} "
            f"cannot be inferred on fake tensors because it needs real values ({error}); "
            f"pass example_output="
        ) from error
    return _map(lambda y: _check_rows(y, rows, "module output"), outputs, "module output")


def _signature(module: nn.Module, inputs: Any) -> Hashable:
    """What the output's trailing shapes and dtypes can depend on, for the no-row cache."""
    tensors = [*module.parameters(), *module.buffers()]
    devices: set[str] = set()

    def describe(tree: Any) -> Hashable:
        if isinstance(tree, Tensor):
            devices.add(tree.device.type)
            return (tuple(tree.shape[1:]), tree.dtype, tree.device)
        if isinstance(tree, dict):
            return (dict, tuple((k, describe(v)) for k, v in tree.items()))
        return (type(tree), tuple(describe(x) for x in tree))

    structure = describe(inputs)
    devices.update(t.device.type for t in tensors)
    autocast = tuple(
        (d, torch.is_autocast_enabled(d), torch.get_autocast_dtype(d))
        for d in sorted(devices)
        if torch.amp.is_autocast_available(d)
    )
    state = tuple((t.shape, t.dtype, t.device) for t in tensors)
    modes = tuple(m.training for m in module.modules())
    return (structure, state, modes, autocast)


def _map(fn: Callable[[Tensor], Tensor], tree: Any, what: str) -> Any:
    """Apply ``fn`` to every tensor of a nested tuple / list / dict, keeping the structure."""
    if isinstance(tree, Tensor):
        return fn(tree)
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        return type(tree)(*(_map(fn, x, what) for x in tree))
    if isinstance(tree, (tuple, list)):
        return type(tree)(_map(fn, x, what) for x in tree)
    if isinstance(tree, dict):
        return {k: _map(fn, v, what) for k, v in tree.items()}
    raise ValueError(
        f"{what}: expected tensors, or tuples / lists / dicts of tensors; "
        f"got {type(tree).__name__}"
    )
