"""Per-epoch data order: the original's chunks against a global permutation, at one budget.

`--data-order chunks` (the default, the original's): each epoch reads the once-shuffled `.rec`
from start to end in 8 MB chunks and shuffles within each chunk. `--data-order global`: a new
permutation of all the records every epoch. At Kaggle's counts a chunk holds about 1,800 of the
11.75M training pictures; here the generated `.rec` is cut into a few dozen chunks.

Test bed: the demo generator (--categories categories, --products products, 180x180 JPEGs, seed 0),
split by product with 20% to validation (seed 0xC0FFEE) so that the interval is narrow, both
halves converted with data.bson2rec (shuffled once, as always). Each run: `train.train_model`,
densenet-41 from scratch at 3x32x32, batch 32, NAdam lr 0.001 x0.2 for the last epoch, --epochs
epochs, one fresh process per run. For every seed the two orders run one after the other, so that
a slow spell of the shared machine hits both alike.

Reported: each run's final validation accuracy with its 95% Wilson interval and its training
images/s (median over its epochs); per order the median; and the difference chunks - global
paired by seed, its mean with a 95% t interval over the seeds.

Run from the repository root:  python -m benchmarks.bench_data_order [--seeds 0,1,2] [--markdown OUT.md]
"""
import argparse
import csv
import math
import os
import statistics
import sys
import time

from benchmarks.commands import python_module
from benchmarks.report import format_accuracy, print_tables
from data.recordio import count_records

CHUNK_BYTES = 8 << 20  # what ImageRecordIter reads at a time without an .idx (measured: tests/test_data_order.py)
ORDERS = ("chunks", "global")
T_975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def make_test_bed(work_dir, categories, products):
    """The generated train/valid .rec files (made once, kept in `work_dir`)."""
    raw = os.path.join(work_dir, f"demo-{categories}x{products}")
    recs = {part: os.path.join(raw, f"{part}.rec") for part in ("train", "valid")}
    if all(os.path.exists(path + ".json") for path in recs.values()):
        return recs
    python_module("data.make_demo_data", "--out-dir", raw, "--num-categories", str(categories),
                  "--num-train-products", str(products), "--num-test-products", "10", "--force")
    halves = {part: os.path.join(raw, f"train_{part}.bson") for part in recs}
    python_module("data.split_train_bson", "--bson", os.path.join(raw, "train.bson"), "--val-ratio", "0.2",
                  "--random-seed", str(0xC0FFEE), "--save-train-bson", halves["train"],
                  "--save-val-bson", halves["valid"], "--force")
    for part, rec in recs.items():
        python_module("data.bson2rec", "--bson", halves[part], "--out-rec", rec, "--force",
                      "--category-csv", os.path.join(raw, "category_names.csv"))
    return recs


def train_run(recs, prefix, order, seed, epochs):
    """One training run; returns its metrics rows (train.metrics_log's CSV)."""
    os.makedirs(os.path.dirname(prefix), exist_ok=True)
    python_module("train.train_model", "--symbol", "densenet-41", "--data-train", recs["train"],
                  "--data-val", recs["valid"], "--image-shape", "3,32,32", "--resize", "32", "--batch-size", "32",
                  "--optimizer", "nadam", "--lr", "0.001", "--lr-factor", "0.2",
                  "--lr-step-epochs", str(max(epochs - 1, 1)), "--num-epochs", str(epochs), "--gpus", "",
                  "--seed", str(seed), "--data-order", order, "--model-prefix", prefix, "--force",
                  "--disp-batches", "1000")
    with open(f"{prefix}-metrics.csv") as fh:
        return list(csv.DictReader(fh))


def mean_interval(values):
    """(mean, half width of its 95% t interval); half width None for fewer than two values."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None
    return mean, T_975.get(len(values) - 1, 1.96) * statistics.stdev(values) / math.sqrt(len(values))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", default="/tmp/cdiscount_bench_data_order", help="generated data and runs")
    parser.add_argument("--categories", type=int, default=60, help="categories of the generated data")
    parser.add_argument("--products", type=int, default=12000, help="products of the generated train.bson")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of each run (the budget)")
    parser.add_argument("--seeds", default="0,1,2", help="--seed of the runs, one pair of runs each")
    parser.add_argument("--markdown", help="also write the tables as markdown here")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in args.seeds.split(",")]
    recs = make_test_bed(args.work_dir, args.categories, args.products)
    train_pictures, valid_pictures = count_records(recs["train"]), count_records(recs["valid"])
    rec_bytes = os.path.getsize(recs["train"])
    chunks = math.ceil(rec_bytes / CHUNK_BYTES)

    results = {order: {} for order in ORDERS}
    for seed in seeds:
        for order in ORDERS:
            started = time.monotonic()
            rows = train_run(recs, os.path.join(args.work_dir, "runs", f"{order}-{seed}", "m"), order, seed,
                             args.epochs)
            accuracy = float(rows[-1]["val_accuracy"])
            results[order][seed] = dict(correct=round(accuracy * valid_pictures), accuracy=accuracy,
                                        speed=statistics.median(float(r["images_per_sec"]) for r in rows))
            print(f"seed {seed} {order}: validation accuracy {accuracy:.4f}, "
                  f"{results[order][seed]['speed']:.0f} images/s, {time.monotonic() - started:.0f} s", flush=True)

    lines = ["| order | seed | validation accuracy (95% interval) | training images/s |", "|---|---|---|---|"]
    for order in ORDERS:
        for seed in seeds:
            run = results[order][seed]
            lines.append(f"| {order} | {seed} | {format_accuracy(run['correct'], valid_pictures)} | {run['speed']:.0f} |")
        lines.append(f"| {order} | median | {statistics.median(r['accuracy'] for r in results[order].values()):.4f} "
                     f"| {statistics.median(r['speed'] for r in results[order].values()):.0f} |")
    runs_table = "\n".join(lines)

    differences = [results["chunks"][s]["accuracy"] - results["global"][s]["accuracy"] for s in seeds]
    mean, half = mean_interval(differences)
    speed_ratio = statistics.median(results["chunks"][s]["speed"] / results["global"][s]["speed"] for s in seeds)
    summary = "\n".join([
        "| test bed | value |", "|---|---|",
        f"| training pictures / validation pictures | {train_pictures} / {valid_pictures} |",
        f"| training .rec | {rec_bytes / 2**20:.0f} MB: {chunks} chunks of 8 MB, "
        f"about {train_pictures / chunks:.0f} pictures each |",
        f"| budget | {args.epochs} epochs of densenet-41 at 3x32x32, {args.categories} categories |",
        "| accuracy chunks - global, paired by seed | "
        + (f"{mean:+.4f} ± {half:.4f} (95% t, {len(seeds)} seeds)" if half is not None else f"{mean:+.4f}") + " |",
        f"| images/s chunks / global (median of the seeds' ratios) | {speed_ratio:.3f} |",
    ])
    print_tables([runs_table, summary], args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
