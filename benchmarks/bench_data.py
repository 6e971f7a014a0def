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

The loaders are timed together, round by round, and so are the two training epochs and the
two decodes of the long video; each figure is the median over the rounds and each ratio comes
with its spread in brackets (max - min of the per-round ratios).

Usage::

    python benchmarks/bench_data.py [--data-root data/demo] [--repeats 5] [--train-epochs 5]

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
from _timing import TimeStats, interleaved_times, ratio_text
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "adamml"))

import data as D
import make_dataset as M
from model import PRESETS, AdaMML


def loader_epoch(
    root: Path, workers: int, items: int, cache_dir: Path | None = None, split: str = "train"
) -> tuple[Callable[[], None], int]:
    """One pass of a ``DataLoader`` over the first ``items`` videos of ``split``, and their
    number."""
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

    return epoch, len(subset)


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


def with_cpu_time(function: Callable[[], None], seconds: list[float]) -> Callable[[], None]:
    """``function``, appending the CPU time of each call to ``seconds``."""

    def timed() -> None:
        began = cpu_used()
        function()
        seconds.append(cpu_used() - began)

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


def seek_times(path: Path, repeats: int) -> tuple[TimeStats, TimeStats]:
    """Seconds to decode the test segments of ``path`` with seeking, and without."""
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

    stats = interleaved_times(
        {"seeking": lambda: load(True), "whole": lambda: load(False)}, repeats
    )
    return stats["seeking"], stats["whole"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", help="demo set (default: generate one into a temp dir)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--items", type=int, default=96, help="items per timed epoch")
    parser.add_argument(
        "--train-epochs", type=int, default=5, help="timed training epochs of each kind (0: none)"
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
        loaders = {
            "serial": loader_epoch(root, 0, args.items),
            "parallel": loader_epoch(root, 2, args.items),
        }
        filling = fill_cache(root, cache)
        loaders |= {
            "cached": loader_epoch(root, 0, args.items, cache),
            "val": loader_epoch(root, 0, args.items, split="val"),
            "val cached": loader_epoch(root, 0, args.items, cache, "val"),
        }
        loading = interleaved_times({name: f for name, (f, _) in loaders.items()}, args.repeats)
        rates = {name: items / loading[name].median for name, (_, items) in loaders.items()}
        epochs, cpu = {}, {"decoding": [], "cached": []}
        if args.train_epochs:
            # The training step gets the cores train.py gives it; the loaders above had one.
            torch.set_num_threads(threads)
            runs = {
                name: with_cpu_time(training_epoch(root, c), cpu[name])
                for name, c in (("decoding", None), ("cached", cache))
            }
            epochs = interleaved_times(runs, args.train_epochs, warmup=0)
            torch.set_num_threads(1)
        cache_mb = sum(f.stat().st_size for f in cache.iterdir()) / 2**20
        video = Path(tmp) / "long720p.mp4"
        write_long_video(video)
        seeking, whole = seek_times(video, args.repeats)
    serial = loading["serial"]
    print(
        f"median of {args.repeats} interleaved rounds ({args.train_epochs} for the training "
        "epochs); ratios with the spread of the per-round ratios in brackets"
    )
    print()
    print("| measurement | value | ratio |")
    print("|---|---|---|")
    print(f"| demo set, DataLoader 0 workers | {rates['serial']:.1f} items/s | 1.00 |")
    print(
        f"| demo set, DataLoader 2 workers | {rates['parallel']:.1f} items/s | "
        f"{ratio_text(serial, loading['parallel'], '.2f')} |"
    )
    print(
        f"| demo set, DataLoader 0 workers, from the decode cache | {rates['cached']:.1f} "
        f"items/s | {ratio_text(serial, loading['cached'], '.2f')} |"
    )
    print(
        f"| demo val set (T=10), 0 workers: decoding ÷ from the cache | {rates['val']:.1f} ÷ "
        f"{rates['val cached']:.1f} items/s | "
        f"{ratio_text(loading['val'], loading['val cached'], '.2f')} |"
    )
    print(
        f"| filling the decode cache (train + val, once) | {filling:.1f} s, {cache_mb:.0f} MB | |"
    )
    if epochs:
        fresh, cached = epochs["decoding"], epochs["cached"]
        fresh_cpu, cached_cpu = TimeStats.of(cpu["decoding"]), TimeStats.of(cpu["cached"])
        for what, (decoding, from_cache) in (
            ("demo training epoch, 1 worker: decoding ÷ from the cache", (fresh, cached)),
            ("the same in CPU seconds (process + worker)", (fresh_cpu, cached_cpu)),
        ):
            share = 1 - from_cache.median / decoding.median
            print(
                f"| {what} | {decoding.median:.1f} s ÷ {from_cache.median:.1f} s | "
                f"{ratio_text(from_cache, decoding, '.2f')} (decoding: {share:.0%}) |"
            )
    print(
        f"| 60 s 720p, T=10 × 8 frames: seeking ÷ decoding from the start | "
        f"{seeking.median:.2f} s ÷ {whole.median:.2f} s | "
        f"{ratio_text(seeking, whole, '.2f')} (target ≤ 0.3) |"
    )


if __name__ == "__main__":
    main()
