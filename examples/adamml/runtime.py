"""Where a run executes: device, processes (torchrun), mixed precision and random state.

torchrun sets ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK`` (nanoGPT-style detection); on CUDA the
forward passes run under bf16 autocast (fp16 with a grad scaler where bf16 is missing). The
gates draw their noise from one ``torch.Generator`` (``Runtime.gates``) so that a resumed run
restores it with the other random states.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import runs
import torch
import torch.distributed as dist
from model import AdaMML
from torch import nn
from tqdm import tqdm


@dataclass
class Runtime:
    """The process's device and random state.

    Attributes:
        device: where the networks run.
        rank, world: this process and the number of processes.
        autocast: a context manager for the forward passes (mixed precision on CUDA).
        scaler: the fp16 gradient scaler (disabled unless fp16 autocast).
        compile: ``torch.compile`` the networks.
        gates: the generator of the gates' noise.
    """

    device: torch.device
    rank: int
    world: int
    autocast: Callable[[], AbstractContextManager[Any]]
    scaler: torch.amp.GradScaler
    compile: bool
    gates: torch.Generator

    @property
    def distributed(self) -> bool:
        return self.world > 1 or dist.is_initialized()

    @property
    def master(self) -> bool:
        return self.rank == 0

    def log(self, message: str) -> None:
        """Print on rank 0 without breaking a progress bar."""
        if self.master:
            tqdm.write(message)


def start(device_name: str, seed: int, amp: bool = True, compile: bool = False) -> Runtime:
    """Pick the device (``auto``: CUDA when present), join torchrun's process group, seed.

    Args:
        device_name: ``cpu``, ``cuda``, ``cuda:1`` or ``auto``.
        seed: every process seeds with ``seed + rank``.
        amp: mixed precision on CUDA.
        compile: ``torch.compile`` the networks.
    """
    if device_name == "auto":
        device_name = "cuda" if torch.cuda.is_available() else "cpu"
    rank, world = 0, 1
    if int(os.environ.get("RANK", -1)) != -1:
        dist.init_process_group("nccl" if device_name.startswith("cuda") else "gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
        if device_name.startswith("cuda"):
            device_name = f"cuda:{int(os.environ['LOCAL_RANK'])}"
            torch.cuda.set_device(device_name)
    device = torch.device(device_name)
    cuda = device.type == "cuda"
    amp_dtype = torch.bfloat16 if cuda and torch.cuda.is_bf16_supported() else torch.float16
    use_amp = cuda and amp
    if cuda:
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    seed_everything(seed + rank)
    return Runtime(
        device, rank, world,
        lambda: torch.autocast("cuda", dtype=amp_dtype) if use_amp else nullcontext(),
        torch.amp.GradScaler("cuda", enabled=use_amp and amp_dtype == torch.float16),
        compile, torch.Generator(device).manual_seed(seed + rank),
    )  # fmt: skip


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state(gates: torch.Generator) -> dict[str, Any]:
    """Every RNG the run draws from, in a form ``torch.load(weights_only=True)`` accepts."""
    version, keys, gauss = random.getstate()
    kind, np_keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": [version, list(keys), gauss],
        "numpy": [kind, torch.from_numpy(np_keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
        "gates": gates.get_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any], gates: torch.Generator) -> None:
    """Put back what :func:`rng_state` saved."""
    version, keys, gauss = state["python"]
    random.setstate((version, tuple(keys), gauss))
    kind, np_keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np_keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"].cpu())
    gates.set_state(state["gates"].cpu())
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def build(config: runs.RunConfig, num_classes: int, rt: Runtime, name: str = "adamml") -> AdaMML:
    """The model on its device; SyncBatchNorm under torchrun on CUDA (gloo has none)."""
    net = runs.new_model(config, name, num_classes)
    if rt.distributed and rt.device.type == "cuda":
        net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
    net = net.to(rt.device, memory_format=torch.channels_last)
    if rt.compile:
        for module in [*net.recognisers.values(), *net.policy_features.values()]:
            module.compile(dynamic=True)
    return net
