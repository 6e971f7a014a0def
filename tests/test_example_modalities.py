"""Tests of examples/adamml/modalities.py: what each modality reads, and its input builder."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "adamml"))

import data as D
from modalities import MODALITIES, STACK, Reads, reads

CONFIG = D.DataConfig.demo()


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        (["rgb"], Reads(frames=1, flow=0, audio=False)),
        (["rgb", "rgbdiff", "audio"], Reads(frames=STACK + 1, flow=0, audio=True)),
        (["flow"], Reads(frames=0, flow=STACK, audio=False)),
        # Flow's policy sees RGB differences: with its policy source, it reads frames too.
        (["flow", "rgbdiff"], Reads(frames=STACK + 1, flow=STACK, audio=False)),
        (["audio", "audio"], Reads(frames=0, flow=0, audio=True)),
    ],
)
def test_reads_is_what_the_inputs_need_together(names: list[str], expected: Reads) -> None:
    assert reads(names) == expected


def test_reads_names_an_unknown_modality() -> None:
    with pytest.raises(ValueError, match=r"modalities: expected distinct names .*'depth'"):
        reads(["rgb", "depth"])


def test_visual_and_frame_folder_only_follow_what_a_modality_reads() -> None:
    assert [m.visual for m in MODALITIES.values()] == [True, True, True, False]
    assert [m.name for m in MODALITIES.values() if m.frame_folder_only] == ["flow"]


def test_each_builder_gives_its_modality_channels_from_decoded_arrays() -> None:
    t, f, size = 2, CONFIG.frames_per_segment, 80
    generator = torch.Generator().manual_seed(0)
    decoded = D.Decoded(
        indices=torch.zeros(t, f, dtype=torch.long), fps=8.0, height=size, width=size,
        frames=torch.randint(0, 256, (t, f, STACK + 1, size, size, 3), dtype=torch.uint8,
                             generator=generator),
        flow_x=torch.full((t, f, STACK, size, size), 128, dtype=torch.uint8),
        flow_y=torch.full((t, f, STACK, size, size), 128, dtype=torch.uint8),
        audio=[np.zeros(round(CONFIG.audio_seconds * CONFIG.sample_rate), np.float32)] * t,
    )  # fmt: skip
    transforms = D.InputTransforms.from_config(CONFIG)
    params = transforms.spatial(size, size, train=False)
    s = CONFIG.crop_size
    for name, modality in MODALITIES.items():
        x = transforms.recognition_input(name, decoded, params)
        if modality.visual:
            assert x.shape == (t, f, modality.channels, s, s), name
        else:
            assert x.shape == (t, modality.channels, CONFIG.n_freq, CONFIG.n_time)
    # RGB reads the sampled frame, the first of each stack.
    rgb = transforms.recognition_input("rgb", decoded, params)
    first = D.Decoded(decoded.indices, 8.0, size, size, frames=decoded.frames[:, :, :1])  # type: ignore[index]
    assert torch.equal(rgb, transforms.recognition_input("rgb", first, params))
