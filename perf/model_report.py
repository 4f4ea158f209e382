"""The ratios ``bench --model`` is judged by, and the report section that states them.

Every ratio is a speedup: the baseline's median time over the candidate's, so
above 1 the candidate is faster. Both come from the same run, each timed
round-robin among the rows of its own runtime (see :mod:`~nervana_lstm.perf.model_bench`):

=========================================  ============================  ======
ratio                                      candidate / baseline          target
=========================================  ============================  ======
OpenVINO vs best torch, throughput and     ``openvino`` / fastest of     >= 1.0
batch-1 latency, fp32 and bf16             ``onednn``, ``ipex`` at the
                                           same dtype
int8 IR vs f32 IR, throughput              ``openvino`` int8 / fp32      >= 2.0
stateful IR per step vs torch per step     ``openvino`` / ``onednn``,    >= 1.0
(state carried), fp32 and bf16             streaming rows
=========================================  ============================  ======

A missed target is stated with how far off it is; a ratio whose rows did not
run says which row and why.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TARGETS", "model_ratios", "render_model_section"]

#: ratio name -> the speedup it must reach
TARGETS: dict[str, float] = {"ov_vs_torch": 1.0, "int8_vs_f32": 2.0, "stream": 1.0}


def _find(rows: list[dict[str, Any]], label: str, impl: str, dtype: str) -> dict[str, Any] | None:
    for r in rows:
        if (r["label"], r["impl"], r["dtype"]) == (label, impl, dtype):
            return r
    return None


def _ms(row: dict[str, Any] | None) -> float | None:
    if row is None or row["status"] != "ok" or not row.get("timing"):
        return None
    return float(row["timing"]["median_ms"])


def _why_not(row: dict[str, Any] | None, what: str) -> str:
    if row is None:
        return f"{what}: no such row"
    return f"{what} {row['status']}: {row['reason']}"


def _ratio(
    name: str,
    target_key: str,
    label: str,
    dtype: str,
    candidate: dict[str, Any] | None,
    baselines: list[dict[str, Any] | None],
    what: str,
) -> dict[str, Any]:
    target = TARGETS[target_key]
    entry: dict[str, Any] = {
        "name": name,
        "shape": label,
        "dtype": dtype,
        "target": target,
        "value": None,
        "met": None,
        "candidate": candidate["id"] if candidate else None,
        "baseline": None,
        "detail": None,
    }
    timed = [(b, _ms(b)) for b in baselines]
    best = min(((b, t) for b, t in timed if t is not None), key=lambda bt: bt[1], default=None)
    cand_ms = _ms(candidate)
    if cand_ms is None or best is None:
        missing = []
        if cand_ms is None:
            missing.append(_why_not(candidate, what))
        if best is None:
            missing += [_why_not(b, "baseline") for b in baselines]
        entry["detail"] = "; ".join(missing)
        return entry
    base, base_ms = best
    value = base_ms / cand_ms
    entry.update(value=value, met=value >= target, baseline=base["id"])
    times = f"{cand_ms:.3f} ms against {base['impl']} {base['dtype']} {base_ms:.3f} ms"
    if value >= target:
        entry["detail"] = f"met: {value:.2f}× (target ≥ {target:g}×); {times}"
    else:
        entry["detail"] = (
            f"missed by {100 * (1 - value / target):.0f}%: {value:.2f}× against the "
            f"≥ {target:g}× target; {times}"
        )
    return entry


def model_ratios(rows: list[dict[str, Any]], labels: dict[str, str]) -> list[dict[str, Any]]:
    """Every ratio of the module docstring for the rows of one ``bench --model`` run.

    ``labels`` maps ``throughput``, ``latency`` and ``stream`` to their rows' label.
    """
    out = []
    for key in ("throughput", "latency"):
        label = labels[key]
        for dtype in ("fp32", "bf16"):
            out.append(
                _ratio(
                    f"OpenVINO / best torch, {key}",
                    "ov_vs_torch",
                    label,
                    dtype,
                    _find(rows, label, "openvino", dtype),
                    [_find(rows, label, impl, dtype) for impl in ("onednn", "ipex")],
                    f"openvino {dtype}",
                )
            )
    label = labels["throughput"]
    out.append(
        _ratio(
            "int8 IR / f32 IR, throughput",
            "int8_vs_f32",
            label,
            "int8",
            _find(rows, label, "openvino", "int8"),
            [_find(rows, label, "openvino", "fp32")],
            "openvino int8",
        )
    )
    label = labels["stream"]
    for dtype in ("fp32", "bf16"):
        out.append(
            _ratio(
                "stateful IR per step / torch per step (state carried)",
                "stream",
                label,
                dtype,
                _find(rows, label, "openvino", dtype),
                [_find(rows, label, "onednn", dtype)],
                f"stateful openvino {dtype}",
            )
        )
    return out


def render_model_section(results: dict[str, Any]) -> list[str]:
    """Markdown lines: the model, its ratios against the targets, how the IR was run."""
    m = results["model"]
    lines = [
        "## The model against PyTorch",
        "",
        f"- model: {m['task']} {m['kind']}, {m['num_layers']} layer(s), H={m['hidden_size']}"
        f"{', bidirectional' if m['bidirectional'] else ''}, {m['parameters']} parameters, "
        f"step {m['step']} of `{m['checkpoint']}`",
        f"- sequence length {m['seq_len']} ({m['seq_len_from']})",
        "- IRs: " + "; ".join(f"{k}: {v}" for k, v in m["irs"].items()),
        "- every row's outputs were compared with the torch fp32 model's on the same inputs "
        "before timing (`proof.check`); tolerances "
        + ", ".join(
            f"{k} {v:g}" if v is not None else f"{k}: top-1 agreement and the export's metric gate"
            for k, v in m["tolerances"].items()
        ),
        "",
        "Ratios are speedups (baseline median / candidate median; above 1 the candidate is "
        "faster), from one run; each runtime's rows are timed round-robin among themselves.",
        "",
        "| ratio | shape | dtype | value | target | result |",
        "|---|---|---|---:|---:|---|",
    ]
    for r in m["ratios"]:
        value = "—" if r["value"] is None else f"{r['value']:.2f}×"
        detail = r["detail"] if r["met"] is not None else f"not measured: {r['detail']}"
        if r["met"] is False:
            detail = f"**{detail}**"
        lines.append(
            f"| {r['name']} | {r['shape']} | {r['dtype']} | {value} | ≥ {r['target']:g}× "
            f"| {detail} |"
        )
    lines += ["", "Throughput:", ""]
    for row in results["rows"]:
        if row["label"] == m["labels"]["throughput"] and row["status"] == "ok":
            s, ms = row["shape"], row["timing"]["median_ms"]
            per_s = s["batch"] / (ms / 1e3)
            lines.append(
                f"- {row['impl']} {row['dtype']}: {per_s:,.0f} sequences/s, "
                f"{per_s * s['seq_len']:,.0f} steps/s"
            )
    lines += ["", "How the IR is compiled and called, and what else to know:", ""]
    lines += [f"- {note}" for note in m["notes"]]
    return [*lines, ""]
