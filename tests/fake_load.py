"""Run ``nervana-lstm ARGS`` with ``/proc/stat`` replaced by readings of a chosen load.

    python tests/fake_load.py BUSY_FRACTION RECORD.json ARGS...

Every read of ``/proc/stat`` advances each CPU of the affinity mask by 100 ticks,
``BUSY_FRACTION`` of them busy, so the CLI sees that much other work however
busy the real machine is. ``RECORD.json`` receives what torch ran with:
``OMP_WAIT_POLICY`` as the environment held it when torch was first imported,
and ``torch.get_num_threads()`` at exit (or null where torch was never imported).
"""

from __future__ import annotations

import atexit
import importlib.abc
import json
import os
import sys

busy_fraction, record = float(sys.argv[1]), sys.argv[2]
seen: dict[str, object] = {}


class _WatchTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name == "torch" and "wait_at_import" not in seen:
            seen["wait_at_import"] = os.environ.get("OMP_WAIT_POLICY")
        return None


sys.meta_path.insert(0, _WatchTorch())

from nervana_lstm import cpu_load  # noqa: E402

_cpus = sorted(os.sched_getaffinity(0))
_reads = [0]


def _read() -> str:
    _reads[0] += 1
    busy = int(100 * busy_fraction) * _reads[0]
    return "".join(f"cpu{c} {busy} 0 0 {100 * _reads[0] - busy} 0 0 0 0 0 0\n" for c in _cpus)


cpu_load._read_stat = _read  # type: ignore[assignment]


def _done() -> None:
    if "torch" in sys.modules:
        seen["torch_threads"] = sys.modules["torch"].get_num_threads()
    with open(record, "w") as f:
        json.dump(seen, f)


atexit.register(_done)

from nervana_lstm.cli import main  # noqa: E402

sys.exit(main(sys.argv[3:]))
