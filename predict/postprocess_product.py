"""Apply MD5 product overrides (from predict.md5_predict) to a submission.

Each product listed in the overrides file gets the override's category_id; every
other row is copied as is, in the same order. An override for a product the
submission does not have is an error (overrides of another test set?).
"""
import argparse
import logging

import numpy as np

from cli.files import check_input_file, check_outputs
from cli.reporting import Timer, plural
from cli.runner import HelpFormatter, UserError, run_cli
from predict.submission import duplicated_ids, first_ids, read_submission, write_submission

log = logging.getLogger(__name__)


def apply_overrides(product_ids, category_ids, override_ids, override_categories, overrides_name="overrides",
                    submission_name="the submission"):
    """(new category_ids, rows overridden, rows whose category changed); inputs are int64 arrays.
    A product twice in either file is refused: its rows could disagree, and a submission needs one."""
    for name, ids in ((submission_name, product_ids), (overrides_name, override_ids)):
        repeated = duplicated_ids(ids)
        if len(repeated):
            raise UserError(f"{name}: {plural(len(repeated), 'product')} listed more than once: "
                            f"_id {first_ids(repeated)}")
    absent = override_ids[~np.isin(override_ids, product_ids)]
    if len(absent):
        raise UserError(f"{overrides_name}: {plural(len(absent), 'override id')} "
                        f"{'is' if len(absent) == 1 else 'are'} not in {submission_name}: _id {first_ids(absent)}")
    order = np.argsort(override_ids)
    sorted_ids = override_ids[order]
    at = np.minimum(np.searchsorted(sorted_ids, product_ids), max(len(sorted_ids) - 1, 0))
    hit = sorted_ids[at] == product_ids if len(sorted_ids) else np.zeros(len(product_ids), dtype=bool)
    result = category_ids.copy()
    result[hit] = override_categories[order][at[hit]]
    return result, int(hit.sum()), int((result != category_ids).sum())


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m predict.postprocess_product", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--src", required=True, help="submission to correct (_id,category_id)")
    parser.add_argument("--md5", required=True, help="overrides CSV written by predict.md5_predict")
    parser.add_argument("--output", "--dst", dest="output", required=True,
                        help="corrected submission (.csv, or .csv.gz for gzip; --dst: the original's name)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    check_input_file(args.src, "--src submission")
    check_input_file(args.md5, "--md5 overrides")
    check_outputs([args.output], args.force, inputs=[args.src, args.md5])
    timer = Timer()
    product_ids, category_ids = read_submission(args.src)
    override_ids, override_categories = read_submission(args.md5)
    new_categories, applied, changed = apply_overrides(product_ids, category_ids, override_ids,
                                                       override_categories, overrides_name=args.md5,
                                                       submission_name=args.src)
    write_submission(args.output, product_ids, new_categories)
    log.info("in: %d rows of %s, %d overrides in %s", len(product_ids), args.src, len(override_ids), args.md5)
    log.info("overrides applied to %d rows, %d of them changed the category", applied, changed)
    log.info("out: %s, %d rows; %.1f s", args.output, len(product_ids), timer.seconds)
    return 0


if __name__ == "__main__":
    run_cli(main)
