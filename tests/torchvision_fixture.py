"""Random state dicts under torchvision's exact keys and shapes, for the weight-loading tests."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from torch import Tensor

# Written by scripts/make_torchvision_fixture.py from torchvision's own models.
FIXTURE = json.loads((Path(__file__).parent / "fixtures" / "torchvision_keys.json").read_text())


def torchvision_like_state_dict(arch: str, seed: int = 0) -> dict[str, Tensor]:
    """A random state_dict with exactly torchvision's keys and shapes for ``arch``."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in FIXTURE[arch].items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=generator) + 0.5
        else:
            state[key] = torch.randn(shape, generator=generator) * 0.1
    return state
