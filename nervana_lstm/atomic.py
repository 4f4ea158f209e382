"""Write files so a reader sees the old version or the new one, never half of either.

Every file the toolkit writes for a user (checkpoints, run configs, metrics,
plots, benchmark reports, example data) goes through :func:`atomic_path`: the
content is written to a temp file beside the target and renamed over it, and a
failure removes the temp file and leaves the target as it was.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "ordinary_file_mode", "write_bytes_atomic", "write_text_atomic"]


def ordinary_file_mode() -> int:
    """``0o666`` less the umask: what ``open(path, "w")`` would give.

    ``mkstemp`` makes its files 0600; the toolkit's outputs are for whoever may
    read the folder they are in, not only their owner.
    """
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(path: Path | str, suffix: str = ".tmp", fsync: bool = False) -> Iterator[Path]:
    """Yield a temp path beside ``path``; rename it over ``path`` when the block succeeds.

    ``suffix`` lets writers that pick a format from the name (matplotlib) see the
    right one. With ``fsync`` the data reaches the disk before the rename.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    tmp = Path(name)
    try:
        os.fchmod(fd, ordinary_file_mode())
        os.close(fd)
        yield tmp
        if fsync:
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: Path | str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text_atomic(path: Path | str, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
