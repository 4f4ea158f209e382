"""Atomic writes: the old file survives a failed write, and no temp file is left behind."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from nervana_lstm.atomic import atomic_path, ordinary_file_mode, write_text_atomic


def test_write_replaces_and_uses_the_ordinary_mode(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "config.yaml"
    write_text_atomic(target, "a: 1\n")
    write_text_atomic(target, "a: 2\n")
    assert target.read_text() == "a: 2\n"
    assert os.stat(target).st_mode & 0o777 == ordinary_file_mode()
    assert [p.name for p in target.parent.iterdir()] == ["config.yaml"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "last.pt"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"), atomic_path(target, fsync=True) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_suffix_is_kept_for_format_sniffing_writers(tmp_path: Path) -> None:
    with atomic_path(tmp_path / "loss.png", suffix=".png") as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path
        tmp.write_bytes(b"png")
    assert (tmp_path / "loss.png").read_bytes() == b"png"
