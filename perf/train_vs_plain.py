"""``nervana-lstm train`` side by side with a plain PyTorch loop (a benchmark, not a test).

The plain loop is what a user writes without the toolkit, on the same model and
the same data::

    nn.Embedding(V, E) -> nn.LSTM(E, H) -> nn.Linear(H, V)
    AdamW(lr) with torch's defaults otherwise, clip_grad_norm_(1.0), a constant rate,
    truncated BPTT with the state carried (and detached) from batch to batch,
    fp32, or the same under torch.autocast("cpu", dtype=torch.bfloat16)

It draws the charlm task's own training batches and is scored by the toolkit's
held-out evaluator, so both sides see the same characters and report the same
bits per character. Each side runs in a process of its own: importing IPEX
replaces stock torch's CPU kernels for the whole process, so a process that
ever imported it cannot time plain torch. Reported, all measured in one run::

    train / plain fp32        tokens/s of `train` as shipped over the plain fp32 loop's
    train / plain same prec.  over the plain loop in the precision `train` chose
    held-out bpc at step S    both sides after the same number of steps
    loop / bare step          `train`'s loop over its bare fused step (perf/train_overhead.py)

Tokens/s on both sides is the median over windows of ``log_every`` steps after
the first window (evaluation and saving excluded).

    python perf/train_vs_plain.py --out perf/reports/train-vs-plain-2core
    python perf/train_vs_plain.py --steps 300 --set model.hidden_size=512   # another shape
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nervana_lstm.perf.run_config import load_run_config, shipped_config

__all__ = ["PlainCharLM", "main", "plain_run"]


class PlainCharLM(nn.Module):
    """The plain model: ``nn.Embedding -> nn.LSTM -> nn.Linear``, time-major.

    ``forward(x, state, lengths)`` takes (T, N) token ids and returns (T, N, V)
    logits and the new ``(h, c)``; ``lengths`` is accepted (and ignored) so the
    toolkit's evaluator can call it.
    """

    def __init__(self, vocab: int, embedding_dim: int, hidden_size: int, forget_bias: float):
        super().__init__()
        self.embed = nn.Embedding(vocab, embedding_dim)
        self.lstm = nn.LSTM(embedding_dim, hidden_size)
        self.head = nn.Linear(hidden_size, vocab)
        if forget_bias:
            with torch.no_grad():  # the forget gate's rows of b_ih (PyTorch order i, f, g, o)
                self.lstm.bias_ih_l0[hidden_size : 2 * hidden_size].fill_(forget_bias)
                self.lstm.bias_hh_l0[hidden_size : 2 * hidden_size].zero_()

    def forward(
        self,
        x: torch.Tensor,
        state: tuple[torch.Tensor, torch.Tensor] | None = None,
        lengths: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        out, state = self.lstm(self.embed(x), state)
        return self.head(out), state


def plain_run(cfg: Any, precision: str, steps: int, log_every: int) -> dict[str, Any]:
    """Train the plain loop for ``steps`` and evaluate it; tokens/s per window of ``log_every``."""
    from nervana_lstm.data import make_task
    from nervana_lstm.precision import autocast
    from nervana_lstm.train.loop import evaluate

    task = make_task(cfg.task.name, **cfg.task.options)
    torch.manual_seed(cfg.train.seed)
    model = PlainCharLM(
        task.spec.input_size, cfg.model.embedding_dim, cfg.model.hidden_size,
        cfg.model.forget_bias or 0.0,
    )  # fmt: skip
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.optim.lr)
    loss_fn = nn.CrossEntropyLoss()
    state = None
    windows: list[float] = []
    tokens, start = 0, time.perf_counter()
    model.train()
    for step in range(steps):
        batch = task.train_batch(step, cfg.train.batch_size)
        if state is not None and batch.reset is not None and bool(batch.reset.any()):
            keep = (~batch.reset).to(state[0].dtype).view(1, -1, 1)
            state = (state[0] * keep, state[1] * keep)
        with autocast(precision):
            logits, state = model(batch.x, state)
            loss = loss_fn(logits.float().flatten(0, 1), batch.y.flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.clip_norm or math.inf)
        optimizer.step()
        optimizer.zero_grad()
        state = (state[0].detach(), state[1].detach())
        tokens += batch.x.numel()
        if (step + 1) % log_every == 0:
            windows.append(tokens / (time.perf_counter() - start))
            tokens, start = 0, time.perf_counter()
    figures = evaluate(model, task, cfg, precision)  # type: ignore[arg-type]
    return {
        "tokens_per_s": statistics.median(windows[1:] or windows),
        "bpc": figures.get("bpc"),
        "params": sum(p.numel() for p in model.parameters()),
        "param_shapes": sorted(list(p.shape) for p in model.parameters()),
    }


def _train_run(config: Path, overrides: list[str], steps: int) -> dict[str, Any]:
    """``nervana-lstm train`` as a user runs it, in its own process; its figures from its files."""
    with tempfile.TemporaryDirectory(prefix="nervana-lstm-vs-plain-") as tmp:
        out = Path(tmp) / "run"
        cmd = [
            sys.executable, "-m", "nervana_lstm", "train", "--config", str(config),
            "--out", str(out), f"--set=train.steps={steps}", f"--set=eval.every={steps}",
            *[f"--set={o}" for o in overrides],
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"train failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        run = json.loads((out / "run.json").read_text())
    train = [r for r in records if r["split"] == "train"]
    evals = [r for r in records if r["split"] == "eval" and r["step"] == steps]
    return {
        "tokens_per_s": statistics.median(r["tokens_per_s"] for r in train[1:] or train),
        "bpc": evals[-1].get("bpc") if evals else None,
        "backend": run["backend"],
        "backend_reason": run["backend_reason"],
        "precision": run["precision"],
        "precision_reason": run.get("precision_reason"),
        "auto_seconds": run.get("auto_seconds"),
    }


def _in_child(args: argparse.Namespace, precision: str) -> dict[str, Any]:
    """The plain loop in a fresh process."""
    with tempfile.TemporaryDirectory(prefix="nervana-lstm-plain-") as tmp:
        out = Path(tmp) / "plain.json"
        cmd = [
            sys.executable, "-m", "nervana_lstm.perf.train_vs_plain", "--config", str(args.config),
            "--steps", str(args.steps), "--worker", precision, "--json", str(out),
            *[f"--set={o}" for o in args.set],
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"the plain loop failed: {proc.stderr.strip()[-2000:]}")
        return json.loads(out.read_text())  # type: ignore[no-any-return]


def _overhead(args: argparse.Namespace) -> dict[str, Any]:
    """The loop-over-bare-step ratio, from perf/train_overhead.py in a process of its own."""
    with tempfile.TemporaryDirectory(prefix="nervana-lstm-overhead-") as tmp:
        out = Path(tmp) / "overhead.json"
        cmd = [
            sys.executable, "-m", "nervana_lstm.perf.train_overhead", "--part", "overhead",
            "--config", str(args.config), "--steps", "100", "--rounds", "3",
            "--json", str(out), *[f"--set={o}" for o in args.set],
        ]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"the overhead measurement failed: {proc.stderr.strip()[-2000:]}")
        return json.loads(out.read_text())["overhead"]  # type: ignore[no-any-return]


def report(result: dict[str, Any]) -> str:
    """The comparison as a markdown table with the ratios under it."""
    cpu = result["machine"]["cpu"]
    rows = result["runs"]
    train = rows["train"]
    same = rows.get(f"plain {train['precision']}")
    lines = [
        f"CPU: {cpu['model']} ({cpu['affinity']} CPUs usable); torch "
        f"{result['machine']['torch']['version']}, {result['machine']['torch']['num_threads']} "
        "threads; "
        f"{result['steps']} steps of `{result['config']}`"
        + (f" with {', '.join(result['overrides'])}" if result["overrides"] else ""),
        "",
        "| what ran | tokens/s | held-out bpc |",
        "|---|---:|---:|",
    ]
    for name, row in rows.items():
        label = (
            f"`train` as shipped ({row['backend']}, {row['precision']})"
            if name == "train"
            else f"plain PyTorch loop, {name.split()[1]}"
        )
        bpc = f"{row['bpc']:.3f}" if row.get("bpc") is not None else "n/a"
        lines.append(f"| {label} | {row['tokens_per_s']:,.0f} | {bpc} |")
    ratios = result["ratios"]
    lines += [
        "",
        f"- train / plain fp32: **{ratios['vs_plain_fp32']:.2f}x**",
        f"- train / plain {train['precision']}: **{ratios['vs_plain_same']:.2f}x**" if same else "",
        f"- held-out bpc, train minus plain {train['precision']}: {ratios['bpc_delta']:+.3f}"
        if ratios.get("bpc_delta") is not None
        else "",
    ]
    if "overhead" in result:
        lines.append(
            f"- loop / bare fused step: {result['overhead']['median_ratio']:.3f} "
            f"(median of {len(result['overhead']['rounds'])} rounds)"
        )
    lines.append(f"- `auto` chose {train['backend']}: {train['backend_reason']}")
    lines.append(f"- precision {train['precision']}: {train['precision_reason']}")
    return "\n".join(line for line in lines if line != "") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config", type=Path, default=None, help="default: the shipped charlm.yaml"
    )
    parser.add_argument("--steps", type=int, default=1000, help="training steps on each side")
    parser.add_argument("--set", action="append", default=[], help="config override (both sides)")
    parser.add_argument("--out", type=Path, default=None, help="write results.json and report.md")
    parser.add_argument("--no-overhead", action="store_true", help="skip the loop/bare ratio")
    parser.add_argument("--worker", choices=["fp32", "bf16"], help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as stack:
        if args.config is None:
            args.config = shipped_config(stack)
        cfg = load_run_config(args.config, args.set)
        if cfg.task.name != "charlm" or cfg.model.kind != "lstm" or cfg.model.num_layers != 1:
            raise SystemExit("the plain loop is a one-layer LSTM character model: use charlm")
        if args.worker:
            result = plain_run(cfg, args.worker, args.steps, cfg.train.log_every)
            args.json.write_text(json.dumps(result, default=str))
            return 0
        from nervana_lstm.platform_info import collect_info

        runs: dict[str, dict[str, Any]] = {}
        for precision in ("fp32", "bf16"):
            runs[f"plain {precision}"] = _in_child(args, precision)
            print(f"plain {precision}: {runs[f'plain {precision}']}", flush=True)
        runs["train"] = _train_run(args.config, args.set, args.steps)
        print(f"train: {runs['train']}", flush=True)
        train, same = runs["train"], runs[f"plain {runs['train']['precision']}"]
        result: dict[str, Any] = {
            "machine": collect_info(),
            "config": str(args.config),
            "overrides": args.set,
            "steps": args.steps,
            "runs": runs,
            "ratios": {
                "vs_plain_fp32": train["tokens_per_s"] / runs["plain fp32"]["tokens_per_s"],
                "vs_plain_same": train["tokens_per_s"] / same["tokens_per_s"],
                "bpc_delta": (train["bpc"] - same["bpc"])
                if train["bpc"] is not None and same["bpc"] is not None
                else None,
            },
        }
        if not args.no_overhead:
            result["overhead"] = _overhead(args)
    text = report(result)
    print(text)
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "results.json").write_text(json.dumps(result, indent=2, default=str) + "\n")
        (args.out / "report.md").write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
