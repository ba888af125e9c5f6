"""Apply MD5 product overrides (from predict.md5_predict) to a submission.

Each product listed in the overrides file gets the override's category_id; every
other row is copied as is, in the same order. An override for a product the
submission does not have is an error (overrides of another test set?).
"""
import argparse
import logging

import numpy as np

from data.common import Timer, UserError, check_outputs, run_cli
from predict.submission import duplicated_ids, read_submission, write_submission

log = logging.getLogger(__name__)
_SHOW = 5


def apply_overrides(product_ids, category_ids, override_ids, override_categories, overrides_name="overrides"):
    """(new category_ids, rows overridden, rows whose category changed); inputs are int64 arrays."""
    repeated = duplicated_ids(override_ids)
    if len(repeated):
        raise UserError(f"{overrides_name}: {len(repeated)} products listed more than once: _id "
                        + ", ".join(str(i) for i in repeated[:_SHOW].tolist())
                        + (", ..." if len(repeated) > _SHOW else ""))
    absent = override_ids[~np.isin(override_ids, product_ids)]
    if len(absent):
        raise UserError(f"{overrides_name}: {len(absent)} override ids are not in the submission: _id "
                        + ", ".join(str(i) for i in absent[:_SHOW].tolist())
                        + (", ..." if len(absent) > _SHOW else ""))
    order = np.argsort(override_ids)
    sorted_ids = override_ids[order]
    at = np.minimum(np.searchsorted(sorted_ids, product_ids), max(len(sorted_ids) - 1, 0))
    hit = sorted_ids[at] == product_ids if len(sorted_ids) else np.zeros(len(product_ids), dtype=bool)
    result = category_ids.copy()
    result[hit] = override_categories[order][at[hit]]
    return result, int(hit.sum()), int((result != category_ids).sum())


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m predict.postprocess_product", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--src", required=True, help="submission to correct (_id,category_id)")
    parser.add_argument("--md5", required=True, help="overrides CSV written by predict.md5_predict")
    parser.add_argument("--dst", required=True, help="corrected submission (.csv, or .csv.gz for gzip)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    check_outputs([args.dst], args.force)
    timer = Timer()
    product_ids, category_ids = read_submission(args.src)
    override_ids, override_categories = read_submission(args.md5)
    new_categories, applied, changed = apply_overrides(product_ids, category_ids, override_ids,
                                                       override_categories, overrides_name=args.md5)
    write_submission(args.dst, product_ids, new_categories)
    log.info("in: %d rows of %s, %d overrides in %s", len(product_ids), args.src, len(override_ids), args.md5)
    log.info("overrides applied to %d rows, %d of them changed the category", applied, changed)
    log.info("out: %s, %d rows; %.1f s", args.dst, len(product_ids), timer.seconds)
    return 0


if __name__ == "__main__":
    run_cli(main)
