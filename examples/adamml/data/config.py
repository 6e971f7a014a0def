"""The sizes of every input: :class:`DataConfig` and its two presets, ``paper`` and ``demo``."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import modalities as registry

from .transforms import IMAGENET_MEAN, IMAGENET_STD


@dataclass(frozen=True)
class DataConfig:
    """Sizes of every input; :meth:`paper` and :meth:`demo` are the two presets.

    Which low-resolution inputs the policy sees follows from ``modalities`` through the
    modality registry (:attr:`policy_sources`, AdaMML §4.1).

    Attributes:
        modalities: recognition inputs, names from ``modalities.MODALITIES``.
        num_segments: T while training (paper: 5).
        test_segments: T at test (paper: 10).
        frames_per_segment: F frames per segment (paper: 8).
        frame_stride: distance between sampled frames (paper: 4, i.e. 8 of 32 frames).
        policy_frames: frames per segment for the policy, taken evenly from the F (paper: 4).
        crop_size: recognition crop (paper: 224).
        policy_size: policy resolution (paper: 160).
        resize_range: training short side drawn from ``[low, high)`` (paper: 256-320).
        test_resize: short side at test before the centre crop (paper: 256).
        sample_rate: audio rate after resampling (paper: 24 kHz).
        audio_seconds: spectrogram window centred on the segment (paper: 1.28 s).
        stft_window_ms: STFT window (paper: 10 ms).
        stft_hop_ms: STFT hop (paper: 5 ms).
        n_freq: frequency bins; ``n_fft = 2 * (n_freq - 1)`` (paper: 256 -> n_fft 510).
        frame_folder_fps: frame rate of a frame folder without ``meta.json``.
        mean: per-channel RGB mean of the normalisation (ImageNet).
        std: per-channel RGB standard deviation of the normalisation (ImageNet).

    Raises:
        ValueError: an unknown modality or sizes that do not fit together; the message names
            the field.
    """

    modalities: tuple[str, ...] = ("rgb", "audio")
    num_segments: int = 5
    test_segments: int = 10
    frames_per_segment: int = 8
    frame_stride: int = 4
    policy_frames: int = 4
    crop_size: int = 224
    policy_size: int = 160
    resize_range: tuple[int, int] = (256, 320)
    test_resize: int = 256
    sample_rate: int = 24000
    audio_seconds: float = 1.28
    stft_window_ms: float = 10.0
    stft_hop_ms: float = 5.0
    n_freq: int = 256
    frame_folder_fps: float = 30.0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    def __post_init__(self) -> None:
        registry.parse_modalities(self.modalities)
        if not 0 < self.policy_frames <= self.frames_per_segment:
            raise ValueError(
                f"policy_frames: expected 1 to frames_per_segment={self.frames_per_segment}, "
                f"got {self.policy_frames}"
            )
        low, high = self.resize_range
        if not self.crop_size <= low <= high or self.test_resize < self.crop_size:
            raise ValueError(
                f"resize_range, test_resize: expected crop_size={self.crop_size} <= low <= high "
                f"and test_resize >= crop_size, got {self.resize_range} and {self.test_resize}"
            )
        if self.stft_win_length > self.n_fft:
            raise ValueError(
                f"stft_window_ms: expected a window of at most n_fft={self.n_fft} samples "
                f"(n_freq={self.n_freq}), got {self.stft_window_ms} ms = "
                f"{self.stft_win_length} samples at {self.sample_rate} Hz"
            )

    @classmethod
    def paper(cls, **overrides: Any) -> DataConfig:
        """Inputs of AdaMML §4.1: 8×224² RGB, 4×160² policy frames, 256×256 spectrogram."""
        return replace(cls(), **overrides)

    @classmethod
    def demo(cls, **overrides: Any) -> DataConfig:
        """Small inputs for the generated demo set, sized for CPU training in minutes.

        4 frames with stride 2 (1 s at the demo's 8 fps) cropped to 64², 2 policy frames at
        48², and a 64×64 spectrogram of 1.28 s at 4 kHz (30 ms window, 20 ms hop); T = 5
        segments in training and the paper's 10 at test.
        """
        demo = cls(
            frames_per_segment=4,
            frame_stride=2,
            policy_frames=2,
            crop_size=64,
            policy_size=48,
            resize_range=(64, 80),
            test_resize=64,
            sample_rate=4000,
            stft_window_ms=30.0,
            stft_hop_ms=20.0,
            n_freq=64,
        )
        return replace(demo, **overrides)

    def to_dict(self) -> dict[str, Any]:
        """Every field, ready for ``json.dumps`` (tuples are written as lists)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DataConfig:
        """The config :meth:`to_dict` wrote, with its lists restored to tuples.

        Raises:
            ValueError: ``values`` holds a key that is not a field.
        """
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"values: expected fields of DataConfig, got unknown keys {unknown}")
        restored: dict[str, Any] = {
            k: tuple(v) if isinstance(v, list) else v for k, v in values.items()
        }
        return cls(**restored)

    @property
    def policy_sources(self) -> tuple[str, ...]:
        """Visual inputs the policy sees at low resolution, as batch keys ``policy_<source>``."""
        return registry.policy_sources(self.modalities)

    @property
    def n_fft(self) -> int:
        return 2 * (self.n_freq - 1)

    @property
    def stft_win_length(self) -> int:
        return round(self.sample_rate * self.stft_window_ms / 1000)

    @property
    def stft_hop_length(self) -> int:
        return round(self.sample_rate * self.stft_hop_ms / 1000)

    @property
    def n_time(self) -> int:
        """Spectrogram time frames: ``audio_seconds / hop`` (paper: 1.28 s / 5 ms = 256)."""
        return round(self.audio_seconds * 1000 / self.stft_hop_ms)

    @property
    def span(self) -> int:
        """Frames one segment covers, including those RGBDiff/flow stack after the last one."""
        inputs = self.modalities + self.policy_sources
        after = max(registry.MODALITIES[m].frames_after for m in inputs)
        return (self.frames_per_segment - 1) * self.frame_stride + 1 + after
