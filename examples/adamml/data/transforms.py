"""Per-modality transforms: plain functions and small callables that bind their arguments.

As in ``torch.nn.functional`` / ``torch.nn`` and pytorchvideo, each transform is a function
with plain arguments (:func:`rgb_input`, :func:`log_spectrogram`, ...) and a frozen callable
that holds them (:class:`RGBInput`, :class:`LogSpectrogram`, ...), usable on any tensors
without a ``DataConfig``:

    >>> import torch
    >>> frames = torch.zeros(2, 4, 80, 96, 3, dtype=torch.uint8)      # (T, F, H, W, 3)
    >>> params = SpatialSampler(crop_size=64, resize_range=(64, 80), test_resize=64)(
    ...     80, 96, train=False)
    >>> RGBInput()(frames, params).shape
    torch.Size([2, 4, 3, 64, 64])
    >>> LogSpectrogram(n_fft=126, win_length=120, hop_length=80, n_time=64)(
    ...     torch.zeros(5120)).shape
    torch.Size([1, 64, 64])

One spatial draw (:class:`SpatialParams`) is shared by every frame and visual modality of an
item, so RGB, RGBDiff and flow see the same crop. :class:`InputTransforms` binds every
transform to a ``DataConfig`` and builds a modality's inputs from decoded arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from modalities import MODALITIES, STACK

if TYPE_CHECKING:
    from .config import DataConfig
    from .sources import Decoded

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Reference layout: TV-L1 flow clipped to [-20, 20] px and stored as 0-255 JPEG.
FLOW_BOUND = 20.0


# ------------------------------------------------------------------------------------ spatial
@dataclass(frozen=True)
class SpatialParams:
    """One draw of the spatial augmentation, shared by every frame and modality of an item.

    Attributes:
        short_side: the frame's short side is resized to this.
        top: crop offset after resizing.
        left: crop offset after resizing.
        size: crop size.
        flip: mirror horizontally.
    """

    short_side: int
    top: int
    left: int
    size: int
    flip: bool


def sample_spatial(
    height: int,
    width: int,
    *,
    crop_size: int,
    resize_range: tuple[int, int],
    test_resize: int,
    train: bool,
    generator: torch.Generator | None = None,
) -> SpatialParams:
    """Random short-side resize in ``resize_range``, random crop and flip; centre crop at test.

    Args:
        height: source frame height.
        width: source frame width.
        crop_size: side of the square crop.
        resize_range: training short side drawn from ``[low, high)``.
        test_resize: short side at test.
        train: random (True) or centred (False).
        generator: randomness.

    Returns:
        The parameters for :func:`apply_spatial`.
    """
    if train:
        low, high = resize_range
        short = int(torch.randint(low, max(high, low + 1), (1,), generator=generator))
    else:
        short = test_resize
    new_h, new_w = _scaled_size(height, width, short)
    if train:
        top = int(torch.randint(0, new_h - crop_size + 1, (1,), generator=generator))
        left = int(torch.randint(0, new_w - crop_size + 1, (1,), generator=generator))
        flip = bool(torch.rand((), generator=generator) < 0.5)
    else:
        top, left, flip = (new_h - crop_size) // 2, (new_w - crop_size) // 2, False
    return SpatialParams(short, top, left, crop_size, flip)


@dataclass(frozen=True)
class SpatialSampler:
    """:func:`sample_spatial` with its sizes bound: ``(height, width, train=...) -> params``."""

    crop_size: int
    resize_range: tuple[int, int]
    test_resize: int

    def __call__(
        self, height: int, width: int, *, train: bool, generator: torch.Generator | None = None
    ) -> SpatialParams:
        return sample_spatial(
            height, width, crop_size=self.crop_size, resize_range=self.resize_range,
            test_resize=self.test_resize, train=train, generator=generator,
        )  # fmt: skip


def _scaled_size(height: int, width: int, short_side: int) -> tuple[int, int]:
    scale = short_side / min(height, width)
    return max(short_side, round(height * scale)), max(short_side, round(width * scale))


def apply_spatial(frames: torch.Tensor, params: SpatialParams) -> torch.Tensor:
    """Resize, crop and flip frames.

    Args:
        frames: (N, C, H, W) float.
        params: from :func:`sample_spatial`.

    Returns:
        (N, C, size, size).

    Raises:
        ValueError: ``frames`` is not 4-D.
    """
    if frames.dim() != 4:
        raise ValueError(f"frames: expected (N, C, H, W), got shape {tuple(frames.shape)}")
    new_h, new_w = _scaled_size(frames.shape[-2], frames.shape[-1], params.short_side)
    if (new_h, new_w) != tuple(frames.shape[-2:]):
        frames = F.interpolate(
            frames, size=(new_h, new_w), mode="bilinear", align_corners=False, antialias=True
        )
    rows = slice(params.top, params.top + params.size)
    cols = slice(params.left, params.left + params.size)
    frames = frames[..., rows, cols]
    return frames.flip(-1) if params.flip else frames


def normalize(
    frames: torch.Tensor, mean: tuple[float, ...], std: tuple[float, ...]
) -> torch.Tensor:
    """``(frames - mean) / std`` per channel; frames: (N, C, H, W), mean and std: C values."""
    return (frames - torch.tensor(mean).view(-1, 1, 1)) / torch.tensor(std).view(-1, 1, 1)


def _to_float(frames: torch.Tensor) -> torch.Tensor:
    """(..., H, W, 3) uint8 -> (N, 3, H, W) float in [0, 1]."""
    return frames.reshape(-1, *frames.shape[-3:]).permute(0, 3, 1, 2).float() / 255


# ---------------------------------------------------------------------------- visual inputs
def rgb_input(
    frames: torch.Tensor,
    params: SpatialParams,
    *,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
) -> torch.Tensor:
    """RGB input: resize/crop/flip, then mean/std normalisation.

    Args:
        frames: (T, F, H, W, 3) uint8.
        params: spatial augmentation.
        mean: per-channel mean of frames scaled to [0, 1].
        std: per-channel standard deviation.

    Returns:
        (T, F, 3, S, S) float.

    Raises:
        ValueError: ``frames`` is not (T, F, H, W, 3).
    """
    if frames.dim() != 5 or frames.shape[-1] != 3:
        raise ValueError(f"frames: expected (T, F, H, W, 3), got shape {tuple(frames.shape)}")
    out = normalize(apply_spatial(_to_float(frames), params), mean, std)
    return out.reshape(*frames.shape[:2], *out.shape[1:])


@dataclass(frozen=True)
class RGBInput:
    """:func:`rgb_input` with mean and std bound: ``(frames, params) -> (T, F, 3, S, S)``."""

    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    def __call__(self, frames: torch.Tensor, params: SpatialParams) -> torch.Tensor:
        return rgb_input(frames, params, mean=self.mean, std=self.std)


def rgbdiff_input(
    frames: torch.Tensor,
    params: SpatialParams,
    *,
    mean: tuple[float, ...] = IMAGENET_MEAN,
    std: tuple[float, ...] = IMAGENET_STD,
    stack: int = STACK,
) -> torch.Tensor:
    """RGB difference: ``stack`` differences of consecutive frames stacked as channels.

    For sampled frame ``f`` the channels are ``[x(f+1)-x(f), x(f+2)-x(f+1), ...]``, each an
    RGB triple (AdaMML supplementary B, following TSN). Differences are taken of normalised
    frames, so they are on the RGB input's scale; a flip mirrors them, signs are unchanged.

    Args:
        frames: (T, F, stack + 1, H, W, 3) uint8 — each sampled frame and the ones after it.
        params: spatial augmentation.
        mean: per-channel mean of frames scaled to [0, 1].
        std: per-channel standard deviation.
        stack: differences per sampled frame (paper: 5).

    Returns:
        (T, F, 3 * stack, S, S) float.

    Raises:
        ValueError: ``frames`` is not (T, F, stack + 1, H, W, 3).
    """
    if frames.dim() != 6 or frames.shape[2] != stack + 1 or frames.shape[-1] != 3:
        raise ValueError(
            f"frames: expected (T, F, {stack + 1}, H, W, 3), got shape {tuple(frames.shape)}"
        )
    out = normalize(apply_spatial(_to_float(frames), params), mean, std)
    out = out.reshape(*frames.shape[:3], *out.shape[1:])
    diff = out[:, :, 1:] - out[:, :, :-1]
    return diff.flatten(2, 3)


@dataclass(frozen=True)
class RGBDiffInput:
    """:func:`rgbdiff_input` with its arguments bound: ``(frames, params) -> (T, F, 15, S, S)``."""

    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    stack: int = STACK

    def __call__(self, frames: torch.Tensor, params: SpatialParams) -> torch.Tensor:
        return rgbdiff_input(frames, params, mean=self.mean, std=self.std, stack=self.stack)


def flow_input(
    flow_x: torch.Tensor, flow_y: torch.Tensor, params: SpatialParams, *, stack: int = STACK
) -> torch.Tensor:
    """Optical flow: ``stack`` x/y pairs interleaved as channels ``[x0, y0, x1, y1, ...]``.

    JPEG values 0-255 map linearly to [-1, 1] (i.e. [-FLOW_BOUND, FLOW_BOUND] px / FLOW_BOUND).
    A horizontal flip mirrors the image and negates x, since motion to the right becomes
    motion to the left.

    Args:
        flow_x: (T, F, stack, H, W) uint8 horizontal flow.
        flow_y: (T, F, stack, H, W) uint8 vertical flow.
        params: spatial augmentation.
        stack: flow pairs per sampled frame (paper: 5).

    Returns:
        (T, F, 2 * stack, S, S) float.

    Raises:
        ValueError: shapes differ or are not (T, F, stack, H, W).
    """
    if flow_x.shape != flow_y.shape or flow_x.dim() != 5 or flow_x.shape[2] != stack:
        raise ValueError(
            f"flow_x, flow_y: expected equal shapes (T, F, {stack}, H, W), got "
            f"{tuple(flow_x.shape)} and {tuple(flow_y.shape)}"
        )
    pairs = torch.stack([flow_x, flow_y], dim=3).float() / 127.5 - 1
    lead = pairs.shape[:4]
    out = apply_spatial(pairs.reshape(-1, 1, *pairs.shape[-2:]), params)
    out = out.reshape(*lead, *out.shape[-2:])
    if params.flip:
        out = out.clone()
        out[:, :, :, 0] = -out[:, :, :, 0]
    return out.flatten(2, 3)


@dataclass(frozen=True)
class FlowInput:
    """:func:`flow_input` with ``stack`` bound: ``(flow_x, flow_y, params) -> (T, F, 10, S, S)``."""

    stack: int = STACK

    def __call__(
        self, flow_x: torch.Tensor, flow_y: torch.Tensor, params: SpatialParams
    ) -> torch.Tensor:
        return flow_input(flow_x, flow_y, params, stack=self.stack)


def policy_input(recognition: torch.Tensor, frames: int, size: int) -> torch.Tensor:
    """Policy input from a recognition input: ``frames`` evenly spaced frames at ``size``².

    AdaMML §4.1: the policy sees the same segment subsampled in time and space
    (8×224² -> 4×160²).

    Args:
        recognition: (T, F, C, S, S).
        frames: frames to keep, taken evenly from F.
        size: output resolution.

    Returns:
        (T, frames, C, size, size).

    Raises:
        ValueError: ``recognition`` is not 5-D or ``frames`` exceeds F.
    """
    if recognition.dim() != 5 or not 0 < frames <= recognition.shape[1]:
        raise ValueError(
            f"recognition: expected (T, F, C, S, S) with F >= frames={frames}, got shape "
            f"{tuple(recognition.shape)}"
        )
    picked = recognition[:, policy_rows(recognition.shape[1], frames)]
    out = F.interpolate(
        picked.flatten(0, 1),
        size=(size, size),
        mode="bilinear",
        align_corners=False,
        antialias=True,
    )
    return out.reshape(*picked.shape[:3], size, size)


def policy_rows(frames_per_segment: int, frames: int) -> list[int]:
    """Which of the F sampled frames of a segment the policy sees: ``frames`` evenly spaced."""
    return torch.linspace(0, frames_per_segment - 1, frames).round().long().tolist()


@dataclass(frozen=True)
class PolicyInput:
    """:func:`policy_input` with its sizes bound: ``(T, F, C, S, S) -> (T, frames, C, P, P)``."""

    frames: int
    size: int

    def __call__(self, recognition: torch.Tensor) -> torch.Tensor:
        return policy_input(recognition, self.frames, self.size)


# ------------------------------------------------------------------------------------- audio
def log_spectrogram(
    waveform: torch.Tensor, *, n_fft: int, win_length: int, hop_length: int, n_time: int
) -> torch.Tensor:
    """Log-power spectrogram ``log(|S|² + 1e-6)`` with ``torch.stft`` (AdaMML supplementary B).

    Paper settings: 24 kHz, 10 ms Hann window (``win_length`` 240 samples) zero-padded to
    ``n_fft = 510`` so that there are 256 bins (bin ``k`` is ``k * sample_rate / n_fft`` Hz),
    5 ms hop (120 samples), ``center=True``; 1.28 s gives 257 frames, the last is dropped, so
    ``n_time = 256``.

    Args:
        waveform: (N,) mono samples, N = ``n_time * hop_length``.
        n_fft: FFT size; ``n_fft // 2 + 1`` frequency bins.
        win_length: Hann window length in samples (at most ``n_fft``).
        hop_length: hop in samples.
        n_time: time frames kept (zero power appended when the waveform is short).

    Returns:
        (1, n_fft // 2 + 1, n_time) float: frequency on dim 1 (low to high), time on dim 2.

    Raises:
        ValueError: ``waveform`` is not 1-D.
    """
    if waveform.dim() != 1:
        raise ValueError(f"waveform: expected (N,), got shape {tuple(waveform.shape)}")
    window = torch.hann_window(win_length, dtype=waveform.dtype)
    spec = torch.stft(
        waveform,
        n_fft=n_fft,
        hop_length=hop_length,
        win_length=win_length,
        window=window,
        center=True,
        pad_mode="constant",
        return_complex=True,
    )
    power = spec.abs().square()[:, :n_time]
    if power.shape[1] < n_time:
        power = F.pad(power, (0, n_time - power.shape[1]))
    return torch.log(power + 1e-6).unsqueeze(0)


@dataclass(frozen=True)
class LogSpectrogram:
    """:func:`log_spectrogram` with its STFT sizes bound: ``(N,) -> (1, n_freq, n_time)``."""

    n_fft: int
    win_length: int
    hop_length: int
    n_time: int

    def __call__(self, waveform: torch.Tensor) -> torch.Tensor:
        return log_spectrogram(
            waveform, n_fft=self.n_fft, win_length=self.win_length,
            hop_length=self.hop_length, n_time=self.n_time,
        )  # fmt: skip


# ------------------------------------------------------------------------------ every input
@dataclass(frozen=True)
class InputTransforms:
    """The transforms of every modality, built once from a ``DataConfig``, and the two inputs
    made with them: a modality's recognition input and the policy's input.

    Both ``VideoDataset`` and ``predict.py`` build their inputs here, from the arrays
    :func:`~data.sources.read_clip` gives, so that a prediction sees what evaluation sees.
    """

    spatial: SpatialSampler
    rgb: RGBInput
    rgbdiff: RGBDiffInput
    flow: FlowInput
    spectrogram: LogSpectrogram
    policy: PolicyInput

    @classmethod
    def from_config(cls, config: DataConfig) -> InputTransforms:
        return cls(
            spatial=SpatialSampler(config.crop_size, config.resize_range, config.test_resize),
            rgb=RGBInput(config.mean, config.std),
            rgbdiff=RGBDiffInput(config.mean, config.std, MODALITIES["rgbdiff"].stack),
            flow=FlowInput(MODALITIES["flow"].stack),
            spectrogram=LogSpectrogram(
                config.n_fft, config.stft_win_length, config.stft_hop_length, config.n_time
            ),
            policy=PolicyInput(config.policy_frames, config.policy_size),
        )

    def recognition_input(
        self, modality: str, decoded: Decoded, params: SpatialParams
    ) -> torch.Tensor:
        """``(T, ...)`` the recognition input of ``modality`` (its registry entry's builder)."""
        return MODALITIES[modality].build(decoded, self, params)

    def policy_input(
        self, source: str, decoded: Decoded, params: SpatialParams,
        recognition: torch.Tensor | None = None,
    ) -> torch.Tensor:  # fmt: skip
        """``(T, policy_frames, C, P, P)`` the policy's low-resolution view of ``source``.

        Args:
            source: a policy source (``MODALITIES[m].policy_source``).
            decoded: the decoded segments.
            params: the spatial draw of the item.
            recognition: ``(T, F, C, S, S)`` the recognition input of ``source`` when already
                built; otherwise only the policy's rows of ``decoded`` are transformed. Every
                transform works frame by frame, so both give the same tensor.
        """
        if recognition is None:
            rows: Sequence[int] = policy_rows(decoded.indices.shape[1], self.policy.frames)
            recognition = self.recognition_input(source, decoded.select(rows=rows), params)
        return self.policy(recognition)
