"""Split a Kaggle BSON by product into training and validation BSONs (seeded).

The choice of validation products is exactly the original solution's, so that the
same `train.bson` and seed give the same DATASET_A / DATASET_B:
ids in file order; random.seed(seed); random.shuffle(ids);
n_val = int(len(ids) * val_ratio); val = set(random.sample(ids, n_val)).

Documents are copied as raw bytes in the input's file order, never decoded and
re-encoded (for Kaggle's files the bytes are those the original's decode and
re-encode wrote); with the offset index cached, the input is read once. The
original's flags all work (`--input-bson` is `--bson` here); its `--num-products` only
sized a progress bar and is ignored.
"""
import argparse
import logging
import os
import random

import numpy as np

from tqdm import tqdm

from data.bson_index import BsonIndex
from cli.files import atomic_outputs, check_input_file, check_outputs
from cli.reporting import Timer, human_bytes, plural
from cli.runner import HelpFormatter, UserError, run_cli

log = logging.getLogger(__name__)


def choose_validation_ids(product_ids, val_ratio, seed):
    """The original split: shuffle then sample, both from one `random` state seeded with `seed`."""
    check_val_ratio(val_ratio)
    ids = np.asarray(product_ids, dtype=np.int64).tolist()  # Python ints, as the original's decoded ids
    random.seed(seed)
    random.shuffle(ids)
    n_val = int(len(ids) * val_ratio)
    return set(random.sample(ids, n_val))


def check_val_ratio(val_ratio):
    if not 0.0 <= val_ratio < 1.0:
        raise UserError(f"--val-ratio {val_ratio}: must be in [0, 1)")


def document_runs(index, is_val):
    """(start, stop, is_val) runs of consecutive products on one side and back to back in the file."""
    products = index.products
    boundary = np.flatnonzero((is_val[1:] != is_val[:-1])
                              | (products["offset"][1:] != products["offset"][:-1] + products["length"][:-1])) + 1
    starts = np.r_[0, boundary].tolist()
    stops = np.r_[boundary, len(products)].tolist()
    return [(start, stop, bool(is_val[start])) for start, stop in zip(starts, stops)] if len(products) else []


def validation_mask(index, val_ids):
    """Whether each product (in file order) is on the validation side."""
    return np.isin(index.products["product_id"], np.fromiter(val_ids, dtype=np.int64, count=len(val_ids)))


def write_split(index, is_val, train_path, val_path):
    """Copy each document to the train or validation file; returns per-file (products, bytes)."""
    counts = {"train": [0, 0], "val": [0, 0]}
    total = int(index.products["length"].sum())
    with atomic_outputs(train_path, val_path) as (train_tmp, val_tmp), \
            tqdm(total=total, unit="B", unit_scale=True, desc="split") as bar:
        out = {side: os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
               for side, tmp in (("train", train_tmp), ("val", val_tmp))}
        try:
            for start, stop, run_is_val in document_runs(index, is_val):
                side = "val" if run_is_val else "train"
                copied = index.copy_documents(out[side], start, stop)
                counts[side][0] += stop - start
                counts[side][1] += copied
                bar.update(copied)
        finally:
            for fd in out.values():
                os.close(fd)
    return counts


def check_split(index, num_chosen, counts):
    """train + val = input and no product on both sides; raises if not. Product ids are unique (the index
    refuses repeats), so each chosen id marked exactly one product when the validation products
    written (the runs of the marks) number the chosen."""
    n_in = len(index)
    n_train, n_val = counts["train"][0], counts["val"][0]
    if n_train + n_val != n_in:
        raise UserError(f"split lost products: {n_train} train + {n_val} val != {n_in} input")
    if n_val != num_chosen:
        raise UserError(f"split mismatch: {n_val} validation products written, {num_chosen} chosen")
    bytes_in = int(index.products["length"].sum())
    if counts["train"][1] + counts["val"][1] != bytes_in:
        raise UserError("split bytes written do not add up to the input's documents")


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m data.split_train_bson", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--bson", "--input-bson", dest="bson", required=True,
                        help="Kaggle train.bson to split (--input-bson: the original's spelling)")
    parser.add_argument("--val-ratio", type=float, default=0.05, help="fraction of products for validation")
    parser.add_argument("--random-seed", type=int, default=0xC0FFEE,
                        help="seed of Python's random (12648430 = 0xC0FFEE: DATASET_A; 1: DATASET_B)")
    parser.add_argument("--save-train-bson", required=True, help="output BSON of training products")
    parser.add_argument("--save-val-bson", required=True, help="output BSON of validation products")
    parser.add_argument("--num-products", type=int, default=None, metavar="N",
                        help="the original's progress-bar total; accepted and ignored (the index counts the products)")
    parser.add_argument("--skip-corrupt", action="store_true",
                        help="skip unreadable documents (reported) instead of stopping")
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    check_input_file(args.bson, "BSON")
    check_outputs([args.save_train_bson, args.save_val_bson], args.force, inputs=[args.bson])
    check_val_ratio(args.val_ratio)
    timer = Timer()
    index = BsonIndex.open(args.bson, skip_corrupt=args.skip_corrupt)
    if args.num_products is not None and args.num_products != len(index):
        log.info("--num-products %d ignored: it only sized the original's progress bar; the input has %d products",
                 args.num_products, len(index))
    val_ids = choose_validation_ids(index.products["product_id"], args.val_ratio, args.random_seed)
    log.info("seed %d, val ratio %g: %d of %d products for validation",
             args.random_seed, args.val_ratio, len(val_ids), len(index))
    is_val = validation_mask(index, val_ids)
    counts = write_split(index, is_val, args.save_train_bson, args.save_val_bson)
    check_split(index, len(val_ids), counts)
    log.info("in: %d products (%s)%s", len(index), human_bytes(int(index.products["length"].sum())),
             f"; skipped {plural(len(index.skipped), 'corrupt document')}" if index.skipped else "")
    log.info("out: train %d products (%s) -> %s", counts["train"][0], human_bytes(counts["train"][1]),
             args.save_train_bson)
    log.info("out: val   %d products (%s) -> %s", counts["val"][0], human_bytes(counts["val"][1]),
             args.save_val_bson)
    log.info("check: train + val = input (%d), no product in both; %.1f s", len(index), timer.seconds)
    warn_if_empty(args, len(index), counts)
    return 0


def warn_if_empty(args, num_products, counts):
    """One warning line when the split had nothing to do on one side, saying what was written."""
    if num_products == 0:
        log.warning("%s holds no products: wrote two empty files, %s and %s", args.bson, args.save_train_bson,
                    args.save_val_bson)
    elif counts["val"][0] == 0:
        log.warning("--val-ratio %g leaves no validation product: wrote all %s to %s and an empty %s",
                    args.val_ratio, plural(num_products, "product"), args.save_train_bson, args.save_val_bson)


if __name__ == "__main__":
    run_cli(main)
