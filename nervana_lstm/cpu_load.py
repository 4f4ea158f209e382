"""How busy the CPUs this process may run on are: ``/proc/stat`` over a short window.

Over a window of ``dt`` seconds, for each CPU ``c`` of the affinity mask
(``/proc/stat`` counts in clock ticks)::

    busy_c   = Δ(user + nice + system + irq + softirq + steal)
    total_c  = busy_c + Δ(idle + iowait)
    busy     = Σ_c busy_c / total_c                     CPUs' worth of work, everyone's
    own      = Δ(this process's CPU time) / dt          all its threads
    other    = max(0, busy - own)                       CPUs' worth of other work
    pressure = max(0, other - (affinity - granted))     other work that lands on the
                                                        CPUs granted to this process

``pressure`` is what matters to a run: with a quota of 2 CPUs on a 64-CPU host,
other work on the 62 CPUs the quota leaves over takes nothing from it. Steal
time (a hypervisor running someone else) counts as busy. The window should be
a fraction of a second: ticks are 10 ms, so 0.2 s resolves about 5% of a CPU.

Nothing here imports torch; on a system without ``/proc/stat`` every reading is None.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from nervana_lstm.resources import affinity_cpus, usable_cpus

__all__ = [
    "BusyProcess",
    "LoadSample",
    "Snapshot",
    "busiest_processes",
    "load_between",
    "load_since",
    "measure_load",
    "parse_proc_stat",
    "snapshot",
]

#: where the per-CPU tick counters are read; a test may point it at a file
PROC_STAT = Path("/proc/stat")


@dataclass(frozen=True)
class LoadSample:
    """What other work did on this process's CPUs over one window (see the module docstring)."""

    cpus: int  # CPUs of the affinity mask that were looked at
    granted: int  # CPUs granted to this process (affinity and quota)
    seconds: float  # length of the window
    busy: float  # CPUs' worth of work by everyone
    own: float  # CPUs' worth of this process's work
    processes: tuple[BusyProcess, ...] = ()  # the busiest other processes, when asked for

    @property
    def other(self) -> float:
        """CPUs' worth of work by everything but this process."""
        return max(0.0, self.busy - self.own)

    @property
    def pressure(self) -> float:
        """Other work beyond the CPUs a quota leaves over: what it takes from this process."""
        return max(0.0, self.other - (self.cpus - self.granted))

    def describe(self) -> str:
        """``"other work on 1.0 of 2 CPUs (python3 pid 812 99%)"``."""
        spare = self.cpus - self.granted
        text = f"other work on {self.other:.1f} of {self.cpus} CPUs"
        if spare > 0:
            text += f" ({self.pressure:.1f} beyond the {spare} the CPU quota leaves over)"
        if self.processes:
            text += " (" + ", ".join(p.describe() for p in self.processes) + ")"
        return text

    def as_dict(self) -> dict[str, object]:
        return {
            "cpus": self.cpus,
            "granted": self.granted,
            "seconds": round(self.seconds, 3),
            "busy": round(self.busy, 2),
            "own": round(self.own, 2),
            "other": round(self.other, 2),
            "pressure": round(self.pressure, 2),
            "processes": [p.as_dict() for p in self.processes],
        }


@dataclass(frozen=True)
class BusyProcess:
    """Another process and the share of one CPU it used over the window."""

    pid: int
    name: str
    cpu: float  # CPUs' worth (1.0 = one CPU all the time)

    def describe(self) -> str:
        return f"{self.name} pid {self.pid} {100 * self.cpu:.0f}%"

    def as_dict(self) -> dict[str, object]:
        return {"pid": self.pid, "name": self.name, "cpu": round(self.cpu, 2)}


def parse_proc_stat(text: str) -> dict[int, tuple[int, int]]:
    """CPU number -> (busy ticks, total ticks) from the ``cpuN`` lines of ``/proc/stat``.

    ``guest`` and ``guest_nice`` are left out: the kernel already counts them
    in ``user`` and ``nice``.
    """
    out: dict[int, tuple[int, int]] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if not name.startswith("cpu") or not name[3:].isdigit():
            continue  # the "cpu" total line, or not a CPU
        fields = [int(v) for v in rest.split()[:8] if v.isdigit()]
        if len(fields) < 4:  # user nice system idle, on every kernel
            continue
        fields += [0] * (8 - len(fields))
        user, nice, system, idle, iowait, irq, softirq, steal = fields
        busy = user + nice + system + irq + softirq + steal
        out[int(name[3:])] = (busy, busy + idle + iowait)
    return out


def load_between(
    before: dict[int, tuple[int, int]],
    after: dict[int, tuple[int, int]],
    cpus: Iterable[int],
    seconds: float,
    own_seconds: float,
    granted: int,
    processes: tuple[BusyProcess, ...] = (),
) -> LoadSample:
    """The load of ``cpus`` between two :func:`parse_proc_stat` readings ``seconds`` apart,
    of which this process used ``own_seconds`` of CPU time."""
    looked = 0
    busy = 0.0
    for cpu in cpus:
        if cpu not in before or cpu not in after:
            continue  # offline, or not reported
        looked += 1
        d_busy = after[cpu][0] - before[cpu][0]
        d_total = after[cpu][1] - before[cpu][1]
        if d_total > 0:
            busy += min(1.0, max(0.0, d_busy / d_total))
    own = own_seconds / seconds if seconds > 0 else 0.0
    return LoadSample(
        cpus=looked,
        granted=min(granted, looked) if looked else granted,
        seconds=seconds,
        busy=busy,
        own=min(own, float(looked)),
        processes=processes,
    )


@dataclass(frozen=True)
class Snapshot:
    """The counters at one moment: ticks per CPU, this process's CPU time, the clock."""

    stat: dict[int, tuple[int, int]]
    cpu_time: float
    clock: float
    tasks: dict[int, tuple[str, int]] | None = None  # pid -> (name, ticks), when asked for


def _read_stat() -> str | None:
    try:
        return PROC_STAT.read_text()
    except OSError:
        return None


def _affinity() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return list(range(affinity_cpus()))


def _task_ticks() -> dict[int, tuple[str, int]]:
    """pid -> (command name, utime + stime ticks) of every process this one can see."""
    out: dict[int, tuple[str, int]] = {}
    me = os.getpid()
    try:
        entries = os.listdir("/proc")
    except OSError:
        return out
    for entry in entries:
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            text = Path("/proc", entry, "stat").read_text()
        except OSError:
            continue  # gone, or not ours to read
        head, _, tail = text.rpartition(")")
        name = head.partition("(")[2]
        fields = tail.split()
        if len(fields) > 12 and fields[11].isdigit() and fields[12].isdigit():
            out[int(entry)] = (name, int(fields[11]) + int(fields[12]))  # utime, stime
    return out


def snapshot(with_processes: bool = False) -> Snapshot | None:
    """Read the counters now; None when ``/proc/stat`` cannot be read."""
    text = _read_stat()
    if text is None:
        return None
    return Snapshot(
        stat=parse_proc_stat(text),
        cpu_time=time.process_time(),
        clock=time.monotonic(),
        tasks=_task_ticks() if with_processes else None,
    )


def busiest_processes(
    before: dict[int, tuple[str, int]],
    after: dict[int, tuple[str, int]],
    seconds: float,
    limit: int = 3,
    at_least: float = 0.05,
) -> tuple[BusyProcess, ...]:
    """The ``limit`` processes that used the most CPU between two readings of
    ``/proc/[pid]/stat`` ``seconds`` apart, each at least ``at_least`` of a CPU."""
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    found = []
    for pid, (name, ticks) in after.items():
        if pid in before and seconds > 0:
            share = (ticks - before[pid][1]) / hz / seconds
            if share >= at_least:
                found.append(BusyProcess(pid, name, share))
    found.sort(key=lambda p: -p.cpu)
    return tuple(found[:limit])


def load_since(start: Snapshot, granted: int | None = None) -> LoadSample | None:
    """The load from ``start`` to now on this process's affinity CPUs."""
    end = snapshot(with_processes=start.tasks is not None)
    if end is None:
        return None
    seconds = end.clock - start.clock
    processes: tuple[BusyProcess, ...] = ()
    if start.tasks is not None and end.tasks is not None:
        processes = busiest_processes(start.tasks, end.tasks, seconds)
    return load_between(
        start.stat,
        end.stat,
        _affinity(),
        seconds,
        end.cpu_time - start.cpu_time,
        usable_cpus() if granted is None else granted,
        processes,
    )


def measure_load(
    seconds: float = 0.2,
    granted: int | None = None,
    *,
    with_processes: bool = False,
    sleep: Callable[[float], None] = time.sleep,
) -> LoadSample | None:
    """Watch this process's CPUs for ``seconds`` while it sleeps; None without ``/proc/stat``.

    ``with_processes`` also names the busiest other processes (it reads every
    ``/proc/[pid]/stat`` twice).
    """
    start = snapshot(with_processes)
    if start is None:
        return None
    sleep(seconds)
    return load_since(start, granted)
