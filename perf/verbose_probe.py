"""Subprocess entry point of :func:`nervana_lstm.perf.verbose.probe`: run each spec once under ONEDNN_VERBOSE.

Reads a JSON list of spec dicts (each with an ``id``) on stdin. For each spec it
builds the implementation, runs one measured call, and brackets what oneDNN
printed with ``nervana_probe_begin ID`` / ``nervana_probe_end ID`` lines.
oneDNN writes through C's ``stdout`` buffer, so both buffers are flushed
before every marker to keep the lines in order.
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from typing import Any

from nervana_lstm.perf.verbose import BEGIN, END


def _flush() -> None:
    sys.stdout.flush()
    ctypes.CDLL(None).fflush(None)  # C stdio buffers, where oneDNN prints


def _mark(text: str) -> None:
    _flush()
    os.write(1, (text + "\n").encode())


def main() -> int:
    from nervana_lstm.perf.spec import quiet_known_warnings

    specs = json.loads(sys.stdin.read())
    with quiet_known_warnings():
        _probe_each(specs)
    _flush()
    return 0


def _probe_each(specs: list[dict[str, Any]]) -> None:
    from nervana_lstm.perf.impls import build
    from nervana_lstm.perf.runner import pinned_threads
    from nervana_lstm.perf.spec import Spec, Unavailable

    for raw in specs:
        sid = raw["id"]
        fields = {k: v for k, v in raw.items() if k in Spec.__dataclass_fields__}
        spec = Spec(**fields)
        try:
            variant = build(spec)  # building may itself run primitives (warm-up, IPEX checks)
            _flush()
            with pinned_threads(spec.threads):
                _mark(f"{BEGIN} {sid}")
                variant.call()
                _mark(f"{END} {sid}")
        except Unavailable as exc:
            _mark(f"nervana_probe_error {sid} unavailable: {exc}")
        except Exception as exc:  # record and go on: one failing spec must not hide the rest
            msg = f"{type(exc).__name__}: {exc}".replace("\n", " ")
            _mark(f"nervana_probe_error {sid} {msg}")


if __name__ == "__main__":
    sys.exit(main())
