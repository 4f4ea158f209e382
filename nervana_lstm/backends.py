"""Which accelerators can run here, and a safe way to reach each of them.

Every part of the toolkit that needs IPEX, oneDNN or OpenVINO asks this module
first. The rules it encodes come from how these packages fail:

* intel-extension-for-pytorch (IPEX) 2.8.0 is the last release and works only
  with torch 2.8.x. Its wheel does not declare torch, and on a mismatch its
  import prints an error and calls ``exit(127)``. So IPEX is judged from package
  metadata, **without importing it**, and imported only when that check passes.
* oneDNN is reached through stock torch (``torch.backends.mkldnn``); only
  ``nn.LSTM`` runs its fused RNN primitive.
* OpenVINO is an inference runtime; it never needs torch.

Names a user can ask for are listed in :data:`BACKENDS`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.metadata
import os
import platform
import re
import sys
import tempfile
import warnings
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from types import ModuleType

from nervana_lstm.choices import IPEX_BACKENDS
from nervana_lstm.errors import BackendUnavailable, UsageError, short_repr

__all__ = [
    "BACKENDS",
    "IPEX_TORCH_SERIES",
    "BackendStatus",
    "backend_status",
    "dist_version",
    "import_ipex",
    "ipex_status",
    "quiet_native_output",
    "require",
]

#: Accelerators a user can name (``--impls``, ``info``); ``train.accel`` also names the IPEX
#: variants of :data:`~nervana_lstm.choices.IPEX_BACKENDS`, whose status is IPEX's.
BACKENDS: tuple[str, ...] = ("ipex", "onednn", "reference", "openvino")

#: IPEX major.minor -> the torch major.minor its binary was built against.
#: IPEX releases have always paired with the torch release of the same number.
IPEX_TORCH_SERIES: dict[str, str] = {"2.8": "2.8"}

IPEX_HOWTO = "set up the ipex stack with `make venv` (torch 2.8 + IPEX 2.8.0)"


@dataclass(frozen=True)
class BackendStatus:
    """Whether one backend can run here; ``reason`` says why not when it cannot."""

    name: str
    available: bool
    version: str | None = None
    reason: str | None = None

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def dist_version(name: str) -> str | None:
    """Installed version of distribution ``name``, or None; never imports it."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _major_minor(version: str) -> str:
    public = version.split("+", 1)[0]
    parts = public.split(".")
    return ".".join(parts[:2])


def ipex_status(
    versions: Callable[[str], str | None] = dist_version,
    machine: str | None = None,
) -> BackendStatus:
    """Decide whether IPEX is usable from metadata alone.

    ``versions`` maps a distribution name to its installed version (None when
    absent); tests pass fake data to exercise the mismatch path without ever
    importing IPEX.
    """
    machine = machine if machine is not None else platform.machine()
    ipex_v = versions("intel-extension-for-pytorch")
    if ipex_v is None:
        return BackendStatus(
            "ipex",
            False,
            None,
            f"intel-extension-for-pytorch is not installed; {IPEX_HOWTO}",
        )
    if machine not in ("x86_64", "AMD64"):
        return BackendStatus(
            "ipex", False, ipex_v, f"IPEX's CPU build needs x86-64, this machine is {machine}"
        )
    torch_v = versions("torch")
    if torch_v is None:
        return BackendStatus(
            "ipex",
            False,
            ipex_v,
            f"intel-extension-for-pytorch {ipex_v} is installed but torch is not; {IPEX_HOWTO}",
        )
    wanted = IPEX_TORCH_SERIES.get(_major_minor(ipex_v), _major_minor(ipex_v))
    if _major_minor(torch_v) != wanted:
        return BackendStatus(
            "ipex",
            False,
            ipex_v,
            f"intel-extension-for-pytorch {ipex_v} is built for torch {wanted}.x but torch is "
            f"{torch_v} (importing it would end the process); {IPEX_HOWTO}",
        )
    return BackendStatus("ipex", True, ipex_v, None)


@contextlib.contextmanager
def quiet_native_output(stdout: bool = False) -> Iterator[list[str]]:
    """Silence what native libraries write to file descriptor 2 (and 1) inside the block.

    IPEX prints dozens of kernel-override lines and CUDA notices to stderr when
    imported or when it first optimizes a model, and under ``torchrun`` its native
    library prints a rank guess to stdout; users should not have to read them.
    What went to stderr is collected into the yielded list (one string) so a
    failure can still show it; with ``stdout=True`` what went to stdout is dropped.
    """
    captured: list[str] = []
    sys.stdout.flush()
    sys.stderr.flush()
    fds = (1, 2) if stdout else (2,)
    saved = {fd: os.dup(fd) for fd in fds}
    devnull = os.open(os.devnull, os.O_WRONLY)
    with tempfile.TemporaryFile(mode="w+b") as sink:
        os.dup2(sink.fileno(), 2)
        if stdout:
            os.dup2(devnull, 1)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                yield captured
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)
            os.close(devnull)
            sink.seek(0)
            captured.append(sink.read().decode("utf-8", "replace"))


def import_ipex(versions: Callable[[str], str | None] = dist_version) -> ModuleType:
    """Import ``intel_extension_for_pytorch`` after checking it cannot kill the process.

    Raises :class:`BackendUnavailable` with the reason when IPEX is missing,
    mismatched with torch, or fails to import. ``versions`` is as in
    :func:`ipex_status`.
    """
    status = ipex_status(versions)
    if status.available and "intel_extension_for_pytorch" in sys.modules:
        return sys.modules["intel_extension_for_pytorch"]
    if not status.available:
        raise BackendUnavailable(f"IPEX is unavailable: {status.reason}")
    import torch  # noqa: F401  (IPEX must see torch already imported)

    with quiet_native_output(stdout=True) as noise:
        try:
            module = importlib.import_module("intel_extension_for_pytorch")
        except Exception as exc:  # an import failure inside IPEX's native code
            error: Exception | None = exc
        else:
            error = None
    if error is not None:
        last = (noise[0].strip().splitlines() or [""])[-1]
        raise BackendUnavailable(
            f"IPEX {status.version} failed to import: {error}. {last}".strip()
        ) from error
    return module


def _onednn_status() -> BackendStatus:
    torch_v = dist_version("torch")
    if torch_v is None:
        return BackendStatus("onednn", False, None, "torch is not installed")
    import torch

    if not torch.backends.mkldnn.is_available():
        return BackendStatus(
            "onednn", False, None, f"torch {torch_v} was built without oneDNN (mkldnn)"
        )
    return BackendStatus("onednn", True, _onednn_version(torch.__config__.show()), None)


def _onednn_version(config_text: str) -> str | None:
    """oneDNN's version from ``torch.__config__.show()`` (it still calls it MKL-DNN)."""
    match = re.search(r"(?:MKL-DNN|oneDNN) v(\d+(?:\.\d+)*)", config_text)
    return match.group(1) if match else None


def _reference_status() -> BackendStatus:
    torch_v = dist_version("torch")
    if torch_v is None:
        return BackendStatus("reference", False, None, "torch is not installed")
    return BackendStatus("reference", True, torch_v, None)


def _openvino_status() -> BackendStatus:
    ov_v = dist_version("openvino")
    if ov_v is None:
        return BackendStatus("openvino", False, None, "openvino is not installed; run `make venv`")
    try:
        import openvino as ov

        devices = ov.Core().available_devices
    except Exception as exc:  # a broken runtime install
        return BackendStatus("openvino", False, ov_v, f"openvino failed to load: {exc}")
    if "CPU" not in devices:
        return BackendStatus(
            "openvino", False, ov_v, f"OpenVINO sees no CPU device (devices: {devices})"
        )
    return BackendStatus("openvino", True, ov_v, None)


_CHECKS: dict[str, Callable[[], BackendStatus]] = {
    "ipex": ipex_status,
    "onednn": _onednn_status,
    "reference": _reference_status,
    "openvino": _openvino_status,
}


def _check_name(name: str) -> None:
    if name not in _CHECKS and name not in IPEX_BACKENDS:
        raise UsageError(
            f"unknown backend {short_repr(name)}; expected one of: {', '.join(BACKENDS)}"
        )


def backend_status(name: str) -> BackendStatus:
    """Status of one backend by name; an unknown name raises :class:`UsageError`.

    An IPEX training variant (``ipex-stock-lstm``, ``ipex-o0``) runs where IPEX runs.
    """
    _check_name(name)
    if name in IPEX_BACKENDS and name != "ipex":
        return dataclasses.replace(_CHECKS["ipex"](), name=name)
    return _CHECKS[name]()


def require(name: str) -> BackendStatus:
    """Like :func:`backend_status`, but raise :class:`BackendUnavailable` when it cannot run."""
    status = backend_status(name)
    if not status.available:
        raise BackendUnavailable(f"backend {name!r} is unavailable: {status.reason}")
    return status
