"""Score submissions against a ground-truth CSV of the same format (e.g. the demo's test_ground_truth.csv).

Prints one line per submission: its accuracy over the ground truth's products (Kaggle's
metric for this competition) and how many of them it covers. A submission missing a
product of the ground truth counts it as wrong and says so.
"""
import argparse
import logging

import numpy as np

from data.bson_index import BsonIndex
from cli.files import check_input_file
from cli.runner import HelpFormatter, UserError, run_cli
from predict.submission import positions_of, read_submission

log = logging.getLogger(__name__)


def accuracy(truth_ids, truth_categories, product_ids, category_ids):
    """(accuracy over the ground-truth products, number of them the submission covers)."""
    positions = positions_of(product_ids, truth_ids)
    found = positions >= 0
    predicted = np.full(len(positions), -1, dtype=np.int64)
    predicted[found] = np.asarray(category_ids)[positions[found]]
    correct = found & (predicted == truth_categories)
    return float(correct.mean()) if len(truth_ids) else 0.0, int(found.sum())


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m predict.score_submission", description=__doc__,
                                     formatter_class=HelpFormatter)
    truth = parser.add_mutually_exclusive_group(required=True)
    truth.add_argument("--truth", help="_id,category_id of the true categories")
    truth.add_argument("--bson", "--truth-bson", dest="bson",
                       help="a labelled BSON (e.g. the validation split) as the truth")
    parser.add_argument("--label", action="append", default=[],
                        help="name of each submission in the table (in order; default: the file name)")
    parser.add_argument("submissions", nargs="+", help="submission CSVs to score")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    for path in [args.truth or args.bson] + args.submissions:  # every file before reading any
        check_input_file(path, "BSON" if path == args.bson else "CSV")
    if args.truth:
        truth_ids, truth_categories = read_submission(args.truth)
    else:
        index = BsonIndex.open(args.bson)
        if not index.has_labels:
            raise UserError(f"{args.bson}: products without category_id cannot be a ground truth")
        truth_ids, truth_categories = index.products["product_id"], index.products["category_id"]
    labels = args.label + args.submissions[len(args.label):]
    width = max(len(label) for label in labels)
    print(f"{'submission':<{width}}  accuracy  products")
    for label, path in zip(labels, args.submissions):
        score, covered = accuracy(truth_ids, truth_categories, *read_submission(path))
        note = "" if covered == len(truth_ids) else f"  ({len(truth_ids) - covered} missing: counted wrong)"
        print(f"{label:<{width}}  {score:8.4f}  {covered:>8}{note}")
    return 0


if __name__ == "__main__":
    run_cli(main)
