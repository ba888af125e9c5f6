import collections
import csv
import hashlib
import logging
import random

import pytest

from data import bson2rec, bson_md5_dict
from cli.runner import UserError
from tests.helpers import make_jpeg, product, read_docs, read_records, write_bson


def convert(bson_path, rec_path, category_csv=None, extra=()):
    argv = ["--bson", bson_path, "--out-rec", str(rec_path), *extra]
    if category_csv:
        argv += ["--category-csv", category_csv]
    bson2rec.main(argv)
    return read_records(str(rec_path))


def class_ids(category_csv):
    with open(category_csv, newline="") as fh:
        return {int(row[0]): i for i, row in enumerate(list(csv.reader(fh))[1:])}


@pytest.mark.smoke  # run on every Python the README promises (.ci/run)
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
    assert "1 product without images" in log  # not "1 products"


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


# ---- the original's selection and order (bson2rec_simple.py), computed directly ------------------
def original_stream(docs, label_of=None, single_label_md5s=None, unique_md5=False, under_sampling=None):
    """(product _id, image position, label) in the order the original yielded its images:
    file order; single-label MD5 filter, then first MD5 occurrence, then the per-category_id cap."""
    stream, used, per_category = [], set(), collections.Counter()
    for doc in docs:
        category = doc.get("category_id")
        for position, image in enumerate(doc["imgs"]):
            digest = hashlib.md5(image["picture"]).digest()
            if single_label_md5s is not None and digest not in single_label_md5s:
                continue
            if unique_md5:
                if digest in used:
                    continue
                used.add(digest)
            if category is None:
                stream.append((doc["_id"], position, -1))
            elif under_sampling is None or per_category[category] < under_sampling:
                per_category[category] += 1
                stream.append((doc["_id"], position, label_of[category]))
    return stream


def original_order(stream, seed, shuffle_size=99999999):
    """random.seed once; each buffer of shuffle_size images written in a random.shuffle'd order."""
    rng = random.Random(seed)
    out = []
    for start in range(0, len(stream), shuffle_size):
        buffer = stream[start:start + shuffle_size]
        permutation = list(range(len(buffer)))
        rng.shuffle(permutation)
        out += [buffer[i] for i in permutation]
    return out


def written(records):
    return [(h.id, h.id2, int(h.label)) for h, _ in records]


@pytest.mark.parametrize("seed_flag", ["--shuffle-seed", "--random-seed"])
def test_record_order_is_the_originals(example_bson, category_csv, tmp_path, seed_flag):
    stream = original_stream(read_docs(example_bson), class_ids(category_csv))
    for seed in (0xC0FFEE, 7):
        records = convert(example_bson, tmp_path / f"{seed}.rec", category_csv, [seed_flag, str(seed)])
        assert written(records) == original_order(stream, seed)
    # The default seed is the original's default, 0xC0FFEE.
    assert written(convert(example_bson, tmp_path / "default.rec", category_csv)) == original_order(stream, 0xC0FFEE)


def test_shuffle_size_shuffles_within_blocks(example_bson, category_csv, tmp_path):
    stream = original_stream(read_docs(example_bson), class_ids(category_csv))
    records = written(convert(example_bson, tmp_path / "b.rec", category_csv,
                              ["--random-seed", "3", "--shuffle-size", "16"]))
    assert records == original_order(stream, 3, shuffle_size=16)
    for start in range(0, len(stream), 16):  # each block holds the next 16 images of the file
        assert sorted(records[start:start + 16]) == sorted(stream[start:start + 16])
    assert records != original_order(stream, 3)


@pytest.mark.parametrize("extra", [["--under-sampling", "2"], ["--under-sampling", "1", "--unique-md5"]])
def test_under_sampling_keeps_the_first_images_of_each_category(example_bson, category_csv, tmp_path, caplog,
                                                                  extra):
    cap = int(extra[1])
    stream = original_stream(read_docs(example_bson), class_ids(category_csv), unique_md5="--unique-md5" in extra,
                             under_sampling=cap)
    with caplog.at_level(logging.INFO):
        records = written(convert(example_bson, tmp_path / "u.rec", category_csv, extra))
    assert records == original_order(stream, 0xC0FFEE)  # the first N in file order, then shuffled
    assert max(collections.Counter(label for _, _, label in records).values()) == cap
    uniques = 109 if "--unique-md5" in extra else 110
    assert f"skipped under_sampling: {uniques - len(stream)}" in caplog.text


def test_under_sampling_counts_after_the_md5_filters(tmp_path, category_csv, caplog):
    ids = list(class_ids(category_csv))[:2]
    shared, b, c, d = make_jpeg(10), make_jpeg(11), make_jpeg(12), make_jpeg(13)
    docs = [product(0, [b"GIF89a not a jpeg"], ids[0]), product(1, [shared, b], ids[0]), product(2, [shared], ids[1]),
            product(3, [b, c, d], ids[0])]
    path = write_bson(tmp_path / "f.bson", docs)
    bson_md5_dict.main(["--bson", path, "--out", str(tmp_path / "d.npz")])
    with caplog.at_level(logging.INFO):
        records = convert(path, tmp_path / "f.rec", category_csv,
                          ["--md5-dict", str(tmp_path / "d.npz"), "--unique-md5", "--under-sampling", "2"])
    # The broken picture, the two-category picture and the repeat of b take no place: b and c are the first two.
    assert sorted((h.id, h.id2) for h, _ in records) == [(1, 1), (3, 1)]
    for line in ("skipped not_jpeg: 1", "skipped md5_not_single_category: 2", "skipped duplicate_md5: 1",
                 "skipped under_sampling: 1"):
        assert line in caplog.text


def test_under_sampling_keeps_every_unlabelled_image(tmp_path):
    path = write_bson(tmp_path / "test.bson", [product(1, [make_jpeg(1), make_jpeg(2)]), product(2, [make_jpeg(3)])])
    records = convert(path, tmp_path / "t.rec", extra=["--under-sampling", "1", "--no-shuffle"])
    assert [(h.id, h.id2) for h, _ in records] == [(1, 0), (1, 1), (2, 0)]


def level1_sub_classes(category_csv):
    """category_id -> its 0-based rank among the categories of its level-1 name, in file order."""
    with open(category_csv, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))[1:]
    groups = collections.defaultdict(list)
    for row in rows:
        groups[row[1]].append(int(row[0]))
    return {cid: rank for members in groups.values() for rank, cid in enumerate(members)}, \
        max(len(members) for members in groups.values())


def test_cate_type_1_labels_are_the_index_within_the_level1_category(example_bson, category_csv, tmp_path, caplog):
    sub_class, widest = level1_sub_classes(category_csv)
    with caplog.at_level(logging.INFO):
        records = convert(example_bson, tmp_path / "l1.rec", category_csv, ["--cate-type", "1"])
    assert f"0..{widest - 1}: {widest} classes" in caplog.text  # 555 for Kaggle's file
    assert written(records) == original_order(original_stream(read_docs(example_bson), sub_class), 0xC0FFEE)
    caplog.clear()
    with caplog.at_level(logging.INFO):
        convert(example_bson, tmp_path / "l3.rec", category_csv)
    assert "0..5269: 5270 classes" in caplog.text


def test_cate_type_1_under_sampling_counts_per_category_not_per_label(tmp_path, category_csv):
    sub_class, _ = level1_sub_classes(category_csv)
    first_of_two_groups = [cid for cid, rank in sub_class.items() if rank == 0][:2]  # both get label 0
    docs = [product(i, [make_jpeg(20 + i)], first_of_two_groups[i % 2]) for i in range(4)]
    path = write_bson(tmp_path / "two.bson", docs)
    records = convert(path, tmp_path / "two.rec", category_csv,
                      ["--cate-type", "1", "--under-sampling", "1", "--no-shuffle"])
    assert [(h.id, h.label) for h, _ in records] == [(0, 0.0), (1, 0.0)]


class _Tripwire:
    """Unpickling it creates a file: proof that a pickle was loaded."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_md5_dict_pkl_is_refused_and_never_loaded(example_bson, category_csv, tmp_path):
    import pickle

    tripwire = tmp_path / "unpickled"
    (tmp_path / "train_md5_dict.pkl").write_bytes(pickle.dumps(_Tripwire(str(tripwire))))
    with pytest.raises(UserError, match=r"--md5-dict-pkl \S+train_md5_dict.pkl: .*--md5-dict.*data.bson_md5_dict"):
        convert(example_bson, tmp_path / "p.rec", category_csv,
                ["--md5-dict-pkl", str(tmp_path / "train_md5_dict.pkl")])
    assert not tripwire.exists() and not (tmp_path / "p.rec").exists()
