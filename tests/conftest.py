"""Shared fixtures.

``NERVANA_LSTM_STACK`` (set by ``make test`` / ``make test-stock``) says which
stack the suite runs on. IPEX tests skip where IPEX is absent by design (the
stock stack, or any environment without IPEX's distribution) and *fail* where
IPEX should run but is not usable: on the ipex stack, and wherever IPEX's
distribution is installed, even when ``NERVANA_LSTM_STACK`` is unset (a plain
``pytest``). So a broken install can never hide behind a skip.

What the CPU can run in bf16 and int8 is read from its ISA flags
(:func:`cpu_runs_bf16`, :func:`cpu_runs_int8`), independently of the checks the
toolkit itself makes, so that a test can tell "unsupported here" from "broken".
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from nervana_lstm.backends import dist_version

REPO = Path(__file__).resolve().parents[1]
STACK = os.environ.get("NERVANA_LSTM_STACK", "")


def ipex_expected(stack: str, versions: Callable[[str], str | None] = dist_version) -> bool:
    """Whether this environment must have a usable IPEX, decided from package metadata.

    The ipex stack must; so must any environment where the
    ``intel-extension-for-pytorch`` distribution is installed, whatever ``stack``
    says (a plain ``pytest`` leaves it empty). ``versions`` maps a distribution
    name to its installed version, as :func:`nervana_lstm.backends.dist_version`.
    """
    return stack == "ipex" or versions("intel-extension-for-pytorch") is not None


@pytest.fixture(scope="session")
def ipex() -> ModuleType:
    from nervana_lstm.backends import import_ipex, ipex_status

    status = ipex_status()
    if not status.available:
        if ipex_expected(STACK):
            pytest.fail(f"this environment should have a usable IPEX: {status.reason}")
        pytest.skip(f"IPEX is not part of this stack: {status.reason}")
    return import_ipex()


def cpu_flags() -> dict[str, bool]:
    """This CPU's ISA flags as ``nervana-lstm info`` reads them from /proc/cpuinfo."""
    from nervana_lstm.platform_info import read_cpu_info

    return read_cpu_info().flags


def cpu_runs_bf16() -> bool:
    """bf16 arithmetic in hardware: AVX512_BF16 or AMX-BF16."""
    flags = cpu_flags()
    return flags["avx512_bf16"] or flags["amx_bf16"]


def cpu_runs_int8() -> bool:
    """OpenVINO's CPU plugin runs int8 on every x86-64 CPU with AVX2 (VNNI, AMX: faster)."""
    flags = cpu_flags()
    return flags["avx2"] or flags["avx512_vnni"] or flags["amx_int8"]


def run_cli(
    *args: str, timeout: float = 300, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``nervana-lstm ARGS`` in a fresh interpreter, as a user would."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "nervana_lstm", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        cwd=cwd or REPO,
    )


@pytest.fixture
def cli():
    return run_cli


def train_quietly(data: dict, out: Path, **kw: object) -> object:
    """``run_training`` of a config dict into ``out`` with its output swallowed."""
    import io

    from rich.console import Console

    from nervana_lstm.config import config_from_dict
    from nervana_lstm.train.loop import run_training

    console = Console(file=io.StringIO())
    return run_training(config_from_dict(data), out, console=console, progress=False, **kw)


def assert_refused(proc: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """A usage error as the CLI reports one: exit 2, one stderr line, no traceback, and
    every fragment in it; returns stderr."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-1000:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr
    return proc.stderr
