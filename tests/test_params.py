"""``nervana-lstm params``: counts, ratios and formulas, checked against real modules."""

from __future__ import annotations

import json

import pytest

from nervana_lstm.cells import KINDS, count_params, make_rnn, param_formula


def _evaluate(formula: str, i: int, h: int, layers: int) -> int:
    # the formula is printed for people; turn its notation back into Python
    expr = formula.replace("·", "*").replace("²", "**2")
    return eval(expr, {"__builtins__": {}}, {"I": i, "H": h, "L": layers})


@pytest.mark.parametrize("layers", [1, 2, 4])
@pytest.mark.parametrize("kind", KINDS)
def test_formula_matches_count(kind: str, layers: int) -> None:
    for i, h in ((7, 3), (512, 512), (64, 1024)):
        assert _evaluate(param_formula(kind, layers), i, h, layers) == count_params(
            kind, i, h, layers
        )


def test_lecture_claim_lstm_is_four_rnns() -> None:
    rnn = count_params("rnn", 512, 512)
    assert count_params("lstm", 512, 512) == 4 * rnn
    assert count_params("gru", 512, 512) == 3 * rnn
    assert count_params("dglstm", 512, 512) == 4 * rnn  # one layer: no depth gate


def test_json_output(cli) -> None:
    done = cli("params", "--input-size", "512", "--hidden-size", "512", "--layers", "2", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert (doc["input_size"], doc["hidden_size"], doc["layers"]) == (512, 512, 2)
    rows = {r["kind"]: r for r in doc["kinds"]}
    assert list(rows) == list(KINDS)
    assert rows["rnn"]["params"] == 1_050_624
    assert rows["lstm"]["params"] == 4_202_496
    assert rows["gru"]["params"] == 3_151_872
    assert rows["dglstm"]["params"] == 4_202_496 + 512 * 512 + 3 * 512
    assert rows["lstm"]["ratio_to_rnn"] == 4.0
    assert rows["dglstm"]["ratio_to_rnn"] == round(4_466_176 / 1_050_624, 4)
    for kind, row in rows.items():
        # the printed count is what the modules really hold
        net = make_rnn(kind, "reference", 512, 512, 2)
        assert row["params"] == sum(p.numel() for p in net.parameters())
        assert row["formula"] == param_formula(kind, 2)


def test_table_output(cli) -> None:
    done = cli("params", "--input-size", "512", "--hidden-size", "512")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert "I=512, H=512, L=1" in lines[0]
    table = {line.split("|")[1].strip(): line for line in lines if line.startswith("| ")}
    assert set(table) == {"kind", "RNN", "LSTM", "GRU", "DG-LSTM"}
    assert "525,312" in table["RNN"] and "1.00x" in table["RNN"]
    assert "2,101,248" in table["LSTM"] and "4.00x" in table["LSTM"]
    assert "1,575,936" in table["GRU"] and "3.00x" in table["GRU"]
    assert "4·(H·(I+H) + 2·H)" in table["LSTM"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--input-size", "0", "--hidden-size", "8"],
            "--input-size must be a positive integer, got 0",
        ),
        (
            ["--input-size", "4", "--hidden-size", "-3"],
            "--hidden-size must be a positive integer, got -3",
        ),
        (
            ["--input-size", "4", "--hidden-size", "8", "--layers", "0"],
            "--layers must be a positive",
        ),
        (["--input-size", "four", "--hidden-size", "8"], "invalid int value: 'four'"),
        (["--hidden-size", "8"], "the following arguments are required: --input-size"),
    ],
)
def test_bad_input_exits_2_without_traceback(cli, args, message) -> None:
    done = cli("params", *args)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
