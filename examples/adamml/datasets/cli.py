"""The command line: one sub-command per recipe, ``python examples/adamml/datasets --help``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from .activitynet import build_activitynet, read_activitynet_json
from .common import Built, InputError, read_class_file, scan_videos, summary, write_outputs
from .folders import build_folders, has_split_folders
from .kinetics_sounds import KINETICS_SOUNDS_CLASSES, build_kinetics_sounds, read_kinetics_csv

PROG = "python examples/adamml/datasets"


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Write the list files and classes.txt of the paper's datasets for train.py.",
        epilog="Writes OUT/{train,val}.txt (.csv when a path has a space), OUT/classes.txt, "
        "OUT/missing.txt and OUT/unknown.txt.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="DATASET")

    def command(name: str, summary: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=summary, description=summary)
        sub.add_argument(
            "--data-root",
            type=Path,
            required=True,
            help="folder holding the videos; list paths are relative to it",
        )
        sub.add_argument(
            "--out", type=Path, help="folder for the lists and classes.txt (default: --data-root)"
        )
        return sub

    kinetics = command(
        "kinetics-sounds",
        "Kinetics-400 CSVs + clips -> the 31 Kinetics-Sounds classes (AdaMML §4.1)",
    )
    kinetics.add_argument(
        "--annotations",
        type=Path,
        nargs="+",
        required=True,
        metavar="CSV",
        help="Kinetics-400 annotation CSVs (train.csv validate.csv ...); rows "
        "go to train.txt or val.txt by their split column, test rows are left "
        "out",
    )
    activitynet = command(
        "activitynet",
        "ActivityNet v1.3 JSON + videos -> untrimmed-video lists with every label of a video",
    )
    activitynet.add_argument("--json", type=Path, required=True, help="activity_net.v1-3.min.json")
    activitynet.add_argument(
        "--classes",
        type=Path,
        help="fix the class order with this classes.txt (default: sorted labels of the JSON)",
    )
    folders = command(
        "folders",
        "one folder per class (FCVID, Mini-Sports1M, your own videos); "
        "train/ and val/ sub-folders give the split, else it is drawn",
    )
    folders.add_argument(
        "--val-fraction",
        type=float,
        help="share of each class drawn for validation (default 0.2); not with "
        "train/ and val/ sub-folders",
    )
    folders.add_argument("--seed", type=int, default=0, help="seed of the drawn split")
    folders.add_argument(
        "--classes",
        type=Path,
        help="fix the classes and their order with this classes.txt (default: sorted folder names)",
    )
    return parser, parser.parse_args(argv)


def build(args: argparse.Namespace, parser: argparse.ArgumentParser) -> Built:
    """Read the inputs of ``args.command`` and match them with the videos under the data root."""
    root: Path = args.data_root
    if args.command == "kinetics-sounds":
        rows = [row for path in args.annotations for row in read_kinetics_csv(path)]
        return build_kinetics_sounds(rows, scan_videos(root), KINETICS_SOUNDS_CLASSES)
    classes = read_class_file(args.classes) if args.classes else None
    if args.command == "activitynet":
        return build_activitynet(read_activitynet_json(args.json), scan_videos(root), classes)
    given_split = has_split_folders(root)
    if given_split and args.val_fraction is not None:
        parser.error(f"--val-fraction: {root} already has train/ and val/ sub-folders")
    val_fraction = 0.2 if args.val_fraction is None else args.val_fraction
    if not 0.0 <= val_fraction < 1.0:
        parser.error(f"--val-fraction must be in [0, 1), got {val_fraction}")
    return build_folders(
        scan_videos(root),
        given_split=given_split,
        val_fraction=val_fraction,
        seed=args.seed,
        classes=classes,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run one sub-command; 0 when the lists were written (argparse exits with 2 on bad input)."""
    parser, args = parse_args(argv)
    if not args.data_root.is_dir():
        parser.error(f"--data-root {args.data_root}: not a directory")
    try:
        built = build(args, parser)
    except InputError as error:
        parser.error(str(error))
    if not built.splits["train"]:
        parser.error(
            f"no training video found under {args.data_root} "
            f"({len(built.missing)} missing); check --data-root"
        )
    out = args.out or args.data_root
    try:
        lists = write_outputs(built, out)
    except (OSError, ValueError) as error:
        parser.error(f"--out {out}: cannot write: {error}")
    print(f"{args.command}: wrote {', '.join(map(str, lists))}, {out / 'classes.txt'}")
    print(summary(built, out))
    return 0
