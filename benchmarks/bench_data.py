"""Data-pipeline throughput of the AdaMML example (the package examples/adamml/data/).

Measures, in one run:

* items per second through a ``DataLoader`` with 0 and 2 workers on the demo set
  (``DataConfig.demo()``, training sampling and augmentation);
* the time to decode the T = 10 test segments (8 frames, stride 4) of a 60 s 720p h264 video
  with seeking, divided by the time to decode it from the start without seeking (target
  <= 0.3). The video (30 fps, one keyframe per second, as phone cameras write) is generated
  into a temporary directory.

Usage::

    python benchmarks/bench_data.py [--data-root data/demo] [--repeats 3]

Prints one markdown table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from _timing import best_times
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "adamml"))

import data as D
import make_dataset as M


def loader_items_per_second(root: Path, workers: int, repeats: int, items: int) -> float:
    dataset = D.VideoDataset(root / "train.txt", root, D.DataConfig.demo(), train=True)
    subset = torch.utils.data.Subset(dataset, range(min(items, len(dataset))))

    def epoch() -> None:
        loader = DataLoader(
            subset, batch_size=8, shuffle=True, num_workers=workers, collate_fn=D.collate
        )
        for _ in loader:
            pass

    return len(subset) / best_times([epoch], repeats)[0]


def write_long_video(path: Path, seconds: int = 60, fps: int = 30) -> None:
    """A 1280x720 clip with moving texture (so h264 has real work) and a tone track."""
    height, width = 720, 1280
    yy, xx = np.mgrid[0:height, 0 : width + 2 * fps * seconds].astype(np.float32)
    canvas = 127 + 60 * np.sin(xx / 23) * np.cos(yy / 17) + 40 * np.sin((xx + yy) / 71)
    canvas = np.repeat(canvas.clip(0, 255).astype(np.uint8)[..., None], 3, axis=-1)
    canvas[..., 1] //= 2
    frames = (canvas[:, 2 * n : 2 * n + width] for n in range(fps * seconds))
    rate = 48000
    t = np.arange(seconds * rate) / rate
    M.write_mp4(path, frames, fps, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate,
                gop=fps, crf=23)  # fmt: skip


def seek_ratio(path: Path, repeats: int) -> tuple[float, float]:
    config = D.DataConfig.paper()
    with D.open_media(path) as container:
        info = D.probe_media(container)
    starts = D.segment_starts(info.num_frames, 10, config.span, train=False)
    indices = D.frame_indices(
        starts, config.frames_per_segment, config.frame_stride, info.num_frames
    )
    wanted = indices.reshape(-1).tolist()

    def load(seek: bool) -> None:
        with D.open_media(path) as container:
            D.decode_video_frames(container, wanted, seek=seek, short_side=config.test_resize)

    seeking, whole = best_times([lambda: load(True), lambda: load(False)], repeats)
    return seeking, whole


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", help="demo set (default: generate one into a temp dir)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--items", type=int, default=96, help="items per timed epoch")
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.data_root) if args.data_root else Path(tmp) / "demo"
        if not args.data_root:
            M.make_dataset(M.DemoSpec(), root)
        serial = loader_items_per_second(root, 0, args.repeats, args.items)
        parallel = loader_items_per_second(root, 2, args.repeats, args.items)
        video = Path(tmp) / "long720p.mp4"
        write_long_video(video)
        seeking, whole = seek_ratio(video, args.repeats)
    print("| measurement | value | ratio |")
    print("|---|---|---|")
    print(f"| demo set, DataLoader 0 workers | {serial:.1f} items/s | 1.00 |")
    print(f"| demo set, DataLoader 2 workers | {parallel:.1f} items/s | {parallel / serial:.2f} |")
    print(
        f"| 60 s 720p, T=10 × 8 frames: seeking ÷ decoding from the start | "
        f"{seeking:.2f} s ÷ {whole:.2f} s | {seeking / whole:.2f} (target ≤ 0.3) |"
    )


if __name__ == "__main__":
    main()
