"""Data stage at Kaggle's counts: 7,069,896 products, 12,371,293 pictures, a BSON over 4 GiB.

Every other benchmark runs on at most a few hundred megabytes, where per-product Python
objects and 32-bit offsets go unnoticed. This one generates, once, a BSON with the real
file's counts and cached in the work dir: products with 1-4 pictures in Kaggle's
proportions (so the real mean of 12,371,293 / 7,069,896), real category ids (from
`--category-csv`, else generated ones), and tiny valid JPEGs made distinct (distinct MD5s)
by a counter in a comment segment, padded to `--picture-bytes` so that the file's size is
the 10 GB of the issue's measurement. Then it runs, each as its own process with the
input's page cache warm, and reports wall time and peak RSS:

  index build; split, first run (index build included) and with the index cached; the
  naive three-pass split (benchmarks.naive_data_stage); bson2rec of the 95% training
  split (shuffled, its index build included); the MD5 dictionary of the whole file; and
  a `predict --cut 1000` with a tiny network.

`--scale 0.01` scales the counts down for a quick run. Outputs are deleted once measured;
the generated BSON and its category CSV stay in the work dir for the next run.

Run from the repository root:  python -m benchmarks.bench_scale [--scale F] [--work-dir DIR]
"""
import argparse
import csv
import os
import struct
import subprocess
import sys

import numpy as np

from benchmarks.bench_data_stage import REPO_ROOT, measure, remove, warm_page_cache
from benchmarks.kaggle_counts import KAGGLE_PICTURE_COUNTS
from benchmarks.report import print_tables

DEFAULT_WORK_DIR = os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"),
                                "cdiscount_mx", "bench_scale")
GENERATED_CATEGORIES = 5270
WRITE_BYTES = 64 << 20  # generated documents are written in pieces of this size
PREDICT_NETWORK, PREDICT_SIZE = "densenet-41", 32  # a tiny network: the index and pipeline are measured


def scaled_counts(scale, table=None):
    """{pictures per product: products} at this scale of `table` (default: train.bson's)."""
    return {k: round(n * scale) for k, n in (table or KAGGLE_PICTURE_COUNTS).items()}


def picture_counts(scale, seed, table=None):
    """Pictures of each product, in file order: `table`'s proportions (default: train.bson's), shuffled."""
    counts = np.concatenate([np.full(n, k, dtype=np.int8) for k, n in scaled_counts(scale, table).items()])
    return np.random.default_rng(seed).permutation(counts)


def base_jpeg(picture_bytes):
    """A valid 8x8 JPEG of `picture_bytes` bytes, with an 8-byte counter at byte 6 (in a comment segment
    padded to the size): (bytes, counter position). Each picture writes its number there."""
    import cv2

    ok, encoded = cv2.imencode(".jpg", np.arange(64, dtype=np.uint8).reshape(8, 8) * 3)
    assert ok
    body = encoded.tobytes()[2:]  # after the start-of-image marker
    payload = picture_bytes - 2 - 4 - len(body)
    if payload < 8 or payload > 65533:
        raise SystemExit(f"--picture-bytes {picture_bytes}: must be {len(body) + 14} to {len(body) + 65539}")
    return b"\xff\xd8\xff\xfe" + struct.pack(">H", payload + 2) + bytes(payload) + body, 6


def document_template(num_pictures, picture, with_category=True):
    """A Kaggle document with `num_pictures` copies of `picture`: (bytes, picture positions, category position);
    without `with_category`, a test document (no category_id; its position None)."""
    elements, at, positions = [], 4 + 9 + 6 + 4, []
    for k in range(num_pictures):
        key = str(k).encode() + b"\x00"
        image = b"\x05picture\x00" + struct.pack("<i", len(picture)) + b"\x00" + picture + b"\x00"
        element = b"\x03" + key + struct.pack("<i", 4 + len(image)) + image
        positions.append(at + len(element) - 1 - len(picture))
        elements.append(element)
        at += len(element)
    array = b"".join(elements)
    array = struct.pack("<i", 4 + len(array) + 1) + array + b"\x00"
    category = b"\x10category_id\x00" + bytes(4) if with_category else b""
    body = b"\x10_id\x00" + bytes(4) + b"\x04imgs\x00" + array + category + b"\x00"
    document = struct.pack("<i", 4 + len(body)) + body
    return document, positions, len(document) - 5 if with_category else None


def write_scale_bson(path, counts, category_ids, picture_bytes, seed):
    """The BSON of the products in `counts`: increasing _ids with gaps, random categories, distinct pictures."""
    rng = np.random.default_rng(seed + 1)
    product_ids = np.cumsum(rng.integers(1, 4, len(counts)))
    categories = rng.choice(np.asarray(category_ids, dtype=np.int64), len(counts))
    number = int(counts.sum())
    write_documents(path, counts, product_ids, categories, np.arange(number), picture_bytes)
    return number


def write_documents(path, counts, product_ids, categories, picture_numbers, picture_bytes):
    """Kaggle documents of `counts` pictures each with these _ids and categories (None: test documents, without
    category_id); each picture is `base_jpeg` with its number of `picture_numbers` (file order) in the counter,
    so that equal numbers are equal bytes (equal MD5s) and different numbers different ones."""
    picture, counter_at = base_jpeg(picture_bytes)
    templates = {k: document_template(k, picture, categories is not None) for k in KAGGLE_PICTURE_COUNTS}
    pack_int, pack_counter = struct.Struct("<i").pack_into, struct.Struct("<Q").pack_into
    numbers = iter(np.asarray(picture_numbers, dtype=np.uint64).tolist())
    categories = categories.tolist() if categories is not None else [None] * len(counts)
    with open(path + ".tmp", "wb") as out:
        piece = bytearray()
        for count, product_id, category_id in zip(counts.tolist(), product_ids.tolist(), categories):
            template, pictures_at, category_at = templates[count]
            document = bytearray(template)
            pack_int(document, 9, product_id)
            for at in pictures_at:
                pack_counter(document, at + counter_at, next(numbers))
            if category_at is not None:
                pack_int(document, category_at, category_id)
            piece += document
            if len(piece) >= WRITE_BYTES:
                out.write(piece)
                piece = bytearray()
        out.write(piece)
    os.replace(path + ".tmp", path)


def category_csv_for(category_csv, out_dir, seed):
    """The category CSV: Kaggle's when given and present, else one with generated ids, written once."""
    if category_csv and os.path.isfile(category_csv):
        return category_csv
    path = os.path.join(out_dir, "category_names.csv")
    if not os.path.exists(path):
        from data.make_demo_data import make_categories, write_category_csv

        write_category_csv(path, make_categories(np.random.default_rng(seed), GENERATED_CATEGORIES))
    return path


def generate(bson_path, csv_path, scale, picture_bytes, seed=0):
    """Write the BSON of this scale with the categories of `csv_path` (run in a child process)."""
    with open(csv_path, newline="", encoding="utf-8") as fh:
        category_ids = [int(row[0]) for row in list(csv.reader(fh))[1:]]
    write_scale_bson(bson_path, picture_counts(scale, seed), category_ids, picture_bytes, seed)


def in_child(call, module="benchmarks.bench_scale"):
    """Run `call` (Python source using `module`) in a child process: this process stays small,
    since Linux folds its peak RSS into every measured child's."""
    subprocess.run([sys.executable, "-c", f"from {module} import *; {call}"], check=True, cwd=REPO_ROOT)


def ensure_bson(work_dir, scale, picture_bytes, category_csv, seed=0):
    """The generated BSON of this scale (made once, then reused) and its category CSV."""
    out_dir = os.path.join(work_dir, f"scale_{scale:g}_{picture_bytes}b")
    os.makedirs(out_dir, exist_ok=True)
    csv_path = category_csv_for(category_csv, out_dir, seed)
    bson_path = os.path.join(out_dir, "train.bson")
    if not os.path.exists(bson_path):
        counts = scaled_counts(scale)
        print(f"generating {bson_path}: {sum(counts.values()):,} products, "
              f"{sum(k * n for k, n in counts.items()):,} pictures", flush=True)
        in_child(f"generate({bson_path!r}, {csv_path!r}, {scale!r}, {picture_bytes!r}, {seed!r})")
    return bson_path, csv_path


def checkpoint_name(num_classes):
    return f"{PREDICT_NETWORK}-{PREDICT_SIZE}-{num_classes}"


def steps(bson_path, csv_path, out_dir, checkpoint):
    """(name, argv, files removed before the run, files removed after it) of each measured command."""
    py = [sys.executable, "-m"]
    out = lambda name: os.path.join(out_dir, name)  # noqa: E731
    index_cache = bson_path + ".index.npz"
    train, val = out("train_train.bson"), out("train_valid.bson")
    split_args = ["--input-bson", bson_path, "--val-ratio", "0.05", "--random-seed", str(0xC0FFEE)]
    split = py + ["data.split_train_bson", *split_args, "--save-train-bson", train, "--save-val-bson", val, "--force"]
    naive = [out("naive_train.bson"), out("naive_val.bson")]
    rec = [out("train.rec"), out("train.idx")]
    symbol, params = checkpoint
    # Order: at most the input and one set of outputs on disk at a time, so that the page cache holds
    # what the next command reads.
    return [
        ("index build", [sys.executable, "-c", f"from data.bson_index import BsonIndex; BsonIndex.open({bson_path!r})"],
         [index_cache], []),
        ("split, first run (index build included)", split, [index_cache, train, val], [train, val]),
        ("split, index cached", split, [train, val], []),
        ("bson2rec of the 95% train split (shuffled, index build included)",
         py + ["data.bson2rec", "--bson", train, "--category-csv", csv_path, "--out-rec", rec[0], "--force"],
         [train + ".index.npz", *rec], [*rec, train, val, train + ".index.npz", val + ".index.npz"]),
        ("naive split (3 decode passes)", py + ["benchmarks.naive_data_stage", "split", *split_args,
                                                "--save-train-bson", naive[0], "--save-val-bson", naive[1]], naive,
         naive),
        ("MD5 dictionary", py + ["data.bson_md5_dict", "--bson", bson_path, "--out", out("md5_dict.npz"), "--force"],
         [out("md5_dict.npz")], [out("md5_dict.npz")]),
        ("predict --cut 1000", py + ["predict.predict", "--bson", bson_path, "--category-csv", csv_path,
                                     "--symbol", symbol, "--params", params, "--cut", "1000",
                                     "--image-shape", f"3,{PREDICT_SIZE},{PREDICT_SIZE}", "--batch-size", "64",
                                     "--num-procs", "1", "--output", out("predict.csv"), "--force"],
         [out("predict.csv")], [out("predict.csv")]),
    ]


def run_steps(bson_path, csv_path, out_dir, checkpoint, only=None):
    """Measure each step (warm input); returns [(name, Measurement)]."""
    results = []
    for name, argv, before, after in steps(bson_path, csv_path, out_dir, checkpoint):
        if only and not any(name.startswith(word) for word in only):
            continue
        remove(before)
        warm_page_cache(argv[argv.index("--bson") + 1] if "--bson" in argv else bson_path)
        log_path = os.path.join(out_dir, "log_" + "".join(c if c.isalnum() else "_" for c in name)[:40] + ".txt")
        measurement = measure(argv, log_path)
        print(f"{name}: {measurement.wall_s:.1f} s, peak RSS {measurement.max_rss / 1e9:.2f} GB", flush=True)
        results.append((name, measurement))
        remove(after)
    return results


def format_table(results, num_products, num_images, size):
    per_million = 1e6 / num_products
    lines = [f"BSON: {num_products:,} products, {num_images:,} pictures, {size / 1e9:.1f} GB; 2 cores, warm page cache",
             "",
             "| command | wall | peak RSS | wall per million products |",
             "|---|---:|---:|---:|"]
    for name, m in results:
        lines.append(f"| {name} | {m.wall_s:.1f} s | {m.max_rss / 1e9:.2f} GB | {m.wall_s * per_million:.1f} s |")
    return "\n".join(lines)


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", default=DEFAULT_WORK_DIR,
                        help="where the generated BSON is cached and outputs go (about 3x the BSON's size free)")
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of Kaggle's counts (0.01: a quick run)")
    parser.add_argument("--picture-bytes", type=int, default=770,
                        help="bytes per generated JPEG (770: a 10 GB file at full counts, as the issue's)")
    parser.add_argument("--category-csv", default=None,
                        help="Kaggle's category_names.csv for real category ids (default: generated ids)")
    parser.add_argument("--only", nargs="*", default=None, help="run only the steps whose names start with these words")
    parser.add_argument("--markdown", default=None, help="also write the table to this file")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if not 0 < args.scale <= 1:
        raise SystemExit(f"--scale {args.scale}: must be in (0, 1]")
    bson_path, csv_path = ensure_bson(args.work_dir, args.scale, args.picture_bytes, args.category_csv)
    out_dir = os.path.dirname(bson_path)
    with open(csv_path, newline="", encoding="utf-8") as fh:
        num_classes = sum(1 for _ in fh) - 1
    prefix = os.path.join(args.work_dir, checkpoint_name(num_classes))
    checkpoint = f"{prefix}-symbol.json", f"{prefix}-0001.params"
    if not os.path.exists(checkpoint[1]):  # made in a child: this process does not import MXNet
        in_child("from benchmarks.bench_predict import make_checkpoint; "
                 f"make_checkpoint({args.work_dir!r}, PREDICT_NETWORK, PREDICT_SIZE, {num_classes}, "
                 f"checkpoint_name({num_classes}))")
    results = run_steps(bson_path, csv_path, out_dir, checkpoint, args.only)
    counts = scaled_counts(args.scale)
    print_tables([format_table(results, sum(counts.values()), sum(k * n for k, n in counts.items()),
                               os.path.getsize(bson_path))], args.markdown)


if __name__ == "__main__":
    main()
