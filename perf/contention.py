"""Speed beside other work: the same short run quiet and next to K busy processes
(a benchmark, not a test; run it on an otherwise quiet machine).

For each variant of threads and OpenMP waiting, each round runs the same work twice,
alone and beside ``--busy K`` processes that spin (``while True: pass``), and reports::

    kept        = busy tokens/s / quiet tokens/s       (target >= 0.4 for "auto")
    quiet_ratio = quiet tokens/s / "spin" quiet tokens/s   (target >= 0.95 for "auto")

medians over ``--rounds``. Parts:

* ``train``: ``nervana-lstm train`` on a config (default the shipped ``adding.yaml``,
  ``train.accel=onednn``) for ``--steps`` steps; tokens/s is the median of its
  ``metrics.jsonl`` windows after the first. A run still going after ``--run-timeout``
  seconds is interrupted (SIGINT: it saves and stops) and scored on the windows it
  logged.
* ``call``: one fused ``nn.LSTM`` inference call (H=256, N=64, T=25, fp32) in a child
  process that plans its threads like the CLI; ms per call, median of 20.

Variants (environment of the run):

==================  ============================================================
spin                every granted CPU, OpenMP's default wait policy: the toolkit
                    before the contention rule (``NERVANA_LSTM_CONTENTION=off``)
passive             spin's threads with ``OMP_WAIT_POLICY=PASSIVE``, always
fewer               ``OMP_NUM_THREADS`` = granted CPUs - K, always
auto                the toolkit's rule as shipped (``thread_plan.DEFAULT_RULE``)
auto-fewer          the rule with remedy ``fewer`` (``NERVANA_LSTM_CONTENTION=fewer``)
auto-fewer+passive  the rule with both remedies
iomp, iomp-bt0,     Intel's OpenMP runtime preloaded (``LD_PRELOAD=libiomp5.so``, the
iomp-bt1            ``intel-openmp`` package, as ``ipexrun`` does) with its default
                    ``KMP_BLOCKTIME`` (200 ms), 0 and 1 ms; only where libiomp5 is found
==================  ============================================================

::

    python -m nervana_lstm.perf.contention                       # train + call, K=1, 3 rounds
    python -m nervana_lstm.perf.contention --part call --busy 1 --rounds 5
    python -m nervana_lstm.perf.contention --variants spin,auto,iomp-bt0 --out contention-out

Writes ``contention.json`` and ``contention.md`` (the README's table) into ``--out``.
Before each quiet run it waits (``--quiet-wait``, default 60 s) for other work to
stop, and exits 2 when it does not: a quiet baseline taken on a busy machine is no
baseline.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from importlib.resources import as_file, files
from pathlib import Path
from typing import Any

from nervana_lstm.errors import UsageError

__all__ = [
    "BUSY_CODE",
    "PARTS",
    "VARIANTS",
    "find_libiomp",
    "main",
    "render_table",
    "summarize",
    "tokens_per_s",
    "variant_env",
]

#: what each busy neighbour runs
BUSY_CODE = "while True: pass"
#: what can be measured
PARTS: tuple[str, ...] = ("train", "call")
#: every variant, in report order (see the module docstring)
VARIANTS: tuple[str, ...] = (
    "spin",
    "passive",
    "fewer",
    "auto",
    "auto-fewer",
    "auto-fewer+passive",
    "iomp",
    "iomp-bt0",
    "iomp-bt1",
)
#: the variants run when --variants is not given (iomp ones are added where libiomp5 exists)
DEFAULT_VARIANTS: tuple[str, ...] = ("spin", "passive", "fewer", "auto")
#: the variant whose quiet speed is today's default
BASELINE = "spin"
#: targets from the contention rule's purpose: keep this much of the quiet speed when busy,
#: and lose no more than this on a quiet machine against the baseline
KEPT_TARGET, QUIET_TARGET = 0.4, 0.95
#: variables a variant may set; cleared from the inherited environment first
_CONTROLLED = (
    "NERVANA_LSTM_CONTENTION",
    "OMP_WAIT_POLICY",
    "OMP_NUM_THREADS",
    "KMP_BLOCKTIME",
    "GOMP_SPINCOUNT",
    "LD_PRELOAD",
)


def find_libiomp() -> Path | None:
    """``libiomp5.so`` of the ``intel-openmp`` package in this environment, or on
    ``LD_LIBRARY_PATH``; None when Intel's OpenMP runtime is not installed."""
    dirs = [Path(sys.prefix) / "lib"]
    dirs += [Path(d) for d in os.environ.get("LD_LIBRARY_PATH", "").split(":") if d]
    for folder in dirs:
        lib = folder / "libiomp5.so"
        if lib.is_file():
            return lib
    return None


def variant_env(
    name: str, granted: int, busy: int, libiomp: Path | None, base: dict[str, str]
) -> dict[str, str]:
    """The environment variant ``name`` runs with: ``base`` without what variants control,
    plus the variant's own settings."""
    env = {k: v for k, v in base.items() if k not in _CONTROLLED}
    off = {"NERVANA_LSTM_CONTENTION": "off"}
    if name.startswith("iomp"):
        if libiomp is None:
            raise UsageError(
                f"variant {name} needs Intel's OpenMP runtime (libiomp5.so); install it with "
                "pip install intel-openmp, or leave the iomp variants out of --variants"
            )
        blocktime = {
            "iomp": {},
            "iomp-bt0": {"KMP_BLOCKTIME": "0"},
            "iomp-bt1": {"KMP_BLOCKTIME": "1"},
        }
        return {**env, **off, "LD_PRELOAD": str(libiomp), **blocktime[name]}
    extra: dict[str, dict[str, str]] = {
        "spin": off,
        "passive": {**off, "OMP_WAIT_POLICY": "PASSIVE"},
        "fewer": {**off, "OMP_NUM_THREADS": str(max(1, granted - busy))},
        "auto": {},
        "auto-fewer": {"NERVANA_LSTM_CONTENTION": "fewer"},
        "auto-fewer+passive": {"NERVANA_LSTM_CONTENTION": "fewer+passive"},
    }
    if name not in extra:
        raise UsageError(f"unknown variant {name!r}; expected one of {', '.join(VARIANTS)}")
    return {**env, **extra[name]}


@contextlib.contextmanager
def busy_neighbours(count: int) -> Iterator[list[subprocess.Popen[bytes]]]:
    """``count`` processes running :data:`BUSY_CODE`, stopped on the way out."""
    procs = [subprocess.Popen([sys.executable, "-c", BUSY_CODE]) for _ in range(count)]
    try:
        time.sleep(0.5)  # they are running before the measured work starts
        yield procs
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


def tokens_per_s(metrics: Path) -> float | None:
    """Median tokens/s of a run's ``metrics.jsonl`` train windows, the first left out
    (it carries the first steps' one-time costs); the only one when there is one."""
    windows = []
    if metrics.is_file():
        for line in metrics.read_text().splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line
            if record.get("split") == "train" and "tokens_per_s" in record:
                windows.append(float(record["tokens_per_s"]))
    if not windows:
        return None
    return statistics.median(windows[1:] if len(windows) > 1 else windows)


def _train_once(args: argparse.Namespace, env: dict[str, str], tmp: Path) -> dict[str, Any]:
    out = tmp / f"run-{time.monotonic_ns()}"
    log_every = max(1, args.steps // 10)
    cmd = [
        sys.executable, "-m", "nervana_lstm", "train", "--config", str(args.config),
        "--out", str(out), "--no-progress",
        "--set", f"train.steps={args.steps}", "--set", f"train.log_every={log_every}",
        "--set", f"eval.every={args.steps}", "--set", "train.accel=onednn",
    ]  # fmt: skip
    for item in args.set:
        cmd += ["--set", item]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stopped = False
    try:
        stdout, stderr = proc.communicate(timeout=args.run_timeout)
    except subprocess.TimeoutExpired:
        stopped = True
        proc.send_signal(signal.SIGINT)  # the run finishes its step, saves and stops
        try:
            stdout, stderr = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
    if proc.returncode not in (0, 130) and not stopped:
        last = (stderr or stdout).strip().splitlines()[-1:] or ["no output"]
        raise UsageError(f"the training run failed (exit {proc.returncode}): {last[0]}")
    plan: dict[str, Any] = {}
    if (out / "run.json").is_file():
        plan = json.loads((out / "run.json").read_text()).get("threads") or {}
    return {
        "value": tokens_per_s(out / "metrics.jsonl"),
        "threads": plan.get("threads"),
        "wait_policy": plan.get("wait_policy"),
        "decided": plan.get("decided"),
        "stopped_after_s": args.run_timeout if stopped else None,
    }


def _call_once(args: argparse.Namespace, env: dict[str, str]) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "nervana_lstm.perf.contention", "--call-child"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=args.run_timeout)
    if done.returncode != 0:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise UsageError(f"the LSTM call child failed (exit {done.returncode}): {last[0]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _call_child() -> int:
    """One fused LSTM call timed under this process's environment, threads planned as the
    CLI plans them; prints ``{"value": ms, "threads", "wait_policy", "decided"}``."""
    from nervana_lstm.thread_plan import apply_plan, plan_threads

    plan = plan_threads(None, "threads")
    apply_plan(plan)
    import torch

    torch.set_num_threads(plan.threads)
    lstm = torch.nn.LSTM(256, 256)
    x = torch.randn(25, 64, 256, generator=torch.Generator().manual_seed(0))
    times = []
    with torch.no_grad():
        for i in range(25):
            start = time.perf_counter()
            lstm(x)
            if i >= 5:  # warm-up
                times.append((time.perf_counter() - start) * 1e3)
    print(
        json.dumps(
            {
                "value": statistics.median(times),
                "threads": torch.get_num_threads(),
                "wait_policy": os.environ.get("OMP_WAIT_POLICY"),
                "decided": plan.decided,
            }
        )
    )
    return 0


def summarize(runs: list[dict[str, Any]], part: str) -> list[dict[str, Any]]:
    """One row per variant: medians over rounds of the quiet and busy figures, their ratio
    (``kept``; for ``call`` figures are ms, so kept = quiet ms / busy ms) and the quiet
    figure against :data:`BASELINE`'s."""
    higher_is_better = part == "train"
    by_variant: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for run in runs:
        if run["part"] == part:
            by_variant.setdefault(run["variant"], {}).setdefault(run["load"], []).append(run)

    def med(items: list[dict[str, Any]]) -> float | None:
        values = [r["value"] for r in items if r["value"] is not None]
        return statistics.median(values) if values else None

    def ratio(a: float | None, b: float | None) -> float | None:
        if a is None or b is None or not a or not b:
            return None
        return a / b if higher_is_better else b / a

    base = med(by_variant.get(BASELINE, {}).get("quiet", []))
    rows = []
    for name in [v for v in VARIANTS if v in by_variant]:
        quiet, busy = by_variant[name].get("quiet", []), by_variant[name].get("busy", [])
        q, b = med(quiet), med(busy)
        rows.append(
            {
                "variant": name,
                "quiet": q,
                "busy": b,
                "kept": ratio(b, q),
                "quiet_vs_baseline": ratio(q, base),
                "threads": [
                    quiet[-1]["threads"] if quiet else None,
                    busy[-1]["threads"] if busy else None,
                ],
                "wait_policy": [
                    quiet[-1]["wait_policy"] if quiet else None,
                    busy[-1]["wait_policy"] if busy else None,
                ],
                "stopped": any(r.get("stopped_after_s") for r in quiet + busy),
            }
        )
    return rows


def render_table(rows: list[dict[str, Any]], part: str, busy: int) -> str:
    """The Markdown table of one part."""
    unit = "tokens/s" if part == "train" else "ms per call"
    fmt = (lambda v: f"{v:,.0f}") if part == "train" else (lambda v: f"{v:.1f}")

    def cell(v: float | None, f: Any = fmt) -> str:
        return "—" if v is None else f(v)

    lines = [
        f"| variant | quiet {unit} | beside {busy} busy | kept | quiet vs {BASELINE} "
        "| threads quiet/busy | wait policy quiet/busy |",
        "|---|---:|---:|---:|---:|---|---|",
    ]

    def ratio(v: float) -> str:
        return f"{v:.2f}×"

    for r in rows:
        stop = " (stopped at the time limit)" if r["stopped"] else ""
        lines.append(
            f"| {r['variant']} | {cell(r['quiet'])} | {cell(r['busy'])}{stop} "
            f"| {cell(r['kept'], ratio)} | {cell(r['quiet_vs_baseline'], ratio)} "
            f"| {r['threads'][0]}/{r['threads'][1]} "
            f"| {r['wait_policy'][0] or 'default'}/{r['wait_policy'][1] or 'default'} |"
        )
    return "\n".join(lines)


def _verdict(rows: list[dict[str, Any]]) -> list[str]:
    auto = next((r for r in rows if r["variant"] == "auto"), None)
    if auto is None:
        return []
    out = []
    if auto["kept"] is not None:
        ok = "meets" if auto["kept"] >= KEPT_TARGET else "misses"
        out.append(f"auto keeps {auto['kept']:.2f}× of its quiet speed ({ok} >= {KEPT_TARGET})")
    if auto["quiet_vs_baseline"] is not None:
        ok = "meets" if auto["quiet_vs_baseline"] >= QUIET_TARGET else "misses"
        out.append(
            f"auto runs quiet at {auto['quiet_vs_baseline']:.2f}× of {BASELINE} "
            f"({ok} >= {QUIET_TARGET})"
        )
    return out


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m nervana_lstm.perf.contention",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--part", default="train,call", help="comma list of train, call")
    parser.add_argument("--variants", default=None, help=f"comma list of {', '.join(VARIANTS)}")
    parser.add_argument("--busy", type=int, default=1, help="busy neighbours K (default 1)")
    parser.add_argument("--rounds", type=int, default=3, help="quiet/busy pairs per variant")
    parser.add_argument("--steps", type=int, default=200, help="training steps per run")
    parser.add_argument("--config", type=Path, default=None, help="default: shipped adding.yaml")
    parser.add_argument("--set", action="append", default=[], help="config override, repeatable")
    parser.add_argument("--run-timeout", type=float, default=120.0, help="seconds per run")
    parser.add_argument("--quiet-wait", type=float, default=60.0, help="seconds, before quiet runs")
    parser.add_argument("--out", type=Path, default=Path("contention-out"))
    parser.add_argument("--call-child", action="store_true", help=argparse.SUPPRESS)
    return parser


def _check(args: argparse.Namespace, libiomp: Path | None) -> tuple[list[str], list[str]]:
    parts = [p.strip() for p in args.part.split(",") if p.strip()]
    if not parts or any(p not in PARTS for p in parts):
        raise UsageError(f"--part got {args.part!r}; expected a comma list of {', '.join(PARTS)}")
    if args.variants is None:
        variants = list(DEFAULT_VARIANTS) + (["iomp", "iomp-bt0"] if libiomp else [])
    else:
        variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in variants if v not in VARIANTS]
    if bad or not variants:
        raise UsageError(
            f"--variants got {args.variants!r}; expected a comma list of {', '.join(VARIANTS)}"
        )
    for name, value, least in (("--busy", args.busy, 1), ("--rounds", args.rounds, 1),
                               ("--steps", args.steps, 2)):  # fmt: skip
        if value < least:
            raise UsageError(f"{name} got {value}; expected an integer >= {least}")
    return parts, variants


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.call_child:
        return _call_child()
    from nervana_lstm.perf.quiet import wait_for_quiet
    from nervana_lstm.platform_info import read_cpu_info
    from nervana_lstm.resources import cpu_grant

    libiomp = find_libiomp()
    try:
        parts, variants = _check(args, libiomp)
        grant = cpu_grant()
        envs = {
            v: variant_env(v, grant.cpus, args.busy, libiomp, dict(os.environ)) for v in variants
        }
    except UsageError as exc:
        print(f"contention: error: {exc}", file=sys.stderr)
        return 2
    runs: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        if args.config is None:
            args.config = stack.enter_context(
                as_file(files("nervana_lstm.configs") / "adding.yaml")
            )
        tmp = Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="nervana-lstm-contention-"))
        )
        try:
            for round_ in range(args.rounds):
                for part in parts:
                    for variant in variants:
                        for load in ("quiet", "busy"):
                            if load == "quiet":
                                wait_for_quiet(args.quiet_wait)
                            with contextlib.ExitStack() as busy:
                                if load == "busy":
                                    busy.enter_context(busy_neighbours(args.busy))
                                if part == "train":
                                    got = _train_once(args, envs[variant], tmp)
                                else:
                                    got = _call_once(args, envs[variant])
                            run = {
                                "round": round_,
                                "part": part,
                                "variant": variant,
                                "load": load,
                                **got,
                            }
                            runs.append(run)
                            print(
                                f"round {round_ + 1} {part:5s} {variant:18s} {load:5s} "
                                f"{got['value'] if got['value'] is None else round(got['value'], 2)} "
                                f"threads={got['threads']} wait={got['wait_policy'] or 'default'}",
                                file=sys.stderr,
                                flush=True,
                            )
        except UsageError as exc:
            print(f"contention: error: {exc}", file=sys.stderr)
            return 2
    cpu = read_cpu_info()
    doc: dict[str, Any] = {
        "cpu": cpu.model,
        "cpus": grant.as_dict(),
        "busy": args.busy,
        "rounds": args.rounds,
        "steps": args.steps,
        "config": str(args.config),
        "sets": args.set,
        "libiomp": str(libiomp) if libiomp else None,
        "runs": runs,
        "tables": {part: summarize(runs, part) for part in parts},
    }
    md = [
        f"Contention benchmark: {cpu.model}, {grant.describe()}, K={args.busy} busy "
        f"process(es), median of {args.rounds} round(s)"
        + ("" if libiomp else "; Intel OpenMP not installed (pip install intel-openmp to compare)"),
        "",
    ]
    for part in parts:
        rows = doc["tables"][part]
        title = (
            f"train: {Path(args.config).name}, {args.steps} steps, onednn"
            if part == "train"
            else "call: fused nn.LSTM inference, H=256 N=64 T=25 fp32"
        )
        md += [f"### {title}", "", render_table(rows, part, args.busy), ""]
        md += [f"- {line}" for line in _verdict(rows)] + [""]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "contention.json").write_text(json.dumps(doc, indent=1) + "\n")
    (args.out / "contention.md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    sys.exit(main())
