"""The bench package's shape: one builder per implementation, imports one way, no global state."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from conftest import REPO

from nervana_lstm.choices import BENCH_IMPLS
from nervana_lstm.perf.harness import Selection, run_suite
from nervana_lstm.perf.impls import BUILDERS, ONEDNN_BACKED, build
from nervana_lstm.perf.report import write_report
from nervana_lstm.perf.results import ROW_KEYS
from nervana_lstm.perf.spec import Spec, quiet_known_warnings
from nervana_lstm.perf.suites import suite_from_dict

#: the repository folders that install under nervana_lstm
MAPPED = {"perf": "nervana_lstm.perf", "export": "nervana_lstm.export"}


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    if parts[0] in MAPPED:
        parts[0] = MAPPED[parts[0]]
    return ".".join(parts)


def _imports(path: Path) -> set[str]:
    """Every module name ``path`` imports, at the top or inside functions."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _python_files() -> list[Path]:
    skip = {".venv", ".venv-stock", ".git", "build", "runs", "stock"}
    return [p for p in REPO.rglob("*.py") if not skip & set(p.relative_to(REPO).parts)]


def test_every_bench_implementation_has_one_builder() -> None:
    assert tuple(BUILDERS) == BENCH_IMPLS
    assert set(ONEDNN_BACKED) <= set(BENCH_IMPLS)


def test_every_bench_implementation_has_a_chart_colour() -> None:
    from nervana_lstm.perf.report import _COLORS

    assert tuple(_COLORS) == BENCH_IMPLS


def test_build_refuses_an_unknown_implementation() -> None:
    spec = Spec("lstm", "cudnn", "infer", "fp32", 1, 2, 1, 3, 4)
    with pytest.raises(ValueError, match="unknown implementation 'cudnn'; expected one of onednn"):
        build(spec)


def test_the_bench_package_imports_form_no_cycle() -> None:
    modules = {_module_name(p): p for p in (REPO / "perf").glob("*.py")}
    graph = {
        name: {m for m in _imports(path) if m in modules and m != name}
        for name, path in modules.items()
    }
    assert graph["nervana_lstm.perf.spec"] <= {"nervana_lstm.perf"}, "spec imports no sibling"

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(nxt == goal or reaches(nxt, goal, seen | {nxt}) for nxt in graph[start] - seen)

    cycles = [name for name in graph if reaches(name, name, set())]
    assert cycles == [], f"modules on an import cycle: {cycles}"


def test_no_module_imports_the_bare_folder_names() -> None:
    """perf/ and export/ are nervana_lstm.perf and nervana_lstm.export; nothing says otherwise."""
    offenders = []
    for path in _python_files():
        for name in _imports(path):
            if name.split(".")[0] in ("perf", "export", "configs"):
                offenders.append(f"{path.relative_to(REPO)}: {name}")
    assert offenders == []


def test_importing_the_bench_leaves_warning_filters_alone() -> None:
    code = (
        "import warnings\n"
        "before = list(warnings.filters)\n"
        "import nervana_lstm.perf.harness, nervana_lstm.perf.impls, nervana_lstm.perf.instances\n"
        "assert warnings.filters == before, warnings.filters[: len(warnings.filters) - len(before)]\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_known_warnings_are_quiet_inside_the_block_only() -> None:
    before = list(warnings.filters)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with quiet_known_warnings():
            warnings.warn("TF32 acceleration on top of oneDNN is on", UserWarning, stacklevel=1)
        warnings.warn("TF32 acceleration on top of oneDNN is on", UserWarning, stacklevel=1)
    assert len(seen) == 1
    assert warnings.filters == before


TINY = {
    "name": "tiny",
    "defaults": {
        "impls": ["unfused"],
        "modes": ["infer"],
        "dtypes": ["fp32"],
        "threads": [1],
        "warmup": 1,
        "repeats": 2,
        "time_cap_s": 1.0,
        "peak_size": 32,
    },
    "shapes": [{"kind": "rnn", "seq_len": 2, "batch": 1, "input_size": 3, "hidden_size": 4}],
}


def test_run_suite_takes_arguments_and_returns_rows(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Arguments in, the document out: no sys.argv, the selection untouched, filters restored."""
    monkeypatch.setattr(sys, "argv", ["not-the-command"])
    suite = suite_from_dict(TINY)
    sel = Selection(impls=["unfused"], probe=False)
    lines: list[str] = []
    results = run_suite(suite, sel, log=lines.append, command="nervana-lstm bench --suite tiny")
    patterns = [f[1].pattern for f in warnings.filters if f[1] is not None]
    assert not [p for p in patterns if "TF32" in p or "ipex_lstm" in p], "filters stay scoped"
    assert sel == Selection(impls=["unfused"], probe=False)
    assert results["command"] == "nervana-lstm bench --suite tiny"
    assert results["settings"]["selection"]["impls"] == ["unfused"]
    assert all(tuple(row) == ROW_KEYS for row in results["rows"])
    unfused = next(r for r in results["rows"] if r["impl"] == "unfused")
    assert unfused["status"] == "ok", unfused["reason"]
    assert any(line.startswith("ok ") for line in lines)
    assert run_suite(suite, sel, log=lines.append)["command"] is None
    # a run where only the unfused baseline was measured still gets its charts
    paths = write_report(results, tmp_path / "out")
    assert json.loads(paths["json"].read_text())["rows"] == results["rows"]
    assert paths["speedup"].stat().st_size > 1000


def test_selection_is_immutable() -> None:
    sel = Selection(threads=[2])
    with pytest.raises(AttributeError):
        sel.threads = [1]  # type: ignore[misc]


@pytest.mark.parametrize("impl", ["onednn", "native", "unfused", "premul", "ipex"])
def test_bf16_rows_run_in_bf16(impl: str) -> None:
    """A bf16 row computes under bf16 autocast: its output carries bf16 rounding (an fp32 run
    would equal the fp32 row's) and stays close to the fp32 row's."""
    import torch

    from nervana_lstm.backends import ipex_status
    from nervana_lstm.perf.spec import Unavailable, step_output

    if impl == "ipex" and not ipex_status().available:
        with pytest.raises(Unavailable, match="IPEX"):
            build(_bf16_spec(impl, "bf16"))
        return
    with quiet_known_warnings():
        fp32 = step_output(build(_bf16_spec(impl, "fp32")).call())
        bf16 = step_output(build(_bf16_spec(impl, "bf16")).call())
    assert 0 < (bf16.float() - fp32).abs().max().item() < 0.03
    if impl in ("onednn", "ipex"):
        assert bf16.dtype == torch.bfloat16  # the fused LSTM's output, as autocast leaves it


def _bf16_spec(impl: str, dtype: str) -> Spec:
    return Spec(
        kind="lstm", impl=impl, mode="infer", dtype=dtype, threads=1,
        seq_len=6, batch=3, input_size=8, hidden_size=16,
    )  # fmt: skip
