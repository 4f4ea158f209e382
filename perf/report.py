"""Write a benchmark's results: ``results.json``, ``report.md`` and two PNG charts.

``results.json`` schema (``schema: 1``)::

    schema          1
    suite           {name, description, source}
    settings        the suite defaults used (warmup, repeats, time_cap_s, max_call_s,
                    count, peak_size), instances, and the command-line selection
    machine         nervana_lstm.platform_info.collect_info(): CPU model, ISA flags,
                    cores, torch/IPEX/OpenVINO/NNCF versions, thread variables, allocator
    affinity        logical CPUs the run could use (os.sched_getaffinity)
    allocator       "glibc malloc" unless jemalloc/tcmalloc/mimalloc is preloaded
    timer_overhead  the runner timing a no-op: {median_ms, q1_ms, q3_ms, min_ms, max_ms, ...}
    peaks           "<dtype>/t<threads>" -> {dtype, threads, size, gflops, median_gflops,
                    start_gflops, end_gflops}: measured before and after the rows;
                    ``gflops`` is the better of the two
    load            how busy the machine was (nervana_lstm.perf.quiet): granted CPUs,
                    contended_at, sample_s, groups [{rows, before, during, after (each
                    {cpus, granted, seconds, busy, own, other, pressure, processes} or
                    null), worst, contended}], contended_rows (ids), noisy_margin, noisy
                    (lines: GEMM peaks that disagree), quiet_wait ({waited_s, load} or null)
    started, wall_s, phases ({peaks_s, measure_s, probe_s}), command
    model           ``bench --model`` only: the model, its IRs, the ratios against their
                    targets and notes (nervana_lstm.perf.model_bench); its rows add
                    proof.check (outputs against torch fp32) and proof.openvino.compiled
    rows            one per kind x shape x implementation x mode x dtype x threads, written
                    from :class:`nervana_lstm.perf.results.Row` (the keys in that order):
      id            "lstm-T25-N64-I256-H256-L1/onednn/infer/fp32/t2"
      label, kind, impl, mode, dtype, threads, shape {seq_len, batch, input_size,
                    hidden_size, num_layers}
      status        "ok" | "n/a" (cannot run here) | "skipped" (not selected, or over
                    the time budget) | "error" (failed while running)
      reason        why it is not "ok"
      backend       what executed the recurrence, in words
      timing        {median_ms, q1_ms, q3_ms, iqr_pct, min_ms, max_ms, repeats, warmup, capped}
      flop_count    "full" (2·G·H·(I+H)·T·N per layer) or "recurrent" (DeepBench 2·G·H²·T·N);
                    training counts 3x forward (see nervana_lstm.perf.flops)
      flops, gflops, peak_gflops, pct_peak
      speedup_vs_unfused, speedup_vs_native   baseline median / this median
      speedup_baseline_dtype                  set when the baseline ran at another dtype
      build_s       seconds spent building (compile, convert, quantize, optimize)
      notes         list of strings; "FLAG: ..." marks a fused LSTM that ran no rnn primitive,
                    "CONTENDED: ..." a row measured while other work used the CPUs
      proof         {"onednn": {onednn_version, isa, runtime, primitives: [{primitive, impl,
                    prop_kind, count}], rnn: ["brgemm:avx512_core forward_inference", ...]},
                    "onednn_flag": str, "openvino": {layers: {layerType: precision},
                    sequence_layer, sequence_precision, precision_hint}}
      instances     null, or {count, cores, medians_ms, sum_gflops, sum_seq_per_s}

``results.json`` is written first, on its own, so the measurements survive a
failure in what follows; the report and charts are then rendered into a
temporary folder and moved into place together, so a failed run never leaves a
half-written report.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from nervana_lstm.atomic import write_bytes_atomic
from nervana_lstm.choices import BENCH_IMPLS
from nervana_lstm.perf.quiet import is_contended

__all__ = [
    "render_markdown",
    "render_summary",
    "write_charts",
    "write_json",
    "write_report",
]


def write_json(results: dict[str, Any], path: Path) -> None:
    write_bytes_atomic(path, (json.dumps(results, indent=1, sort_keys=False) + "\n").encode())


# --------------------------------------------------------------------------- markdown


def _fmt(value: float | None, spec: str = ".2f", suffix: str = "") -> str:
    return "—" if value is None else f"{value:{spec}}{suffix}"


def _ran(row: dict[str, Any]) -> str:
    proof = row.get("proof") or {}
    parts = []
    onednn = proof.get("onednn")
    if onednn is not None:
        parts.append("; ".join(f"rnn {r}" for r in onednn["rnn"]) or "no rnn primitive")
    if "openvino" in proof:
        ov = proof["openvino"]
        parts.append(f"{ov.get('sequence_layer', 'RNNSeq')} {ov['sequence_precision']}")
    if proof.get("onednn_flag"):
        parts.append("**FLAG**")
    if proof.get("onednn_error"):
        parts.append(f"probe failed: {proof['onednn_error'][:60]}")
    return "; ".join(parts) or (row.get("backend") or "")


def _machine_lines(results: dict[str, Any]) -> list[str]:
    m = results["machine"]
    cpu = m["cpu"]
    isa = ", ".join(k for k, v in cpu["flags"].items() if v) or "none of the tracked flags"
    torch = m.get("torch", {})
    ov = m.get("openvino", {})
    ipex = m.get("ipex", {})
    env = {k: v for k, v in m.get("threads", {}).get("env", {}).items() if v}
    return [
        f"- CPU: {cpu['model']} ({cpu['vendor']}), {cpu['cores']} cores / {cpu['threads']} "
        f"threads, affinity {results['affinity']}",
        f"- ISA: {isa}",
        f"- torch {torch.get('version')} (oneDNN {torch.get('onednn_version')}, "
        f"{torch.get('cpu_capability')}), IPEX {ipex.get('version') or '—'}"
        f"{'' if ipex.get('usable') else ' (not usable here)'}, OpenVINO {ov.get('version')}, "
        f"NNCF {m.get('nncf', {}).get('version')}",
        f"- allocator: {results['allocator']}; thread variables: {env or 'none set'}",
        *_amx_lines(cpu["flags"]),
        *_onednn_isa_lines(results["rows"]),
    ]


def _amx_lines(flags: dict[str, bool]) -> list[str]:
    """AMX is the Xeon bf16/int8 path; say so when this CPU cannot take it."""
    if flags.get("amx_bf16"):
        return []
    return [
        "- AMX: n/a, this CPU has no amx_bf16 flag; bf16 rows ran without AMX tiles "
        "(AVX-512 BF16 where the ISA line lists it)"
    ]


def _onednn_isa_lines(rows: list[dict[str, Any]]) -> list[str]:
    """The ISA oneDNN reported in the ONEDNN_VERBOSE reruns (what its kernels could use)."""
    isas = sorted(
        {
            r["proof"]["onednn"]["isa"]
            for r in rows
            if (r.get("proof") or {}).get("onednn") and r["proof"]["onednn"].get("isa")
        }
    )
    return [f"- oneDNN ISA (ONEDNN_VERBOSE): {isa}" for isa in isas]


def render_summary(results: dict[str, Any]) -> str:
    """One compact table: a line per shape, mode, dtype and threads; a column per implementation.

    Each cell is the median in ms and, in brackets, the speedup over ``unfused``;
    ``n/a`` where the implementation cannot run there, blank where it was not asked for.
    """
    rows = results["rows"]
    impls = [i for i in BENCH_IMPLS if any(r["impl"] == i and r["status"] == "ok" for r in rows)]
    keys: dict[tuple[str, str, str, int], dict[str, dict[str, Any]]] = {}
    for r in rows:
        keys.setdefault((r["label"], r["mode"], r["dtype"], r["threads"]), {})[r["impl"]] = r
    lines = [
        "| shape | mode | dtype | thr | " + " | ".join(impls) + " |",
        "|---|---|---|---:|" + "---:|" * len(impls),
    ]
    for (label, mode, dtype, threads), by_impl in keys.items():
        if not any(by_impl[i]["status"] == "ok" for i in impls if i in by_impl):
            continue
        cells = []
        for impl in impls:
            r = by_impl.get(impl)
            if r is None or r["status"] == "skipped":
                cells.append("")
            elif r["status"] != "ok":
                cells.append(r["status"])
            else:
                speed = r["speedup_vs_unfused"]
                extra = f" ({speed:.2f}×)" if speed is not None and impl != "unfused" else ""
                cap = "*" if r["timing"]["capped"] else ""
                busy = "!" if is_contended(r) else ""
                cells.append(f"{r['timing']['median_ms']:.2f}{cap}{busy}{extra}")
        lines.append(f"| {label} | {mode} | {dtype} | {threads} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _noise_line(ok: list[dict[str, Any]]) -> str:
    """How steady the run was: the median spread and how many rows the time cap cut short."""
    if not ok:
        return "No row was measured."
    spreads = sorted(r["timing"]["iqr_pct"] for r in ok)
    capped = sum(1 for r in ok if r["timing"]["capped"])
    return (
        f"Spread: median IQR {spreads[len(spreads) // 2]:.1f}% of the median "
        f"(worst {spreads[-1]:.0f}%); {capped} of {len(ok)} rows reached the time cap."
    )


def _load_lines(results: dict[str, Any]) -> list[str]:
    """What the top of the report says about the machine's load: contended rows, noisy peaks."""
    load = results.get("load")
    if not load:
        return []
    lines = []
    wait = load.get("quiet_wait")
    if wait and wait.get("load"):
        lines.append(
            f"Waited {wait['waited_s']:g} s for a quiet machine (--quiet-wait): other work on "
            f"{wait['load']['other']:.1f} of {wait['load']['cpus']} CPUs at the start."
        )
    contended = load.get("contended_rows") or []
    groups = load.get("groups") or []
    if contended:
        worst = max(g.get("worst", 0.0) for g in groups)
        lines.append(
            f"**Measured under contention:** {len(contended)} row(s), marked `!`, ran while "
            f"other work took up to {worst:.1f} of the {load['granted']} granted CPU(s) "
            f"(threshold {load['contended_at']:g}); their times measure the neighbours as "
            "much as the code. Rerun them on a quiet machine (`--quiet-wait SECONDS`)."
        )
    elif groups:
        lines.append(
            f"Quiet: other work stayed under {load['contended_at']:g} CPU before, during and "
            f"after each of the {len(groups)} group(s) of rows."
        )
    for line in load.get("noisy") or []:
        lines.append(f"**Noisy:** {line}.")
    return [*lines, ""] if lines else []


def _model_lines(results: dict[str, Any]) -> list[str]:
    """The ratios section of a ``bench --model`` run; nothing for a suite run."""
    if "model" not in results:
        return []
    from nervana_lstm.perf.model_report import render_model_section

    return render_model_section(results)


def render_markdown(results: dict[str, Any]) -> str:
    """The human report: machine, peaks, harness overhead, then one table per shape and mode."""
    rows = results["rows"]
    ok = [r for r in rows if r["status"] == "ok"]
    s = results["settings"]
    lines = [
        f"# Benchmark report: {results['suite']['name']}",
        "",
        f"Command: `{results.get('command')}`  ",
        f"Started {results['started']}, took {results['wall_s']} s. "
        f"Warm-up {s['warmup']}, up to {s['repeats']} timed calls (cap {s['time_cap_s']} s "
        f"per measurement); medians with the interquartile range (IQR) as spread.",
        "",
        *_load_lines(results),
        "## Summary",
        "",
        "Median ms per call (speedup over `unfused` in brackets; `*` = time cap reached; "
        "`!` = measured under contention).",
        "",
        render_summary(results),
        "",
        _noise_line(ok),
        "",
        *_model_lines(results),
        "## Machine",
        "",
        *_machine_lines(results),
        "",
        "## Ceilings and harness overhead",
        "",
        "| GEMM peak | size | best GFLOP/s | before rows | after rows |",
        "|---|---|---|---|---|",
    ]
    for key, p in sorted(results["peaks"].items()):
        lines.append(
            f"| {key} | {p['size']} | {p['gflops']:.1f} | {_fmt(p.get('start_gflops'), '.1f')} "
            f"| {_fmt(p.get('end_gflops'), '.1f')} |"
        )
    over = results["timer_overhead"]["median_ms"]
    smallest = min((r["timing"]["median_ms"] for r in ok), default=None)
    ratio = ""
    if smallest:  # none when no row ran (every implementation n/a, skipped or failed)
        ratio = f" = {100 * over / smallest:.4f}% of the smallest measured time ({smallest:.3f} ms)"
    lines += [
        "",
        f"Timing a no-op costs {over * 1e3:.2f} µs per call{ratio}.",
        "",
        f"FLOPs: `{s['count']}` count "
        + (
            "(2·G·H·(I+H)·T·N per layer, G gate blocks: 1 rnn, 3 gru, 4 lstm and dglstm; "
            "I = H above layer 0, where a DG-LSTM layer adds its depth gate's 2·H·I·T·N)"
            if s["count"] == "full"
            else "(DeepBench, recurrent only: 2·G·H²·T·N per layer; G = 1 rnn, 3 gru, "
            "4 lstm and dglstm)"
        )
        + "; training = 3x forward. Speedups are the baseline's median over this median "
        "(same shape, mode, dtype and threads).",
    ]
    if s.get("instances", 1) > 1:
        lines.append(
            f"\nThroughput mode: {s['instances']} pinned instances; GFLOP/s and peaks are "
            "summed over instances."
        )
    groups: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["label"], r["mode"])].append(r)
    for (label, mode), members in groups.items():
        lines += ["", f"## {label} — {mode}", ""]
        measured = [r for r in members if r["status"] == "ok"]
        if measured:
            lines += [
                "| impl | dtype | threads | ms | IQR % | GFLOP/s | % peak | × unfused "
                "| × native | ran |",
                "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
            ]
            for r in sorted(measured, key=lambda r: (r["dtype"], r["threads"], r["impl"])):
                t = r["timing"]
                base = f" (vs {r['speedup_baseline_dtype']})" if r["speedup_baseline_dtype"] else ""
                lines.append(
                    f"| {r['impl']} | {r['dtype']} | {r['threads']} | {t['median_ms']:.3f}"
                    f"{'*' if t['capped'] else ''}{'!' if is_contended(r) else ''} "
                    f"| {t['iqr_pct']:.1f} | {_fmt(r['gflops'], '.1f')}"
                    f" | {_fmt(r['pct_peak'], '.1f')} | {_fmt(r['speedup_vs_unfused'])}{base} "
                    f"| {_fmt(r['speedup_vs_native'])}{base} | {_ran(r)} |"
                )
        others = [r for r in members if r["status"] != "ok"]
        if others:
            lines += ["", "Not measured:"]
            seen: dict[str, list[str]] = defaultdict(list)
            for r in others:
                seen[f"{r['status']}: {r['reason']}"].append(f"{r['impl']}/{r['dtype']}")
            for reason, which in seen.items():
                lines.append(f"- {', '.join(sorted(set(which)))} — {reason}")
        flags = [n for r in measured for n in r["notes"] if n.startswith("FLAG")]
        for flag in flags:
            lines.append(f"\n**{flag}**")
    lines += [
        "",
        "`*` the time cap stopped the repeats early; `!` other work used the CPUs meanwhile.",
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- charts


#: one colour per implementation, the same in every chart
_COLORS = {
    "onednn": "tab:blue",
    "native": "tab:orange",
    "unfused": "tab:green",
    "premul": "tab:red",
    "compiled": "tab:brown",
    "ipex": "tab:purple",
    "openvino": "tab:cyan",
}
_DTYPE_STYLE = {"fp32": ("o", "-"), "bf16": ("s", "--"), "int8": ("^", ":")}


def _short(row: dict[str, Any]) -> str:
    s = row["shape"]
    layers = f" L{s['num_layers']}" if s["num_layers"] > 1 else ""
    return f"{row['kind']} H{s['hidden_size']}\nN{s['batch']} T{s['seq_len']}{layers}"


def write_charts(results: dict[str, Any], out_dir: Path) -> list[Path]:
    """``speedup.png`` (bars per shape) and ``gflops_vs_hidden.png`` (with the peak lines)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in results["rows"] if r["status"] == "ok"]
    threads = max((r["threads"] for r in ok), default=1)
    ok_t = [r for r in ok if r["threads"] == threads]
    written = [
        _speedup_chart(plt, ok_t, threads, out_dir / "speedup.png"),
        _gflops_chart(plt, results, ok_t, threads, out_dir / "gflops_vs_hidden.png"),
    ]
    return written


def _speedup_chart(plt: Any, ok_t: list[dict[str, Any]], threads: int, path: Path) -> Path:
    """One panel per (mode, dtype); a group of bars per shape, one bar per implementation.

    The y axis is logarithmic and bars start at 1 (the unfused time), so a bar
    going down is an implementation slower than the unfused cell.
    """
    panels = sorted(
        {(r["mode"], r["dtype"]) for r in ok_t if r["speedup_vs_unfused"] and r["dtype"] != "int8"}
    )
    n = max(1, len(panels))
    fig, axes = plt.subplots(n, 1, figsize=(11, 3.3 * n), squeeze=False)
    for ax, (mode, dtype) in zip(axes[:, 0], panels, strict=False):
        sel = [r for r in ok_t if r["mode"] == mode and r["dtype"] == dtype]
        sel = [r for r in sel if r["speedup_vs_unfused"] and r["impl"] != "unfused"]
        labels = list(dict.fromkeys(_short(r) for r in sel))
        impls = [i for i in _COLORS if any(r["impl"] == i for r in sel)]
        width = 0.8 / max(1, len(impls))
        for j, impl in enumerate(impls):
            xs, heights = [], []
            for i, label in enumerate(labels):
                hit = [r for r in sel if _short(r) == label and r["impl"] == impl]
                if hit:
                    xs.append(i + (j - (len(impls) - 1) / 2) * width)
                    heights.append(hit[0]["speedup_vs_unfused"] - 1.0)
            ax.bar(xs, heights, width, bottom=1.0, label=impl, color=_COLORS[impl])
        ax.set_yscale("log")
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_xticks(range(len(labels)), labels, fontsize=7)
        ax.set_ylabel("× unfused (log)")
        ax.set_title(
            f"{mode}, {dtype}, {threads} thread(s): speedup over the unfused cell", fontsize=9
        )
        if impls:
            ax.legend(fontsize=7, ncol=len(impls), loc="upper right")
        else:  # only the unfused baseline ran: nothing to compare it with
            ax.text(0.5, 0.5, "only the unfused cell ran", ha="center", transform=ax.transAxes)
    if not panels:
        axes[0, 0].text(0.5, 0.5, "no speedups measured", ha="center")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def _gflops_chart(
    plt: Any, results: dict[str, Any], ok_t: list[dict[str, Any]], threads: int, path: Path
) -> Path:
    """GFLOP/s against H for the most common kind's batched shapes, with the GEMM peaks."""
    kinds = [r["kind"] for r in ok_t]
    kind = max(set(kinds), key=kinds.count) if kinds else "lstm"
    sel = [r for r in ok_t if r["kind"] == kind and r["gflops"]]
    batched = [r for r in sel if r["shape"]["batch"] >= 8]
    sel = batched or sel
    modes = sorted({r["mode"] for r in sel}) or ["infer"]
    fig, axes = plt.subplots(1, len(modes), figsize=(6.5 * len(modes), 4.5), squeeze=False)
    for ax, mode in zip(axes[0], modes, strict=False):
        rows = [r for r in sel if r["mode"] == mode]
        for impl in [i for i in _COLORS if any(r["impl"] == i for r in rows)]:
            for dtype, (marker, line) in _DTYPE_STYLE.items():
                best: dict[int, float] = {}
                for r in rows:
                    if r["impl"] == impl and r["dtype"] == dtype:
                        h = r["shape"]["hidden_size"]
                        best[h] = max(best.get(h, 0.0), r["gflops"])
                if best:
                    xs = sorted(best)
                    ax.plot(
                        xs,
                        [best[x] for x in xs],
                        marker=marker,
                        linestyle=line,
                        color=_COLORS[impl],
                        label=f"{impl} {dtype}",
                    )
        for _key, peak in sorted(results["peaks"].items()):
            if peak["threads"] == threads:
                color = "black" if peak["dtype"] == "fp32" else "gray"
                ax.axhline(
                    peak["gflops"],
                    linestyle="-.",
                    linewidth=1.2,
                    color=color,
                    label=f"GEMM peak {peak['dtype']}",
                )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("hidden size H (= input size in DeepBench shapes)")
        ax.set_ylabel("GFLOP/s")
        ax.set_title(
            f"{kind} {mode}, batch ≥ 8, {threads} thread(s), best per H"
            if batched
            else f"{kind} {mode}, {threads} thread(s)",
            fontsize=9,
        )
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, ncol=2, loc="lower right")
        else:  # nothing ran: an empty chart that says so, not a matplotlib warning
            ax.text(0.5, 0.5, "no GFLOP/s measured", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
    return path


def _save(fig: Any, path: Path) -> None:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    write_bytes_atomic(path, buf.getvalue())


def write_report(results: dict[str, Any], out_dir: Path) -> dict[str, Path]:
    """Write ``results.json``, ``report.md`` and the charts into ``out_dir``; return their paths.

    ``results.json`` goes first, on its own (atomically), so the measurements
    survive whatever fails after them. The report and the charts are rendered
    into a temporary folder next to ``out_dir`` and moved into place together;
    if that fails, the earlier run's report and charts are removed (they would
    describe other results) and the UsageError says what was kept.
    """
    import shutil

    from nervana_lstm.errors import UsageError
    from nervana_lstm.paths import write_problem

    out_dir = Path(out_dir)
    json_path = out_dir / "results.json"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        write_json(results, json_path)
    except OSError as exc:
        raise UsageError(
            f"cannot write {json_path}: {write_problem(exc, json_path)}; nothing was written"
        ) from None
    stage = None
    try:
        stage = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.partial-"))
        charts = write_charts(results, stage)
        write_bytes_atomic(stage / "report.md", render_markdown(results).encode())
        names = {"md": "report.md", **{c.stem: c.name for c in charts}}
        for name in names.values():
            os.replace(stage / name, out_dir / name)
    except Exception as exc:
        for name in ("report.md", *_CHART_NAMES):
            (out_dir / name).unlink(missing_ok=True)
        why = write_problem(exc, out_dir) if isinstance(exc, OSError) else _one_line(exc)
        raise UsageError(
            f"the measurements are saved in {json_path}, but the report and charts could not "
            f"be written ({why}); 'nervana-lstm bench compare' reads results.json as it is"
        ) from None
    finally:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
    return {"json": json_path, **{key: out_dir / name for key, name in names.items()}}


#: the charts :func:`write_charts` draws
_CHART_NAMES = ("speedup.png", "gflops_vs_hidden.png")


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"
