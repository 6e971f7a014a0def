"""``python examples/adamml/datasets DATASET ...``: see :mod:`datasets.cli`."""

import sys
from pathlib import Path


def _run() -> int:
    # Run as a folder, Python puts this folder on sys.path; the package and the data package
    # it writes lists with are imported from the folder above it instead.
    sys.path[0] = str(Path(__file__).resolve().parents[1])
    from datasets.cli import main

    return main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(_run())
