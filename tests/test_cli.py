"""The command line as a whole: fast help, lazy imports, usage errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nervana_lstm.cli import COMMANDS


def test_help_imports_no_heavy_package():
    code = (
        "import sys\n"
        "from nervana_lstm.cli import build_parser\n"
        "build_parser()\n"
        "heavy = [m for m in ('torch', 'openvino', 'intel_extension_for_pytorch', 'nncf', "
        "'matplotlib') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_help_lists_every_command(cli):
    done = cli("--help")
    assert done.returncode == 0
    for name in COMMANDS:
        assert name in done.stdout


def test_unknown_command_and_option_exit_2(cli):
    for args in (("frobnicate",), ("info", "--no-such-flag"), ()):
        done = cli(*args)
        assert done.returncode == 2, args
        assert "Traceback" not in done.stderr
        assert "usage:" in done.stderr


@pytest.mark.parametrize(
    ("arch", "flags", "message"),
    [
        ("aarch64", {"avx2": False}, "targets x86-64 CPUs, but this machine is aarch64"),
        ("x86_64", {"avx2": False}, "lacks AVX2"),
    ],
)
@pytest.mark.parametrize("command", ["train", "bench"])
def test_compute_commands_refuse_unsupported_cpus(
    monkeypatch, capsys, command, arch, flags, message
):
    from nervana_lstm import platform_info
    from nervana_lstm.cli import main

    cpu = platform_info.CpuInfo("Test CPU", "TestVendor", arch, 2, 2, 2, flags)
    monkeypatch.setattr(platform_info, "read_cpu_info", lambda: cpu)
    args = [command, "--config", "configs/missing.yaml"] if command == "train" else [command]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


_FAKE_CPU = """
import sys
from nervana_lstm import platform_info
from nervana_lstm.cli import main

real = platform_info.read_cpu_info
text = "processor\\t: 0\\nmodel name\\t: Old CPU\\nflags\\t\\t: fpu sse sse2 avx\\n"
platform_info.read_cpu_info = lambda: real(text, "x86_64")
sys.exit(main(sys.argv[1:]))
"""


def test_sample_refuses_a_cpu_without_avx2(tmp_path) -> None:
    """As a user runs it (a fresh interpreter), on a CPU whose flags lack AVX2."""
    done = subprocess.run(
        [sys.executable, "-c", _FAKE_CPU, "sample", str(tmp_path / "last.pt")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "AVX2" in done.stderr and done.stderr.count("\n") == 1
    assert "does not exist" not in done.stderr  # refused before the checkpoint is looked at
