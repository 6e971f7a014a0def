"""A run directory: its configuration (``config.json``) and its checkpoints, one pair of functions
each, shared by ``train.py``, ``evaluate.py`` and ``predict.py``.

A run directory holds ``config.json`` (:class:`RunConfig`), ``metrics.jsonl``, the stage outputs
(``pretrained.pt``, ``warmup.pt``, ``adamml.pt``, ``nolstm.pt``, ``allmod.pt``), and the
resume point ``checkpoint.pt`` with the one before it, ``checkpoint.previous.pt``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pickle
import warnings
from pathlib import Path
from typing import Any

import torch
from data import DataConfig

CONFIG = "config.json"
CHECKPOINT = "checkpoint.pt"
PREVIOUS = "checkpoint.previous.pt"


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything a run was trained with, resolved from the flags and the preset.

    Attributes:
        preset: name in ``model.PRESETS``.
        modalities: recognition modalities, the order of the M axis.
        data_root: directory the list files' paths are relative to.
        train_list, val_list, classes: the list files and ``classes.txt``.
        informative: the demo's per-segment sidecar, or None.
        data: input sizes.
        epochs: epochs per stage (``pretrain``, ``warmup``, ``joint``, ``finetune``).
        batch_size: videos per batch and process.
        lr, pretrain_lr, policy_lr: learning rates (recognisers, unimodal pre-training, policy).
        lambdas: cost weight per modality in AdaMML Eq. 4.
        gamma: penalty of a wrong prediction in Eq. 4.
        recovery: weight of :func:`adagate.recovery_loss` in units of ``γ · λ`` (0: off).
        budget_gflops: GFLOPs per video for :class:`adagate.BudgetLoss`, or None for Eq. 4.
        joint_schedule: ``together`` or ``alternate`` (AdaMML §4.1).
        metric: ``top1`` or ``map``, the figure the report's table shows.
        baselines: the no-LSTM and all-modality baselines are trained too.
        seed: seed of everything random.
        world_size: processes that trained.
        weights: where each network's initial weights came from.
        command: the command line.
        noise_floor: joint training's Gumbel noise scale falls linearly from 1 to 0 over the
            stage and is held at this floor (1: the paper's constant noise; runs written
            before the flag existed trained with 1).
    """

    preset: str
    modalities: tuple[str, ...]
    data_root: str
    train_list: str
    val_list: str
    classes: str
    informative: str | None
    data: DataConfig
    epochs: dict[str, int]
    batch_size: int
    lr: float
    pretrain_lr: float
    policy_lr: float
    lambdas: dict[str, float]
    gamma: float
    recovery: float
    budget_gflops: float | None
    joint_schedule: str
    metric: str
    baselines: bool
    seed: int
    world_size: int
    weights: dict[str, str]
    command: str
    noise_floor: float = 1.0


def save_config(run: Path, config: RunConfig) -> None:
    """Write ``run/config.json``."""
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    fields["data"] = config.data.to_dict()
    fields["modalities"] = list(config.modalities)
    atomic_write_text(run / CONFIG, json.dumps(fields, indent=1))


def load_config(run: Path) -> RunConfig:
    """Read ``run/config.json``.

    Raises:
        FileNotFoundError: ``run: expected a run directory with config.json, got ...``.
        ValueError: the file is not a configuration this version wrote.
    """
    path = Path(run) / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"run: expected a run directory with {CONFIG}, got {run}")
    try:
        fields = json.loads(path.read_text())
        fields["data"] = DataConfig.from_dict(fields["data"])
        fields["modalities"] = tuple(fields["modalities"])
        return RunConfig(**fields)
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(
            f"{path}: expected a configuration written by train.py, got {error!r}"
        ) from None


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temporary file, then rename: a kill never leaves half a file."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file, then rename: a kill never leaves half a file."""
    temporary = path.with_name(path.name + ".tmp")
    torch.save(obj, temporary)
    os.replace(temporary, path)


def save_checkpoint(run: Path, state: dict[str, Any]) -> None:
    """Write the resume point, keeping the one before it as ``checkpoint.previous.pt``."""
    current = run / CHECKPOINT
    if current.exists():
        os.replace(current, run / PREVIOUS)
    atomic_save(state, current)


def load_checkpoint(run: Path, map_location: str | torch.device = "cpu") -> dict[str, Any] | None:
    """The latest readable resume point of ``run``, or None when there is none.

    A damaged ``checkpoint.pt`` (a disk filled up, a file copied half-way) is reported in a
    warning and the previous one is used; the run then repeats the epoch in between.

    Raises:
        ValueError: both checkpoints exist and neither can be read.
    """
    errors = []
    for name in (CHECKPOINT, PREVIOUS):
        path = run / name
        if not path.exists():
            continue
        try:
            state: dict[str, Any] = torch.load(path, map_location=map_location, weights_only=True)
            return state
        except (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError) as error:
            reason = str(error).strip().splitlines()[0]
            errors.append(f"{path}: {reason}")
            warnings.warn(f"cannot read {path} ({reason}); trying the previous checkpoint",
                          stacklevel=2)  # fmt: skip
    if errors:
        raise ValueError("resume: no readable checkpoint; " + "; ".join(errors))
    return None
