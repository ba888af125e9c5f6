"""MD5 product overrides: test products whose set of pictures is a training product's get its category.

A product's hash is the sorted set of its image MD5s (data.md5_dict.product_key).
Each test product whose hash is in the training product table with exactly one
category gets a row `_id,category_id` in the output; hashes seen with several
categories are skipped. The training table comes from a dictionary built by
data.bson_md5_dict (--md5-dict) or is built here from the training BSON
(--train-bson, as the original did). predict.postprocess_product applies the rows to a
submission.
"""
import argparse
import logging

from data.bson_index import BsonIndex
from data.bson_md5_dict import build_dictionary, hash_images
from cli.files import check_input_paths, check_outputs
from cli.reporting import Timer
from cli.runner import HelpFormatter, UserError, run_cli
from data.md5_dict import PICKLE_REFUSED, Md5Dictionary
from predict.submission import write_submission

log = logging.getLogger(__name__)


def product_overrides(product_table, test_index):
    """(product_ids, category_ids, counts) of the test products the training product table decides.

    `product_table` is a data.md5_dict.HashTable of product keys; counts has the totals logged at the end.
    """
    _, keys = hash_images(test_index)
    # A product without pictures has no hash to share (its key would be that of the empty set).
    has_images = test_index.products["num_imgs"] > 0
    matched = (product_table.find(keys) >= 0) & has_images
    categories = product_table.unique_category(keys)  # -1 where absent or seen with several categories
    single = (categories >= 0) & has_images
    counts = {"test_products": len(test_index), "matched": int(matched.sum()),
              "single_category": int(single.sum()), "conflicting": int((matched & ~single).sum())}
    return test_index.products["product_id"][single], categories[single], counts


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m predict.md5_predict", description=__doc__,
                                     formatter_class=HelpFormatter)
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--train-bson", help="labelled training BSON: build its product table in memory")
    source.add_argument("--md5-dict", help="dictionary .npz written by data.bson_md5_dict")
    parser.add_argument("--md5-dict-pkl", default=None,
                        help="the original's flag: never read (a pickle can run code; the original did not read "
                             "it either, it built the table from --train-bson); without --train-bson it is refused")
    parser.add_argument("--bson", "--test-bson", dest="bson", required=True,
                        help="the test BSON (--test-bson: the original's name)")
    parser.add_argument("--output", required=True, help="overrides CSV _id,category_id (.gz for gzip)")
    parser.add_argument("--skip-corrupt", action="store_true",
                        help="skip unreadable BSON documents (reported) instead of stopping")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if not (args.train_bson or args.md5_dict):
        if args.md5_dict_pkl:
            raise UserError(f"--md5-dict-pkl {args.md5_dict_pkl}: {PICKLE_REFUSED} (or pass --train-bson)")
        raise UserError("one of --train-bson or --md5-dict is required")
    if args.md5_dict_pkl:
        log.warning("--md5-dict-pkl %s not read (the original did not read it either): the product table comes "
                    "from %s", args.md5_dict_pkl, "--train-bson" if args.train_bson else "--md5-dict")
    inputs = check_input_paths([(args.bson, "--bson BSON"), (args.train_bson, "--train-bson BSON"),
                                (args.md5_dict, "--md5-dict")])
    check_outputs([args.output], args.force, inputs=inputs)
    timer = Timer()
    if args.md5_dict:
        dictionary = Md5Dictionary.load(args.md5_dict)
    else:
        dictionary = build_dictionary(BsonIndex.open(args.train_bson, skip_corrupt=args.skip_corrupt))
    log.info("training product table: %d product hashes", len(dictionary.products))
    test_index = BsonIndex.open(args.bson, skip_corrupt=args.skip_corrupt)
    if not len(test_index):
        log.warning("nothing to do: %s has no products; %s gets only its header line", args.bson, args.output)
    product_ids, category_ids, counts = product_overrides(dictionary.products, test_index)
    write_submission(args.output, product_ids, category_ids)
    log.info("test products: %d; hash found in training: %d; single category, written: %d; "
             "several categories, skipped: %d", counts["test_products"], counts["matched"],
             counts["single_category"], counts["conflicting"])
    log.info("out: %s, %d overrides; %.1f s", args.output, len(product_ids), timer.seconds)
    return 0


if __name__ == "__main__":
    run_cli(main)
