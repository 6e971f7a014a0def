"""What a modality is, in one place: the registry that data, model, training and tools read.

Each entry says what the modality reads from a video (RGB frames, flow images or the audio
track), how many channels a frame of its recognition input has, how that input is built from
the decoded arrays, which low-resolution visual input the policy looks at (AdaMML §4.1), and
how many consecutive frames are stacked per sampled frame (supplementary B). Adding a modality
is one entry here and a backbone choice in ``model.py``.

    >>> from modalities import MODALITIES, parse_modalities, policy_sources, reads
    >>> MODALITIES["flow"].channels, MODALITIES["flow"].policy_key
    (10, 'policy_rgbdiff')
    >>> policy_sources(parse_modalities("rgb,flow,audio"))
    ('rgb', 'rgbdiff')
    >>> reads(["rgbdiff", "audio"])
    Reads(frames=6, flow=0, audio=True)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import torch

if TYPE_CHECKING:
    from data import Decoded, InputTransforms, SpatialParams

# AdaMML supplementary B: RGBDiff and flow stack 5 consecutive differences / x-y pairs.
STACK = 5

Stream = Literal["frames", "flow", "audio"]
Builder = Callable[["Decoded", "InputTransforms", "SpatialParams"], torch.Tensor]


def _rgb(decoded: Decoded, transforms: InputTransforms, params: SpatialParams) -> torch.Tensor:
    """``(T, F, 3, S, S)`` from the sampled frames, ``decoded.frames[:, :, 0]``."""
    assert decoded.frames is not None
    return transforms.rgb(decoded.frames[:, :, 0], params)


def _rgbdiff(decoded: Decoded, transforms: InputTransforms, params: SpatialParams) -> torch.Tensor:
    """``(T, F, 3 * STACK, S, S)`` from each sampled frame and the ``STACK`` after it."""
    assert decoded.frames is not None
    return transforms.rgbdiff(decoded.frames, params)


def _flow(decoded: Decoded, transforms: InputTransforms, params: SpatialParams) -> torch.Tensor:
    """``(T, F, 2 * STACK, S, S)`` from the ``STACK`` x and y flow images per sampled frame."""
    assert decoded.flow_x is not None and decoded.flow_y is not None
    return transforms.flow(decoded.flow_x, decoded.flow_y, params)


def _spectrogram(decoded: Decoded, transforms: InputTransforms, _: SpatialParams) -> torch.Tensor:
    """``(T, 1, n_freq, n_time)`` log-spectrograms of the segments' audio windows."""
    assert decoded.audio is not None
    return torch.stack([transforms.spectrogram(torch.from_numpy(w)) for w in decoded.audio])


@dataclass(frozen=True)
class Modality:
    """One recognition modality.

    Attributes:
        name: the key of its input in a batch (``rgb``, ``rgbdiff``, ``flow``, ``audio``).
        channels: channels of one frame of the recognition input (flow: 5 x-y pairs = 10).
        policy_source: the visual input the policy sees at low resolution, read from batch key
            ``policy_<source>``; None when the policy reads the recognition input itself
            (audio: the spectrogram, AdaMML §4.1).
        stream: what it reads from a video: ``frames`` (RGB), ``flow`` (precomputed images,
            frame folders only) or ``audio`` (the track, one window per segment).
        build: its recognition input from a :class:`data.Decoded` clip of T segments,
            ``(decoded, transforms, params) -> (T, ...)``.
        stack: consecutive images stacked per sampled frame (RGBDiff: 5 differences of 6
            frames; flow: 5 x-y pairs); 1 for a single frame.
    """

    name: str
    channels: int
    policy_source: str | None
    stream: Stream
    build: Builder
    stack: int = 1

    @property
    def visual(self) -> bool:
        """Frame-based (a TSN ResNet's input), not the spectrogram."""
        return self.stream != "audio"

    @property
    def frame_folder_only(self) -> bool:
        """Needs precomputed images that only the frame-folder layout has (flow)."""
        return self.stream == "flow"

    @property
    def frames_after(self) -> int:
        """Frames past a sampled frame that its input reads (RGBDiff, flow: ``stack``; else 0).

        ``stack`` differences need the ``stack`` frames after the sampled one, and flow image
        ``i`` holds the motion from frame ``i`` to ``i + 1``, so ``stack`` pairs reach as far.
        """
        return self.stack if self.stack > 1 else 0

    @property
    def policy_key(self) -> str:
        """The batch key the policy reads for this modality."""
        return self.name if self.policy_source is None else f"policy_{self.policy_source}"


MODALITIES: dict[str, Modality] = {
    "rgb": Modality("rgb", channels=3, policy_source="rgb", stream="frames", build=_rgb),
    "rgbdiff": Modality(
        "rgbdiff", 3 * STACK, policy_source="rgbdiff", stream="frames", build=_rgbdiff, stack=STACK
    ),
    # The policy sees RGB differences as the cheap proxy for optical flow (AdaMML §4.1).
    "flow": Modality(
        "flow", 2 * STACK, policy_source="rgbdiff", stream="flow", build=_flow, stack=STACK
    ),
    "audio": Modality("audio", channels=1, policy_source=None, stream="audio", build=_spectrogram),
}


def parse_modalities(text: str | Iterable[str]) -> tuple[str, ...]:
    """Modality names from ``"rgb,audio"`` or a sequence, checked against :data:`MODALITIES`.

    Raises:
        ValueError: ``modalities: expected distinct names from [...], got [...]``.
    """
    names = text.split(",") if isinstance(text, str) else list(text)
    names = [n.strip() for n in names if n.strip()]
    if not names or len(set(names)) != len(names) or any(n not in MODALITIES for n in names):
        raise ValueError(
            f"modalities: expected distinct names from {list(MODALITIES)}, got {names}"
        )
    return tuple(names)


def policy_sources(modalities: Sequence[str]) -> tuple[str, ...]:
    """The visual inputs the policy needs for ``modalities``, in order, without repeats."""
    sources = (MODALITIES[m].policy_source for m in modalities)
    return tuple(dict.fromkeys(s for s in sources if s is not None))


@dataclass(frozen=True)
class Reads:
    """What a set of inputs reads from a video, per sampled frame of each segment.

    Attributes:
        frames: consecutive RGB frames from each sampled frame (RGBDiff: 6); 0 for none.
        flow: consecutive flow images from each sampled frame (flow: 5); 0 for none.
        audio: one audio window per segment.
    """

    frames: int
    flow: int
    audio: bool


def reads(names: Iterable[str]) -> Reads:
    """What the inputs ``names`` (modalities and policy sources) read together.

    Raises:
        ValueError: a name that is not in :data:`MODALITIES`.
    """
    inputs = [MODALITIES[m] for m in parse_modalities(list(dict.fromkeys(names)))]
    frames = [1 + m.frames_after for m in inputs if m.stream == "frames"]
    return Reads(
        frames=max(frames, default=0),
        flow=max((m.stack for m in inputs if m.stream == "flow"), default=0),
        audio=any(m.stream == "audio" for m in inputs),
    )
