"""What this process may use, CPUs and memory, and the checks against it.

CPUs granted to this process are the least of two limits::

    affinity   CPUs os.sched_getaffinity allows (taskset, a container's cpuset)
    quota      cgroup CPU bandwidth: cpu.max "QUOTA PERIOD" (v2) or
               cpu.cfs_quota_us / cpu.cfs_period_us (v1), the tightest of this
               process's group and the groups above it
    granted    = min(affinity, max(1, floor(quota / period)))

A fraction of a CPU is rounded down (at least one): a thread beyond the quota is
throttled for the rest of each period while its team waits for it at the next
barrier. The machine's total counts for nothing. A thread count above the granted
CPUs is refused: more threads than CPUs only makes the threads wait for each other.

Memory available to this process is the smallest of::

    MemAvailable                 /proc/meminfo: what the machine can give without swapping
    cgroup limit - usage         memory.max (v2) or memory.limit_in_bytes (v1), less what the
                                 group already holds (its reclaimable page cache excepted)
    RLIMIT_AS - VmSize           an address-space limit (ulimit -v), less what is mapped now
    RLIMIT_DATA - VmData         a data-segment limit (ulimit -d), less the data mapped now

:func:`check_fits` compares an estimate with it and refuses, before anything is
allocated, with the figures and the options to lower. Nothing here imports torch.
"""

from __future__ import annotations

import math
import os
import resource
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from nervana_lstm.errors import UsageError

__all__ = [
    "CpuGrant",
    "CpuQuota",
    "MemoryLimit",
    "affinity_cpus",
    "available_memory",
    "check_fits",
    "check_threads",
    "cpu_grant",
    "cpu_quota",
    "format_bytes",
    "omp_threads",
    "resolve_threads",
    "usable_cpus",
]

#: a cgroup "limit" at or above this is no limit (v1 writes 2**63 rounded to a page)
_NO_LIMIT = 1 << 60


# ------------------------------------------------------------------------- CPUs


@dataclass(frozen=True)
class CpuQuota:
    """A cgroup CPU bandwidth limit: ``cpus`` CPUs' worth of time per period."""

    cpus: float  # quota / period
    source: str  # "cpu.max (cgroup v2)" or "cpu.cfs_quota_us (cgroup v1)"


@dataclass(frozen=True)
class CpuGrant:
    """The CPUs this process may really use: its affinity mask and its cgroup quota."""

    affinity: int
    quota: CpuQuota | None = None

    @property
    def cpus(self) -> int:
        """``min(affinity, max(1, floor(quota)))``; the affinity alone without a quota."""
        if self.quota is None:
            return self.affinity
        # 1e-9: a quota of 2 CPUs written as 199999999/100000000 still counts as 2
        return max(1, min(self.affinity, math.floor(self.quota.cpus + 1e-9)))

    @property
    def quota_limited(self) -> bool:
        """True when the quota, not the affinity mask, sets :attr:`cpus`."""
        return self.cpus < self.affinity

    def describe(self) -> str:
        """``"2 usable CPU(s)"``, with the quota when it is what limits them."""
        if self.quota is None or not self.quota_limited:
            return f"{self.cpus} usable CPU(s)"
        return (
            f"{self.cpus} usable CPU(s): a CPU quota of {self.quota.cpus:g} "
            f"({self.quota.source}) on {self.affinity} in the affinity mask"
        )

    def as_dict(self) -> dict[str, object]:
        quota = (
            None if self.quota is None else {"cpus": self.quota.cpus, "source": self.quota.source}
        )
        return {"affinity": self.affinity, "quota": quota, "granted": self.cpus}


def affinity_cpus() -> int:
    """Logical CPUs this process may run on (``os.sched_getaffinity``)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _cpu_limit(folder: Path, version: str) -> tuple[int, int] | None:
    """(quota, period) in microseconds set in one cgroup folder, or None for no limit."""
    if version == "v2":
        try:
            fields = (folder / "cpu.max").read_text().split()
        except OSError:
            return None
        if len(fields) != 2 or not fields[0].isdigit() or not fields[1].isdigit():
            return None  # "max 100000": no limit
        quota, period = int(fields[0]), int(fields[1])
    else:
        try:
            quota = int((folder / "cpu.cfs_quota_us").read_text().strip())  # -1: no limit
        except (OSError, ValueError):
            return None
        period_read = _read_int(folder / "cpu.cfs_period_us")
        if period_read is None:
            return None
        period = period_read
    if quota <= 0 or period <= 0:
        return None
    return quota, period


def cpu_quota(proc_cgroup: str | None = None, root: Path | None = None) -> CpuQuota | None:
    """The tightest cgroup CPU quota over this process's group and the groups above it.

    ``proc_cgroup`` (the text of ``/proc/self/cgroup``) and ``root`` (the cgroup
    mount, ``/sys/fs/cgroup``) are read from the system when not given. None
    when no group sets a quota, or none can be read.
    """
    text = _read("/proc/self/cgroup") if proc_cgroup is None else proc_cgroup
    mount = Path("/sys/fs/cgroup") if root is None else root
    tightest: CpuQuota | None = None
    for version, folder in _cgroup_dirs(text, mount, "cpu"):
        limit = _cpu_limit(folder, version)
        if limit is None:
            continue
        cpus = limit[0] / limit[1]
        if tightest is None or cpus < tightest.cpus:
            name = "cpu.max (cgroup v2)" if version == "v2" else "cpu.cfs_quota_us (cgroup v1)"
            tightest = CpuQuota(cpus, name)
    return tightest


def cpu_grant() -> CpuGrant:
    """This process's affinity mask and cgroup quota (see the module docstring)."""
    return CpuGrant(affinity_cpus(), cpu_quota())


def usable_cpus() -> int:
    """CPUs this process may really use: the affinity mask, capped by the cgroup quota."""
    return cpu_grant().cpus


def check_threads(value: int, option: str, cpus: int | None = None) -> int:
    """``value`` when it is 1..usable CPUs; otherwise a :class:`UsageError` naming ``option``."""
    cpus = usable_cpus() if cpus is None else cpus
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= cpus:
        raise UsageError(
            f"{option} got {value!r}; expected 1..{cpus}, the CPUs this process may use "
            "(affinity mask and cgroup CPU quota; more threads than CPUs only wait for each "
            "other)"
        )
    return value


def omp_threads(environ: dict[str, str] | None = None) -> int | None:
    """The thread count ``OMP_NUM_THREADS`` sets (its first level), or None when unset.

    A value that is not a positive integer is refused: OpenMP itself would ignore it.
    """
    text = (os.environ if environ is None else environ).get("OMP_NUM_THREADS", "").strip()
    if not text:
        return None
    first = text.split(",")[0].strip()
    if not first.isdigit() or int(first) < 1:
        raise UsageError(
            f"OMP_NUM_THREADS={text[:40]!r} is not a positive integer; set it to a thread "
            "count such as 1 or unset it"
        )
    return int(first)


def resolve_threads(
    requested: int | None,
    option: str,
    processes: int = 1,
    *,
    cpus: int | None = None,
    environ: dict[str, str] | None = None,
    grant: CpuGrant | None = None,
) -> tuple[int, str]:
    """(threads per process, where the number comes from), for a run of ``processes``.

    ``requested`` (a config key or flag called ``option``) wins and must not exceed
    the usable CPUs. Else ``OMP_NUM_THREADS`` when set, capped at the CPUs each
    process gets; else the usable CPUs divided among the processes. The usable
    CPUs are ``cpus`` when given, else ``grant``'s (by default :func:`cpu_grant`).
    """
    if cpus is None:
        grant = cpu_grant() if grant is None else grant
        cpus, described = grant.cpus, grant.describe()
    else:
        described = f"{cpus} usable CPU(s)"
    if requested is not None:
        return check_threads(requested, option, cpus), option
    share = max(1, cpus // max(1, processes))
    omp = omp_threads(environ)
    if omp is not None:
        if omp > share:
            return share, f"OMP_NUM_THREADS={omp} capped at the {share} CPU(s) per process"
        return omp, f"OMP_NUM_THREADS={omp}"
    per = f" / {processes} processes" if processes > 1 else ""
    return share, f"{described}{per}"


# ----------------------------------------------------------------------- memory


@dataclass(frozen=True)
class MemoryLimit:
    """Bytes this process can still allocate, and which limit says so."""

    bytes: int
    source: str  # "MemAvailable", "cgroup memory limit", "RLIMIT_AS (ulimit -v)", ...


def format_bytes(n: float) -> str:
    """``1536`` -> ``"1.5 KiB"``; powers of 1024 up to TiB, then TiB."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(value) < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:,.1f} TiB"


def _meminfo_available(text: str) -> int | None:
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024  # kB
    return None


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _inactive_file(stat: Path, key: str) -> int:
    try:
        for line in stat.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key and value.strip().isdigit():
                return int(value)
    except OSError:
        pass
    return 0


def _cgroup_dirs(
    proc_cgroup: str, root: Path, controller: str = "memory"
) -> list[tuple[str, Path]]:
    """(version, folder) of this process's ``controller`` cgroup (memory, cpu) and each
    folder above it up to the mount (inside a container the mount is the group itself)."""
    found: list[tuple[str, Path]] = []
    for line in proc_cgroup.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, rel = parts
        if controllers == "":
            version, mount = "v2", root
        elif controller in controllers.split(","):
            # v1 mounts "cpu,cpuacct" with a "cpu" link beside it; either may be missing
            version, mount = "v1", root / controller
            if not mount.exists() and (root / controllers).exists():
                mount = root / controllers
        else:
            continue
        names = [p for p in rel.split("/") if p]
        found += [(version, mount.joinpath(*names[:depth])) for depth in range(len(names), -1, -1)]
    return found


def _cgroup_free(proc_cgroup: str, root: Path) -> int | None:
    """The least of limit less usage over this process's memory cgroups; None when unlimited."""
    free: list[int] = []
    for version, folder in _cgroup_dirs(proc_cgroup, root):
        if version == "v2":
            limit = _read_int(folder / "memory.max")  # "max" reads as None
            usage = _read_int(folder / "memory.current")
            reclaimable = _inactive_file(folder / "memory.stat", "inactive_file")
        else:
            limit = _read_int(folder / "memory.limit_in_bytes")
            usage = _read_int(folder / "memory.usage_in_bytes")
            reclaimable = _inactive_file(folder / "memory.stat", "total_inactive_file")
        if limit is not None and limit < _NO_LIMIT and usage is not None:
            free.append(max(0, limit - max(0, usage - reclaimable)))
    return min(free) if free else None


def _rlimit_free(status: str, which: int, field: str) -> int | None:
    """A process limit (``RLIMIT_AS``, ``RLIMIT_DATA``) less the ``/proc/self/status``
    field it counts (``VmSize``, ``VmData``); None when unlimited."""
    soft, _ = resource.getrlimit(which)
    if soft == resource.RLIM_INFINITY:
        return None
    used = 0
    for line in status.splitlines():
        if line.startswith(field + ":"):
            used = int(line.split()[1]) * 1024  # kB
    return max(0, soft - used)


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def available_memory(processes: int = 1) -> MemoryLimit | None:
    """The tightest of the limits in the module docstring, per process when ``processes``
    on this machine share the machine's memory; None when none can be read."""
    shared = max(1, processes)
    limits: list[MemoryLimit] = []
    meminfo = _meminfo_available(_read("/proc/meminfo"))
    if meminfo is not None:
        limits.append(MemoryLimit(meminfo // shared, "MemAvailable"))
    cgroup = _cgroup_free(_read("/proc/self/cgroup"), Path("/sys/fs/cgroup"))
    if cgroup is not None:
        limits.append(MemoryLimit(cgroup // shared, "cgroup memory limit"))
    status = _read("/proc/self/status")
    for which, field, name in (
        (resource.RLIMIT_AS, "VmSize", "RLIMIT_AS (ulimit -v)"),
        (resource.RLIMIT_DATA, "VmData", "RLIMIT_DATA (ulimit -d)"),
    ):
        free = _rlimit_free(status, which, field)  # a limit of each process, not shared
        if free is not None:
            limits.append(MemoryLimit(free, name))
    return min(limits, key=lambda m: m.bytes) if limits else None


def check_fits(
    what: str,
    parts: dict[str, int],
    lower: Iterable[str],
    *,
    processes: int = 1,
    limit: MemoryLimit | None = None,
) -> int:
    """Refuse ``what`` when the sum of ``parts`` (bytes, per process) exceeds what is free.

    ``parts`` names each share (weights, activations, task data ...); ``lower``
    lists the options that shrink the largest ones, for the message. With several
    ``processes`` on this machine each gets its share of the machine's memory
    (``limit``, when given, is already per process). Returns the total.
    """
    total = sum(parts.values())
    limit = available_memory(processes) if limit is None else limit
    if limit is None:
        return total
    budget = limit.bytes
    if total <= budget:
        return total
    shares = ", ".join(
        f"{name} {format_bytes(n)}"
        for name, n in sorted(parts.items(), key=lambda kv: -kv[1])
        if n >= total // 100
    )
    each = f" for each of {processes} processes" if processes > 1 else ""
    raise UsageError(
        f"{what} needs about {format_bytes(total)} of memory{each} ({shares}), but this "
        f"process can use about {format_bytes(budget)} ({limit.source}); lower "
        + ", ".join(dict.fromkeys(lower))
    )
