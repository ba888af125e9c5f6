"""Where a prediction goes wrong: accuracy per level-1 category, and the wrongly predicted products to look at.

Compares a prediction CSV (`_id,category_id`, e.g. of the validation split) with the
true categories of a labelled BSON and writes, into --out-dir:
  level1_accuracy.csv     products, correct, wrong and accuracy of each level-1 category
                          (also printed), lowest accuracy first
  level1_accuracy.png     the same as a horizontal bar chart
  incorrect_products.png  a contact sheet: the first picture of each wrongly predicted
                          product (the first --save-cut in CSV order), captioned with its
                          _id and the predicted and true level-3 category names
--save-incorrect DIR also copies those pictures as DIR/<level-1 id>/<_id>.jpg, as the
original did. The true categories come from the BSON's offset index (data.bson_index) and
only the pictures shown are read, so the BSON is not streamed.
"""
import argparse
import csv
import dataclasses
import logging
import math
import os

import numpy as np
from tqdm import tqdm

from data.bson_index import BsonIndex
from data.categories import Categories, default_category_csv
from cli.files import atomic_outputs, check_input_paths, check_output_folder, check_outputs
from cli.runner import HelpFormatter, UserError, run_cli
from predict.submission import read_text, duplicated_ids, positions_in_bson, read_submission

log = logging.getLogger(__name__)

TABLE_CSV = "level1_accuracy.csv"
CHART_PNG = "level1_accuracy.png"
CONTACT_SHEET = "incorrect_products.png"
TILE = 180                 # Kaggle's picture size: real pictures are shown unscaled
GAP = 4                    # white pixels between tiles
CAPTION_FONT_SIZE = 7      # points
LINE_HEIGHT = 12           # pixels per caption line
NAME_LINES = 2             # lines of a category name before it is cut
CAPTION_LINES = 1 + 2 * NAME_LINES  # _id, then the predicted and the true name
CAPTION_HEIGHT = CAPTION_LINES * LINE_HEIGHT + 2
DPI = 100


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m predict.analyze", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--predict-csv", required=True, help="prediction to analyse (_id,category_id; .gz too)")
    parser.add_argument("--bson", "--bson-path", dest="bson", required=True,
                        help="labelled BSON holding every predicted product (e.g. the validation split)")
    parser.add_argument("--category-csv", "--csv", dest="category_csv", default=None,
                        help="category_names.csv (default $DATA_DIR/category_names.csv)")
    parser.add_argument("--out-dir", default=None,
                        help="folder of the outputs (default: beside the prediction, <its name>_analysis)")
    parser.add_argument("--save-cut", type=int, default=100,
                        help="at most this many wrong products on the contact sheet (0: no sheet)")
    parser.add_argument("--columns", type=int, default=10, help="tiles per row of the contact sheet")
    parser.add_argument("--save-incorrect", default=None, metavar="DIR",
                        help="also copy the first picture of those products to DIR/<level-1 id>/<_id>.jpg")
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    return parser


def default_out_dir(predict_csv):
    stem = os.path.basename(predict_csv)
    for ext in (".gz", ".csv"):
        stem = stem[:-len(ext)] if stem.endswith(ext) else stem
    return os.path.join(os.path.dirname(predict_csv), f"{stem}_analysis")


# ---- checking the inputs ----------------------------------------------------------------------
def data_line_numbers(path):
    """File line number of each data row of a prediction CSV (blank lines are skipped by
    read_submission, so row i is not always line i + 2). Only needed to word an error."""
    lines = read_text(path).splitlines()
    return [number for number, line in enumerate(lines[1:], start=2) if line.strip()]


def check_predictions(path, product_ids, category_ids, index, categories):
    """Positions in the BSON and class ids of the predicted products; the first bad row is an error
    naming its line: an _id not in the BSON, a repeated _id, a category_id not in the category CSV."""
    if len(product_ids) == 0:
        raise UserError(f"{path}: no prediction rows")
    positions = positions_in_bson(index, product_ids)
    predicted = categories.classes_of(category_ids)
    repeated = duplicated_ids(product_ids)
    if (positions >= 0).all() and (predicted >= 0).all() and len(repeated) == 0:
        return positions, predicted
    lines = data_line_numbers(path)
    bson_name = os.path.basename(index.path)
    if (positions < 0).any():
        row = int(np.argmax(positions < 0))
        raise UserError(f"{path}: line {lines[row]}: product _id {product_ids[row]} is not in {bson_name} "
                        f"({int((positions < 0).sum())} such rows)")
    if len(repeated):
        rows = np.flatnonzero(product_ids == repeated[0])[:2]
        raise UserError(f"{path}: lines {lines[rows[0]]} and {lines[rows[1]]}: product _id {repeated[0]} "
                        f"is predicted twice ({len(repeated)} repeated ids)")
    row = int(np.argmax(predicted < 0))
    raise UserError(f"{path}: line {lines[row]}: product _id {product_ids[row]}: category_id {category_ids[row]} "
                    f"is not in {categories.path}")


def check_labelled(index):
    if not index.has_labels:
        unlabelled = index.products["product_id"][index.products["category_id"] < 0]
        first = f"product _id {unlabelled[0]} has no category_id" if len(unlabelled) else "it has no products"
        raise UserError(f"{index.path}: {first}: the analysis needs a labelled BSON (a test set has no labels)")


def true_classes(index, positions, categories):
    """Class id of the true category of the BSON products at `positions`."""
    category_ids = index.products["category_id"][positions]
    classes = categories.classes_of(category_ids)
    if (classes < 0).any():
        row = int(np.argmax(classes < 0))
        categories.class_of(category_ids[row], product_id=int(index.products["product_id"][positions[row]]),
                            source=index.path)  # raises the error naming the product
    return classes


@dataclasses.dataclass
class Prediction:
    """The predicted products, row-aligned: _id, position in the BSON, predicted and true class ids."""
    product_ids: np.ndarray
    positions: np.ndarray
    predicted: np.ndarray
    truth: np.ndarray

    def rows(self, selection):
        return Prediction(*(getattr(self, f.name)[selection] for f in dataclasses.fields(self)))


# ---- the per-level-1 table --------------------------------------------------------------------
def level1_table(categories, truth, predicted):
    """One row per level-1 category present in `truth`, lowest accuracy first (then most products):
    dicts of level1_id, level1_name, products, correct, wrong, accuracy."""
    level1 = categories.level1_ids[truth]
    width = len(categories.level1_names)
    products = np.bincount(level1, minlength=width)
    correct = np.bincount(level1, weights=(truth == predicted), minlength=width).astype(np.int64)
    rows = [{"level1_id": i, "level1_name": categories.level1_names[i], "products": int(products[i]),
             "correct": int(correct[i]), "wrong": int(products[i] - correct[i]),
             "accuracy": correct[i] / products[i]} for i in np.flatnonzero(products).tolist()]
    return sorted(rows, key=lambda r: (r["accuracy"], -r["products"], r["level1_id"]))


def format_table(rows):
    lines = [f"{'products':>9} {'correct':>9} {'wrong':>9} {'accuracy':>9}  level-1"]
    for r in rows:
        lines.append(f"{r['products']:>9} {r['correct']:>9} {r['wrong']:>9} {r['accuracy']:>9.5f}  "
                     f"[{r['level1_id']:02d}] {r['level1_name']}")
    return "\n".join(lines)


def write_table_csv(path, rows):
    with atomic_outputs(path) as (tmp,), open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["level1_id", "level1_name", "products", "correct", "wrong", "accuracy"])
        for r in rows:
            writer.writerow([r["level1_id"], r["level1_name"], r["products"], r["correct"], r["wrong"],
                             f"{r['accuracy']:.5f}"])


def draw_level1_chart(rows, overall, out_path, title):
    """Horizontal bars of accuracy per level-1 category, lowest at the top, each labelled with its count."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.26 * len(rows)))
    positions = np.arange(len(rows))
    ax.barh(positions, [r["accuracy"] for r in rows], height=0.7, color="#3b75af")
    ax.set_yticks(positions, [f"[{r['level1_id']:02d}] {r['level1_name']}" for r in rows], fontsize=8)
    ax.set_ylim(len(rows) - 0.5, -0.5)  # top to bottom, without empty margins
    for y, r in zip(positions, rows):
        ax.text(min(r["accuracy"], 1.0) + 0.01, y, f"{r['accuracy']:.3f}  ({r['correct']:,}/{r['products']:,})",
                va="center", fontsize=7)
    ax.axvline(overall, color="grey", ls="--", lw=0.8)
    ax.set_xlim(0, 1.22)
    ax.set_xticks(np.linspace(0, 1, 6))
    ax.set_xlabel(f"accuracy (correct/products); dashed: overall {overall:.4f}")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(out_path, dpi=DPI, format="png")
    plt.close(fig)


# ---- the wrong products ------------------------------------------------------------------------
def first_pictures(index, positions):
    """(RGB picture, raw JPEG bytes) of the first picture of each product; the picture is None when the
    product has none or it does not decode."""
    import cv2

    pictures = []
    for position in tqdm(positions.tolist(), desc="first pictures", unit="products"):
        raw, image = b"", None
        if index.products["num_imgs"][position] > 0:
            raw = index.read_image(int(index.products["first_image"][position]))
            image = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_COLOR)
        pictures.append((None if image is None else cv2.cvtColor(image, cv2.COLOR_BGR2RGB), raw))
    return pictures


def contact_sheet_size(num_tiles, columns):
    """(width, height) in pixels of the contact sheet of `num_tiles` tiles."""
    columns = min(columns, num_tiles)
    rows = math.ceil(num_tiles / columns)
    return columns * (TILE + GAP) - GAP, rows * (TILE + CAPTION_HEIGHT + GAP) - GAP


def wrap_to_width(text, max_width, max_lines, text_width):
    """Word-wrap `text` into at most `max_lines` lines no wider than `max_width` as measured by
    `text_width`; a cut line ends in an ellipsis."""
    lines = []
    for word in text.split():
        joined = f"{lines[-1]} {word}" if lines else word
        if lines and text_width(joined) <= max_width:
            lines[-1] = joined
        else:
            lines.append(word)
    cut = len(lines) > max_lines
    lines = lines[:max_lines]
    for i, line in enumerate(lines):
        if (cut and i == len(lines) - 1) or text_width(line) > max_width:
            while line and text_width(line + "\u2026") > max_width:
                line = line[:-1]
            lines[i] = line.rstrip() + "\u2026"
    return lines


def caption_lines(head, predicted, truth, text_width):
    """The lines under a tile as (text, colour): the head, then each name on up to NAME_LINES lines."""
    lines = [(head, "black")]
    for label, name, colour in (("pred", predicted, "#b8322a"), ("true", truth, "#2a7a2f")):
        lines += [(line, colour) for line in wrap_to_width(f"{label}: {name}", TILE - 4, NAME_LINES, text_width)]
    return lines


def draw_contact_sheet(images, captions, columns, out_path):
    """One PNG tiling `images` (RGB arrays; None draws a grey tile), each captioned with
    `captions` = (head line, predicted name, true name)."""
    import cv2
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.font_manager import FontProperties

    width, height = contact_sheet_size(len(images), columns)
    columns = min(columns, len(images))
    mosaic = np.full((height, width, 3), 255, dtype=np.uint8)
    fig = plt.figure(figsize=(width / DPI, height / DPI), dpi=DPI)
    renderer, font = fig.canvas.get_renderer(), FontProperties(size=CAPTION_FONT_SIZE)

    def text_width(text):
        return renderer.get_text_width_height_descent(text, font, ismath=False)[0]

    for n, (image, caption) in enumerate(zip(images, captions)):
        left, top = (n % columns) * (TILE + GAP), (n // columns) * (TILE + CAPTION_HEIGHT + GAP)
        if image is None:
            mosaic[top:top + TILE, left:left + TILE] = 200
        else:
            mosaic[top:top + TILE, left:left + TILE] = cv2.resize(image, (TILE, TILE), interpolation=cv2.INTER_AREA)
        for line, (text, colour) in enumerate(caption_lines(*caption, text_width)):
            y = top + TILE + 2 + LINE_HEIGHT * line
            fig.text((left + 2) / width, 1 - y / height, text, color=colour, fontproperties=font,
                     va="top", ha="left", parse_math=False)
    fig.figimage(mosaic, 0, 0, origin="upper", zorder=0)
    fig.savefig(out_path, dpi=DPI, format="png")  # lossless: the small caption text stays sharp
    plt.close(fig)


def incorrect_picture_paths(save_dir, index, categories, shown):
    """save_dir/<level-1 id, 3 digits>/<_id>.jpg per shown product that has a picture, the original's
    layout (it named them .png): {row of `shown`: path}."""
    level1_ids = categories.level1_ids[shown.truth].tolist()
    with_picture = (index.products["num_imgs"][shown.positions] > 0).tolist()
    return {row: os.path.join(save_dir, f"{level1:03d}", f"{pid}.jpg")
            for row, (pid, level1, has) in enumerate(zip(shown.product_ids.tolist(), level1_ids, with_picture))
            if has}


def save_incorrect(paths, pictures):
    """Copy the raw first pictures (JPEG bytes as in the BSON) to `paths` ({row of `pictures`: path})."""
    for directory in sorted({os.path.dirname(p) for p in paths.values()}):
        os.makedirs(directory, exist_ok=True)
    with atomic_outputs(*paths.values()) as temps:
        for tmp, row in zip(temps, paths):
            with open(tmp, "wb") as fh:
                fh.write(pictures[row][1])


def write_incorrect(shown, index, categories, sheet, columns, picture_paths):
    """The contact sheet of the `shown` wrong products and, with `picture_paths`, their first pictures."""
    pictures = first_pictures(index, shown.positions)
    captions = [(f"_id {pid}" + ("" if image is not None else " (no readable picture)"),
                 categories.level3_names[p], categories.level3_names[t])
                for pid, p, t, (image, _) in zip(shown.product_ids.tolist(), shown.predicted.tolist(),
                                                 shown.truth.tolist(), pictures)]
    with atomic_outputs(sheet) as (tmp,):
        draw_contact_sheet([image for image, _ in pictures], captions, columns, tmp)
    missing = sum(image is None for image, _ in pictures)
    if missing:
        log.warning("%d wrong products have no readable first picture: drawn as grey tiles", missing)
    if picture_paths:
        save_incorrect(picture_paths, pictures)


# ---- the command ---------------------------------------------------------------------------------
def load_inputs(args):
    """Categories, BSON index and the checked Prediction; the cheap files are read first."""
    categories = Categories.load(args.category_csv)
    product_ids, category_ids = read_submission(args.predict_csv)
    index = BsonIndex.open(args.bson)
    check_labelled(index)
    positions, predicted = check_predictions(args.predict_csv, product_ids, category_ids, index, categories)
    return categories, index, Prediction(product_ids, positions, predicted, true_classes(index, positions, categories))


def check_outputs_in_new_folders(paths, force, inputs):
    """cli.files.check_outputs for outputs in folders this command makes: a missing folder is
    checked as a folder to make (cli.files.check_output_folder)."""
    folders = {os.path.dirname(os.path.abspath(path)) for path in paths}
    check_outputs([p for p in paths if os.path.isdir(os.path.dirname(os.path.abspath(p)))], force, inputs)
    for folder in sorted(f for f in folders if not os.path.isdir(f)):
        check_output_folder(folder)


def report(rows, correct, index, num_predicted):
    """Print the overall accuracy, what the BSON has beyond the prediction, and the table."""
    overall = correct / num_predicted
    print(f"accuracy {overall:.5f} ({correct}/{num_predicted} predicted products of {os.path.basename(index.path)})")
    missing = len(index) - num_predicted
    if missing:
        print(f"{missing} products of {os.path.basename(index.path)} have no prediction row: not counted above "
              f"(counted wrong, the accuracy would be {correct / len(index):.5f})")
    print(format_table(rows))
    return overall


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.save_cut < 0 or args.columns < 1:
        raise UserError("--save-cut must be >= 0 and --columns >= 1")
    out_dir = args.out_dir or default_out_dir(args.predict_csv)
    table_csv, chart_png, sheet = (os.path.join(out_dir, name) for name in (TABLE_CSV, CHART_PNG, CONTACT_SHEET))
    args.category_csv = args.category_csv or default_category_csv()
    inputs = check_input_paths([(args.predict_csv, "--predict-csv"), (args.bson, "--bson BSON"),
                                (args.category_csv, "--category-csv category")])
    check_outputs_in_new_folders([table_csv, chart_png] + ([sheet] if args.save_cut else []), args.force, inputs)
    if args.save_incorrect:
        check_output_folder(args.save_incorrect)  # its files are named after the products: checked again below
    categories, index, prediction = load_inputs(args)
    wrong = np.flatnonzero(prediction.predicted != prediction.truth)
    shown = prediction.rows(wrong[:args.save_cut])
    picture_paths = (incorrect_picture_paths(args.save_incorrect, index, categories, shown)
                     if args.save_incorrect else {})
    check_outputs_in_new_folders(picture_paths.values(), args.force, inputs)
    os.makedirs(out_dir, exist_ok=True)

    rows = level1_table(categories, prediction.truth, prediction.predicted)
    overall = report(rows, len(prediction.truth) - len(wrong), index, len(prediction.truth))
    write_table_csv(table_csv, rows)
    with atomic_outputs(chart_png) as (tmp,):
        draw_level1_chart(rows, overall, tmp, f"{os.path.basename(args.predict_csv)}: accuracy {overall:.4f} "
                                              f"over {len(prediction.truth):,} products")
    outputs = [table_csv, chart_png]
    if len(wrong) and args.save_cut:
        write_incorrect(shown, index, categories, sheet, args.columns, picture_paths)
        outputs.append(sheet)
        if picture_paths:
            outputs.append(f"{len(picture_paths)} first pictures under {args.save_incorrect}")
    elif args.save_cut:
        log.info("no wrong products: no contact sheet")
    log.info("in: %d prediction rows, %d products in %s, %d level-1 categories; out: %d wrong products "
             "(%d on the contact sheet), %s", len(prediction.truth), len(index), args.bson, len(rows), len(wrong),
             len(shown.truth), ", ".join(outputs))
    return 0


if __name__ == "__main__":
    run_cli(main)
