"""``nervana-lstm info``: the machine and the accelerators, as text or JSON."""

from __future__ import annotations

import argparse
import json
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the stable JSON document")
    parser.add_argument(
        "--require",
        metavar="BACKEND[,BACKEND]",
        default=None,
        help="exit with status 2 and the reason unless these backends can run here "
        "(ipex, onednn, reference, openvino)",
    )


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def format_info(info: dict[str, Any]) -> str:
    cpu, torch_i, ov = info["cpu"], info["torch"], info["openvino"]
    lines = [
        f"CPU       {cpu['model']} ({cpu['vendor']}, {cpu['arch']})",
        f"          {cpu['cores']} cores, {cpu['threads']} threads, "
        f"{cpu['affinity']} usable by this process",
        "ISA       " + "  ".join(f"{k}={_yes(v)}" for k, v in cpu["flags"].items()),
    ]
    if not info["platform"]["supported"]:
        lines.append(f"WARNING   {info['platform']['unsupported_reason']}")
    lines.append(
        f"torch     {torch_i['version']}  oneDNN available={_yes(torch_i['onednn_available'])} "
        f"enabled={_yes(torch_i['onednn_enabled'])}"
        + (f"  oneDNN {torch_i['onednn_version']}" if torch_i.get("onednn_version") else "")
    )
    ipex = info["ipex"]
    lines.append(
        f"IPEX      {ipex['version']} usable"
        if ipex["usable"]
        else f"IPEX      unavailable: {ipex['reason']}"
    )
    if ov["usable"]:
        lines.append(
            f"OpenVINO  {ov['version']}  CPU capabilities: {', '.join(ov['cpu_capabilities'])}; "
            f"default inference precision {ov['cpu_default_inference_precision']}"
        )
    else:
        lines.append(f"OpenVINO  unavailable: {ov['reason']}")
    lines.append(f"NNCF      {info['nncf']['version'] or 'not installed'}")
    threads = info["threads"]
    env = {k: v for k, v in threads["env"].items() if v is not None}
    lines.append(
        f"threads   torch={torch_i.get('num_threads')} interop={torch_i.get('num_interop_threads')} "
        f"allocator={threads['allocator']} OpenMP={threads['openmp']}"
        + ("  " + " ".join(f"{k}={v}" for k, v in env.items()) if env else "")
    )
    lines += _cpu_lines(threads)
    return "\n".join(lines)


def _cpu_lines(threads: dict[str, Any]) -> list[str]:
    """The CPUs granted and what a run starting now would use."""
    cpus = threads["cpus"]
    quota = cpus["quota"]
    limit = (
        f"cgroup CPU quota {quota['cpus']:g} ({quota['source']})"
        if quota
        else "no cgroup CPU quota"
    )
    lines = [
        f"CPUs      {cpus['affinity']} in the affinity mask, {limit} -> "
        f"{threads['default_threads']} threads by default"
    ]
    now = threads["run_now"]
    if "error" in now:
        lines.append(f"load      not looked at: {now['error']}")
    else:
        lines.append(
            f"load      {now['seen']} -> a run starting now: {now['threads']} "
            f"thread{'' if now['threads'] == 1 else 's'}, "
            f"OpenMP wait policy {now['wait_policy'] or 'default'} ({now['decided']})"
        )
    return lines


def run(args: argparse.Namespace) -> int:
    from nervana_lstm.backends import BACKENDS, require
    from nervana_lstm.errors import UsageError, short_repr
    from nervana_lstm.platform_info import collect_info

    if args.require is not None:
        names = [n.strip() for n in args.require.split(",")]
        if not all(names):
            raise UsageError(
                f"--require got {short_repr(args.require)}; expected a comma list of backends "
                f"({', '.join(BACKENDS)}) with no empty item"
            )
        for name in names:
            require(name)
    info = collect_info()
    print(json.dumps(info, indent=2, sort_keys=False) if args.json else format_info(info))
    return 0
