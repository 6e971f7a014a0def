"""Write tests/fixtures/torchvision_keys.json: torchvision's parameter names and shapes.

The tests check that adagate's backbones use exactly these names and shapes, so torchvision
ImageNet checkpoints load key for key, without torchvision installed. adagate never depends on
torchvision; run this script in a separate, throwaway environment:

    python3 -m venv /tmp/tvenv
    /tmp/tvenv/bin/pip install torch torchvision
    /tmp/tvenv/bin/python scripts/make_torchvision_fixture.py

No weights are downloaded (``weights=None``): only the state_dict layout is recorded.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
import torchvision
from torchvision import models

OUTPUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "torchvision_keys.json"
ARCHITECTURES = ("resnet18", "resnet34", "resnet50", "mobilenet_v2")


def main() -> None:
    fixture: dict[str, object] = {
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "num_classes": 1000,
    }
    for name in ARCHITECTURES:
        state = getattr(models, name)(weights=None).state_dict()
        fixture[name] = {key: list(value.shape) for key, value in state.items()}
    # One key per line keeps diffs of the fixture readable.
    text = json.dumps(fixture, indent=1)
    text = re.sub(r"\[[^\[\]]*\]", lambda m: json.dumps(json.loads(m[0])), text)
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text + "\n")
    print(f"wrote {OUTPUT}")


if __name__ == "__main__":
    main()
