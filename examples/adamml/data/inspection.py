"""``inspect``: decode every listed video and report what the loader sees.

    python examples/adamml/data inspect LIST --data-root DIR [--preset demo] [--out DIR]

prints, per video, duration, fps, size, audio rate, the tensor shapes and any warning, then a
summary; ``--out`` writes ``inspect.png`` with the first video's sampled frames and
spectrograms. The exit status is 1 when a video or list line was skipped.
"""

from __future__ import annotations

import argparse
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from modalities import MODALITIES, parse_modalities

from .config import DataConfig
from .dataset import VideoDataset
from .decoding import (
    BadVideoError,
    frame_folder_audio,
    frame_folder_fps,
    open_media,
    probe_audio_rate,
    probe_media,
)
from .lists import VideoRecord, read_classes


def describe(dataset: VideoDataset, record: VideoRecord) -> tuple[str, dict[str, Any] | None]:
    """One line about ``record`` and its item, or a ``SKIP`` line and ``None``."""
    path = dataset.data_root / record.path
    try:
        if record.is_frame_folder:
            assert record.start_frame is not None and record.end_frame is not None
            frames = record.end_frame - record.start_frame + 1
            audio = frame_folder_audio(path)
            rate: int | None = None
            if audio is not None:
                with open_media(audio) as container:
                    rate = probe_audio_rate(container)
            fps = frame_folder_fps(path, dataset.config.frame_folder_fps)
            head = f"{frames / fps:.2f} s, {fps:.2f} fps, {frames} frames, audio {rate} Hz"
        else:
            with open_media(path) as container:
                info = probe_media(container)
            head = (
                f"{info.duration:.2f} s, {info.fps:.2f} fps, {info.num_frames} frames, "
                f"{info.width}x{info.height}, audio {info.audio_rate} Hz"
            )
        item = dataset.load(record)
    except BadVideoError as error:
        return f"SKIP {record.path} ({record.line}): {error}", None
    shapes = ", ".join(
        f"{k} {tuple(v.shape)}" for k, v in item.items() if isinstance(v, torch.Tensor)
    )
    issues = "".join(f" WARNING {issue}" for _, issue in item["issues"])
    return f"{record.path}: {head}; {shapes}{issues}", item


def plot(item: Mapping[str, Any], config: DataConfig, out: Path) -> Path:
    """Write ``out/inspect.png``: the middle frame of each segment's RGB, and its spectrogram."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rgb = item.get("rgb")
    # The audio modality: the registry's one input read from the audio track.
    audio = next((item[m] for m in config.modalities if MODALITIES[m].stream == "audio"), None)
    segments = (audio if audio is not None else rgb).shape[0]  # type: ignore[union-attr]
    rows = int(rgb is not None) + int(audio is not None)
    fig, axes = plt.subplots(rows, segments, figsize=(2 * segments, 2.2 * rows), squeeze=False)
    mean = torch.tensor(config.mean).view(3, 1, 1)
    std = torch.tensor(config.std).view(3, 1, 1)
    row = 0
    if rgb is not None:
        for t in range(segments):
            frame = (rgb[t, rgb.shape[1] // 2] * std + mean).clamp(0, 1).permute(1, 2, 0)
            axes[row, t].imshow(frame.numpy())
            axes[row, t].set_title(f"segment {t}", fontsize=8)
            axes[row, t].axis("off")
        row += 1
    if audio is not None:
        for t in range(segments):
            axes[row, t].imshow(audio[t, 0].numpy(), origin="lower", aspect="auto")
            axes[row, t].set_xlabel("time", fontsize=7)
            axes[row, t].set_ylabel("frequency bin", fontsize=7)
            axes[row, t].tick_params(labelsize=6)
    fig.suptitle(str(item["video_id"]), fontsize=9)
    fig.tight_layout()
    out.mkdir(parents=True, exist_ok=True)
    target = out / "inspect.png"
    fig.savefig(target, dpi=100)
    plt.close(fig)
    return target


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``inspect`` on ``argv`` (without the word ``inspect``); returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python examples/adamml/data inspect",
        description="Decode every listed video and report what the loader sees.",
    )
    parser.add_argument("list_file", type=Path)
    parser.add_argument("--data-root", required=True, type=Path)
    parser.add_argument("--classes", help="classes.txt (default: beside the list file)")
    parser.add_argument("--out", help="directory for inspect.png (sampled frames, spectrogram)")
    parser.add_argument("--preset", choices=["paper", "demo"], default="paper")
    parser.add_argument("--modalities", default="rgb,audio")
    parser.add_argument("--limit", type=int, default=None, help="inspect only the first N")
    args = parser.parse_args(argv)
    try:
        modalities = parse_modalities(args.modalities)
    except ValueError as error:
        parser.error(f"--{error}")
    for flag, path in (("list_file", args.list_file), ("--data-root", args.data_root)):
        if not path.exists():
            parser.error(f"{flag}: {path} does not exist")
    classes_path = Path(args.classes or args.list_file.with_name("classes.txt"))
    if args.classes and not classes_path.exists():
        parser.error(f"--classes: {classes_path} does not exist")
    classes = read_classes(classes_path) if classes_path.exists() else None
    preset = DataConfig.paper if args.preset == "paper" else DataConfig.demo
    config = preset(modalities=modalities)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            dataset = VideoDataset(
                args.list_file, args.data_root, config, train=False, classes=classes
            )
        except ValueError as error:
            parser.error(str(error))
    for message in caught:
        print(f"WARNING {message.message}")
    records = dataset.records[: args.limit]
    skipped, issues, first = 0, Counter[str](), None
    for record in records:
        line, item = describe(dataset, record)
        print(line)
        if item is None:
            skipped += 1
            continue
        issues.update(issue for _, issue in item["issues"])
        first = first or item
    summary = f"{len(records) - skipped}/{len(records)} videos load, {skipped} skipped"
    summary += f", {len(dataset.list_errors)} malformed list lines"
    summary += "".join(f", {count} {issue}" for issue, count in sorted(issues.items()))
    print(summary)
    if args.out and first is not None:
        print(f"wrote {plot(first, config, Path(args.out))}")
    return 1 if skipped or dataset.list_errors else 0
