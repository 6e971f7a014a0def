"""Make a trained module fast for inference: fold BatchNorm, pick a memory layout, compile.

On CPU at the policy's small sizes, a MobileNetV2 spends more time in its BatchNorms than in its
convolutions (an eval BatchNorm is one more full pass over the activations, per layer), and a
depthwise convolution in NCHW is several times slower than in channels-last, while a ResNet
stem may prefer the other layout. So the layout is measured per network, not assumed.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Callable
from typing import Any, Literal, TypeVar

import torch
import torch.fx
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from torch.utils._pytree import tree_flatten

__all__ = ["optimize_for_inference"]

logger = logging.getLogger(__name__)

MemoryFormat = Literal["auto", "channels_last", "contiguous", "keep"]
ModuleT = TypeVar("ModuleT", bound=nn.Module)

_FORMATS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}

# (convolution, BatchNorm) types that fold: same spatial rank, BN right after the convolution.
_FOLDABLE = (
    (nn.Conv1d, nn.BatchNorm1d),
    (nn.Conv2d, nn.BatchNorm2d),
    (nn.Conv3d, nn.BatchNorm3d),
)


def _fold_batch_norms(module: nn.Module) -> list[tuple[str, str]]:
    """Fold, in place, every eval-mode BatchNorm that only ever sees one convolution's output.

    The convolution takes the BatchNorm's affine map into its weight and bias,
    ``w' = w * gamma / sqrt(var + eps)`` and ``b' = (b - mean) * gamma / sqrt(var + eps) + beta``,
    and the BatchNorm is replaced by ``nn.Identity``, so module names and the number of layers
    in an ``nn.Sequential`` are kept. A pair is folded only where ``torch.fx`` shows the
    dataflow: the BatchNorm's input is the convolution's output and nothing else reads that
    output. A module that fx cannot trace is searched child by child, so pairs inside traceable
    children (``nn.Sequential``, residual blocks, adagate's backbones) are still found.

    Args:
        module: the network; it should be in eval mode (BatchNorms in training mode, or without
            running statistics, are left alone).

    Returns:
        The folded pairs as ``(convolution name, BatchNorm name)``, names as in
        ``module.named_modules()``.

    Shape:
        Leaves every output shape unchanged: ``module(x)`` has the shape it had.

    Example:
        >>> net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU()).eval()
        >>> _fold_batch_norms(net)
        [('0', '1')]
        >>> type(net[1]).__name__
        'Identity'
    """
    pairs = _foldable_pairs(module, "")
    for conv_name, bn_name in pairs:
        conv = module.get_submodule(conv_name)
        bn = module.get_submodule(bn_name)
        assert isinstance(conv, nn.modules.conv._ConvNd)
        assert isinstance(bn, nn.modules.batchnorm._BatchNorm)
        # fuse_conv_bn_eval builds a new convolution; assign its tensors to the existing one so
        # that hooks, references and the convolution's name survive.
        fused = fuse_conv_bn_eval(conv, bn)
        conv.weight = fused.weight
        conv.bias = fused.bias
        _set_submodule(module, bn_name, nn.Identity().train(bn.training))
    return pairs


def optimize_for_inference(
    module: ModuleT,
    example_inputs: tuple[Any, ...] | None = None,
    *,
    memory_format: MemoryFormat = "auto",
    compile: bool = False,
    inplace: bool = False,
    repeats: int = 5,
) -> ModuleT:
    """An eval-mode copy of ``module`` that computes the same outputs faster.

    Three steps:

    1. **BatchNorm folding**: each BatchNorm that follows a
       convolution becomes ``nn.Identity`` and the convolution gets its scale and shift.
    2. **Memory layout per network**: a *network* is an outermost submodule (or ``module``
       itself) that holds a 2D convolution and is called with one tensor; each is timed on the
       input it receives while ``module(*example_inputs)`` runs, in NCHW and in channels-last
       (interleaved rounds, best of ``repeats``), and keeps the faster. A forward pre-hook
       converts the network's 4-D input to that layout, so a caller's layout does not undo it.
    3. **Compilation** (``compile=True``): each network (or ``module``, when it holds none) is
       compiled in place with ``nn.Module.compile``, so the module keeps its type and methods.

    The result is equivalent within floating-point rounding: folding reassociates one multiply
    and one add per channel, and the layouts use different convolution kernels. In float32 the
    outputs agree with the original's to ``atol = rtol = 1e-4`` relative to the output's scale
    (tested on TSN ResNet-18/50, MobileNetV2 and a whole AdaMML model); a decision or a class
    whose two logits are within that margin can flip.

    The module keeps working with :func:`adagate.routing.run_selected` and
    :func:`adagate.routing.route_segments` (networks run on any number of rows). Its
    ``state_dict`` changes: every folded BatchNorm's keys (``bn1.weight``, ``bn1.running_mean``,
    ...) disappear and its convolution gains a ``bias``; convolution names are unchanged. Load
    checkpoints into the original module, then optimise.

    Args:
        module: a trained network.
        example_inputs: the positional arguments of one representative call,
            ``module(*example_inputs)``, at the sizes used in inference; needed for
            ``memory_format="auto"``.
        memory_format: ``"auto"`` (measure per network), ``"channels_last"`` or
            ``"contiguous"`` for every network, or ``"keep"`` to leave layouts as they are.
        compile: compile each network with ``torch.compile`` (first calls are slow).
        inplace: optimise ``module`` itself instead of a deep copy.
        repeats: timed rounds per network for ``memory_format="auto"``.

    Returns:
        The optimised module, in eval mode, of the same type as ``module``.

    Raises:
        ValueError: if ``module`` is not an ``nn.Module``, ``memory_format`` is unknown,
            ``"auto"`` comes without ``example_inputs``, or ``repeats < 1``.

    Shape:
        Unchanged: any input ``module`` accepts, e.g. ``x: (N, F, C, H, W) -> (N, C)`` for a
        backbone, gives an output of the shape ``module`` gives.

    Example:
        >>> from adagate.backbones import mobilenet_v2
        >>> net = mobilenet_v2(3, 5, width_mult=0.25).eval()
        >>> x = torch.randn(2, 2, 3, 32, 32)
        >>> fast = optimize_for_inference(net, (x,), repeats=1)
        >>> torch.allclose(fast(x), net(x), atol=1e-4)
        True
    """
    if not isinstance(module, nn.Module):
        raise ValueError(f"module: expected an nn.Module, got {type(module).__name__}")
    if memory_format not in ("auto", "keep", *_FORMATS):
        raise ValueError(
            "memory_format: expected 'auto', 'channels_last', 'contiguous' or 'keep', "
            f"got {memory_format!r}"
        )
    if memory_format == "auto" and example_inputs is None:
        raise ValueError(
            "example_inputs: expected a tuple of arguments to time the layouts on when "
            "memory_format='auto', got None"
        )
    if repeats < 1:
        raise ValueError(f"repeats: expected >= 1, got {repeats}")
    model = module if inplace else copy.deepcopy(module)
    model.eval()
    folded = _fold_batch_norms(model)
    logger.info("folded %d BatchNorms into their convolutions", len(folded))
    networks: dict[str, tuple[Any, ...] | None] = {}
    if example_inputs is not None:
        networks.update(_networks(model, example_inputs))
    elif memory_format != "keep":
        networks = dict.fromkeys(_outermost(model, _convolutional_names(model)))
    for name, inputs in networks.items() if memory_format != "keep" else ():
        network = model.get_submodule(name)
        chosen: str = memory_format
        if chosen == "auto":
            assert inputs is not None
            chosen = _faster_layout(network, inputs, repeats)
            logger.info("layout of %s: %s", name or type(model).__name__, chosen)
        _set_layout(network, _FORMATS[chosen])
    if compile:
        for name in networks or [""]:
            model.get_submodule(name).compile()
    return model


def _foldable_pairs(module: nn.Module, prefix: str) -> list[tuple[str, str]]:
    if not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules()):
        return []
    try:
        graph = torch.fx.Tracer().trace(module)
    except Exception:
        # fx fails in many ways on data-dependent Python code (branches on values or
        # shapes, calls it cannot proxy); the children may still trace.
        pairs: list[tuple[str, str]] = []
        for name, child in module.named_children():
            pairs += _foldable_pairs(child, f"{prefix}{name}.")
        return pairs
    pairs = []
    for node in graph.nodes:
        if node.op != "call_module" or len(node.args) != 1 or node.kwargs:
            continue
        source = node.args[0]
        if not isinstance(source, torch.fx.Node) or source.op != "call_module":
            continue
        if len(source.users) != 1:
            continue
        conv = module.get_submodule(str(source.target))
        bn = module.get_submodule(str(node.target))
        if _foldable(conv, bn):
            pairs.append((prefix + str(source.target), prefix + str(node.target)))
    return pairs


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    fits = any(type(conv) is c and type(bn) is b for c, b in _FOLDABLE)
    return (
        fits
        and isinstance(bn, nn.modules.batchnorm._BatchNorm)
        and isinstance(conv, nn.modules.conv._ConvNd)
        and not bn.training
        and bn.running_mean is not None
        and bn.running_var is not None
        and conv.out_channels == bn.num_features
    )


def _set_submodule(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name), child, new)


def _convolutional_names(model: nn.Module) -> set[str]:
    """Names of the submodules (``model`` itself: ``""``) that hold a 2D convolution."""
    return {
        name
        for name, m in model.named_modules()
        if not isinstance(m, nn.Conv2d) and any(isinstance(c, nn.Conv2d) for c in m.modules())
    }


def _outermost(model: nn.Module, names: set[str]) -> list[str]:
    def inside(name: str, other: str) -> bool:
        return other == "" or name.startswith(other + ".")

    return sorted(n for n in names if not any(inside(n, o) for o in names if o != n))


def _networks(model: nn.Module, example_inputs: tuple[Any, ...]) -> dict[str, tuple[Any, ...]]:
    """The outermost convolutional submodules called with one tensor, with that first input."""
    candidates = _convolutional_names(model)
    seen: dict[str, tuple[Any, ...]] = {}
    handles = []

    def recorder(name: str) -> Callable[[nn.Module, tuple[Any, ...], dict[str, Any]], None]:
        def record(_: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            if name not in seen and len(args) == 1 and not kwargs and isinstance(args[0], Tensor):
                seen[name] = (args[0].clone(),)

        return record

    for name in candidates:
        hook = recorder(name)
        handles.append(model.get_submodule(name).register_forward_pre_hook(hook, with_kwargs=True))
    try:
        with torch.inference_mode():
            model(*example_inputs)
    finally:
        for handle in handles:
            handle.remove()
    return {name: seen[name] for name in _outermost(model, set(seen))}


class _ToMemoryFormat:
    """Forward pre-hook: give a network's 4-D tensor input the network's memory layout."""

    def __init__(self, memory_format: torch.memory_format) -> None:
        self.memory_format = memory_format

    def __call__(self, _: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(
            x.contiguous(memory_format=self.memory_format)
            if isinstance(x, Tensor) and x.dim() == 4
            else x
            for x in args
        )


def _set_layout(network: nn.Module, memory_format: torch.memory_format) -> None:
    # torch's stubs omit Module.to's memory_format keyword, which converts 4-D parameters.
    network.to(memory_format=memory_format)  # type: ignore[call-overload]
    for key, hook in list(network._forward_pre_hooks.items()):
        if isinstance(hook, _ToMemoryFormat):
            del network._forward_pre_hooks[key]
    network.register_forward_pre_hook(_ToMemoryFormat(memory_format))


def _faster_layout(network: nn.Module, inputs: tuple[Any, ...], repeats: int) -> str:
    """``"contiguous"`` or ``"channels_last"``, whichever runs ``network(*inputs)`` faster."""
    variants = {}
    for name, memory_format in _FORMATS.items():
        variant = copy.deepcopy(network)
        _set_layout(variant, memory_format)
        variants[name] = variant
    devices = {x.device for x in tree_flatten(inputs)[0] if isinstance(x, Tensor)}
    cuda = any(d.type == "cuda" for d in devices)
    best = dict.fromkeys(variants, float("inf"))
    with torch.inference_mode():
        # One untimed round first (allocations, kernel choice), then interleaved rounds so that
        # a change of machine load hits both layouts alike.
        for round_ in range(repeats + 1):
            for name, variant in variants.items():
                if cuda:
                    torch.cuda.synchronize()
                start = time.perf_counter()
                variant(*inputs)
                if cuda:
                    torch.cuda.synchronize()
                if round_ > 0:
                    best[name] = min(best[name], time.perf_counter() - start)
    return min(best, key=lambda name: best[name])
