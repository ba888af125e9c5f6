"""benchmarks.fashion_products on small hand-written IDX files (the Debian package is not needed)."""
import csv
import gzip

import bson
import numpy as np
import pytest

from benchmarks import fashion_products
from cli.runner import UserError
from data.categories import Categories


def write_idx(path, array):
    header = b"\0\0\x08" + bytes([array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def package(tmp_path):
    rng = np.random.default_rng(0)
    for part, count in (("train", 60), ("t10k", 40)):
        write_idx(tmp_path / f"{part}-images-idx3-ubyte.gz", rng.integers(0, 256, (count, 28, 28)))
        write_idx(tmp_path / f"{part}-labels-idx1-ubyte.gz", np.arange(count) % 10)
    return tmp_path


def test_products_of_views_with_shared_training_pictures(package, tmp_path):
    out = tmp_path / "out"
    assert fashion_products.main(["--out-dir", str(out), "--package-dir", str(package), "--num-train-products", "50",
                                  "--num-test-products", "30", "--shared-share", "0.5", "--image-size", "32"]) == 0
    train = bson.decode_all((out / "train.bson").read_bytes())
    test = bson.decode_all((out / "test.bson").read_bytes())
    assert len(train) == 50 and len(test) == 30
    assert all(1 <= len(doc["imgs"]) <= 4 for doc in train + test)
    assert all("category_id" not in doc for doc in test)
    categories = Categories.load(str(out / "category_names.csv"))
    assert len(categories) == 10 and len(categories.level2_names) == 5
    assert all(categories.classes_of([doc["category_id"]])[0] >= 0 for doc in train)
    with open(out / "test_ground_truth.csv") as fh:
        truth = {int(row["_id"]): int(row["category_id"]) for row in csv.DictReader(fh)}
    assert set(truth) == {doc["_id"] for doc in test}
    first_pictures = {}
    for doc in train:
        first_pictures.setdefault(bytes(doc["imgs"][0]["picture"]), doc["category_id"])
    shared = [(doc, img) for doc in test for img in doc["imgs"] if bytes(img["picture"]) in first_pictures]
    assert 5 <= len(shared) <= 25  # about half of 30
    assert all(first_pictures[bytes(img["picture"])] == truth[doc["_id"]] for doc, img in shared)  # same class
    again = tmp_path / "again"
    fashion_products.main(["--out-dir", str(again), "--package-dir", str(package), "--num-train-products", "50",
                           "--num-test-products", "30", "--shared-share", "0.5", "--image-size", "32"])
    assert (again / "train.bson").read_bytes() == (out / "train.bson").read_bytes()  # seeded


def test_bad_inputs_are_refused_in_one_line(package, tmp_path):
    with pytest.raises(UserError, match=r"--num-test-products 41: between 1 and the 40 photos"):
        fashion_products.main(["--out-dir", str(tmp_path / "o"), "--package-dir", str(package),
                               "--num-test-products", "41", "--num-train-products", "10"])
    (package / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(b"\0\0\x0d\x01" + bytes(8)))
    with pytest.raises(UserError, match=r"t10k-labels-idx1-ubyte.gz: not an IDX file of unsigned bytes"):
        fashion_products.main(["--out-dir", str(tmp_path / "o"), "--package-dir", str(package)])
    with pytest.raises(UserError, match=r"apt-get install dataset-fashion-mnist"):
        fashion_products.main(["--out-dir", str(tmp_path / "o"), "--package-dir", str(tmp_path / "none")])
