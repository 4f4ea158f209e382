"""The typed run configuration: YAML in, validated sections out.

A run is described by five sections::

    task:   which data (adding, copy, charlm, files) and its options
    model:  recurrent kind and sizes, embedding, forget-gate bias
    optim:  optimizer, learning rate, schedule, gradient clipping
    train:  steps, batch, seed, accelerator, precision, logging, checkpoints
    eval:   how often to evaluate, early stopping

Every section forbids unknown keys. A bad value is reported with its key path,
the type that was expected and the value that was found, as a
:class:`~nervana_lstm.errors.UsageError` (the CLI turns it into exit status 2).

``--set section.key=value`` overrides are parsed with the same YAML scalar rules
as the file (``3e-3`` is a float, ``true`` a bool, ``null`` None) and validated
by the same schema.
"""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from nervana_lstm.errors import UsageError

__all__ = [
    "ACCELS",
    "PRECISIONS",
    "TASK_NAMES",
    "EvalConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "TaskConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "load_config",
    "parse_override",
    "yaml_scalar",
]

TASK_NAMES = ("adding", "copy", "charlm", "files")
ACCELS = ("auto", "ipex", "onednn", "reference")
PRECISIONS = ("fp32", "bf16")

# Scalars a task option may hold (nested one level for lists such as file names).
OptionValue = int | float | str | bool | None | list[int | float | str | bool]


class _Section(BaseModel):
    # strict: `steps: true` or `lr: "0.1"` is a wrong type, not 1 or 0.1 (an int still fits a float)
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)


class TaskConfig(_Section):
    """Which task to train on; ``options`` go to that task's constructor (lag T, files...)."""

    name: Literal["adding", "copy", "charlm", "files"]
    options: dict[str, OptionValue] = Field(default_factory=dict)


class ModelConfig(_Section):
    """The recurrent stack and its head."""

    kind: Literal["rnn", "lstm", "gru", "dglstm"] = "lstm"
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
    seed: int = Field(0, ge=0, lt=2**63)
    accel: Literal["auto", "ipex", "onednn", "reference"] = "auto"
    precision: Literal["fp32", "bf16"] = "fp32"
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


# --------------------------------------------------------------------------- YAML


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` as a float (YAML 1.2 rules; 1.1 wants ``1.0e-3``)."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def yaml_scalar(text: str) -> Any:
    """Parse one ``--set`` value with the YAML rules the config file uses."""
    try:
        return yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        raise UsageError(f"cannot parse value {text!r} as YAML: {_one_line(exc)}") from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


# --------------------------------------------------------------------- errors


def _describe(annotation: Any) -> str:
    """A short, readable name for a field's type."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args)
    if origin is tuple:
        return "a list of " + ", ".join(_describe(a) for a in args)
    if origin is dict:
        return "a mapping"
    if origin is list:
        return "a list"
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "a mapping with keys " + ", ".join(annotation.model_fields)
    return getattr(annotation, "__name__", str(annotation))


def _owner(loc: tuple[Any, ...]) -> type[BaseModel]:
    owner: type[BaseModel] = RunConfig
    for part in loc[:-1]:
        ann = owner.model_fields[part].annotation if part in owner.model_fields else None
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            owner = ann
    return owner


def _bounds(info: Any) -> str:
    parts = []
    for meta in info.metadata:
        for attr, sym in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            value = getattr(meta, attr, None)
            if value is not None:
                parts.append(f"{sym} {value}")
    return f" ({', '.join(parts)})" if parts else ""


def _format_error(err: Mapping[str, Any]) -> str:
    keys = _key_path(err["loc"])
    path = ".".join(keys) or "(top level)"
    found = err.get("input")
    if err["type"] == "extra_forbidden":
        owner = _owner(tuple(keys))
        allowed = ", ".join(owner.model_fields)
        return f"{path}: unknown key (allowed keys here: {allowed}); found {found!r}"
    if err["type"] == "missing":
        return f"{path}: required key is missing"
    owner = _owner(tuple(keys))
    name = keys[-1] if keys else None
    expected = ""
    if keys[:2] == ["task", "options"] and len(keys) == 3:
        expected = "expected a number, string, bool, null or a list of those, "
    elif name is not None and name in owner.model_fields:
        info = owner.model_fields[name]
        expected = f"expected {_describe(info.annotation)}{_bounds(info)}, "
    msg = err["msg"]
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return f"{path}: {expected}got {found!r} ({type(found).__name__}): {msg}"


def _key_path(loc: tuple[Any, ...]) -> list[str]:
    """Config keys of a pydantic error location, without the union/tuple parts it adds."""
    keys: list[str] = []
    model: type[BaseModel] = RunConfig
    for i, part in enumerate(loc):
        if not (isinstance(part, str) and part in model.model_fields):
            keys.append(str(part))  # a key the schema does not know (extra_forbidden)
            break
        keys.append(part)
        ann = model.model_fields[part].annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
            continue
        if model is TaskConfig and part == "options" and i + 1 < len(loc):
            keys.append(str(loc[i + 1]))  # the option's own name
        break
    return keys


def config_from_dict(data: Any, source: str = "config") -> RunConfig:
    """Validate a plain mapping; errors become one :class:`UsageError` naming every bad key."""
    if not isinstance(data, Mapping):
        raise UsageError(
            f"{source}: expected a mapping with sections task, model, optim, train, eval; "
            f"got {type(data).__name__} {data!r}"
        )
    try:
        return RunConfig.model_validate(dict(data))
    except ValidationError as exc:
        problems: dict[str, str] = {}
        for err in exc.errors():
            text = _format_error(err)
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
        raise UsageError(f"--set expects section.key=value, got {text!r}")
    path = key.split(".")
    if any(not p for p in path):
        raise UsageError(f"--set key {key!r} has an empty part; expected section.key=value")
    _check_path(path, text)
    return path, yaml_scalar(value)


def _check_path(path: list[str], text: str) -> None:
    model: type[BaseModel] = RunConfig
    for depth, part in enumerate(path):
        if part not in model.model_fields:
            where = ".".join(path[:depth]) or "the top level"
            allowed = ", ".join(model.model_fields)
            raise UsageError(
                f"--set {text!r}: unknown key {'.'.join(path[: depth + 1])!r} "
                f"(allowed under {where}: {allowed})"
            )
        ann = model.model_fields[part].annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            model = ann
            continue
        # A leaf. Only task.options takes one more level (its keys belong to the task).
        rest = path[depth + 1 :]
        if (model is TaskConfig and part == "options" and len(rest) == 1) or not rest:
            return
        raise UsageError(f"--set {text!r}: {'.'.join(path[: depth + 1])} has no sub-keys")
    if len(path) == 1:
        raise UsageError(
            f"--set {text!r}: {path[0]!r} is a section; set one of its keys, "
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
                    f"--set {text!r}: {part!r} in the config is {child!r}, not a mapping"
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
    """Read a YAML file (or start from nothing when ``path`` is None), apply overrides, validate."""
    data: Any = {}
    source = "config"
    if path is not None:
        p = Path(path)
        source = f"config {p}"
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UsageError(f"config file {p} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read config file {p}: {_one_line(exc)}") from None
        try:
            data = yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
        except yaml.YAMLError as exc:
            raise UsageError(f"{p} is not valid YAML: {_one_line(exc)}") from None
        if data is None:
            data = {}
        if not isinstance(data, Mapping):
            raise UsageError(
                f"{source}: expected a mapping with sections task, model, optim, train, eval; "
                f"got {type(data).__name__}"
            )
        if any(not isinstance(k, str) for k in data):
            bad = next(k for k in data if not isinstance(k, str))
            raise UsageError(f"{source}: section names must be strings, found {bad!r}")
    data = apply_overrides(data, overrides)
    return config_from_dict(data, source)
