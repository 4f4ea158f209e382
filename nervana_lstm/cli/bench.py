"""``nervana-lstm bench``: not built yet."""

from __future__ import annotations

import argparse

from nervana_lstm.errors import UsageError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise UsageError("'bench' is not available in this version yet")
