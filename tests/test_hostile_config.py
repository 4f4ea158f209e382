"""Hostile and careless input to configs, suites and options: one clear line, exit 2.

YAML that expands without end (aliases), nests without end, repeats a key or is
not text; paths that name directories, FIFOs or devices; values of megabytes in
error messages; thread counts above the CPUs; argument values that once made a
command loop for minutes. CLI cases run in a subprocess with a memory limit and
a timeout, so a regression cannot hang or exhaust the machine.
"""

from __future__ import annotations

import json
import os
import re
import resource
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

from nervana_lstm.config import load_config, parse_override
from nervana_lstm.errors import SHORT_REPR_CHARS, UsageError, short_repr
from nervana_lstm.paths import read_text, regular_file
from nervana_lstm.safe_yaml import MAX_BYTES, MAX_DEPTH, load_yaml

GiB = 2**30


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_DATA, (4 * GiB, 4 * GiB))
    resource.setrlimit(resource.RLIMIT_AS, (16 * GiB, 16 * GiB))


def run_limited(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nervana_lstm", *args],
        capture_output=True,
        text=True,
        timeout=120,  # a FIFO that is opened for reading would block: the test fails, not hangs
        cwd=cwd or REPO,
        preexec_fn=_limit_memory,
    )


def _refused(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr[-2000:]
    assert len(lines[0]) < 1000
    return lines[0]


def _bomb(levels: int = 12, width: int = 10) -> str:
    """Nested anchors: ``width ** levels`` items from a few hundred bytes."""
    lines = ["a0: &a0 [" + ", ".join(["x"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    lines.append(f"task: {{name: adding, options: {{T: *a{levels - 1}}}}}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------ YAML


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (_bomb(), "expands to more than 100,000 values"),
        (_bomb(levels=40, width=2), "expands to more than 100,000 values"),
        ("x: &a [1, *a]\n", "recursive alias"),
        ("x: &a {k: *a}\n", "recursive alias"),
        ("task: " + "[" * 5000 + "]" * 5000 + "\n", "nests deeper than"),
        ("task: " + "{a: " * (MAX_DEPTH + 1) + "1" + "}" * (MAX_DEPTH + 1) + "\n", "nests deeper"),
        ("task: {name: adding}\ntrain: {steps: 3}\ntrain: {steps: 5}\n", "'train' appears twice"),
        ("model: {hidden_size: 8, hidden_size: 16}\n", "'hidden_size' appears twice"),
        ("model: {kind: lstm, 'kind': gru}\n", "'kind' appears twice"),
        ("task: [unclosed\n", "is not valid YAML"),
        ("task: {name: adding}\n---\ntrain: {}\n", "is not valid YAML"),
        ("!!python/object/apply:os.system ['true']\n", "is not valid YAML"),
    ],
)
def test_hostile_yaml_is_refused_by_the_loader(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(UsageError, match=message) as exc:
        load_config(path)
    assert len(str(exc.value)) < 1000


def test_anchors_aliases_and_merge_keys_within_limits_still_work(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "base: &base {steps: 7, batch_size: 4}\n"
        "task: {name: adding, options: {T: 12}}\n"
        "train: {<<: *base, steps: 9}\n"
        "eval: &e {every: 3}\n"
    )
    with pytest.raises(UsageError, match="base: unknown key"):  # aliases resolve; schema judges
        load_config(path)
    path.write_text(
        "task: {name: adding, options: {T: 12}}\n"
        "train: &t {steps: 9, batch_size: 4}\n"
        "eval: {every: 3}\n"
    )
    cfg = load_config(path)
    assert (cfg.train.steps, cfg.train.batch_size, cfg.task.options.T) == (9, 4, 12)
    merged = load_yaml("a: &a {x: 1, y: 2}\nb: {<<: *a, y: 3}\n", "t")
    assert merged["b"] == {"x": 1, "y": 3}  # an explicit key overrides a merged one


def test_alias_bomb_in_a_set_value_is_refused() -> None:
    levels = ["&a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    for i in range(1, 7):
        levels.append(f"&a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]")
    with pytest.raises(UsageError, match="expands to more than") as exc:
        parse_override("task.options.T=[" + ", ".join(levels) + "]")
    assert len(str(exc.value)) < 400


def test_config_size_is_bounded(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("task: {name: adding}\n# " + "x" * MAX_BYTES + "\n")
    with pytest.raises(UsageError, match=r"at most 1\.0 MiB is read"):
        load_config(path)
    with pytest.raises(UsageError, match="at most"):
        load_yaml("x" * (MAX_BYTES + 1), "t")


def test_yaml_error_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("task: {name: adding}\ntrain: {steps: 1}\neval: {}\ntrain: {steps: 2}\n")
    with pytest.raises(UsageError, match=r"c\.yaml: the key 'train' appears twice .*lines 2 and 4"):
        load_config(path)


def test_cli_alias_bomb_fails_fast_under_a_memory_limit(tmp_path: Path) -> None:
    (tmp_path / "bomb.yaml").write_text(_bomb(levels=15))
    line = _refused(run_limited("train", "--config", str(tmp_path / "bomb.yaml")))
    assert "expands to more than 100,000 values" in line


def test_cli_duplicate_sections_are_refused(tmp_path: Path) -> None:
    (tmp_path / "dup.yaml").write_text("task: {name: adding}\ntrain: {steps: 3}\ntrain: {}\n")
    out = tmp_path / "run"
    line = _refused(run_limited("train", "-c", str(tmp_path / "dup.yaml"), "--out", str(out)))
    assert "'train' appears twice" in line
    assert not out.exists()


# ------------------------------------------------------------------- what a path names


def _specials(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    folder = tmp_path / "folder.yaml"
    folder.mkdir()
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe" * 10)
    return {
        "fifo": (fifo, "is a named pipe (FIFO), not a regular file"),
        "directory": (folder, "is a directory; expected a file"),
        "device": (Path("/dev/zero"), "is a device, not a regular file"),
        "binary": (binary, "is not UTF-8 text (byte 0x89 at offset 0)"),
        "missing": (tmp_path / "missing.yaml", "does not exist"),
    }


@pytest.mark.parametrize("kind", ["fifo", "directory", "device", "binary", "missing"])
def test_config_path_that_is_not_a_regular_text_file(tmp_path: Path, kind: str) -> None:
    path, message = _specials(tmp_path)[kind]
    line = _refused(run_limited("train", "--config", str(path), "--out", str(tmp_path / "r")))
    assert message in line
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("kind", ["fifo", "directory", "device", "binary", "missing"])
def test_suite_path_that_is_not_a_regular_text_file(tmp_path: Path, kind: str) -> None:
    from nervana_lstm.perf.suites import load_suite

    path, message = _specials(tmp_path)[kind]
    if kind == "device":  # a suite path must end in .yaml: a link with that name
        (tmp_path / "zero.yaml").symlink_to(path)
        path = tmp_path / "zero.yaml"
    with pytest.raises(UsageError, match="not found" if kind == "missing" else re.escape(message)):
        load_suite(str(path))


@pytest.mark.parametrize("kind", ["fifo", "directory", "device"])
def test_infer_input_that_is_not_a_regular_file(tmp_path: Path, kind: str) -> None:
    path, message = _specials(tmp_path)[kind]
    line = _refused(run_limited("infer", str(tmp_path / "model"), "--input", str(path)))
    message = message.replace("expected a file", "expected a .csv or .npz file")
    assert f"--input {path} {message}" in line


def test_bench_suite_binary_file_is_refused(tmp_path: Path) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_bytes(b"\x00\xff" * 100)
    line = _refused(
        run_limited("bench", "--suite", str(suite), "--out", str(tmp_path / "o"), "--threads", "1")
    )
    assert "is not UTF-8 text" in line


def test_regular_file_helpers(tmp_path: Path) -> None:
    good = tmp_path / "f.txt"
    good.write_text("héllo")
    assert regular_file(good, "x") == good
    assert read_text(good, "x", 100) == "héllo"
    link = tmp_path / "link"
    link.symlink_to(good)
    assert read_text(link, "x", 100) == "héllo"  # a symlink to a file is a file
    with pytest.raises(UsageError, match=r"x .* is 6 B; at most 5 B is read"):
        read_text(good, "x", 5)
    dangling = tmp_path / "dangling"
    dangling.symlink_to(tmp_path / "gone")
    with pytest.raises(UsageError, match="does not exist"):
        read_text(dangling, "x", 100)


# --------------------------------------------------------------------- the suite schema


_SHAPE = {"kind": "lstm", "seq_len": 2, "batch": 1, "input_size": 3, "hidden_size": 4}


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"shapes": [{**_SHAPE, "seq_len": "8"}]}, "shapes.0.seq_len"),
        ({"shapes": [{**_SHAPE, "batch": True}]}, "shapes.0.batch"),
        ({"shapes": [{**_SHAPE, "hidden_size": 4.0}]}, "shapes.0.hidden_size"),
        ({"shapes": [{**_SHAPE, "hidden_size": 65537}]}, "shapes.0.hidden_size"),
        ({"shapes": [{**_SHAPE, "seq_len": 10**9}]}, "shapes.0.seq_len"),
        ({"shapes": [{**_SHAPE, "num_layers": 65}]}, "shapes.0.num_layers"),
        ({"defaults": {"time_cap_s": float("inf")}}, "defaults.time_cap_s"),
        ({"defaults": {"time_cap_s": float("nan")}}, "defaults.time_cap_s"),
        ({"defaults": {"time_cap_s": "4"}}, "defaults.time_cap_s"),
        ({"defaults": {"threads": ["2"]}}, "defaults.threads.0"),
        ({"defaults": {"repeats": True}}, "defaults.repeats"),
        ({"defaults": {"peak_size": 100000}}, "defaults.peak_size"),
        ({"name": 8}, "name"),
    ],
)
def test_suite_schema_is_strict(change: dict, where: str) -> None:
    from nervana_lstm.perf.suites import suite_from_dict

    with pytest.raises(UsageError, match=re.escape(where) + ": ") as exc:
        suite_from_dict({"name": "t", "shapes": [_SHAPE], **change}, "t.yaml")
    assert "(got " in str(exc.value)


def test_suite_file_duplicate_keys_and_alias_bomb(tmp_path: Path) -> None:
    from nervana_lstm.perf.suites import load_suite

    suite = tmp_path / "s.yaml"
    suite.write_text("name: a\nname: b\nshapes: []\n")
    with pytest.raises(UsageError, match="'name' appears twice"):
        load_suite(str(suite))
    suite.write_text(_bomb().replace("task:", "shapes:"))
    with pytest.raises(UsageError, match="expands to more than"):
        load_suite(str(suite))


# ----------------------------------------------------------------- values in messages


def test_short_repr() -> None:
    assert short_repr("abc") == "'abc'"
    long = short_repr("x" * 5_000_000)
    assert long.endswith("... (5000000 chars)") and len(long) < 2 * SHORT_REPR_CHARS
    shared: list = [1, 2]
    for _ in range(30):  # 2 * 9**30 items, shared: building their repr would never end
        shared = [shared] * 9
    text = short_repr(shared)
    assert text.endswith("(list of 9 items)") and len(text) < 2 * SHORT_REPR_CHARS
    assert short_repr(10**5000) == "an integer of about 5001 digits"
    assert short_repr(-(10**5000)) == "a negative integer of about 5001 digits"
    assert short_repr(12345) == "12345"
    assert short_repr(b"\x00" * 1000).endswith("... (1000 bytes)")
    assert short_repr({"a": 1}) == "{'a': 1}"
    assert short_repr(list(range(100))) == "[0, 1, 2, 3, 4, 5, ...] (list of 100 items)"
    assert short_repr(None) == "None" and short_repr(True) == "True"


@pytest.mark.parametrize(
    "override",
    [
        "model.kind=" + "x" * 100_000,
        "task.options.T=" + "9" * 100_000,
        "optim.lr=[" + ", ".join(["1"] * 50_000) + "]",
        "train." + "k" * 100_000 + "=1",
        "train.steps=" + "{" * 10 + "}" * 10,
    ],
)
def test_config_errors_show_values_shortened(override: str) -> None:
    with pytest.raises(UsageError) as exc:
        load_config(None, ["task.name=adding", override])
    assert len(str(exc.value)) < 1000


def test_config_file_with_a_huge_value_gives_a_short_error(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("task: {name: adding}\nmodel: {kind: '" + "y" * 500_000 + "'}\n")
    with pytest.raises(UsageError, match=r"model\.kind: .*\(500000 chars\)") as exc:
        load_config(path)
    assert len(str(exc.value)) < 1000


def test_task_option_errors_show_values_shortened() -> None:
    from nervana_lstm.data import make_task

    with pytest.raises(UsageError, match=r"\(list of 20000 items\)") as exc:
        make_task("charlm", corpus=[""] * 20_000)
    assert len(str(exc.value)) < 1000


def test_argparse_errors_are_short() -> None:
    done = run_limited("params", "--input-size", "1", "--hidden-size", "9" * 20_000)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr) < 1000  # argparse's usage lines, then the shortened error
    assert "invalid int value" in done.stderr and "chars)" in done.stderr


# -------------------------------------------------------------------------- threads


def test_bench_threads_above_the_cpus_are_refused(tmp_path: Path) -> None:
    from nervana_lstm.resources import usable_cpus

    cpus = usable_cpus()
    for threads in ("100000", f"1,{cpus + 1}"):
        line = _refused(run_limited("bench", "--threads", threads, "--out", str(tmp_path / "o")))
        assert f"expected 1..{cpus}, the CPUs this process may use" in line
    line = _refused(run_limited("bench", "--model", str(tmp_path / "m"), "--threads", "100000"))
    assert f"expected 1..{cpus}" in line
    assert not (tmp_path / "o").exists()


def test_suite_threads_above_the_cpus_are_refused(tmp_path: Path) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "name: t\ndefaults: {threads: [100000], impls: [onednn]}\n"
        "shapes: [{kind: lstm, seq_len: 2, batch: 1, input_size: 3, hidden_size: 4}]\n"
    )
    line = _refused(run_limited("bench", "--suite", str(suite), "--out", str(tmp_path / "o")))
    assert "asks for threads [100000]" in line and "pass --threads" in line


@pytest.mark.parametrize("value", ["", ",", "onednn,", ",onednn", " , "])
def test_info_require_with_an_empty_name_is_an_error(value: str) -> None:
    line = _refused(run_limited("info", "--require", value))
    assert "--require got" in line and "no empty item" in line


# --------------------------------------------------------------------------- params


def _count_by_layer(kind: str, i: int, h: int, layers: int, bias: bool, dirs: int) -> int:
    """The per-layer sum the closed form replaces."""
    from nervana_lstm.choices import gate_count

    g, total = gate_count(kind), 0
    for k in range(layers):
        layer_in = i if k == 0 else dirs * h
        total += dirs * (g * h * (layer_in + h) + (2 * g * h if bias else 0))
        if kind == "dglstm" and k > 0:
            total += h * h + 2 * h + (h if bias else 0)
    return total


@pytest.mark.parametrize("kind", ["rnn", "gru", "lstm", "dglstm"])
def test_param_count_closed_form_equals_the_per_layer_sum(kind: str) -> None:
    from nervana_lstm.cells import count_params

    for i, h, layers in ((1, 1, 1), (7, 5, 2), (3, 11, 9), (64, 32, 33)):
        for bias in (True, False):
            for dirs in (1, 2) if kind != "dglstm" else (1,):
                expected = _count_by_layer(kind, i, h, layers, bias, dirs)
                got = count_params(kind, i, h, layers, bias=bias, bidirectional=dirs == 2)
                assert got == expected


def test_params_with_absurd_sizes_answers_at_once() -> None:
    huge = "99999999999999999999"
    done = run_limited("params", "--input-size", "3", "--hidden-size", "4", "--layers", huge)
    assert done.returncode == 0, done.stderr
    assert f"L={huge}" in done.stdout
    done = run_limited(
        "params", "--input-size", huge, "--hidden-size", huge, "--layers", huge, "--json"
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    rnn = next(r for r in doc["kinds"] if r["kind"] == "rnn")
    h = i = layers = int(huge)
    assert rnn["params"] == _count_by_layer("rnn", i, h, 1, True, 1) + (layers - 1) * (
        h * (h + h) + 2 * h
    )
