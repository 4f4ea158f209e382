"""Exceptions that carry a message meant for the user.

``UsageError`` is a ``ValueError`` so library callers can catch the usual type,
while the CLI turns it into a one-line message and exit status 2.

A message quotes what the user gave through :func:`short_repr`, so a value of
megabytes (a pasted file, an expanded YAML alias) still makes one short line.
"""

from __future__ import annotations

import math
import reprlib

__all__ = ["SHORT_REPR_CHARS", "BackendUnavailable", "UsageError", "short_repr"]

#: how many characters of a value's repr an error message shows
SHORT_REPR_CHARS = 80


class UsageError(ValueError):
    """Bad input: the message says what was wrong and what was expected."""


class BackendUnavailable(UsageError):
    """An accelerator was asked for by name but cannot run here."""


def _bounded_repr() -> reprlib.Repr:
    r = reprlib.Repr()
    r.maxlevel, r.maxlist, r.maxtuple, r.maxdict, r.maxset, r.maxfrozenset = 3, 6, 6, 6, 6, 6
    r.maxstring, r.maxother, r.maxlong = SHORT_REPR_CHARS, SHORT_REPR_CHARS, 40
    return r


_REPR = _bounded_repr()


def short_repr(value: object, limit: int = SHORT_REPR_CHARS) -> str:
    """``repr(value)`` in about ``limit`` characters at most: its start, ``...`` and the
    whole size, e.g. ``'aaaa'... (5000000 chars)`` or ``[[1, 2], ...] (list of 9 items)``.

    Only the shown part is ever turned into text: strings are cut before ``repr``,
    containers go through :mod:`reprlib` (a few items, a few levels), and an integer
    too long to print is described by its number of digits.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        if value.bit_length() <= 3 * limit:  # about limit digits at most
            return repr(value)
        sign = "a negative" if value < 0 else "an"
        return f"{sign} integer of about {int(value.bit_length() * math.log10(2)) + 1} digits"
    if isinstance(value, (str, bytes)):
        if len(value) <= limit:
            return repr(value)
        unit = "chars" if isinstance(value, str) else "bytes"
        return f"{repr(value[:limit])[:limit]}... ({len(value)} {unit})"
    if isinstance(value, (list, tuple, dict, set, frozenset)):
        text = _REPR.repr(value)
        if len(text) > limit:
            text = text[:limit] + "..."
        return f"{text} ({type(value).__name__} of {len(value)} items)" if "..." in text else text
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"
