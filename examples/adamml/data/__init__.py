"""Data pipeline of the AdaMML example, one module per step (``docs/data.md``):

* :mod:`.config`: :class:`DataConfig`, the sizes of every input, and its presets;
* :mod:`.lists`: ``classes.txt`` and list files of both layouts (:class:`VideoRecord`);
* :mod:`.sampling`: TSN segment starts, frame indices, stacked indices, audio windows;
* :mod:`.decoding`: PyAV probing, decoding of sampled frames, audio resampling, frame folders;
* :mod:`.sources`: the one read path: a :class:`Source` (video file, frame folder, decode
  cache) gives frames, flow and audio windows; :func:`read_clip` gives :class:`Decoded`;
* :mod:`.transforms`: per-modality transforms as functions and callables with plain arguments,
  and :class:`InputTransforms`, which builds recognition and policy inputs from them;
* :mod:`.dataset`: :class:`VideoDataset`, :func:`collate`, :class:`SkipReport`;
* :mod:`.cache`: :class:`DecodeCache`, decoded videos kept on disk (``cache_dir=``);
* :mod:`.inspection`: the ``inspect`` command (``python examples/adamml/data inspect ...``).

With ``examples/adamml`` on ``sys.path``, ``import data`` gives every public name below.
"""

from .cache import CachedVideo, DecodeCache
from .config import DataConfig
from .dataset import SkipReport, VideoDataset, collate
from .decoding import (
    VIDEO_SUFFIXES,
    BadVideoError,
    MediaInfo,
    decode_all_frames,
    decode_audio,
    decode_video_frames,
    downscaled_size,
    frame_folder_audio,
    frame_folder_fps,
    open_media,
    probe_audio_rate,
    probe_media,
    read_frame_folder,
    resample_audio,
)
from .lists import VideoRecord, parse_list_file, parse_list_line, read_classes
from .sampling import (
    audio_windows,
    frame_indices,
    segment_centres,
    segment_starts,
    stacked_indices,
    window_indices,
    window_spans,
)
from .sources import (
    CachedSource,
    Decoded,
    FrameFolderSource,
    Source,
    VideoFileSource,
    open_source,
    read_clip,
    video_paths,
)
from .transforms import (
    FLOW_BOUND,
    IMAGENET_MEAN,
    IMAGENET_STD,
    FlowInput,
    InputTransforms,
    LogSpectrogram,
    PolicyInput,
    RGBDiffInput,
    RGBInput,
    SpatialParams,
    SpatialSampler,
    apply_spatial,
    flow_input,
    log_spectrogram,
    normalize,
    policy_input,
    policy_rows,
    rgb_input,
    rgbdiff_input,
    sample_spatial,
)

__all__ = [
    "FLOW_BOUND",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "VIDEO_SUFFIXES",
    "BadVideoError",
    "CachedSource",
    "CachedVideo",
    "DataConfig",
    "DecodeCache",
    "Decoded",
    "FlowInput",
    "FrameFolderSource",
    "InputTransforms",
    "LogSpectrogram",
    "MediaInfo",
    "PolicyInput",
    "RGBDiffInput",
    "RGBInput",
    "SkipReport",
    "Source",
    "SpatialParams",
    "SpatialSampler",
    "VideoDataset",
    "VideoFileSource",
    "VideoRecord",
    "apply_spatial",
    "audio_windows",
    "collate",
    "decode_all_frames",
    "decode_audio",
    "decode_video_frames",
    "downscaled_size",
    "flow_input",
    "frame_folder_audio",
    "frame_folder_fps",
    "frame_indices",
    "log_spectrogram",
    "normalize",
    "open_media",
    "open_source",
    "parse_list_file",
    "parse_list_line",
    "policy_input",
    "policy_rows",
    "probe_audio_rate",
    "probe_media",
    "read_classes",
    "read_clip",
    "read_frame_folder",
    "resample_audio",
    "rgb_input",
    "rgbdiff_input",
    "sample_spatial",
    "segment_centres",
    "segment_starts",
    "stacked_indices",
    "video_paths",
    "window_indices",
    "window_spans",
]
