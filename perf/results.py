"""One row of ``results.json``: the typed model the harness fills and the file is written from.

A row is one kind x shape x implementation x mode x dtype x threads. Its keys,
in the order they are written (``schema: 1``; the whole document is described
in :mod:`nervana_lstm.perf.report`):

==========================  ======================================================
id                          ``"lstm-T25-N64-I256-H256-L1/onednn/infer/fp32/t2"``
label, kind, impl, mode,    what was measured; ``shape`` is ``{seq_len, batch,
dtype, threads, shape       input_size, hidden_size, num_layers}``
status                      ``ok`` | ``n/a`` (cannot run here) | ``skipped`` (not
                            selected, or over the time budget) | ``error``
reason                      why it is not ``ok``
backend                     what executed the recurrence, in words
timing                      ``{median_ms, q1_ms, q3_ms, iqr_pct, min_ms, max_ms,
                            repeats, warmup, capped}``
flop_count, flops           the FLOP convention (``full`` | ``recurrent``) and count
gflops, peak_gflops,        the rate, the GEMM peak it is compared with, and the
pct_peak                    percentage of it
speedup_vs_unfused,         baseline median / this median
speedup_vs_native
speedup_baseline_dtype      set when the baseline ran at another dtype
build_s                     seconds spent building (compile, convert, quantize)
notes                       strings; ``"FLAG: ..."`` marks a fused LSTM that ran
                            no rnn primitive
proof                       ``{"onednn": ..., "onednn_flag": ..., "openvino": ...}``
instances                   null, or ``{count, cores, medians_ms, sum_gflops,
                            sum_seq_per_s}``
==========================  ======================================================

While a suite runs, a row still to be measured has status ``pending``; no
written file holds one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

__all__ = ["ROW_KEYS", "STATUSES", "Row", "RowStatus"]

#: ``pending`` exists only while a suite runs
RowStatus = Literal["ok", "n/a", "skipped", "error", "pending"]
STATUSES: tuple[str, ...] = ("ok", "n/a", "skipped", "error")


@dataclass
class Row:
    """One measurement's result; :meth:`to_dict` is exactly what ``results.json`` holds."""

    id: str
    label: str
    kind: str
    impl: str
    mode: str
    dtype: str
    threads: int
    shape: dict[str, int]
    status: RowStatus
    reason: str | None = None
    backend: str | None = None
    timing: dict[str, Any] | None = None
    flop_count: str = "full"
    flops: int = 0
    gflops: float | None = None
    peak_gflops: float | None = None
    pct_peak: float | None = None
    speedup_vs_unfused: float | None = None
    speedup_vs_native: float | None = None
    speedup_baseline_dtype: str | None = None
    build_s: float | None = None
    notes: list[str] = field(default_factory=list)
    proof: dict[str, Any] = field(default_factory=dict)
    instances: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """The row as written to ``results.json``, keys in :data:`ROW_KEYS` order."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Row:
        """A row read back from a ``results.json``; ``ValueError`` naming missing or extra keys."""
        missing = [k for k in ROW_KEYS if k not in data]
        extra = [k for k in data if k not in ROW_KEYS]
        if missing or extra:
            raise ValueError(
                f"not a results.json row: missing keys {missing}, unexpected keys {extra}; "
                f"expected exactly {list(ROW_KEYS)}"
            )
        return cls(**data)

    @classmethod
    def for_spec(
        cls,
        spec: Any,
        *,
        id: str,
        label: str,
        status: RowStatus = "pending",
        count: str = "full",
        flop_mode: str | None = None,
        **fields: Any,
    ) -> Row:
        """A row for one measurement of ``spec`` (a :class:`~nervana_lstm.perf.spec.Spec`).

        The FLOPs are counted as ``count`` says, for ``flop_mode`` (default the
        spec's own mode); ``fields`` sets any other column (``reason``, ``notes``).
        """
        from nervana_lstm.perf.flops import mode_flops

        return cls(
            id=id,
            label=label,
            kind=spec.kind,
            impl=spec.impl,
            mode=spec.mode,
            dtype=spec.dtype,
            threads=spec.threads,
            shape=spec.shape,
            status=status,
            flop_count=count,
            flops=mode_flops(count, spec.kind, spec.shape, flop_mode or spec.mode),
            **fields,
        )

    def fail(self, status: RowStatus, reason: str) -> None:
        """Mark the row as not measured (``n/a``, ``skipped`` or ``error``) with its reason."""
        self.status, self.reason = status, reason

    def record(self, variant: Any, timing: dict[str, Any]) -> None:
        """Mark the row ``ok`` with its timing and what its variant says of itself.

        ``variant`` is a :class:`~nervana_lstm.perf.spec.Variant`: its backend,
        build time, notes, and the OpenVINO proof where it has one.
        """
        self.status, self.timing = "ok", timing
        self.backend, self.build_s = variant.backend, round(variant.build_s, 3)
        self.notes += variant.notes
        if variant.proof:
            self.proof["openvino"] = variant.proof


#: the keys of every row, in the order they are written
ROW_KEYS: tuple[str, ...] = tuple(f.name for f in fields(Row))
