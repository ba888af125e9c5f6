"""Test pictures labelled through the training MD5 dictionary, as an extra training `.rec` (not the original's).

creafz (Kaggle's Cdiscount challenge, `prepare_data.py` of creafz/kaggle-cdiscount) noticed that a
test product with a picture whose hash is a training picture's has a known category: he found
749,461 of the 1,768,182 test products so, and trained on their 157,343 pictures whose hash no
training picture has, labelled with that category. Those pictures are new to training; the
pictures the dictionary knows are copies of training pictures.

    python -m data.hash_labelled_rec --bson test.bson --md5-dict md5_dict_train.npz \\
        --category-csv category_names.csv --out-rec dataset_A/test_hash_labelled.rec --exclude-bson train.bson

Each picture gets one answer from the dictionary's image table: one category, several
categories, or unknown. Which pictures are written (--pictures):
- new (the default, creafz's): a test product is resolved when its pictures answered with one
  category all give the same one (creafz took the first known picture's first category; a picture
  of several categories resolves nothing here); its unknown pictures are written, labelled with it.
- answered: the pictures answered with one category themselves, labelled with it. They are copies
  of training pictures (the same bytes), so they add no picture training lacks; with the
  dictionary of the whole train.bson they also copy pictures found only in validation products.
Before that, broken pictures (as data.bson2rec) and every picture of a product whose _id is in an
--exclude-bson are left out; after it, --unique-md5 keeps the first picture of each MD5.

The records are written by data.bson2rec's writer, with its X.rec.json (labels of --cate-type of the
category CSV): header id = product _id, id2 = the picture's position in the product, label = the class,
shuffled once with --shuffle-seed (Python's random, as bson2rec). Training reads them with
`train.train_model --data-train-extra` (train/beyond/B01_hash_labelled.sh). Counts at the end: the
dictionary's answers, what was written and skipped by reason, and products with a labelled picture.
"""
import argparse
import collections
import logging
import os

import numpy as np

from cli.files import check_input_file, check_outputs
from cli.reporting import Timer, plural
from cli.runner import HelpFormatter, UserError, run_cli
from data.bson2rec import (DEFAULT_SHUFFLE_SEED, JPEG_PROBLEMS, add_record_args, check_record_args, image_labels,
                           output_idx_path, rec_info, scan_md5, shuffle_in_blocks, write_records)
from data.bson_index import NO_CATEGORY, BsonIndex
from data.categories import Categories, default_category_csv
from data.md5_dict import Md5Dictionary, first_occurrences
from data.recordio import rec_info_path

log = logging.getLogger(__name__)

PICTURE_CHOICES = ("new", "answered")  # see the module's docstring


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m data.hash_labelled_rec", description=__doc__,
                                     formatter_class=HelpFormatter)
    io = parser.add_argument_group("input and output")
    io.add_argument("--bson", required=True, help="an unlabelled BSON: Kaggle's test.bson")
    io.add_argument("--md5-dict", required=True,
                    help="MD5 dictionary of the training pictures (data.bson_md5_dict; data/create_train_md5_dict.sh "
                         "writes md5_dict_train.npz, of the whole train.bson)")
    add_record_args(io)  # the labels of the training .rec's X.rec.json, so that training accepts both
    io.add_argument("--exclude-bson", nargs="+", action="extend", default=[], metavar="BSON",
                    help="leave out every picture of a product whose _id is in one of these BSONs (e.g. train.bson, "
                         "from which every validation split comes), so no record shares a product _id with them")
    io.add_argument("--force", action="store_true", help="overwrite existing outputs")
    select = parser.add_argument_group("picture selection")
    select.add_argument("--pictures", choices=PICTURE_CHOICES, default="new",
                        help="new: the pictures unknown to the dictionary of the products it resolves (creafz's); "
                             "answered: the pictures it answers with one category (copies of training pictures)")
    select.add_argument("--unique-md5", action="store_true",
                        help="keep only the first selected picture of each MD5, in file order")
    select.add_argument("--shuffle-seed", type=int, default=DEFAULT_SHUFFLE_SEED, metavar="SEED",
                        help="seed of the record order (Python's random.shuffle of all records, as data.bson2rec)")
    return parser


def check_inputs(args):
    """Inputs and outputs, before any BSON is indexed."""
    check_record_args(args)
    for path, what in [(args.bson, "BSON"), (args.md5_dict, "MD5 dictionary")] + \
            [(path, "BSON of --exclude-bson") for path in args.exclude_bson]:
        check_input_file(path, what)
    category_csv = args.category_csv or default_category_csv()
    check_input_file(category_csv, "category CSV")
    idx_path = output_idx_path(args.out_rec)
    check_outputs([args.out_rec, idx_path, rec_info_path(args.out_rec)], args.force,
                  inputs=[args.bson, args.md5_dict, category_csv, *args.exclude_bson])
    return category_csv, idx_path


def excluded_products(index, exclude_bsons, skip_corrupt):
    """Whether each product's _id is one of the products of `exclude_bsons` (their cached indexes)."""
    excluded = np.zeros(len(index), dtype=bool)
    for path in exclude_bsons:
        other = BsonIndex.open(path, skip_corrupt=skip_corrupt)
        excluded |= np.isin(index.products["product_id"], other.products["product_id"])
        other.close()
    return excluded


def classes_of_categories(category_ids, categories, md5_dict_path):
    """class_id of each dictionary category (-1 stays -1); one not in the category CSV is an error."""
    classes = np.full(len(category_ids), -1, dtype=np.int64)
    known = category_ids >= 0
    distinct, inverse = np.unique(category_ids[known], return_inverse=True)
    distinct_classes = categories.classes_of(distinct)
    if (distinct_classes < 0).any():
        missing = int(distinct[np.flatnonzero(distinct_classes < 0)[0]])
        raise UserError(f"{md5_dict_path}: category_id {missing} is not in {categories.path}: give the category CSV "
                        "of the train.bson the dictionary was built from")
    classes[known] = distinct_classes[inverse]
    return classes


def resolve_products(image_products, num_products, picture_classes):
    """Per product: the class its pictures answered with one category agree on (-1: none answered), and
    whether they disagree."""
    answered = picture_classes >= 0
    lowest = np.full(num_products, np.iinfo(np.int64).max, dtype=np.int64)
    highest = np.full(num_products, -1, dtype=np.int64)
    np.minimum.at(lowest, image_products[answered], picture_classes[answered])
    np.maximum.at(highest, image_products[answered], picture_classes[answered])
    disagree = (highest >= 0) & (lowest != highest)
    return np.where((highest >= 0) & ~disagree, highest, -1), disagree


def select_pictures(index, digests, problems, md5_dict, categories, md5_dict_path, excluded, pictures, unique_md5):
    """(picture positions to write in file order, class of each picture (-1: none), answer counts, skip counts).

    Every picture lands in exactly one skip reason or in the selection."""
    image_products = np.repeat(np.arange(len(index), dtype=np.int64), index.products["num_imgs"])
    skipped = collections.Counter()
    for code, count in enumerate(np.bincount(problems, minlength=len(JPEG_PROBLEMS)).tolist()[1:], 1):
        if count:
            skipped[JPEG_PROBLEMS[code]] += count
    usable = problems == 0
    excluded_pictures = usable & excluded[image_products]
    skipped["product_in_exclude_bson"] += int(excluded_pictures.sum())
    usable &= ~excluded_pictures
    num_categories = md5_dict.images.num_categories_of(digests)
    one, several, unknown = usable & (num_categories == 1), usable & (num_categories > 1), usable & (num_categories == 0)
    answers = {"one category": int(one.sum()), "several categories": int(several.sum()), "unknown": int(unknown.sum())}
    skipped["md5_several_categories"] += answers["several categories"]
    picture_classes = np.full(len(digests), -1, dtype=np.int64)
    picture_classes[one] = classes_of_categories(md5_dict.images.unique_category(digests[one]), categories,
                                                 md5_dict_path)
    if pictures == "answered":
        keep = one
        labels = picture_classes
        skipped["md5_unknown"] += answers["unknown"]
    else:
        product_classes, disagree = resolve_products(image_products, len(index), picture_classes)
        labels = product_classes[image_products]
        keep = unknown & (labels >= 0)
        skipped["md5_in_training (labels its product)"] += answers["one category"]
        skipped["unknown_in_product_answers_disagree"] += int((unknown & disagree[image_products]).sum())
        skipped["unknown_in_product_unresolved"] += int((unknown & (labels < 0) & ~disagree[image_products]).sum())
        answers["products resolved"] = int((product_classes >= 0).sum())
        answers["products whose answers disagree"] = int(disagree.sum())
    if unique_md5 and keep.any():
        first = first_occurrences(digests[keep])
        skipped["duplicate_md5"] += int((~first).sum())
        keep[np.flatnonzero(keep)[~first]] = False
    return np.flatnonzero(keep), np.where(keep, labels, -1), image_products, answers, skipped


def log_counts(index, answers, written, skipped, products_labelled, classes_labelled, rec_path, idx_path):
    log.info("in: %s, %s%s", plural(len(index), "product"), plural(index.num_images, "picture"),
             f"; {plural(len(index.skipped), 'corrupt document')} skipped" if index.skipped else "")
    log.info("dictionary answers (pictures neither broken nor of an --exclude-bson product): one category %d, "
             "several categories %d, unknown %d", answers["one category"], answers["several categories"],
             answers["unknown"])
    if "products resolved" in answers:
        log.info("products resolved (their pictures of one category agree): %d; whose answers disagree: %d",
                 answers["products resolved"], answers["products whose answers disagree"])
    log.info("written: %d records -> %s (+ %s, %s)", written, rec_path, os.path.basename(idx_path),
             os.path.basename(rec_info_path(rec_path)))
    for reason, count in sorted(skipped.items()):
        log.info("skipped %s: %d", reason, count)
    log.info("products with at least one labelled picture: %d of %d; labelled pictures span %s",
             products_labelled, len(index), plural(classes_labelled, "class", "classes"))


def main(argv=None):
    args = build_parser().parse_args(argv)
    category_csv, idx_path = check_inputs(args)
    timer = Timer()
    categories = Categories.load(category_csv)
    md5_dict = Md5Dictionary.load(args.md5_dict)
    index = BsonIndex.open(args.bson, skip_corrupt=args.skip_corrupt)
    if (index.products["category_id"] != NO_CATEGORY).any():
        raise UserError(f"{args.bson}: its products have a category_id (a training BSON?); this command labels "
                        "the pictures of an unlabelled BSON such as test.bson")
    excluded = excluded_products(index, args.exclude_bson, args.skip_corrupt)
    if excluded.any():
        log.warning("%s: %s of %s share a product _id with an --exclude-bson: their pictures are left out",
                    args.bson, plural(int(excluded.sum()), "product"), len(index))
    digests, problems = scan_md5(index)
    index.forget_columns()  # the scan's offsets: the writing reads the image columns again
    order, classes, image_products, answers, skipped = select_pictures(
        index, digests, problems, md5_dict, categories, args.md5_dict, excluded, args.pictures, args.unique_md5)
    del digests, problems
    labelled_products = len(np.unique(image_products[order]))
    labelled_classes = len(np.unique(classes[order]))
    written = write_records(index, shuffle_in_blocks(order, args.shuffle_seed),
                            image_labels(classes, categories, args.cate_type, args.level_labels), image_products,
                            args.out_rec, idx_path, skipped, check_jpeg=False,
                            info=rec_info(categories, args.cate_type, category_csv, shuffled=True,
                                          level_labels=args.level_labels))
    log_counts(index, answers, written, skipped, labelled_products, labelled_classes, args.out_rec, idx_path)
    if written + sum(skipped.values()) != index.num_images:
        raise UserError(f"picture count mismatch: {written} written + {sum(skipped.values())} skipped "
                        f"!= {index.num_images} in")
    if written == 0:
        log.warning("%s: no picture is labelled by %s: wrote an empty %s", args.bson, args.md5_dict, args.out_rec)
    log.info("done in %.1f s", timer.seconds)
    return 0


if __name__ == "__main__":
    run_cli(main)
