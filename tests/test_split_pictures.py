"""data.split_pictures and data/create_dataset_c5270.sh: the original's picture-level split of M06/M10."""
import hashlib
import json
import math
import random

import numpy as np
import pytest

from cli.runner import UserError, run_cli
from data.split_pictures import check_one_side_each, main, split_pictures
from tests.helpers import make_jpeg, mtimes, product, read_csv_rows, read_docs, read_records, run, write_bson

KAGGLE_PICTURES = 12_371_293


def originals_order(num_pictures, val_ratio, seed, block_size):
    """The original converter's writer, restated for comparison: pictures buffered in file order, and each
    time the buffer reaches `block_size` (and once more at the end) shuffled, then drawn one by one."""
    rng = random.Random(seed)  # the original seeded the module's state: the same generator
    buffer, train, val = [], [], []

    def flush():
        rng.shuffle(buffer)
        for picture in buffer:
            (val if rng.random() < val_ratio else train).append(picture)

    for picture in range(num_pictures):
        buffer.append(picture)
        if len(buffer) >= block_size:
            flush()
            buffer = []
    flush()
    return train, val


@pytest.mark.slow  # 9 s of Python shuffles; the draws against the original's order stay fast
def test_kaggle_picture_count_gives_the_logs_split():
    """The draws depend only on the number of pictures: Kaggle's 12,371,293 give M06's log's 11,752,908
    training pictures (and 618,385 for validation). Drawing before the shuffle, one block, no shuffle or
    Python 2's shuffle each give another count."""
    train, val = split_pictures(KAGGLE_PICTURES)
    assert (len(train), len(val)) == (11_752_908, 618_385)


@pytest.mark.parametrize("num_pictures,block_size", [(2500, 1000), (2000, 1000), (999, 1000), (0, 1000)])
def test_order_and_draws_are_the_originals(num_pictures, block_size):
    train, val = split_pictures(num_pictures, 0.05, 0xC0FFEE, block_size)
    expected_train, expected_val = originals_order(num_pictures, 0.05, 0xC0FFEE, block_size)
    assert train.tolist() == expected_train
    assert val.tolist() == expected_val


def test_blocks_are_shuffled_in_file_order():
    """Each block of the write order is a permutation of one block of file positions, in file order."""
    train, val = split_pictures(3500, 0.5, 7, 1000)
    both = np.sort(np.concatenate([train, val]))
    assert both.tolist() == list(range(3500))  # every picture on exactly one side
    for side in (train, val):
        blocks = side // 1000
        assert (np.diff(blocks) >= 0).all()  # block 0's pictures first, then block 1's, ...
        assert (np.diff(side) < 0).any()  # shuffled within blocks


def test_same_seed_same_split_and_another_seed_another():
    first, second = split_pictures(5000, 0.05, 12648430, 1000), split_pictures(5000, 0.05, 12648430, 1000)
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    other = split_pictures(5000, 0.05, 1, 1000)
    assert not np.array_equal(first[1], other[1])


def test_validation_share_is_within_a_binomial_bound():
    n, ratio = 200_000, 0.05
    train, val = split_pictures(n, ratio, 0xC0FFEE, 50_000)
    sigma = math.sqrt(n * ratio * (1 - ratio))
    assert abs(len(val) - n * ratio) < 5 * sigma
    assert not np.intersect1d(train, val).size
    assert len(train) + len(val) == n


def write_labelled_bson(tmp_path, pictures_per_product, categories):
    docs = []
    number = 0
    for i, count in enumerate(pictures_per_product):
        docs.append(product(10 + 3 * i, [make_jpeg(number + k) for k in range(count)], categories[i % len(categories)]))
        number += count
    return write_bson(tmp_path / "train.bson", docs)


def test_records_are_every_picture_once_with_its_label_and_product(example_bson, category_csv, tmp_path):
    """Kaggle's sample: train.rec + valid.rec hold each picture of the BSON exactly once, in the split's order,
    labelled with its product's class."""
    out = [str(tmp_path / "train.rec"), str(tmp_path / "valid.rec")]
    assert main(["--bson", example_bson, "--category-csv", category_csv, "--out-train-rec", out[0],
                 "--out-val-rec", out[1], "--val-ratio", "0.3", "--block-size", "40"]) == 0
    docs = read_docs(example_bson)
    pictures = [(doc["_id"], k, bytes(image["picture"])) for doc in docs for k, image in enumerate(doc["imgs"])]
    classes = {int(row[0]): i for i, row in enumerate(read_csv_rows(category_csv)[1:])}
    category_of = {doc["_id"]: doc["category_id"] for doc in docs}
    expected = split_pictures(len(pictures), 0.3, 0xC0FFEE, 40)
    for rec, order in zip(out, expected):
        records = read_records(rec)
        assert [(h.id, h.id2, payload) for h, payload in records] == [pictures[j] for j in order.tolist()]
        assert [int(h.label) for h, _ in records] == [classes[category_of[h.id]] for h, _ in records]
        with open(rec + ".json") as fh:
            info = json.load(fh)
        assert info["records"] == len(order) and info["label_kind"] == "class_id"
    assert 0 < len(expected[1]) < len(pictures)


def test_a_broken_picture_keeps_its_draw_and_is_skipped(tmp_path, category_csv, caplog):
    caplog.set_level("INFO")
    ids = [int(read_csv_rows(category_csv)[1][0])]
    path = write_labelled_bson(tmp_path, [3, 2, 4, 1, 3], ids)
    out = [str(tmp_path / "train.rec"), str(tmp_path / "valid.rec")]
    args = ["--bson", path, "--category-csv", category_csv, "--out-train-rec", out[0], "--out-val-rec", out[1],
            "--val-ratio", "0.4", "--force"]
    main(args)
    good = [[payload for _, payload in read_records(rec)] for rec in out]
    docs = read_docs(path)
    broken = bytes(docs[1]["imgs"][0]["picture"])
    docs[1]["imgs"][0]["picture"] = b"not a jpeg"
    write_bson(path, docs)
    main(args)
    after = [[payload for _, payload in read_records(rec)] for rec in out]
    assert after == [[p for p in side if p != broken] for side in good]
    assert "skipped not_jpeg: 1" in caplog.text


def test_dry_count_writes_nothing(example_bson, tmp_path, caplog):
    caplog.set_level("INFO")
    assert main(["--bson", example_bson, "--dry-count"]) == 0
    assert "split (seed 12648430, blocks of 1000000, val ratio 0.05): train 106, valid 4 pictures" in caplog.text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train_example.bson", "train_example.bson.index.npz"]


@pytest.mark.parametrize("extra,message", [
    ([], "--out-train-rec and --out-val-rec are required (or --dry-count to only count)"),
    (["--dry-count", "--val-ratio", "1.5"], "--val-ratio 1.5: must be in [0, 1)"),
    (["--dry-count", "--block-size", "0"], "--block-size 0: must be > 0"),
    (["--out-train-rec", "T.rec", "--out-val-rec", "V.txt"], "V.txt: the output name must end in .rec"),
])
def test_bad_arguments_stop_with_one_line(example_bson, tmp_path, monkeypatch, capsys, extra, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stop:
        run_cli(main, ["--bson", example_bson, *extra])
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: {message}"


def test_existing_outputs_need_force(example_bson, category_csv, tmp_path, capsys):
    out = ["--out-train-rec", str(tmp_path / "train.rec"), "--out-val-rec", str(tmp_path / "valid.rec")]
    main(["--bson", example_bson, "--category-csv", category_csv, *out])
    with pytest.raises(SystemExit):
        run_cli(main, ["--bson", example_bson, "--category-csv", category_csv, *out])
    assert "output exists; pass --force" in capsys.readouterr().err
    assert main(["--bson", example_bson, "--category-csv", category_csv, *out, "--force"]) == 0


C5270_FILES = ("train.rec", "train.idx", "train.rec.json", "valid.rec", "valid.idx", "valid.rec.json")


def test_create_dataset_c5270_script(demo_dir, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("train.bson", "category_names.csv"):
        (data / name).write_bytes((demo_dir / name).read_bytes())
    run("data/create_dataset_c5270.sh", DATA_DIR=data, expect=0)
    dataset = data / "dataset_c5270"
    docs = read_docs(str(data / "train.bson"))
    pictures = [hashlib.md5(bytes(image["picture"])).digest() for doc in docs for image in doc["imgs"]]
    train, val = ([hashlib.md5(payload).digest() for _, payload in read_records(str(dataset / f"{side}.rec"))]
                  for side in ("train", "valid"))
    assert sorted(train + val) == sorted(pictures)
    expected = split_pictures(len(pictures))
    assert (len(train), len(val)) == tuple(map(len, expected))
    before = mtimes(dataset, C5270_FILES)
    result = run("data/create_dataset_c5270.sh", DATA_DIR=data, expect=0)
    assert "skipped the picture split of train.bson" in result.stderr
    assert mtimes(dataset, C5270_FILES) == before
    run("data/create_dataset_c5270.sh", DATA_DIR=data, FORCE="1", expect=0)
    assert all(mtimes(dataset, C5270_FILES)[name] != before[name] for name in C5270_FILES)


def test_the_one_side_check_catches_a_lost_or_repeated_picture():
    check_one_side_each(3, np.array([0, 2]), np.array([1]))
    for train, val in (([0, 1], [1]), ([0], [1]), ([0, 1, 2], [2])):
        with pytest.raises(UserError, match="split lost or repeated pictures"):
            check_one_side_each(3, np.array(train), np.array(val))
