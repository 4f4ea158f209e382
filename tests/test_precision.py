"""Precision names map to one torch dtype and one autocast, shared by training and the bench."""

from __future__ import annotations

import pytest
import torch

from nervana_lstm.choices import PRECISIONS
from nervana_lstm.precision import autocast, torch_dtype


def test_every_training_precision_has_a_torch_dtype() -> None:
    assert {p: torch_dtype(p) for p in PRECISIONS} == {
        "fp32": torch.float32,
        "bf16": torch.bfloat16,
    }


def test_bf16_autocast_runs_matmuls_in_bfloat16_and_fp32_does_not() -> None:
    a, b = torch.randn(4, 8), torch.randn(8, 3)
    with autocast("bf16"):
        assert (a @ b).dtype == torch.bfloat16
    with autocast("fp32"):
        assert (a @ b).dtype == torch.float32


@pytest.mark.parametrize("name", ["int8", "fp16", ""])
def test_a_name_without_a_torch_path_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="expected one of fp32, bf16"):
        torch_dtype(name)
    with pytest.raises(ValueError, match="expected one of fp32, bf16"):
        autocast(name)
