"""Where character-level text comes from: Python's own help texts, or the user's files.

The default corpus, ``"pydoc_topics"``, is the dictionary of help topics that every
CPython ships in ``pydoc_data.topics`` (what ``help("assert")`` prints): 79 topics,
about 465,000 characters of English prose and code with 103 distinct characters in
Python 3.11.7. The topics are joined in sorted key order with a blank line between
them. The text changes a little between Python releases, so each task records the
SHA-256 of the text it used.
"""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass

from nervana_lstm.errors import UsageError

__all__ = ["DEFAULT_CORPUS", "Corpus", "load_corpus"]

DEFAULT_CORPUS = "pydoc_topics"


@dataclass(frozen=True)
class Corpus:
    text: str
    name: str  # "pydoc_topics" or the files read, in order
    files: tuple[str, ...]
    sha256: str


def _pydoc_topics() -> str:
    from pydoc_data.topics import topics  # ships with CPython; read only when asked for

    return "\n\n".join(topics[key] for key in sorted(topics))


def _expand(spec: str) -> list[str]:
    path = os.path.expanduser(spec)
    if glob.has_magic(path):
        found = sorted(p for p in glob.glob(path, recursive=True) if os.path.isfile(p))
        if not found:
            raise UsageError(f"charlm: corpus pattern {spec!r} matches no files")
        return found
    if os.path.isdir(path):
        raise UsageError(
            f"charlm: corpus {spec!r} is a directory; give a file or a pattern like '{spec}/*.txt'"
        )
    if not os.path.isfile(path):
        raise UsageError(
            f"charlm: corpus file {spec!r} does not exist "
            f"(expected {DEFAULT_CORPUS!r}, a text file, or a glob pattern)"
        )
    return [path]


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError as e:
        raise UsageError(
            f"charlm: corpus file {path!r} is not UTF-8 text (bad byte at offset {e.start})"
        ) from None
    except OSError as e:
        raise UsageError(f"charlm: cannot read corpus file {path!r}: {e.strerror}") from None


def load_corpus(corpus: str | Sequence[str] = DEFAULT_CORPUS) -> Corpus:
    """The text named by ``corpus``: ``"pydoc_topics"``, a path, a glob, or a list of those.

    Several files are joined in the order given (a glob's matches sorted by name),
    separated by a newline.
    """
    specs = [corpus] if isinstance(corpus, str) else corpus
    if (
        not isinstance(specs, list | tuple)
        or not specs
        or not all(isinstance(s, str) and s for s in specs)
    ):
        raise UsageError(
            f"charlm: option 'corpus' must be {DEFAULT_CORPUS!r}, a path, a glob, "
            f"or a list of them; got {corpus!r}"
        )
    if specs == [DEFAULT_CORPUS]:
        text, files = _pydoc_topics(), ()
    else:
        files = tuple(p for s in specs for p in _expand(s))
        text = "\n".join(_read_text(p) for p in files)
    if not text:
        raise UsageError(f"charlm: corpus {corpus!r} holds no text")
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    name = DEFAULT_CORPUS if not files else ", ".join(files)
    return Corpus(text=text, name=name, files=files, sha256=digest)
