"""Write the list files and classes.txt of the paper's datasets for train.py.

One recipe per source (AdaMML §4.1 and appendix A), one module each:

* :mod:`.kinetics_sounds`: Kinetics-400 annotation CSVs + downloaded clips;
* :mod:`.activitynet`: the ActivityNet v1.3 annotation JSON + videos (multi-label lines);
* :mod:`.folders`: one folder per class (FCVID, Mini-Sports1M, your own videos);
* :mod:`.common`: scanning the videos and writing the outputs; :mod:`.cli`: the command line.

::

    python examples/adamml/datasets kinetics-sounds --data-root k400/videos \\
        --annotations k400/train.csv k400/validate.csv --out lists/kinetics-sounds
    python examples/adamml/datasets activitynet --data-root anet/videos \\
        --json activity_net.v1-3.min.json --out lists/activitynet
    python examples/adamml/datasets folders --data-root videos/ --val-fraction 0.25 --seed 0

Each writes, under ``--out`` (default: ``--data-root``): ``train.txt`` and ``val.txt`` with
``path label`` lines (paths relative to ``--data-root``, integer labels, ``3,7`` for several
labels), ``classes.txt`` (one name per line, line order = label index), ``missing.txt`` (clips
the annotations name but the folder lacks) and ``unknown.txt`` (labels that could not be
placed). Labels are written as integers because class names contain spaces, which the
whitespace-separated list format cannot hold; paths that contain whitespace make every list a
CSV file (``train.csv``, ``val.csv``), the one list format that can hold them (docs/data.md).
The lists are written by :func:`data.lists.write_list`, the writer beside the reader.

Missing clips and unknown labels are counted, listed and left out; nothing is written until
every input has been read, and every file is replaced atomically. Bad input (a missing file,
malformed JSON, wrong CSV columns) stops with one line naming the file and line, exit status 2.

With ``examples/adamml`` on ``sys.path``, ``import datasets`` gives every public name below
(a Hugging Face ``datasets`` installed in the same environment is shadowed while it is).
"""

from .activitynet import (
    ACTIVITYNET_SUBSETS,
    ActivityNetVideo,
    build_activitynet,
    index_activitynet_videos,
    read_activitynet_json,
)
from .cli import main
from .common import Built, InputError, class_key, pick, scan_videos, summary, write_outputs
from .folders import build_folders, class_folders, has_split_folders, split_class
from .kinetics_sounds import (
    KINETICS_SOUNDS_CLASSES,
    KineticsRow,
    build_kinetics_sounds,
    index_kinetics_clips,
    read_kinetics_csv,
)

__all__ = [
    "ACTIVITYNET_SUBSETS",
    "KINETICS_SOUNDS_CLASSES",
    "ActivityNetVideo",
    "Built",
    "InputError",
    "KineticsRow",
    "build_activitynet",
    "build_folders",
    "build_kinetics_sounds",
    "class_folders",
    "class_key",
    "has_split_folders",
    "index_activitynet_videos",
    "index_kinetics_clips",
    "main",
    "pick",
    "read_activitynet_json",
    "read_kinetics_csv",
    "scan_videos",
    "split_class",
    "summary",
    "write_outputs",
]
