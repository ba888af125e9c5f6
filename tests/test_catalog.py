"""Your own catalog: data.catalog_to_bson (CSV and folder layouts, bad rows, outputs) and data.make_demo_catalog."""
import csv
import gzip
import os
import shutil

import cv2
import numpy as np
import pytest

from cli.runner import UserError
from data import catalog_to_bson
from data.bson_index import NO_CATEGORY, BsonIndex
from data.categories import Categories
from data.make_demo_catalog import generate_demo_catalog
from predict import score_submission
from tests.helpers import read_csv_rows, read_docs, run, write_category_csv

SMALL = dict(num_categories=5, num_products=40, num_unlabelled=6, png_fraction=0.3, other_size_fraction=0.15)


def convert(catalog, out_dir, *flags):
    return catalog_to_bson.main(["--catalog", str(catalog), "--out-dir", str(out_dir), *flags])


def bad_lines(stderr):
    """The bad-row lines of a run's stderr (a progress bar may share a line before a carriage return)."""
    return [line.split("\r")[-1] for line in stderr.splitlines() if "bad row: " in line]


def decode(data, flags=cv2.IMREAD_COLOR):
    return cv2.imdecode(np.frombuffer(data, np.uint8), flags)


@pytest.fixture(scope="module")
def catalogs(tmp_path_factory):
    """One small demo catalog in both layouts (the same products and pictures), converted once each."""
    folder = tmp_path_factory.mktemp("catalog")
    generate_demo_catalog(str(folder), layout="csv", seed=3, progress=False, **SMALL)
    generate_demo_catalog(str(folder), layout="folders", seed=3, progress=False, **SMALL)
    outputs = {}
    for layout, source in (("csv", folder / "catalog.csv"), ("folders", folder / "catalog")):
        out = folder / f"out_{layout}"
        args = catalog_to_bson.build_parser().parse_args(["--catalog", str(source), "--out-dir", str(out),
                                                          "--holdout-fraction", "0.2"])
        outputs[layout] = dict(out=out, counts=catalog_to_bson.convert_catalog(args, progress=False))
    rows = read_csv_rows(folder / "catalog.csv")[1:]
    return dict(folder=folder, outputs=outputs,
                catalog={int(pid): (category, [folder / p for p in pictures.split(";")])
                         for pid, category, pictures in rows})


def test_both_layouts_give_the_same_documents(catalogs):
    out_csv, out_folders = catalogs["outputs"]["csv"]["out"], catalogs["outputs"]["folders"]["out"]
    for name in ("train.bson", "test.bson"):
        by_id = [sorted(read_docs(out / name), key=lambda d: d["_id"]) for out in (out_csv, out_folders)]
        assert by_id[0] == by_id[1] and by_id[0]
    assert (out_csv / "category_names.csv").read_bytes() == (out_folders / "category_names.csv").read_bytes()
    truths = [sorted(read_csv_rows(out / "test_ground_truth.csv")[1:]) for out in (out_csv, out_folders)]
    assert truths[0] == truths[1] and truths[0]   # the same held-out products, in each layout's order


def test_documents_have_kaggles_layout_ids_and_categories(catalogs):
    out = catalogs["outputs"]["csv"]["out"]
    categories = Categories.load(str(out / "category_names.csv"))
    catalog = catalogs["catalog"]
    names = sorted({category for category, _ in catalog.values() if category})
    assert categories.level3_names == names   # sorted names, numbered from 1000000000
    assert categories.category_ids.tolist() == [1000000000 + rank for rank in range(len(names))]
    train = read_docs(out / "train.bson")
    for doc in train:
        assert list(doc) == ["_id", "imgs", "category_id"]
        assert categories.level3_names[categories.class_of(doc["category_id"])] == catalog[doc["_id"]][0]
    truth = {int(pid): int(cid) for pid, cid in read_csv_rows(out / "test_ground_truth.csv")[1:]}
    test = read_docs(out / "test.bson")
    for doc in test:
        assert list(doc) == ["_id", "imgs"]
        category = catalog[doc["_id"]][0]
        if category:   # held out: its category is in the truth CSV only
            assert categories.level3_names[categories.class_of(truth[doc["_id"]])] == category
        else:
            assert doc["_id"] not in truth
    assert sorted(truth) == sorted(pid for pid, (category, _) in catalog.items()
                                   if category and pid not in {d["_id"] for d in train})
    assert {d["_id"] for d in train} | {d["_id"] for d in test} == set(catalog)
    # every category keeps training products
    assert {d["category_id"] for d in train} == set(categories.category_ids.tolist())
    labelled = sum(1 for category, _ in catalog.values() if category)
    assert 0 < len(truth) <= round(0.2 * labelled)   # 20%, less a category's last training product


def test_bson_reads_back_through_the_offset_index(catalogs):
    out = catalogs["outputs"]["csv"]["out"]
    catalog = catalogs["catalog"]
    train, test = BsonIndex.open(str(out / "train.bson")), BsonIndex.open(str(out / "test.bson"))
    assert train.has_labels and not (test.products["category_id"] != NO_CATEGORY).any()
    for index in (train, test):
        for product_id, num_imgs in zip(index.products["product_id"].tolist(), index.products["num_imgs"].tolist()):
            assert num_imgs == min(4, len(catalog[product_id][1]))
    assert len(train) + len(test) == len(catalog)


def test_jpeg_bytes_kept_png_reencoded_and_other_sizes_fitted(catalogs):
    out, counts = catalogs["outputs"]["csv"]["out"], catalogs["outputs"]["csv"]["counts"]
    documents = {d["_id"]: d for d in read_docs(out / "train.bson") + read_docs(out / "test.bson")}
    kept = reencoded_png = fitted = 0
    for product_id, (_, paths) in catalogs["catalog"].items():
        for path, image in zip(paths, documents[product_id]["imgs"]):
            source, written = path.read_bytes(), image["picture"]
            assert written[:3] == b"\xff\xd8\xff"   # every picture in the BSON is a JPEG
            assert decode(written).shape == (180, 180, 3)
            pixels = decode(source)
            if pixels.shape[:2] != (180, 180):   # 320x240: fitted into 180x135, white above and below
                fitted += 1
                fitted_pixels = decode(written)
                assert fitted_pixels[:20].min() > 230 and fitted_pixels[-20:].min() > 230
            elif path.suffix == ".jpg":
                kept += 1
                assert written == source       # byte for byte
            else:
                reencoded_png += 1
                assert np.abs(decode(written).astype(int) - pixels).mean() < 10   # the same picture, JPEG noise aside
    assert kept and reencoded_png and fitted
    assert counts["kept_jpegs"] == kept and counts["fitted"] == fitted
    assert counts["train_pictures"] + counts["test_pictures"] == kept + reencoded_png + fitted


def test_pictures_above_max_are_left_out_and_counted(catalogs, tmp_path):
    catalog = catalogs["catalog"]
    many = {pid: len(paths) for pid, (_, paths) in catalog.items() if len(paths) > 4}
    assert many, "the demo catalog should hold products with more than 4 pictures"
    assert catalogs["outputs"]["csv"]["counts"]["left_out_pictures"] == sum(n - 4 for n in many.values())
    convert(catalogs["folder"] / "catalog.csv", tmp_path, "--max-pictures", "0", "--picture-size", "0")
    documents = {d["_id"]: d for d in read_docs(tmp_path / "train.bson") + read_docs(tmp_path / "test.bson")}
    for pid, count in many.items():
        assert len(documents[pid]["imgs"]) == count
    sizes = {decode(image["picture"]).shape[:2] for d in documents.values() for image in d["imgs"]}
    assert sizes == {(180, 180), (240, 320)}   # --picture-size 0 keeps every size


def test_category_csv_given_keeps_its_ids_and_matches_ids_or_names(tmp_path):
    pictures = tmp_path / "p.jpg"
    pictures.write_bytes(cv2.imencode(".jpg", np.full((180, 180, 3), 90, np.uint8))[1].tobytes())
    given = write_category_csv(tmp_path / "given.csv", [1000000007, 1000000003])  # names CATEGORY 0, CATEGORY 1
    (tmp_path / "catalog.csv").write_text("product_id,category,pictures\n1,CATEGORY 1,p.jpg\n2,1000000007,p.jpg\n")
    convert(tmp_path / "catalog.csv", tmp_path / "out", "--category-csv", given)
    assert (tmp_path / "out" / "category_names.csv").read_bytes() == (tmp_path / "given.csv").read_bytes()
    assert [(d["_id"], d["category_id"]) for d in read_docs(tmp_path / "out" / "train.bson")] == \
        [(1, 1000000003), (2, 1000000007)]


@pytest.fixture
def bad_catalog(tmp_path):
    """A CSV catalog with one bad row of every kind among good ones, and a category CSV."""
    good = cv2.imencode(".jpg", np.full((180, 180, 3), 128, np.uint8))[1].tobytes()
    (tmp_path / "good.jpg").write_bytes(good)
    (tmp_path / "good.png").write_bytes(cv2.imencode(".png", np.full((180, 180, 3), 60, np.uint8))[1].tobytes())
    (tmp_path / "broken.jpg").write_bytes(b"not a picture at all")
    write_category_csv(tmp_path / "categories.csv", [1000000001, 1000000002])   # CATEGORY 0, CATEGORY 1
    (tmp_path / "catalog.csv").write_text(
        "product_id,category,pictures\n"
        "10,CATEGORY 0,good.jpg;good.png\n"         # line 2: good
        "11,CATEGORY 1,missing.jpg\n"               # line 3: missing file
        "12,CATEGORY 1,good.jpg;broken.jpg\n"       # line 4: undecodable picture
        "13,NO SUCH CATEGORY,good.jpg\n"            # line 5: unknown category
        "10,CATEGORY 1,good.jpg\n"                  # line 6: duplicate product id
        "14,CATEGORY 0\n"                           # line 7: malformed: 2 fields
        "abc,CATEGORY 0,good.jpg\n"                 # line 8: malformed: product id
        "15,CATEGORY 0,\n"                          # line 9: no pictures
        "16,,good.jpg\n"                            # line 10: good, no category: a test product
        "17,CATEGORY 1,good.png\n")                 # line 11: good
    return tmp_path


EXPECTED_BAD = {3: "product 11: missing file", 4: "product 12: undecodable picture", 5: "product 13: unknown category",
                6: "product 10: duplicate product id", 7: "malformed row", 8: "malformed row",
                9: "product 15: product with no pictures"}


def check_bad_lines(lines, catalog_path):
    assert len(lines) == len(EXPECTED_BAD)
    for line, (number, what) in zip(lines, sorted(EXPECTED_BAD.items())):
        assert line.startswith(f"bad row: {catalog_path} line {number}: {what}")
    assert "missing.jpg" in lines[0] and "broken.jpg" in lines[1] and "first at" in lines[3]


def test_bad_rows_are_each_reported_and_nothing_is_written(bad_catalog, capsys):
    out = bad_catalog / "out"
    with pytest.raises(UserError) as error:
        convert(bad_catalog / "catalog.csv", out, "--category-csv", str(bad_catalog / "categories.csv"))
    check_bad_lines(bad_lines(capsys.readouterr().err), bad_catalog / "catalog.csv")
    message = str(error.value)
    assert "7 bad rows" in message and "nothing written" in message and "--skip-bad-rows" in message
    assert "2 malformed row" in message and "1 duplicate product id" in message
    assert not out.exists()   # not even the folder


def test_skip_bad_rows_writes_the_good_ones_and_counts_the_skipped(bad_catalog, capsys):
    out = bad_catalog / "out"
    convert(bad_catalog / "catalog.csv", out, "--category-csv", str(bad_catalog / "categories.csv"),
            "--skip-bad-rows")
    check_bad_lines(bad_lines(capsys.readouterr().err), bad_catalog / "catalog.csv")
    train, test = read_docs(out / "train.bson"), read_docs(out / "test.bson")
    assert [(d["_id"], d["category_id"], len(d["imgs"])) for d in train] == [(10, 1000000001, 2), (17, 1000000002, 1)]
    assert [d["_id"] for d in test] == [16]
    assert train[0]["imgs"][0]["picture"] == (bad_catalog / "good.jpg").read_bytes()
    assert sorted(os.listdir(out)) == sorted(catalog_to_bson.OUTPUT_NAMES)


def test_folder_layout_bad_rows(tmp_path, capsys):
    root = tmp_path / "catalog"
    jpeg = cv2.imencode(".jpg", np.full((180, 180, 3), 128, np.uint8))[1].tobytes()
    for product in ("A/1", "A/2", "B/3", "B/x7", "B/4", "_test/5"):
        (root / product).mkdir(parents=True)
    for picture in ("A/1/1.jpg", "A/1/2.jpg", "B/3/1.jpg", "B/x7/1.jpg", "_test/5/a.jpg", "A/2/1.jpg"):
        (root / picture).write_bytes(jpeg)
    (root / "A" / "1" / ".DS_Store").write_bytes(b"hidden")
    (root / "B" / "notes.txt").write_text("a file where a product folder belongs")
    (root / "B" / "3" / "2.jpg").write_bytes(b"\x89PNG truncated")
    shutil.copytree(root / "A" / "2", root / "_test" / "2")    # product 2 also without category
    with pytest.raises(UserError, match="5 bad rows"):
        convert(root, tmp_path / "out")
    lines = bad_lines(capsys.readouterr().err)
    assert lines == [
        f"bad row: {root / 'B' / '3'}: product 3: undecodable picture: {root / 'B' / '3' / '2.jpg'} "
        "(14 B, PNG: OpenCV cannot read it)",
        f"bad row: {root / 'B' / '4'}: product 4: product with no pictures: its folder holds no files",
        f"bad row: {root / 'B' / 'notes.txt'}: malformed row: a file where a product folder belongs",
        f"bad row: {root / 'B' / 'x7'}: malformed row: folder name 'x7' is not a product id (an integer >= 0)",
        f"bad row: {root / '_test' / '2'}: product 2: duplicate product id: first at {root / 'A' / '2'}",
    ]
    counts = catalog_to_bson.convert_catalog(catalog_to_bson.build_parser().parse_args(
        ["--catalog", str(root), "--out-dir", str(tmp_path / "out"), "--skip-bad-rows"]), progress=False)
    assert counts["skipped malformed row"] == 2 and counts["bad_rows"] == 5
    assert [(d["_id"], len(d["imgs"])) for d in read_docs(tmp_path / "out" / "train.bson")] == [(1, 2), (2, 1)]
    assert [d["_id"] for d in read_docs(tmp_path / "out" / "test.bson")] == [5]


def test_transparent_png_pixels_become_white(tmp_path):
    rgba = np.zeros((180, 180, 4), np.uint8)
    rgba[60:120, 60:120] = (0, 0, 255, 255)   # an opaque red square on transparent black
    (tmp_path / "a.png").write_bytes(cv2.imencode(".png", rgba)[1].tobytes())
    (tmp_path / "catalog.csv").write_text("product_id,category,pictures\n1,X,a.png\n")
    convert(tmp_path / "catalog.csv", tmp_path / "out")
    pixels = decode(read_docs(tmp_path / "out" / "train.bson")[0]["imgs"][0]["picture"])
    assert pixels[10, 10].min() > 240 and pixels[90, 90, 2] > 200 and pixels[90, 90, 0] < 50


def test_outputs_are_not_overwritten_without_force(catalogs, tmp_path):
    source = catalogs["folder"] / "catalog.csv"
    convert(source, tmp_path)
    (tmp_path / "test_ground_truth.csv").write_text("mine\n")
    with pytest.raises(UserError, match="output exists; pass --force"):
        convert(source, tmp_path, "--holdout-fraction", "0.1")
    assert (tmp_path / "test_ground_truth.csv").read_text() == "mine\n"
    convert(source, tmp_path, "--holdout-fraction", "0.1", "--force")
    assert len(read_csv_rows(tmp_path / "test_ground_truth.csv")) > 1


def test_argument_and_header_errors_are_one_line(tmp_path):
    (tmp_path / "catalog.csv").write_text("id,category,pictures\n1,X,a.jpg\n")
    with pytest.raises(UserError, match="header needs the columns product_id,category,pictures"):
        convert(tmp_path / "catalog.csv", tmp_path / "out")
    with pytest.raises(UserError, match="catalog not found"):
        convert(tmp_path / "nothing.csv", tmp_path / "out")
    with pytest.raises(UserError, match="--holdout-fraction 1.0"):
        convert(tmp_path / "catalog.csv", tmp_path / "out", "--holdout-fraction", "1")
    with pytest.raises(UserError, match="inside the catalog folder"):
        convert(tmp_path, tmp_path / "out")


def test_truth_scores_through_score_submission(catalogs, capsys):
    out = catalogs["outputs"]["csv"]["out"]
    truth = read_csv_rows(out / "test_ground_truth.csv")
    submission = out.parent / "perfect.csv.gz"
    with gzip.open(submission, "wt") as fh:
        fh.write("_id,category_id\n" + "".join(f"{pid},{cid}\n" for pid, cid in truth[1:]))
    assert score_submission.main(["--truth", str(out / "test_ground_truth.csv"), str(submission)]) == 0
    assert f"1.0000  {len(truth) - 1:>8}" in capsys.readouterr().out


def test_shell_script_passes_its_settings(catalogs, tmp_path):
    env = dict(CATALOG="catalog", DATA_DIR=str(tmp_path / "data"), HOLDOUT_FRACTION="0.2", MAX_PICTURES="0")
    result = run("data/create_catalog_bson.sh", cwd=catalogs["folder"], **env)
    assert result.returncode == 0, result.stderr[-2000:]
    expected = catalogs["outputs"]["folders"]["out"]
    assert (tmp_path / "data" / "test_ground_truth.csv").read_bytes() == (expected / "test_ground_truth.csv").read_bytes()
    assert max(len(d["imgs"]) for d in read_docs(tmp_path / "data" / "train.bson")) > 4   # MAX_PICTURES=0
    again = run("data/create_catalog_bson.sh", cwd=catalogs["folder"], **env)
    assert again.returncode == 2 and again.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "output exists" in again.stderr


def test_demo_catalog_is_seeded(tmp_path):
    generate_demo_catalog(str(tmp_path / "a"), seed=5, progress=False, **SMALL)
    generate_demo_catalog(str(tmp_path / "b"), seed=5, progress=False, **SMALL)
    files = sorted(os.listdir(tmp_path / "a" / "pictures"))
    assert files == sorted(os.listdir(tmp_path / "b" / "pictures"))
    assert {f.rsplit(".", 1)[1] for f in files} == {"jpg", "png"}
    assert all((tmp_path / "a" / "pictures" / f).read_bytes() == (tmp_path / "b" / "pictures" / f).read_bytes()
               for f in files)
    assert (tmp_path / "a" / "catalog.csv").read_bytes() == (tmp_path / "b" / "catalog.csv").read_bytes()
    with pytest.raises(UserError, match="output exists"):
        generate_demo_catalog(str(tmp_path / "a"), seed=5, progress=False, **SMALL)


@pytest.mark.slow
def test_catalog_end_to_end_to_a_scored_submission(tmp_path):
    """A generated catalog through the catalog script, DATASET_A, the MD5 dictionaries, train/demo/D01.sh and
    predict/run_predict.sh, scored against the held-out truth: the numbered scripts unchanged."""
    shop = tmp_path / "shop"
    generate_demo_catalog(str(shop), layout="folders", num_categories=4, num_products=300, num_unlabelled=10,
                          seed=1, progress=False)
    env = dict(CATALOG=str(shop / "catalog"), DATA_DIR=str(shop / "data"), HOLDOUT_FRACTION="0.15",
               MODEL_DIR=str(shop / "models"), NUM_CLASSES="4", GPUS="", DATA_NTHREADS="2", EPOCHS_1="4",
               MODELS="D01:4", ENSEMBLES="1", BATCH_SIZE="64", NUM_PROCS="1", OUT_DIR=str(shop / "submissions"))
    for script in ("data/create_catalog_bson.sh", "data/create_dataset_A.sh", "data/create_train_md5_dict.sh",
                   "train/demo/D01.sh", "predict/run_predict.sh"):
        result = run(script, **env, timeout=900)
        assert result.returncode == 0, f"{script}: {result.stderr[-3000:]}"
    assert "OK: 55 products" in result.stdout   # 45 held out + 10 without category, checked by run_predict.sh
    truth = shop / "data" / "test_ground_truth.csv"
    held_out = len(read_csv_rows(truth)) - 1
    assert held_out == 45
    scored = run(["python", "-m", "predict.score_submission", "--truth", str(truth),
                  str(shop / "submissions" / "submission_final.csv.gz")])
    assert scored.returncode == 0, scored.stderr
    accuracy, covered = scored.stdout.splitlines()[1].split()[-2:]
    assert int(covered) == held_out and float(accuracy) > 0.5   # chance: 0.25
