"""Benchmark suites: named shape lists in YAML, validated, expanded into measurement specs.

A suite file (``configs/bench/quick.yaml`` is the model)::

    name: quick
    description: a few shapes across kinds and modes
    defaults:                 # every key optional; these are the built-in defaults
      impls: [onednn, native, unfused, premul, ipex, openvino]
      modes: [infer, train]
      dtypes: [fp32, bf16]
      threads: [2]
      warmup: 2
      repeats: 7
      time_cap_s: 4.0         # per measurement, warm-up included
      max_call_s: 10.0        # skip an implementation whose estimated call exceeds this
      count: full             # FLOP convention: full | recurrent (DeepBench)
      peak_size: 1024         # square GEMM used for the peak
    shapes:
      - {kind: lstm, seq_len: 25, batch: 64, input_size: 256, hidden_size: 256}
      - {kind: gru, seq_len: 25, batch: 1, input_size: 256, hidden_size: 256, modes: [infer]}

A shape may narrow ``impls``, ``modes`` and ``dtypes`` for itself. Command-line
choices narrow them again (the intersection is measured).

The built-in suites ship inside the package (``nervana_lstm.configs``, the
repository's ``configs/`` folder) and are read with :mod:`importlib.resources`,
so they load from any working directory, installed or not.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from nervana_lstm.choices import BENCH_DTYPES, BENCH_IMPLS, MODES, PRECISIONS, Kind
from nervana_lstm.config import MAX_STEPS
from nervana_lstm.errors import UsageError, short_repr
from nervana_lstm.safe_yaml import MAX_BYTES, load_yaml, read_yaml_file

__all__ = [
    "BUILTIN",
    "Defaults",
    "ShapeEntry",
    "Suite",
    "builtin_suite",
    "load_suite",
    "suite_from_dict",
]

#: suite names that resolve to ``bench/<name>.yaml`` in the ``nervana_lstm.configs`` package
BUILTIN: tuple[str, ...] = ("quick", "deepbench")


def _check_subset(values: list[str] | None, allowed: tuple[str, ...], what: str) -> Any:
    if values is None:
        return values
    bad = [v for v in values if v not in allowed]
    if bad:
        raise ValueError(f"unknown {what} {bad}; expected some of {list(allowed)}")
    if not values:
        raise ValueError(f"{what} must not be empty")
    return values


class _Strict(BaseModel):
    # as strict as the run config: "8", true and .inf are not numbers, unknown keys are errors
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)


class Defaults(_Strict):
    """Suite-wide settings; see the module docstring."""

    # every implementation but ``compiled``, whose first compile takes about a minute
    impls: list[str] = Field(default_factory=lambda: [i for i in BENCH_IMPLS if i != "compiled"])
    modes: list[str] = Field(default_factory=lambda: list(MODES))
    dtypes: list[str] = Field(default_factory=lambda: list(PRECISIONS))  # int8 only when asked
    threads: list[int] = Field(default_factory=lambda: [2])
    warmup: int = Field(2, ge=0)
    repeats: int = Field(7, ge=1)
    time_cap_s: float = Field(4.0, gt=0)
    max_call_s: float = Field(10.0, gt=0)
    count: Literal["full", "recurrent"] = "full"
    peak_size: int = Field(1024, ge=16, le=8192)

    @field_validator("impls")
    @classmethod
    def _impls(cls, v: list[str]) -> list[str]:
        return _check_subset(v, BENCH_IMPLS, "implementation(s)")

    @field_validator("modes")
    @classmethod
    def _modes(cls, v: list[str]) -> list[str]:
        return _check_subset(v, MODES, "mode(s)")

    @field_validator("dtypes")
    @classmethod
    def _dtypes(cls, v: list[str]) -> list[str]:
        return _check_subset(v, BENCH_DTYPES, "dtype(s)")

    @field_validator("threads")
    @classmethod
    def _threads(cls, v: list[int]) -> list[int]:
        if not v or any(t < 1 for t in v):
            raise ValueError("threads must be a non-empty list of positive integers")
        return v


class ShapeEntry(_Strict):
    """One problem size; ``impls``/``modes``/``dtypes`` optionally narrow the defaults.

    Sizes have the run config's bounds (hidden and input at most 65536, 64 layers,
    a million steps or rows); whether a shape fits this machine's memory is judged
    when it is planned, and a shape that does not is listed as skipped.
    """

    kind: Kind
    seq_len: int = Field(ge=1, le=MAX_STEPS)
    batch: int = Field(ge=1, le=1_000_000)
    input_size: int = Field(ge=1, le=65536)
    hidden_size: int = Field(ge=1, le=65536)
    num_layers: int = Field(1, ge=1, le=64)
    impls: list[str] | None = None
    modes: list[str] | None = None
    dtypes: list[str] | None = None
    note: str | None = None

    @field_validator("impls")
    @classmethod
    def _impls(cls, v: list[str] | None) -> list[str] | None:
        return _check_subset(v, BENCH_IMPLS, "implementation(s)")

    @field_validator("modes")
    @classmethod
    def _modes(cls, v: list[str] | None) -> list[str] | None:
        return _check_subset(v, MODES, "mode(s)")

    @field_validator("dtypes")
    @classmethod
    def _dtypes(cls, v: list[str] | None) -> list[str] | None:
        return _check_subset(v, BENCH_DTYPES, "dtype(s)")

    @property
    def label(self) -> str:
        layers = f" L={self.num_layers}" if self.num_layers > 1 else ""
        return (
            f"{self.kind} T={self.seq_len} N={self.batch} I={self.input_size} "
            f"H={self.hidden_size}{layers}"
        )


class Suite(_Strict):
    """A named list of shapes with defaults."""

    name: str
    description: str = ""
    defaults: Defaults = Field(default_factory=Defaults)
    shapes: list[ShapeEntry] = Field(min_length=1)
    source: str | None = None  # the file it came from (set by the loader)


def _format_error(exc: ValidationError, where: str) -> str:
    problems = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        found = f" (got {short_repr(err.get('input'))})" if err["type"] != "missing" else ""
        problems.append(f"{loc}: {err['msg']}{found}")
    more = f" (and {len(exc.errors()) - 5} more)" if len(exc.errors()) > 5 else ""
    return f"invalid benchmark suite {where}: " + "; ".join(problems) + more


def suite_from_dict(data: Any, where: str = "(dict)") -> Suite:
    """Validate a parsed suite; raise :class:`UsageError` naming each bad key."""
    if not isinstance(data, dict):
        raise UsageError(
            f"invalid benchmark suite {where}: expected a mapping with 'name' and 'shapes', "
            f"got {type(data).__name__}"
        )
    try:
        return Suite.model_validate(data)
    except ValidationError as exc:
        raise UsageError(_format_error(exc, where)) from None


def builtin_suite(name: str) -> Traversable:
    """The shipped suite file ``bench/<name>.yaml`` of ``nervana_lstm.configs``."""
    if name not in BUILTIN:
        raise UsageError(f"unknown built-in suite {name!r}; expected one of {', '.join(BUILTIN)}")
    return files("nervana_lstm.configs").joinpath("bench", f"{name}.yaml")


def load_suite(name_or_path: str) -> Suite:
    """Load ``quick``/``deepbench`` from the shipped suites, or a user's YAML file by path."""
    path: Traversable | Path
    if name_or_path in BUILTIN:
        path = builtin_suite(name_or_path)
    else:
        path = Path(name_or_path)
        if path.suffix not in (".yaml", ".yml"):
            raise UsageError(
                f"unknown suite {name_or_path!r}; expected one of {', '.join(BUILTIN)} "
                "or a path to a .yaml file"
            )
    if isinstance(path, Path):
        if not path.exists() and not path.is_symlink():
            raise UsageError(f"benchmark suite file not found: {path}")
        data = read_yaml_file(path, "benchmark suite")  # a regular UTF-8 file, bounded
    else:
        data = load_yaml(path.read_text(encoding="utf-8")[: MAX_BYTES + 1], f"suite {path}")
    suite = suite_from_dict(data, str(path))
    return suite.model_copy(update={"source": str(path)})
