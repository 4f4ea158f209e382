"""Backend detection: IPEX is judged from metadata, never by an import that could end the process."""

from __future__ import annotations

import subprocess
import sys

import pytest

from nervana_lstm.backends import (
    BACKENDS,
    BackendUnavailable,
    _onednn_version,
    backend_status,
    import_ipex,
    ipex_status,
    require,
)
from nervana_lstm.errors import UsageError


def fake_versions(**installed: str):
    table = {name.replace("_", "-"): v for name, v in installed.items()}
    return lambda name: table.get(name)


def test_ipex_usable_when_torch_series_matches():
    status = ipex_status(
        fake_versions(intel_extension_for_pytorch="2.8.0", torch="2.8.0+cu128"), machine="x86_64"
    )
    assert status.available and status.version == "2.8.0" and status.reason is None


def test_ipex_mismatch_is_reported_not_imported():
    status = ipex_status(
        fake_versions(intel_extension_for_pytorch="2.8.0", torch="2.13.0+cpu"), machine="x86_64"
    )
    assert not status.available
    assert "built for torch 2.8.x but torch is 2.13.0+cpu" in status.reason
    assert "make venv" in status.reason


def test_ipex_missing_says_how_to_get_it():
    status = ipex_status(fake_versions(torch="2.13.0"), machine="x86_64")
    assert not status.available and status.version is None
    assert "not installed" in status.reason and "make venv" in status.reason


def test_ipex_without_torch_and_on_arm():
    assert (
        "torch is not"
        in ipex_status(fake_versions(intel_extension_for_pytorch="2.8.0"), machine="x86_64").reason
    )
    arm = ipex_status(
        fake_versions(intel_extension_for_pytorch="2.8.0", torch="2.8.0"), machine="aarch64"
    )
    assert not arm.available and "x86-64" in arm.reason


def test_mismatched_ipex_is_refused_before_import():
    """IPEX 2.8 with torch 2.13 would call exit(127) on import; the guard raises instead."""
    versions = fake_versions(intel_extension_for_pytorch="2.8.0", torch="2.13.0")
    with pytest.raises(BackendUnavailable, match=r"built for torch 2\.8\.x but torch is 2\.13\.0"):
        import_ipex(versions)


def test_real_mismatch_in_a_subprocess_ends_cleanly():
    """A whole process that asks for IPEX under mismatched versions survives and says why."""
    code = (
        "from nervana_lstm.backends import import_ipex, BackendUnavailable\n"
        "fake = {'intel-extension-for-pytorch': '2.8.0', 'torch': '2.13.0'}.get\n"
        "try:\n"
        "    import_ipex(fake)\n"
        "except BackendUnavailable as e:\n"
        "    print('refused:', e)\n"
        "import sys; print('ipex imported:', 'intel_extension_for_pytorch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "refused: IPEX is unavailable" in done.stdout
    assert "ipex imported: False" in done.stdout


def test_unknown_backend_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown backend 'cuda'; expected one of: ipex"):
        backend_status("cuda")


def test_every_named_backend_reports_a_status():
    for name in BACKENDS:
        status = backend_status(name)
        assert status.name == name
        # a reason exactly when it cannot run, and then one that says something
        assert (status.reason is None) == status.available, status
        if not status.available:
            assert isinstance(status.reason, str) and len(status.reason) > 10, status


def test_ipex_status_follows_the_installed_packages():
    """What ``info`` and the suite are told matches the metadata: usable exactly when
    IPEX is installed next to the torch series it was built for."""
    from nervana_lstm.backends import IPEX_TORCH_SERIES, dist_version

    def series(version: str) -> str:  # "2.8.0+cu128" -> "2.8"
        return ".".join(version.split("+")[0].split(".")[:2])

    ipex_v, torch_v = dist_version("intel-extension-for-pytorch"), dist_version("torch")
    paired = (
        ipex_v is not None
        and torch_v is not None
        and IPEX_TORCH_SERIES.get(series(ipex_v)) == series(torch_v)
    )
    assert ipex_status().available == paired, (ipex_v, torch_v)


def test_a_plain_pytest_run_expects_ipex_where_its_distribution_is_installed():
    from tests.conftest import ipex_expected

    broken = fake_versions(intel_extension_for_pytorch="2.8.0", torch="2.13.0")
    absent = fake_versions(torch="2.13.0")
    # NERVANA_LSTM_STACK unset: the installed distribution decides, so a broken IPEX fails
    assert ipex_expected("", broken) and not ipex_expected("", absent)
    assert ipex_expected("ipex", absent)  # the ipex stack must have it
    assert ipex_expected("stock", broken)  # installed anyway: it must work
    assert not ipex_expected("stock", absent)


def test_onednn_and_openvino_run_here():
    assert require("onednn").available
    assert require("openvino").available
    assert require("reference").available


def test_require_ipex_matches_ipex_status():
    status = ipex_status()
    if status.available:
        assert require("ipex").version == status.version
    else:
        with pytest.raises(BackendUnavailable, match="unavailable"):
            require("ipex")
        with pytest.raises(BackendUnavailable):
            import_ipex()


def test_ipex_import_is_quiet_and_works(ipex):
    """The guarded import silences the dozens of lines a bare import writes to stderr."""
    bare = subprocess.run(
        [sys.executable, "-c", "import torch, intel_extension_for_pytorch"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    guarded = subprocess.run(
        [
            sys.executable,
            "-c",
            "from nervana_lstm.backends import import_ipex; print(import_ipex().__version__)",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bare.returncode == 0 and guarded.returncode == 0, guarded.stderr
    assert guarded.stdout.startswith("2.8.0")
    assert len(bare.stderr.splitlines()) > 5
    assert guarded.stderr.strip() == ""
    assert hasattr(ipex, "optimize")


def test_onednn_version_parser():
    text = "  - Intel(R) MKL-DNN v3.7.1 (Git Hash 5e92240360)\n"
    assert _onednn_version(text) == "3.7.1"
    assert _onednn_version("no such line") is None
