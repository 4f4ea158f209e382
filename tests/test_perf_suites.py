"""Suite files: the shipped ones load, bad ones are refused with what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from nervana_lstm.choices import BENCH_IMPLS
from nervana_lstm.errors import UsageError
from nervana_lstm.perf.harness import Selection, plan
from nervana_lstm.perf.suites import load_suite, suite_from_dict


@pytest.mark.parametrize("name", ["quick", "deepbench", "configs/bench/example.yaml"])
def test_shipped_suites_load(name: str) -> None:
    suite = load_suite(name)
    assert suite.shapes


def test_deepbench_has_the_issue_shapes() -> None:
    suite = load_suite("deepbench")
    lstm_train = {
        (s.hidden_size, s.batch, s.seq_len)
        for s in suite.shapes
        if s.kind == "lstm" and s.modes == ["train"]
    }
    for h in (512, 1024, 2048, 4096):
        for n in (16, 32, 64, 128):
            assert (h, n, 25) in lstm_train
    assert {(1536, 8, 50), (256, 64, 150)} <= lstm_train
    assert all(s.input_size == s.hidden_size for s in suite.shapes)
    assert any(s.kind == "gru" for s in suite.shapes)


def test_every_implementation_gets_a_row() -> None:
    suite = suite_from_dict(
        {
            "name": "t",
            "defaults": {"impls": ["onednn"], "modes": ["infer"], "dtypes": ["fp32"]},
            "shapes": [
                {"kind": "lstm", "seq_len": 2, "batch": 1, "input_size": 3, "hidden_size": 4}
            ],
        }
    )
    rows = plan(suite, Selection())
    assert sorted(p.spec.impl for p in rows) == sorted(BENCH_IMPLS)
    assert [p.spec.impl for p in rows if p.skip is None] == ["onednn"]
    compiled = next(p for p in rows if p.spec.impl == "compiled")
    assert "--impls" in (compiled.skip or "")


def test_command_line_narrows_shape_lists() -> None:
    suite = suite_from_dict(
        {
            "name": "t",
            "shapes": [
                {
                    "kind": "lstm",
                    "seq_len": 2,
                    "batch": 1,
                    "input_size": 3,
                    "hidden_size": 4,
                    "modes": ["infer"],
                },
                {"kind": "gru", "seq_len": 2, "batch": 1, "input_size": 3, "hidden_size": 4},
            ],
        }
    )
    rows = plan(suite, Selection(kinds=["lstm"], modes=["infer", "train"], threads=[1]))
    assert {p.spec.kind for p in rows} == {"lstm"}
    assert {p.spec.mode for p in rows} == {"infer"}
    assert {p.spec.threads for p in rows} == {1}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "x", "shapes": []}, "shapes"),
        (
            {
                "name": "x",
                "shapes": [
                    {"kind": "tcn", "seq_len": 1, "batch": 1, "input_size": 1, "hidden_size": 1}
                ],
            },
            "kind",
        ),
        (
            {
                "name": "x",
                "shapes": [
                    {"kind": "lstm", "seq_len": 0, "batch": 1, "input_size": 1, "hidden_size": 1}
                ],
            },
            "seq_len",
        ),
        (
            {
                "name": "x",
                "defaults": {"impls": ["cudnn"]},
                "shapes": [
                    {"kind": "lstm", "seq_len": 1, "batch": 1, "input_size": 1, "hidden_size": 1}
                ],
            },
            "expected some of",
        ),
        (
            {
                "name": "x",
                "shapes": [
                    {
                        "kind": "lstm",
                        "seq_len": 1,
                        "batch": 1,
                        "input_size": 1,
                        "hidden_size": 1,
                        "hidden": 3,
                    }
                ],
            },
            "hidden",
        ),
        (["not", "a", "mapping"], "expected a mapping"),
    ],
)
def test_bad_suites_are_usage_errors(data: object, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        suite_from_dict(data, "t.yaml")


def test_unknown_suite_name_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="quick, deepbench"):
        load_suite("fast")
    with pytest.raises(UsageError, match="not found"):
        load_suite(str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(UsageError, match="not valid YAML"):
        load_suite(str(bad))


def test_cli_usage_errors_exit_2(cli, tmp_path: Path) -> None:
    for args in (
        ("bench", "--suite", "fast"),
        ("bench", "--kinds", "lstm,tcn"),
        ("bench", "--threads", "two"),
        ("bench", "--instances", "64"),
        ("bench", "--impls", ""),
    ):
        proc = cli(*args, "--out", str(tmp_path / "o"), timeout=120)
        assert proc.returncode == 2, (args, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert "expected" in proc.stderr
        assert not (tmp_path / "o").exists(), "nothing is written on a usage error"


def test_instances_below_one_exits_2(cli, tmp_path: Path) -> None:
    for value in ("0", "-1"):
        proc = cli("bench", f"--instances={value}", "--out", str(tmp_path / "o"), timeout=120)
        assert proc.returncode == 2, (value, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert "expected an integer >= 1" in proc.stderr
        assert not (tmp_path / "o").exists(), "nothing is written on a usage error"


def test_unwritable_out_is_refused_before_measuring(cli, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    proc = cli("bench", "--out", str(blocker / "sub"), timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "is not a directory" in proc.stderr
    assert "GEMM peak" not in proc.stderr, "refused before any measurement"
