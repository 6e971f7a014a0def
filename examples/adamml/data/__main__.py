"""``python examples/adamml/data inspect LIST --data-root DIR``: see :mod:`data.inspection`."""

import sys
from pathlib import Path


def _run() -> int:
    if sys.argv[1:2] != ["inspect"]:
        print("usage: python examples/adamml/data inspect LIST --data-root DIR [--out DIR]",
              file=sys.stderr)  # fmt: skip
        return 2
    # Run as a folder, Python puts this folder on sys.path; the package and the modality
    # registry are imported from the folder above it instead.
    sys.path[0] = str(Path(__file__).resolve().parents[1])
    from data.inspection import main

    return main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(_run())
