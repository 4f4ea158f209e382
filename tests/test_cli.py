"""The command line as a whole: fast help, lazy imports, usage errors."""

from __future__ import annotations

import subprocess
import sys

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
