"""Data-pipeline throughput of the AdaMML example (the package examples/adamml/data/).

Measures, in one run:

* items per second through a ``DataLoader`` with 0 and 2 workers on the demo set
  (``DataConfig.demo()``, training sampling and augmentation);
* the same with 0 workers from the decode cache (``VideoDataset(cache_dir=...)``), for
  training draws and for the test draws of validation (T = 10), and the time to fill it;
* a demo training epoch (the demo AdaMML, forward + backward + SGD on batches of 8, one
  DataLoader worker as ``train.py`` has by default) decoding every mp4 vs from the cache, in
  wall and in CPU seconds: the share of an epoch that decoding costs;
* the time to decode the T = 10 test segments (8 frames, stride 4) of a 60 s 720p h264 video
  with seeking, divided by the time to decode it from the start without seeking (target
  <= 0.3). The video (30 fps, one keyframe per second, as phone cameras write) is generated
  into a temporary directory.

Usage::

    python benchmarks/bench_data.py [--data-root data/demo] [--repeats 3] [--train-epochs 1]

Prints one markdown table.
"""

from __future__ import annotations

import os

# As in train.py: spinning OpenMP threads collapse when a DataLoader worker shares the cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from _timing import best_times
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "adamml"))

import data as D
import make_dataset as M
from model import PRESETS, AdaMML


def loader_items_per_second(
    root: Path,
    workers: int,
    repeats: int,
    items: int,
    cache_dir: Path | None = None,
    split: str = "train",
) -> float:
    dataset = D.VideoDataset(
        root / f"{split}.txt", root, D.DataConfig.demo(), train=split == "train",
        cache_dir=cache_dir,
    )  # fmt: skip
    subset = torch.utils.data.Subset(dataset, range(min(items, len(dataset))))

    def epoch() -> None:
        loader = DataLoader(
            subset, batch_size=8, shuffle=True, num_workers=workers, collate_fn=D.collate
        )
        for _ in loader:
            pass

    return len(subset) / best_times([epoch], repeats)[0]


def fill_cache(root: Path, cache_dir: Path) -> float:
    """Seconds to decode every train and val video into ``cache_dir`` (and the val draws)."""
    began = time.perf_counter()
    for split in ("train", "val"):
        dataset = D.VideoDataset(
            root / f"{split}.txt", root, D.DataConfig.demo(), train=split == "train",
            cache_dir=cache_dir,
        )  # fmt: skip
        for index in range(len(dataset)):
            dataset[index]
    return time.perf_counter() - began


def training_epoch(root: Path, cache_dir: Path | None) -> Callable[[], None]:
    """One epoch of the demo AdaMML over the train set: forward, backward, SGD step."""
    classes = D.read_classes(root / "classes.txt")
    config = D.DataConfig.demo()
    dataset = D.VideoDataset(
        root / "train.txt", root, config, train=True, classes=classes, cache_dir=cache_dir
    )
    torch.manual_seed(0)
    net = AdaMML(config.modalities, len(classes), PRESETS["demo"])
    net = net.to(memory_format=torch.channels_last)
    optimiser = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    batch_size = PRESETS["demo"].batch_size

    def epoch() -> None:
        loader = DataLoader(
            dataset, batch_size=batch_size, shuffle=True, num_workers=1,
            collate_fn=D.collate, drop_last=True,
        )  # fmt: skip
        for batch in loader:
            inputs = {k: v for k, v in batch.items() if isinstance(v, torch.Tensor)}
            loss = F.cross_entropy(net(inputs).logits, inputs["label"])
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()

    return epoch


def cpu_used() -> float:
    """CPU seconds of this process and of the DataLoader workers it has reaped.

    On cores shared with other jobs, wall time measures their load as much as ours; CPU time
    counts only the work of this process and its workers.
    """
    own, workers = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime


def with_cpu_time(function: Callable[[], None], least: list[float]) -> Callable[[], None]:
    """``function``, keeping the least CPU time of its calls in ``least[0]``."""

    def timed() -> None:
        began = cpu_used()
        function()
        least[0] = min(least[0], cpu_used() - began)

    return timed


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
    parser.add_argument(
        "--train-epochs", type=int, default=1, help="timed training epochs of each kind (0: none)"
    )
    args = parser.parse_args()
    if args.repeats < 1 or args.items < 1 or args.train_epochs < 0:
        parser.error(
            f"--repeats, --items, --train-epochs: expected >= 1, >= 1, >= 0, got "
            f"{args.repeats}, {args.items}, {args.train_epochs}"
        )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.data_root) if args.data_root else Path(tmp) / "demo"
        if not args.data_root:
            M.make_dataset(M.DemoSpec(), root)
        cache = Path(tmp) / "cache"
        serial = loader_items_per_second(root, 0, args.repeats, args.items)
        parallel = loader_items_per_second(root, 2, args.repeats, args.items)
        filling = fill_cache(root, cache)
        from_cache = loader_items_per_second(root, 0, args.repeats, args.items, cache)
        val_fresh = loader_items_per_second(root, 0, args.repeats, args.items, split="val")
        val_cached = loader_items_per_second(root, 0, args.repeats, args.items, cache, "val")
        epochs, cpu = [], [[float("inf")], [float("inf")]]
        if args.train_epochs:
            # The training step gets the cores train.py gives it; the loaders above had one.
            torch.set_num_threads(threads)
            runs = [
                with_cpu_time(training_epoch(root, c), t)
                for c, t in zip((None, cache), cpu, strict=True)
            ]
            epochs = best_times(runs, args.train_epochs, warmup=0)
            torch.set_num_threads(1)
        cache_mb = sum(f.stat().st_size for f in cache.iterdir()) / 2**20
        video = Path(tmp) / "long720p.mp4"
        write_long_video(video)
        seeking, whole = seek_ratio(video, args.repeats)
    print("| measurement | value | ratio |")
    print("|---|---|---|")
    print(f"| demo set, DataLoader 0 workers | {serial:.1f} items/s | 1.00 |")
    print(f"| demo set, DataLoader 2 workers | {parallel:.1f} items/s | {parallel / serial:.2f} |")
    print(
        f"| demo set, DataLoader 0 workers, from the decode cache | {from_cache:.1f} items/s | "
        f"{from_cache / serial:.2f} |"
    )
    print(
        f"| demo val set (T=10), 0 workers: decoding ÷ from the cache | {val_fresh:.1f} ÷ "
        f"{val_cached:.1f} items/s | {val_cached / val_fresh:.2f} |"
    )
    print(
        f"| filling the decode cache (train + val, once) | {filling:.1f} s, {cache_mb:.0f} MB | |"
    )
    if epochs:
        fresh, cached = epochs
        print(
            f"| demo training epoch, 1 worker: decoding ÷ from the cache | {fresh:.1f} s ÷ "
            f"{cached:.1f} s | {cached / fresh:.2f} (decoding: {1 - cached / fresh:.0%}) |"
        )
        print(
            f"| the same in CPU seconds (process + worker) | {cpu[0][0]:.1f} s ÷ "
            f"{cpu[1][0]:.1f} s | {cpu[1][0] / cpu[0][0]:.2f} (decoding: "
            f"{1 - cpu[1][0] / cpu[0][0]:.0%}) |"
        )
    print(
        f"| 60 s 720p, T=10 × 8 frames: seeking ÷ decoding from the start | "
        f"{seeking:.2f} s ÷ {whole:.2f} s | {seeking / whole:.2f} (target ≤ 0.3) |"
    )


if __name__ == "__main__":
    main()
