"""Hierarchical heads (train.train_model --level-heads, not the original's) against the class head alone, on
Fashion-MNIST's product photos (benchmarks.fashion_products; needs Debian's dataset-fashion-mnist package): 10
categories in 5 level-2 groups (tops, bottoms, dresses, shoes, bags) under one level-1 group (MODE, so the level-1
head has a single class and learns nothing).

The labelled train.bson (--products products) is split by product, 20% to validation (seed 0xC0FFEE), and both
halves are converted by data.bson2rec twice, with and without --level-labels: the same pictures in the same order,
only the labels differ. densenet-41 trains from scratch at 3x32x32 (--resize 32) for --epochs epochs, NAdam lr
0.001 (x0.2 for the last epoch), batch 32, seed 0: once with the class head alone, once with the level heads and
--head-weights (rwightman's 0.8,0.1,0.1 by default). predict.predict then classifies the validation products (flip
TTA, the pictures' probabilities multiplied: m0) with the class head, and with --combine-levels.

The table: validation accuracy per picture (training's last epoch, class head) and per product, each with its 95%
Wilson interval; the products' difference to the class head alone, paired by product, with its 95% interval; the
level-2 accuracy of the predicted classes (their level-2 group right); the level-2 head's own validation accuracy
per picture; and the training time. Every step's output is kept in --work-dir and reused when present (delete a
file to redo its step).

Run from the repository root:  python -m benchmarks.bench_hierarchical_heads [--markdown OUT.md]
"""
import argparse
import csv
import os

import numpy as np

from benchmarks.commands import once, python_module, split_by_product, train_small_network
from benchmarks.report import format_accuracy, print_tables
from cli.statistics import paired_difference
from data.bson_index import BsonIndex
from data.categories import Categories
from data.recordio import count_records

NETWORK = "densenet-41"


def make_bed(work, args):
    """The bed's raw files, its split, and each half as a .rec of class ids and one of label vectors."""
    raw = os.path.join(work, "raw")
    once(os.path.join(raw, "test_ground_truth.csv"), lambda: python_module(
        "benchmarks.fashion_products", "--out-dir", raw, "--num-train-products", str(args.products),
        "--num-test-products", "1", "--force"))
    paths = {"csv": os.path.join(raw, "category_names.csv"), **split_by_product(work, os.path.join(raw, "train.bson"))}
    for labels, flags in (("class", []), ("levels", ["--level-labels"])):
        for part in ("train", "valid"):
            rec = paths[f"{labels}_{part}_rec"] = os.path.join(work, f"{labels}_{part}.rec")
            once(rec + ".json", lambda part=part, rec=rec, flags=flags: python_module(
                "data.bson2rec", "--bson", paths[f"{part}_bson"], "--out-rec", rec, "--category-csv", paths["csv"],
                "--force", *flags))
    return paths


def train(work, paths, labels, args):
    """The checkpoint prefix of the network trained on the `labels` .rec files (trained once)."""
    prefix = os.path.join(work, "models", labels, labels)
    heads = ["--level-heads", "--head-weights", args.head_weights] if labels == "levels" else []
    train_small_network(NETWORK, paths[f"{labels}_train_rec"], paths[f"{labels}_valid_rec"], prefix, args.epochs,
                        os.path.join(work, "log.txt"), *heads)
    return prefix


def predicted(work, paths, prefix, name, epochs, flags=()):
    """{product _id: category_id} of the validation products by the checkpoint at `prefix` (m0, flip TTA)."""
    output = os.path.join(work, f"{name}.csv")
    once(output, lambda: python_module(
        "predict.predict", "--bson", paths["valid_bson"], "--category-csv", paths["csv"],
        "--symbol", f"{prefix}-symbol.json", "--params", f"{prefix}-{epochs:04d}.params", "--gpus", "",
        "--multi-view", "1", "--batch-size", "128", "--num-procs", "1", "--output", output, *flags,
        log_path=os.path.join(work, "log.txt")))
    with open(output) as fh:
        return {int(row["_id"]): int(row["category_id"]) for row in csv.DictReader(fh)}


def epoch_rows(prefix):
    """The rows of train.metrics_log's PREFIX-metrics.csv."""
    with open(f"{prefix}-metrics.csv") as fh:
        return list(csv.DictReader(fh))


def rows_of(work, paths, args):
    """One table row per method: (name, picture accuracy, product accuracy, paired difference, level-2 accuracy of
    the answers, level-2 head's picture accuracy, training seconds of its epochs)."""
    categories = Categories.load(paths["csv"])
    level2_of = dict(zip(categories.category_ids.tolist(), categories.group_ids_of("level2_id").tolist()))
    index = BsonIndex.open(paths["valid_bson"])
    truth = dict(zip(index.products["product_id"].tolist(), index.products["category_id"].tolist()))
    pictures = count_records(paths["class_valid_rec"])
    products = sorted(truth)
    prefixes = {labels: train(work, paths, labels, args) for labels in ("class", "levels")}
    rows, reference = [], None
    methods = [("class head alone", "class", ()), ("level heads: class head", "levels", ()),
               ("level heads: --combine-levels", "levels", ("--combine-levels",))]
    for name, labels, flags in methods:
        prefix = prefixes[labels]
        answers = predicted(work, paths, prefix, f"{labels}{'_combined' if flags else ''}", args.epochs, flags)
        right = np.array([answers[p] == truth[p] for p in products])
        right_level2 = np.array([level2_of[answers[p]] == level2_of[truth[p]] for p in products])
        epochs = epoch_rows(prefix)
        epoch, seconds = epochs[-1], sum(float(row["seconds"]) for row in epochs)
        picture_right = round(float(epoch["val_accuracy"]) * pictures)
        if reference is None:
            reference, difference = right, "—"
        else:
            mean, half = paired_difference(right, reference)
            difference = f"{mean:+.4f} ± {half:.4f}"
        level2_head = epoch.get("val_level2_accuracy")
        # training's picture accuracy is the class head's: the same for the combination, which only predict.predict does
        rows.append((name, "—" if flags else format_accuracy(picture_right, pictures),
                     format_accuracy(int(right.sum()), len(right)),
                     difference, format_accuracy(int(right_level2.sum()), len(right_level2)),
                     f"{float(level2_head):.4f}" if level2_head else "—",
                     "—" if flags else f"{seconds:.0f}"))
    return rows, pictures, len(products)


def table(rows, pictures, products, args):
    lines = [f"Fashion-MNIST bed, {args.products} training products (80/20 by product: {pictures} validation "
             f"pictures, {products} products), {NETWORK} at 3x32x32, {args.epochs} epochs, seed 0; level heads "
             f"weighted {args.head_weights}. Accuracies with their 95% Wilson intervals; the difference to the class "
             "head alone is paired by product (95% interval).",
             "",
             "| method | val acc, pictures | val acc, products (m0, flip TTA) | difference, products | "
             "level-2 group right, products | level-2 head, pictures | training s |",
             "|---|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_hierarchical_heads", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", default="/tmp/cdiscount_bench_hierarchical_heads",
                        help="where every step's output is kept and reused")
    parser.add_argument("--products", type=int, default=12000,
                        help="training products of the bed (of Fashion-MNIST's 60,000)")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs of each network")
    parser.add_argument("--head-weights", default="0.8,0.1,0.1",
                        help="--head-weights of the run with level heads (rwightman's by default)")
    parser.add_argument("--markdown", default=None, metavar="OUT.md", help="also write the table there")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    work = os.path.join(args.work_dir, f"fashion_{args.products}_e{args.epochs}_w{args.head_weights}")
    os.makedirs(work, exist_ok=True)
    paths = make_bed(work, args)
    rows, pictures, products = rows_of(work, paths, args)
    print_tables([table(rows, pictures, products, args)], args.markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
