"""``bench run`` and ``bench compare`` as siblings: options belong to one of them, compare runs anywhere."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import REPO

from nervana_lstm import platform_info
from nervana_lstm.cli import build_parser, main
from nervana_lstm.cli.bench import RUN_DEFAULTS, run_options

SHIPPED = REPO / "perf" / "reports" / "quick-2core" / "results.json"


def _no_avx2(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = platform_info.CpuInfo("Old CPU", "TestVendor", "x86_64", 2, 2, 2, {"avx2": False})
    monkeypatch.setattr(platform_info, "read_cpu_info", lambda: cpu)


def test_compare_runs_on_a_cpu_without_avx2(monkeypatch, capsys, tmp_path: Path) -> None:
    _no_avx2(monkeypatch)
    b = tmp_path / "b.json"
    shutil.copy(SHIPPED, b)
    assert main(["bench", "compare", str(SHIPPED), str(b), "--threshold", "5%"]) == 0
    out = capsys.readouterr().out
    assert "no regression" in out


def test_run_is_still_refused_on_a_cpu_without_avx2(monkeypatch, capsys) -> None:
    _no_avx2(monkeypatch)
    for args in (["bench"], ["bench", "run"], ["bench", "--suite", "quick"]):
        assert main(args) == 2, args
        assert "lacks AVX2" in capsys.readouterr().err


@pytest.mark.parametrize(
    "before",
    [
        ["--suite", "deepbench"],
        ["--kinds", "lstm"],
        ["--no-probe"],
        ["--threads", "1", "--out", "x"],
    ],
)
def test_a_run_option_given_to_compare_is_refused(capsys, before: list[str]) -> None:
    assert main(["bench", *before, "compare", str(SHIPPED), str(SHIPPED)]) == 2
    err = capsys.readouterr().err
    given = [arg for arg in before if arg.startswith("--")]
    verb = "applies" if len(given) == 1 else "apply"
    assert f"{', '.join(given)} {verb} to bench run, not to bench compare" in err
    assert err.count("\n") == 1


def test_compare_rejects_run_options_after_it(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(["bench", "compare", "a.json", "b.json", "--suite", "quick"])
    assert exc.value.code == 2
    assert "unrecognized arguments: --suite quick" in capsys.readouterr().err


def test_run_options_fill_defaults_and_keep_what_was_given() -> None:
    parser = build_parser()
    plain = run_options(parser.parse_args(["bench"]))
    assert {k: getattr(plain, k) for k in RUN_DEFAULTS} == RUN_DEFAULTS
    short = run_options(parser.parse_args(["bench", "--suite", "deepbench", "--kinds", "lstm"]))
    spelled = run_options(
        parser.parse_args(["bench", "run", "--suite", "deepbench", "--kinds", "lstm"])
    )
    for args in (short, spelled):
        assert (args.suite, args.kinds, args.out, args.no_probe) == (
            "deepbench",
            "lstm",
            "bench-out",
            False,
        )
    both = run_options(parser.parse_args(["bench", "--suite", "deepbench", "run", "--no-probe"]))
    assert both.suite == "deepbench" and both.no_probe is True


def test_run_subcommand_usage_errors_exit_2(cli, tmp_path: Path) -> None:
    proc = cli("bench", "run", "--kinds", "lstm,tcn", "--out", str(tmp_path / "o"), timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "--kinds got 'lstm,tcn'; expected a comma list of: rnn, lstm, gru, dglstm" in proc.stderr
    assert not (tmp_path / "o").exists()
