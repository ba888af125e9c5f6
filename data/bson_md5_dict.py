"""Build the MD5 dictionaries (image MD5 and product hash -> {category_id: count}) of a training BSON.

One pass over the pictures in file order. Prints the totals: images, unique
images, label conflicts (an MD5 seen with several categories) and refined
(single-label) images, and the same for products.
"""
import argparse
import logging

import numpy as np

from data.bson_index import BsonIndex
from cli.files import atomic_outputs, check_input_file, check_outputs
from cli.reporting import Timer, plural
from cli.runner import HelpFormatter, RefusedFlag, UserError, run_cli
from data.md5_dict import KEY_DTYPE, HashTable, Md5Dictionary, compact_ints, digests_in_file_order, product_key

log = logging.getLogger(__name__)


def hash_images(index):
    """MD5 of every image and product key of every product, in file order, in one pass."""
    product_keys = np.zeros(len(index), dtype=KEY_DTYPE)
    key_bytes = memoryview(product_keys).cast("B")

    def add_product_key(product, pictures, digests, first):
        key_bytes[16 * product:16 * product + 16] = product_key(digests)

    return digests_in_file_order(index, each_product=add_product_key), product_keys


def build_dictionary(index):
    """Both tables, each built and its inputs freed in turn (12 million keys: memory counts)."""
    if len(index) and not index.has_labels:
        raise UserError(f"{index.path}: products without category_id (a test BSON?); "
                        "the MD5 dictionary needs a labelled training BSON")
    image_digests, product_keys = hash_images(index)
    categories = compact_ints(index.products["category_id"])
    image_categories = np.repeat(categories, index.products["num_imgs"])
    index.forget_columns()  # the offsets are no longer needed
    images = HashTable.from_pairs(image_digests, image_categories)
    total_images = len(image_digests)
    del image_digests, image_categories
    products = HashTable.from_pairs(product_keys, categories)
    return Md5Dictionary.from_tables(images, products, total_images, len(product_keys), source=index.path)


def log_totals(meta):
    log.info("total images: %d", meta["total_images"])
    log.info("unique images: %d", meta["unique_images"])
    log.info("label conflicts (an image MD5 with more than one category): %d", meta["image_label_conflicts"])
    log.info("refined images (MD5 with a single category): %d", meta["refined_images"])
    log.info("total products: %d, unique product hashes: %d, product label conflicts: %d, refined products: %d",
             meta["total_products"], meta["unique_product_hashes"], meta["product_label_conflicts"],
             meta["refined_products"])


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m data.bson_md5_dict", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--bson", required=True, help="labelled training BSON (e.g. train_train.bson)")
    parser.add_argument("--out", required=True, help="output dictionary (.npz, no pickle)")
    parser.add_argument("--md5-dict-pkl", action=RefusedFlag, help="the original's pickle output: refused; use --out",
                        explanation="the original wrote a pickle; this writes an .npz dictionary that loads "
                                    "without running code: pass --out DICT.npz instead")
    parser.add_argument("--skip-corrupt", action="store_true",
                        help="skip unreadable documents (reported) instead of stopping")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    check_input_file(args.bson, "BSON")
    check_outputs([args.out], args.force, inputs=[args.bson])
    timer = Timer()
    index = BsonIndex.open(args.bson, skip_corrupt=args.skip_corrupt)
    dictionary = build_dictionary(index)
    with atomic_outputs(args.out) as (tmp,):
        dictionary.save(tmp)
    log_totals(dictionary.meta)
    log.info("in: %d products, %d images%s; out: %s (%d image MD5s, %d product hashes); %.1f s",
             len(index), index.num_images,
             f", skipped {plural(len(index.skipped), 'corrupt document')}" if index.skipped else "",
             args.out, len(dictionary.images), len(dictionary.products), timer.seconds)
    if len(index) == 0:
        log.warning("%s holds no products: wrote an empty dictionary %s", args.bson, args.out)
    return 0


if __name__ == "__main__":
    run_cli(main)
