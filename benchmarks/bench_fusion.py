"""Learned fusion (predict.fuse, not the original's) against the original's fixed means, on two test beds.

Each bed, at one fixed budget:
- demo: the demo generator, --demo-categories categories and --demo-products products (180x180);
- fashion: Fashion-MNIST's real product photos as products of 1-4 views (benchmarks.fashion_products,
  64x64; needs Debian's dataset-fashion-mnist package; --beds demo skips it).
The labelled train.bson is split by product, 20% to validation (seed 0xC0FFEE), both halves converted
with data.bson2rec. Three networks of train/symbols (densenet-41, dpn-26, resnext-14) train from
scratch at 3x32x32 for --epochs epochs (NAdam lr 0.001, x0.2 for the last epoch, seed 0). predict.predict
then keeps the probabilities (and, with --features, the feature vectors) of the validation and the test
products with flip TTA, and:
- k-fold on the validation products (predict.fuse train --folds, grouped by product, seeded): each model
  alone, the original's m0 and m1 of the three, and each learned method, with 95% Wilson intervals and
  the paired difference to the better of m0 and m1 (the weights: plain, per picture count, per frequent
  and rare third of the classes; with --features, the fusion net at 10 epochs and a hidden layer of 256,
  the flips as views of their own or averaged);
- on the test products (fitted on all validation products; the beds' ground truth): the original's
  submission (m1 + MD5 override + product hashes) and m0, against the fusion + MD5 override + product
  hashes, scored with 95% intervals.
Every step's output is kept in --work-dir and reused when present, so that a second run redoes only
what changed (delete a folder to redo it).

Run from the repository root:  python -m benchmarks.bench_fusion [--beds demo,fashion] [--markdown OUT.md]
"""
import argparse
import csv
import gzip
import json
import os
import sys

import numpy as np

from benchmarks.commands import once, python_module, train_small_network
from benchmarks.report import format_accuracy, print_tables
from cli.statistics import paired_difference

NETWORKS = ("densenet-41", "dpn-26", "resnext-14")
# (name, predict.fuse train flags) of each learned method; the nets need --features
METHODS = [("weights", []), ("weights per picture count", ["--per-count"]),
           ("weights per frequent/rare third of the classes", ["--frequent-classes", "third"])]
NET_BUDGET = ["--epochs", "10", "--hidden", "256"]  # about 2 s an epoch per 1,000 products at D = 2,826 here
NET_METHODS = [("fusion net, flips as views", ["--method", "net", "--flips", "views", *NET_BUDGET]),
               ("fusion net, flips averaged", ["--method", "net", "--flips", "mean", *NET_BUDGET])]


def methods(args):
    return METHODS + (NET_METHODS if args.features else [])


def make_bed(bed, work, args):
    """The bed's raw files and its split, .rec files and MD5 dictionaries; returns their paths."""
    raw = os.path.join(work, "raw")
    if bed == "demo":
        once(os.path.join(raw, "test_ground_truth.csv"), lambda: python_module(
            "data.make_demo_data", "--out-dir", raw, "--num-categories", str(args.demo_categories),
            "--num-train-products", str(args.demo_products), "--num-test-products", str(args.demo_products // 4),
            "--force"))
    else:
        once(os.path.join(raw, "test_ground_truth.csv"), lambda: python_module(
            "benchmarks.fashion_products", "--out-dir", raw, "--num-train-products", str(args.fashion_products),
            "--num-test-products", str(args.fashion_products // 4), "--force"))
    paths = {"raw": raw, "csv": os.path.join(raw, "category_names.csv"), "test": os.path.join(raw, "test.bson"),
             "truth": os.path.join(raw, "test_ground_truth.csv")}
    for part in ("train", "valid"):
        paths[f"{part}_bson"] = os.path.join(work, f"train_{part}.bson")
        paths[f"{part}_rec"] = os.path.join(work, f"{part}.rec")
    once(paths["valid_bson"], lambda: python_module(
        "data.split_train_bson", "--bson", os.path.join(raw, "train.bson"), "--val-ratio", "0.2",
        "--random-seed", str(0xC0FFEE), "--save-train-bson", paths["train_bson"],
        "--save-val-bson", paths["valid_bson"], "--force"))
    for part in ("train", "valid"):
        once(paths[f"{part}_rec"] + ".json", lambda part=part: python_module(
            "data.bson2rec", "--bson", paths[f"{part}_bson"], "--out-rec", paths[f"{part}_rec"],
            "--category-csv", paths["csv"], "--force"))
    # the validation products are scored with the dictionary of the training half; test with all of train.bson
    paths["valid_dict"] = once(os.path.join(work, "md5_dict_train_train.npz"), lambda: python_module(
        "data.bson_md5_dict", "--bson", paths["train_bson"], "--out", os.path.join(work, "md5_dict_train_train.npz")))
    paths["test_dict"] = once(os.path.join(work, "md5_dict_train.npz"), lambda: python_module(
        "data.bson_md5_dict", "--bson", os.path.join(raw, "train.bson"), "--out",
        os.path.join(work, "md5_dict_train.npz")))
    return paths


def train_networks(work, paths, args):
    """(symbol, params) of each network, trained once."""
    checkpoints = []
    for network in NETWORKS:
        prefix = os.path.join(work, "models", network, network)
        params = train_small_network(network, paths["train_rec"], paths["valid_rec"], prefix, args.epochs,
                                     os.path.join(work, "log.txt"))
        checkpoints.append((f"{prefix}-symbol.json", params))
    return checkpoints


def store_of(work, paths, checkpoints, bson_path, name, features):
    """The probability store of the networks on `bson_path` (flip TTA), made once."""
    store = os.path.join(work, f"{name}_probs" + ("_features" if features else ""))
    if not os.path.isdir(store):
        python_module("predict.predict", "--bson", bson_path, "--category-csv", paths["csv"], "--symbol", *[s for s, _ in checkpoints],
                      "--params", *[p for _, p in checkpoints], "--gpus", "", "--multi-view", "1",
                      "--batch-size", "128", "--num-procs", "1", "--output", "", "--save-probs", store,
                      *(["--save-features"] if features else []), log_path=os.path.join(work, "log.txt"))
    return store


def read_classes(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as fh:
        return {int(row["_id"]): int(row["category_id"]) for row in csv.DictReader(fh)}


def kfold_rows(work, paths, valid_store, args):
    """The k-fold estimate of every method: (name, accuracy, low, high, difference, half width)."""
    rows, fixed_done = [], False
    for name, flags in methods(args):
        prefix = os.path.join(work, "fusion", tag_of(name))
        os.makedirs(os.path.dirname(prefix), exist_ok=True)
        if "third" in flags:  # the most frequent third of the bed's classes, as NighTurs' 2,000 of 5,270
            flags = [str(count_categories(paths["csv"]) // 3) if f == "third" else f for f in flags]
        seconds = python_module("predict.fuse", "train", "--probs", valid_store, "--category-csv", paths["csv"], "--out", prefix,
                      "--folds", str(args.folds), "--seed", "0", "--force", *flags,
                      log_path=os.path.join(work, "log.txt"))
        with open(prefix + "-fuse.json") as fh:
            estimate = json.load(fh)["estimate"]
        for method in estimate["methods"]:
            learned = method["name"].endswith("(k-fold)")  # predict.fuse names its own method's row so
            if learned or not fixed_done:
                label = f"learned {name} (k-fold)" if learned else method["name"].split(":")[-1]
                per_thousand = 1000 * seconds / estimate["products"] / (args.folds + 1)  # k folds + the final fit
                rows.append((label, method["accuracy"], method["low"], method["high"], method["difference"],
                             method["half_width"], f"{per_thousand:.2f} s per 1,000 products per fit" if learned else ""))
        fixed_done = True
    return rows, estimate["products"], estimate["best_fixed"]


def count_categories(category_csv):
    with open(category_csv) as fh:
        return sum(1 for _ in fh) - 1


def tag_of(name):
    return name.replace(" ", "_").replace(",", "").replace("/", "_")


def test_rows(work, paths, test_store, args):
    """The test products: the original's outputs and each fusion's, with the MD5 override and product hashes."""
    out = os.path.join(work, "test")
    os.makedirs(out, exist_ok=True)
    overrides = os.path.join(out, "md5_product_overrides.csv")
    python_module("predict.md5_predict", "--md5-dict", paths["test_dict"], "--bson", paths["test"], "--output",
                  overrides, "--force")
    python_module("predict.ensemble", "--probs", test_store, "--category-csv", paths["csv"], "--output",
                  os.path.join(out, "original.csv"), "--ensembles", str(len(NETWORKS)), "--md5-dict",
                  paths["test_dict"], "--force")
    m1 = os.path.join(out, f"original.e{len(NETWORKS)}.m1.csv")
    submissions = {"original: m0 + MD5": os.path.join(out, "original.csv"),
                   "original: m1 + MD5": m1}
    python_module("predict.postprocess_product", "--src", m1, "--md5", overrides, "--output",
                  os.path.join(out, "original_final.csv"), "--force")
    submissions["original: m1 + MD5 + product hashes (submitted)"] = os.path.join(out, "original_final.csv")
    truth = read_classes(paths["truth"])
    for name, _ in methods(args):
        tag = tag_of(name)
        fused = os.path.join(out, f"{tag}.csv")
        seconds = python_module("predict.fuse", "apply", "--fuse", os.path.join(work, "fusion", tag + "-fuse.json"),
                      "--probs", test_store, "--category-csv", paths["csv"], "--md5-dict", paths["test_dict"],
                      "--output", fused, "--force")
        python_module("predict.postprocess_product", "--src", fused, "--md5", overrides, "--output",
                      os.path.join(out, f"{tag}_final.csv"), "--force")
        submissions[f"learned {name} + MD5 + product hashes (apply: {1000 * seconds / len(truth):.2f} s per "
                    "1,000 products)"] = os.path.join(out, f"{tag}_final.csv")
    ids = sorted(truth)
    expected = np.array([truth[i] for i in ids])
    right = {name: np.array([read_classes(path).get(i) for i in ids]) == expected
             for name, path in submissions.items()}
    baseline = right["original: m1 + MD5 + product hashes (submitted)"]
    rows = []
    for name, correct in right.items():
        difference, half = paired_difference(correct, baseline)
        rows.append(f"| {name} | {format_accuracy(int(correct.sum()), len(correct))} | {difference:+.4f} ± {half:.4f} |")
    return rows, len(ids)


def bed_tables(bed, args):
    work = os.path.join(args.work_dir, bed)
    os.makedirs(work, exist_ok=True)
    print(f"{bed}: data", flush=True)
    paths = make_bed(bed, work, args)
    checkpoints = train_networks(work, paths, args)
    print(f"{bed}: prediction", flush=True)
    valid_store = store_of(work, paths, checkpoints, paths["valid_bson"], "valid", args.features)
    test_store = store_of(work, paths, checkpoints, paths["test"], "test", args.features)
    print(f"{bed}: fusion", flush=True)
    rows, products, best_fixed = kfold_rows(work, paths, valid_store, args)
    store_bytes = sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(valid_store) for f in files)
    kfold = [f"**{bed}**: k-fold over {products} validation products ({args.folds} folds); difference to "
             f"{best_fixed}, paired by product. Store: {store_bytes / 2**20:.2f} MB "
             f"({store_bytes / products / 1024:.1f} KB per product).", "",
             "| method | accuracy (95% interval) | difference | cost |", "|---|---|---|---|"]
    for name, accuracy, low, high, difference, half, cost in rows:
        kfold.append(f"| {name} | {accuracy:.4f} ({low:.4f}-{high:.4f}) | {difference:+.4f} ± {half:.4f} | {cost} |")
    test, count = test_rows(work, paths, test_store, args)
    test_table = [f"**{bed}**: test products ({count}), fitted on all validation products; difference to the "
                  "original's submission, paired by product.", "",
                  "| submission | accuracy (95% interval) | difference |", "|---|---|---|"] + test
    return ["\n".join(kfold), "\n".join(test_table)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", default="/tmp/cdiscount_bench_fusion", help="every step's outputs, reused")
    parser.add_argument("--beds", default="demo,fashion", help="demo, fashion or both")
    parser.add_argument("--demo-categories", type=int, default=60)
    parser.add_argument("--demo-products", type=int, default=12000)
    parser.add_argument("--fashion-products", type=int, default=12000)
    parser.add_argument("--epochs", type=int, default=2, help="epochs of each network (the budget)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--features", action="store_true", help="also keep the feature vectors (--save-features)")
    parser.add_argument("--markdown", help="also write the tables as markdown here")
    args = parser.parse_args(argv)
    tables = []
    for bed in args.beds.split(","):
        tables += bed_tables(bed, args)
    print_tables(tables, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
