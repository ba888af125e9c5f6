"""predict.analyze: per-level-1 accuracy, bar chart and contact sheet of a prediction against a labelled BSON."""
import csv
import os

import cv2
import numpy as np
import pytest

from cli.runner import UserError
from predict import analyze
from tests.helpers import product, run, write_bson, write_category_csv

CATEGORIES = [2000 + k for k in range(6)]  # write_category_csv: level-1 "LEVEL1 {k % 2}", level-3 "CATEGORY {k}"
NUM_PRODUCTS = 30
NUM_PREDICTED = 28  # the last two products of the BSON get no prediction row
NO_PICTURE = 4      # this product has no picture


def product_id(n):
    return 1000 - 7 * n  # descending: BSON order is not sorted order


def true_category(n):
    return CATEGORIES[n % len(CATEGORIES)]


def predicted_category(n):
    return CATEGORIES[(n + 1) % len(CATEGORIES)] if n % 3 == 1 else true_category(n)


def colour(n):
    """A distinct flat BGR colour per product, so a tile on the sheet tells which product it shows."""
    return np.array([(37 * n) % 200 + 20, (91 * n) % 200 + 20, (53 * n + 100) % 200 + 20], dtype=np.uint8)


def flat_jpeg(n):
    ok, buf = cv2.imencode(".jpg", np.tile(colour(n), (24, 24, 1)))
    assert ok
    return buf.tobytes()


@pytest.fixture
def data(tmp_path):
    """(BSON, category CSV, prediction CSV) of the generated products."""
    docs = []
    for n in range(NUM_PRODUCTS):
        pictures = [] if n == NO_PICTURE else [flat_jpeg(n)] + ([flat_jpeg(n + 100)] if n % 5 == 0 else [])
        docs.append(product(product_id(n), pictures, true_category(n)))
    bson_path = write_bson(tmp_path / "train_valid.bson", docs)
    category_csv = write_category_csv(tmp_path / "category_names.csv", CATEGORIES)
    rows = "".join(f"{product_id(n)},{predicted_category(n)}\n" for n in range(NUM_PREDICTED))
    predict_csv = tmp_path / "valid.csv"
    predict_csv.write_text("_id,category_id\n" + rows)
    return bson_path, category_csv, str(predict_csv)


def run_analyze(data, out_dir, *extra):
    bson_path, category_csv, predict_csv = data
    return analyze.main(["--predict-csv", predict_csv, "--bson", bson_path, "--category-csv", category_csv,
                         "--out-dir", str(out_dir), *extra])


def read_table(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def sheet_cells(path, columns):
    """(sheet as BGR array, [(median BGR of the picture area, caption area)] per grid cell, row-major)."""
    sheet = cv2.imread(str(path), cv2.IMREAD_COLOR)
    assert sheet is not None
    cell_w, cell_h = analyze.TILE + analyze.GAP, analyze.TILE + analyze.CAPTION_HEIGHT + analyze.GAP
    cells = []
    for top in range(0, sheet.shape[0], cell_h):
        for left in range(0, sheet.shape[1], cell_w):
            picture = sheet[top:top + analyze.TILE, left:left + analyze.TILE]
            caption = sheet[top + analyze.TILE:top + analyze.TILE + analyze.CAPTION_HEIGHT, left:left + analyze.TILE]
            cells.append((np.median(picture.reshape(-1, 3), axis=0), caption))
    return sheet, cells


def test_level1_counts_match_an_independent_count(data, tmp_path, capsys):
    assert run_analyze(data, tmp_path / "out") == 0
    expected = {}
    for n in range(NUM_PREDICTED):
        name = f"LEVEL1 {CATEGORIES.index(true_category(n)) % 2}"
        counts = expected.setdefault(name, [0, 0])
        counts[0] += 1
        counts[1] += predicted_category(n) == true_category(n)
    rows = read_table(tmp_path / "out" / "level1_accuracy.csv")
    assert {r["level1_name"]: [int(r["products"]), int(r["correct"])] for r in rows} == expected
    for r in rows:
        assert int(r["wrong"]) == int(r["products"]) - int(r["correct"])
        assert float(r["accuracy"]) == pytest.approx(int(r["correct"]) / int(r["products"]), abs=1e-5)
    assert [float(r["accuracy"]) for r in rows] == sorted(float(r["accuracy"]) for r in rows)  # worst first
    correct = sum(c for _, c in expected.values())
    out = capsys.readouterr().out
    assert f"accuracy {correct / NUM_PREDICTED:.5f} ({correct}/{NUM_PREDICTED} predicted products" in out
    assert f"{NUM_PRODUCTS - NUM_PREDICTED} products of train_valid.bson have no prediction row" in out
    for name, (products, right) in expected.items():  # the printed table has the same rows
        assert any(line.split()[:3] == [str(products), str(right), str(products - right)] and line.endswith(name)
                   for line in out.splitlines())


def test_chart_and_contact_sheet_show_the_wrong_products_in_order(data, tmp_path):
    assert run_analyze(data, tmp_path / "out", "--columns", "4") == 0
    chart = cv2.imread(str(tmp_path / "out" / "level1_accuracy.png"))
    assert chart is not None and chart.shape[0] > 100 and chart.shape[1] > 500
    wrong = [n for n in range(NUM_PREDICTED) if predicted_category(n) != true_category(n)]
    rows_of_tiles = -(-len(wrong) // 4)
    sheet, cells = sheet_cells(tmp_path / "out" / "incorrect_products.png", 4)
    assert sheet.shape[:2] == (rows_of_tiles * (analyze.TILE + analyze.CAPTION_HEIGHT + analyze.GAP) - analyze.GAP,
                               4 * (analyze.TILE + analyze.GAP) - analyze.GAP)
    for n, (median, caption) in zip(wrong, cells):
        expected = [200, 200, 200] if n == NO_PICTURE else colour(n)  # grey tile: no picture
        assert np.abs(median - expected).max() <= 4, n
        reds = (caption[..., 2] > 150) & (caption[..., 1] < 110)  # "pred:" line in red, "true:" in green
        greens = (caption[..., 1] > 90) & (caption[..., 2] < 90) & (caption[..., 0] < 90)
        assert reds.sum() > 20 and greens.sum() > 20
    for median, caption in cells[len(wrong):]:  # the rest of the last row stays blank
        assert (median == 255).all() and (caption == 255).all()


def test_save_cut_limits_the_sheet_and_the_saved_pictures(data, tmp_path):
    assert run_analyze(data, tmp_path / "out", "--save-cut", "3", "--save-incorrect", str(tmp_path / "incorrects")) == 0
    sheet, cells = sheet_cells(tmp_path / "out" / "incorrect_products.png", 10)
    assert sheet.shape[:2] == (analyze.TILE + analyze.CAPTION_HEIGHT, 3 * analyze.TILE + 2 * analyze.GAP)
    assert len(cells) == 3
    shown = [n for n in range(NUM_PREDICTED) if predicted_category(n) != true_category(n)][:3]
    assert NO_PICTURE in shown
    saved = sorted(os.path.relpath(os.path.join(d, f), tmp_path / "incorrects")
                   for d, _, files in os.walk(tmp_path / "incorrects") for f in files)
    expected = {f"{CATEGORIES.index(true_category(n)) % 2:03d}/{product_id(n)}.jpg": n
                for n in shown if n != NO_PICTURE}
    assert saved == sorted(expected)
    for name, n in expected.items():  # the first picture, byte for byte
        assert (tmp_path / "incorrects" / name).read_bytes() == flat_jpeg(n)


def test_no_sheet_when_save_cut_is_zero_or_nothing_is_wrong(data, tmp_path):
    assert run_analyze(data, tmp_path / "zero", "--save-cut", "0") == 0
    assert sorted(os.listdir(tmp_path / "zero")) == ["level1_accuracy.csv", "level1_accuracy.png"]
    bson_path, category_csv, _ = data
    perfect = tmp_path / "perfect.csv"
    perfect.write_text("_id,category_id\n" + "".join(f"{product_id(n)},{true_category(n)}\n" for n in range(5)))
    assert analyze.main(["--predict-csv", str(perfect), "--bson", bson_path, "--category-csv", category_csv]) == 0
    out_dir = tmp_path / "perfect_analysis"  # default: beside the prediction
    assert sorted(os.listdir(out_dir)) == ["level1_accuracy.csv", "level1_accuracy.png"]
    assert all(r["accuracy"] == "1.00000" for r in read_table(out_dir / "level1_accuracy.csv"))


def test_the_original_command_line_runs(data, tmp_path, monkeypatch):
    bson_path, category_csv, predict_csv = data
    monkeypatch.setenv("DATA_DIR", os.path.dirname(category_csv))  # category_names.csv from DATA_DIR
    monkeypatch.chdir(tmp_path)
    assert analyze.main(["--predict-csv", predict_csv, "--bson-path", bson_path,
                         "--save-incorrect", "./incorrects"]) == 0
    assert os.path.isfile(tmp_path / "valid_analysis" / "incorrect_products.png")
    assert len(os.listdir(tmp_path / "incorrects" / "000")) + len(os.listdir(tmp_path / "incorrects" / "001")) == 8


def test_wrap_to_width_fits_and_marks_cuts():
    def width(text):
        return len(text)  # one unit per character

    assert analyze.wrap_to_width("pred: COQUE TELEPHONE", 12, 2, width) == ["pred: COQUE", "TELEPHONE"]
    lines = analyze.wrap_to_width("true: CHARGEUR TELEPHONE - ADAPTATEUR SECTEUR", 12, 2, width)
    assert lines == ["true:", "CHARGEUR\u2026"]
    assert analyze.wrap_to_width("SUPERCALIFRAGILISTIC", 8, 2, width) == ["SUPERCA\u2026"]
    assert all(width(line) <= 12 for line in lines)


@pytest.mark.parametrize("rows, message", [
    ("{a},2000\n\n999999,2001\n", "valid.csv: line 4: product _id 999999 is not in train_valid.bson (1 such rows)"),
    ("{a},2000\n{b},2001\n{a},2002\n", "valid.csv: lines 2 and 4: product _id {a} is predicted twice"),
    ("{a},2000\n{b},12345\n", "valid.csv: line 3: product _id {b}: category_id 12345 is not in"),
    ("{a},2000\n{b};2001\n", "valid.csv: line 3: expected two non-negative integers"),
    ("", "valid.csv: no prediction rows"),
])
def test_bad_prediction_rows_are_named_before_any_output(data, tmp_path, rows, message):
    predict_csv = data[2]
    ids = {"a": product_id(0), "b": product_id(1)}
    with open(predict_csv, "w") as fh:
        fh.write("_id,category_id\n" + rows.format(**ids))
    with pytest.raises(UserError, match=message.format(**ids).replace("(", r"\(").replace(")", r"\)")):
        run_analyze(data, tmp_path / "out")
    assert not os.path.exists(tmp_path / "out")


def test_unlabelled_or_unknown_categories_in_the_bson(data, tmp_path):
    bson_path = data[0]
    docs = [product(product_id(n), [flat_jpeg(n)], None if n == 2 else true_category(n)) for n in range(NUM_PRODUCTS)]
    write_bson(bson_path, docs)
    with pytest.raises(UserError, match=f"product _id {product_id(2)} has no category_id: the analysis needs a "
                                        "labelled BSON"):
        run_analyze(data, tmp_path / "out")
    docs[2] = product(product_id(2), [flat_jpeg(2)], 777)
    write_bson(bson_path, docs)
    with pytest.raises(UserError, match=f"product _id {product_id(2)}: category_id 777 is not in"):
        run_analyze(data, tmp_path / "out")
    assert not os.path.exists(tmp_path / "out")


def test_existing_outputs_need_force(data, tmp_path):
    assert run_analyze(data, tmp_path / "out") == 0
    before = (tmp_path / "out" / "level1_accuracy.csv").stat().st_mtime_ns
    with pytest.raises(UserError, match="level1_accuracy.csv: output exists; pass --force"):
        run_analyze(data, tmp_path / "out")
    assert run_analyze(data, tmp_path / "out", "--save-incorrect", str(tmp_path / "inc"), "--force") == 0
    assert (tmp_path / "out" / "level1_accuracy.csv").stat().st_mtime_ns != before
    with pytest.raises(UserError, match=r"inc/00\d/\d+\.jpg: output exists"):
        run_analyze(data, tmp_path / "other", "--save-incorrect", str(tmp_path / "inc"))
    with pytest.raises(UserError, match="--save-cut must be >= 0"):
        run_analyze(data, tmp_path / "out", "--save-cut", "-1", "--force")


def test_run_analyze_script(data, tmp_path):
    bson_path, category_csv, predict_csv = data
    data_dir, out_dir = os.path.dirname(bson_path), tmp_path / "validation"
    os.makedirs(os.path.join(data_dir, "dataset_A"))
    os.rename(bson_path, os.path.join(data_dir, "dataset_A", "train_valid.bson"))
    out_dir.mkdir()
    os.rename(predict_csv, out_dir / "valid.csv")
    env = dict(DATA_DIR=data_dir, OUT_DIR=str(out_dir), SAVE_CUT="5")
    done = run("predict/run_analyze.sh", **env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("accuracy ")
    assert sorted(os.listdir(out_dir / "analysis")) == ["incorrect_products.png", "level1_accuracy.csv",
                                                        "level1_accuracy.png"]
    sheet = cv2.imread(str(out_dir / "analysis" / "incorrect_products.png"))
    assert sheet.shape[1] == 5 * analyze.TILE + 4 * analyze.GAP  # SAVE_CUT=5 reached the command
    again = run("predict/run_analyze.sh", **env, timeout=120)  # outputs exist: one line, exit 2
    assert again.returncode == 2 and again.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "output exists; pass --force" in again.stderr and "Traceback" not in again.stderr


def test_real_example_bson(example_bson, category_csv, tmp_path):
    """Kaggle's train_example.bson with every fourth product predicted wrong."""
    with open(category_csv, newline="", encoding="utf-8") as fh:
        level1_of = {int(r["category_id"]): r["category_level1"] for r in csv.DictReader(fh)}
    from data.bson_index import BsonIndex
    index = BsonIndex.open(example_bson, progress=False)
    ids, truth = index.products["product_id"].tolist(), index.products["category_id"].tolist()
    other = sorted(set(truth))
    predicted = [other[(other.index(t) + 1) % len(other)] if i % 4 == 0 else t for i, t in enumerate(truth)]
    predict_csv = tmp_path / "pred.csv"
    predict_csv.write_text("_id,category_id\n" + "".join(f"{p},{c}\n" for p, c in zip(ids, predicted)))
    assert analyze.main(["--predict-csv", str(predict_csv), "--bson", example_bson, "--category-csv", category_csv,
                         "--out-dir", str(tmp_path / "out"), "--save-incorrect", str(tmp_path / "inc")]) == 0
    expected = {}
    for t, p in zip(truth, predicted):
        counts = expected.setdefault(level1_of[t], [0, 0])
        counts[0] += 1
        counts[1] += t == p
    rows = read_table(tmp_path / "out" / "level1_accuracy.csv")
    assert {r["level1_name"]: [int(r["products"]), int(r["correct"])] for r in rows} == expected
    num_wrong = sum(t != p for t, p in zip(truth, predicted))
    sheet = cv2.imread(str(tmp_path / "out" / "incorrect_products.png"))
    assert sheet.shape[:2] == (-(-num_wrong // 10) * (analyze.TILE + analyze.CAPTION_HEIGHT + analyze.GAP)
                               - analyze.GAP, 10 * (analyze.TILE + analyze.GAP) - analyze.GAP)
    assert sum(len(files) for _, _, files in os.walk(tmp_path / "inc")) == num_wrong


def test_save_incorrect_folder_is_checked_before_the_bson_is_read(data, tmp_path):
    not_a_folder = tmp_path / "inc"
    not_a_folder.write_text("a file")
    with pytest.raises(UserError, match="inc: output folder is a file, not a folder"):
        run_analyze(data, tmp_path / "out", "--save-incorrect", str(not_a_folder))
    bson_path = data[0]
    assert not os.path.exists(str(bson_path) + ".index.npz")  # failed before indexing the BSON
    assert not os.path.exists(tmp_path / "out")
