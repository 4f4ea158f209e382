"""Reading a file a user named: a regular file of bounded size, or a clear refusal.

A path given as a file may name anything: a directory, ``/dev/zero`` (endless),
a FIFO (a read waits for a writer that may never come), a socket. Each is
refused by what it is, before it is read::

    missing          "... does not exist"
    a directory      "... is a directory; expected a file"
    anything else    "... is a FIFO (named pipe), not a regular file; expected a file"
    too large        "... is 12.0 MiB; at most 1.0 MiB is read"

The file is opened without blocking (a FIFO cannot hold the open) and checked
again on the open descriptor, so a path swapped between the check and the
read is caught too.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from nervana_lstm.errors import UsageError
from nervana_lstm.resources import format_bytes

__all__ = ["check_regular_file", "file_kind", "read_bytes", "read_text"]


def file_kind(mode: int) -> str:
    """What a ``st_mode`` names, in words: "a directory", "a FIFO", "a character device"..."""
    for test, words in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISREG, "a regular file"),
    ):
        if test(mode):
            return words
    return "something else"


def _refuse(path: Path, what: str, mode: int) -> UsageError:
    kind = file_kind(mode)
    if kind == "a directory":
        return UsageError(f"{what} {path} is a directory; expected a file")
    return UsageError(f"{what} {path} is {kind}, not a regular file; expected a file")


def check_regular_file(path: str | Path, what: str) -> Path:
    """``path`` when it names a regular file (after symlinks); else a :class:`UsageError`
    that says what it is. ``what`` names the option, e.g. ``"config file"`` or ``"--input"``."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise UsageError(f"{what} {p} does not exist") from None
    except OSError as exc:
        raise UsageError(f"cannot read {what} {p}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(st.st_mode):
        raise _refuse(p, what, st.st_mode)
    return p


def read_bytes(path: str | Path, what: str, max_bytes: int) -> bytes:
    """The bytes of the regular file ``path``, refused when it holds more than ``max_bytes``."""
    p = check_regular_file(path, what)
    try:
        fd = os.open(p, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise UsageError(f"cannot read {what} {p}: {exc.strerror or exc}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # replaced since the check
            raise _refuse(p, what, st.st_mode)
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
