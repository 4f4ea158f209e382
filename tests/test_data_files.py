"""Users' sequence files: CSV and NPZ parsing, clear errors for bad files, bucketed batches."""

from __future__ import annotations

import csv
import re

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nervana_lstm.data import make_task
from nervana_lstm.data.examples import write_example_csv, write_example_npz
from nervana_lstm.data.file_formats import read_sequences
from nervana_lstm.errors import UsageError

CSV = """sequence_id,t,a,b,target
s1,1,1.5,10,cat
s2,0,7,70,
s1,0,0.5,0,cat
s2,1,8,80,dog
s3,0,9,90,cat
s2,2,9,90,
"""


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_csv_long_format(tmp_path):
    data = read_sequences(_write(tmp_path, "d.csv", CSV), "classify")
    assert data.feature_names == ["a", "b"]
    assert [len(s) for s in data.seqs] == [2, 3, 1]
    assert np.array_equal(data.seqs[0], np.array([[0.5, 0.0], [1.5, 10.0]]))  # sorted by t
    assert data.seqs[0].dtype == np.float32 and data.ids == ["s1", "s2", "s3"]
    assert data.labels == ["cat", "dog", "cat"]
    reg = read_sequences(
        _write(tmp_path, "r.csv", CSV.replace("cat", "0.5").replace("dog", "2")), "regress"
    )
    assert np.array_equal(reg.values, np.array([[0.5], [2.0], [0.5]]))


def test_integer_labels_sort_numerically(tmp_path):
    text = "sequence_id,t,v,target\na,0,1,10\nb,0,1,9\nc,0,1,10\nd,0,2,9\n"
    task = make_task("files", path=_write(tmp_path, "d.csv", text), eval_fraction=0.25)
    assert task.classes == [9, 10] and task.spec.output_size == 2


def test_npz_layouts_agree(tmp_path):
    seqs = [np.arange(6, dtype=np.float32).reshape(3, 2), np.ones((1, 2), np.float32)]
    lengths = np.array([3, 1])
    padded = np.zeros((2, 3, 2), np.float32)
    padded[0], padded[1, :1] = seqs[0], seqs[1]
    y = np.array([1, 0])
    np.savez(tmp_path / "padded.npz", x=padded, lengths=lengths, y=y)
    np.savez(tmp_path / "flat.npz", x=np.concatenate(seqs), lengths=lengths, y=y)
    ragged = np.empty(2, dtype=object)
    ragged[:] = seqs
    np.savez(tmp_path / "ragged.npz", x=ragged, y=y)
    for name, pickle in (("padded", False), ("flat", False), ("ragged", True)):
        data = read_sequences(str(tmp_path / f"{name}.npz"), "classify", allow_pickle=pickle)
        assert [s.tolist() for s in data.seqs] == [s.tolist() for s in seqs], name
        assert data.labels == [1, 0]
    with pytest.raises(UsageError, match=r"object array.*--allow-pickle"):
        read_sequences(str(tmp_path / "ragged.npz"), "classify")
    np.savez(tmp_path / "multi.npz", x=padded, y=np.array([[1.0, 2.0], [3.0, 4.0]]))
    task = make_task("files", path=str(tmp_path / "multi.npz"), target="regress", eval_fraction=0.5)
    assert task.spec.target == "regress_last" and task.spec.output_size == 2


def test_example_files(tmp_path):
    write_example_npz(str(tmp_path / "s.npz"), n=30)
    write_example_csv(str(tmp_path / "s.csv"), n=30)
    a = make_task("files", path=str(tmp_path / "s.npz"))
    b = make_task("files", path=str(tmp_path / "s.csv"))
    assert a.classes == b.classes == ["fast", "slow"]
    assert torch.equal(a.lengths, b.lengths)
    assert all(torch.allclose(x, y, atol=6e-4) for x, y in zip(a.seqs, b.seqs, strict=True))


def test_shipped_example_parses():
    task = make_task("files", path="configs/data/sines.csv")
    assert task.spec.input_size == 1 and task.classes == ["fast", "slow"]
    assert len(task.seqs) == 120 and task.lengths.min() >= 8 and task.lengths.max() <= 40


@pytest.fixture
def task(tmp_path):
    write_example_csv(str(tmp_path / "s.csv"), n=60)
    return make_task("files", path=str(tmp_path / "s.csv"), seed=1, eval_fraction=0.2)


def test_batches_carry_lengths_and_padding(task):
    b = task.train_batch(0, 8)
    assert b.x.shape[1:] == (8, 1) and b.x.dtype == torch.float32
    assert b.y.shape == (8,) and b.y.dtype == torch.int64 and b.lengths.dtype == torch.int64
    assert b.x.shape[0] == int(b.lengths.max()) and b.reset is None
    for n in range(8):
        assert torch.all(b.x[b.lengths[n] :, n] == 0)
    assert task.spec.target == "classify_last"


def test_determinism_and_shards(task):
    a = task.train_batch(3, 8)
    assert torch.equal(a.x, task.train_batch(3, 8).x)
    assert not torch.equal(a.y, task.train_batch(4, 8).y) or not torch.equal(
        a.lengths, task.train_batch(4, 8).lengths
    )
    parts = [task.train_batch(3, 8, rank=r, world_size=2) for r in range(2)]
    assert torch.equal(torch.cat([p.x for p in parts], 1), a.x)
    assert torch.equal(torch.cat([p.y for p in parts]), a.y)
    assert torch.equal(torch.cat([p.lengths for p in parts]), a.lengths)


def test_an_epoch_covers_the_training_split(task):
    steps = task.steps_per_epoch(6)
    assert steps == 8  # 48 training sequences
    seen = torch.cat([task.train_index[task.buckets.batch_indices(s, 6)] for s in range(steps)])
    assert torch.equal(seen.sort().values, task.train_index)
    # the batches themselves hold exactly those sequences
    lengths = torch.cat([task.train_batch(s, 6).lengths for s in range(steps)])
    assert torch.equal(lengths.sort().values, task.lengths[task.train_index].sort().values)


def test_eval_split_fixed_and_disjoint(task):
    assert len(task.eval_index) == 12
    assert not set(task.eval_index.tolist()) & set(task.train_index.tolist())
    a, b = list(task.eval_batches(5)), list(task.eval_batches(5))
    assert [len(x.y) for x in a] == [5, 5, 2]
    assert all(torch.equal(x.x, y.x) for x, y in zip(a, b, strict=True))
    lengths = torch.cat([x.lengths for x in a])
    assert torch.all(lengths[:-1] >= lengths[1:])


def test_metrics(task):
    b = task.train_batch(0, 8)
    perfect = torch.nn.functional.one_hot(b.y, 2).float() * 20
    assert task.metrics(perfect, b)["accuracy"] == 1.0
    assert task.metrics(-perfect, b)["accuracy"] == 0.0


BAD_CSV = [
    ("", "empty file"),
    ("sequence_id,t,value\na,0,1\n", "missing column(s) target"),
    ("sequence_id,t,target\na,0,x\n", "no feature columns"),
    ("sequence_id,t,v,target\n", "no data rows"),
    ("sequence_id,t,v,target\na,0,1,x\na,1,2\n", ":3: 3 fields, expected 4"),
    ("sequence_id,t,v,target\na,0,1,x\na,1,abc,\n", ":3, column 'v': 'abc' is not a number"),
    ("sequence_id,t,v,target\na,0,nan,x\n", ":2, column 'v': 'nan' is not a finite number"),
    ("sequence_id,t,v,target\na,0,1,x\na,1,2,y\n", ":3: sequence 'a' has target 'y'"),
    ("sequence_id,t,v,target\na,0,1,x\na,0,2,\n", "repeats t=0"),
    ("sequence_id,t,v,target\na,0,1,x\nb,0,2,\n", "sequence 'b' has no 'target'"),
]


@pytest.mark.parametrize("text, fragment", BAD_CSV)
def test_bad_csv_files(tmp_path, text, fragment):
    path = _write(tmp_path, "bad.csv", text)
    with pytest.raises(UsageError) as e:
        make_task("files", path=path)
    assert fragment in str(e.value) and path in str(e.value)


def test_bad_npz_and_paths(tmp_path):
    x = np.zeros((4, 3, 2), np.float32)
    cases = {
        "noy": ({"x": x}, "missing array(s) y"),
        "count": ({"x": x, "y": np.arange(3)}, "'y' has 3 rows but 'x' holds 4"),
        "float": ({"x": x, "y": np.ones(4)}, "classification 'y' must be"),
        "len": (
            {"x": x, "y": np.arange(4), "lengths": np.array([1, 2, 3, 4])},
            "'lengths' must be in 1..3",
        ),
        "text": ({"x": np.array([["a"]]), "y": np.arange(1)}, "'x' must be numeric"),
        "flat": ({"x": np.zeros((5, 2)), "y": np.arange(2)}, "needs 'lengths'"),
        "sum": (
            {"x": np.zeros((5, 2)), "y": np.arange(2), "lengths": np.array([2, 2])},
            "add up to 4",
        ),
    }
    for name, (arrays, fragment) in cases.items():
        np.savez(tmp_path / f"{name}.npz", **arrays)
        with pytest.raises(UsageError, match=re.escape(fragment)):
            make_task("files", path=str(tmp_path / f"{name}.npz"))
    (tmp_path / "junk.npz").write_bytes(b"not a zip file at all")
    with pytest.raises(UsageError, match=r"not an \.npz archive"):
        make_task("files", path=str(tmp_path / "junk.npz"))
    with pytest.raises(UsageError, match="does not exist"):
        make_task("files", path=str(tmp_path / "none.csv"))
    with pytest.raises(UsageError, match=r"is a directory; expected a \.csv or \.npz file"):
        make_task("files", path=str(tmp_path))
    (tmp_path / "d.json").write_text("{}")
    with pytest.raises(UsageError, match=r"unknown extension '\.json'"):
        make_task("files", path=str(tmp_path / "d.json"))
    with pytest.raises(UsageError, match="needs option"):
        make_task("files")
    with pytest.raises(UsageError, match="'target' must be"):
        make_task("files", path=str(tmp_path / "d.json"), target="cluster")
    one = _write(tmp_path, "one.csv", "sequence_id,t,v,target\na,0,1,x\n")
    with pytest.raises(UsageError, match="too few"):
        make_task("files", path=one)


def _valid_rows(n_seq, steps):
    rows = [["sequence_id", "t", "f1", "f2", "target"]]
    for s in range(n_seq):
        for t in range(steps):
            rows.append([f"q{s}", str(t), str(0.5 * t), str(s), "A" if s % 2 else "B"])
    return rows


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    row=st.integers(1, 12),
    column=st.sampled_from([1, 2, 3]),
    junk=st.text(alphabet="abcxyz$#-", min_size=1, max_size=6),
)
def test_any_non_numeric_cell_is_reported_with_its_place(tmp_path, row, column, junk):
    rows = _valid_rows(4, 3)
    rows[row][column] = junk
    path = tmp_path / "h.csv"
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    name = rows[0][column]
    with pytest.raises(UsageError, match=f":{row + 1}, column '{name}'"):
        read_sequences(str(path), "classify")


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_never_crash(tmp_path, blob):
    for ext in (".csv", ".npz"):
        path = tmp_path / f"b{ext}"
        path.write_bytes(b"sequence_id,t,v,target\n" + blob if ext == ".csv" else blob)
        try:
            data = read_sequences(str(path), "classify")
        except UsageError:
            continue
        assert len(data.seqs) >= 1 and len(data.labels) == len(data.seqs)


class _Trap:
    """Unpickling this writes a file: proof that a loader ran code from the data."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickle_files_are_never_unpickled(tmp_path):
    import pickle

    marker = tmp_path / "ran"
    path = tmp_path / "evil.npz"
    path.write_bytes(pickle.dumps(_Trap(str(marker))))
    for allow in (False, True):
        with pytest.raises(UsageError, match=r"not an \.npz archive"):
            make_task("files", path=str(path), allow_pickle=allow)
    assert not marker.exists()
    np.save(tmp_path / "plain.npy", np.zeros((2, 3, 1)))
    (tmp_path / "plain.npy").rename(tmp_path / "plain.npz")
    with pytest.raises(UsageError, match=r"not an \.npz archive"):
        make_task("files", path=str(tmp_path / "plain.npz"))


def test_csv_with_byte_order_mark(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeff".encode() + CSV.encode())
    assert len(read_sequences(str(path), "classify").seqs) == 3


@pytest.fixture(scope="module")
def valid_npz(tmp_path_factory):
    path = tmp_path_factory.mktemp("npz") / "ok.npz"
    np.savez_compressed(
        path, x=np.random.rand(5, 4, 2), lengths=np.array([4, 3, 2, 1, 4]), y=np.arange(5)
    )
    return path.read_bytes()


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_damaged_npz_parses_or_is_a_usage_error(tmp_path, valid_npz, data):
    blob = bytearray(valid_npz)
    for _ in range(data.draw(st.integers(1, 4))):
        blob[data.draw(st.integers(0, len(blob) - 1))] = data.draw(st.integers(0, 255))
    # most damage sits inside the archive; a cut also loses the zip directory
    cut = data.draw(st.sampled_from([len(blob), len(blob), len(blob), len(blob) // 2]))
    path = tmp_path / "d.npz"
    path.write_bytes(bytes(blob[:cut]))
    try:
        parsed = read_sequences(str(path), "classify")
    except UsageError:
        return
    assert len(parsed.seqs) == len(parsed.labels) >= 1
