"""The data stage's shell scripts end to end on a small generated dataset (the fast end-to-end path)."""
import os
import subprocess
import sys

import bson
import mxnet as mx
import pytest

from data.make_demo_data import generate_demo_dataset
from data.md5_dict import Md5Dictionary
from tests.conftest import REPO_ROOT


def script_env(data_dir, **env):
    """The scripts call `python`: the one running the tests, first on PATH."""
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    return dict(os.environ, PATH=path, DATA_DIR=str(data_dir), **env)


def run_script(script, data_dir, expect=0, **env):
    result = subprocess.run([os.path.join(REPO_ROOT, script)], env=script_env(data_dir, **env),
                            capture_output=True, text=True)
    assert result.returncode == expect, result.stderr[-3000:]
    return result


def record_ids(rec):
    reader = mx.recordio.MXIndexedRecordIO(rec[:-4] + ".idx", rec, "r")
    try:
        return [mx.recordio.unpack(reader.read_idx(k))[0] for k in reader.keys]
    finally:
        reader.close()


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("demo")
    generate_demo_dataset(str(folder), num_categories=8, num_train_products=300, num_test_products=40, seed=3,
                          progress=False)
    return folder


def test_datasets_a_b_c_and_dictionaries(demo_dir):
    for script in ("data/create_dataset_A.sh", "data/create_dataset_B.sh", "data/create_dataset_C.sh",
                   "data/create_train_md5_dict.sh"):
        run_script(script, demo_dir)
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
    reader = mx.recordio.MXIndexedRecordIO(str(demo_dir / "dataset_C" / "train.idx"),
                                           str(demo_dir / "dataset_C" / "train.rec"), "r")
    pictures = [mx.recordio.unpack(reader.read_idx(k))[1] for k in reader.keys]
    reader.close()
    assert len(set(pictures)) == len(pictures) < a_count
    full = Md5Dictionary.load(str(demo_dir / "md5_dict_train.npz"))
    split = Md5Dictionary.load(str(demo_dir / "dataset_A" / "md5_dict_train_train.npz"))
    assert full.meta["total_images"] > split.meta["total_images"]
    # The split dictionary counts exactly the pictures C keeps (C dedups A's training split).
    assert split.meta["unique_images"] == len(set(pictures))


def test_dataset_c_needs_a(tmp_path):
    result = run_script("data/create_dataset_C.sh", tmp_path, expect=2)
    assert "run data/create_dataset_A.sh first" in result.stderr


def test_scripts_refuse_to_overwrite_without_force(demo_dir):
    run_script("data/create_dataset_A.sh", demo_dir, FORCE="1")  # re-run allowed with FORCE=1
    result = run_script("data/create_dataset_A.sh", demo_dir, expect=2)
    assert "output exists; pass --force" in result.stderr
