"""Exceptions that carry a message meant for the user.

``UsageError`` is a ``ValueError`` so library callers can catch the usual type,
while the CLI turns it into a one-line message and exit status 2.
"""

from __future__ import annotations

__all__ = ["BackendUnavailable", "UsageError"]


class UsageError(ValueError):
    """Bad input: the message says what was wrong and what was expected."""


class BackendUnavailable(UsageError):
    """An accelerator was asked for by name but cannot run here."""
