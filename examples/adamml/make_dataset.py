"""Generate the AdaMML demo dataset: real h264 + AAC mp4 files in which modality choice matters.

Every class is a *look* (a coloured shape with its own motion) plus a *sound* (a tone pattern).
The class table is built so that, as in AdaMML Figure 1, the right modality depends on the
video and on the segment:

* classes that share a sound and differ only visually (RGB is needed, audio is not);
* classes that share a look and differ only by sound (audio is needed, RGB is not);
* a block of four classes crossing two looks with two sounds (both are needed).

Each clip is cut into ``--scenes`` equal scenes. In each scene the picture is *on* (object
visible), *empty* (background only) or *occluded* (a panel hides the object), and the sound
is *on*, *silent* or *noise* (broadband noise instead of the tone). Every state is visible in
the cheap policy inputs (a 48² frame, a 64×64 spectrogram), so a policy can learn which
modality to run per segment. ``informative.json`` records, per scene, whether each modality
is informative: its signature is present in the scene *and* the modality is needed to tell
the class from another class (see ``docs/data.md``).

Usage::

    python examples/adamml/make_dataset.py --out data/demo            # ~20 s on 2 cores
    python examples/adamml/make_dataset.py --out data/demo --classes 6 --train-per-class 10

Writes ``videos/{train,val,calib}/*.mp4``, ``train.txt``, ``val.txt``, ``calib.txt``
(``path label``), ``classes.txt`` and ``informative.json`` under ``--out``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import multiprocessing
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np
from data.lists import VideoRecord, write_classes, write_list

# (shape, RGB colour, motion) per look.
LOOKS = (
    ("disc", (230, 40, 40), "horizontal"),
    ("square", (40, 200, 60), "vertical"),
    ("triangle", (60, 90, 255), "circle"),
    ("ring", (240, 220, 40), "diagonal"),
    ("cross", (230, 50, 230), "horizontal"),
    ("bar", (40, 220, 230), "pulse"),
    ("diamond", (255, 140, 20), "circle"),
    ("disc", (245, 245, 245), "vertical"),
)
# (pattern, frequency Hz, second frequency Hz); all energy below 2 kHz so that the demo's
# 4 kHz spectrogram shows it.
SOUNDS = (
    ("steady", 300.0, 0.0),
    ("beeps4", 600.0, 0.0),
    ("steady", 900.0, 0.0),
    ("chirp", 400.0, 1200.0),
    ("beeps2", 1200.0, 0.0),
    ("alternate", 500.0, 1000.0),
    ("steady", 1500.0, 0.0),
    ("tremolo", 750.0, 0.0),
)
# (look, sound) per class, ordered so that a prefix of the table keeps every kind of pair:
# a shared-sound pair, a shared-look pair, the 2×2 cross, then one more pair of each kind.
CLASS_TABLE = (
    (0, 0), (1, 0),                  # same sound: visual decides
    (4, 2), (4, 3),                  # same look: sound decides
    (6, 6), (6, 7), (7, 6), (7, 7),  # 2 looks × 2 sounds: both needed
    (2, 1), (3, 1),                  # same sound
    (5, 4), (5, 5),                  # same look
)  # fmt: skip
VISUAL_STATES = ("on", "empty", "occluded")
# Training trains, calibration chooses (checkpoints, operating points), validation reports.
SPLITS = ("train", "val", "calib")
AUDIO_STATES = ("on", "silent", "noise")


@dataclass(frozen=True)
class DemoSpec:
    """Sizes of the generated set.

    Attributes:
        classes: number of classes (a prefix of ``CLASS_TABLE``, 2-12).
        train_per_class: training clips per class.
        val_per_class: validation clips per class (20 × 12 classes: one video is 0.42 points).
        calib_per_class: calibration clips per class (held back to choose checkpoints and the
            operating point).
        size: frame width and height (even).
        fps: frame rate.
        seconds: clip length.
        scenes: scenes per clip (match the training T so segments fall inside scenes).
        sample_rate: audio rate stored in the mp4.
        p_visual: probability that the picture is on in a scene.
        p_audio: probability that the sound is on in a scene.
        seed: everything derives from it.
    """

    classes: int = 12
    train_per_class: int = 24
    val_per_class: int = 20
    calib_per_class: int = 12
    size: int = 96
    fps: int = 8
    seconds: float = 10.0
    scenes: int = 5
    sample_rate: int = 16000
    p_visual: float = 0.6
    p_audio: float = 0.6
    seed: int = 0

    def __post_init__(self) -> None:
        if not 2 <= self.classes <= len(CLASS_TABLE):
            raise ValueError(f"classes must be in [2, {len(CLASS_TABLE)}], got {self.classes}")
        if self.size % 2 or self.size < 32:
            raise ValueError(f"size must be even and >= 32, got {self.size}")
        if self.scenes < 1 or self.seconds * self.fps < self.scenes:
            raise ValueError(f"scenes={self.scenes} needs at least one frame each")


def class_names(count: int) -> list[str]:
    """Readable class names, e.g. ``red_disc_steady300``."""
    colours = {
        (230, 40, 40): "red", (40, 200, 60): "green", (60, 90, 255): "blue",
        (240, 220, 40): "yellow", (230, 50, 230): "magenta", (40, 220, 230): "cyan",
        (255, 140, 20): "orange", (245, 245, 245): "white",
    }  # fmt: skip
    names = []
    for look, sound in CLASS_TABLE[:count]:
        shape, colour, _ = LOOKS[look]
        pattern, frequency, _ = SOUNDS[sound]
        names.append(f"{colours[colour]}_{shape}_{pattern}{int(frequency)}")
    return names


def needed_modalities(count: int) -> list[dict[str, bool]]:
    """Per class, whether each modality is needed to tell it from the other classes.

    Visual is needed when another class has the same sound; audio when another has the same
    look. (Classes with a unique look and sound need either, and are marked as needing both.)
    """
    table = CLASS_TABLE[:count]
    needed = []
    for look, sound in table:
        visual = any(s == sound and lk != look for lk, s in table)
        audio = any(lk == look and s != sound for lk, s in table)
        if not (visual or audio):
            visual = audio = True
        needed.append({"visual": visual, "audio": audio})
    return needed


def draw_scene_states(
    rng: np.random.Generator, spec: DemoSpec, needed: dict[str, bool]
) -> tuple[list[str], list[str]]:
    """Visual and audio state per scene; every needed modality is on in at least one scene."""
    visual = [
        "on" if rng.random() < spec.p_visual else str(rng.choice(VISUAL_STATES[1:]))
        for _ in range(spec.scenes)
    ]
    audio = [
        "on" if rng.random() < spec.p_audio else str(rng.choice(AUDIO_STATES[1:]))
        for _ in range(spec.scenes)
    ]
    for states, name in ((visual, "visual"), (audio, "audio")):
        if needed[name] and "on" not in states:
            states[int(rng.integers(spec.scenes))] = "on"
    return visual, audio


def _shape_mask(shape: str, dx: np.ndarray, dy: np.ndarray, radius: float) -> np.ndarray:
    if shape == "disc":
        return dx**2 + dy**2 <= radius**2
    if shape == "ring":
        distance = np.sqrt(dx**2 + dy**2)
        return (distance <= radius) & (distance >= 0.55 * radius)
    if shape == "square":
        return (np.abs(dx) <= 0.85 * radius) & (np.abs(dy) <= 0.85 * radius)
    if shape == "triangle":
        return (dy <= 0.8 * radius) & (dy >= 2 * np.abs(dx) - radius)
    if shape == "cross":
        arm = 0.35 * radius
        return ((np.abs(dx) <= arm) | (np.abs(dy) <= arm)) & (
            np.maximum(np.abs(dx), np.abs(dy)) <= radius
        )
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= 1.15 * radius
    if shape == "bar":
        return (np.abs(dx) <= 1.3 * radius) & (np.abs(dy) <= 0.4 * radius)
    raise ValueError(f"shape: unknown {shape!r}")


def _trajectory(
    motion: str, phase: np.ndarray, amplitude: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Object offset (dx, dy) from the centre and size factor over time; ``phase`` in radians."""
    zero, one = np.zeros_like(phase), np.ones_like(phase)
    if motion == "horizontal":
        return amplitude * np.sin(phase), zero, one
    if motion == "vertical":
        return zero, amplitude * np.sin(phase), one
    if motion == "circle":
        return amplitude * np.cos(phase), amplitude * np.sin(phase), one
    if motion == "diagonal":
        return amplitude * np.sin(phase), amplitude * np.sin(phase), one
    if motion == "pulse":
        return zero, zero, 1 + 0.35 * np.sin(2 * phase)
    raise ValueError(f"motion: unknown {motion!r}")


def render_video(
    rng: np.random.Generator, spec: DemoSpec, look: int, visual_states: Sequence[str]
) -> np.ndarray:
    """Frames of one clip: (N, size, size, 3) uint8."""
    size, num_frames = spec.size, round(spec.seconds * spec.fps)
    shape, colour, motion = LOOKS[look]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    # Muted, low-frequency textured background, different in every clip.
    base = rng.uniform(50, 140, size=3)
    waves = rng.uniform(0.5, 2.0, size=4) * 2 * np.pi / size
    texture = 18 * np.sin(waves[0] * xx + waves[1] * yy) + 12 * np.cos(
        waves[2] * xx - waves[3] * yy
    )
    background = np.clip(base[None, None, :] + texture[..., None] * rng.uniform(0.5, 1, 3), 0, 255)
    radius = size * rng.uniform(0.11, 0.15)
    amplitude = size * rng.uniform(0.16, 0.22)
    speed = rng.uniform(0.8, 1.2) * 2 * np.pi / spec.fps  # about one cycle per second
    phase = rng.uniform(0, 2 * np.pi) + speed * np.arange(num_frames)
    dxs, dys, scales = _trajectory(motion, phase, amplitude)
    tint = np.clip(np.array(colour) + rng.integers(-20, 21, 3), 0, 255)
    panel = rng.uniform(20, 60)
    frames = np.empty((num_frames, size, size, 3), dtype=np.uint8)
    scene_of = (np.arange(num_frames) * spec.scenes) // num_frames
    reach = amplitude + 1.6 * radius
    for n in range(num_frames):
        frame = background.copy()
        state = visual_states[scene_of[n]]
        if state != "empty":
            mask = _shape_mask(
                shape, xx - size / 2 - dxs[n], yy - size / 2 - dys[n], radius * scales[n]
            )
            frame[mask] = tint
        if state == "occluded":
            cover = (np.abs(xx - size / 2) <= reach) & (np.abs(yy - size / 2) <= reach)
            frame[cover] = panel + 10 * np.sin(xx[cover] / 3)[:, None]
        frames[n] = frame
    return frames


def render_audio(
    rng: np.random.Generator, spec: DemoSpec, sound: int, audio_states: Sequence[str]
) -> np.ndarray:
    """Mono waveform of one clip: (samples,) float32 in [-1, 1]."""
    rate = spec.sample_rate
    t = np.arange(round(spec.seconds * rate)) / rate
    pattern, frequency, second = SOUNDS[sound]
    jitter = rng.uniform(0.97, 1.03)
    f1, f2 = frequency * jitter, second * jitter
    start = rng.uniform(0, 1)
    if pattern == "steady":
        signal = np.sin(2 * np.pi * f1 * t)
    elif pattern in ("beeps2", "beeps4"):
        rate_hz = 2.0 if pattern == "beeps2" else 4.0
        signal = np.sin(2 * np.pi * f1 * t) * (((t + start) * rate_hz) % 1 < 0.5)
    elif pattern == "chirp":
        period = 0.5
        local = (t + start) % period
        signal = np.sin(2 * np.pi * (f1 * local + (f2 - f1) * local**2 / (2 * period)))
    elif pattern == "alternate":
        high = ((t + start) * 3.0) % 1 < 0.5
        signal = np.sin(2 * np.pi * np.where(high, f2, f1) * t)
    elif pattern == "tremolo":
        signal = np.sin(2 * np.pi * f1 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 8 * t))
    else:
        raise ValueError(f"pattern: unknown {pattern!r}")
    loudness = rng.uniform(0.25, 0.4)
    noise = rng.standard_normal(t.size)
    scene_of = (np.arange(t.size) * spec.scenes) // t.size
    states = np.asarray(audio_states)[scene_of]
    out = np.where(states == "on", loudness * signal, 0.0)
    out = np.where(states == "noise", 0.3 * noise, out)
    out += 0.003 * noise  # a faint noise floor: "silent" is quiet, not digital zero
    return np.clip(out, -1, 1).astype(np.float32)


def write_mp4(
    path: str | Path,
    frames: Iterable[np.ndarray],
    fps: int,
    audio: np.ndarray | None = None,
    sample_rate: int = 16000,
    *,
    gop: int | None = None,
    crf: int = 20,
) -> None:
    """Write an h264 (+ AAC) mp4 with PyAV.

    Args:
        path: output file.
        frames: (N, H, W, 3) uint8 array, or an iterable of (H, W, 3) uint8 frames; H, W even.
        fps: frame rate.
        audio: (samples,) float32 mono in [-1, 1], or ``None`` for a video-only file.
        sample_rate: audio rate.
        gop: keyframe interval in frames (default: one second).
        crf: x264 quality (lower is better).

    Raises:
        ValueError: a frame that is not (H, W, 3) uint8 with even H, W, or no frame at all.
    """
    iterator = iter(frames)
    first = next(iterator, None)
    if first is None or first.ndim != 3 or first.shape[-1] != 3 or first.dtype != np.uint8:
        shape = None if first is None else (first.shape, first.dtype)
        raise ValueError(f"frames: expected (N, H, W, 3) uint8, got frames of {shape}")
    if first.shape[0] % 2 or first.shape[1] % 2:
        raise ValueError(f"frames: h264 needs even H, W, got {first.shape[:2]}")
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        video.width, video.height = first.shape[1], first.shape[0]
        video.pix_fmt = "yuv420p"
        video.options = {
            "preset": "ultrafast", "crf": str(crf), "g": str(gop or fps), "threads": "1",
        }  # fmt: skip
        sound = None
        if audio is not None:
            sound = container.add_stream("aac", rate=sample_rate)
            sound.layout = "mono"
            sound.bit_rate = 32000
        for frame in itertools.chain([first], iterator):
            if frame.shape != first.shape:
                raise ValueError(f"frames: frame of shape {frame.shape} after {first.shape}")
            container.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(video.encode(None))
        if sound is not None and audio is not None:
            chunk = 1024
            for start in range(0, audio.size, chunk):
                piece = np.ascontiguousarray(audio[None, start : start + chunk], dtype=np.float32)
                block = av.AudioFrame.from_ndarray(piece, format="flt", layout="mono")
                block.sample_rate, block.pts = sample_rate, start
                container.mux(sound.encode(block))
            container.mux(sound.encode(None))


def _make_clip(job: tuple[DemoSpec, str, int, int, str]) -> tuple[str, dict[str, object]]:
    spec, split, index, label, out = job
    # One generator per clip, keyed by (seed, split, index): the output does not depend on
    # the number of worker processes.
    rng = np.random.default_rng([spec.seed, SPLITS.index(split), index])
    look, sound = CLASS_TABLE[label]
    needed = needed_modalities(spec.classes)[label]
    visual, audio = draw_scene_states(rng, spec, needed)
    relative = f"videos/{split}/c{label:02d}_{index:04d}.mp4"
    write_mp4(
        Path(out) / relative,
        render_video(rng, spec, look, visual),
        spec.fps,
        render_audio(rng, spec, sound, audio),
        spec.sample_rate,
    )
    length = spec.seconds / spec.scenes
    visual_info = [needed["visual"] and s == "on" for s in visual]
    audio_info = [needed["audio"] and s == "on" for s in audio]
    annotation = {
        "label": label,
        "scenes": [[round(i * length, 6), round((i + 1) * length, 6)] for i in range(spec.scenes)],
        "states": {"visual": visual, "audio": audio},
        "informative": {
            "rgb": visual_info, "rgbdiff": visual_info, "flow": visual_info, "audio": audio_info,
        },
    }  # fmt: skip
    return relative, annotation


def make_dataset(spec: DemoSpec, out: str | Path, workers: int = 2) -> dict[str, int]:
    """Write the demo set under ``out``; returns the number of clips per split.

    Args:
        spec: sizes and seed.
        out: output directory (created).
        workers: processes that render and encode clips.

    Returns:
        ``{"train": n, "val": m, "calib": k}``.
    """
    out = Path(out)
    for split in SPLITS:
        (out / "videos" / split).mkdir(parents=True, exist_ok=True)
    jobs = []
    sizes = (spec.train_per_class, spec.val_per_class, spec.calib_per_class)
    for split, per_class in zip(SPLITS, sizes, strict=True):
        for label in range(spec.classes):
            for k in range(per_class):
                jobs.append((spec, split, label * per_class + k, label, str(out)))
    if workers > 1:
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            results = pool.map(_make_clip, jobs, chunksize=8)
    else:
        results = [_make_clip(job) for job in jobs]
    names = class_names(spec.classes)
    videos = dict(results)
    for split in SPLITS:
        records = [VideoRecord(p, (v["label"],)) for p, v in videos.items() if f"/{split}/" in p]
        write_list(out / f"{split}.txt", records)
    write_classes(out / "classes.txt", names)
    sidecar = {
        "version": 1,
        "spec": asdict(spec),
        "classes": [
            {"name": name, "look": LOOKS[look][0], "sound": SOUNDS[sound][0], "needed": need}
            for name, (look, sound), need in zip(
                names, CLASS_TABLE, needed_modalities(spec.classes), strict=False
            )
        ],
        "videos": videos,
    }
    (out / "informative.json").write_text(json.dumps(sidecar, indent=1))
    return {split: sum(f"/{split}/" in p for p in videos) for split in SPLITS}



def generate(root: Path, log: Callable[[str], None] = print) -> None:
    """The default demo set into ``root`` (``train.py`` calls it when the set is missing)."""
    began = time.perf_counter()
    counts = make_dataset(DemoSpec(), root, workers=2)
    log(f"generated the demo set ({', '.join(f'{n} {s}' for s, n in counts.items())} mp4 "
        f"clips) in {root} in {time.perf_counter() - began:.0f} s")


def main(argv: Sequence[str] | None = None) -> None:
    defaults = DemoSpec()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="data/demo", help="output directory")
    parser.add_argument("--workers", type=int, default=2)
    for name, value in asdict(defaults).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    args = vars(parser.parse_args(argv))
    out, workers = args.pop("out"), args.pop("workers")
    spec = DemoSpec(**args)
    start = time.perf_counter()
    counts = make_dataset(spec, out, workers)
    print(
        f"wrote {counts['train']} train + {counts['val']} val + {counts['calib']} calib clips "
        f"({spec.classes} classes) "
        f"to {out} in {time.perf_counter() - start:.1f} s"
    )


if __name__ == "__main__":
    main()
