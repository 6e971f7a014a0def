"""Run a trained AdaMML on videos: the top-5 classes, which modalities each segment used, the
GFLOPs against all-modality, and where the time went (decoding, policy, recognition).

    python examples/adamml/predict.py VIDEO [VIDEO ...] --run examples/adamml/runs/demo

VIDEO is a video file (anything PyAV opens) or a frame folder in ``prepare.py``'s layout
(``00001.jpg`` ..., ``audio.wav``, ``meta.json``). Segments are sampled as in evaluation
(T = the run's ``test_segments``, centred TSN segments) and processed one at a time: decode
what the policy needs, decide with ``MultiModalPolicy.step``, decode the recognition inputs of
the modalities it selected and nothing else, run them, fuse online
(:mod:`adagate.streaming`). Memory does not grow with the video's length; with
``--window-seconds`` each window of the video gets its own T segments and prediction.
Decisions and logits are those of ``AdaMML.forward(batch, route=True)`` on the inputs
``VideoDataset`` builds for the same video.

Times: ``decode`` is decoding plus the input transforms, ``policy`` the policy's feature
extractors and its step, ``recognition`` the routed backbones and the fusion. GFLOPs are MACs
(1 GFLOP = 1e9 MACs), the policy included. A video that cannot be read is reported in one line
and skipped; the exit status is 1 if any was, 2 for a bad flag or run directory.
"""

from __future__ import annotations

import os

# See evaluate.py: spinning OpenMP threads collapse when the cores are shared.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TextIO

import av
import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from adagate.flops import ModalityCosts, expected_gflops
from adagate.inference import optimize_for_inference
from adagate.policy import PolicyState
from adagate.streaming import FusionState, online_late_fusion, route_segment

sys.path.insert(0, str(Path(__file__).resolve().parent))
import runs
from data import (
    INPUT_BUILDERS,
    BadVideoError,
    DataConfig,
    Decoded,
    InputTransforms,
    SpatialParams,
    VideoFrameReader,
    audio_windows,
    decode_audio,
    downscaled_size,
    frame_folder_audio,
    frame_folder_fps,
    frame_indices,
    open_media,
    parse_list_file,
    probe_media,
    read_classes,
    read_frame_folder,
    segment_starts,
    stacked_indices,
)
from modalities import MODALITIES
from model import PRESETS, AdaMML, example_batch, measure_costs

TIMED_PARTS = ("decode", "policy", "recognition")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("videos", nargs="+", type=Path, metavar="VIDEO",
                   help="video files or frame folders")  # fmt: skip
    p.add_argument("--run", type=Path, required=True, help="run directory written by train.py")
    p.add_argument("--checkpoint", type=Path,
                   help="weights to use (default: the run's adamml.pt)")  # fmt: skip
    p.add_argument("--json", type=Path, help="also write one JSON line per video to this file")
    p.add_argument("--segments", type=int, help="T per video or window (default: the run's)")
    p.add_argument(
        "--window-seconds",
        type=float,
        help="predict each window of this length separately (default: whole video)",
    )
    p.add_argument(
        "--stride-seconds",
        type=float,
        help="distance between window starts (default: --window-seconds)",
    )
    p.add_argument("--all-modalities", action="store_true",
                   help="no policy: every modality on every segment (the run's allmod.pt when "
                        "there is one), for comparison")  # fmt: skip
    p.add_argument(
        "--decode",
        choices=("needed", "all"),
        default="needed",
        help="decode only what the policy asks for (default), or every input first",
    )
    p.add_argument("--no-optimize", dest="optimize", action="store_false",
                   help="skip adagate.optimize_for_inference (BatchNorm folding, layout per "
                        "network), e.g. for outputs bit-equal to the trained model's")  # fmt: skip
    p.add_argument("--top", type=int, default=5, help="classes to show per video")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    for flag in ("segments", "top"):
        value = getattr(args, flag)
        if value is not None and value < 1:
            p.error(f"--{flag}: expected >= 1, got {value}")
    for flag in ("window_seconds", "stride_seconds"):
        value = getattr(args, flag)
        if value is not None and not value > 0:
            p.error(f"--{flag.replace('_', '-')}: expected > 0 seconds, got {value}")
    if args.stride_seconds is not None and args.window_seconds is None:
        p.error("--stride-seconds: expected together with --window-seconds")
    try:
        device = torch.device(args.device)
    except RuntimeError:
        p.error(f"--device: expected a torch device such as cpu or cuda, got {args.device!r}")
    if device.type == "cuda" and not torch.cuda.is_available():
        p.error(f"--device: {args.device} requested, but torch sees no CUDA device")
    args.device = device
    if args.checkpoint is not None and not args.checkpoint.is_file():
        p.error(f"--checkpoint: no such file {args.checkpoint}")
    try:
        args.model = load_run(args.run, args.checkpoint, args.all_modalities)
    except (FileNotFoundError, ValueError) as error:
        p.error(str(error))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Predict every video; returns the exit status (1 if a video could not be read)."""
    args = parse_args(argv)
    config, model, classes = args.model
    predictor = Predictor(
        model, config, classes, args.device, decode=args.decode,
        all_modalities=args.all_modalities, segments=args.segments, top=args.top,
        optimize=args.optimize,
    )  # fmt: skip
    failed = 0
    out = args.json.open("w") if args.json else None
    try:
        videos = tqdm(args.videos, desc="predict", unit="video", leave=False,
                      disable=len(args.videos) < 2, dynamic_ncols=True)  # fmt: skip
        for video in videos:
            try:
                result = predictor.predict(video, args.window_seconds, args.stride_seconds)
            except BadVideoError as error:
                failed += 1
                tqdm.write(f"{video}: skipped: {reason(error, video)}", file=sys.stderr)
                write_json(out, {"video": str(video), "error": reason(error, video)})
                continue
            for issue in result["issues"]:
                tqdm.write(f"{video}: {issue}", file=sys.stderr)
            tqdm.write(format_result(result))
            write_json(out, result)
    finally:
        if out is not None:
            out.close()
    if failed:
        print(f"predict: {failed} of {len(args.videos)} videos could not be read",
              file=sys.stderr)  # fmt: skip
    return 1 if failed else 0


# ------------------------------------------------------------------------------------------
# The run
# ------------------------------------------------------------------------------------------
def load_run(
    run: Path, checkpoint: Path | None, all_modalities: bool = False
) -> tuple[runs.RunConfig, AdaMML, list[str]]:
    """The run's configuration, its model in eval mode, and the class names.

    Args:
        run: run directory written by ``train.py``.
        checkpoint: weights to load; default ``adamml.pt`` (``allmod.pt`` when
            ``all_modalities`` and the run has one).
        all_modalities: prefer the run's all-modality baseline.

    Raises:
        FileNotFoundError: no ``config.json``, classes file or weights; the message names it.
        ValueError: a configuration or checkpoint that cannot be read or does not fit.
    """
    config = runs.load_config(run)
    if not Path(config.classes).is_file():
        raise FileNotFoundError(f"--run: {run}/config.json names {config.classes}, no such file")
    classes = read_classes(config.classes)
    if checkpoint is None:
        baseline = run / "allmod.pt"
        checkpoint = baseline if all_modalities and baseline.is_file() else run / "adamml.pt"
        if not checkpoint.is_file():
            raise FileNotFoundError(f"--run: {run} has no adamml.pt; did training finish?")
    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    # A damaged file fails in the unpickler in many ways (KeyError, UnpicklingError, ...).
    except Exception as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"--checkpoint: cannot read {checkpoint}: {first}") from None
    # The no-LSTM baseline (nolstm.pt) has no recurrent weights.
    recurrent = any(key.startswith("policy.lstm.") for key in state)
    model = AdaMML(config.modalities, len(classes), PRESETS[config.preset], recurrent=recurrent)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise ValueError(
            f"--checkpoint: expected weights of the run's model, got {checkpoint} ({first})"
        ) from None
    return config, model.eval(), classes


# ------------------------------------------------------------------------------------------
# Sources: a video file or a frame folder, read segment by segment
# ------------------------------------------------------------------------------------------
class VideoFileSource:
    """A video file: frames through a :class:`data.VideoFrameReader`, audio through a second
    container (a seek for an audio window would move the video reader's demuxer)."""

    def __init__(self, path: Path, config: DataConfig, needs_audio: bool) -> None:
        self.name = str(path)
        self.container = _open_video(path)
        self.audio: av.container.InputContainer | None = None
        try:
            info = probe_media(self.container)
            short_side = config.resize_range[1]
            self.reader = VideoFrameReader(self.container, short_side=short_side)
            if needs_audio and info.audio_rate is not None:
                self.audio = _open_video(path)
        except BaseException:
            self.close()
            raise
        self.num_frames, self.fps, self.duration = info.num_frames, info.fps, info.duration
        self.first_frame = 0
        width, height = downscaled_size(info.width, info.height, short_side)
        self.height, self.width = height, width
        self.sample_rate = config.sample_rate
        self._frames: dict[int, av.VideoFrame] = {}

    @property
    def has_audio(self) -> bool:
        return self.audio is not None

    def prepare(self, indices: Sequence[int]) -> None:
        """Decode (not convert) every frame a segment may use: h264 decodes them all anyway to
        reach the last one, and converting only the used ones is what saves time."""
        self._frames = self.reader.read(indices)

    def rgb(self, index: int) -> np.ndarray:
        return self.reader.to_rgb(self._frames[index])

    def flow(self, indices: Sequence[int]) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
        raise BadVideoError(f"{self.name}: flow needs the frame-folder layout (prepare.py)")

    def waveform(self, window: tuple[float, float]) -> np.ndarray:
        assert self.audio is not None
        return decode_audio(self.audio, [window], self.sample_rate)[0]

    def close(self) -> None:
        self.container.close()
        if self.audio is not None:
            self.audio.close()


class FrameFolderSource:
    """A frame folder in ``prepare.py``'s layout; each image is read when first used."""

    def __init__(self, folder: Path, config: DataConfig, needs_audio: bool) -> None:
        self.name = str(folder)
        numbers = sorted(int(p.stem) for p in folder.glob("[0-9]*.jpg") if p.stem.isdigit())
        if not numbers:
            raise BadVideoError(f"{folder}: expected a frame folder with 00001.jpg, ..., got none")
        self.first_frame = numbers[0]
        self.num_frames = numbers[-1] - numbers[0] + 1
        self.fps = frame_folder_fps(folder, config.frame_folder_fps)
        self.duration = self.num_frames / self.fps
        self.folder = folder
        first = read_frame_folder(folder, [self.first_frame])[self.first_frame]
        self.height, self.width = first.shape[:2]
        audio = frame_folder_audio(folder)
        self.audio = open_media(audio) if needs_audio and audio is not None else None
        self.sample_rate = config.sample_rate

    @property
    def has_audio(self) -> bool:
        return self.audio is not None

    def prepare(self, indices: Sequence[int]) -> None:
        """Nothing to do ahead: each JPEG is decoded on its own."""

    def rgb(self, index: int) -> np.ndarray:
        return read_frame_folder(self.folder, [index])[index]

    def flow(self, indices: Sequence[int]) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray]]:
        x, y = (read_frame_folder(self.folder, indices, f"{axis}_{{:05d}}.jpg", gray=True)
                for axis in ("x", "y"))  # fmt: skip
        return x, y

    def waveform(self, window: tuple[float, float]) -> np.ndarray:
        assert self.audio is not None
        return decode_audio(self.audio, [window], self.sample_rate)[0]

    def close(self) -> None:
        if self.audio is not None:
            self.audio.close()


Source = VideoFileSource | FrameFolderSource


def _open_video(path: Path) -> av.container.InputContainer:
    try:
        return av.open(str(path))
    except av.FFmpegError as error:
        raise BadVideoError(
            f"{path}: not a video FFmpeg can read ({error.strerror or error})"
        ) from None


def open_source(path: Path, config: DataConfig, needs_audio: bool) -> Source:
    """A :class:`VideoFileSource` or, for a directory, a :class:`FrameFolderSource`.

    Raises:
        BadVideoError: a missing path or one that is not a readable video.
    """
    if path.is_dir():
        return FrameFolderSource(path, config, needs_audio)
    if not path.exists():
        raise BadVideoError(f"{path}: no such file or directory")
    return VideoFileSource(path, config, needs_audio)


# ------------------------------------------------------------------------------------------
# One segment's inputs, built when first asked for
# ------------------------------------------------------------------------------------------
@dataclass
class InputPlan:
    """What one segment needs, fixed per run: sizes, transforms, the policy's rows."""

    config: DataConfig
    modalities: tuple[str, ...]
    transforms: InputTransforms
    # RGB frames stacked per sampled frame and flow images, as VideoDataset reads them.
    rgb_stack: int
    flow_stack: int
    # Rows of the F sampled frames the policy input keeps (transforms.policy_input's choice).
    policy_rows: list[int]
    # Some input is read from frames (not audio alone).
    visual: bool

    @classmethod
    def from_config(cls, config: DataConfig) -> InputPlan:
        inputs = [MODALITIES[m] for m in dict.fromkeys(config.modalities + config.policy_sources)]
        rows = torch.linspace(0, config.frames_per_segment - 1, config.policy_frames)
        return cls(
            config=config,
            modalities=tuple(config.modalities),
            transforms=InputTransforms.from_config(config),
            rgb_stack=1 + max(m.frames_after for m in inputs if not m.frame_folder_only),
            flow_stack=max((m.stack for m in inputs if m.frame_folder_only), default=0),
            policy_rows=rows.round().long().tolist(),
            visual=any(m.visual for m in inputs),
        )


class Segment:
    """The inputs of one segment, each built on first use and kept.

    Visual inputs are built row by row (one row per sampled frame) from the frames of those
    rows only, so the policy's rows are decoded first and the other rows only when a visual
    modality is selected. Every transform works frame by frame, so the rows put together are
    the tensors ``VideoDataset`` builds for the whole segment.

    Args:
        source: the open video.
        indices: ``(F,)`` the segment's sampled frames (0-based).
        plan: sizes and transforms.
        params: the (test-time, centred) spatial crop of this video.
        stopwatch: where the time spent here is counted, as ``decode``.
    """

    def __init__(
        self, source: Source, indices: Tensor, plan: InputPlan, params: SpatialParams,
        stopwatch: Stopwatch,
    ) -> None:  # fmt: skip
        self.source, self.plan, self.params, self.stopwatch = source, plan, params, stopwatch
        self.indices = indices
        self.stack = stacked_indices(indices[None], plan.rgb_stack, source.num_frames)[0]
        self._rows: dict[str, dict[int, Tensor]] = {}
        self._rgb: dict[int, np.ndarray] = {}
        self._audio: Tensor | None = None
        if plan.visual:
            with stopwatch("decode"):
                source.prepare((self.stack + source.first_frame).reshape(-1).tolist())

    def policy_input(self, modality: str) -> Tensor:
        """``(1, ...)``: what the policy's extractor for ``modality`` reads."""
        source = MODALITIES[modality].policy_source
        if source is None:
            return self.recognition_input(modality)
        with self.stopwatch("decode"):
            rows = self._build(source, self.plan.policy_rows)
            return self.plan.transforms.policy(rows)

    def recognition_input(self, modality: str) -> Tensor:
        """``(1, ...)``: the recognition input of ``modality``."""
        with self.stopwatch("decode"):
            if not MODALITIES[modality].visual:
                if self._audio is None:
                    self._audio = INPUT_BUILDERS[modality](
                        self._decoded(modality, []), self.plan.transforms, self.params
                    )
                return self._audio
            return self._build(modality, range(len(self.indices)))

    def _build(self, modality: str, rows: Sequence[int]) -> Tensor:
        """``(1, len(rows), C, S, S)`` rows of a visual input; missing rows are built once."""
        built = self._rows.setdefault(modality, {})
        missing = [r for r in rows if r not in built]
        if missing:
            new = INPUT_BUILDERS[modality](
                self._decoded(modality, missing), self.plan.transforms, self.params
            )
            built.update({r: new[:, i] for i, r in enumerate(missing)})
        return torch.stack([built[r] for r in rows], dim=1)

    def _decoded(self, modality: str, rows: Sequence[int]) -> Decoded:
        """A one-segment :class:`data.Decoded` of ``rows`` with what ``modality`` reads."""
        source, plan = self.source, self.plan
        spec = MODALITIES[modality]
        indices = self.indices[list(rows)][None]
        # Each builder reads one field; the others stay empty rather than decoded for nothing.
        decoded = Decoded(indices, source.fps, torch.empty(0, dtype=torch.uint8))
        if not spec.visual:
            window = audio_windows(self.indices[None], source.fps, plan.config.audio_seconds)[0]
            if source.has_audio:
                decoded.audio = [source.waveform(window)]
            else:
                decoded.audio = [np.zeros(round(window[1] * plan.config.sample_rate), np.float32)]
        elif spec.frame_folder_only:
            flow = stacked_indices(indices, plan.flow_stack, max(source.num_frames - 1, 1))
            flow = flow + source.first_frame
            x, y = source.flow(flow.reshape(-1).tolist())
            decoded.flow_x, decoded.flow_y = (_stack(f, flow) for f in (x, y))
        else:
            # RGB reads the sampled frame, RGBDiff the frames after it too.
            frames = self.stack[list(rows), : 1 + spec.frames_after] + source.first_frame
            decoded.frames = _stack(
                {int(i): self._rgb_frame(int(i)) for i in frames.reshape(-1)}, frames[None]
            )
        return decoded

    def _rgb_frame(self, index: int) -> np.ndarray:
        if index not in self._rgb:
            self._rgb[index] = self.source.rgb(index)
        return self._rgb[index]


def _stack(frames: Mapping[int, np.ndarray], indices: Tensor) -> Tensor:
    """``indices``-shaped tensor of the frames, as ``VideoDataset`` lays them out."""
    picked = np.stack([frames[int(i)] for i in indices.reshape(-1)])
    return torch.from_numpy(picked).reshape(*indices.shape, *picked.shape[1:])


# ------------------------------------------------------------------------------------------
# Timing
# ------------------------------------------------------------------------------------------
class Stopwatch:
    """Seconds per part; entering a part inside another pauses the outer one, so decoding
    that routing asks for counts as decoding, not recognition. CUDA work is synchronised at
    every switch so that each part is charged its own kernels.

    Args:
        device: where the model runs.
        clock: ``time.perf_counter`` (wall time) or ``time.process_time`` (CPU time of the
            process, steadier than wall time on a machine that other work keeps busy).
    """

    def __init__(
        self, device: torch.device, clock: Callable[[], float] = time.perf_counter
    ) -> None:
        self.device = device
        self.clock = clock
        self.seconds: dict[str, float] = dict.fromkeys(TIMED_PARTS, 0.0)
        self._open: list[str] = []
        self._since = 0.0

    def _now(self) -> float:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        return self.clock()

    @contextmanager
    def __call__(self, part: str) -> Iterator[None]:
        now = self._now()
        if self._open:
            self.seconds[self._open[-1]] += now - self._since
        self._open.append(part)
        self._since = now
        try:
            yield
        finally:
            now = self._now()
            self.seconds[self._open.pop()] += now - self._since
            self._since = now


# ------------------------------------------------------------------------------------------
# Prediction
# ------------------------------------------------------------------------------------------
@dataclass
class _Stream:
    """What is carried from segment to segment of one window (or of the whole video)."""

    policy: PolicyState | None = None
    fusion: FusionState | None = None
    logits: Tensor | None = None
    decisions: list[Tensor] = field(default_factory=list)


@dataclass
class WindowPrediction:
    """One window's prediction.

    Attributes:
        first: its first frame.
        count: its frames.
        logits: ``(C,)`` its video logits (masked late fusion of its T segments).
        decisions: ``(T, M)`` its decisions, in the model's modality order.
    """

    first: int
    count: int
    logits: Tensor
    decisions: Tensor


@dataclass
class VideoPrediction:
    """What :meth:`Predictor.run` returns for one video.

    Attributes:
        video: the path.
        duration: seconds.
        fps: frame rate.
        logits: ``(C,)`` logits of the whole video: the fusion of every segment of every window
            (with one window, that window's).
        windows: one :class:`WindowPrediction` per window.
        gflops: GFLOPs used (MACs, 1 GFLOP = 1e9 MACs), the policy included.
        gflops_all_modalities: GFLOPs of every modality on every segment, without a policy.
        seconds: ``decode``, ``policy``, ``recognition`` and ``total``.
        issues: what was unusual about the input (no audio track, a clip shorter than a
            segment), one line each.
    """

    video: str
    duration: float
    fps: float
    logits: Tensor
    windows: list[WindowPrediction]
    gflops: float
    gflops_all_modalities: float
    seconds: dict[str, float]
    issues: list[str]


class Predictor:
    """A trained AdaMML applied to one video at a time, segment by segment.

    Args:
        model: the trained model (moved to ``device``, put in eval mode).
        config: the run's configuration.
        classes: class names.
        device: where the model runs; decoding is on the CPU.
        decode: ``needed``: each segment's recognition inputs are decoded only for the
            modalities the policy selected; ``all``: every input is decoded before the policy
            runs (the batch path's order, for comparison).
        all_modalities: no policy: every modality on every segment.
        segments: T per video or window (default: the run's ``test_segments``).
        top: classes listed per video and window by :meth:`predict`.
        costs: the model's per-segment MACs, when already measured (``model.measure_costs``).
        optimize: run the networks through ``adagate.optimize_for_inference`` (BatchNorm
            folded, memory layout timed per network on one segment, the size streaming calls
            them with); outputs then differ from the model's within 1e-4 of their scale.
        clock: what ``seconds`` are measured with (see :class:`Stopwatch`).
    """

    def __init__(
        self, model: AdaMML, config: runs.RunConfig, classes: Sequence[str],
        device: torch.device, *, decode: str = "needed", all_modalities: bool = False,
        segments: int | None = None, top: int = 5, costs: ModalityCosts | None = None,
        optimize: bool = False, clock: Callable[[], float] = time.perf_counter,
    ) -> None:  # fmt: skip
        if decode not in ("needed", "all"):
            raise ValueError(f"decode: expected 'needed' or 'all', got {decode!r}")
        self.device = device
        model = model.to(device, memory_format=torch.channels_last).eval()
        if costs is None:
            costs = measure_costs(model, example_batch(config.data, model.modalities))
        self.costs = costs
        if optimize:
            example = example_batch(config.data, model.modalities, segments=1)
            model = optimize_for_inference(model, ({k: v.to(device) for k, v in example.items()},))
        self.model = model
        self.modalities = model.modalities
        self.classes = list(classes)
        self.data = config.data
        self.segments = segments or config.data.test_segments
        self.plan = InputPlan.from_config(config.data)
        self.decode = decode
        self.all_modalities = all_modalities
        self.top = top
        self.clock = clock
        self.multi_label = _multi_label(config, self.classes)
        self.example_output = torch.zeros(1, len(self.classes), device=device)

    def run(
        self, path: Path, window_seconds: float | None = None, stride_seconds: float | None = None
    ) -> VideoPrediction:
        """Predict one video (file or frame folder), segment by segment.

        Args:
            path: the video.
            window_seconds: predict each window of this length separately; None: the whole
                video is one window.
            stride_seconds: distance between window starts (default: ``window_seconds``).

        Returns:
            :class:`VideoPrediction`, tensors on the CPU.

        Raises:
            BadVideoError: the video cannot be read; the message starts with its path.
        """
        stopwatch = Stopwatch(self.device, self.clock)
        began = self.clock()
        if self.plan.flow_stack and not Path(path).is_dir():
            raise BadVideoError(f"{path}: flow needs the frame-folder layout (prepare.py --flow)")
        with stopwatch("decode"):
            source = open_source(Path(path), self.data, "audio" in self.modalities)
        issues: list[str] = []
        if "audio" in self.modalities and not source.has_audio:
            issues.append("no audio track: its audio is silence, as in evaluation")
        if source.num_frames < self.data.span:
            issues.append(f"shorter than one segment ({source.num_frames} frames < "
                          f"{self.data.span}): frames loop, as in evaluation")  # fmt: skip
        video, results = _Stream(), []
        try:
            params = self.plan.transforms.spatial(source.height, source.width, train=False)
            with torch.inference_mode():
                for first, count in windows(
                    source.num_frames, source.fps, window_seconds, stride_seconds
                ):
                    window = _Stream()
                    for indices in window_indices(first, count, self.segments, self.data):
                        segment = Segment(source, indices, self.plan, params, stopwatch)
                        self._step(segment, window, video, stopwatch)
                    assert window.logits is not None
                    decisions = torch.cat(window.decisions).cpu()
                    results.append(
                        WindowPrediction(first, count, window.logits[0].cpu(), decisions)
                    )
        except av.FFmpegError as error:
            raise BadVideoError(f"{path}: decoding failed: {error}") from error
        finally:
            source.close()
        assert video.logits is not None
        decisions = torch.stack(video.decisions, dim=1)
        used = _gflops(decisions, self.costs, self.modalities, policy=not self.all_modalities)
        everything = _gflops(torch.ones_like(decisions), self.costs, self.modalities, False)
        return VideoPrediction(
            video=str(path), duration=source.duration, fps=source.fps,
            logits=video.logits[0].cpu(), windows=results, gflops=used,
            gflops_all_modalities=everything,
            seconds=dict(stopwatch.seconds, total=self.clock() - began), issues=issues,
        )  # fmt: skip

    def predict(
        self, path: Path, window_seconds: float | None = None, stride_seconds: float | None = None
    ) -> dict[str, Any]:
        """:meth:`run` as a JSON-ready dict: the top classes with probabilities (softmax, or
        sigmoid for a multi-label run) of the video and of each window, each window's span
        and per-modality decisions as strings (``"1001"``: used on segments 0 and 3), GFLOPs,
        seconds per part, issues."""
        result = self.run(path, window_seconds, stride_seconds)
        return {
            "video": result.video,
            "duration": round(result.duration, 3),
            "segments_per_window": self.segments,
            "top": self._top(result.logits),
            "windows": [
                {
                    "start": round(w.first / result.fps, 3),
                    "end": round((w.first + w.count) / result.fps, 3),
                    "top": self._top(w.logits),
                    "decisions": {
                        m: "".join(str(int(d)) for d in w.decisions[:, i].tolist())
                        for i, m in enumerate(self.modalities)
                    },
                }
                for w in result.windows
            ],
            "gflops": round(result.gflops, 4),
            "gflops_all_modalities": round(result.gflops_all_modalities, 4),
            "seconds": {k: round(v, 5) for k, v in result.seconds.items()},
            "issues": result.issues,
        }

    def _step(
        self, segment: Segment, window: _Stream, video: _Stream, stopwatch: Stopwatch
    ) -> None:
        """Decide, route and fuse one segment into the window's and the whole video's fusion."""
        model = self.model
        if self.decode == "all":
            for m in self.modalities:
                segment.recognition_input(m)
        if self.all_modalities:
            decisions = torch.ones(1, len(self.modalities), device=self.device)
        else:
            with stopwatch("policy"):
                features = {}
                for m, extractor in model.policy_features.items():
                    features[m] = extractor(segment.policy_input(m).to(self.device))
                decided = model.policy.step(features, window.policy)
                window.policy, decisions = decided.state, decided.decisions
        with stopwatch("recognition"):
            inputs = {m: partial(self._recognition_input, segment, m) for m in self.modalities}
            segment_logits = route_segment(
                model.recognisers, inputs, decisions, self.modalities,
                example_output=self.example_output,
            )  # fmt: skip
            weights, normalize = model.fusion.weights, model.fusion.normalize
            for stream in (window, video):
                stream.logits, stream.fusion = online_late_fusion(
                    segment_logits, decisions, weights, stream.fusion, normalize
                )
                stream.decisions.append(decisions)

    def _recognition_input(self, segment: Segment, modality: str) -> Tensor:
        return segment.recognition_input(modality).to(self.device)

    def _top(self, logits: Tensor) -> list[dict[str, Any]]:
        scores = logits.float()
        probabilities = scores.sigmoid() if self.multi_label else scores.softmax(-1)
        values, order = probabilities.topk(min(self.top, len(self.classes)))
        return [
            {"class": self.classes[int(i)], "probability": round(float(v), 4)}
            for v, i in zip(values, order, strict=True)
        ]


def _multi_label(config: runs.RunConfig, classes: Sequence[str]) -> bool:
    """Whether the run trained on multi-hot labels (sigmoid scores), as train.py decides it."""
    try:
        records, _ = parse_list_file(config.train_list, list(classes))
    except (OSError, ValueError):
        return False
    return any(len(r.labels) > 1 for r in records)


def _gflops(
    decisions: Tensor, costs: ModalityCosts, modalities: Sequence[str], policy: bool
) -> float:
    if not policy:
        costs = ModalityCosts(costs.recognition)
    return float(expected_gflops(decisions.cpu(), costs, modalities)[0])


def windows(
    num_frames: int, fps: float, window_seconds: float | None, stride_seconds: float | None
) -> list[tuple[int, int]]:
    """``(first frame, frame count)`` of each window; one for the whole video by default.

    Windows start every ``stride_seconds``; when they do not reach the end, a last window is
    aligned with it, so every frame is in some window.
    """
    if window_seconds is None:
        return [(0, num_frames)]
    length = max(1, min(num_frames, round(window_seconds * fps)))
    stride = max(1, round((stride_seconds or window_seconds) * fps))
    starts = list(range(0, num_frames - length + 1, stride))
    if starts[-1] + length < num_frames:
        starts.append(num_frames - length)
    return [(start, length) for start in starts]


def window_indices(first: int, count: int, segments: int, config: DataConfig) -> Tensor:
    """``(T, F)`` sampled frames of a window: centred TSN segments, as evaluation samples."""
    starts = segment_starts(count, segments, config.span, train=False)
    return frame_indices(starts, config.frames_per_segment, config.frame_stride, count) + first


# ------------------------------------------------------------------------------------------
# Output
# ------------------------------------------------------------------------------------------
def reason(error: BaseException, path: Path) -> str:
    """The error message without the path it starts with (the line already names the file)."""
    message = str(error)
    for prefix in (f"{path}: ", f"{path.resolve()}: "):
        message = message.removeprefix(prefix)
    return message


def write_json(out: TextIO | None, record: Mapping[str, Any]) -> None:
    if out is not None:
        out.write(json.dumps(record) + "\n")
        out.flush()


def format_result(result: Mapping[str, Any]) -> str:
    """The lines printed for one video."""
    spans = result["windows"]
    best = result["top"][0]
    lines = [f"{result['video']}: {best['class']} ({best['probability']:.2f})"]
    lines.append("  top      " + " | ".join(
        f"{c['class']} {c['probability']:.3f}" for c in result["top"]))  # fmt: skip
    name_width = max(len(m) for m in spans[0]["decisions"])
    for window in spans:
        if len(spans) > 1:
            head = window["top"][0]
            lines.append(f"  {window['start']:.1f}-{window['end']:.1f} s  "
                         f"{head['class']} {head['probability']:.2f}")  # fmt: skip
        for m, used in window["decisions"].items():
            bar = "".join("█" if d == "1" else "·" for d in used)
            lines.append(f"    {m:<{name_width}}  {bar}  {used.count('1')}/{len(used)}")
    gflops, everything = result["gflops"], result["gflops_all_modalities"]
    lines.append(f"  GFLOPs   {gflops:.3f} of {everything:.3f} all-modality "
                 f"({gflops / everything:.2f})")  # fmt: skip
    seconds = result["seconds"]
    parts = " + ".join(f"{part} {1000 * seconds[part]:.1f}" for part in TIMED_PARTS)
    lines.append(f"  time     {1000 * seconds['total']:.1f} ms: {parts}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
