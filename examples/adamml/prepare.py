"""Turn a folder of videos into the reference frame-folder layout, and write its list files.

The AdaMML reference code reads pre-extracted frames (supplementary B: frames resized to a
short side of 256, TV-L1 flow bounded to [-20, 20], audio as mono 24 kHz). This script does
that extraction with PyAV, and TV-L1 flow with OpenCV's contrib module when it is installed::

    # labels from a list file of videos ("path label" lines, paths relative to --data-root)
    python examples/adamml/prepare.py --list train.txt --data-root videos/ --out frames/
    # or labels from class sub-folders: videos/<class name>/*.mp4
    python examples/adamml/prepare.py --data-root videos/ --out frames/ [--flow]

For each video ``a/b.mp4`` it writes ``OUT/a/b/`` with ``00001.jpg`` ..., ``audio.wav``,
``meta.json`` (fps) and, with ``--flow``, ``x_00001.jpg`` / ``y_00001.jpg`` (flow from frame
i to i+1, ``N - 1`` files); and ``OUT/<list name>`` with ``a/b 1 N label`` lines (plus
``classes.txt`` when labels come from folder names). Videos that fail are reported and left out.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np
from data import (
    FLOW_BOUND,
    VIDEO_SUFFIXES,
    BadVideoError,
    VideoRecord,
    decode_all_frames,
    open_media,
    parse_list_file,
    probe_media,
    read_classes,
    resample_audio,
)
from data.lists import write_classes, write_list

FLOW_MISSING = (
    "--flow needs TV-L1 optical flow from OpenCV's contrib module "
    "(cv2.optflow.DualTVL1OpticalFlow_create), which is not installed. Install it with\n"
    "    pip install opencv-contrib-python-headless\n"
    "or run without --flow: RGB, RGBDiff and audio need no optical flow."
)


def tvl1_factory() -> Any:
    """The TV-L1 constructor from OpenCV contrib, or ``None`` when it is not installed."""
    try:
        import cv2  # type: ignore[import-not-found]
    except ImportError:
        return None
    if hasattr(cv2, "optflow") and hasattr(cv2.optflow, "DualTVL1OpticalFlow_create"):
        return cv2.optflow.DualTVL1OpticalFlow_create
    return getattr(cv2, "DualTVL1OpticalFlow_create", None)


def flow_to_uint8(flow: np.ndarray, bound: float = FLOW_BOUND) -> np.ndarray:
    """Clip flow to ``[-bound, bound]`` px and scale it to 0-255 (reference layout).

    Args:
        flow: (H, W) float.
        bound: clipping bound in pixels.

    Returns:
        (H, W) uint8.
    """
    return np.round((np.clip(flow, -bound, bound) + bound) * 255 / (2 * bound)).astype(np.uint8)


def _save_jpeg(array: np.ndarray, path: Path) -> None:
    from PIL import Image  # installed with matplotlib (the ``examples`` extra)

    Image.fromarray(array).save(path, quality=95)


def extract_audio(source: Path, target: Path, sample_rate: int) -> bool:
    """Write the first audio track as mono 16-bit wav at ``sample_rate``; False without audio.

    Raises:
        BadVideoError: the file cannot be decoded.
    """
    with open_media(source) as container:
        if not container.streams.audio:
            return False
        with av.open(str(target), "w") as out:
            stream = out.add_stream("pcm_s16le", rate=sample_rate)
            stream.layout = "mono"
            frames = _without_timestamps(container.decode(container.streams.audio[0]))
            try:
                for resampled in resample_audio(frames, sample_rate, sample_format="s16"):
                    out.mux(stream.encode(resampled))
            except av.FFmpegError as error:
                raise BadVideoError(f"{source}: audio decoding failed: {error}") from error
            out.mux(stream.encode(None))
    return True


def _without_timestamps(frames: Iterable[av.AudioFrame]) -> Iterator[av.AudioFrame]:
    # Without timestamps the wav encoder numbers samples from zero; the source's are in another
    # time base and need not start at zero.
    for frame in frames:
        frame.pts = None
        yield frame


def extract_video(source: Path, folder: Path, short_side: int, flow: bool, sample_rate: int) -> int:
    """Extract one video into ``folder``; returns its number of frames.

    Args:
        source: video file.
        folder: output folder (created).
        short_side: frames are downscaled to this short side (keeping the aspect ratio).
        flow: also write TV-L1 flow (needs OpenCV contrib).
        sample_rate: audio rate of ``audio.wav``.

    Returns:
        Frames written.

    Raises:
        BadVideoError: the video cannot be decoded or has no frames.
    """
    folder.mkdir(parents=True, exist_ok=True)
    tvl1 = tvl1_factory()() if flow else None
    previous: np.ndarray | None = None
    count = 0
    with open_media(source) as container:
        fps = probe_media(container).fps
        for count, rgb in enumerate(decode_all_frames(container, short_side=short_side), 1):
            _save_jpeg(rgb, folder / f"{count:05d}.jpg")
            if tvl1 is not None:
                gray = rgb.mean(axis=-1).astype(np.uint8)
                if previous is not None:
                    motion = tvl1.calc(previous, gray, None)
                    _save_jpeg(flow_to_uint8(motion[..., 0]), folder / f"x_{count - 1:05d}.jpg")
                    _save_jpeg(flow_to_uint8(motion[..., 1]), folder / f"y_{count - 1:05d}.jpg")
                previous = gray
    if count == 0:
        raise BadVideoError(f"{source}: no frames")
    (folder / "meta.json").write_text(json.dumps({"fps": fps, "frames": count}))
    extract_audio(source, folder / "audio.wav", sample_rate)
    return count


def _job(args: tuple[Path, Path, int, bool, int]) -> tuple[int, str]:
    try:
        return extract_video(*args), ""
    except BadVideoError as error:
        return 0, str(error)


def find_videos(root: Path) -> list[tuple[str, str]]:
    """``(relative path, class name)`` for every video under ``root/<class name>/``."""
    return sorted(
        (str(p.relative_to(root)), p.relative_to(root).parts[0])
        for p in root.rglob("*")
        if p.suffix.lower() in VIDEO_SUFFIXES and len(p.relative_to(root).parts) > 1
    )


def prepare(
    data_root: str | Path,
    out: str | Path,
    *,
    list_file: str | Path | None = None,
    classes: Sequence[str] | None = None,
    short_side: int = 256,
    flow: bool = False,
    sample_rate: int = 24000,
    workers: int = 1,
) -> tuple[Path, list[str]]:
    """Extract every video and write the frame-folder list file.

    Args:
        data_root: directory holding the videos.
        out: output directory.
        list_file: ``path label`` list of videos; default: class sub-folders of ``data_root``.
        classes: class names for name labels in ``list_file``.
        short_side: frame short side.
        flow: write TV-L1 flow.
        sample_rate: audio rate.
        workers: parallel processes.

    Returns:
        ``(written list file, error messages of videos left out)``.

    Raises:
        RuntimeError: ``flow`` without OpenCV contrib (message says how to install it).
    """
    data_root, out = Path(data_root), Path(out)
    if flow and tvl1_factory() is None:
        raise RuntimeError(FLOW_MISSING)
    out.mkdir(parents=True, exist_ok=True)
    if list_file is not None:
        records, _ = parse_list_file(list_file, classes)
        videos = [(r.path, r.labels) for r in records]
        target = out / Path(list_file).name
    else:
        found = find_videos(data_root)
        names = sorted({name for _, name in found})
        write_classes(out / "classes.txt", names)
        videos = [(path, (names.index(name),)) for path, name in found]
        target = out / "list.txt"
    jobs = [
        (data_root / path, out / Path(path).with_suffix(""), short_side, flow, sample_rate)
        for path, _ in videos
    ]
    if workers > 1:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            results = pool.map(_job, jobs)
    else:
        results = [_job(job) for job in jobs]
    folders, errors = [], []
    for (path, labels), (frames, error) in zip(videos, results, strict=True):
        if error:
            errors.append(error)
        else:
            folder = Path(path).with_suffix("").as_posix()
            folders.append(VideoRecord(folder, labels, start_frame=1, end_frame=frames))
    write_list(target, folders)
    return target, errors


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", required=True, help="directory holding the videos")
    parser.add_argument("--out", required=True, help="output directory for frame folders")
    parser.add_argument("--list", help="'path label' list of videos (default: class folders)")
    parser.add_argument("--classes", help="classes.txt for name labels in --list")
    parser.add_argument("--short-side", type=int, default=256)
    parser.add_argument("--flow", action="store_true", help="TV-L1 flow (needs OpenCV contrib)")
    parser.add_argument("--sample-rate", type=int, default=24000)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    if args.flow and tvl1_factory() is None:
        print(FLOW_MISSING, file=sys.stderr)
        return 2
    classes = read_classes(args.classes) if args.classes else None
    target, errors = prepare(
        args.data_root, args.out, list_file=args.list, classes=classes,
        short_side=args.short_side, flow=args.flow, sample_rate=args.sample_rate,
        workers=args.workers,
    )  # fmt: skip
    for error in errors:
        print(f"left out: {error}", file=sys.stderr)
    written, _ = parse_list_file(target)
    print(f"wrote {target} ({len(written)} videos, {len(errors)} left out)")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
