"""nervana-lstm: recurrent networks on Intel CPUs.

Heavy dependencies (torch, IPEX, OpenVINO) are imported by the submodules that
need them, never here, so ``import nervana_lstm`` and ``nervana-lstm --help``
stay fast.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from nervana_lstm.errors import BackendUnavailable, UsageError

try:
    __version__ = version("nervana-lstm")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["BackendUnavailable", "UsageError", "__version__"]
