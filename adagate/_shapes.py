"""Running a module on fake tensors: the one module of adagate that uses private torch APIs.

A fake tensor (``torch._subclasses.FakeTensorMode``) has a shape, dtype and device but no data,
so running a module on fake copies of its inputs, parameters and buffers gives the shapes of
its outputs and the operators it calls, at no compute cost and without touching the module's
state. A module that needs values (``.item()``, ``nonzero()``, a branch on a tensor) cannot be
run this way: that is the one failure expected here, reported as :class:`NeedsValues`; any
other error is a real error of the module and propagates unchanged.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import Tensor, nn
from torch._subclasses.fake_tensor import (
    DataDependentOutputException,
    DynamicOutputShapeException,
    FakeTensorMode,
    UnsupportedFakeTensorException,
    UnsupportedOperatorException,
)
from torch.func import functional_call
from torch.utils._python_dispatch import _disable_current_modes
from torch.utils._pytree import tree_map_only

# What a fake run raises when the module reads values, or calls an operator that has no
# shape-only implementation: the module is fine, only this way of running it is not.
_VALUE_DEPENDENT = (
    DataDependentOutputException,
    DynamicOutputShapeException,
    UnsupportedFakeTensorException,
    UnsupportedOperatorException,
)


class NeedsValues(RuntimeError):
    """The module cannot run on fake tensors: it reads values, or uses an op with no fake kernel."""


def fake_call(
    module: nn.Module,
    args: tuple[Any, ...],
    kwargs: dict[str, Any] | None = None,
    *,
    inside: AbstractContextManager[Any] | None = None,
) -> Any:
    """``module(*args, **kwargs)`` on fake tensors, under ``no_grad``; returns fake outputs.

    Modes active around the call (e.g. a flop counter) do not see this run, since nothing is
    computed; ``inside`` is a context (e.g. a flop counter) entered within the fake run, to
    observe its operators.
    Parameters and buffers are swapped for fakes, so train-mode BatchNorm updates land on the
    fakes and the module is left untouched; tensors held as plain attributes are faked on use.

    Raises:
        NeedsValues: if the module reads values or uses an operator with no fake kernel.
    """
    try:
        with (
            _disable_current_modes(),
            torch.no_grad(),
            FakeTensorMode(allow_non_fake_inputs=True) as fake,
        ):
            state: dict[str, Tensor] = {
                name: fake.from_tensor(t)
                for name, t in [*module.named_parameters(), *module.named_buffers()]
            }
            fake_args, fake_kwargs = tree_map_only(Tensor, fake.from_tensor, (args, kwargs or {}))
            with inside or nullcontext():
                return functional_call(module, state, fake_args, fake_kwargs)
    except _VALUE_DEPENDENT as error:
        raise NeedsValues(str(error)) from error
