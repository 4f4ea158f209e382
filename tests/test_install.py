"""A plain (not editable) install works from any directory, and claims only the nervana_lstm name."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from conftest import REPO

#: repository folders installed under another name (pyproject's package-dir)
MAPPED = {
    "nervana_lstm.perf": "perf",
    "nervana_lstm.export": "export",
    "nervana_lstm.configs": "configs",
}


def _setuptools_config() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_package_list_names_every_package_folder() -> None:
    """Every folder with an __init__.py under nervana_lstm/ (and the mapped ones) is installed."""
    config = _setuptools_config()
    assert config["package-dir"] == MAPPED
    on_disk = {
        ".".join(p.parent.relative_to(REPO).parts) for p in (REPO / "nervana_lstm").rglob("*.py")
    }
    on_disk = {name for name in on_disk if (REPO / name.replace(".", "/") / "__init__.py").exists()}
    assert on_disk | set(MAPPED) == set(config["packages"])
    assert all(name.split(".")[0] == "nervana_lstm" for name in config["packages"])


def _copy_source(dest: Path) -> Path:
    """The repository's files without environments, caches or build output (pip builds in-tree)."""
    ignore = shutil.ignore_patterns(
        ".git", ".venv*", "runs", "bench-out", "build", "dist", "*.egg-info", "__pycache__",
        ".pytest_cache", ".ruff_cache", ".hypothesis", "stock",
    )  # fmt: skip
    shutil.copytree(REPO, dest, ignore=ignore)
    return dest


def _thin_venv(path: Path) -> Path:
    """A venv without pip that reaches this environment's packages (torch, ...) through a .pth."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    spec = importlib.util.find_spec("torch")
    assert spec is not None and spec.origin is not None
    base_site = Path(spec.origin).resolve().parents[1]
    python = path / "bin" / "python"
    own_site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(own_site, "_base_packages.pth").write_text(
        f"import site; site.addsitedir({str(base_site)!r})\n"
    )
    return python


@pytest.mark.slow
def test_installed_bench_runs_the_quick_suite_outside_the_repo(tmp_path: Path) -> None:
    source = _copy_source(tmp_path / "src")
    python = _thin_venv(tmp_path / "venv")
    pip = subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps",
         "--no-build-isolation", str(source)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert pip.returncode == 0, pip.stderr[-3000:]
    shutil.rmtree(source)  # the installed copy must not lean on the source tree

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run(
        [str(python), "-c", "import nervana_lstm.perf, importlib.util as u; "
         "print(nervana_lstm.perf.__file__); print(u.find_spec('perf'), u.find_spec('export'))"],
        capture_output=True, text=True, cwd=work, env=env, timeout=60,
    )  # fmt: skip
    assert where.returncode == 0, where.stderr
    perf_file, bare = where.stdout.splitlines()
    assert Path(perf_file).is_relative_to(tmp_path / "venv"), perf_file
    assert bare == "None None", "no top-level perf or export is installed"

    out = work / "bench-out"
    bench = subprocess.run(
        [str(python.parent / "nervana-lstm"), "bench", "--suite", "quick", "--kinds", "rnn",
         "--impls", "unfused", "--modes", "infer", "--dtypes", "fp32", "--threads", "1",
         "--no-probe", "--out", str(out)],
        capture_output=True, text=True, cwd=work, env=env, timeout=300,
    )  # fmt: skip
    assert bench.returncode == 0, bench.stderr[-3000:]
    results = json.loads((out / "results.json").read_text())
    assert results["suite"]["name"] == "quick"
    assert Path(results["suite"]["source"]).is_relative_to(tmp_path / "venv")
    unfused = [r for r in results["rows"] if r["impl"] == "unfused"]
    assert unfused and all(r["status"] == "ok" for r in unfused), unfused
    assert (out / "report.md").read_text().startswith("# Benchmark report: quick")
