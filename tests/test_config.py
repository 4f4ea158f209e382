"""Run configs: schema, YAML rules, --set overrides, and bad input giving exit 2 without a traceback."""

from __future__ import annotations

import contextlib
import io
import re
import string
import typing
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nervana_lstm.cli import main
from nervana_lstm.config import (
    TASK_OPTIONS,
    EvalConfig,
    ModelConfig,
    OptimConfig,
    RunConfig,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    load_config,
    parse_override,
    resolve_config,
    yaml_scalar,
)
from nervana_lstm.errors import UsageError
from nervana_lstm.train import loop as train_loop

REPO = Path(__file__).resolve().parents[1]
SECTIONS = {"model": ModelConfig, "optim": OptimConfig, "train": TrainConfig, "eval": EvalConfig}
MINIMAL = {"task": {"name": "adding", "options": {"T": 10}}}


def run_main(args: list[str]) -> tuple[int, str]:
    """``nervana-lstm ARGS`` in this process; returns (exit status, stderr)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = main(args)
        except SystemExit as exc:  # argparse's own usage errors
            code = int(exc.code or 0)
    return code, err.getvalue()


@pytest.mark.parametrize("path", sorted((REPO / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_validate(path: Path) -> None:
    cfg = load_config(path)
    assert cfg.task.name in ("adding", "copy", "charlm", "files")
    # the resolved form is primitives only and reads back to the same config
    assert config_from_dict(cfg.to_dict()) == cfg
    assert yaml.safe_load(yaml.safe_dump(cfg.to_dict())) == cfg.to_dict()


def test_yaml_reads_exponent_floats() -> None:
    assert yaml_scalar("3e-3") == pytest.approx(0.003)
    assert yaml_scalar("1E5") == pytest.approx(1e5)
    assert yaml_scalar("7") == 7 and isinstance(yaml_scalar("7"), int)
    assert yaml_scalar("true") is True
    assert yaml_scalar("null") is None
    assert yaml_scalar("[a, b]") == ["a", "b"]


def test_overrides_apply_in_order_and_validate() -> None:
    data = apply_overrides(MINIMAL, ["optim.lr=3e-3", "task.options.T=50", "optim.lr=0.5"])
    cfg = config_from_dict(data)
    assert cfg.optim.lr == 0.5
    assert cfg.task.options.T == 50
    assert MINIMAL["task"]["options"] == {"T": 10}  # the input is not modified


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("model.hidden=3", "unknown key 'model.hidden'"),
        ("modle.kind=gru", "unknown key 'modle'"),
        ("model=3", "is a section"),
        ("train.steps.max=3", "has no sub-keys"),
        ("lr", "section.key=value"),
        ("=3", "section.key=value"),
        ("optim..lr=3", "empty part"),
        ("optim.lr=[1, 2", "cannot parse value"),
    ],
)
def test_bad_override_paths(text: str, fragment: str) -> None:
    with pytest.raises(UsageError, match=fragment.replace(".", r"\.").replace("[", r"\[")):
        parse_override(text)


@pytest.mark.parametrize(
    ("data", "fragments"),
    [
        (
            {**MINIMAL, "model": {"hidden_size": "big"}},
            ["model.hidden_size", "expected int", "big"],
        ),
        ({**MINIMAL, "model": {"kind": "transformer"}}, ["model.kind", "one of", "transformer"]),
        ({**MINIMAL, "optim": {"lr": -1}}, ["optim.lr", "> 0", "-1"]),
        ({**MINIMAL, "train": {"steps": 2.5}}, ["train.steps", "expected int", "2.5"]),
        ({**MINIMAL, "model": {"wings": 2}}, ["model.wings", "unknown key", "allowed keys"]),
        ({**MINIMAL, "extra": {}}, ["extra", "unknown key"]),
        ({"model": {}}, ["task", "missing"]),
        ({**MINIMAL, "model": {"kind": "gru", "forget_bias": 1.0}}, ["forget_bias", "no forget"]),
        ({**MINIMAL, "train": [1, 2]}, ["train", "expected a mapping"]),
    ],
)
def test_bad_values_name_path_type_and_value(data: dict, fragments: list[str]) -> None:
    with pytest.raises(UsageError) as info:
        config_from_dict(data)
    for fragment in fragments:
        assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("train.steps=true", "train.steps: expected int (>= 1), got True (bool)"),
        ("train.steps='20'", "train.steps: expected int (>= 1), got '20' (str)"),
        ("optim.lr='0.1'", "optim.lr: expected float (> 0.0), got '0.1' (str)"),
        ("model.bidirectional=1", "model.bidirectional: expected bool, got 1 (int)"),
        ("optim.betas=['0.8', 0.9]", "optim.betas: expected a list of float, float, got '0.8'"),
        ("optim.betas=[1.0, 0.5]", "optim.betas: expected a list of float, float, got [1.0, 0.5]"),
    ],
)
def test_wrong_types_are_not_coerced(text: str, fragment: str) -> None:
    with pytest.raises(UsageError) as info:
        config_from_dict(apply_overrides(MINIMAL, [text]))
    assert fragment in str(info.value)


def test_ints_fill_float_keys_and_lists_fill_betas() -> None:
    cfg = config_from_dict(apply_overrides(MINIMAL, ["optim.lr=1", "optim.betas=[0.8, 0.9]"]))
    assert cfg.optim.lr == 1.0 and cfg.optim.betas == (0.8, 0.9)


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: {name: adding\n")
    with pytest.raises(UsageError, match="not valid YAML"):
        load_config(bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(UsageError, match="expected a mapping"):
        load_config(listy)


# ------------------------------------------------- property tests through the CLI

_LETTERS = st.text(alphabet=string.ascii_letters, min_size=1, max_size=12)
_BOOL_WORDS = {"y", "n", "t", "f", "yes", "no", "on", "off", "true", "false"}
_CONTAINERS = st.one_of(
    st.lists(st.integers(), min_size=1, max_size=3),
    st.dictionaries(_LETTERS, st.integers(), min_size=1, max_size=2),
)


def _leaf_fields() -> list[tuple[str, str, typing.Any]]:
    out = []
    for section, model in SECTIONS.items():
        for name, info in model.model_fields.items():
            out.append((section, name, info.annotation))
    return out


def _bad_value(annotation: typing.Any) -> st.SearchStrategy[typing.Any]:
    """Values that can never satisfy ``annotation`` (bounds aside)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        allowed = set(typing.get_args(annotation))
        return st.one_of(_LETTERS.filter(lambda s: s not in allowed), _CONTAINERS)
    if annotation is bool:
        return st.one_of(_CONTAINERS, _LETTERS.filter(lambda s: s.lower() not in _BOOL_WORDS))
    # numbers (possibly optional), tuples of numbers: letters and mappings never fit
    return st.one_of(
        _LETTERS.filter(lambda s: s.lower() not in ("inf", "nan", "infinity")),
        st.dictionaries(_LETTERS, st.integers(), min_size=1, max_size=2),
    )


_FIELDS = _leaf_fields()


@st.composite
def bad_configs(draw: st.DrawFn) -> tuple[dict, str]:
    """A config with one wrong entry, and the key path the error must name."""
    data = {"task": {"name": "adding", "options": {"T": 10}}, "train": {"steps": 1}}
    kind = draw(st.sampled_from(["unknown_key", "wrong_type", "bad_task", "unknown_section"]))
    if kind == "unknown_key":
        section = draw(st.sampled_from(sorted(SECTIONS)))
        key = draw(_LETTERS.filter(lambda k: k not in SECTIONS[section].model_fields))
        data.setdefault(section, {})[key] = draw(st.integers())
        return data, f"{section}.{key}"
    if kind == "unknown_section":
        key = draw(_LETTERS.filter(lambda k: k not in RunConfig.model_fields))
        data[key] = {}
        return data, key
    if kind == "bad_task":
        data["task"]["name"] = draw(
            _LETTERS.filter(lambda s: s not in ("adding", "copy", "charlm", "files"))
        )
        return data, "task.name"
    section, name, annotation = draw(st.sampled_from(_FIELDS))
    data.setdefault(section, {})[name] = draw(_bad_value(annotation))
    return data, f"{section}.{name}"


@pytest.fixture(scope="module")
def scratch(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("configs")


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=bad_configs())
def test_random_bad_configs_exit_2_without_traceback(case: tuple[dict, str], scratch: Path) -> None:
    data, path = case
    file = scratch / "bad.yaml"
    file.write_text(yaml.safe_dump(data))
    code, err = run_main(["train", "--config", str(file), "--out", str(scratch / "run")])
    assert code == 2, err
    assert "Traceback" not in err
    assert path in err
    assert not (scratch / "run").exists()  # nothing written for a refused config


def _never_valid(annotation: typing.Any, text: str) -> bool:
    allowed = typing.get_args(annotation) if typing.get_origin(annotation) is typing.Literal else ()
    # YAML reads words such as FALSE, off, null as bools/None: only plain strings here
    return text not in allowed and isinstance(yaml_scalar(text), str)


@settings(max_examples=60, deadline=None)
@given(field=st.sampled_from([f for f in _FIELDS if f[2] is not bool]), data=st.data())
def test_random_bad_set_values_exit_2(
    field: tuple[str, str, typing.Any], data: st.DataObject, scratch: Path
) -> None:
    section, name, annotation = field
    text = data.draw(_LETTERS.filter(lambda s: _never_valid(annotation, s)))
    code, err = run_main(
        [
            "train",
            "--config",
            str(REPO / "configs" / "adding.yaml"),
            "--out",
            str(scratch / "run"),
            "--set",
            "train.steps=1",  # were a value ever accepted, the run stays tiny
            "--set",
            f"{section}.{name}={text}",
        ]
    )
    assert code == 2, err
    assert "Traceback" not in err
    assert f"{section}.{name}" in err and text in err


@settings(max_examples=40, deadline=None)
@given(doc=st.one_of(st.lists(st.integers(), max_size=3), st.integers(), _LETTERS))
def test_non_mapping_documents_exit_2(doc: typing.Any, scratch: Path) -> None:
    file = scratch / "doc.yaml"
    file.write_text(yaml.safe_dump(doc))
    code, err = run_main(["train", "--config", str(file)])
    assert code == 2 and "Traceback" not in err
    assert "expected a mapping" in err


def test_cli_subprocess_unknown_key(cli, tmp_path: Path) -> None:
    file = tmp_path / "c.yaml"
    file.write_text("task: {name: adding}\nmodel: {hidden: 8}\n")
    proc = cli("train", "--config", str(file), "--out", str(tmp_path / "run"))
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "model.hidden: unknown key" in proc.stderr


def test_cli_subprocess_bad_set(cli) -> None:
    proc = cli("train", "--config", "configs/adding.yaml", "--set", "optim.lr=fast")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "optim.lr: expected float" in proc.stderr and "'fast'" in proc.stderr


# ------------------------------------------------------------ typed task options


@pytest.mark.parametrize(
    ("task", "text", "fragment"),
    [
        (
            "adding",
            "task.options.T=1",
            "task.options.T: expected int (>= 2, <= 1000000), got 1 (int)",
        ),
        (
            "copy",
            "task.options.T=0",
            "task.options.T: expected int (>= 1, <= 1000000), got 0 (int)",
        ),
        (
            "adding",
            "task.options.T=8.0",
            "task.options.T: expected int (>= 2, <= 1000000), got 8.0 (float)",
        ),
        ("adding", "task.options.seed=true", "task.options.seed: expected int (>= 0), got True"),
        (
            "adding",
            "task.options.lag=5",
            "task.options.lag: unknown key (allowed keys here: T, seed",
        ),
        ("charlm", "task.options.corpus=3", "task.options.corpus: expected str or a list of str"),
        ("charlm", "task.options.eval_fraction=1.5", "expected float (> 0.0, < 1.0), got 1.5"),
        ("files", "task.options.target=cluster", "task.options.target: expected one of 'classify'"),
        ("files", "task.options.allow_pickle=1", "task.options: allow_pickle is not a config key"),
        ("files", "task.options.allow_pickle=true", "pass --allow-pickle to the command"),
        ("files", "train.steps=2", "task.options.path: required key is missing"),
        ("nope", "train.steps=2", "task.name: expected one of 'adding', 'copy', 'charlm', 'files'"),
    ],
)
def test_bad_task_options_name_path_type_and_value(task: str, text: str, fragment: str) -> None:
    with pytest.raises(UsageError) as info:
        config_from_dict(apply_overrides({"task": {"name": task}}, [text]))
    assert fragment in str(info.value)


def test_task_name_selects_the_options_model() -> None:
    for name, model in TASK_OPTIONS.items():
        data = {"task": {"name": name, "options": {"path": "d.csv"} if name == "files" else {}}}
        options = config_from_dict(data).task.options
        assert type(options) is model
        assert dict(**options) == options.model_dump()  # unpacks like a mapping
    with pytest.raises(UsageError, match=r"task\.name: required key is missing"):
        config_from_dict({"task": {"options": {}}})
    # adding's options are not copy's: the same key is checked against the named task
    with pytest.raises(UsageError, match="allowed keys here: corpus, seq_len"):
        config_from_dict({"task": {"name": "charlm", "options": {"T": 5}}})


def test_resolve_fills_every_option_and_the_seed_from_train() -> None:
    cfg = config_from_dict(apply_overrides(MINIMAL, ["train.seed=7"]))
    resolved = resolve_config(cfg)
    assert resolved.to_dict()["task"]["options"] == {"T": 10, "seed": 7, "eval_size": 1000}
    assert resolve_config(resolved) == resolved
    assert config_from_dict(resolved.to_dict()) == resolved
    # a seed the options set is kept
    given = config_from_dict(apply_overrides(MINIMAL, ["train.seed=7", "task.options.seed=2"]))
    assert resolve_config(given).task.options.seed == 2
    assert train_loop.resolve_config is resolve_config


@pytest.mark.parametrize(
    ("name", "keys"),
    [
        ("adding", ["T", "seed", "eval_size"]),
        ("copy", ["T", "seed", "eval_size"]),
        ("charlm", ["corpus", "seq_len", "seed", "eval_fraction"]),
        ("sines", ["path", "target", "seed", "eval_fraction", "pool_batches"]),
    ],
)
def test_saved_config_lists_every_option_in_order(name: str, keys: list[str]) -> None:
    saved = yaml.safe_dump(resolve_config(load_config(REPO / "configs" / f"{name}.yaml")).to_dict(),
                           sort_keys=False)  # fmt: skip
    assert list(yaml.safe_load(saved)["task"]["options"]) == keys


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("task.options.T.x=1", "task.options.T has no sub-keys"),
        ("task.name.x=1", "task.name has no sub-keys"),
        ("task.opts.T=1", "unknown key 'task.opts' (allowed under task: name, options)"),
        ("task=adding", "'task' is a section"),
    ],
)
def test_task_override_paths(text: str, fragment: str) -> None:
    with pytest.raises(UsageError, match=re.escape(fragment)):
        parse_override(text)
    # one level under task.options is any key: the task's model checks it on validation
    assert parse_override("task.options.anything=1") == (["task", "options", "anything"], 1)


_OPTION_FIELDS = [
    (name, key, info.annotation)
    for name, model in TASK_OPTIONS.items()
    for key, info in model.model_fields.items()
]


@settings(max_examples=60, deadline=None)
@given(field=st.sampled_from(_OPTION_FIELDS), data=st.data())
def test_random_bad_task_options_name_their_path(
    field: tuple[str, str, typing.Any], data: st.DataObject
) -> None:
    name, key, annotation = field
    text_option = key in ("path", "corpus")  # any string is a valid path: only mappings fail
    never = st.dictionaries(_LETTERS, st.integers(), min_size=1, max_size=2)
    bad = data.draw(never if text_option else _bad_value(annotation))
    options = {"path": "d.csv"} if name == "files" else {}
    with pytest.raises(UsageError) as info:
        config_from_dict({"task": {"name": name, "options": {**options, key: bad}}})
    assert f"task.options.{key}: expected " in str(info.value)


def test_cli_bad_task_option_exits_2_before_writing(scratch: Path) -> None:
    out = scratch / "bad-option"
    code, err = run_main(
        ["train", "--config", str(REPO / "configs" / "adding.yaml"), "--out", str(out),
         "--set", "task.options.T=1"]
    )  # fmt: skip
    assert code == 2 and "Traceback" not in err
    assert "task.options.T: expected int (>= 2, <= 1000000), got 1 (int)" in err
    assert not out.exists()
