"""Split a Kaggle BSON by picture into a training and a validation .rec (the original's cdiscount_c5270).

M06 and M10 trained on `cdiscount_c5270_{train,val}.rec`, made by the original's first converter
(data/bson2rec.py of 2017-09/10, run with --shuffle --val-ratio 0.05 --cut-off 5270, every picture
kept) before it split by product. Its split, reproduced here draw for draw:
`random.seed(0xC0FFEE)` once; the pictures in file order, in consecutive blocks of 1,000,000 (the
last block holds the rest); each block `random.shuffle`d, then each picture of the shuffled block, in
that order, goes to validation when `random.random() < 0.05` and to training otherwise; records are
written in that order. The draws depend only on the number of pictures: on Kaggle's 12,371,293 they
give the log's 11,752,908 training and 618,385 validation pictures (tests/test_split_pictures.py).
A product's pictures can land on both sides.

Records are written as data.bson2rec writes them (label = class_id, header id = product `_id`,
id2 = picture position, the JPEG bytes, X.rec.json beside each .rec). A broken JPEG keeps its draw,
as in the original, and is then skipped and counted. `--dry-count` prints the counts without writing.
"""
import argparse
import collections
import logging
import os
import random

import numpy as np
from tqdm import tqdm

from cli.files import check_input_file, check_outputs
from cli.reporting import Timer, plural
from cli.runner import HelpFormatter, UserError, run_cli
from data.bson2rec import output_idx_path, product_classes, rec_info, write_records
from data.bson_index import NO_CATEGORY, BsonIndex
from data.categories import Categories, default_category_csv
from data.recordio import rec_info_path
from data.split_train_bson import check_val_ratio

log = logging.getLogger(__name__)

ORIGINAL_SEED = 0xC0FFEE
ORIGINAL_BLOCK_SIZE = 1_000_000


def split_pictures(num_pictures, val_ratio=0.05, seed=ORIGINAL_SEED, block_size=ORIGINAL_BLOCK_SIZE, progress=False):
    """Picture positions (file order 0..n-1) of the training and the validation side, each in write order:
    one `random` state seeded once; per block of `block_size` pictures in file order, a shuffle, then one
    `random()` draw per picture of the shuffled block (validation when below `val_ratio`)."""
    check_val_ratio(val_ratio)
    check_block_size(block_size)
    rng = random.Random(seed)
    train, val = [], []
    with tqdm(total=num_pictures, unit="pic", desc="split", disable=not progress) as bar:
        for start in range(0, num_pictures, block_size):
            block = list(range(start, min(start + block_size, num_pictures)))
            rng.shuffle(block)
            draw = rng.random
            to_val = np.fromiter((draw() for _ in block), dtype=np.float64, count=len(block)) < val_ratio
            block = np.asarray(block, dtype=np.int64)
            train.append(block[~to_val])
            val.append(block[to_val])
            bar.update(len(block))
    joined = [np.concatenate(side) if side else np.zeros(0, dtype=np.int64) for side in (train, val)]
    return joined[0], joined[1]


def check_block_size(block_size):
    if block_size <= 0:
        raise UserError(f"--block-size {block_size}: must be > 0")


def check_one_side_each(num_pictures, train, val):
    """Every picture on exactly one side; raises if not."""
    marks = np.zeros(num_pictures, dtype=np.uint8)
    np.add.at(marks, train, 1)
    np.add.at(marks, val, 1)
    if len(train) + len(val) != num_pictures or (marks != 1).any():
        raise UserError(f"split lost or repeated pictures: {len(train)} train + {len(val)} valid "
                        f"for {num_pictures} pictures")


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m data.split_pictures", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--bson", required=True, help="Kaggle train.bson")
    parser.add_argument("--out-train-rec", default=None, help="output training .rec (its .idx and .rec.json beside it)")
    parser.add_argument("--out-val-rec", default=None, help="output validation .rec (its .idx and .rec.json beside it)")
    parser.add_argument("--category-csv", default=None,
                        help="Kaggle category_names.csv (default: $DATA_DIR/category_names.csv, "
                             "DATA_DIR defaulting to data_dir)")
    parser.add_argument("--val-ratio", type=float, default=0.05, help="chance of each picture to go to validation")
    parser.add_argument("--random-seed", type=int, default=ORIGINAL_SEED,
                        help="seed of Python's random (12648430 = 0xC0FFEE: the original's)")
    parser.add_argument("--block-size", type=int, default=ORIGINAL_BLOCK_SIZE,
                        help="pictures per shuffled block (the original's 1,000,000)")
    parser.add_argument("--dry-count", action="store_true",
                        help="print how many pictures each side gets and write nothing (no outputs needed)")
    parser.add_argument("--skip-corrupt", action="store_true",
                        help="skip unreadable documents (reported) instead of stopping")
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    return parser


def check_inputs(args):
    """Inputs and outputs, before the BSON is indexed; returns the outputs' (rec, idx) pairs."""
    check_input_file(args.bson, "BSON")
    check_val_ratio(args.val_ratio)
    check_block_size(args.block_size)
    if args.dry_count:
        return []
    if not args.out_train_rec or not args.out_val_rec:
        raise UserError("--out-train-rec and --out-val-rec are required (or --dry-count to only count)")
    if args.category_csv:
        check_input_file(args.category_csv, "category CSV")
    outputs = [(rec, output_idx_path(rec)) for rec in (args.out_train_rec, args.out_val_rec)]
    check_outputs([path for rec, idx in outputs for path in (rec, idx, rec_info_path(rec))], args.force,
                  inputs=[args.bson, args.category_csv or default_category_csv()])
    return outputs


def main(argv=None):
    args = build_parser().parse_args(argv)
    outputs = check_inputs(args)
    timer = Timer()
    index = BsonIndex.open(args.bson, skip_corrupt=args.skip_corrupt)
    log.info("in: %s, %s%s", plural(len(index), "product"), plural(index.num_images, "picture"),
             f"; {plural(len(index.skipped), 'corrupt document')} skipped" if index.skipped else "")
    train, val = split_pictures(index.num_images, args.val_ratio, args.random_seed, args.block_size, progress=True)
    share = len(val) / max(index.num_images, 1)
    log.info("split (seed %d, blocks of %d, val ratio %g): train %d, valid %d pictures (%.4f%% valid)",
             args.random_seed, args.block_size, args.val_ratio, len(train), len(val), 100 * share)
    check_one_side_each(index.num_images, train, val)
    log.info("check: every picture on exactly one side")
    if args.dry_count:
        log.info("--dry-count: nothing written; %.1f s", timer.seconds)
        return 0
    if not (index.products["category_id"] != NO_CATEGORY).any():
        raise UserError(f"{args.bson}: no product has a category_id; the split needs a labelled train.bson")
    category_csv = args.category_csv or default_category_csv()
    categories = Categories.load(category_csv)
    image_products = np.repeat(np.arange(len(index), dtype=np.int32), index.products["num_imgs"])
    labels = product_classes(index, categories).astype(np.int32)[image_products]
    info = rec_info(categories, 3, category_csv, shuffled=True)  # blocks shuffled as the original's
    for side, order, (rec, idx) in (("train", train, outputs[0]), ("valid", val, outputs[1])):
        skipped = collections.Counter()
        written = write_records(index, order, labels, image_products, rec, idx, skipped, info=info)
        log.info("written: %s: %d records -> %s (+ %s, %s)%s", side, written, rec, os.path.basename(idx),
                 os.path.basename(rec_info_path(rec)),
                 "".join(f"; skipped {reason}: {count}" for reason, count in sorted(skipped.items())))
    log.info("done in %.1f s", timer.seconds)
    return 0


if __name__ == "__main__":
    run_cli(main)
