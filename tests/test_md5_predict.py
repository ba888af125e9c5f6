"""MD5 product overrides (predict.md5_predict) and applying them to a submission (predict.postprocess_product)."""
import hashlib
import logging
from collections import defaultdict

import pytest

from data import bson_md5_dict
from cli.runner import UserError
from predict import md5_predict, postprocess_product
from predict.submission import read_submission, write_submission
from tests.helpers import make_jpeg, product, read_docs, write_bson

A, B, C, D, E, X, Y = (make_jpeg(seed, size=8) for seed in range(7))


@pytest.fixture
def train_bson(tmp_path):
    return write_bson(tmp_path / "train.bson", [
        product(1, [A, B], 10),
        product(2, [C], 20), product(3, [C], 30),  # one image set, two categories: a conflict
        product(4, [D, E], 40),
        product(5, [], 50),  # no pictures: nothing to match on
    ])


@pytest.fixture
def test_bson(tmp_path):
    return write_bson(tmp_path / "test.bson", [
        product(100, [B, A]),      # train 1's set in another order: override 10
        product(101, [A]),         # only some of train 1's pictures: no override
        product(102, [C]),         # train 2 and 3's set, categories 20 and 30: skipped
        product(103, [D, E, X]),   # train 4's set plus one: no override
        product(104, [Y]),         # unseen
        product(105, [A, B, A]),   # a set: A twice is A once, so train 1's set: override 10
        product(106, []),          # no pictures: no override, though train 5 has none either
    ])


def overrides(path):
    ids, cats = read_submission(path)
    return list(zip(ids.tolist(), cats.tolist()))


def test_overrides_from_train_bson(tmp_path, train_bson, test_bson, caplog):
    out = str(tmp_path / "md5.csv")
    with caplog.at_level(logging.INFO):
        assert md5_predict.main(["--train-bson", train_bson, "--test-bson", test_bson, "--output", out]) == 0
    assert overrides(out) == [(100, 10), (105, 10)]
    assert ("test products: 7; hash found in training: 3; single category, written: 2; "
            "several categories, skipped: 1") in caplog.text


def test_overrides_from_saved_dictionary_match(tmp_path, train_bson, test_bson):
    dictionary = str(tmp_path / "dict.npz")
    bson_md5_dict.main(["--bson", train_bson, "--out", dictionary])
    from_dict, from_bson = str(tmp_path / "a.csv.gz"), str(tmp_path / "b.csv")
    md5_predict.main(["--md5-dict", dictionary, "--test-bson", test_bson, "--output", from_dict])
    md5_predict.main(["--train-bson", train_bson, "--test-bson", test_bson, "--output", from_bson])
    assert overrides(from_dict) == overrides(from_bson) == [(100, 10), (105, 10)]


def test_md5_predict_refuses_existing_output_and_needs_one_source(tmp_path, train_bson, test_bson):
    out = tmp_path / "md5.csv"
    out.write_text("keep me")
    with pytest.raises(UserError, match="output exists; pass --force"):
        md5_predict.main(["--train-bson", train_bson, "--test-bson", test_bson, "--output", str(out)])
    assert out.read_text() == "keep me"
    md5_predict.main(["--train-bson", train_bson, "--test-bson", test_bson, "--output", str(out), "--force"])
    assert overrides(str(out)) == [(100, 10), (105, 10)]
    with pytest.raises(SystemExit):  # argparse: --train-bson and --md5-dict are exclusive
        md5_predict.main(["--train-bson", train_bson, "--md5-dict", "d.npz", "--test-bson", test_bson,
                          "--output", str(out)])
    with pytest.raises(UserError, match="without category_id"):  # the test BSON as training data
        md5_predict.main(["--train-bson", test_bson, "--test-bson", test_bson, "--output", str(out), "--force"])


def test_kaggle_example_against_itself(example_bson, category_csv, tmp_path):
    out = str(tmp_path / "md5.csv")
    md5_predict.main(["--train-bson", example_bson, "--test-bson", example_bson, "--output", out])
    docs = read_docs(example_bson)
    # Expected from the documents themselves: the sorted set of hex MD5s, and its categories.
    hashes = {d["_id"]: "_".join(sorted({hashlib.md5(i["picture"]).hexdigest() for i in d["imgs"]})) for d in docs}
    categories_of_hash = defaultdict(set)
    for d in docs:
        categories_of_hash[hashes[d["_id"]]].add(d["category_id"])
    expected = [(d["_id"], d["category_id"]) for d in docs if len(categories_of_hash[hashes[d["_id"]]]) == 1]
    got = overrides(out)
    assert got == expected
    assert len(got) == 82  # the sample has no product hash seen with two categories
    known = {int(line.split(",")[0]) for line in open(category_csv, encoding="utf-8").read().splitlines()[1:]}
    assert all(category in known for _, category in got)


def test_postprocess_applies_and_counts_changes(tmp_path, caplog):
    src, md5, dst = (str(tmp_path / n) for n in ("sub.csv", "md5.csv", "final.csv.gz"))
    write_submission(src, [7, 3, 9, 1, 5], [11, 22, 33, 44, 55])
    write_submission(md5, [9, 7, 5], [33, 99, 66])  # 9 keeps its category, 7 and 5 change
    with caplog.at_level(logging.INFO):
        assert postprocess_product.main(["--src", src, "--md5", md5, "--dst", dst]) == 0
    assert overrides(dst) == [(7, 99), (3, 22), (9, 33), (1, 44), (5, 66)]
    assert "in: 5 rows" in caplog.text and "3 overrides" in caplog.text
    assert "overrides applied to 3 rows, 2 of them changed the category" in caplog.text
    assert "out: " in caplog.text and "5 rows" in caplog.text


def test_postprocess_with_no_overrides_copies(tmp_path):
    src, md5, dst = (str(tmp_path / n) for n in ("sub.csv", "md5.csv", "final.csv"))
    write_submission(src, [2, 1], [20, 10])
    write_submission(md5, [], [])
    postprocess_product.main(["--src", src, "--md5", md5, "--dst", dst])
    assert overrides(dst) == [(2, 20), (1, 10)]


def test_postprocess_errors(tmp_path):
    src, md5, dst = (str(tmp_path / n) for n in ("sub.csv", "md5.csv", "final.csv"))
    write_submission(src, [1, 2, 3], [10, 20, 30])
    write_submission(md5, [2, 777], [5, 5])
    with pytest.raises(UserError, match=r"md5\.csv: 1 override id is not in .*: _id 777"):
        postprocess_product.main(["--src", src, "--md5", md5, "--dst", dst])
    write_submission(md5, [2, 2], [5, 6])
    with pytest.raises(UserError, match="listed more than once: _id 2"):
        postprocess_product.main(["--src", src, "--md5", md5, "--dst", dst])
    assert not (tmp_path / "final.csv").exists()
    write_submission(md5, [2], [5])
    postprocess_product.main(["--src", src, "--md5", md5, "--dst", dst])
    with pytest.raises(UserError, match="output exists; pass --force"):
        postprocess_product.main(["--src", src, "--md5", md5, "--dst", dst])
    write_submission(md5, [3], [6])
    postprocess_product.main(["--src", src, "--md5", md5, "--dst", dst, "--force"])
    assert overrides(dst) == [(1, 10), (2, 20), (3, 6)]
