"""What a path the user gave turned out to be, and why writing under one failed.

Both answer in words a user can act on: a directory or a device given where a
file was expected is named as such (not "does not exist"), and a failed write
says whether the disk is full, the folder read-only, or a file a directory.
Nothing here imports torch.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from nervana_lstm.errors import UsageError

__all__ = ["regular_file", "write_problem"]


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def regular_file(path: str | Path, what: str, expected: str) -> Path:
    """``path`` when it is a regular file (or a link to one) that exists.

    Otherwise a :class:`UsageError` that says what it is instead, e.g.
    ``checkpoint /dev/zero is a device, not a regular file; expected a .pt file``.
    """
    p = Path(path)
    try:
        mode = p.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        raise UsageError(f"{what} {p} does not exist; expected {expected}") from None
    except OSError as exc:
        raise UsageError(
            f"{what} {p} cannot be read ({exc.strerror}); expected {expected}"
        ) from None
    if stat.S_ISREG(mode):
        return p
    kind = _kind(mode)
    tail = "" if kind.startswith("not") or stat.S_ISDIR(mode) else ", not a regular file"
    raise UsageError(f"{what} {p} is {kind}{tail}; expected {expected}")


def write_problem(exc: OSError, path: str | Path) -> str:
    """Why writing ``path`` failed, and what would fix it, in one clause."""
    target = Path(path)
    folder = target.parent
    code = exc.errno
    if code in (errno.ENOSPC, errno.EDQUOT):
        return f"no space left on the disk holding {folder} (free some, or write elsewhere)"
    if code == errno.EROFS:
        return f"{folder} is on a read-only file system (write elsewhere)"
    if code in (errno.EACCES, errno.EPERM):
        return f"permission denied in {folder} (make it writable, or write elsewhere)"
    if code == errno.EISDIR or target.is_dir():
        return f"{target} is a directory (move it away, or write elsewhere)"
    if code == errno.ENOTDIR:
        return f"a part of {folder} is a file, not a directory"
    return os.strerror(code) if code else str(exc)
