"""Compare two ``results.json`` files: what got slower, what got faster.

Rows are matched by ``id`` (kind, shape, implementation, mode, dtype, threads)
and compared on their median time. A row is a **regression** when B's median
is more than ``threshold`` above A's, and a row measured in A is **lost** when
B did not measure it (another status, or no such row); :func:`compare` returns
both so the CLI can exit 1. A file that is not a valid ``results.json``
(:func:`load_results`) is a UsageError (exit 2), never "no regression".
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nervana_lstm.errors import UsageError
from nervana_lstm.paths import regular_file
from nervana_lstm.perf.results import STATUSES

#: the ``results.json`` schema this module reads (see :mod:`nervana_lstm.perf.report`)
SCHEMA = 1

__all__ = [
    "Change",
    "Comparison",
    "compare",
    "format_comparison",
    "load_results",
    "parse_threshold",
]


@dataclass(frozen=True)
class Change:
    id: str
    a_ms: float
    b_ms: float

    @property
    def ratio(self) -> float:
        """B's median over A's: above 1 is slower."""
        return self.b_ms / self.a_ms


@dataclass
class Comparison:
    threshold: float
    slower: list[Change]
    faster: list[Change]
    same: list[Change]
    only_a: list[str]
    only_b: list[str]
    status_changed: list[str]
    differences: list[str]  # machine or software that differs between the two runs
    #: runs measured on a busy machine (contended rows, disagreeing GEMM peaks)
    load_notes: list[str] = field(default_factory=list)

    @property
    def lost(self) -> list[str]:
        """Rows measured in A that B no longer measures: ok -> n/a, skipped or error, or
        absent from B altogether."""
        stopped = [s for s in self.status_changed if ": ok -> " in s]
        return stopped + [f"{rid}: missing from B" for rid in self.only_a]

    @property
    def regressed(self) -> bool:
        return bool(self.slower or self.lost)


def parse_threshold(text: str) -> float:
    """``"5%"`` or ``"5"`` -> 0.05; ``"0.05"`` -> 0.05 (a bare number below 1 is a fraction)."""
    raw = text.strip()
    try:
        value = float(raw.rstrip("%"))
    except ValueError:
        raise UsageError(
            f"--threshold got {text!r}; expected a percentage like 5% (or a fraction like 0.05)"
        ) from None
    if raw.endswith("%") or value >= 1:
        value /= 100.0
    if not 0 <= value < 10:
        raise UsageError(f"--threshold must be between 0% and 1000%, got {text!r}")
    return value


#: largest results file read (a suite of thousands of rows is a few MiB)
MAX_RESULTS_BYTES = 256 * 2**20


def load_results(path: str | Path) -> dict[str, Any]:
    """Read a results.json written by ``nervana-lstm bench``, checked against its schema.

    UsageError, naming the file and the row, for anything ``compare`` could not
    trust: another schema, no rows, a repeated or missing id, an unknown status,
    or a measured row whose ``timing.median_ms`` is not a positive finite number.
    """
    p = regular_file(path, "results file", "a results.json written by 'nervana-lstm bench'")
    if p.stat().st_size > MAX_RESULTS_BYTES:
        raise UsageError(
            f"{p} is {p.stat().st_size:,} bytes; a results.json is at most "
            f"{MAX_RESULTS_BYTES // 2**20} MiB"
        )
    try:
        data = json.loads(p.read_bytes().decode("utf-8"), parse_constant=_no_constant)
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise UsageError(
            f"{p} is not valid JSON ({_short(exc)}); expected a results.json written by bench"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("rows"), list):
        raise UsageError(f"{p} is not a bench results file: expected a 'rows' list")
    schema = data.get("schema")
    if schema != SCHEMA or isinstance(schema, bool):
        raise UsageError(
            f"{p} has results schema {schema!r}; this version of nervana-lstm reads schema "
            f"{SCHEMA} (bench writes it as 'schema')"
        )
    if not data["rows"]:
        raise UsageError(f"{p} holds no rows ('rows' is empty): there is nothing to compare")
    seen: set[str] = set()
    for i, row in enumerate(data["rows"]):
        problem = _row_problem(row, seen)
        if problem:
            rid = row.get("id") if isinstance(row, dict) else None
            named = f" ({rid})" if isinstance(rid, str) else ""
            raise UsageError(f"{p}: row {i}{named}: {problem}")
    if not isinstance(data.get("machine", {}), dict):
        raise UsageError(f"{p}: 'machine' is not a mapping")
    return data


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")


def _short(exc: BaseException) -> str:
    text = str(exc)
    return text if len(text) <= 200 else text[:200] + "..."


def _row_problem(row: Any, seen: set[str]) -> str | None:
    """What makes one row unusable for a comparison, or None."""
    if not isinstance(row, dict):
        return f"expected a mapping with 'id', 'status' and 'timing', got {type(row).__name__}"
    rid, status = row.get("id"), row.get("status")
    if not isinstance(rid, str) or not rid:
        return "'id' is missing or not a non-empty string"
    if rid in seen:
        return "the id appears twice; each row's id is unique"
    seen.add(rid)
    if status not in STATUSES:
        return f"'status' is {status!r}, expected one of {', '.join(STATUSES)}"
    if status != "ok":
        return None
    timing = row.get("timing")
    median = timing.get("median_ms") if isinstance(timing, dict) else None
    if (
        not isinstance(median, int | float)
        or isinstance(median, bool)
        or not math.isfinite(median)
        or median <= 0
    ):
        return (
            f"a measured row needs timing.median_ms > 0 (milliseconds), got "
            f"{'no timing' if not isinstance(timing, dict) else repr(median)}"
        )
    return None


def compare(a: dict[str, Any], b: dict[str, Any], threshold: float) -> Comparison:
    """Match rows by id; classify each measured pair as slower, faster or the same."""
    rows_a = {r["id"]: r for r in a["rows"]}
    rows_b = {r["id"]: r for r in b["rows"]}
    slower, faster, same, changed = [], [], [], []
    for rid in rows_a.keys() & rows_b.keys():
        ra, rb = rows_a[rid], rows_b[rid]
        if ra["status"] != rb["status"] and "ok" in (ra["status"], rb["status"]):
            changed.append(f"{rid}: {ra['status']} -> {rb['status']}")
            continue
        if ra["status"] != "ok":
            continue
        change = Change(rid, ra["timing"]["median_ms"], rb["timing"]["median_ms"])
        if change.ratio > 1 + threshold:
            slower.append(change)
        elif change.ratio < 1 / (1 + threshold):
            faster.append(change)
        else:
            same.append(change)
    measured = {rid for rid, r in rows_a.items() if r["status"] == "ok"}
    measured_b = {rid for rid, r in rows_b.items() if r["status"] == "ok"}
    return Comparison(
        threshold=threshold,
        slower=sorted(slower, key=lambda c: -c.ratio),
        faster=sorted(faster, key=lambda c: c.ratio),
        same=sorted(same, key=lambda c: c.id),
        only_a=sorted(measured - rows_b.keys()),
        only_b=sorted(measured_b - rows_a.keys()),
        status_changed=sorted(changed),
        differences=_context_differences(a, b),
        load_notes=[*_load_notes("A", a), *_load_notes("B", b)],
    )


def _load_notes(name: str, results: dict[str, Any]) -> list[str]:
    """What ``results``' ``load`` section says against its figures (nothing for old files)."""
    load = results.get("load") or {}
    out = []
    contended = load.get("contended_rows") or []
    if contended:
        out.append(f"{name} measured {len(contended)} row(s) under contention")
    if load.get("noisy"):
        out.append(f"{name} is noisy ({len(load['noisy'])} GEMM peak(s) disagree before/after)")
    return out


def _context_differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """What about the machine and software differs: a comparison across them is not like for like."""
    probes = {
        "CPU": ("cpu", "model"),
        "torch": ("torch", "version"),
        "IPEX": ("ipex", "version"),
        "OpenVINO": ("openvino", "version"),
    }

    def probe(results: dict[str, Any], section: str, key: str) -> Any:
        part = (results.get("machine") or {}).get(section)
        return part.get(key) if isinstance(part, dict) else None

    out = []
    for name, (section, key) in probes.items():
        va, vb = probe(a, section, key), probe(b, section, key)
        if va != vb:
            out.append(f"{name}: {va} vs {vb}")
    return out


def format_comparison(cmp: Comparison, name_a: str = "A", name_b: str = "B") -> str:
    """A plain-text summary: slower rows first (the regressions), then faster ones."""
    t = f"{100 * cmp.threshold:g}%"
    lines = [f"compare {name_a} -> {name_b} (threshold {t}):"]
    if cmp.differences:
        lines.append("note: the runs differ in " + "; ".join(cmp.differences))
    if cmp.load_notes:
        lines.append("note: " + "; ".join(cmp.load_notes) + ": read those figures as noise")

    def block(title: str, changes: list[Change]) -> None:
        lines.append(f"{title} ({len(changes)}):")
        for c in changes:
            lines.append(
                f"  {c.id}: {c.a_ms:.3f} ms -> {c.b_ms:.3f} ms ({100 * (c.ratio - 1):+.1f}%)"
            )

    block("slower", cmp.slower)
    block("faster", cmp.faster)
    lines.append(f"within {t}: {len(cmp.same)}")
    if cmp.status_changed:
        lines.append("status changed: " + "; ".join(cmp.status_changed))
    if cmp.only_a:
        lines.append(f"lost, measured in {name_a} but missing from {name_b} ({len(cmp.only_a)}):")
        lines += [f"  {rid}" for rid in cmp.only_a]
    if cmp.only_b:
        lines.append(f"measured only in {name_b}: {len(cmp.only_b)}")
    if cmp.regressed:
        lines.append(
            f"REGRESSION: {len(cmp.slower)} row(s) slower than {t}, "
            f"{len(cmp.lost)} no longer measured"
        )
    else:
        lines.append("no regression")
    return "\n".join(lines)
