"""A run directory: its configuration (``config.json``) and its checkpoints, one pair of functions
each, shared by ``train.py``, ``evaluate.py`` and ``predict.py``.

A run directory holds ``config.json`` (:class:`RunConfig`), ``metrics.jsonl``, the stage outputs
(``pretrained.pt``, ``warmup.pt``, ``adamml.pt``, ``nolstm.pt``, ``allmod.pt``), the operating
points chosen on the calibration list (``calibration.json``), and the resume point
``checkpoint.pt`` with the one before it, ``checkpoint.previous.pt``. :func:`load_model` is the
one loader of any of its models.
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
from calibration import Rule
from data import DataConfig
from files import atomic_write, atomic_write_text
from model import PRESETS, AdaMML

CONFIG = "config.json"
CALIBRATION = "calibration.json"
CHECKPOINT = "checkpoint.pt"
PREVIOUS = "checkpoint.previous.pt"


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Everything a run was trained with, resolved from the flags and the preset.

    Attributes:
        preset: name in ``model.PRESETS``.
        modalities: recognition modalities, the order of the M axis.
        data_root: directory the list files' paths are relative to.
        train_list, val_list, calib_list, classes: the list files (training, validation —
            only reported on —, calibration — where checkpoints and operating points are
            chosen) and ``classes.txt``.
        informative: the demo's per-segment sidecar, or None.
        data: input sizes.
        epochs: epochs per stage (``pretrain``, ``warmup``, ``joint``, ``finetune``).
        batch_size: videos per batch and process.
        lr, pretrain_lr, policy_lr: learning rates (recognisers, unimodal pre-training, policy).
        lambdas: cost weight per modality in AdaMML Eq. 4.
        gamma: penalty of a wrong prediction in Eq. 4.
        recovery: weight of :func:`adagate.recovery_loss` in units of ``γ · λ`` (0: off).
        budget_gflops: GFLOPs per video for :class:`adagate.BudgetLoss`, or None for Eq. 4.
        joint_schedule: ``cached`` (the policy on cached dense outputs), ``together`` or
            ``alternate`` (AdaMML §4.1).
        metric: ``top1`` or ``map``, the figure the report's table shows.
        baselines: the no-LSTM and all-modality baselines are trained too.
        seed: seed of everything random.
        world_size: processes that trained.
        weights: where each network's initial weights came from.
        command: the command line.
        noise_floor: joint training's Gumbel noise scale falls linearly from 1 to 0 over the
            stage and is held at this floor (1: the paper's constant noise; runs written
            before the flag existed trained with 1).
        cache_repeats: augmented samples per training video in the cached joint stage.
        policy_restarts: trainings of the policy from new weights in the cached joint stage.
        policy_temperature: divides the fused logits in the cached policy's task loss.
        policy_extractor: the policy's own feature extractors (``mobilenet_v2`` or ``conv``),
            or None for the preset's.
        warmup_gating: the warm-up with every modality on (``all``) or each modality-segment
            on with probability 1/2 (``random``).
        rule: how the operating point is chosen on the calibration list.
        multi_label: the lists have several labels per video (ActivityNet).
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
    calib_list: str = ""
    cache_repeats: int = 4
    policy_restarts: int = 2
    policy_temperature: float = 10.0
    policy_extractor: str | None = None
    warmup_gating: str = "all"
    rule: Rule = dataclasses.field(default_factory=lambda: Rule(budget=0.5))
    multi_label: bool = False


def save_config(run: Path, config: RunConfig) -> None:
    """Write ``run/config.json``."""
    fields = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    fields["data"] = config.data.to_dict()
    fields["modalities"] = list(config.modalities)
    fields["rule"] = dataclasses.asdict(config.rule)
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
        fields["rule"] = Rule(**fields.get("rule", {"budget": 0.5}))
        return RunConfig(**fields)
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(
            f"{path}: expected a configuration written by train.py, got {error!r}"
        ) from None


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file, then rename: a kill never leaves half a file."""
    atomic_write(path, lambda file: torch.save(obj, file))


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


def load_model(
    run: Path, name: str, config: RunConfig, num_classes: int,
    device: str | torch.device = "cpu",
) -> AdaMML:  # fmt: skip
    """One of the run's models, ``run/NAME.pt``, in ``eval()`` on ``device``.

    The one rule for which model is recurrent: ``nolstm`` is the policy without its LSTM,
    every other model has it.

    Raises:
        FileNotFoundError: ``run: ... has no NAME.pt``.
    """
    path = Path(run) / f"{name}.pt"
    if not path.is_file():
        raise FileNotFoundError(f"run: {run} has no {name}.pt; did training finish?")
    model = new_model(config, name, num_classes)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.to(device, memory_format=torch.channels_last).eval()


def new_model(config: RunConfig, name: str, num_classes: int) -> AdaMML:
    """A freshly initialised model of the run's preset; ``nolstm`` has no LSTM."""
    preset = PRESETS[config.preset]
    if config.policy_extractor is not None:
        preset = dataclasses.replace(preset, policy_extractor=config.policy_extractor)
    return AdaMML(config.modalities, num_classes, preset, recurrent=name != "nolstm")


def load_init(model: AdaMML, path: Path, device: str | torch.device = "cpu") -> None:
    """``train.py --init``: a checkpoint file, or a run directory's latest stage output; strict
    keys. Exits with one line naming the file when it cannot be read or does not fit."""
    if path.is_dir():
        found = [path / f"{n}.pt" for n in ("adamml", "warmup", "pretrained")
                 if (path / f"{n}.pt").exists()]  # fmt: skip
        if not found:
            raise SystemExit(f"--init: {path} has no adamml.pt, warmup.pt or pretrained.pt")
        path = found[0]
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except (RuntimeError, OSError, EOFError) as error:
        raise SystemExit(f"--init: cannot read {path}: {error}") from None
    try:
        model.load_state_dict(state.get("model", state))
    except RuntimeError as error:
        raise SystemExit(f"--init: {path} does not fit this model: {error}") from None


def part(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The entries of a state_dict under ``prefix.``, with the prefix removed."""
    return {k[len(prefix) + 1 :]: v for k, v in state.items() if k.startswith(prefix + ".")}


def stage_times(times: dict[str, float], total: float) -> list[dict[str, Any]]:
    """``[{"stage", "seconds", "share"}]`` per stage, the rest of the run as ``other``."""
    rows = [{"stage": k, "seconds": v} for k, v in times.items()]
    rows.append({"stage": "other (set-up, MAC counts, checkpoints)",
                 "seconds": max(0.0, total - sum(times.values()))})  # fmt: skip
    return [row | {"share": row["seconds"] / total} for row in rows]


def stage_time_table(rows: list[dict[str, Any]]) -> str:
    """The per-stage time table in markdown."""
    lines = ["| stage | seconds | share |", "|---|---:|---:|"]
    lines += [f"| {r['stage']} | {r['seconds']:.0f} | {100 * r['share']:.0f} % |" for r in rows]
    total = sum(r["seconds"] for r in rows)
    return "\n".join([*lines, f"| **total** | {total:.0f} | 100 % |"])
