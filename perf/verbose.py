"""Proof of what oneDNN ran: parse ``ONEDNN_VERBOSE`` output and rerun measurements under it.

With ``ONEDNN_VERBOSE=all`` oneDNN prints an info block (version, runtime,
``isa:`` line) and one line per executed primitive::

    onednn_verbose,v1,primitive,exec,cpu,rnn,brgemm:avx512_core,forward_inference,<mds>,...,<ms>

i.e. ``primitive`` (``rnn``, ``reorder``, ``matmul`` ...), implementation
(``brgemm:avx512_core``, ``ref`` ...) and prop kind. Older oneDNN releases
leave out the ``v1`` marker and the ``primitive`` component
(``onednn_verbose,exec,cpu,rnn,...``), and ``ONEDNN_VERBOSE_TIMESTAMP=1``
adds a timestamp after the prefix; :func:`parse_verbose` reads all three.

Timing runs never have verbose output on (it slows every primitive down), so
:func:`probe` reruns each oneDNN-backed measurement once in a subprocess with
it on and keeps what that run printed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "BEGIN",
    "END",
    "PrimitiveExec",
    "VerboseLog",
    "fused_lstm_flag",
    "parse_verbose",
    "probe",
    "split_by_marker",
]

#: markers the probe prints around each measurement's verbose output
BEGIN = "nervana_probe_begin"
END = "nervana_probe_end"

_PREFIXES = ("onednn_verbose", "dnnl_verbose")
_VERSION = re.compile(r"(?:oneDNN|DNNL) v(\S+)")


@dataclass(frozen=True)
class PrimitiveExec:
    """One executed primitive."""

    primitive: str  # rnn, reorder, matmul, inner_product ...
    impl: str  # brgemm:avx512_core, ref, jit:uni ...
    prop_kind: str  # forward_inference, forward_training, backward, undef
    engine: str = "cpu"
    problem: str = ""  # e.g. l1t5mb3sic32slc16dhc32dic32 for an rnn
    alg: str = ""  # e.g. alg:vanilla_lstm
    time_ms: float | None = None


@dataclass
class VerboseLog:
    """What one run printed: version, ISA line, runtime, executed primitives."""

    version: str | None = None
    isa: str | None = None
    runtime: str | None = None
    execs: list[PrimitiveExec] = field(default_factory=list)

    def of(self, primitive: str) -> list[PrimitiveExec]:
        return [e for e in self.execs if e.primitive == primitive]

    def summary(self) -> dict[str, Any]:
        """JSON-ready digest: distinct (primitive, impl, prop_kind) with counts, ISA, version."""
        counts: dict[tuple[str, str, str], int] = {}
        for e in self.execs:
            key = (e.primitive, e.impl, e.prop_kind)
            counts[key] = counts.get(key, 0) + 1
        return {
            "onednn_version": self.version,
            "isa": self.isa,
            "runtime": self.runtime,
            "primitives": [
                {"primitive": p, "impl": i, "prop_kind": k, "count": n}
                for (p, i, k), n in sorted(counts.items())
            ],
            "rnn": sorted({f"{e.impl} {e.prop_kind}" for e in self.of("rnn")}),
        }


def _fields(line: str) -> list[str] | None:
    """The comma-separated fields after the prefix, ``v1`` marker and timestamp; None if not oneDNN."""
    parts = line.strip().split(",")
    if not parts or parts[0] not in _PREFIXES:
        return None
    rest = parts[1:]
    if rest and re.fullmatch(r"v\d+", rest[0]):
        rest = rest[1:]
    if rest and re.fullmatch(r"\d+(\.\d+)?", rest[0]):  # ONEDNN_VERBOSE_TIMESTAMP
        rest = rest[1:]
    return rest


def _parse_exec(fields: list[str]) -> PrimitiveExec | None:
    # fields start at the engine: cpu,rnn,brgemm:avx512_core,forward_inference,mds,attrs,aux,prb,ms
    if len(fields) < 4:
        return None
    time_ms: float | None
    try:
        time_ms = float(fields[-1])
    except ValueError:
        time_ms = None
    aux = fields[6] if len(fields) > 6 else ""
    alg = next((tok for tok in aux.split() if tok.startswith("alg:")), "")
    return PrimitiveExec(
        primitive=fields[1],
        impl=fields[2],
        prop_kind=fields[3],
        engine=fields[0],
        problem=fields[7] if len(fields) > 8 else "",
        alg=alg,
        time_ms=time_ms,
    )


def parse_verbose(text: str) -> VerboseLog:
    """Parse every oneDNN verbose line in ``text``; other lines are ignored."""
    log = VerboseLog()
    for line in text.splitlines():
        fields = _fields(line)
        if not fields:
            continue
        if fields[0] == "info":
            body = ",".join(fields[1:])
            match = _VERSION.search(body)
            if match and log.version is None:
                log.version = match.group(1)
            for i, tok in enumerate(fields[1:], start=1):
                if tok.startswith("isa:") and log.isa is None:
                    # the ISA description itself contains commas: it runs to the line's end
                    log.isa = ",".join(fields[i:])[len("isa:") :]
                elif tok.startswith("runtime:") and log.runtime is None:
                    log.runtime = tok[len("runtime:") :]
            continue
        if fields[0] == "primitive" and len(fields) > 1:
            fields = fields[1:]
        if fields[0] == "exec":  # only executions; create/dispatch lines are not what ran
            record = _parse_exec(fields[1:])
            if record is not None:
                log.execs.append(record)
    return log


def fused_lstm_flag(kind: str, impl: str, log: VerboseLog) -> str | None:
    """A warning when an LSTM measured as fused did not run a oneDNN ``rnn`` primitive."""
    if kind == "lstm" and impl in ("onednn", "ipex") and not log.of("rnn"):
        return (
            f"{impl} LSTM ran no oneDNN rnn primitive (executed: "
            f"{', '.join(sorted({e.primitive for e in log.execs})) or 'none'}); "
            "it fell back to a non-fused path"
        )
    return None


def split_by_marker(text: str) -> dict[str, str]:
    """Cut probe output into ``{measurement id: the lines printed while it ran}``."""
    parts: dict[str, str] = {}
    current: str | None = None
    buf: list[str] = []
    for line in text.splitlines():
        if line.startswith(BEGIN + " "):
            current, buf = line.split(" ", 1)[1].strip(), []
        elif line.startswith(END + " ") and current is not None:
            parts[current] = "\n".join(buf)
            current = None
        elif current is not None:
            buf.append(line)
    return parts


def probe(specs: list[dict[str, Any]], timeout: float | None = None) -> dict[str, dict[str, Any]]:
    """Rerun each spec once in a subprocess with ``ONEDNN_VERBOSE=all``; parse what it printed.

    ``specs`` are :meth:`nervana_lstm.perf.spec.Spec.as_dict` dicts with an ``id`` key; the
    subprocess gets ``timeout`` seconds (default: 60 plus 30 per spec). The
    result maps each id to ``{"summary": ..., "error": ...}``; a spec that could
    not be rerun carries the error instead of a summary.
    """
    if not specs:
        return {}
    timeout = timeout if timeout is not None else 60.0 + 30.0 * len(specs)
    env = {**os.environ, "ONEDNN_VERBOSE": "all"}
    env.pop("ONEDNN_VERBOSE_TIMESTAMP", None)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "nervana_lstm.perf.verbose_probe"],
            input=json.dumps(specs),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
        text = proc.stdout
        failure = None if proc.returncode == 0 else f"probe exited {proc.returncode}"
    except subprocess.TimeoutExpired as exc:
        text = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        failure = f"probe timed out after {timeout:.0f} s"
    header = parse_verbose(text)  # the info block is printed once, at the first primitive
    pieces = split_by_marker(text)
    errors = {}
    for line in text.splitlines():
        if line.startswith("nervana_probe_error "):
            sid, _, msg = line[len("nervana_probe_error ") :].partition(" ")
            errors[sid] = msg
    results: dict[str, dict[str, Any]] = {}
    for spec in specs:
        sid = spec["id"]
        if sid in errors:
            results[sid] = {"summary": None, "error": errors[sid]}
            continue
        if sid not in pieces:
            results[sid] = {"summary": None, "error": failure or "no output from the probe"}
            continue
        log = parse_verbose(pieces[sid])
        log.version, log.isa, log.runtime = header.version, header.isa, header.runtime
        summary = log.summary()
        flag = fused_lstm_flag(spec["kind"], spec["impl"], log)
        results[sid] = {"summary": summary, "flag": flag, "error": None}
    return results


def as_dict(log: VerboseLog) -> dict[str, Any]:
    return asdict(log)
