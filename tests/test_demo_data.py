"""The demo dataset: Kaggle's formats, realistic statistics, seeded and safe outputs."""
import collections
import hashlib
import os

import cv2
import numpy as np
import pytest

from data.categories import Categories
from cli.runner import UserError
from data.make_demo_data import (OUTPUT_NAMES, assign_categories, category_weights, encode_jpeg,
                                 generate_demo_dataset, main, make_categories, make_styles)
from tests.helpers import read_csv_rows, read_docs, run

SMALL = dict(num_categories=12, num_train_products=300, num_test_products=100)


def md5(picture):
    return hashlib.md5(picture).hexdigest()


def file_bytes(folder):
    return {name: (folder / name).read_bytes() for name in OUTPUT_NAMES}


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    """One small demo dataset shared by the read-only tests."""
    folder = tmp_path_factory.mktemp("demo")
    summary = generate_demo_dataset(str(folder), seed=0, progress=False, **SMALL)
    return dict(folder=folder, summary=summary, train=read_docs(folder / "train.bson"),
                test=read_docs(folder / "test.bson"), categories=read_csv_rows(folder / "category_names.csv"),
                truth=read_csv_rows(folder / "test_ground_truth.csv"))


def test_documents_have_kaggles_keys_and_types(demo):
    for doc in demo["train"]:
        assert list(doc) == ["_id", "imgs", "category_id"]
        assert type(doc["_id"]) is int and type(doc["category_id"]) is int
    for doc in demo["test"]:
        assert list(doc) == ["_id", "imgs"]
    for doc in demo["train"] + demo["test"]:
        assert isinstance(doc["imgs"], list)
        for image in doc["imgs"]:
            assert list(image) == ["picture"] and isinstance(image["picture"], bytes)
    # Kaggle stores _id as a 32-bit int first in each document.
    raw = (demo["folder"] / "train.bson").read_bytes()
    assert raw[4:9] == b"\x10_id\x00"
    assert len(demo["train"]) == demo["summary"]["train_products"] == SMALL["num_train_products"]
    assert len(demo["test"]) == demo["summary"]["test_products"] == SMALL["num_test_products"]


def test_category_csv_is_kaggles_format_and_covers_every_label(demo):
    header, *rows = demo["categories"]
    assert header == ["category_id", "category_level1", "category_level2", "category_level3"]
    assert len(rows) == SMALL["num_categories"]
    ids = [int(row[0]) for row in rows]
    assert len(set(ids)) == len(ids)
    assert all(1000000000 <= i <= 1000022000 for i in ids)
    assert ids != sorted(ids) and ids != sorted(ids, reverse=True)
    # A hierarchy: a few level-1 names over more level-2 names over the categories.
    level1 = {row[1] for row in rows}
    level2 = {(row[1], row[2]) for row in rows}
    assert 2 <= len(level1) < len(level2) < len(rows)
    assert len({row[3] for row in rows}) == len(rows)
    assert {d["category_id"] for d in demo["train"]} <= set(ids)
    assert {int(row[1]) for row in demo["truth"][1:]} <= set(ids)
    # The project's own reader accepts it.
    assert Categories.load(str(demo["folder"] / "category_names.csv")).category_ids.tolist() == ids


def test_ids_are_unique_increasing_with_gaps(demo):
    train_ids = [d["_id"] for d in demo["train"]]
    test_ids = [d["_id"] for d in demo["test"]]
    for ids in (train_ids, test_ids):
        assert all(a < b for a, b in zip(ids, ids[1:]))
    assert not set(train_ids) & set(test_ids)
    assert any(b - a > 1 for a, b in zip(train_ids, train_ids[1:]))


def test_one_to_four_pictures_per_product(demo):
    counts = np.array([len(d["imgs"]) for d in demo["train"]])
    assert counts.min() >= 1 and counts.max() <= 4
    assert 1.5 <= counts.mean() <= 2.0
    assert set(counts.tolist()) == {1, 2, 3, 4}
    assert counts.sum() == demo["summary"]["train_images"]


def test_every_picture_is_a_180x180_rgb_jpeg_of_kaggle_like_size(demo):
    sizes = []
    for doc in demo["train"] + demo["test"]:
        for image in doc["imgs"]:
            picture = image["picture"]
            decoded = cv2.imdecode(np.frombuffer(picture, np.uint8), cv2.IMREAD_UNCHANGED)
            assert decoded is not None and decoded.shape == (180, 180, 3)
            sizes.append(len(picture))
    assert 3000 <= np.median(sizes) <= 12000


def test_category_distribution_is_long_tailed(demo):
    counts = np.array(list(collections.Counter(d["category_id"] for d in demo["train"]).values()))
    assert len(counts) == SMALL["num_categories"]   # every category has train products
    assert counts.max() >= 4 * np.median(counts)
    assert counts.min() >= 3


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_long_tail_at_demo_size(seed):
    rng = np.random.default_rng(seed)
    categories = assign_categories(rng, category_weights(rng, 40), 4000, min_per_category=3)
    counts = np.bincount(categories, minlength=40)
    assert len(categories) == 4000
    assert counts.max() >= 10 * np.median(counts)
    assert counts.min() >= 3


def test_repeated_pictures_within_and_across_products(demo):
    seen, repeated = set(), 0
    categories_of = collections.defaultdict(set)
    products_of = collections.defaultdict(set)
    own_repeat = False
    for doc in demo["train"]:
        hashes = [md5(image["picture"]) for image in doc["imgs"]]
        own_repeat |= len(set(hashes)) < len(hashes)
        for h in hashes:
            repeated += h in seen
            seen.add(h)
            categories_of[h].add(doc["category_id"])
            products_of[h].add(doc["_id"])
    total = sum(len(d["imgs"]) for d in demo["train"])
    assert 0.2 <= repeated / total <= 0.45
    assert repeated == demo["summary"]["train_duplicate_images"]
    assert own_repeat
    assert any(len(products) >= 3 for products in products_of.values())   # stock photos
    assert any(len(categories) > 1 for categories in categories_of.values())   # conflicting labels


def test_test_products_overlap_train(demo):
    train_hashes = {md5(image["picture"]) for d in demo["train"] for image in d["imgs"]}
    train_sets = collections.defaultdict(set)
    for d in demo["train"]:
        train_sets[tuple(md5(image["picture"]) for image in d["imgs"])].add(d["category_id"])
    truth = {int(row[0]): int(row[1]) for row in demo["truth"][1:]}
    sharing = copies = 0
    for d in demo["test"]:
        hashes = tuple(md5(image["picture"]) for image in d["imgs"])
        sharing += bool(set(hashes) & train_hashes)
        if hashes in train_sets:
            copies += 1
            assert truth[d["_id"]] in train_sets[hashes]
    assert 0.1 <= sharing / len(demo["test"]) <= 0.35
    assert copies >= 1


def test_ground_truth_covers_every_test_product_once(demo):
    header, *rows = demo["truth"]
    assert header == ["_id", "category_id"]
    assert [int(row[0]) for row in rows] == [d["_id"] for d in demo["test"]]
    # Test categories follow the train distribution: the most common test category is a common train one.
    train_counts = collections.Counter(d["category_id"] for d in demo["train"])
    top_test = collections.Counter(int(row[1]) for row in rows).most_common(1)[0][0]
    assert train_counts[top_test] >= np.median(list(train_counts.values()))


def test_picture_content_depends_on_category(demo):
    # Mean colour of the picture centre (where the object usually is) per category, against shuffled labels.
    colours, labels = [], []
    for doc in demo["train"]:
        for image in doc["imgs"]:
            decoded = cv2.imdecode(np.frombuffer(image["picture"], np.uint8), cv2.IMREAD_COLOR)
            colours.append(decoded[60:120, 60:120].reshape(-1, 3).mean(axis=0))
            labels.append(doc["category_id"])
    colours, labels = np.array(colours), np.array(labels)

    def spread_of_category_means(assigned):
        means = np.array([colours[assigned == c].mean(axis=0) for c in np.unique(assigned)])
        return means.std(axis=0).mean()

    rng = np.random.default_rng(0)
    shuffled = [spread_of_category_means(rng.permutation(labels)) for _ in range(20)]
    true_spread = spread_of_category_means(labels)
    assert true_spread > max(shuffled) and true_spread > 2 * np.mean(shuffled)


def test_categories_share_shapes_and_colours():
    # Not trivially separable: some categories share a shape kind, some share a colour.
    styles = make_styles(np.random.default_rng(0), 40, 64)
    shapes = collections.Counter(style.shape for style in styles)
    assert max(shapes.values()) > 1
    colour_use = collections.Counter(tuple(c) for style in styles for c in style.colours.tolist())
    assert max(colour_use.values()) > 1
    assert len({(s.shape, tuple(map(tuple, s.colours[:2].tolist()))) for s in styles}) == len(styles)


def test_jpeg_stores_rgb_colours():
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 220   # RGB red
    decoded_bgr = cv2.imdecode(np.frombuffer(encode_jpeg(red, 90), np.uint8), cv2.IMREAD_COLOR)
    assert decoded_bgr[..., 2].mean() > 200 and decoded_bgr[..., 0].mean() < 30


def test_same_seed_same_bytes_other_seed_differs(demo, tmp_path):
    again, other = tmp_path / "again", tmp_path / "other"
    generate_demo_dataset(str(again), seed=0, progress=False, **SMALL)
    generate_demo_dataset(str(other), seed=1, progress=False, **SMALL)
    assert file_bytes(again) == file_bytes(demo["folder"])
    different = file_bytes(other)
    for name in ("train.bson", "test.bson", "category_names.csv", "test_ground_truth.csv"):
        assert different[name] != file_bytes(demo["folder"])[name]


TINY = ["--num-categories", "2", "--num-train-products", "8", "--num-test-products", "3"]


def test_existing_outputs_are_refused_without_force(tmp_path):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "test_ground_truth.csv").write_text("mine\n")
    with pytest.raises(UserError, match="--force"):
        main(["--out-dir", str(out), *TINY])
    assert sorted(os.listdir(out)) == ["test_ground_truth.csv"]   # nothing written, nothing left behind
    assert (out / "test_ground_truth.csv").read_text() == "mine\n"
    assert main(["--out-dir", str(out), *TINY, "--force"]) == 0
    assert sorted(os.listdir(out)) == sorted(OUTPUT_NAMES)
    assert len(read_docs(out / "train.bson")) == 8


@pytest.mark.parametrize("bad", [["--num-categories", "1"], ["--num-train-products", "5"],
                                 ["--num-test-products", "0"], ["--jpeg-quality", "0"], ["--image-size", "8"]])
def test_bad_sizes_are_user_errors(tmp_path, bad):
    with pytest.raises(UserError):
        main(["--out-dir", str(tmp_path / "demo"), *TINY, *bad])
    assert not (tmp_path / "demo").exists() or not os.listdir(tmp_path / "demo")


def test_command_line_runs_and_refuses_to_overwrite(tmp_path):
    command = ["python", "-m", "data.make_demo_data", "--out-dir", str(tmp_path / "demo"), *TINY]
    first = run(command)
    assert first.returncode == 0, first.stderr
    assert "train: 8 products" in first.stderr
    second = run(command)
    assert second.returncode == 2
    assert second.stderr.startswith("error: ") and "--force" in second.stderr


def test_kaggle_many_categories_get_distinct_names():
    # more categories than object x qualifier pairs (bench_scale makes Kaggle's 5270): no endless search
    rows = make_categories(np.random.default_rng(0), 600)
    assert len(rows) == 600 and len({row[3] for row in rows}) == 600
