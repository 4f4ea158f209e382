"""The setup script's refusals: they must fail fast, say why, and leave nothing behind."""

from __future__ import annotations

import os
import subprocess

from conftest import REPO

SCRIPT = REPO / "scripts" / "setup-venv.sh"


def run_setup(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )


def test_unknown_stack_is_refused():
    done = run_setup("cuda")
    assert done.returncode == 2
    assert "unknown stack 'cuda'; expected 'ipex' or 'stock'" in done.stderr


def test_wrong_python_is_refused_before_building(tmp_path):
    fake = tmp_path / "python3.12"
    fake.write_text("#!/bin/sh\necho 3.12\n")
    fake.chmod(0o755)
    venvs = tmp_path / "venvs"
    done = run_setup("stock", env={"PYTHON": str(fake), "NERVANA_LSTM_VENVS": str(venvs)})
    assert done.returncode == 2
    assert "need Python 3.11" in done.stderr
    assert not venvs.exists()


def test_missing_python_is_refused(tmp_path):
    done = run_setup("stock", env={"PYTHON": "no-such-python", "NERVANA_LSTM_VENVS": str(tmp_path)})
    assert done.returncode == 2
    assert "'no-such-python' not found" in done.stderr


def test_locks_pin_every_package_exactly():
    for stack, must in (
        ("ipex", {"torch", "intel-extension-for-pytorch", "openvino"}),
        ("stock", {"torch", "openvino"}),
    ):
        pins = {}
        for line in (REPO / "requirements" / f"{stack}.lock").read_text().splitlines():
            if line and not line.startswith("#"):
                name, sep, version = line.partition("==")
                assert sep and version, f"{stack}.lock: {line!r} is not an exact pin"
                pins[name.lower().replace("_", "-")] = version
        assert must <= set(pins)
        assert "intel-extension-for-pytorch" not in pins or pins["torch"].startswith("2.8.")


def test_a_foreign_venv_folder_is_left_alone(tmp_path):
    """A .venv the script did not make is refused before anything is built or removed."""
    repo = tmp_path / "repo"
    (repo / "scripts").mkdir(parents=True)
    (repo / "requirements").mkdir()
    (repo / "scripts" / "setup-venv.sh").write_text(SCRIPT.read_text())
    (repo / "requirements" / "stock.lock").write_text("torch==2.13.0\n")
    mine = repo / ".venv-stock"
    mine.mkdir()
    (mine / "keep.txt").write_text("user data")
    venvs = tmp_path / "venvs"
    done = subprocess.run(
        ["bash", str(repo / "scripts" / "setup-venv.sh"), "stock"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NERVANA_LSTM_VENVS": str(venvs)},
    )
    assert done.returncode == 2
    assert "was not made by this script; move it away" in done.stderr
    assert (mine / "keep.txt").read_text() == "user data"
    assert not venvs.exists()
