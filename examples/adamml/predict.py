"""Run a trained AdaMML on videos: the top-5 classes, which modalities each segment used, the
GFLOPs against all-modality, and where the time went (decoding, policy, recognition).

    python examples/adamml/predict.py VIDEO [VIDEO ...] --run examples/adamml/runs/demo

VIDEO is a video file (anything PyAV opens), a frame folder in ``prepare.py``'s layout
(``00001.jpg`` ..., ``audio.wav``, ``meta.json``), or a folder of video files, predicted one by
one. Segments are sampled as in evaluation (T = the run's ``test_segments``, centred TSN
segments over the video, or over each window with ``--window-seconds``), and a window is
processed as evaluation processes a video: read through the dataset's read path
(``data.sources``), the policy's inputs of its T segments built, their features computed in
one call of each extractor and decided by the policy's LSTM (``AdaMML.decide``), then each
recogniser run once, on the segments that selected it, with only their inputs built
(``adagate.streaming.route_window``). Decisions and logits are those of
``AdaMML.forward(batch, route=True)`` on the batch ``VideoDataset`` builds for the same video:
the same read path and input builders give the same tensors. Memory grows with T, not with
the video's length.

Times: ``decode`` is reading plus the input transforms, ``policy`` the policy's feature
extractors and LSTM, ``recognition`` the routed backbones and the fusion. GFLOPs are MACs
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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TextIO

import torch
from torch import Tensor, nn
from tqdm import tqdm

from adagate.flops import ModalityCosts, expected_gflops
from adagate.inference import optimize_for_inference
from adagate.streaming import WindowInput, online_late_fusion, route_window

sys.path.insert(0, str(Path(__file__).resolve().parent))
import runs
from data import (
    BadVideoError,
    Decoded,
    InputTransforms,
    Source,
    SpatialParams,
    open_source,
    parse_list_file,
    read_classes,
    read_clip,
    video_paths,
    window_indices,
    window_spans,
)
from modalities import MODALITIES, reads
from model import AdaMML, example_batch, measure_costs
from timing import Stopwatch

TIMED_PARTS = ("decode", "policy", "recognition")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    a = p.add_argument
    # fmt: off
    a("videos", nargs="+", type=Path, metavar="VIDEO",
      help="video files, frame folders, or folders of video files")
    a("--run", type=Path, required=True, help="run directory written by train.py")
    a("--checkpoint", type=Path, help="weights to use (default: the run's adamml.pt)")
    a("--json", type=Path, help="also write one JSON line per video to this file")
    a("--segments", type=int, help="T per video or window (default: the run's)")
    a("--window-seconds", type=float,
      help="predict each window of this length separately (default: whole video)")
    a("--stride-seconds", type=float,
      help="distance between window starts (default: --window-seconds)")
    a("--all-modalities", action="store_true",
      help="no policy: every modality on every segment (the run's allmod.pt when there is "
           "one), for comparison")
    a("--no-optimize", dest="optimize", action="store_false",
      help="skip adagate.optimize_for_inference (BatchNorm folding, layout per network), e.g. "
           "for outputs bit-equal to the trained model's")
    a("--top", type=int, default=5, help="classes to show per video")
    a("--device", default="cpu")
    # fmt: on
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
        model, config, classes, args.device, all_modalities=args.all_modalities,
        segments=args.segments, top=args.top, optimize=args.optimize,
    )  # fmt: skip
    videos = video_paths(args.videos)
    done = failed = 0
    out = args.json.open("w") if args.json else None
    try:
        for video in tqdm(videos, desc="predict", unit="video", leave=False,
                          disable=len(videos) < 2, dynamic_ncols=True):  # fmt: skip
            failed += not predict_one(predictor, video, args.window_seconds,
                                      args.stride_seconds, out)  # fmt: skip
            done += 1
    except KeyboardInterrupt:
        print(f"predict: interrupted at {videos[done]} ({done + 1} of {len(videos)}); to go on, "
              "pass it and the videos after it", file=sys.stderr)  # fmt: skip
        return 130
    finally:
        if out is not None:
            out.close()
    if failed:
        print(f"predict: {failed} of {len(videos)} videos could not be read", file=sys.stderr)
    return 1 if failed else 0


def predict_one(
    predictor: Predictor, video: Path, window_seconds: float | None,
    stride_seconds: float | None, out: TextIO | None,
) -> bool:  # fmt: skip
    """Predict one video and print (and write) its result, or its one-line error; whether it
    could be read."""
    try:
        result = predictor.predict(video, window_seconds, stride_seconds)
    except BadVideoError as error:
        tqdm.write(f"{video}: skipped: {reason(error, video)}", file=sys.stderr)
        write_json(out, {"video": str(video), "error": reason(error, video)})
        return False
    for issue in result["issues"]:
        tqdm.write(f"{video}: {issue}", file=sys.stderr)
    tqdm.write(format_result(result))
    write_json(out, result)
    return True


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
    # The run's one rule (runs.new_model): nolstm.pt is the policy without its LSTM.
    model = runs.new_model(config, checkpoint.stem, len(classes))
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0]
        raise ValueError(
            f"--checkpoint: expected weights of the run's model, got {checkpoint} ({first})"
        ) from None
    return config, model.eval(), classes


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
    """A trained AdaMML applied to one video at a time, a window of T segments at a time.

    Args:
        model: the trained model (moved to ``device``, put in eval mode).
        config: the run's configuration.
        classes: class names.
        device: where the model runs; decoding is on the CPU.
        all_modalities: no policy: every modality on every segment.
        segments: T per video or window (default: the run's ``test_segments``).
        top: classes listed per video and window by :meth:`predict`.
        costs: the model's per-segment MACs, when already measured (``model.measure_costs``).
        optimize: run the networks through ``adagate.optimize_for_inference`` (BatchNorm
            folded, memory layout timed per network on a window of T segments); outputs then
            differ from the model's within 1e-4 of their scale.
        clock: what ``seconds`` are measured with (see :class:`Stopwatch`).
    """

    def __init__(
        self, model: AdaMML, config: runs.RunConfig, classes: Sequence[str],
        device: torch.device, *, all_modalities: bool = False, segments: int | None = None,
        top: int = 5, costs: ModalityCosts | None = None, optimize: bool = False,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:  # fmt: skip
        self.device = device
        model = model.to(device, memory_format=torch.channels_last).eval()
        if costs is None:
            costs = measure_costs(model, example_batch(config.data, model.modalities))
        self.costs = costs
        self.segments = segments or config.data.test_segments
        if optimize:
            example = example_batch(config.data, model.modalities, segments=self.segments)
            model = optimize_for_inference(model, ({k: v.to(device) for k, v in example.items()},))
        self.model = model
        self.modalities = model.modalities
        self.classes = list(classes)
        self.data = config.data
        self.transforms = InputTransforms.from_config(config.data)
        self.all_modalities = all_modalities
        # All-modality reads what recognition reads; AdaMML also what the policy sees.
        sources = () if all_modalities else config.data.policy_sources
        self.reads = reads(config.data.modalities + sources)
        self.top = top
        self.clock = clock
        self.multi_label = _multi_label(config, self.classes)
        self.example_output = torch.zeros(1, len(self.classes), device=device)

    def run(
        self, path: Path, window_seconds: float | None = None, stride_seconds: float | None = None
    ) -> VideoPrediction:
        """Predict one video (file or frame folder), window by window.

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
        stopwatch = Stopwatch(TIMED_PARTS, self.device, self.clock)
        began = self.clock()
        with stopwatch("decode"):
            source = open_source(path, self.data)
        issues = []
        if self.reads.audio and not source.has_audio:
            issues.append("no audio track: its audio is silence, as in evaluation")
        if source.num_frames < self.data.span:
            issues.append(f"shorter than one segment ({source.num_frames} frames < "
                          f"{self.data.span}): frames loop, as in evaluation")  # fmt: skip
        results, fusion, decisions = [], None, []
        try:
            with torch.inference_mode():
                spans = window_spans(source.num_frames, source.fps, window_seconds, stride_seconds)
                for first, count in spans:
                    indices = window_indices(
                        first, count, self.segments, self.data.span,
                        self.data.frames_per_segment, self.data.frame_stride,
                    )  # fmt: skip
                    window, used, segment_logits = self._window(source, indices, stopwatch)
                    results.append(WindowPrediction(first, count, window, used))
                    decisions.append(used)
                    with stopwatch("recognition"):
                        for t in range(len(used)):  # the video's fusion, segment by segment
                            logits, fusion = online_late_fusion(
                                segment_logits[t][None], used[t][None].to(self.device),
                                self.model.fusion.weights, fusion, self.model.fusion.normalize,
                            )  # fmt: skip
        finally:
            source.close()
        everything = torch.cat(decisions)[None]
        costs = ModalityCosts(self.costs.recognition)
        return VideoPrediction(
            video=str(path), duration=source.duration, fps=source.fps, logits=logits[0].cpu(),
            windows=results, gflops=_gflops(everything, costs if self.all_modalities else
                                            self.costs, self.modalities),
            gflops_all_modalities=_gflops(torch.ones_like(everything), costs, self.modalities),
            seconds=dict(stopwatch.seconds, total=self.clock() - began), issues=issues,
        )  # fmt: skip

    def _window(
        self, source: Source, indices: Tensor, stopwatch: Stopwatch
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Read, decide and route one window of T segments.

        Returns:
            ``(C,)`` the window's logits and ``(T, M)`` its decisions (on the CPU), and
            ``(T, M, C)`` its segment logits.
        """
        model, transforms = self.model, self.transforms
        policy_inputs: dict[str, Tensor] = {}
        inputs: dict[str, WindowInput] = {}
        with stopwatch("decode"):
            decoded = read_clip(source, indices, self.reads, self.data.audio_seconds)
            params = transforms.spatial(decoded.height, decoded.width, train=False)
            for m in () if self.all_modalities else self.modalities:
                key, source_name = MODALITIES[m].policy_key, MODALITIES[m].policy_source
                if source_name is None:
                    # The policy reads the recognition input itself: build it once, for both.
                    built = transforms.recognition_input(m, decoded, params)[None]
                    policy_inputs[key] = inputs[m] = built.to(self.device)
                elif key not in policy_inputs:
                    view = transforms.policy_input(source_name, decoded, params)[None]
                    policy_inputs[key] = view.to(self.device)
        modules: dict[str, nn.Module] = dict(model.recognisers.items())
        if self.all_modalities:
            decisions = torch.ones(1, len(indices), len(self.modalities), device=self.device)
        else:
            with stopwatch("policy"):
                features, computed = model.features_and_logits(policy_inputs)
                decisions = model.policy(features).decisions
            # A shared modality's recogniser gave its logits on every segment with its features:
            # routed as they are (zero where skipped), as AdaMML.recognise routes them.
            modules.update(dict.fromkeys(computed, nn.Identity()))
            inputs.update(computed)
        with stopwatch("recognition"):
            for m in self.modalities:
                inputs.setdefault(m, partial(self._inputs, m, decoded, params, stopwatch))
            segment_logits = route_window(
                modules, inputs, decisions, self.modalities, example_output=self.example_output
            )
            logits = model.fusion(segment_logits, decisions)
        return logits[0].cpu(), decisions[0].cpu(), segment_logits[0]

    def _inputs(
        self, modality: str, decoded: Decoded, params: SpatialParams, stopwatch: Stopwatch,
        segments: Tensor,
    ) -> Tensor:  # fmt: skip
        """``(K, ...)`` the recognition inputs of the selected ``segments`` only."""
        with stopwatch("decode"):
            chosen = decoded.select(segments=segments)
            return self.transforms.recognition_input(modality, chosen, params).to(self.device)

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


def _gflops(decisions: Tensor, costs: ModalityCosts, modalities: Sequence[str]) -> float:
    return float(expected_gflops(decisions.cpu(), costs, modalities)[0])


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
