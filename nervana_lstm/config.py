"""The typed run configuration: YAML in, validated sections out.

A run is described by five sections::

    task:   which data (adding, copy, charlm, files) and its options
    model:  recurrent kind and sizes, embedding, forget-gate bias
    optim:  optimizer, learning rate, schedule, gradient clipping
    train:  steps, batch, seed, accelerator, precision, logging, checkpoints
    eval:   how often to evaluate, early stopping

``task.name`` selects the model of ``task.options`` (``AddingOptions``,
``CopyOptions``, ``CharLMOptions``, ``FilesOptions``): each option's type,
bounds and default are declared there once, for configs and for
``nervana_lstm.data.make_task`` alike.

Every section forbids unknown keys. A bad value is reported with its key path,
the type that was expected and the value that was found, as a
:class:`~nervana_lstm.errors.UsageError` (the CLI turns it into exit status 2).

``--set section.key=value`` overrides are parsed with the same YAML scalar rules
as the file (``3e-3`` is a float, ``true`` a bool, ``null`` None) and validated
by the same schema.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Iterable, KeysView, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from nervana_lstm.choices import Accel, Kind, TaskName, TrainPrecision
from nervana_lstm.errors import UsageError, short_repr
from nervana_lstm.safe_yaml import load_yaml, read_yaml_file

__all__ = [
    "MAX_HELD_OUT",
    "MAX_POOL_BATCHES",
    "MAX_STEPS",
    "TASK_OPTIONS",
    "AddingOptions",
    "CharLMOptions",
    "CopyOptions",
    "EvalConfig",
    "FilesOptions",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "TaskConfig",
    "TaskOptions",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "load_config",
    "parse_override",
    "resolve_config",
    "yaml_scalar",
]


class _Section(BaseModel):
    # strict: `steps: true` or `lr: "0.1"` is a wrong type, not 1 or 0.1 (an int still fits a float)
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)


# ---------------------------------------------------------------- task options

#: the most steps a synthetic sequence or a charlm chunk may have
MAX_STEPS = 1_000_000
#: the most held-out sequences a synthetic task may draw
MAX_HELD_OUT = 1_000_000
#: the most batches a files task sorts by length at once
MAX_POOL_BATCHES = 1_000_000

#: a non-empty string (a file path, a corpus name)
_Text = Annotated[str, Field(min_length=1)]


class TaskOptions(_Section):
    """The options of one task. They unpack like a mapping: ``make_task(name, **options)``."""

    def keys(self) -> KeysView[str]:
        return type(self).model_fields.keys()

    def __getitem__(self, key: str) -> Any:
        if key not in type(self).model_fields:
            raise KeyError(key)
        return getattr(self, key)


class AddingOptions(TaskOptions):
    """The adding problem (``nervana_lstm.data.adding``)."""

    #: sequence length; one marker falls in each half
    T: int = Field(100, ge=2, le=MAX_STEPS)
    #: fixes every training batch and the held-out set
    seed: int = Field(0, ge=0)
    #: number of held-out sequences
    eval_size: int = Field(1000, ge=1, le=MAX_HELD_OUT)


class CopyOptions(TaskOptions):
    """The copying memory task (``nervana_lstm.data.copying``)."""

    #: blanks between the symbols and the recall; sequences have T + 20 steps
    T: int = Field(100, ge=1, le=MAX_STEPS)
    #: fixes every training batch and the held-out set
    seed: int = Field(0, ge=0)
    #: number of held-out sequences
    eval_size: int = Field(1000, ge=1, le=MAX_HELD_OUT)


class CharLMOptions(TaskOptions):
    """Character-level language modelling (``nervana_lstm.data.charlm``)."""

    #: "pydoc_topics" (Python's help texts), a text file, a glob, or a list of those
    corpus: _Text | Annotated[list[_Text], Field(min_length=1)] = "pydoc_topics"
    #: characters per chunk (truncated-BPTT length)
    seq_len: int = Field(100, ge=1, le=MAX_STEPS)
    #: fixes each pass's start offset
    seed: int = Field(0, ge=0)
    #: share of the text, taken from its end, held out for evaluation
    eval_fraction: float = Field(0.05, gt=0.0, lt=1.0)

    @field_validator("corpus", mode="before")
    @classmethod
    def _tuple_is_a_list(cls, value: Any) -> Any:
        return list(value) if isinstance(value, tuple) else value


class FilesOptions(TaskOptions):
    """Users' own sequences from a CSV or NPZ file (``nervana_lstm.data.files``)."""

    #: a .csv or .npz file; a relative path is read from the working directory
    path: _Text
    #: one label per sequence, or one or more values
    target: Literal["classify", "regress"] = "classify"
    #: fixes the held-out split and every epoch's batch plan
    seed: int = Field(0, ge=0)
    #: share of sequences held out for evaluation
    eval_fraction: float = Field(0.1, gt=0.0, lt=1.0)
    #: batches per length-sorting pool
    pool_batches: int = Field(32, ge=1, le=MAX_POOL_BATCHES)

    @model_validator(mode="before")
    @classmethod
    def _pickle_is_a_flag(cls, data: Any) -> Any:
        # Unpickling a file can run code from it: that is allowed per command
        # (``train --allow-pickle``), never by a key a shared config could carry or a
        # saved config.yaml could switch on again at --resume. ``false``, the value
        # earlier versions saved in every run's config, changes nothing and is dropped.
        if isinstance(data, Mapping) and "allow_pickle" in data:
            if data["allow_pickle"] is not False:
                raise ValueError(
                    "allow_pickle is not a config key (a config is shared and saved with "
                    "the run, and unpickling can run code from the file): remove it and "
                    "pass --allow-pickle to the command, for a data file you trust"
                )
            return {k: v for k, v in data.items() if k != "allow_pickle"}
        return data


class _Task(_Section):
    """Which task to train on, and its options (lag T, files...)."""

    name: TaskName
    options: TaskOptions


def _all_defaults() -> Any:
    # ``{}`` validated: every option takes its default (files' path has none: reported missing)
    return Field(default_factory=dict, validate_default=True)


class _AddingTask(_Task):
    name: Literal["adding"]
    options: AddingOptions = _all_defaults()


class _CopyTask(_Task):
    name: Literal["copy"]
    options: CopyOptions = _all_defaults()


class _CharLMTask(_Task):
    name: Literal["charlm"]
    options: CharLMOptions = _all_defaults()


class _FilesTask(_Task):
    name: Literal["files"]
    options: FilesOptions = _all_defaults()


#: the ``task`` section: ``name`` selects the model that validates ``options``
TaskConfig = Annotated[
    _AddingTask | _CopyTask | _CharLMTask | _FilesTask, Field(discriminator="name")
]
#: task name -> its section model (the union's members, by their ``name`` literal)
_TASKS: dict[str, type[_Task]] = {
    typing.get_args(m.model_fields["name"].annotation)[0]: m
    for m in typing.get_args(typing.get_args(TaskConfig)[0])
}
#: each task's options model, by task name
TASK_OPTIONS: dict[TaskName, type[TaskOptions]] = {
    name: m.model_fields["options"].annotation for name, m in _TASKS.items()
}


# ------------------------------------------------------------------- sections


class ModelConfig(_Section):
    """The recurrent stack and its head."""

    kind: Kind = "lstm"
    hidden_size: int = Field(128, ge=1, le=65536)
    num_layers: int = Field(1, ge=1, le=64)
    bidirectional: bool = False
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    #: width of the token embedding (token tasks only)
    embedding_dim: int = Field(64, ge=1, le=65536)
    #: initial forget-gate bias of lstm/dglstm; None keeps torch's default initialisation
    forget_bias: float | None = None

    @field_validator("forget_bias")
    @classmethod
    def _forget_gate_exists(cls, value: float | None, info: ValidationInfo) -> float | None:
        kind = info.data.get("kind")
        if value is not None and kind not in ("lstm", "dglstm", None):
            raise ValueError(
                f"forget_bias applies to lstm and dglstm only; kind {kind!r} has no forget "
                "gate (remove forget_bias or set it to null)"
            )
        return value


class OptimConfig(_Section):
    """Optimizer and learning-rate schedule.

    The schedule is a pure function of the step (linear warmup, then constant or
    cosine decay to ``min_lr_ratio * lr``), so resuming needs no scheduler state
    beyond the step itself.
    """

    name: Literal["adamw", "sgd"] = "adamw"
    lr: float = Field(1e-3, gt=0.0)
    weight_decay: float = Field(0.0, ge=0.0)
    #: YAML gives a list; strict=False lets it fill the tuple (each item is still a strict float)
    betas: tuple[float, float] = Field((0.9, 0.999), strict=False)
    momentum: float = Field(0.0, ge=0.0, lt=1.0)
    #: max global gradient norm; None disables clipping
    clip_norm: float | None = Field(1.0, gt=0.0)
    schedule: Literal["constant", "cosine"] = "constant"
    warmup_steps: int = Field(0, ge=0)
    min_lr_ratio: float = Field(0.0, ge=0.0, le=1.0)

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, value: tuple[float, float]) -> tuple[float, float]:
        # AdamW's running averages need each beta in [0, 1); torch would raise a bare ValueError
        if not all(0.0 <= b < 1.0 for b in value):
            raise ValueError(f"each beta must be >= 0 and < 1, got {list(value)}")
        return value


class TrainConfig(_Section):
    """Steps, batches, seeds, where the arithmetic runs, and how often to log and save."""

    steps: int = Field(1000, ge=1)
    #: global batch; under torchrun each of N processes takes batch_size / N rows
    batch_size: int = Field(32, ge=1)
    seed: int = Field(0, ge=0)
    accel: Accel = "auto"
    #: fp32, bf16, or auto: bf16 where the CPU computes it natively (AMX-BF16, AVX512_BF16)
    precision: TrainPrecision = "fp32"
    #: intra-op threads per process; None = the CPUs available divided by local processes
    threads: int | None = Field(None, ge=1)
    log_every: int = Field(10, ge=1)
    #: save ``last`` every this many steps; None = at each evaluation
    checkpoint_every: int | None = Field(None, ge=1)


class EvalConfig(_Section):
    """Held-out evaluation and early stopping (``patience`` evaluations without improvement)."""

    every: int = Field(100, ge=1)
    batch_size: int | None = Field(None, ge=1)
    #: stop after this many evaluations without improvement; 0 disables early stopping
    patience: int = Field(0, ge=0)
    min_delta: float = Field(0.0, ge=0.0)


class RunConfig(_Section):
    """A complete run."""

    task: TaskConfig
    model: ModelConfig = Field(default_factory=ModelConfig)
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        """Primitives only (dicts, lists, str, int, float, bool, None): safe in a checkpoint."""
        return self.model_dump(mode="json")


def resolve_config(cfg: RunConfig) -> RunConfig:
    """``cfg`` with the task's seed taken from ``train.seed`` where the options leave it unset.

    Every other option already holds its value or its model's default, so the
    resolved ``to_dict()`` (the run's saved ``config.yaml``) rebuilds the run by itself.
    """
    options = cfg.task.options
    if "seed" not in type(options).model_fields or "seed" in options.model_fields_set:
        return cfg
    seeded = options.model_copy(update={"seed": cfg.train.seed})
    return cfg.model_copy(update={"task": cfg.task.model_copy(update={"options": seeded})})


# --------------------------------------------------------------------------- YAML


def yaml_scalar(text: str) -> Any:
    """Parse one ``--set`` value with the YAML rules (and limits) the config file uses."""
    return load_yaml(
        text, f"--set value {short_repr(text)}", invalid=f"cannot parse value {short_repr(text)}"
    )


# --------------------------------------------------------------------- errors


def _section_of(annotation: Any) -> type[BaseModel] | None:
    """The model under a key: its section class, ``_Task`` for the task union, None for a leaf."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    members = typing.get_args(annotation)
    if members and all(isinstance(m, type) and issubclass(m, _Task) for m in members):
        return _Task
    return None


def _locate(loc: tuple[Any, ...]) -> tuple[list[str], type[BaseModel], FieldInfo | None]:
    """The config keys of an error location, the model holding the last one, and its field.

    pydantic's locations also name the task union's member (after ``task``) and, after
    a leaf key, union members and tuple indices; those are not keys.
    """
    keys: list[str] = []
    model: type[BaseModel] = RunConfig
    parts = list(loc)
    while parts:
        part = parts.pop(0)
        keys.append(str(part))
        field = model.model_fields.get(part) if isinstance(part, str) else None
        if field is None:  # a key the schema does not know
            break
        section = _section_of(field.annotation)
        if section is _Task and parts and parts[0] in _TASKS:
            section = _TASKS[parts.pop(0)]
        if section is None or not parts:
            return keys, model, field
        model = section
    return keys, model, None


def _describe(annotation: Any) -> str:
    """A short, readable name for a declared type."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Annotated:
        return _describe(args[0])
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(dict.fromkeys(_describe(a) for a in args))
    if origin in (tuple, list):
        return "a list of " + ", ".join(_describe(a) for a in args)
    if annotation is type(None):
        return "null"
    section = _section_of(annotation)
    if section is not None:
        return "a mapping with keys " + ", ".join(section.model_fields)
    return getattr(annotation, "__name__", str(annotation))


def _expected(field: FieldInfo) -> str:
    """A field's type and bounds as declared, e.g. ``int (>= 1)``."""
    bounds = [
        f"{symbol} {getattr(meta, name)}"
        for meta in field.metadata
        for name, symbol in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
        if getattr(meta, name, None) is not None
    ]
    return _describe(field.annotation) + (f" ({', '.join(bounds)})" if bounds else "")


def _problem(err: Mapping[str, Any]) -> str:
    """One pydantic error as one line: key path, what was expected, what was found, why."""
    keys, model, field = _locate(err["loc"])
    kind, found, ctx = err["type"], err.get("input"), err.get("ctx", {})
    if kind.startswith("union_tag_"):  # task.name, which selects the options model
        keys, field = [*keys, "name"], _Task.model_fields["name"]
        found = found.get("name") if isinstance(found, Mapping) else found
        kind = "missing" if kind == "union_tag_not_found" else kind
    path = ".".join(keys) or "(top level)"
    if kind == "extra_forbidden":
        allowed = ", ".join(model.model_fields)
        return f"{path}: unknown key (allowed keys here: {allowed}); found {short_repr(found)}"
    if kind == "missing":
        return f"{path}: required key is missing"
    why = str(ctx["error"]) if "error" in ctx else err["msg"]  # a validator's own words
    if kind == "value_error" and field is not None and _section_of(field.annotation):
        return f"{path}: {why}"  # a whole section's check: its words name the key
    expected = f"expected {_expected(field)}, " if field is not None else ""
    return f"{path}: {expected}got {short_repr(found)} ({type(found).__name__}): {why}"


def config_from_dict(data: Any, source: str = "config") -> RunConfig:
    """Validate a plain mapping; errors become one :class:`UsageError` naming every bad key."""
    if not isinstance(data, Mapping):
        raise UsageError(
            f"{source}: expected a mapping with sections task, model, optim, train, eval; "
            f"got {type(data).__name__} {short_repr(data)}"
        )
    try:
        return RunConfig.model_validate(dict(data))
    except ValidationError as exc:
        problems: dict[str, str] = {}
        for err in exc.errors():
            text = _problem(err)
            # a union reports once per member; the first line already names the expected types
            problems.setdefault(text.split(":", 1)[0], text)
        problems_text = "; ".join(problems.values())
        raise UsageError(f"invalid {source}: {problems_text}") from None


# ------------------------------------------------------------------ overrides


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=3e-3"`` -> (["optim", "lr"], 0.003)."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise UsageError(f"--set expects section.key=value, got {short_repr(text)}")
    path = key.split(".")
    if any(not p for p in path):
        raise UsageError(
            f"--set key {short_repr(key)} has an empty part; expected section.key=value"
        )
    _check_path(path, text)
    return path, yaml_scalar(value)


def _check_path(path: list[str], text: str) -> None:
    model: type[BaseModel] = RunConfig
    for depth, part in enumerate(path):
        if part not in model.model_fields:
            where = ".".join(path[:depth]) or "the top level"
            allowed = ", ".join(model.model_fields)
            raise UsageError(
                f"--set {short_repr(text)}: unknown key {short_repr('.'.join(path[: depth + 1]))} "
                f"(allowed under {where}: {allowed})"
            )
        section = _section_of(model.model_fields[part].annotation)
        if section is TaskOptions:  # the option names depend on task.name: checked on validation
            leaf = depth + 1
        elif section is None:
            leaf = depth
        else:
            model = section
            continue
        if len(path) - 1 <= leaf:
            return
        raise UsageError(f"--set {short_repr(text)}: {'.'.join(path[: leaf + 1])} has no sub-keys")
    if len(path) == 1:
        raise UsageError(
            f"--set {short_repr(text)}: {path[0]!r} is a section; set one of its keys, "
            f"e.g. {path[0]}.{next(iter(model.model_fields))}=..."
        )


def apply_overrides(data: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``section.key=value`` applied in order."""
    out: dict[str, Any] = _deep_copy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            elif not isinstance(child, dict):
                raise UsageError(
                    f"--set {short_repr(text)}: {short_repr(part)} in the config is "
                    f"{short_repr(child)}, not a mapping"
                )
            node = child
        node[path[-1]] = value
    return out


def _deep_copy(data: Any) -> Any:
    if isinstance(data, Mapping):
        return {k: _deep_copy(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_deep_copy(v) for v in data]
    return data


def load_config(path: str | Path | None, overrides: Iterable[str] = ()) -> RunConfig:
    """Read a YAML file (or start from nothing when ``path`` is None), apply overrides, validate.

    The file must be a regular UTF-8 file within the limits of
    :mod:`nervana_lstm.safe_yaml` (size, alias expansion, nesting, no duplicate keys).
    """
    data: Any = {}
    source = "config"
    if path is not None:
        p = Path(path)
        source = f"config {p}"
        data = read_yaml_file(p, "config file")
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise UsageError(
                f"{source}: expected a mapping with sections task, model, optim, train, eval; "
                f"got {type(data).__name__}"
            )
        if any(not isinstance(k, str) for k in data):
            bad = next(k for k in data if not isinstance(k, str))
            raise UsageError(f"{source}: section names must be strings, found {short_repr(bad)}")
    data = apply_overrides(data, overrides)
    return config_from_dict(data, source)
