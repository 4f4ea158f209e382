"""The ``nervana-lstm`` command line: a thin layer over library functions.

Each sub-command lives in its own module of this package with two functions,
``add_arguments(parser)`` and ``run(args) -> int``. Those modules import
torch, IPEX and OpenVINO inside ``run`` only, so ``nervana-lstm --help``
answers at once.

Errors a user can fix (:class:`~nervana_lstm.errors.UsageError`) are printed as
one line and end the process with status 2, like argparse's own usage errors.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import NoReturn

from nervana_lstm import __version__
from nervana_lstm.errors import UsageError

__all__ = ["COMMANDS", "build_parser", "main"]

#: sub-command -> (module in this package, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "info": ("info", "report the CPU, ISA flags and which accelerators can run here"),
    "params": ("params", "parameter counts of RNN, LSTM, GRU and DG-LSTM for given sizes"),
    "train": ("train", "train a model from a YAML config"),
    "sample": ("sample", "generate text from a character-LM checkpoint"),
    "export": ("export", "export a trained model to OpenVINO IR, checked against PyTorch"),
    "infer": ("infer", "predictions of an exported model on files or examples, without PyTorch"),
    "bench": (
        "bench",
        "benchmark fused oneDNN RNN primitives against unfused versions, or a trained model "
        "against its OpenVINO IR (--model)",
    ),
    "memory": (
        "memory",
        "train every kind on a memory task at several lags and compare them with the "
        "task's baseline",
    ),
    "inspect": (
        "inspect",
        "trace every gate of a trained LSTM, GRU or DG-LSTM over one sequence and plot it",
    ),
}

EXIT_USAGE = 2

#: Commands that run recurrent kernels; they refuse CPUs the kernels do not target.
COMPUTE_COMMANDS = frozenset({"train", "sample", "export", "infer", "bench", "memory", "inspect"})


class _Parser(argparse.ArgumentParser):
    """argparse's parser whose error messages stay short, whatever value was typed."""

    def error(self, message: str) -> NoReturn:
        if len(message) > _MAX_MESSAGE:
            message = f"{message[:_MAX_MESSAGE]}... ({len(message)} chars)"
        super().error(message)


#: argparse quotes a bad value whole; a pasted file must not become the error message
_MAX_MESSAGE = 300


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="nervana-lstm",
        description="Recurrent networks on Intel CPUs: train, export to OpenVINO, benchmark.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(f"nervana_lstm.cli.{module_name}")
        cmd = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        # a sub-command that only reads files (bench compare) sets _checks_cpu=False
        if args.command in COMPUTE_COMMANDS and getattr(args, "_checks_cpu", True):
            from nervana_lstm import platform_info

            platform_info.check_supported(platform_info.read_cpu_info())
        return int(args._run(args) or 0)
    except UsageError as exc:
        print(f"nervana-lstm {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"nervana-lstm {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
