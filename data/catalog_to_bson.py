"""Turn your own product catalog into Kaggle's files, so that every numbered script runs on it unchanged.

Writes to --out-dir the four files of a Kaggle data folder (DATA_DIR):
  train.bson             labelled products {_id, imgs: [{picture: JPEG}], category_id}, catalog order
  test.bson              products without a category, and the held-out ones (--holdout-fraction),
                         {_id, imgs} without category_id
  category_names.csv     Kaggle's format: category_id,category_level1,category_level2,category_level3
  test_ground_truth.csv  _id,category_id of the held-out test products (only the header when none),
                         for `python -m predict.score_submission --truth`

The catalog is either
  a CSV file with the header `product_id,category,pictures` (any column order; the category column
  may be left out or left empty: a test product; other columns are ignored and named in the log):
  pictures are separated by ';', relative paths are taken from --picture-root (default: the CSV's
  folder); or
  a folder with a folder per category (its name is the category) holding a folder per product
  (its name is the product id) holding the product's pictures, taken in natural name order
  (2.jpg before 10.jpg). Products in the folder named --unlabelled-folder (default `_test`) have no
  category. Hidden files (.DS_Store, ...) are ignored and counted.
Product ids are integers >= 0 (Kaggle's _id).

Categories: without --category-csv, the category names found in the catalog are sorted and get the
ids 1000000000, 1000000001, ... in that order (the same names always give the same ids; the name
fills the three level columns). To keep ids fixed while a catalog grows, pass the category_names.csv
written before (with new categories added as rows at its end) as --category-csv: a catalog category
must then be one of its category_ids or one of its level-3 names (when no other row shares it);
anything else is an "unknown category" bad row.

Pictures: JPEG bytes are kept exactly as they are; other formats OpenCV reads (PNG, BMP, TIFF,
WebP, ...) are re-encoded to JPEG (transparent pixels on white). A picture that is not
--picture-size x --picture-size (default 180, Kaggle's size; the numbered scripts' models read
180x180) is fitted into that square: the longer side scaled to it, the shorter one padded with
white, centred, so the whole product stays visible and undistorted; then encoded as JPEG.
--picture-size 0 keeps every size (then set the model scripts' RESIZE). Kaggle gives at most 4
pictures per product, as --max-pictures 4 does here: a product with more keeps its first 4, and the
pictures left out are counted in the summary (--max-pictures 0: keep all; the pipeline reads any
number).

Nothing is lost silently, nothing written half: a first pass reads every row and decodes every
picture to be written, printing one line per bad row (malformed row, product with no pictures,
missing file, undecodable picture, unknown category, duplicate product id: the later occurrence)
and a summary. With any bad row the run stops there, writing nothing, unless --skip-bad-rows,
which writes the good products and reports the skipped ones by reason. The second pass writes,
holding one product's pictures at a time; outputs appear under their names only when complete,
and existing ones are replaced only with --force.
"""
import argparse
import collections
import csv
import logging
import os
import random
import re
import shutil
import sys
from dataclasses import dataclass, field

import bson
import cv2
import numpy as np
from tqdm import tqdm

from cli.files import atomic_outputs, check_input_file, check_output_folder, check_outputs
from cli.reporting import Timer, human_bytes, plural
from cli.runner import HelpFormatter, UserError, run_cli
from data.categories import HEADER as CATEGORY_HEADER, Categories

log = logging.getLogger(__name__)

OUTPUT_NAMES = ("train.bson", "test.bson", "category_names.csv", "test_ground_truth.csv")
TRUTH_HEADER = ["_id", "category_id"]
CSV_COLUMNS = ("product_id", "category", "pictures")
PICTURE_SEPARATOR = ";"
FIRST_CATEGORY_ID = 1000000000       # Kaggle's category ids are 10-digit numbers from here
LARGEST_CATEGORY_ID = (1 << 31) - 1  # int32 in the BSON, as Kaggle's
KAGGLE_MAX_PICTURES = 4
KAGGLE_PICTURE_SIZE = 180
PAD_COLOUR = (255, 255, 255)         # Kaggle's products are mostly shown on white

# The reasons a row is bad, in the order the summary lists them.
MALFORMED = "malformed row"
NO_PICTURES = "product with no pictures"
MISSING_FILE = "missing file"
UNDECODABLE = "undecodable picture"
UNKNOWN_CATEGORY = "unknown category"
DUPLICATE = "duplicate product id"
REASONS = (MALFORMED, NO_PICTURES, MISSING_FILE, UNDECODABLE, UNKNOWN_CATEGORY, DUPLICATE)

# What the writing pass does with each picture, decided by the checking pass (one byte per picture).
KEEP, REENCODE, FIT = 0, 1, 2

cv2.setNumThreads(1)  # one picture at a time; the machine's other cores stay free


@dataclass
class CatalogRow:
    """One product as the catalog lists it. `problem` is (reason, detail) when the row itself is bad."""
    where: str                     # the file and line, or the product's folder
    product_id: int = None
    category: str = None           # None: no category, a test product
    pictures: list = field(default_factory=list)
    problem: tuple = None


# ---------------------------------------------------------------- reading the catalog

def natural_key(name):
    """'2.jpg' before '10.jpg': digit runs compare as numbers."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name) if part]


def parse_product_id(text):
    """The integer product id, or None."""
    text = text.strip()
    if not re.fullmatch(r"\d+", text) or int(text) >= 1 << 63:
        return None
    return int(text)


def csv_rows(path, picture_root, ignored_columns):
    """CatalogRows of a CSV catalog, in file order; names ignored columns in `ignored_columns`."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = [name.strip() for name in next(reader, [])]
            missing = [name for name in ("product_id", "pictures") if name not in header]
            if missing:
                raise UserError(f"{path}: line 1: header needs the columns {','.join(CSV_COLUMNS)} "
                                f"(category optional), got {','.join(header) or 'an empty line'}")
            if len(set(header)) != len(header):
                raise UserError(f"{path}: line 1: a column name repeats in {','.join(header)}")
            column = {name: i for i, name in enumerate(header)}
            ignored_columns.extend(name for name in header if name not in CSV_COLUMNS)
            for fields in reader:
                if not fields or fields == [""]:
                    continue
                yield csv_row(f"{path} line {reader.line_num}", fields, header, column, picture_root)
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: byte {exc.start}: not UTF-8 text; a catalog CSV is text") from None
    except csv.Error as exc:
        raise UserError(f"{path}: not a CSV text file ({exc})") from None


def csv_row(where, fields, header, column, picture_root):
    if len(fields) != len(header):
        return CatalogRow(where, problem=(MALFORMED, f"{len(fields)} fields, the header has {len(header)}"))
    raw_id = fields[column["product_id"]]
    product_id = parse_product_id(raw_id)
    if product_id is None:
        return CatalogRow(where, problem=(MALFORMED, f"product_id {raw_id!r} is not an integer >= 0"))
    category = fields[column["category"]].strip() if "category" in column else ""
    names = [name.strip() for name in fields[column["pictures"]].split(PICTURE_SEPARATOR) if name.strip()]
    row = CatalogRow(where, product_id, category or None, [os.path.join(picture_root, name) for name in names])
    if not names:
        row.problem = (NO_PICTURES, "its pictures field is empty")
    return row


def folder_rows(root, unlabelled_folder, hidden):
    """CatalogRows of a folder catalog: categories in name order, products in id order, pictures in natural
    order. Counts the hidden files and folders it ignores in `hidden` (a one-item list)."""
    def visible(folder):
        names = os.listdir(folder)
        hidden[0] += sum(name.startswith(".") for name in names)
        return [name for name in names if not name.startswith(".")]

    for category_name in sorted(visible(root)):
        category_folder = os.path.join(root, category_name)
        if not os.path.isdir(category_folder):
            yield CatalogRow(category_folder, problem=(MALFORMED, "a file where a category folder belongs"))
            continue
        category = None if category_name == unlabelled_folder else category_name
        for product_name in sorted(visible(category_folder), key=natural_key):
            product_folder = os.path.join(category_folder, product_name)
            product_id = parse_product_id(product_name)
            if not os.path.isdir(product_folder):
                yield CatalogRow(product_folder, problem=(MALFORMED, "a file where a product folder belongs"))
            elif product_id is None:
                yield CatalogRow(product_folder, problem=(
                    MALFORMED, f"folder name {product_name!r} is not a product id (an integer >= 0)"))
            else:
                names = sorted(visible(product_folder), key=natural_key)
                row = CatalogRow(product_folder, product_id, category, [os.path.join(product_folder, n) for n in names])
                folders = [n for n in names if os.path.isdir(os.path.join(product_folder, n))]
                if folders:
                    row.problem = (MALFORMED, f"a folder where pictures belong: {folders[0]}")
                elif not names:
                    row.problem = (NO_PICTURES, "its folder holds no files")
                yield row


class Catalog:
    """The rows of a CSV or folder catalog; iterating twice gives the same rows in the same order."""

    def __init__(self, path, picture_root=None, unlabelled_folder="_test"):
        self.path = path
        self.is_folder = os.path.isdir(path)
        if not self.is_folder:
            check_input_file(path, "catalog")
        self.picture_root = picture_root or os.path.dirname(os.path.abspath(path))
        self.unlabelled_folder = unlabelled_folder
        self.ignored_columns = []
        self.hidden = [0]

    def __iter__(self):
        self.ignored_columns.clear()
        self.hidden[0] = 0
        if self.is_folder:
            return folder_rows(self.path, self.unlabelled_folder, self.hidden)
        return csv_rows(self.path, self.picture_root, self.ignored_columns)


# ---------------------------------------------------------------- categories

class CategoryTable:
    """Catalog category -> category_id: from the user's category CSV, or from the catalog's names."""

    def __init__(self, given=None):
        self.given = given            # Categories of --category-csv, or None
        self.names = set()            # the catalog's names when ids come from them
        self.ids = {}
        if given is not None:
            level3 = collections.Counter(given.level3_names)
            self.ids = {name: int(cid) for name, cid in zip(given.level3_names, given.category_ids)
                        if level3[name] == 1}

    def problem(self, category):
        """(UNKNOWN_CATEGORY, detail) when a given category CSV does not name `category`, else None."""
        if self.given is None or category in self.ids:
            return None
        if re.fullmatch(r"\d+", category) and int(category) in self.given:
            return None
        return UNKNOWN_CATEGORY, f"{category!r} is neither a category_id nor a unique level-3 name of {self.given.path}"

    def add(self, category):
        if self.given is None:
            self.names.add(category)

    def finish(self):
        """Number the catalog's names (sorted) when no category CSV was given."""
        if self.given is None:
            if FIRST_CATEGORY_ID + len(self.names) - 1 > LARGEST_CATEGORY_ID:
                raise UserError(f"{len(self.names)} categories: more than the ids from {FIRST_CATEGORY_ID} "
                                f"to {LARGEST_CATEGORY_ID}")
            self.ids = {name: FIRST_CATEGORY_ID + rank for rank, name in enumerate(sorted(self.names))}

    def category_id(self, category):
        if category in self.ids:
            return self.ids[category]
        return int(category)   # a category_id of the given CSV (checked by problem())

    def __len__(self):
        return len(self.given) if self.given is not None else len(self.ids)

    def write_csv(self, path):
        if self.given is not None:   # the user's file, byte for byte
            shutil.copyfile(self.given.path, path)
            return
        with open(path, "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh, lineterminator="\n")
            writer.writerow(CATEGORY_HEADER)
            for name, category_id in sorted(self.ids.items(), key=lambda item: item[1]):
                writer.writerow([category_id, name, name, name])


# ---------------------------------------------------------------- pictures

def is_jpeg(data):
    return data[:3] == b"\xff\xd8\xff"


def picture_format(data):
    """A short name of the picture's format from its first bytes, for the summary."""
    for magic, name in ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG", "PNG"), (b"BM", "BMP"), (b"GIF8", "GIF"),
                        (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF")):
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    return "other"


def decode_picture(data):
    """BGR uint8 picture of encoded bytes, or None. JPEGs decode as the pipeline decodes them; other
    formats keep their alpha so that transparent pixels become white, and 16-bit ones are scaled to 8."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    if is_jpeg(data):
        return cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        return None
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        return None
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        alpha = image[:, :, 3:4].astype(np.float32) / 255.0
        return (image[:, :, :3] * alpha + np.array(PAD_COLOUR, np.float32) * (1.0 - alpha)).round().astype(np.uint8)
    return image[:, :, :3] if image.shape[2] >= 3 else None


def picture_action(data, image, picture_size):
    """KEEP (JPEG bytes as they are), REENCODE (another format, its size) or FIT (into the square)."""
    height, width = image.shape[:2]
    if picture_size and (height, width) != (picture_size, picture_size):
        return FIT
    return KEEP if is_jpeg(data) else REENCODE


def fit_square(image, size):
    """The whole picture scaled into size x size (longer side = size), centred on white."""
    height, width = image.shape[:2]
    scale = size / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
    square = np.empty((size, size, 3), np.uint8)
    square[:] = PAD_COLOUR
    top, left = (size - new_h) // 2, (size - new_w) // 2
    square[top:top + new_h, left:left + new_w] = resized
    return square


def encode_jpeg(image, quality):
    ok, buffer = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise UserError("OpenCV could not encode a JPEG")
    return buffer.tobytes()


def read_bytes(path):
    with open(path, "rb") as fh:
        return fh.read()


# ---------------------------------------------------------------- checking pass

class BadRows:
    """Prints one line per bad row (above any progress bar) and counts them by reason."""

    def __init__(self, stream=None):
        self.stream = stream
        self.counts = collections.Counter()
        self.positions = set()

    def report(self, position, row, reason, detail):
        who = f"product {row.product_id}: " if row.product_id is not None else ""
        tqdm.write(f"bad row: {row.where}: {who}{reason}: {detail}", file=self.stream or sys.stderr)
        self.counts[reason] += 1
        self.positions.add(position)

    def __len__(self):
        return len(self.positions)

    def describe(self):
        return ", ".join(f"{self.counts[r]} {r}" for r in REASONS if self.counts[r])


@dataclass
class CheckResult:
    """What the checking pass learnt, in memory bounded by the number of products (no pictures)."""
    bad: BadRows
    actions: bytearray = field(default_factory=bytearray)     # per picture to write, in catalog order
    labelled: dict = field(default_factory=dict)               # product_id -> category of good labelled products
    picture_size: int = 0
    rows: int = 0
    good_products: int = 0
    unlabelled_products: int = 0
    listed_pictures: int = 0
    left_out_pictures: int = 0
    trimmed_products: int = 0
    kept_jpegs: int = 0                                        # written byte for byte
    converted: collections.Counter = field(default_factory=collections.Counter)  # format -> pictures not JPEG
    fitted: int = 0                                            # of another size, fitted into the square


def picture_problem(path, picture_size):
    """(reason, detail) of a picture that cannot be used, else (None, action, format)."""
    try:
        data = read_bytes(path)
    except FileNotFoundError:
        return (MISSING_FILE, path), None, None
    except OSError as exc:
        return (MISSING_FILE, f"{path} ({exc.strerror})"), None, None
    image = decode_picture(data) if data else None
    if image is None:
        return (UNDECODABLE, f"{path} ({human_bytes(len(data))}, {picture_format(data)}: OpenCV cannot read it)"), \
            None, None
    return None, picture_action(data, image, picture_size), picture_format(data)


def check_catalog(catalog, categories, max_pictures, picture_size, bad_stream=None, progress=True):
    """The first pass: every row read, every picture to be written decoded; bad rows printed and counted."""
    result = CheckResult(bad=BadRows(bad_stream), picture_size=picture_size)
    first_seen = {}      # product_id -> where: duplicates name the first occurrence
    with tqdm(catalog, unit="product", desc="check", disable=not progress) as rows:
        for position, row in enumerate(rows):
            result.rows += 1
            problem, actions = row_problem(row, categories, first_seen, max_pictures, picture_size, result)
            if problem is not None:
                result.bad.report(position, row, *problem)
                continue
            result.actions.extend(actions)
            result.good_products += 1
            result.listed_pictures += len(row.pictures)
            if max_pictures and len(row.pictures) > max_pictures:
                result.trimmed_products += 1
                result.left_out_pictures += len(row.pictures) - max_pictures
            if row.category is None:
                result.unlabelled_products += 1
            else:
                categories.add(row.category)
                result.labelled[row.product_id] = row.category
    categories.finish()
    return result


def row_problem(row, categories, first_seen, max_pictures, picture_size, result):
    """The first problem of a row ((reason, detail) or None) and, for a good row, its pictures' actions."""
    if row.problem is not None:
        return row.problem, None
    if row.product_id in first_seen:
        return (DUPLICATE, f"first at {first_seen[row.product_id]}"), None
    first_seen[row.product_id] = row.where
    if row.category is not None:
        problem = categories.problem(row.category)
        if problem:
            return problem, None
    kept = row.pictures[:max_pictures] if max_pictures else row.pictures
    for path in row.pictures[len(kept):]:   # left out: they need only exist
        if not os.path.isfile(path):
            return (MISSING_FILE, path), None
    actions, formats = [], []
    for path in kept:
        problem, action, name = picture_problem(path, picture_size)
        if problem:
            return problem, None
        actions.append(action)
        formats.append(name)
    result.converted.update(name for name in formats if name != "JPEG")
    result.kept_jpegs += sum(action == KEEP for action in actions)
    result.fitted += sum(action == FIT for action in actions)
    return None, actions


# ---------------------------------------------------------------- held-out products

def choose_holdout(labelled, fraction, seed):
    """A seeded random `fraction` of the labelled products for the test set, never a category's last
    training product (so that every category is trained on)."""
    if fraction <= 0 or not labelled:
        return set()
    product_ids = sorted(labelled)
    chosen = random.Random(seed).sample(product_ids, round(len(product_ids) * fraction))
    left = collections.Counter(labelled.values())
    held_out = set()
    for product_id in chosen:
        category = labelled[product_id]
        if left[category] > 1:
            left[category] -= 1
            held_out.add(product_id)
    return held_out


# ---------------------------------------------------------------- writing pass

def product_pictures(row, actions, picture_size, jpeg_quality):
    """The product's JPEGs as the checking pass decided (one product's pictures in memory at a time)."""
    pictures = []
    for path, action in zip(row.pictures, actions):
        data = read_bytes(path)
        if action == KEEP:
            if not is_jpeg(data):
                raise UserError(f"{path}: changed since it was checked (no longer a JPEG); run again")
            pictures.append(data)
            continue
        image = decode_picture(data)
        if image is None:
            raise UserError(f"{path}: changed since it was checked (no longer decodable); run again")
        if action == FIT:
            image = fit_square(image, picture_size)
        pictures.append(encode_jpeg(image, jpeg_quality))
    return pictures


def document(product_id, pictures, category_id=None):
    """A document in Kaggle's key order: _id, imgs, then category_id (train only)."""
    doc = {"_id": product_id, "imgs": [{"picture": bson.Binary(p)} for p in pictures]}
    if category_id is not None:
        doc["category_id"] = category_id
    return bson.encode(doc)


def write_outputs(catalog, check, categories, held_out, paths, max_pictures, picture_size, jpeg_quality,
                  progress=True):
    """The second pass: the good rows to train.bson / test.bson, the category and truth CSVs. Returns counts."""
    counts = collections.Counter()
    actions = iter(check.actions)
    with atomic_outputs(*paths) as (train_tmp, test_tmp, csv_tmp, truth_tmp), \
            open(train_tmp, "wb", buffering=8 << 20) as train, open(test_tmp, "wb", buffering=8 << 20) as test, \
            open(truth_tmp, "w", newline="", encoding="utf-8") as truth_fh, \
            tqdm(total=check.good_products, unit="product", desc="write", disable=not progress) as bar:
        truth = csv.writer(truth_fh, lineterminator="\n")
        truth.writerow(TRUTH_HEADER)
        for position, row in enumerate(catalog):
            if position in check.bad.positions:
                continue
            row.pictures = row.pictures[:max_pictures] if max_pictures else row.pictures
            pictures = product_pictures(row, [next(actions) for _ in row.pictures], picture_size, jpeg_quality)
            category_id = None if row.category is None else categories.category_id(row.category)
            side = "train" if category_id is not None and row.product_id not in held_out else "test"
            raw = document(row.product_id, pictures, category_id if side == "train" else None)
            (train if side == "train" else test).write(raw)
            if side == "test" and category_id is not None:
                truth.writerow([row.product_id, category_id])
                counts["held_out"] += 1
            counts[f"{side}_products"] += 1
            counts[f"{side}_pictures"] += len(pictures)
            bar.update(1)
        if next(actions, None) is not None or counts["train_products"] + counts["test_products"] != check.good_products:
            raise UserError(f"{catalog.path}: changed while it was converted; nothing written, run again")
        categories.write_csv(csv_tmp)
    return counts


# ---------------------------------------------------------------- command

def build_parser():
    parser = argparse.ArgumentParser(prog="python -m data.catalog_to_bson", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--catalog", required=True,
                        help="catalog CSV (product_id,category,pictures) or folder (category/product/pictures)")
    parser.add_argument("--out-dir", required=True,
                        help="folder for train.bson, test.bson, category_names.csv, test_ground_truth.csv "
                             "(created if missing): the DATA_DIR of the numbered scripts")
    parser.add_argument("--category-csv",
                        help="category_names.csv whose ids to use (copied to --out-dir); a catalog category must "
                             "be one of its category_ids or level-3 names. Default: number the catalog's names")
    parser.add_argument("--picture-root",
                        help="folder that relative picture paths of a CSV catalog start from (default: the CSV's)")
    parser.add_argument("--unlabelled-folder", default="_test",
                        help="in a folder catalog, the category folder whose products have no category")
    parser.add_argument("--holdout-fraction", type=float, default=0.0,
                        help="fraction of the labelled products moved to test.bson without their category, which "
                             "goes to test_ground_truth.csv (never a category's last product)")
    parser.add_argument("--holdout-seed", type=int, default=0, help="seed of the held-out choice")
    parser.add_argument("--max-pictures", type=int, default=KAGGLE_MAX_PICTURES,
                        help="pictures kept per product, the first ones (Kaggle: 4); the rest are counted; 0: all")
    parser.add_argument("--picture-size", type=int, default=KAGGLE_PICTURE_SIZE,
                        help="pictures of another size are fitted into this square on white (Kaggle: 180); "
                             "0: keep every size")
    parser.add_argument("--jpeg-quality", type=int, default=90, help="JPEG quality of re-encoded pictures, 1-100")
    parser.add_argument("--skip-bad-rows", action="store_true",
                        help="write the good products and report the bad rows, instead of writing nothing")
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    return parser


def check_arguments(args):
    if not os.path.exists(args.catalog):
        raise UserError(f"{args.catalog}: catalog not found (a CSV file or a folder)")
    if not 0.0 <= args.holdout_fraction < 1.0:
        raise UserError(f"--holdout-fraction {args.holdout_fraction}: must be in [0, 1)")
    if args.max_pictures < 0:
        raise UserError(f"--max-pictures {args.max_pictures}: must be >= 0 (0: all)")
    if args.picture_size < 0 or 0 < args.picture_size < 16:
        raise UserError(f"--picture-size {args.picture_size}: must be 0 (keep) or at least 16")
    if not 1 <= args.jpeg_quality <= 100:
        raise UserError(f"--jpeg-quality {args.jpeg_quality}: must be in 1..100")
    if os.path.isdir(args.catalog) and (os.path.realpath(args.out_dir) + os.sep).startswith(
            os.path.realpath(args.catalog) + os.sep):
        raise UserError(f"{args.out_dir}: --out-dir is inside the catalog folder {args.catalog}; its files would "
                        "become catalog rows; choose a folder outside it")
    if args.picture_root and not os.path.isdir(args.picture_root):
        raise UserError(f"{args.picture_root}: --picture-root is not a folder")


def log_summary(catalog, check, categories, counts, paths, seconds):
    log.info("in: %s, %s (%s listed) in %s", plural(check.rows, "row"), plural(check.good_products, "good product"),
             plural(check.listed_pictures, "picture"), catalog.path)
    if catalog.ignored_columns:
        log.info("ignored columns: %s", ", ".join(catalog.ignored_columns))
    if catalog.hidden[0]:
        log.info("ignored %s", plural(catalog.hidden[0], "hidden file or folder", "hidden files or folders"))
    if check.bad:
        log.warning("skipped %s: %s", plural(len(check.bad), "bad row"), check.bad.describe())
    written = counts["train_pictures"] + counts["test_pictures"]
    formats = ", ".join(f"{n} {name}" for name, n in sorted(check.converted.items()))
    reasons = [f"from {formats}"] if formats else []
    if check.fitted:
        reasons.append(f"{check.fitted} of another size fitted into {check.picture_size}x{check.picture_size}")
    log.info("pictures: %d written: %d JPEG kept byte for byte, %d re-encoded to JPEG%s", written, check.kept_jpegs,
             written - check.kept_jpegs, f" ({'; '.join(reasons)})" if reasons else "")
    if check.left_out_pictures:
        log.warning("left out %s of %s above --max-pictures",
                    plural(check.left_out_pictures, "picture"), plural(check.trimmed_products, "product"))
    log.info("categories: %d", len(categories))
    log.info("out: train %s, %s -> %s (%s)", plural(counts["train_products"], "product"),
             plural(counts["train_pictures"], "picture"), paths[0], human_bytes(os.path.getsize(paths[0])))
    log.info("out: test %s (%d held out with their category in %s, %d without category), %s -> %s (%s)",
             plural(counts["test_products"], "product"), counts["held_out"], os.path.basename(paths[3]),
             counts["test_products"] - counts["held_out"], plural(counts["test_pictures"], "picture"), paths[1],
             human_bytes(os.path.getsize(paths[1])))
    log.info("out: %s", paths[2])
    if counts["train_products"] == 0:
        log.warning("train.bson holds no products: nothing to train on (test.bson can be predicted with models "
                    "trained on --category-csv's categories)")
    log.info("done in %.1f s", seconds)


def convert_catalog(args, progress=True, bad_stream=None):
    """Check the catalog, then write the outputs; returns the counts (see log_summary)."""
    check_arguments(args)
    catalog = Catalog(args.catalog, args.picture_root, args.unlabelled_folder)
    check_output_folder(args.out_dir)
    paths = [os.path.join(args.out_dir, name) for name in OUTPUT_NAMES]
    if os.path.isdir(args.out_dir):   # a folder still to be made holds nothing to overwrite
        check_outputs(paths, args.force, inputs=[args.category_csv] if args.category_csv else [])
    categories = CategoryTable(Categories.load(args.category_csv) if args.category_csv else None)
    timer = Timer()
    check = check_catalog(catalog, categories, args.max_pictures, args.picture_size, bad_stream, progress)
    if check.bad and not args.skip_bad_rows:
        raise UserError(f"{plural(len(check.bad), 'bad row')} in {args.catalog} ({check.bad.describe()}): nothing "
                        f"written; fix them, or pass --skip-bad-rows (SKIP_BAD_ROWS=1) to write the "
                        f"{plural(check.good_products, 'good product')}")
    if check.good_products == 0:
        raise UserError(f"{args.catalog}: no products to write")
    os.makedirs(args.out_dir, exist_ok=True)
    held_out = choose_holdout(check.labelled, args.holdout_fraction, args.holdout_seed)
    counts = write_outputs(catalog, check, categories, held_out, paths, args.max_pictures, args.picture_size,
                           args.jpeg_quality, progress)
    log_summary(catalog, check, categories, counts, paths, timer.seconds)
    counts.update(bad_rows=len(check.bad), kept_jpegs=check.kept_jpegs, fitted=check.fitted,
                  left_out_pictures=check.left_out_pictures, categories=len(categories))
    counts.update({f"skipped {reason}": n for reason, n in check.bad.counts.items()})
    return counts


def main(argv=None):
    args = build_parser().parse_args(argv)
    convert_catalog(args)
    return 0


if __name__ == "__main__":
    run_cli(main)
