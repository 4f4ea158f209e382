"""How busy the machine was while a benchmark ran, and waiting for it to be quiet.

Each group of rows (what is timed together) gets three readings of the other
work on the CPUs granted to the benchmark (``pressure`` in
:mod:`nervana_lstm.cpu_load`, CPUs' worth)::

    before   over SAMPLE_S of sleep just before the group (the previous group's "after")
    during   over the group's own timing: everyone's busy time less this process's
             (left out for --instances, whose worker processes are not this one)
    after    over SAMPLE_S just after it

A group whose worst reading reaches :data:`CONTENDED_AT` is contended: each of its
measured rows gets a ``CONTENDED: ...`` note, the report marks them ``!`` and says
how many at its top. Two OpenMP threads beside one busy process ran a fused LSTM
call 24x slower than on a quiet machine: such a row measures the neighbour, not
the code.

The GEMM peak is measured before and after the rows; when the two readings
differ by more than :data:`NOISY_PEAK_MARGIN` of the larger, the run is marked
noisy (:func:`noisy_peaks`).

``--quiet-wait SECONDS`` (:func:`wait_for_quiet`) watches the CPUs until the other
work stays under :data:`CONTENDED_AT`, or gives up with a :class:`UsageError`
naming the busiest processes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from nervana_lstm.cpu_load import LoadSample, Snapshot, load_since, measure_load, snapshot
from nervana_lstm.errors import UsageError
from nervana_lstm.perf.results import Row
from nervana_lstm.resources import usable_cpus

__all__ = [
    "CONTENDED_AT",
    "CONTENDED_NOTE",
    "NOISY_PEAK_MARGIN",
    "SAMPLE_S",
    "LoadLog",
    "is_contended",
    "load_section",
    "log_load",
    "noisy_peaks",
    "wait_for_quiet",
]

#: CPUs' worth of other work on the granted CPUs at which a row counts as contended
CONTENDED_AT = 0.25
#: GEMM peaks before and after the rows further apart than this (of the larger) are noisy
NOISY_PEAK_MARGIN = 0.10
#: seconds of sleep each reading between groups watches the CPUs for
SAMPLE_S = 0.1
#: seconds each look of --quiet-wait watches the CPUs for
QUIET_POLL_S = 0.5
#: how the note of a contended row starts
CONTENDED_NOTE = "CONTENDED"

Measure = Callable[..., LoadSample | None]


def _pressure(sample: dict[str, Any] | None) -> float:
    return 0.0 if sample is None else float(sample["pressure"])


class LoadLog:
    """The readings of one benchmark run: wrap each group's timing in :meth:`group`,
    call :meth:`finish` after the last one, then :meth:`as_dict` for ``results.json``."""

    def __init__(
        self,
        granted: int | None = None,
        *,
        sample_s: float = SAMPLE_S,
        contended_at: float = CONTENDED_AT,
        measure: Measure = measure_load,
        start: Callable[[], Snapshot | None] = snapshot,
        since: Callable[[Snapshot, int | None], LoadSample | None] = load_since,
    ) -> None:
        self.granted = usable_cpus() if granted is None else granted
        self.sample_s = sample_s
        self.contended_at = contended_at
        self._measure, self._start, self._since = measure, start, since
        self.groups: list[dict[str, Any]] = []
        self._rows: list[list[Row]] = []
        self._last: dict[str, Any] | None = None  # the latest reading between groups
        self._open = False  # the last group still waits for its "after"

    def _idle(self, seconds: float) -> dict[str, Any] | None:
        sample = self._measure(seconds, self.granted, with_processes=True)
        reading = None if sample is None else sample.as_dict()
        if self._open:
            self.groups[-1]["after"] = reading
            self._open = False
        self._last = reading
        return reading

    @contextlib.contextmanager
    def group(
        self, rows: Sequence[Row], *, during: bool = True, before_s: float | None = None
    ) -> Iterator[None]:
        """Read the load before, during (unless ``during`` is False) and after the block.

        ``before_s`` is the sleep before the group (default :attr:`sample_s`); a
        benchmark that pauses between groups anyway watches the CPUs meanwhile.
        """
        before = self._idle(self.sample_s if before_s is None else before_s)
        start = self._start() if during else None
        try:
            yield
        finally:
            seen = None
            if start is not None:
                sample = self._since(start, self.granted)
                seen = None if sample is None else sample.as_dict()
            self.groups.append(
                {"rows": [r.id for r in rows], "before": before, "during": seen, "after": None}
            )
            self._rows.append(list(rows))
            self._open = True

    def finish(self) -> None:
        """Take the last group's "after" reading and mark the rows of contended groups."""
        if self._open:
            self._idle(self.sample_s)
        for entry, rows in zip(self.groups, self._rows, strict=True):
            readings = {k: entry[k] for k in ("before", "during", "after") if entry[k]}
            worst = max((_pressure(r) for r in readings.values()), default=0.0)
            entry["worst"] = round(worst, 2)
            entry["contended"] = worst >= self.contended_at
            if not entry["contended"]:
                continue
            cpus = max(r["cpus"] for r in readings.values())
            shown = ", ".join(f"{k} {_pressure(r):.1f}" for k, r in readings.items())
            note = (
                f"{CONTENDED_NOTE}: other work took up to {worst:.1f} of the {self.granted} "
                f"granted CPU(s) while this row was measured ({shown}; {cpus} CPUs watched)"
            )
            for row in rows:
                if row.status == "ok":
                    row.notes.append(note)
        self._rows = [[] for _ in self.groups]

    def contended_rows(self) -> list[str]:
        return [rid for entry in self.groups if entry.get("contended") for rid in entry["rows"]]

    def as_dict(self) -> dict[str, Any]:
        """The ``load`` section of ``results.json`` (without the peaks' verdict)."""
        return {
            "granted": self.granted,
            "contended_at": self.contended_at,
            "sample_s": self.sample_s,
            "groups": self.groups,
        }


def is_contended(row: dict[str, Any]) -> bool:
    """True for a ``results.json`` row measured under contention."""
    return any(str(n).startswith(CONTENDED_NOTE) for n in row.get("notes") or [])


def noisy_peaks(peaks: dict[str, dict[str, Any]], margin: float = NOISY_PEAK_MARGIN) -> list[str]:
    """One line per GEMM peak whose readings before and after the rows disagree.

    Two readings ``a`` and ``b`` disagree when ``|a - b| / max(a, b) > margin``.
    """
    out = []
    for key, peak in sorted(peaks.items()):
        a, b = peak.get("start_gflops"), peak.get("end_gflops")
        if not a or not b:
            continue
        apart = abs(a - b) / max(a, b)
        if apart > margin:
            out.append(
                f"GEMM peak {key}: {a:.1f} GFLOP/s before the rows, {b:.1f} after "
                f"({apart:.0%} apart; more than {margin:.0%} is noisy)"
            )
    return out


def load_section(
    log: LoadLog | None,
    peaks: dict[str, dict[str, Any]],
    quiet_wait: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``results.json``'s ``load``: the groups' readings, the contended rows, the peaks'
    verdict and what ``--quiet-wait`` found."""
    section: dict[str, Any] = log.as_dict() if log is not None else {"groups": []}
    section["contended_rows"] = log.contended_rows() if log is not None else []
    section["noisy_margin"] = NOISY_PEAK_MARGIN
    section["noisy"] = noisy_peaks(peaks)
    section["quiet_wait"] = quiet_wait
    return section


def log_load(section: dict[str, Any], log: Callable[[str], None]) -> None:
    """One log line for the contended rows of a :func:`load_section`, one per noisy peak."""
    if section["contended_rows"]:
        worst = max(g["worst"] for g in section["groups"] if g.get("contended"))
        log(
            f"CONTENDED: {len(section['contended_rows'])} row(s) measured while other work took "
            f"up to {worst:.1f} of the {section['granted']} granted CPU(s); see report.md"
        )
    for line in section["noisy"]:
        log(f"NOISY: {line}")


def wait_for_quiet(
    max_wait_s: float,
    *,
    contended_at: float = CONTENDED_AT,
    poll_s: float = QUIET_POLL_S,
    granted: int | None = None,
    measure: Measure = measure_load,
    clock: Callable[[], float] = time.monotonic,
) -> dict[str, Any]:
    """Watch the CPUs until other work on them stays under ``contended_at``.

    Returns ``{"waited_s", "load"}`` (the quiet reading); gives up after
    ``max_wait_s`` with a :class:`UsageError` saying what was running. Without
    ``/proc/stat`` it returns at once with ``load`` None.
    """
    granted = usable_cpus() if granted is None else granted
    start = clock()
    while True:
        sample = measure(poll_s, granted, with_processes=True)
        waited = clock() - start
        if sample is None:
            return {"waited_s": round(waited, 1), "load": None}
        if sample.pressure < contended_at:
            return {"waited_s": round(waited, 1), "load": sample.as_dict()}
        if waited >= max_wait_s:
            raise UsageError(
                f"--quiet-wait {max_wait_s:g}: the machine did not become quiet within "
                f"{max_wait_s:g} s: {sample.describe()} at the last look; expected under "
                f"{contended_at:g} CPU of other work on the {granted} granted CPU(s). "
                "Stop what is running, or wait longer with a larger --quiet-wait"
            )
