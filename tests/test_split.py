import logging
import os
import random

import bson
import pytest

from data import split_train_bson
from data.bson_index import BsonIndex
from cli.runner import UserError
from tests.helpers import make_jpeg, product, read_docs, run, write_bson


def reference_validation_ids(path, ratio, seed):
    """The original algorithm, fed by pymongo's decoder rather than our index."""
    ids = [d["_id"] for d in read_docs(path)]
    random.seed(seed)
    random.shuffle(ids)
    return set(random.sample(ids, int(len(ids) * ratio)))


def run_split(bson_path, tmp_path, seed, ratio="0.2", extra=()):
    train, val = tmp_path / f"train_{seed}.bson", tmp_path / f"val_{seed}.bson"
    split_train_bson.main(["--input-bson", bson_path, "--val-ratio", ratio, "--random-seed", str(seed),
                           "--save-train-bson", str(train), "--save-val-bson", str(val), *extra])
    return str(train), str(val)


@pytest.mark.smoke  # run on every Python the README promises (.ci/run)
@pytest.mark.parametrize("seed", [0xC0FFEE, 1])
def test_split_is_the_original_algorithm_and_loses_nothing(example_bson, tmp_path, seed):
    train, val = run_split(example_bson, tmp_path, seed)
    docs_in = read_docs(example_bson)
    train_docs, val_docs = read_docs(train), read_docs(val)
    val_ids = {d["_id"] for d in val_docs}
    assert val_ids == reference_validation_ids(example_bson, 0.2, seed)
    assert len(val_docs) == int(82 * 0.2)
    assert len(train_docs) + len(val_docs) == len(docs_in)
    assert not val_ids & {d["_id"] for d in train_docs}
    # File order kept on both sides, documents unchanged.
    assert [d for d in docs_in if d["_id"] in val_ids] == val_docs
    assert [d for d in docs_in if d["_id"] not in val_ids] == train_docs


def test_documents_are_copied_byte_for_byte(example_bson, tmp_path):
    train, val = run_split(example_bson, tmp_path, 5)
    index = BsonIndex.open(example_bson)
    raw = {int(index.products["product_id"][k]): doc for k, doc in index.iter_documents()}
    for out in (train, val):
        out_index = BsonIndex.open(out)
        for k, doc in out_index.iter_documents():
            assert doc == raw[int(out_index.products["product_id"][k])]


def test_other_seed_gives_other_products(example_bson, tmp_path):
    _, val_a = run_split(example_bson, tmp_path, 0xC0FFEE)
    _, val_b = run_split(example_bson, tmp_path, 1)
    assert {d["_id"] for d in read_docs(val_a)} != {d["_id"] for d in read_docs(val_b)}


def test_existing_outputs_need_force(example_bson, tmp_path):
    train, val = run_split(example_bson, tmp_path, 3)
    before = os.path.getmtime(train)
    with pytest.raises(UserError, match="output exists; pass --force"):
        run_split(example_bson, tmp_path, 3)
    assert os.path.getmtime(train) == before
    run_split(example_bson, tmp_path, 3, extra=["--force"])


def test_failure_mid_write_leaves_no_output(example_bson, tmp_path, monkeypatch):
    original = BsonIndex.copy_documents
    calls = []

    def failing(self, out_fd, start, stop):
        calls.append(start)
        if len(calls) == 3:  # disk full after two runs of documents were written
            raise OSError(28, "No space left on device", "train.bson")
        return original(self, out_fd, start, stop)

    monkeypatch.setattr(BsonIndex, "copy_documents", failing)
    with pytest.raises(OSError):
        run_split(example_bson, tmp_path, 3)
    leftovers = [p for p in os.listdir(tmp_path) if "train_3" in p or "val_3" in p]
    assert leftovers == []


def test_cli_corrupt_input_is_one_line_and_nonzero(tmp_path):
    bad = tmp_path / "bad.bson"
    bad.write_bytes(bson.encode({"_id": 1, "imgs": [], "category_id": 3})[:-3])
    result = run(["python", "-m", "data.split_train_bson", "--input-bson", str(bad), "--save-train-bson",
                  str(tmp_path / "t.bson"), "--save-val-bson", str(tmp_path / "v.bson")])
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1].split("\r")[-1]  # after progress-bar redraws
    assert last.startswith(f"error: {bad}: byte offset 0:") and "Traceback" not in result.stderr
    assert not (tmp_path / "t.bson").exists() and not (tmp_path / "v.bson").exists()


def test_skip_corrupt_split_copies_around_the_bad_document(tmp_path):
    docs = [bson.encode(product(i, [make_jpeg(i)], 10 + i)) for i in range(30)]
    bad = bson.encode({"_id": 99, "imgs": [], "category_id": "x"})
    path = write_bson(tmp_path / "gap.bson", docs[:10] + [bad] + docs[10:])
    train, val = run_split(path, tmp_path, 4, ratio="0.3", extra=["--skip-corrupt"])
    out = read_docs(train) + read_docs(val)
    assert sorted(d["_id"] for d in out) == list(range(30))
    assert len(read_docs(val)) == 9


@pytest.mark.parametrize("seed", [0xC0FFEE, 1])
def test_outputs_are_the_bytes_the_original_wrote(example_bson, tmp_path, seed):
    """The original decoded each document with pymongo and wrote bson._dict_to_bson(doc) in file order."""
    train, val = run_split(example_bson, tmp_path, seed, ratio="0.05")
    val_ids = reference_validation_ids(example_bson, 0.05, seed)
    for path, wanted in ((val, True), (train, False)):
        expected = b"".join(bson._dict_to_bson(doc, False, bson.DEFAULT_CODEC_OPTIONS)
                            for doc in read_docs(example_bson) if (doc["_id"] in val_ids) == wanted)
        with open(path, "rb") as fh:
            assert fh.read() == expected


def test_the_originals_command_line_runs(example_bson, tmp_path, caplog):
    """Its flags, --num-products included (it only sized a progress bar): same outputs as without it."""
    plain_train, plain_val = run_split(example_bson, tmp_path, 12648430, ratio="0.05")
    with caplog.at_level(logging.INFO):
        split_train_bson.main(["--input-bson", example_bson, "--num-products", "7069896", "--val-ratio", "0.05",
                               "--save-train-bson", str(tmp_path / "t.bson"), "--save-val-bson",
                               str(tmp_path / "v.bson"), "--random-seed", "12648430"])
    assert "--num-products 7069896 ignored" in caplog.text
    for ours, plain in ((tmp_path / "t.bson", plain_train), (tmp_path / "v.bson", plain_val)):
        assert ours.read_bytes() == open(plain, "rb").read()
