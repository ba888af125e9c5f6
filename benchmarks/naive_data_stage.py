"""Naive baselines of the data-stage commands, written the obvious way with pymongo's `bson`.

They exist only to be timed against `data.split_train_bson`, `data.bson2rec` and
`data.bson_md5_dict` by `benchmarks.bench_data_stage`:

  split     decode the whole file once to collect the ids, choose the validation ids
            with the original seeded shuffle + sample, then one decode pass per output
            re-encoding each kept document with bson.encode (3 reads of the input);
  bson2rec  decode every document, hold every (header, JPEG) record in a Python list,
            random.shuffle it and write it with MXIndexedRecordIO;
  md5       decode every document, MD5 each picture into dicts of dicts
            (MD5 hex -> {category: count}, product hash -> {category: count}), save as JSON.
"""
import argparse
import collections
import csv
import hashlib
import json
import random

import bson


def documents(path):
    with open(path, "rb") as fh:
        yield from bson.decode_file_iter(fh)


def split(args):
    ids = [doc["_id"] for doc in documents(args.input_bson)]
    random.seed(args.random_seed)
    random.shuffle(ids)
    val_ids = set(random.sample(ids, int(len(ids) * args.val_ratio)))
    for out_path, want_val in ((args.save_train_bson, False), (args.save_val_bson, True)):
        with open(out_path, "wb") as out:
            for doc in documents(args.input_bson):
                if (doc["_id"] in val_ids) == want_val:
                    out.write(bson.encode(doc))


def bson2rec(args):
    import mxnet as mx

    from data.recordio import idx_path_of  # here, like mxnet: the split and md5 baselines start as before

    with open(args.category_csv, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))[1:]
    class_of = {int(row[0]): class_id for class_id, row in enumerate(rows)}
    records = []
    for doc in documents(args.bson):
        label = float(class_of[doc["category_id"]])
        for position, image in enumerate(doc["imgs"]):
            records.append((mx.recordio.IRHeader(0, label, doc["_id"], position), image["picture"]))
    random.seed(args.shuffle_seed)
    random.shuffle(records)
    writer = mx.recordio.MXIndexedRecordIO(idx_path_of(args.out_rec), args.out_rec, "w")
    for i, (header, picture) in enumerate(records):
        writer.write_idx(i, mx.recordio.pack(header, picture))
    writer.close()


def md5(args):
    images = collections.defaultdict(collections.Counter)
    products = collections.defaultdict(collections.Counter)
    for doc in documents(args.bson):
        digests = [hashlib.md5(image["picture"]).hexdigest() for image in doc["imgs"]]
        for digest in digests:
            images[digest][doc["category_id"]] += 1
        products["_".join(sorted(set(digests)))][doc["category_id"]] += 1
    with open(args.out, "w") as fh:
        json.dump({"images": images, "products": products}, fh)


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m benchmarks.naive_data_stage", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("split", help="split a BSON into train/val BSONs (3 decode passes)")
    p.add_argument("--input-bson", required=True, help="BSON to split")
    p.add_argument("--val-ratio", type=float, default=0.05, help="fraction of products for validation")
    p.add_argument("--random-seed", type=int, default=0xC0FFEE, help="seed of Python's random")
    p.add_argument("--save-train-bson", required=True, help="output BSON of training products")
    p.add_argument("--save-val-bson", required=True, help="output BSON of validation products")
    p.set_defaults(run=split)
    p = commands.add_parser("bson2rec", help="BSON -> shuffled .rec/.idx, all records in memory")
    p.add_argument("--bson", required=True, help="labelled BSON")
    p.add_argument("--category-csv", required=True, help="Kaggle category_names.csv")
    p.add_argument("--out-rec", required=True, help="output .rec; the .idx is written beside it")
    p.add_argument("--shuffle-seed", type=int, default=0xC0FFEE, help="seed of the record order")
    p.set_defaults(run=bson2rec)
    p = commands.add_parser("md5", help="MD5 dictionaries as dicts of dicts, saved as JSON")
    p.add_argument("--bson", required=True, help="labelled BSON")
    p.add_argument("--out", required=True, help="output JSON")
    p.set_defaults(run=md5)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
