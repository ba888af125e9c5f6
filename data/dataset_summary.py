"""Summarise a data folder: products and images of each BSON, records of each .rec, MD5 dictionary totals.

Reads only offset indexes, `.idx` files and dictionary metadata, so it is quick on the full data.
"""
import argparse
import glob
import os

from data.bson_index import BsonIndex
from cli.reporting import human_bytes
from cli.runner import HelpFormatter, UserError, run_cli

LOOKS_FOR = "*.bson, *.rec (with its .idx) and md5_dict*.npz, in it and its subfolders"
from data.md5_dict import Md5Dictionary
from data.recordio import count_records, idx_path_of


def bson_rows(data_dir):
    for path in sorted(glob.glob(os.path.join(data_dir, "**", "*.bson"), recursive=True)):
        index = BsonIndex.open(path)
        labels = "labelled" if index.has_labels else "no labels"
        yield (os.path.relpath(path, data_dir), f"{len(index):,} products", f"{index.num_images:,} images",
               f"{labels}, {human_bytes(os.path.getsize(path))}")


def rec_rows(data_dir):
    for path in sorted(glob.glob(os.path.join(data_dir, "**", "*.rec"), recursive=True)):
        if os.path.isfile(idx_path_of(path)):
            records = f"{count_records(path):,} records"
        else:
            records = "? records (no .idx beside it)"
        yield os.path.relpath(path, data_dir), records, "", human_bytes(os.path.getsize(path))


def dict_rows(data_dir):
    for path in sorted(glob.glob(os.path.join(data_dir, "**", "md5_dict*.npz"), recursive=True)):
        meta = Md5Dictionary.load(path).meta
        yield (os.path.relpath(path, data_dir), f"{meta['unique_images']:,} image MD5s",
               f"{meta['image_label_conflicts']:,} conflicts",
               f"{meta['refined_images']:,} refined; {meta['unique_product_hashes']:,} product hashes")


def summary_lines(data_dir):
    rows = [*bson_rows(data_dir), *rec_rows(data_dir), *dict_rows(data_dir)]
    widths = [max(len(r[i]) for r in rows) for i in range(4)] if rows else [0] * 4
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m data.dataset_summary", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--data-dir", required=True, help="folder with train.bson, dataset_A/ ...")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.data_dir):
        what = "is a file, not a folder" if os.path.exists(args.data_dir) else "folder not found"
        raise UserError(f"{args.data_dir}: {what}")
    lines = summary_lines(args.data_dir)
    if not lines:
        print(f"nothing found in {args.data_dir}: looked for {LOOKS_FOR}")
        return 0
    print(f"data in {args.data_dir}:")
    for line in lines:
        print("  " + line)
    return 0


if __name__ == "__main__":
    run_cli(main)
