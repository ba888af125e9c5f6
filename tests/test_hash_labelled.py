"""data.hash_labelled_rec and data/create_hash_labelled_rec.sh: creafz's hash-labelled test pictures as an
extra training .rec (not the original's), on hand-made BSONs, Kaggle's sample and the demo data."""
import csv
import logging
import os
import re

import pytest

from cli.runner import UserError
from data import bson2rec, bson_md5_dict, hash_labelled_rec
from data.categories import Categories
from data.recordio import read_rec_info
from tests.helpers import (make_jpeg, mtimes, product, read_docs, read_records, run, shared_file, write_bson,
                           write_category_csv)

CATEGORIES = [1000010, 1000020, 1000030, 1000040]  # classes 0..3
KNOWN_A, KNOWN_B, KNOWN_C, KNOWN_D = (make_jpeg(seed) for seed in (1, 2, 3, 4))
NEW = {n: make_jpeg(100 + n) for n in range(1, 7)}  # pictures no training product has
BROKEN = b"not a jpeg"
EXCLUDED_ID = 7  # a product _id of the training BSON


def training_docs():
    """A: category 0 only; B: categories 0 and 1; C: 1; D: 2."""
    return [product(1, [KNOWN_A], CATEGORIES[0]), product(2, [KNOWN_B, KNOWN_A], CATEGORIES[0]),
            product(3, [KNOWN_B, KNOWN_C], CATEGORIES[1]), product(EXCLUDED_ID, [KNOWN_D], CATEGORIES[2])]


def unlabelled_docs():
    """Each product a case of the selection; 15 pictures (see test_new_pictures_of_resolved_products_...)."""
    return [product(101, [KNOWN_A, NEW[1], NEW[2]]),   # resolved to class 0: NEW 1 and 2 labelled
            product(102, [KNOWN_B, NEW[3]]),           # B has several categories: resolves nothing
            product(103, [KNOWN_A, KNOWN_C, NEW[4]]),  # answers 0 and 1 disagree
            product(104, [NEW[5]]),                    # nothing known
            product(105, [KNOWN_D, NEW[1]]),           # resolved to class 2; NEW 1 a repeat of 101's
            product(106, [KNOWN_A, BROKEN]),           # resolved; the broken picture skipped
            product(EXCLUDED_ID, [KNOWN_A, NEW[6]])]   # its _id is a training product's: left out


@pytest.fixture
def hand_made(tmp_path):
    csv_path = write_category_csv(tmp_path / "categories.csv", CATEGORIES)
    train = write_bson(tmp_path / "train.bson", training_docs())
    dictionary = str(tmp_path / "md5_dict.npz")
    bson_md5_dict.main(["--bson", train, "--out", dictionary])
    return {"csv": csv_path, "train": train, "dict": dictionary, "test": write_bson(tmp_path / "test.bson", unlabelled_docs()),
            "dir": tmp_path}


def label(data, name, *flags, bson=None):
    """Run the command on the hand-made files; its records as (product _id, picture position, label, bytes)."""
    out = str(data["dir"] / name)
    hash_labelled_rec.main(["--bson", bson or data["test"], "--md5-dict", data["dict"], "--category-csv", data["csv"],
                            "--out-rec", out, *flags])
    return sorted((h.id, h.id2, h.label, payload) for h, payload in read_records(out))


def counts_logged(text):
    """{skip reason: count} and the other counts of the command's log."""
    found = {reason: int(n) for reason, n in re.findall(r"skipped (\S+(?: \([^)]*\))?): (\d+)", text)}
    found["written"] = int(re.search(r"written: (\d+) records", text).group(1))
    found["labelled products"] = int(re.search(r"products with at least one labelled picture: (\d+) of", text).group(1))
    answers = re.search(r"one category (\d+), several categories (\d+), unknown (\d+)", text)
    found["answers"] = tuple(int(n) for n in answers.groups())
    return found


def test_new_pictures_of_resolved_products_are_labelled_with_their_product(hand_made, caplog):
    with caplog.at_level(logging.INFO):
        records = label(hand_made, "new.rec", "--exclude-bson", hand_made["train"])
    assert records == [(101, 1, 0, NEW[1]), (101, 2, 0, NEW[2]), (105, 1, 2, NEW[1])]
    counts = counts_logged(caplog.text)
    assert counts == {"answers": (5, 1, 6), "written": 3, "labelled products": 2,
                      "md5_in_training (labels its product)": 5, "md5_several_categories": 1,
                      "unknown_in_product_answers_disagree": 1, "unknown_in_product_unresolved": 2,
                      "product_in_exclude_bson": 2, "not_jpeg": 1}
    assert sum(n for key, n in counts.items() if key not in ("answers", "labelled products")) == 15  # every picture
    assert "products resolved (their pictures of one category agree): 3; whose answers disagree: 1" in caplog.text


def test_unique_md5_keeps_the_first_labelled_picture_of_each_md5(hand_made, caplog):
    with caplog.at_level(logging.INFO):
        records = label(hand_made, "unique.rec", "--exclude-bson", hand_made["train"], "--unique-md5")
    assert records == [(101, 1, 0, NEW[1]), (101, 2, 0, NEW[2])]
    counts = counts_logged(caplog.text)
    assert (counts["duplicate_md5"], counts["written"], counts["labelled products"]) == (1, 2, 1)


def test_answered_pictures_are_the_known_ones_themselves(hand_made, caplog):
    with caplog.at_level(logging.INFO):
        records = label(hand_made, "answered.rec", "--pictures", "answered")
    # without --exclude-bson, product 7 shares an _id with the training BSON and is written
    assert records == [(7, 0, 0, KNOWN_A), (101, 0, 0, KNOWN_A), (103, 0, 0, KNOWN_A), (103, 1, 1, KNOWN_C),
                       (105, 0, 2, KNOWN_D), (106, 0, 0, KNOWN_A)]
    counts = counts_logged(caplog.text)
    assert (counts["md5_unknown"], counts["md5_several_categories"], counts["product_in_exclude_bson"]) == (7, 1, 0)
    # product 7 comes last in the file: the first A is product 101's
    assert label(hand_made, "answered_unique.rec", "--pictures", "answered", "--unique-md5") == [
        (101, 0, 0, KNOWN_A), (103, 1, 1, KNOWN_C), (105, 0, 2, KNOWN_D)]


def test_the_labels_are_those_of_the_training_rec(hand_made):
    train_rec = str(hand_made["dir"] / "train.rec")
    bson2rec.main(["--bson", hand_made["train"], "--out-rec", train_rec, "--category-csv", hand_made["csv"]])
    label(hand_made, "extra.rec", "--exclude-bson", hand_made["train"])
    extra, train = read_rec_info(str(hand_made["dir"] / "extra.rec")), read_rec_info(train_rec)
    assert extra.same_labels(train) and extra.label_kind == "class_id" and extra.num_classes == 4
    assert extra.records == 3 and extra.shuffled is True
    level1 = Categories.load(hand_made["csv"]).level1_sub_class_ids  # write_category_csv: level 1 alternates
    by_level1 = label(hand_made, "level1.rec", "--cate-type", "1", "--exclude-bson", hand_made["train"])
    assert [row[2] for row in by_level1] == [level1[0], level1[0], level1[2]] == [0, 0, 1]
    assert read_rec_info(str(hand_made["dir"] / "level1.rec")).label_kind == "level1_sub_class"


def test_the_order_is_shuffled_with_its_seed(tmp_path):
    csv_path = write_category_csv(tmp_path / "categories.csv", CATEGORIES)
    known = [make_jpeg(n) for n in range(4)]
    train = write_bson(tmp_path / "train.bson", [product(n, [known[n]], CATEGORIES[n]) for n in range(4)])
    dictionary = str(tmp_path / "d.npz")
    bson_md5_dict.main(["--bson", train, "--out", dictionary])
    test = write_bson(tmp_path / "test.bson", [product(100 + n, [known[n % 4], make_jpeg(50 + n)]) for n in range(30)])

    def order(name, seed):
        rec = str(tmp_path / name)
        hash_labelled_rec.main(["--bson", test, "--md5-dict", dictionary, "--category-csv", csv_path, "--out-rec", rec,
                                "--shuffle-seed", str(seed)])
        return [h.id for h, _ in read_records(rec)]

    first = order("a.rec", 7)
    assert sorted(first) == list(range(100, 130)) and first != sorted(first)
    assert order("b.rec", 7) == first and order("c.rec", 8) != first


def test_refusals_are_one_line_before_any_work(hand_made, monkeypatch):
    with pytest.raises(UserError, match=r"train.bson: its products have a category_id \(a training BSON\?\)"):
        label(hand_made, "x.rec", bson=hand_made["train"])
    assert not os.path.exists(hand_made["dir"] / "x.rec")
    label(hand_made, "y.rec")
    with pytest.raises(UserError, match=r"y.rec: output exists; pass --force"):
        label(hand_made, "y.rec")
    assert label(hand_made, "y.rec", "--force")  # overwritten
    with pytest.raises(UserError, match=r"nowhere.bson: BSON of --exclude-bson file not found"):
        label(hand_made, "z.rec", "--exclude-bson", str(hand_made["dir"] / "nowhere.bson"))
    with pytest.raises(UserError, match="the output name must end in .rec"):
        label(hand_made, "z.bin")
    other_csv = write_category_csv(hand_made["dir"] / "other.csv", CATEGORIES[:2])
    with pytest.raises(UserError, match=r"md5_dict.npz: category_id 1000030 is not in .*other.csv"):
        hash_labelled_rec.main(["--bson", hand_made["test"], "--md5-dict", hand_made["dict"],
                                "--category-csv", other_csv, "--out-rec", str(hand_made["dir"] / "w.rec")])
    assert not os.path.exists(hand_made["dir"] / "w.rec")


def test_help_names_every_option(capsys):
    with pytest.raises(SystemExit):
        hash_labelled_rec.main(["--help"])
    text = capsys.readouterr().out
    for flag in ("--bson", "--md5-dict", "--category-csv", "--out-rec", "--cate-type", "--exclude-bson", "--pictures",
                 "--unique-md5", "--shuffle-seed", "--force", "creafz"):
        assert flag in text


# ---- Kaggle's sample -------------------------------------------------------------------------------
def test_kaggle_sample_with_a_new_picture_per_product(tmp_path, category_csv, caplog):
    """Kaggle's train_example.bson as a test BSON (categories taken out), each product given one new picture:
    every product is resolved to its own category and its new picture gets that label."""
    docs = read_docs(shared_file("train_example.bson"))
    dictionary = str(tmp_path / "md5_dict.npz")
    bson_md5_dict.main(["--bson", shared_file("train_example.bson"), "--out", dictionary])
    test = write_bson(tmp_path / "test.bson", [product(d["_id"], [bytes(i["picture"]) for i in d["imgs"]] +
                                                       [make_jpeg(1000 + n)]) for n, d in enumerate(docs)])
    with caplog.at_level(logging.INFO):
        hash_labelled_rec.main(["--bson", test, "--md5-dict", dictionary, "--category-csv", category_csv,
                                "--out-rec", str(tmp_path / "new.rec")])
    classes = {int(row[0]): i for i, row in enumerate(list(csv.reader(open(category_csv)))[1:])}
    truth = {d["_id"]: (classes[d["category_id"]], len(d["imgs"])) for d in docs}
    records = read_records(str(tmp_path / "new.rec"))
    assert len(records) == len(docs) == 82
    assert all((h.label, h.id2) == truth[h.id] for h, _ in records)  # the true class; the added picture's position
    counts = counts_logged(caplog.text)
    assert counts["answers"] == (110, 0, 82) and counts["labelled products"] == 82
    assert read_rec_info(str(tmp_path / "new.rec")).num_classes == 5270


# ---- the script, and no test product in a validation .rec -------------------------------------------
def record_ids(rec):
    return {h.id for h, _ in read_records(str(rec))}


def test_the_script_and_no_test_product_in_the_validation_rec(demo_dir, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("train.bson", "category_names.csv"):
        os.link(demo_dir / name, data / name)
    result = run("data/create_hash_labelled_rec.sh", DATA_DIR=data, expect=2)
    assert result.stderr.strip() == f"error: {data}/test.bson not found: put Kaggle's test.bson in DATA_DIR"
    os.link(demo_dir / "test.bson", data / "test.bson")
    result = run("data/create_hash_labelled_rec.sh", DATA_DIR=data, expect=2)
    assert result.stderr.strip() == f"error: {data}/md5_dict_train.npz not found: run data/create_train_md5_dict.sh first"
    for script in ("data/create_dataset_A.sh", "data/create_train_md5_dict.sh"):
        run(script, DATA_DIR=data, expect=0)
    # The test products the demo's dictionary resolves, renamed to validation products' _ids: a test BSON
    # whose products share _ids with the validation split.
    probe = str(tmp_path / "probe.rec")
    hash_labelled_rec.main(["--bson", str(data / "test.bson"), "--md5-dict", str(data / "md5_dict_train.npz"),
                            "--category-csv", str(data / "category_names.csv"), "--out-rec", probe])
    resolved = sorted(record_ids(probe))
    valid_ids = [d["_id"] for d in read_docs(data / "dataset_A" / "train_valid.bson")]
    assert len(resolved) >= 2 and len(valid_ids) >= 2
    renamed = dict(zip(resolved[:2], valid_ids[:2]))
    os.unlink(data / "test.bson")
    write_bson(data / "test.bson", [dict(d, _id=renamed.get(d["_id"], d["_id"])) for d in read_docs(demo_dir / "test.bson")])

    result = run("data/create_hash_labelled_rec.sh", DATA_DIR=data, expect=0)
    assert "share a product _id with an --exclude-bson" in result.stderr
    extra, valid = data / "dataset_A" / "test_hash_labelled.rec", data / "dataset_A" / "valid.rec"
    test_ids = {d["_id"] for d in read_docs(data / "test.bson")}
    assert record_ids(extra) and record_ids(extra) <= test_ids
    assert not record_ids(extra) & record_ids(valid)  # no product of the validation .rec
    assert read_rec_info(str(extra)).same_labels(read_rec_info(str(data / "dataset_A" / "train.rec")))
    # The same command without --exclude-bson would have written them: the check above can fail.
    unguarded = str(tmp_path / "unguarded.rec")
    hash_labelled_rec.main(["--bson", str(data / "test.bson"), "--md5-dict", str(data / "md5_dict_train.npz"),
                            "--category-csv", str(data / "category_names.csv"), "--out-rec", unguarded])
    assert record_ids(unguarded) & record_ids(valid) == set(renamed.values())

    names = ["test_hash_labelled.rec", "test_hash_labelled.idx", "test_hash_labelled.rec.json"]
    before = mtimes(data / "dataset_A", names)
    result = run("data/create_hash_labelled_rec.sh", DATA_DIR=data, expect=0)
    assert "already complete (FORCE=1 redoes it)" in result.stderr
    assert mtimes(data / "dataset_A", names) == before
    run("data/create_hash_labelled_rec.sh", DATA_DIR=data, FORCE="1", expect=0)
    assert all(mtimes(data / "dataset_A", names)[name] != before[name] for name in names)


def test_labels_agree_with_the_demo_ground_truth(demo_dir, tmp_path):
    """On the demo data (pictures shared across categories included), each labelled product's label is its
    true category (test_ground_truth.csv)."""
    dictionary = str(tmp_path / "d.npz")
    bson_md5_dict.main(["--bson", str(demo_dir / "train.bson"), "--out", dictionary])
    rec = str(tmp_path / "extra.rec")
    hash_labelled_rec.main(["--bson", str(demo_dir / "test.bson"), "--md5-dict", dictionary,
                            "--category-csv", str(demo_dir / "category_names.csv"), "--out-rec", rec])
    categories = Categories.load(str(demo_dir / "category_names.csv"))
    with open(demo_dir / "test_ground_truth.csv", newline="") as fh:
        truth = {int(row["_id"]): categories.class_of(int(row["category_id"])) for row in csv.DictReader(fh)}
    records = read_records(rec)
    assert len(records) >= 2 and all(h.label == truth[h.id] for h, _ in records)
