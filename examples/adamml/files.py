"""Atomic file writes: a reader, a crash or a kill never sees half a file.

Used for everything the examples write that something else reads back: list files and
``classes.txt``, ``config.json`` and checkpoints of a run, decode-cache entries, results JSON.
Each write goes to a temporary file beside the target, then ``os.replace`` renames it over the
target in one step, so the target holds either the old content or the new one.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(file)`` on a new temporary file beside ``path``, then rename it over ``path``.

    The temporary name is unique per call (the process id and a random token), so processes
    that write the same target at once (DataLoader workers, torchrun ranks) never share one;
    it is removed when ``write`` or the rename fails, and the error is raised.

    Args:
        path: the file to (re)place; its folder must exist.
        write: writes the content to the binary file object it is given.

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "numbers.bin"
        >>> atomic_write(target, lambda file: file.write(bytes([1, 2, 3])))
        >>> target.read_bytes()
        b'\\x01\\x02\\x03'
    """
    path = Path(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    # Not tempfile.mkstemp: its files are private (0600), and lists and runs are often shared;
    # os.open with 0o666 gives the permissions of any new file under the umask.
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` as UTF-8, atomically (see :func:`atomic_write`).

    Line ends are written as given (``\\n`` stays ``\\n`` on every platform).

    Example:
        >>> import tempfile
        >>> target = Path(tempfile.mkdtemp()) / "classes.txt"
        >>> atomic_write_text(target, "bowling\\nsinging\\n")
        >>> target.read_text().splitlines()
        ['bowling', 'singing']
    """
    atomic_write(path, lambda file: file.write(text.encode("utf-8")))
