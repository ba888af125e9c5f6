"""The data stage's shell scripts end to end on a small generated dataset (the fast end-to-end path)."""
import os
import shutil

import bson
import pytest

from data.md5_dict import Md5Dictionary
from tests.helpers import REPO_ROOT, mtimes, read_records, run, shared_file


def record_ids(rec):
    return [header for header, _ in read_records(rec)]


def record_pictures(rec):
    return [picture for _, picture in read_records(rec)]


def test_datasets_a_b_c_and_dictionaries(demo_dir):
    for script in ("data/create_dataset_A.sh", "data/create_dataset_B.sh", "data/create_dataset_C.sh",
                   "data/create_train_md5_dict.sh"):
        run(script, DATA_DIR=demo_dir, expect=0)
    with open(demo_dir / "train.bson", "rb") as fh:
        train_ids = [d["_id"] for d in bson.decode_file_iter(fh)]
    val_sets = {}
    for name in ("dataset_A", "dataset_B"):
        with open(demo_dir / name / "train_valid.bson", "rb") as fh:
            val_sets[name] = {d["_id"] for d in bson.decode_file_iter(fh)}
        with open(demo_dir / name / "train_train.bson", "rb") as fh:
            train_part = [d["_id"] for d in bson.decode_file_iter(fh)]
        assert len(val_sets[name]) == int(300 * 0.05)
        assert sorted(train_part + list(val_sets[name])) == sorted(train_ids)
    assert val_sets["dataset_A"] != val_sets["dataset_B"]  # seeds 0xC0FFEE and 1
    # Records of A's validation .rec are exactly the images of its validation products.
    valid_products = {h.id for h in record_ids(str(demo_dir / "dataset_A" / "valid.rec"))}
    assert valid_products == val_sets["dataset_A"]
    # C holds each picture once, and fewer records than A.
    a_count = len(record_ids(str(demo_dir / "dataset_A" / "train.rec")))
    pictures = record_pictures(str(demo_dir / "dataset_C" / "train.rec"))
    assert len(set(pictures)) == len(pictures) < a_count
    full = Md5Dictionary.load(str(demo_dir / "md5_dict_train.npz"))
    split = Md5Dictionary.load(str(demo_dir / "dataset_A" / "md5_dict_train_train.npz"))
    assert full.meta["total_images"] > split.meta["total_images"]
    # The split dictionary counts exactly the pictures C keeps (C dedups A's training split).
    assert split.meta["unique_images"] == len(set(pictures))


def test_dataset_c_needs_a(tmp_path):
    result = run("data/create_dataset_C.sh", DATA_DIR=tmp_path, expect=2)
    assert "run data/create_dataset_A.sh first" in result.stderr


@pytest.fixture
def fresh_data_dir(demo_dir, tmp_path):
    """A data folder holding only Kaggle's two inputs (the demo's), for scripts run from scratch."""
    folder = tmp_path / "data"
    folder.mkdir()
    for name in ("train.bson", "category_names.csv"):
        shutil.copy2(demo_dir / name, folder / name)
    return folder


SPLIT = ("train_train.bson", "train_valid.bson")
RECS = ("train.rec", "train.idx", "valid.rec", "valid.idx")


def test_a_rerun_skips_the_complete_split_and_rebuilds_a_missing_rec(fresh_data_dir):
    run("data/create_dataset_A.sh", DATA_DIR=fresh_data_dir, expect=0)
    dataset = fresh_data_dir / "dataset_A"
    before = mtimes(dataset, SPLIT + RECS)
    records = record_ids(str(dataset / "valid.rec"))
    (dataset / "valid.rec").unlink()  # as if bson2rec had failed on the validation half
    result = run("data/create_dataset_A.sh", DATA_DIR=fresh_data_dir, expect=0)
    assert f"skipped the split of {fresh_data_dir}/train.bson: " in result.stderr
    assert "skipped the conversion of train_train.bson" in result.stderr
    assert f"redoing the conversion of train_valid.bson: {dataset}/valid.rec missing" in result.stderr
    after = mtimes(dataset, SPLIT + RECS)
    assert {n: after[n] for n in SPLIT + RECS[:2]} == {n: before[n] for n in SPLIT + RECS[:2]}  # not redone
    assert after["valid.idx"] != before["valid.idx"]
    assert record_ids(str(dataset / "valid.rec")) == records  # the same records again


def test_a_rec_made_before_its_label_file_existed_is_made_again(fresh_data_dir):
    """A .rec of an older version has no X.rec.json (the label space): the rerun converts it again."""
    run("data/create_dataset_A.sh", DATA_DIR=fresh_data_dir, expect=0)
    dataset = fresh_data_dir / "dataset_A"
    (dataset / "train.rec.json").unlink()
    result = run("data/create_dataset_A.sh", DATA_DIR=fresh_data_dir, expect=0)
    assert f"redoing the conversion of train_train.bson: {dataset}/train.rec.json missing" in result.stderr
    assert (dataset / "train.rec.json").exists()


def test_a_rerun_of_a_complete_dataset_does_nothing_and_force_redoes_all(fresh_data_dir):
    run("data/create_dataset_A.sh", DATA_DIR=fresh_data_dir, expect=0)
    dataset = fresh_data_dir / "dataset_A"
    before = mtimes(dataset, SPLIT + RECS)
    result = run("data/create_dataset_A.sh", DATA_DIR=fresh_data_dir, expect=0)
    assert result.stderr.count("already complete (FORCE=1 redoes it)") == 3
    assert mtimes(dataset, SPLIT + RECS) == before
    run("data/create_dataset_A.sh", DATA_DIR=fresh_data_dir, FORCE="1", expect=0)
    after = mtimes(dataset, SPLIT + RECS)
    assert all(after[name] != before[name] for name in SPLIT + RECS)


def test_a_redone_split_makes_its_recs_stale(fresh_data_dir):
    """Half a split (one file renamed, then killed) is redone, and the records of the old split with it."""
    run("data/create_dataset_A.sh", DATA_DIR=fresh_data_dir, expect=0)
    dataset = fresh_data_dir / "dataset_A"
    before = mtimes(dataset, RECS)
    (dataset / "train_valid.bson").unlink()
    result = run("data/create_dataset_A.sh", DATA_DIR=fresh_data_dir, expect=0)
    assert f"redoing the split of {fresh_data_dir}/train.bson: {dataset}/train_valid.bson missing" in result.stderr
    assert f"redoing the conversion of train_train.bson: {dataset}/train.rec is older than" in result.stderr
    assert all(mtimes(dataset, RECS)[name] != before[name] for name in RECS)


def test_md5_dictionaries_are_skipped_when_complete(fresh_data_dir):
    run("data/create_train_md5_dict.sh", DATA_DIR=fresh_data_dir, expect=0)
    before = os.stat(fresh_data_dir / "md5_dict_train.npz").st_mtime_ns
    result = run("data/create_train_md5_dict.sh", DATA_DIR=fresh_data_dir, expect=0)
    assert "skipped the dictionary of train.bson" in result.stderr
    assert "run data/create_dataset_A.sh first" in result.stderr  # no split dictionary without dataset_A
    assert os.stat(fresh_data_dir / "md5_dict_train.npz").st_mtime_ns == before


def test_a_relative_data_dir_is_taken_from_the_callers_folder(fresh_data_dir):
    run("data/create_dataset_B.sh", cwd=fresh_data_dir.parent, DATA_DIR="data", expect=0)
    assert (fresh_data_dir / "dataset_B" / "valid.rec").exists()
    assert not os.path.exists(os.path.join(REPO_ROOT, "data", "dataset_B"))


# The original's data/create_dataset_{A,B,C}.sh and create_train_md5_dict.sh, line by line.
ORIGINAL_COMMAND_LINES = {
    "A": ["python3 -u split_train_bson.py --input-bson ${ROOT}/data/train.bson --val-ratio 0.05 "
          "--save-train-bson ${ROOT}/data/train_split_A_train.bson --save-val-bson ${ROOT}/data/train_split_A_val.bson "
          "--random-seed 12648430",
          "python3 -u bson2rec_simple.py --bson ${ROOT}/data/train_split_A_train.bson "
          "--out-rec ${ROOT}/data/train_split_A_train.rec",
          "python3 -u bson2rec_simple.py --bson ${ROOT}/data/train_split_A_val.bson "
          "--out-rec ${ROOT}/data/train_split_A_val.rec"],
    "B": ["python3 -u split_train_bson.py --input-bson ${ROOT}/data/train.bson --val-ratio 0.05 "
          "--save-train-bson ${ROOT}/data/train_split_B_train.bson --save-val-bson ${ROOT}/data/train_split_B_val.bson "
          "--random-seed 1",
          "python3 -u bson2rec_simple.py --bson ${ROOT}/data/train_split_B_train.bson "
          "--out-rec ${ROOT}/data/train_split_B_train.rec",
          "python3 -u bson2rec_simple.py --bson ${ROOT}/data/train_split_B_val.bson "
          "--out-rec ${ROOT}/data/train_split_B_val.rec"],
    "C": ["python3 -u bson2rec_simple.py --bson ${ROOT}/data/train_split_A_train.bson "
          "--out-rec ${ROOT}/data/train_split_C_train.rec --unique-md5",
          "python3 -u bson2rec_simple.py --bson ${ROOT}/data/train_split_A_val.bson "
          "--out-rec ${ROOT}/data/train_split_C_val.rec --unique-md5"],
    "md5": ["python3 -u bson_md5_dict.py --bson ${ROOT}/data/train.bson "
            "--md5-dict-pkl ${ROOT}/data/train_md5_dict.pkl"],
}
# `python3 -u X.py` becomes `python -m data.X`; bson2rec_simple.py is data.bson2rec.
MODULE_OF = {"split_train_bson.py": "data.split_train_bson", "bson2rec_simple.py": "data.bson2rec",
             "bson_md5_dict.py": "data.bson_md5_dict"}


def run_original_line(line, root, category_dir):
    words = line.replace("${ROOT}", str(root)).split()
    assert words[:2] == ["python3", "-u"]
    # The original read category_names.csv beside its scripts; ours reads $DATA_DIR/category_names.csv.
    return run(["python", "-m", MODULE_OF[words[2]], *words[3:]], DATA_DIR=str(category_dir))


def test_the_originals_command_lines_run(tmp_path):
    root, category_dir = tmp_path / "root", tmp_path / "categories"
    (root / "data").mkdir(parents=True)
    category_dir.mkdir()
    shutil.copy(shared_file("train_example.bson"), root / "data" / "train.bson")
    shutil.copy(shared_file("category_names.csv"), category_dir / "category_names.csv")
    for name in ("A", "B", "C"):
        for line in ORIGINAL_COMMAND_LINES[name]:
            result = run_original_line(line, root, category_dir)
            assert result.returncode == 0, (line, result.stderr[-2000:])
    def pictures(name):
        return record_pictures(str(root / "data" / name))

    for name in "AB":
        assert len(pictures(f"train_split_{name}_train.rec")) + len(pictures(f"train_split_{name}_val.rec")) == 110
    for part in ("train", "val"):  # C: A's records with each picture once
        assert sorted(pictures(f"train_split_C_{part}.rec")) == sorted(set(pictures(f"train_split_A_{part}.rec")))
    # The MD5 dictionary line names a pickle output: the documented one-line explanation, nothing written.
    result = run_original_line(ORIGINAL_COMMAND_LINES["md5"][0], root, category_dir)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"error: --md5-dict-pkl {root}/data/train_md5_dict.pkl: the original wrote a pickle; this writes an .npz "
        "dictionary that loads without running code: pass --out DICT.npz instead"]
    assert not (root / "data" / "train_md5_dict.pkl").exists()
