"""Shared fixtures.

``NERVANA_LSTM_STACK`` (set by ``make test`` / ``make test-stock``) says which
stack the suite runs on. IPEX tests skip on the stock stack, where IPEX is
absent by design, and *fail* on the ipex stack when IPEX is not usable, so a
broken install can never hide behind a skip.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
STACK = os.environ.get("NERVANA_LSTM_STACK", "")


@pytest.fixture(scope="session")
def ipex() -> ModuleType:
    from nervana_lstm.backends import import_ipex, ipex_status

    status = ipex_status()
    if not status.available:
        if STACK == "ipex":
            pytest.fail(f"the ipex stack must have a usable IPEX: {status.reason}")
        pytest.skip(f"IPEX is not part of this stack: {status.reason}")
    return import_ipex()


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
