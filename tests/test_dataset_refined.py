"""data/create_dataset_refined.sh: the refined set of M01-M03 (the original's refined_{train,val}.rec)."""
import collections
import hashlib
import os
import shutil

from tests.helpers import mtimes, read_docs, read_records, run, shared_file

REFINED_FILES = ("train.rec", "train.idx", "train.rec.json", "valid.rec", "valid.idx", "valid.rec.json")


def md5(picture):
    return hashlib.md5(bytes(picture)).hexdigest()


def refined_md5s(train_bson, split_train_bson):
    """The original's recipe restated: the split's pictures in file order whose MD5 has one category in the
    whole train.bson, the first of each MD5."""
    categories = collections.defaultdict(set)
    for doc in read_docs(train_bson):
        for image in doc["imgs"]:
            categories[md5(image["picture"])].add(doc["category_id"])
    kept = []
    for doc in read_docs(split_train_bson):
        for image in doc["imgs"]:
            digest = md5(image["picture"])
            if len(categories[digest]) == 1 and digest not in kept:
                kept.append(digest)
    return kept


def rec_md5s(rec):
    return [md5(payload) for _, payload in read_records(str(rec))]


def data_folder(tmp_path, train_bson, category_csv):
    folder = tmp_path / "data"
    folder.mkdir()
    shutil.copy2(train_bson, folder / "train.bson")
    shutil.copy2(category_csv, folder / "category_names.csv")
    return folder


def test_refined_needs_dataset_a_then_the_dictionary(demo_dir, tmp_path):
    data = data_folder(tmp_path, demo_dir / "train.bson", demo_dir / "category_names.csv")
    result = run("data/create_dataset_refined.sh", DATA_DIR=data, expect=2)
    assert result.stderr.strip() == (f"error: {data}/dataset_A/train_train.bson not found: "
                                     "run data/create_dataset_A.sh first")
    run("data/create_dataset_A.sh", DATA_DIR=data, expect=0)
    result = run("data/create_dataset_refined.sh", DATA_DIR=data, expect=2)
    assert result.stderr.strip() == (f"error: {data}/md5_dict_train.npz not found: "
                                     "run data/create_train_md5_dict.sh first")


def test_refined_on_the_demo_data(demo_dir, tmp_path):
    data = data_folder(tmp_path, demo_dir / "train.bson", demo_dir / "category_names.csv")
    for script in ("data/create_dataset_A.sh", "data/create_dataset_C.sh", "data/create_train_md5_dict.sh",
                   "data/create_dataset_refined.sh"):
        run(script, DATA_DIR=data, expect=0)
    refined = data / "dataset_refined"
    train = rec_md5s(refined / "train.rec")
    expected = refined_md5s(data / "train.bson", data / "dataset_A" / "train_train.bson")
    assert sorted(train) == sorted(expected)  # each MD5 once, single-category ones only
    c_train = rec_md5s(data / "dataset_C" / "train.rec")
    assert set(train) < set(c_train)  # the demo has pictures shared across categories: refined drops them
    # Validation: the original's refined_val.rec had DATASET_C's recipe; the bytes are the same.
    for name in ("valid.rec", "valid.idx"):
        assert (refined / name).read_bytes() == (data / "dataset_C" / name).read_bytes()
    before = mtimes(refined, REFINED_FILES)
    result = run("data/create_dataset_refined.sh", DATA_DIR=data, expect=0)
    assert result.stderr.count("already complete (FORCE=1 redoes it)") == 2
    assert mtimes(refined, REFINED_FILES) == before
    os.utime(data / "md5_dict_train.npz")  # a newer dictionary: the training records are made again
    result = run("data/create_dataset_refined.sh", DATA_DIR=data, expect=0)
    assert f"redoing the conversion of train_train.bson: {refined}/train.rec is older than" in result.stderr
    assert "skipped the conversion of train_valid.bson" in result.stderr
    assert rec_md5s(refined / "train.rec") == train  # the same records in the same order
    before = mtimes(refined, REFINED_FILES)
    run("data/create_dataset_refined.sh", DATA_DIR=data, FORCE="1", expect=0)
    assert all(mtimes(refined, REFINED_FILES)[name] != before[name] for name in REFINED_FILES)


def test_refined_on_kaggles_sample(tmp_path):
    data = data_folder(tmp_path, shared_file("train_example.bson"), shared_file("category_names.csv"))
    for script in ("data/create_dataset_A.sh", "data/create_train_md5_dict.sh", "data/create_dataset_refined.sh"):
        run(script, DATA_DIR=data, expect=0)
    refined = data / "dataset_refined"
    train = rec_md5s(refined / "train.rec")
    assert sorted(train) == sorted(refined_md5s(data / "train.bson", data / "dataset_A" / "train_train.bson"))
    valid = rec_md5s(refined / "valid.rec")
    assert len(set(valid)) == len(valid) > 0
    split_valid = [md5(image["picture"]) for doc in read_docs(data / "dataset_A" / "train_valid.bson")
                   for image in doc["imgs"]]
    assert set(valid) == set(split_valid)

