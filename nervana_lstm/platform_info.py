"""What this machine is and what it can run: the data behind ``nervana-lstm info``.

The keys of :func:`collect_info` are a stable, documented interface (see the
README): benchmark reports embed the same dictionary so every figure carries
the machine it was measured on.
"""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nervana_lstm.backends import BACKENDS, backend_status, dist_version
from nervana_lstm.errors import UsageError

__all__ = [
    "ISA_FLAGS",
    "THREAD_ENV_VARS",
    "CpuInfo",
    "allocator",
    "check_supported",
    "collect_info",
    "openmp_runtime",
    "read_cpu_info",
    "thread_defaults",
]

#: The ISA extensions that decide recurrent-network speed on x86 CPUs.
#: Keys are the names Linux prints in /proc/cpuinfo.
ISA_FLAGS: tuple[str, ...] = (
    "avx2",
    "avx512f",
    "avx512_bf16",
    "avx512_vnni",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
)

#: Environment variables that change threading or allocation of torch/oneDNN/OpenVINO.
THREAD_ENV_VARS: tuple[str, ...] = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OMP_PROC_BIND",
    "OMP_PLACES",
    "KMP_AFFINITY",
    "KMP_BLOCKTIME",
    "OMP_WAIT_POLICY",
    "GOMP_SPINCOUNT",
    "NERVANA_LSTM_CONTENTION",
    "ONEDNN_MAX_CPU_ISA",
    "LD_PRELOAD",
)


@dataclass(frozen=True)
class CpuInfo:
    """The CPU as Linux reports it."""

    model: str
    vendor: str
    arch: str
    cores: int  # physical cores
    threads: int  # logical CPUs
    affinity: int  # logical CPUs this process may run on
    flags: dict[str, bool] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _parse_cpuinfo(text: str) -> tuple[dict[str, str], set[str], int, int]:
    """First-processor fields, its flag set, physical-core and logical-CPU counts."""
    first: dict[str, str] = {}
    cores: set[tuple[str, str]] = set()
    logical = 0
    current: dict[str, str] = {}
    for block in text.strip().split("\n\n"):
        current = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                current[key.strip()] = value.strip()
        if "processor" not in current:
            continue
        logical += 1
        if not first:
            first = current
        cores.add((current.get("physical id", "0"), current.get("core id", str(logical))))
    flags = set(first.get("flags", "").split())
    return first, flags, len(cores), logical


def read_cpu_info(cpuinfo_text: str | None = None, machine: str | None = None) -> CpuInfo:
    """Read the CPU from ``/proc/cpuinfo`` (or given text, for tests)."""
    arch = machine if machine is not None else platform.machine()
    if cpuinfo_text is None:
        path = Path("/proc/cpuinfo")
        cpuinfo_text = path.read_text() if path.exists() else ""
    first, flags, cores, logical = _parse_cpuinfo(cpuinfo_text)
    threads = logical or (os.cpu_count() or 1)
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        affinity = threads
    return CpuInfo(
        model=first.get("model name", platform.processor() or "unknown"),
        vendor=first.get("vendor_id", "unknown"),
        arch=arch,
        cores=cores or threads,
        threads=threads,
        affinity=affinity,
        flags={name: name in flags for name in ISA_FLAGS},
    )


def check_supported(cpu: CpuInfo) -> None:
    """Raise :class:`UsageError` unless the CPU can run the toolkit's kernels (x86-64, AVX2)."""
    if cpu.arch not in ("x86_64", "AMD64"):
        raise UsageError(
            f"this toolkit targets x86-64 CPUs, but this machine is {cpu.arch}; "
            "run it on an Intel Xeon or another x86-64 CPU with AVX2"
        )
    if not cpu.flags.get("avx2", False):
        raise UsageError(
            f"the CPU ({cpu.model}) lacks AVX2, which oneDNN's and OpenVINO's RNN kernels "
            "need; run it on a CPU with AVX2 (Intel Haswell or newer)"
        )


def _torch_info() -> dict[str, Any]:
    version = dist_version("torch")
    if version is None:
        return {"version": None, "onednn_available": False, "onednn_enabled": False}
    import torch

    return {
        "version": torch.__version__,
        "onednn_available": bool(torch.backends.mkldnn.is_available()),
        "onednn_enabled": bool(torch.backends.mkldnn.enabled),
        "onednn_version": backend_status("onednn").version,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "num_threads": torch.get_num_threads(),
        "num_interop_threads": torch.get_num_interop_threads(),
    }


def _openvino_info() -> dict[str, Any]:
    status = backend_status("openvino")
    info: dict[str, Any] = {"version": status.version, "usable": status.available}
    if not status.available:
        info["reason"] = status.reason
        return info
    import openvino as ov

    core = ov.Core()
    caps = [str(c) for c in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")]
    info["cpu_device"] = str(core.get_property("CPU", "FULL_DEVICE_NAME"))
    info["cpu_capabilities"] = caps
    # an ov.Type; to_string() gives the short name ("bf16", "f32")
    info["cpu_default_inference_precision"] = core.get_property(
        "CPU", "INFERENCE_PRECISION_HINT"
    ).to_string()
    return info


def allocator() -> str:
    """The memory allocator in use, judged from LD_PRELOAD (jemalloc, tcmalloc, ...)."""
    preload = os.environ.get("LD_PRELOAD", "")
    for name in ("jemalloc", "tcmalloc", "mimalloc"):
        if name in preload:
            return name
    return "glibc malloc"


def openmp_runtime() -> str:
    """The OpenMP runtime torch's threads run on: Intel's when preloaded, else torch's own."""
    if "libiomp" in os.environ.get("LD_PRELOAD", ""):
        return "Intel OpenMP (libiomp5, preloaded)"
    return "GNU OpenMP (libgomp, shipped with torch)"


def thread_defaults() -> dict[str, Any]:
    """The CPUs granted (affinity, cgroup quota), the default thread count they give, and
    what a run starting now would decide after looking at the load (0.2 s)."""
    from nervana_lstm.resources import cpu_grant
    from nervana_lstm.thread_plan import plan_threads

    grant = cpu_grant()
    out: dict[str, Any] = {"cpus": grant.as_dict(), "default_threads": grant.cpus}
    try:
        plan = plan_threads(None, "threads", grant=grant, torch_started=False)
    except UsageError as exc:  # a bad OMP_NUM_THREADS or NERVANA_LSTM_CONTENTION
        out["run_now"] = {"error": str(exc)}
        return out
    out["run_now"] = {
        k: v
        for k, v in plan.as_dict().items()
        if k
        in ("threads", "threads_from", "wait_policy", "wait_from", "contended", "seen", "decided")
    }
    return out


def collect_info() -> dict[str, Any]:
    """Everything ``nervana-lstm info --json`` prints, as a JSON-ready dict."""
    cpu = read_cpu_info()
    try:
        check_supported(cpu)
        supported, why_not = True, None
    except UsageError as exc:
        supported, why_not = False, str(exc)
    ipex = backend_status("ipex")
    backends = {name: backend_status(name).as_dict() for name in BACKENDS}
    return {
        "schema": 1,
        "platform": {
            "system": platform.system(),
            "python": platform.python_version(),
            "supported": supported,
            "unsupported_reason": why_not,
        },
        "cpu": cpu.as_dict(),
        "torch": _torch_info(),
        "ipex": {"version": ipex.version, "usable": ipex.available, "reason": ipex.reason},
        "openvino": _openvino_info(),
        "nncf": {"version": dist_version("nncf")},
        "backends": backends,
        "threads": {
            "env": {name: os.environ.get(name) for name in THREAD_ENV_VARS},
            "allocator": allocator(),
            "openmp": openmp_runtime(),
            **thread_defaults(),
        },
    }
