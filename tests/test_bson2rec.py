import collections
import csv
import hashlib
import logging

import mxnet as mx
import pytest

from data import bson2rec, bson_md5_dict
from data.common import UserError
from tests.helpers import make_jpeg, product, read_docs, write_bson


def read_records(rec_path):
    """(header, picture) of every record, in key order of the .idx."""
    reader = mx.recordio.MXIndexedRecordIO(rec_path[:-4] + ".idx", rec_path, "r")
    try:
        return [mx.recordio.unpack(reader.read_idx(key)) for key in sorted(reader.keys)]
    finally:
        reader.close()


def convert(bson_path, rec_path, category_csv=None, extra=()):
    argv = ["--bson", bson_path, "--out-rec", str(rec_path), *extra]
    if category_csv:
        argv += ["--category-csv", category_csv]
    bson2rec.main(argv)
    return read_records(str(rec_path))


def class_ids(category_csv):
    with open(category_csv, newline="") as fh:
        return {int(row[0]): i for i, row in enumerate(list(csv.reader(fh))[1:])}


def test_records_match_the_bson(example_bson, category_csv, tmp_path):
    records = convert(example_bson, tmp_path / "train.rec", category_csv)
    docs = {d["_id"]: d for d in read_docs(example_bson)}
    classes = class_ids(category_csv)
    assert len(records) == 110
    seen = set()
    for header, picture in records:
        doc = docs[header.id]
        assert picture == doc["imgs"][header.id2]["picture"]  # JPEG bytes untouched
        assert header.label == classes[doc["category_id"]]
        seen.add((header.id, header.id2))
    assert len(seen) == 110  # every image exactly once


def test_order_is_shuffled_and_seeded(example_bson, category_csv, tmp_path):
    def order(name, extra):
        return [(h.id, h.id2) for h, _ in convert(example_bson, tmp_path / name, category_csv, extra)]

    file_order = order("plain.rec", ["--no-shuffle"])
    docs = read_docs(example_bson)
    assert file_order == [(d["_id"], k) for d in docs for k in range(len(d["imgs"]))]
    seeded = order("a.rec", ["--shuffle-seed", "7"])
    assert seeded != file_order and sorted(seeded) == sorted(file_order)
    assert order("b.rec", ["--shuffle-seed", "7"]) == seeded
    assert order("c.rec", ["--shuffle-seed", "8"]) != seeded


def test_unique_md5_keeps_first_occurrence_only(example_bson, category_csv, tmp_path):
    records = convert(example_bson, tmp_path / "c.rec", category_csv, ["--unique-md5"])
    digests = [hashlib.md5(p).digest() for _, p in records]
    assert len(digests) == len(set(digests)) == 109  # the sample has one repeated picture
    # The kept copy of the repeated picture is its first occurrence in file order.
    docs = read_docs(example_bson)
    first = {}
    for d in docs:
        for k, img in enumerate(d["imgs"]):
            first.setdefault(hashlib.md5(img["picture"]).digest(), (d["_id"], k))
    assert {(h.id, h.id2) for h, _ in records} == set(first.values())


def _conflict_bson(tmp_path, category_csv):
    ids = list(class_ids(category_csv))[:3]
    shared, a, b, c = make_jpeg(0), make_jpeg(1), make_jpeg(2), make_jpeg(3)
    docs = [product(1, [shared, a], ids[0]), product(2, [shared], ids[1]), product(3, [b, b], ids[2]),
            product(4, [c], ids[2]), product(5, [make_jpeg(4)], ids[2])]
    return write_bson(tmp_path / "conflict.bson", docs), ids


def test_md5_dict_keeps_single_category_images(tmp_path, category_csv):
    path, _ = _conflict_bson(tmp_path, category_csv)
    bson_md5_dict.main(["--bson", path, "--out", str(tmp_path / "d.npz")])
    records = convert(path, tmp_path / "r.rec", category_csv, ["--md5-dict", str(tmp_path / "d.npz")])
    kept = {(h.id, h.id2) for h, _ in records}
    assert kept == {(1, 1), (3, 0), (3, 1), (4, 0), (5, 0)}  # the shared picture has two categories


def test_under_sampling_caps_images_per_category(tmp_path, category_csv):
    path, ids = _conflict_bson(tmp_path, category_csv)
    records = convert(path, tmp_path / "u.rec", category_csv, ["--under-sampling", "2"])
    per_class = collections.Counter(h.label for h, _ in records)
    classes = class_ids(category_csv)
    assert per_class[classes[ids[2]]] == 2  # category 3 had 4 images
    assert per_class[classes[ids[0]]] == 2 and per_class[classes[ids[1]]] == 1


def test_bad_pictures_are_skipped_and_reported(tmp_path, category_csv, caplog):
    cid = list(class_ids(category_csv))[0]
    good = make_jpeg(5)
    path = write_bson(tmp_path / "bad.bson", [product(1, [good, b"GIF89a not a jpeg"], cid),
                                              product(2, [good[:len(good) // 2]], cid), product(3, [], cid)])
    with caplog.at_level(logging.INFO):
        records = convert(path, tmp_path / "bad.rec", category_csv)
    assert [(h.id, h.id2) for h, _ in records] == [(1, 0)]
    log = caplog.text
    assert "skipped not_jpeg: 1" in log and "skipped truncated_jpeg: 1" in log
    assert "1 products without images" in log


def test_unknown_category_is_an_error_naming_the_product(tmp_path, category_csv):
    path = write_bson(tmp_path / "u.bson", [product(77, [make_jpeg(1)], 999)])
    with pytest.raises(UserError, match=r"u.bson: product _id 77: category_id 999 is not in"):
        convert(path, tmp_path / "u.rec", category_csv)
    assert not (tmp_path / "u.rec").exists()


def test_test_bson_gets_label_minus_one(tmp_path):
    path = write_bson(tmp_path / "test.bson", [product(3, [make_jpeg(1), make_jpeg(2)]), product(9, [make_jpeg(3)])])
    records = convert(path, tmp_path / "test.rec", extra=["--no-shuffle"])
    assert [(h.id, h.id2, h.label) for h, _ in records] == [(3, 0, -1.0), (3, 1, -1.0), (9, 0, -1.0)]


def test_existing_outputs_need_force(example_bson, category_csv, tmp_path):
    convert(example_bson, tmp_path / "x.rec", category_csv)
    with pytest.raises(UserError, match="output exists"):
        convert(example_bson, tmp_path / "x.rec", category_csv)
    convert(example_bson, tmp_path / "x.rec", category_csv, ["--force"])
