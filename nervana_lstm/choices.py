"""Every fixed set of names the toolkit accepts, defined once.

Configs, bench suites, the CLI and the reports take their choices from here:
each set is a ``Literal`` alias (for type checkers and pydantic) with the
tuple of its values derived from it, so a new kind or implementation is added
in one line.

Three words name three different things:

* a **cells implementation** (``fused`` / ``reference``) is how one recurrent
  module computes: torch's fused module, or the textbook form with one matmul
  per gate and step;
* a **training backend** (``onednn`` / ``reference`` / ``ipex`` and its variants
  ``ipex-stock-lstm`` and ``ipex-o0``; the config key ``train.accel`` also accepts
  ``auto``) is what trains a model;
* a **bench implementation** is one named variant that ``nervana-lstm bench``
  times against the others.

How each bench implementation relates to the other two:

=========  ===================  ================  ==========================================
bench      cells implementation training backend  what runs
=========  ===================  ================  ==========================================
onednn     fused                onednn            torch's module; oneDNN's fused RNN primitive
                                                  for an LSTM, ATen's per-step kernels else
native     fused                (none)            the same module with oneDNN switched off
unfused    reference            reference         one matmul per gate and per step
premul     reference            (none)            the reference loop with the input
                                                  projection hoisted into one GEMM
compiled   reference            (none)            ``torch.compile`` of the premul step
ipex       fused                ipex              ``ipex.optimize`` of the fused module
openvino   fused                (inference only)  the fused module converted to OpenVINO IR
=========  ===================  ================  ==========================================

Nothing here imports torch, so the CLI's ``--help`` stays fast.
"""

from __future__ import annotations

from typing import Literal, get_args

__all__ = [
    "ACCELS",
    "BENCH_DTYPES",
    "BENCH_IMPLS",
    "CELLS_IMPLS",
    "CONTENTION_MODES",
    "IPEX_BACKENDS",
    "KINDS",
    "MODES",
    "PRECISIONS",
    "TASKS",
    "TRAIN_BACKENDS",
    "TRAIN_PRECISIONS",
    "Accel",
    "BenchDtype",
    "BenchImpl",
    "CellsImpl",
    "ContentionMode",
    "Kind",
    "Mode",
    "Precision",
    "TaskName",
    "TrainBackend",
    "TrainPrecision",
    "gate_count",
    "has_cell_state",
]

#: Recurrent cell kinds.
Kind = Literal["rnn", "lstm", "gru", "dglstm"]
KINDS: tuple[Kind, ...] = get_args(Kind)

#: How one recurrent module computes (``make_rnn(kind, impl)``).
CellsImpl = Literal["fused", "reference"]
CELLS_IMPLS: tuple[CellsImpl, ...] = get_args(CellsImpl)

#: What trains a model (openvino is inference only). The three IPEX backends differ in
#: how ``ipex.optimize`` is called: as it comes (level O1, ``nn.LSTM`` replaced by IPEX's
#: LSTM), with ``optimize_lstm=False`` (IPEX around stock torch's oneDNN LSTM), and at
#: ``level="O0"`` (no graph changes; bf16 weights with fp32 masters when training in bf16).
TrainBackend = Literal["onednn", "reference", "ipex", "ipex-stock-lstm", "ipex-o0"]
TRAIN_BACKENDS: tuple[TrainBackend, ...] = get_args(TrainBackend)
#: The training backends that import IPEX.
IPEX_BACKENDS: tuple[TrainBackend, ...] = ("ipex", "ipex-stock-lstm", "ipex-o0")
#: ``train.accel``: a training backend, or ``auto`` (the fastest, by a short measurement).
Accel = Literal["auto", "onednn", "reference", "ipex", "ipex-stock-lstm", "ipex-o0"]
ACCELS: tuple[Accel, ...] = get_args(Accel)

#: The precision something computes in.
Precision = Literal["fp32", "bf16"]
PRECISIONS: tuple[Precision, ...] = get_args(Precision)
#: ``train.precision``: a precision, or ``auto`` (bf16 where the CPU computes it natively).
TrainPrecision = Literal["auto", "fp32", "bf16"]
TRAIN_PRECISIONS: tuple[TrainPrecision, ...] = get_args(TrainPrecision)

#: Training tasks (``task.name``).
TaskName = Literal["adding", "copy", "charlm", "files"]
TASKS: tuple[TaskName, ...] = get_args(TaskName)

#: The variants ``nervana-lstm bench`` times; see the table above.
BenchImpl = Literal["onednn", "native", "unfused", "premul", "compiled", "ipex", "openvino"]
BENCH_IMPLS: tuple[BenchImpl, ...] = get_args(BenchImpl)
#: One forward under ``no_grad``, or one training step.
Mode = Literal["infer", "train"]
MODES: tuple[Mode, ...] = get_args(Mode)
#: Bench data types; ``int8`` exists only through OpenVINO + NNCF.
BenchDtype = Literal["fp32", "bf16", "int8"]
BENCH_DTYPES: tuple[BenchDtype, ...] = get_args(BenchDtype)

#: What a run does when other work occupies its CPUs (``NERVANA_LSTM_CONTENTION``):
#: ``passive`` sets ``OMP_WAIT_POLICY=PASSIVE`` (idle OpenMP threads sleep instead of
#: spinning), ``fewer`` runs as many threads as CPUs are free, ``fewer+passive`` both;
#: ``off`` never looks (every granted CPU, OpenMP's default wait policy).
ContentionMode = Literal["passive", "fewer", "fewer+passive", "off"]
CONTENTION_MODES: tuple[ContentionMode, ...] = get_args(ContentionMode)

_GATES: dict[str, int] = {"rnn": 1, "lstm": 4, "gru": 3, "dglstm": 4}


def gate_count(kind: str) -> int:
    """Gate blocks per layer: rows of ``weight_ih`` and ``weight_hh`` per hidden unit.

    1 (rnn), 3 (gru: r, z, n), 4 (lstm and dglstm: i, f, g, o). A DG-LSTM layer
    above the first also has a depth gate, whose weights are counted apart.
    Raises ``KeyError`` for an unknown kind; callers that face user input check
    the kind first.
    """
    return _GATES[kind]


def has_cell_state(kind: str) -> bool:
    """True when the recurrent state is ``(h, c)`` rather than ``h``."""
    return kind in ("lstm", "dglstm")
