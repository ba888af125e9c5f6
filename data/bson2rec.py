"""Convert a Kaggle BSON to an MXNet indexed RecordIO file (`.rec` + `.idx`), one record per image.

Each record: label = class_id of the product's category (row order of
category_names.csv; -1 for a test BSON), header id = product `_id`, id2 = the
image's position in the product, payload = the JPEG bytes exactly as in the BSON.

Records come out in a seeded random order without holding the dataset in memory:
the images are read one by one, by offset, in a permuted order. Options select
images: `--unique-md5` keeps the first occurrence (in file order) of each image
MD5 (DATASET_C), `--md5-dict` keeps only images whose MD5 maps to a single
category, `--under-sampling N` keeps at most N images per category.
"""
import argparse
import collections
import logging
import os

import numpy as np
from tqdm import tqdm

from data.bson_index import NO_CATEGORY, BsonIndex
from data.categories import Categories, default_category_csv
from data.common import Timer, UserError, atomic_outputs, check_input_file, check_outputs_free, run_cli
from data.md5_dict import KEY_DTYPE, Md5Dictionary, iter_image_digests
from data.recordio import IndexedRecordWriter, pack_header

log = logging.getLogger(__name__)

JPEG_START, JPEG_END = b"\xff\xd8", b"\xff\xd9"


def jpeg_problem(picture):
    """Cheap check without decoding: None if the bytes look like a whole JPEG, else the skip reason."""
    if not picture.startswith(JPEG_START):
        return "not_jpeg"
    if not picture.rstrip(b"\x00").endswith(JPEG_END):
        return "truncated_jpeg"
    return None


def product_classes(index, categories):
    """class_id of each product (-1 for a test BSON); an unknown category names the product."""
    category_ids = index.products["category_id"]
    labelled = category_ids != NO_CATEGORY
    if not labelled.any():
        return np.full(len(index), -1, dtype=np.int64)
    if not labelled.all():
        product = int(np.flatnonzero(~labelled)[0])
        raise UserError(f"{index.path}: product _id {int(index.products['product_id'][product])} "
                        "has no category_id while others have one")
    if categories is None:
        raise UserError(f"{index.path}: a labelled BSON needs --category-csv")
    classes = categories.classes_of(category_ids)
    unknown = np.flatnonzero(classes < 0)
    if len(unknown):
        product = int(unknown[0])
        categories.class_of(category_ids[product], int(index.products["product_id"][product]), index.path)
    return classes


def scan_md5(index):
    """MD5 and JPEG check of every image in file order (one sequential pass)."""
    digests = np.zeros(index.num_images, dtype=KEY_DTYPE)
    problems = [None] * index.num_images
    first_image = index.products["first_image"].tolist()
    with tqdm(total=index.num_images, unit="img", desc="md5 pre-pass") as bar:
        for product, pictures, product_digests in iter_image_digests(index):
            first = first_image[product]
            digests[first:first + len(pictures)] = product_digests
            problems[first:first + len(pictures)] = [jpeg_problem(p) for p in pictures]
            bar.update(len(pictures))
    return digests, problems


def select_images(index, image_classes, skipped, unique_md5=False, md5_dict=None,
                  under_sampling=0, shuffle_seed=None):
    """Image positions to write, in output order; counts what it leaves out in `skipped`."""
    keep = np.ones(index.num_images, dtype=bool)
    if unique_md5 or md5_dict is not None:
        digests, problems = scan_md5(index)
        for j, problem in enumerate(problems):
            if problem:
                keep[j] = False
                skipped[problem] += 1
        if md5_dict is not None:
            single = md5_dict.images.unique_category(digests) >= 0
            skipped["md5_not_single_category"] += int((keep & ~single).sum())
            keep &= single
        if unique_md5:
            # np.unique's return_index gives the first position (file order) of each digest.
            _, first = np.unique(digests[keep], return_index=True)
            first_of_kept = np.zeros(int(keep.sum()), dtype=bool)
            first_of_kept[first] = True
            skipped["duplicate_md5"] += int((~first_of_kept).sum())
            keep[np.flatnonzero(keep)[~first_of_kept]] = False
    order = np.flatnonzero(keep)
    if shuffle_seed is not None:
        order = np.random.default_rng(shuffle_seed).permutation(order)
    if under_sampling > 0:
        # The first N of each category in the (shuffled) order: a seeded random subset.
        seen = collections.Counter()
        capped = []
        for j in order.tolist():
            c = int(image_classes[j])
            seen[c] += 1
            if seen[c] <= under_sampling:
                capped.append(j)
        skipped["under_sampling"] += len(order) - len(capped)
        order = np.array(capped, dtype=np.int64)
    return order


def write_records(index, order, image_classes, image_products, rec_path, idx_path, skipped, check_jpeg=True):
    """Write the records of `order` to an indexed RecordIO (as MXNet writes it); returns the number written."""
    written = 0
    product_ids = index.products["product_id"]
    first_images = index.products["first_image"]
    with atomic_outputs(rec_path, idx_path) as (rec_tmp, idx_tmp), IndexedRecordWriter(rec_tmp, idx_tmp) as writer:
        for j in tqdm(order.tolist(), unit="img", desc=f"write {os.path.basename(rec_path)}"):
            picture = index.read_image(j)
            problem = jpeg_problem(picture) if check_jpeg else None
            if problem:
                skipped[problem] += 1
                continue
            product = int(image_products[j])
            # mx.recordio.pack's header: flag 0, label, id = product _id, id2 = image index in the product.
            header = pack_header(float(image_classes[j]), int(product_ids[product]), j - int(first_images[product]))
            writer.write(written, header + picture)
            written += 1
    return written


def idx_path_for(rec_path):
    root, ext = os.path.splitext(rec_path)
    if ext != ".rec":
        raise UserError(f"{rec_path}: the output name must end in .rec")
    return root + ".idx"


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m data.bson2rec", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    io = parser.add_argument_group("input and output")
    io.add_argument("--bson", required=True, help="Kaggle BSON (train, validation split or test)")
    io.add_argument("--out-rec", required=True, help="output .rec; the .idx is written beside it")
    io.add_argument("--category-csv", default=None,
                    help="Kaggle category_names.csv (default: $DATA_DIR/category_names.csv)")
    io.add_argument("--skip-corrupt", action="store_true",
                    help="skip unreadable documents (reported) instead of stopping")
    io.add_argument("--force", action="store_true", help="overwrite existing outputs")
    select = parser.add_argument_group("image selection")
    select.add_argument("--unique-md5", action="store_true",
                        help="keep only the first occurrence of each image MD5 (DATASET_C)")
    select.add_argument("--md5-dict", default=None,
                        help="MD5 dictionary (data.bson_md5_dict): keep images whose MD5 has a single category")
    select.add_argument("--under-sampling", type=int, default=0, metavar="N",
                        help="keep at most N images per category (0: all)")
    order = parser.add_argument_group("record order")
    order.add_argument("--shuffle-seed", type=int, default=0xC0FFEE, help="seed of the record order")
    order.add_argument("--no-shuffle", action="store_true", help="keep file order (e.g. for a test BSON)")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    check_input_file(args.bson, "BSON")
    idx_path = idx_path_for(args.out_rec)
    check_outputs_free([args.out_rec, idx_path], args.force)
    if args.under_sampling < 0:
        raise UserError(f"--under-sampling {args.under_sampling}: must be >= 0")
    timer = Timer()
    index = BsonIndex.open(args.bson, skip_corrupt=args.skip_corrupt)
    labelled = bool((index.products["category_id"] != NO_CATEGORY).any())
    categories = Categories.load(args.category_csv or default_category_csv()) if labelled else None
    classes = product_classes(index, categories)
    image_products = np.repeat(np.arange(len(index)), index.products["num_imgs"])
    image_classes = classes[image_products]
    md5_dict = Md5Dictionary.load(args.md5_dict) if args.md5_dict else None

    skipped = collections.Counter()
    order = select_images(index, image_classes, skipped, unique_md5=args.unique_md5, md5_dict=md5_dict,
                          under_sampling=args.under_sampling,
                          shuffle_seed=None if args.no_shuffle else args.shuffle_seed)
    prechecked = args.unique_md5 or md5_dict is not None
    written = write_records(index, order, image_classes, image_products, args.out_rec, idx_path, skipped,
                            check_jpeg=not prechecked)

    no_images = int((index.products["num_imgs"] == 0).sum())
    log.info("in: %d products, %d images%s%s", len(index), index.num_images,
             f"; {no_images} products without images" if no_images else "",
             f"; {len(index.skipped)} corrupt documents skipped" if index.skipped else "")
    log.info("written: %d records -> %s (+ %s)", written, args.out_rec, os.path.basename(idx_path))
    for reason, count in sorted(skipped.items()):
        log.info("skipped %s: %d", reason, count)
    if written + sum(skipped.values()) != index.num_images:
        raise UserError(f"image count mismatch: {written} written + {sum(skipped.values())} skipped "
                        f"!= {index.num_images} in")
    log.info("done in %.1f s", timer.seconds)
    return 0


if __name__ == "__main__":
    run_cli(main)
