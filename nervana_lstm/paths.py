"""What a path the user gave turned out to be, reading it safely, and why writing under one failed.

All answer in words a user can act on: a directory or a device given where a
file was expected is named as such (not "does not exist"), and a failed write
says whether the disk is full, the folder read-only, or a file a directory.
A path given as a file may name anything: a directory, ``/dev/zero`` (endless),
a FIFO (a read waits for a writer that may never come), a socket; each is
refused by what it is, before it is read::

    missing          "... does not exist; expected a file"
    a directory      "... is a directory; expected a file"
    anything else    "... is a named pipe (FIFO), not a regular file; expected a file"
    too large        "... is 12.0 MiB; at most 1.0 MiB is read"

:func:`read_bytes` opens the file without blocking (a FIFO cannot hold the open)
and checks it again on the open descriptor, so a path swapped between the check
and the read is caught too. Nothing here imports torch.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from nervana_lstm.errors import UsageError

__all__ = ["read_bytes", "read_text", "regular_file", "write_problem"]


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


def regular_file(path: str | Path, what: str, expected: str = "a file") -> Path:
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
    raise _refused(p, what, mode, expected)


def _refused(path: Path, what: str, mode: int, expected: str) -> UsageError:
    kind = _kind(mode)
    tail = "" if kind.startswith("not") or stat.S_ISDIR(mode) else ", not a regular file"
    return UsageError(f"{what} {path} is {kind}{tail}; expected {expected}")


def read_bytes(path: str | Path, what: str, max_bytes: int) -> bytes:
    """The bytes of the regular file ``path``, refused when it holds more than ``max_bytes``."""
    from nervana_lstm.resources import format_bytes

    p = regular_file(path, what)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise UsageError(f"cannot read {what} {p}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # replaced since the check
            raise _refused(p, what, st.st_mode, "a file")
        if st.st_size > max_bytes:
            raise UsageError(
                f"{what} {p} is {format_bytes(st.st_size)}; at most {format_bytes(max_bytes)} "
                "is read (is it the right file?)"
            )
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(max_bytes + 1)  # a file growing while read stops here
    except OSError as exc:
        raise UsageError(f"cannot read {what} {p}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise UsageError(f"{what} {p} is larger than {format_bytes(max_bytes)}, the most read")
    return data


def read_text(path: str | Path, what: str, max_bytes: int) -> str:
    """The UTF-8 text of the regular file ``path`` (see :func:`read_bytes`); a file that is
    not UTF-8 text is refused with the offset of its first bad byte."""
    data = read_bytes(path, what, max_bytes)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UsageError(
            f"{what} {path} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
            f"{exc.start}); expected a text file"
        ) from None


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
