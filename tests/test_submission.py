"""Submission files: writing and reading, the checker, and merging shard submissions."""
import gzip
import os

import numpy as np
import pytest

from data.bson_index import BsonIndex
from data.categories import Categories
from cli.runner import UserError, run_cli
from predict import check_submission, merge_shards
from predict.submission import read_submission, submission_problems, write_submission
from tests.helpers import make_jpeg, product, write_bson, write_category_csv

# Ids out of numeric order, so "BSON order" and "sorted" differ.
TEST_IDS = [70, 3, 41, 12, 99, 5, 28, 64, 17]
CATEGORIES = [1000010653, 1000010667, 1000004079]


@pytest.fixture
def test_bson(tmp_path):
    return write_bson(tmp_path / "test.bson", [product(pid, [make_jpeg(pid, size=8)]) for pid in TEST_IDS])


@pytest.fixture
def categories_csv(tmp_path):
    return write_category_csv(tmp_path / "category_names.csv", CATEGORIES)


def good_rows():
    return np.array(TEST_IDS), np.array([CATEGORIES[i % 3] for i in range(len(TEST_IDS))])


def write_text(path, text):
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("name", ["sub.csv", "sub.csv.gz"])
def test_round_trip(tmp_path, name):
    ids, cats = np.array([5, 1, 1234567890123]), np.array([1000010653, 7, 1000004079])
    path = str(tmp_path / name)
    write_submission(path, ids, cats)
    with open(path, "rb") as fh:
        raw = fh.read()
    text = gzip.decompress(raw).decode() if name.endswith(".gz") else raw.decode()
    assert raw[:2] == b"\x1f\x8b" if name.endswith(".gz") else raw.startswith(b"_id,category_id\n")
    assert text == "_id,category_id\n5,1000010653\n1,7\n1234567890123,1000004079\n"
    got_ids, got_cats = read_submission(path)
    assert got_ids.dtype == np.int64 and got_cats.dtype == np.int64
    assert got_ids.tolist() == ids.tolist() and got_cats.tolist() == cats.tolist()
    assert os.listdir(tmp_path) == [name]  # no temporary file left behind


def test_gzip_is_deterministic_and_empty_file_round_trips(tmp_path):
    write_submission(str(tmp_path / "a.csv.gz"), [1, 2], [3, 4])
    write_submission(str(tmp_path / "b.csv.gz"), [1, 2], [3, 4])
    assert (tmp_path / "a.csv.gz").read_bytes() == (tmp_path / "b.csv.gz").read_bytes()
    write_submission(str(tmp_path / "empty.csv"), [], [])
    ids, cats = read_submission(str(tmp_path / "empty.csv"))
    assert len(ids) == 0 and len(cats) == 0


def test_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(ValueError):
        write_submission(str(tmp_path / "sub.csv"), [1, 2], [3])
    assert os.listdir(tmp_path) == []


def test_reader_accepts_crlf_bom_and_blank_lines(tmp_path):
    path = tmp_path / "sub.csv"
    path.write_bytes("\ufeff_id,category_id\r\n1,2\r\n\r\n3,4\r\n".encode())
    ids, cats = read_submission(str(path))
    assert ids.tolist() == [1, 3] and cats.tolist() == [2, 4]


@pytest.mark.parametrize("text, line, words", [
    ("id,category\n1,2\n", 1, "header must be _id,category_id"),
    ("", 1, "empty file"),
    ("_id,category_id\n1,2\n3\n", 3, "3"),
    ("_id,category_id\n1,2\n3,4\n5,abc\n", 4, "abc"),
    ("_id,category_id\n1,2,3\n", 2, "1,2,3"),
    ("_id,category_id\n-1,2\n", 2, "-1,2"),
])
def test_bad_header_or_row_names_file_and_line(tmp_path, text, line, words):
    path = write_text(tmp_path / "bad.csv", text)
    with pytest.raises(UserError) as exc:
        read_submission(path)
    assert str(exc.value).startswith(f"{path}: line {line}: ")
    assert words in str(exc.value)


def test_bad_row_in_gzip_names_line(tmp_path):
    path = tmp_path / "bad.csv.gz"
    path.write_bytes(gzip.compress(b"_id,category_id\n1,2\nx,3\n"))
    with pytest.raises(UserError, match=r"bad\.csv\.gz: line 3: "):
        read_submission(str(path))


def test_problems_of_a_good_and_bad_submission(test_bson, categories_csv):
    index, categories = BsonIndex.open(test_bson, progress=False), Categories.load(categories_csv)
    ids, cats = good_rows()
    assert submission_problems(ids, cats, index, categories) == []
    # 4 missing, 70 duplicated, 555 unknown, one unknown category.
    bad_ids = np.array([70, 70, 41, 12, 99, 5, 555])
    bad_cats = np.array([CATEGORIES[0]] * 6 + [42])
    problems = submission_problems(bad_ids, bad_cats, index, categories)
    assert problems == [
        "7 rows, expected 9 (the products of test.bson)",
        "4 products of test.bson have no row: _id 3, 28, 64, 17",
        "1 product id has more than one row: _id 70",
        "1 row has an _id not in test.bson: _id 555",
        "1 row has a category_id not in category_names.csv: _id 555 -> 42",
    ]


def check(argv, capsys):
    code = check_submission.main(argv)
    return code, capsys.readouterr().out


def test_check_submission_passes_a_good_file(tmp_path, test_bson, categories_csv, capsys):
    path = str(tmp_path / "sub.csv.gz")
    write_submission(path, *good_rows())
    code, out = check(["--bson", test_bson, "--csv", categories_csv, path], capsys)
    assert code == 0
    assert out == f"OK: {len(TEST_IDS)} products\n"


@pytest.mark.parametrize("change, message", [
    (lambda ids, cats: (ids[1:], cats[1:]), "1 product of test.bson has no row: _id 70"),
    (lambda ids, cats: (np.r_[ids, ids[2]], np.r_[cats, cats[2]]), "more than one row: _id 41"),
    (lambda ids, cats: (np.r_[ids[:-1], 1234], cats), "an _id not in test.bson: _id 1234"),
    (lambda ids, cats: (ids, np.r_[cats[:-1], 999]), "category_id not in category_names.csv: _id 17 -> 999"),
])
def test_check_submission_reports_each_problem(tmp_path, test_bson, categories_csv, capsys, change, message):
    path = str(tmp_path / "sub.csv")
    write_submission(path, *change(*good_rows()))
    code, out = check(["--bson", test_bson, "--csv", categories_csv, path], capsys)
    assert code == 1
    assert message in out and "OK" not in out


def test_check_submission_exit_codes_through_run_cli(tmp_path, test_bson, categories_csv, capsys):
    bad = write_text(tmp_path / "bad.csv", "_id,category\n1,2\n")
    with pytest.raises(SystemExit) as exc:
        run_cli(check_submission.main, ["--bson", test_bson, "--csv", categories_csv, bad])
    assert exc.value.code == 2
    assert "bad.csv: line 1: header must be" in capsys.readouterr().err
    missing = str(tmp_path / "sub.csv")
    write_submission(missing, *[a[:-1] for a in good_rows()])
    with pytest.raises(SystemExit) as exc:
        run_cli(check_submission.main, ["--bson", test_bson, "--csv", categories_csv, missing])
    assert exc.value.code == 1


def write_shards(tmp_path, test_bson, num_shards=3):
    """Shard i holds BSON products [start, stop) of index.shard(i, n), rows reversed to test the ordering."""
    index = BsonIndex.open(test_bson, progress=False)
    ids, cats = good_rows()
    paths = []
    for i in range(num_shards):
        start, stop = index.shard(i, num_shards)
        path = str(tmp_path / f"shard_{i}.csv")
        write_submission(path, ids[start:stop][::-1], cats[start:stop][::-1])
        paths.append(path)
    return paths


def test_merge_three_shards_in_bson_order(tmp_path, test_bson):
    shards = write_shards(tmp_path, test_bson)
    out = str(tmp_path / "merged.csv.gz")
    # Shards given out of order; the output follows the BSON.
    assert merge_shards.main(["--bson", test_bson, "--output", out, shards[2], shards[0], shards[1]]) == 0
    ids, cats = read_submission(out)
    assert ids.tolist() == TEST_IDS
    assert cats.tolist() == good_rows()[1].tolist()
    with pytest.raises(UserError, match="output exists; pass --force"):
        merge_shards.main(["--bson", test_bson, "--output", out, *shards])
    assert merge_shards.main(["--bson", test_bson, "--output", out, "--force", *shards]) == 0


def test_merge_rejects_a_gap(tmp_path, test_bson):
    shards = write_shards(tmp_path, test_bson)
    out = tmp_path / "merged.csv"
    with pytest.raises(UserError) as exc:
        merge_shards.main(["--bson", test_bson, "--output", str(out), shards[0], shards[2]])
    message = str(exc.value)
    # Shard 1 of 3 holds BSON products 3-5: _id 12, 99, 5.
    assert "3 products of test.bson are in no shard: _id 12, 99, 5" in message
    assert "after the rows of shard_0.csv, before those of shard_2.csv" in message
    assert not out.exists()


def test_merge_rejects_overlap_and_unknown_ids(tmp_path, test_bson):
    shards = write_shards(tmp_path, test_bson)
    extra = str(tmp_path / "extra.csv")
    write_submission(extra, [99, 4242], [CATEGORIES[0], CATEGORIES[1]])
    out = tmp_path / "merged.csv"
    with pytest.raises(UserError) as exc:
        merge_shards.main(["--bson", test_bson, "--output", str(out), *shards, extra])
    message = str(exc.value)
    assert "1 product appears more than once: _id 99 (in shard_1.csv and extra.csv)" in message
    assert "1 row has an _id not in test.bson: _id 4242 (extra.csv)" in message
    assert "in no shard" not in message
    assert not out.exists()
    with pytest.raises(UserError, match="given twice"):
        merge_shards.main(["--bson", test_bson, "--output", str(out), *shards, shards[0]])
