"""Character LM data: streams that continue chunk to chunk, resets on wrap, the vocabulary."""

from __future__ import annotations

import json
import math

import pytest
import torch

from nervana_lstm.data import make_task
from nervana_lstm.data.vocab import CharVocab
from nervana_lstm.errors import UsageError

TEXT = "".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(40))


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "text.txt"
    path.write_text(TEXT, encoding="utf-8")
    return str(path)


def test_default_corpus_is_pythons_help_text():
    task = make_task("charlm", seq_len=20)
    assert task.corpus_name == "pydoc_topics" and len(task.corpus_sha256) == 64
    total = len(task.train_ids) + len(task.eval_ids)
    assert total > 100_000
    assert len(task.eval_ids) == math.ceil(total * 0.05)
    assert 60 < task.vocab.size < 300
    assert "assert" in task.vocab.decode(task.train_ids[:2000])
    spec = task.spec
    assert spec.stateful and spec.input_kind == "tokens" and spec.target == "classify_steps"
    assert spec.input_size == spec.output_size == task.vocab.size


def test_batches_shapes_and_targets_are_next_chars(corpus):
    task = make_task("charlm", seq_len=8, corpus=corpus, eval_fraction=0.1)
    b = task.train_batch(0, 4)
    assert b.x.shape == b.y.shape == (8, 4) and b.x.dtype == b.y.dtype == torch.int64
    assert b.reset.dtype == torch.bool and b.reset.shape == (4,)
    assert torch.equal(b.x[1:], b.y[:-1])


def test_streams_continue_and_reset_on_wrap(corpus):
    task = make_task("charlm", seq_len=8, corpus=corpus, seed=3)
    batch_size = 4
    stream, chunks = task.layout(batch_size)
    assert chunks >= 3
    batches = [task.train_batch(s, batch_size) for s in range(2 * chunks + 1)]
    for k in range(2 * chunks):
        a, b = batches[k], batches[k + 1]
        if (k + 1) % chunks:  # same pass: the next chunk starts where this one's targets end
            assert not b.reset.any()
            assert torch.equal(b.x[0], a.y[-1])
        else:  # the pass ended: every stream starts over and asks for a state reset
            assert b.reset.all()
    assert batches[0].reset.all()
    # one pass of stream n is one contiguous piece of the text inside region n
    for n in range(batch_size):
        piece = torch.cat([batches[k].x[:, n] for k in range(chunks)])
        text = task.vocab.decode(piece)
        region = task.vocab.decode(task.train_ids[n * stream : (n + 1) * stream])
        assert text in region


def test_pure_function_of_step_and_shards(corpus):
    task = make_task("charlm", seq_len=5, corpus=corpus)
    a, b = task.train_batch(7, 4), task.train_batch(7, 4)
    assert torch.equal(a.x, b.x) and torch.equal(a.reset, b.reset)
    assert not torch.equal(a.x, task.train_batch(8, 4).x)
    parts = [task.train_batch(7, 4, rank=r, world_size=2) for r in range(2)]
    for field in ("x", "y"):
        assert torch.equal(torch.cat([getattr(p, field) for p in parts], 1), getattr(a, field))
    assert torch.equal(torch.cat([p.reset for p in parts]), a.reset)


def test_eval_split_is_the_tail_and_fixed(corpus):
    task = make_task("charlm", seq_len=6, corpus=corpus, eval_fraction=0.1)
    first, again = list(task.eval_batches(3)), list(task.eval_batches(3))
    assert len(first) >= 2 and all(torch.equal(a.x, b.x) for a, b in zip(first, again, strict=True))
    assert first[0].reset.all() and not any(b.reset.any() for b in first[1:])
    assert TEXT.endswith(task.vocab.decode(task.eval_ids))
    assert torch.equal(first[1].x[0], first[0].y[-1])  # eval streams continue too


def test_eval_shorter_than_a_chunk(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("abcdefghij" * 10)
    task = make_task("charlm", seq_len=50, corpus=str(path), eval_fraction=0.05)
    (only,) = list(task.eval_batches(8))
    assert only.x.shape == (4, 1) and only.reset.all()


def test_vocab_round_trip_and_unknown_chars(tmp_path):
    vocab = CharVocab.from_text("hello world")
    assert vocab.chars == sorted(set("hello world")) and vocab.unk_id == len(vocab.chars)
    assert vocab.decode(vocab.encode("hello")) == "hello"
    ids = vocab.encode("hello?")
    assert int(ids[-1]) == vocab.unk_id and vocab.decode(ids) == "hello\ufffd"
    again = CharVocab.from_chars(json.loads(json.dumps(vocab.chars)))
    assert again == vocab and again.size == vocab.size
    torch.save({"vocab": vocab.chars}, tmp_path / "v.pt")
    loaded = torch.load(tmp_path / "v.pt", weights_only=True)
    assert CharVocab.from_chars(loaded["vocab"]) == vocab
    with pytest.raises(UsageError, match="single characters"):
        CharVocab.from_chars(["ab", "c"])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        vocab.decode([vocab.size])


def test_unseen_eval_chars_map_to_unknown(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("ab" * 50 + "zz")
    task = make_task("charlm", seq_len=4, corpus=str(path), eval_fraction=0.05)
    assert "z" not in task.vocab.chars
    assert int(task.eval_ids[-1]) == task.vocab.unk_id


def test_loss_and_bits_per_char(corpus):
    task = make_task("charlm", seq_len=4, corpus=corpus)
    b = task.train_batch(0, 2)
    uniform = torch.zeros(4, 2, task.vocab.size)
    m = task.metrics(uniform, b)
    assert m["loss"] == pytest.approx(math.log(task.vocab.size), rel=1e-6)
    assert m["bpc"] == pytest.approx(math.log2(task.vocab.size), rel=1e-6)


def test_glob_and_list_of_files(tmp_path):
    (tmp_path / "a.txt").write_text("first file " * 20)
    (tmp_path / "b.txt").write_text("second file " * 20)
    by_glob = make_task("charlm", seq_len=4, corpus=str(tmp_path / "*.txt"))
    by_list = make_task(
        "charlm", seq_len=4, corpus=[str(tmp_path / "a.txt"), str(tmp_path / "b.txt")]
    )
    assert by_glob.corpus_sha256 == by_list.corpus_sha256
    assert by_glob.vocab.decode(by_glob.train_ids).startswith("first file")


def test_bad_corpora_and_options(tmp_path, corpus):
    with pytest.raises(UsageError, match="does not exist"):
        make_task("charlm", corpus=str(tmp_path / "missing.txt"))
    with pytest.raises(UsageError, match="is a directory"):
        make_task("charlm", corpus=str(tmp_path))
    with pytest.raises(UsageError, match="matches no files"):
        make_task("charlm", corpus=str(tmp_path / "*.none"))
    (tmp_path / "bin.txt").write_bytes(b"abc\xff\xfe")
    with pytest.raises(UsageError, match=r"not UTF-8.*offset 3"):
        make_task("charlm", corpus=str(tmp_path / "bin.txt"))
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(UsageError, match="holds no text"):
        make_task("charlm", corpus=str(tmp_path / "empty.txt"))
    with pytest.raises(UsageError, match="eval_fraction"):
        make_task("charlm", corpus=corpus, eval_fraction=1.5)
    with pytest.raises(UsageError, match="'corpus' must be"):
        make_task("charlm", corpus=3)
    task = make_task("charlm", corpus=corpus, seq_len=100)
    with pytest.raises(UsageError, match="too few for 64 streams"):
        task.train_batch(0, 64)
