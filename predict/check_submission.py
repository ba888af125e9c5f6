"""Check a Kaggle submission against the test BSON and the category table before uploading it.

Checks the header, one row per product of the BSON (no product missing, none
twice, no _id the BSON lacks) and that every category_id is in
category_names.csv. Prints `OK: N products` and exits 0, or prints each problem
and exits 1; an unreadable file (bad header, malformed row) exits 2.
"""
import argparse
import logging

from data.bson_index import BsonIndex
from data.categories import Categories, default_category_csv
from cli.files import check_input_paths
from cli.reporting import plural
from cli.runner import HelpFormatter, run_cli
from predict.submission import read_submission, submission_problems

log = logging.getLogger(__name__)


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m predict.check_submission", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("submission", metavar="SUB", help="submission CSV (_id,category_id; .gz read as gzip)")
    parser.add_argument("--bson", required=True, help="the test BSON the submission answers")
    parser.add_argument("--category-csv", "--csv", dest="category_csv", default=None,
                        help="category_names.csv (default: $DATA_DIR/category_names.csv)")
    parser.add_argument("--skip-corrupt", action="store_true",
                        help="skip unreadable BSON documents (reported) instead of stopping")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    args.category_csv = args.category_csv or default_category_csv()
    check_input_paths([(args.submission, "submission"), (args.bson, "--bson BSON"),
                       (args.category_csv, "--category-csv category")])
    categories = Categories.load(args.category_csv)
    index = BsonIndex.open(args.bson, skip_corrupt=args.skip_corrupt)
    product_ids, category_ids = read_submission(args.submission)
    problems = submission_problems(product_ids, category_ids, index, categories)
    for problem in problems:
        print(f"{args.submission}: {problem}")
    if problems:
        log.info("%s: %s, %s", args.submission, plural(len(product_ids), "row"), plural(len(problems), "problem"))
        return 1
    print(f"OK: {len(product_ids)} products")
    return 0


if __name__ == "__main__":
    run_cli(main)
