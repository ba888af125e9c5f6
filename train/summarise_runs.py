"""Summarise training runs from their metrics CSVs: last epoch's accuracy against the chance level.

    python -m train.summarise_runs --val-rec dataset_A/valid.rec models/M01/M01 models/M02/M02
"""
import argparse
import collections
import csv
import os

from cli.reporting import plural
from cli.runner import HelpFormatter, UserError, run_cli
from data.recordio import read_labels


def majority_share(rec_path):
    """Accuracy of always answering the most frequent class of a .rec: the bar to beat."""
    labels = collections.Counter(read_labels(rec_path).tolist())
    return max(labels.values()) / sum(labels.values()), len(labels)


def last_epoch(prefix):
    path = f"{prefix}-metrics.csv"
    if not os.path.isfile(path):
        raise UserError(f"{path}: metrics not found (was the run trained with --model-prefix {prefix}?)")
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows:
        raise UserError(f"{path}: no epoch recorded")
    return rows[-1]


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m train.summarise_runs", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("prefixes", nargs="+", help="model prefixes (PREFIX-metrics.csv)")
    parser.add_argument("--val-rec", help="validation .rec, to print the chance level")
    args = parser.parse_args(argv)
    print(f"{'run':<12} {'epochs':>6} {'train acc':>9} {'val acc':>8} {'val top-5':>9} {'images/s':>9}")
    for prefix in args.prefixes:
        row = last_epoch(prefix)
        top5 = row.get("val_top_k_accuracy") or "nan"
        print(f"{os.path.basename(prefix):<12} {row['epoch']:>6} {float(row['train_accuracy']):>9.4f} "
              f"{float(row['val_accuracy']):>8.4f} {float(top5):>9.4f} {float(row['images_per_sec']):>9.1f}")
    if args.val_rec:
        share, classes = majority_share(args.val_rec)
        print(f"chance: {plural(classes, 'class', 'classes')} in the validation set; always answering the most frequent one "
              f"scores {share:.4f}, a uniform guess {1 / classes:.4f}")
    return 0


if __name__ == "__main__":
    run_cli(main)
