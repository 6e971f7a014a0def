"""What a modality is, in one place: the registry that data, model, training and tools read.

Each entry says how many channels a frame of the recognition input has, which low-resolution
visual input the policy looks at (AdaMML §4.1), and how many consecutive frames are stacked per
sampled frame (supplementary B). Adding a modality is one entry here, one input builder in
``data/dataset.py`` (``INPUT_BUILDERS``) and a backbone choice in ``model.py``.

    >>> from modalities import MODALITIES, parse_modalities, policy_sources
    >>> MODALITIES["flow"].channels, MODALITIES["flow"].policy_key
    (10, 'policy_rgbdiff')
    >>> policy_sources(parse_modalities("rgb,flow,audio"))
    ('rgb', 'rgbdiff')
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

# AdaMML supplementary B: RGBDiff and flow stack 5 consecutive differences / x-y pairs.
STACK = 5


@dataclass(frozen=True)
class Modality:
    """One recognition modality.

    Attributes:
        name: the key of its input in a batch (``rgb``, ``rgbdiff``, ``flow``, ``audio``).
        channels: channels of one frame of the recognition input (flow: 5 x-y pairs = 10).
        policy_source: the visual input the policy sees at low resolution, read from batch key
            ``policy_<source>``; None when the policy reads the recognition input itself
            (audio: the spectrogram, AdaMML §4.1).
        visual: True for frame-based inputs (TSN ResNet), False for the spectrogram.
        stack: consecutive images stacked per sampled frame (RGBDiff: 5 differences of 6
            frames; flow: 5 x-y pairs); 1 for a single frame.
        frame_folder_only: needs precomputed images that only the frame-folder layout has.
    """

    name: str
    channels: int
    policy_source: str | None
    visual: bool = True
    stack: int = 1
    frame_folder_only: bool = False

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
    "rgb": Modality("rgb", channels=3, policy_source="rgb"),
    # The policy sees RGB differences as the cheap proxy for optical flow (AdaMML §4.1).
    "rgbdiff": Modality("rgbdiff", channels=3 * STACK, policy_source="rgbdiff", stack=STACK),
    "flow": Modality("flow", channels=2 * STACK, policy_source="rgbdiff", stack=STACK,
                     frame_folder_only=True),
    "audio": Modality("audio", channels=1, policy_source=None, visual=False),
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
