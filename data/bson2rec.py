"""Convert a Kaggle BSON to an MXNet indexed RecordIO file (`.rec` + `.idx`), one record per image.

Each record: label = class_id of the product's category (row order of
category_names.csv; -1 for a test BSON) or, with `--cate-type 1`, the category's
index within its level-1 category; header id = product `_id`, id2 = the image's
position in the product (the original wrote a running number and 0 there);
payload = the JPEG bytes exactly as in the BSON. With `--level-labels` (not the original's: rwightman's
hierarchical heads, train.train_model --level-heads) the label is a vector, as `mx.recordio.pack` writes
a label array: the class id, then the category's level-2 and level-1 group ids. With `--mosaic` (not the original's:
bestfitting's multi-image models) each record is a product instead: its pictures tiled into one JPEG by data.mosaic
(the layout of --mosaic-size and --mosaic-fill), header id2 = the number of its pictures in the mosaic. Beside the `.rec` and its `.idx`,
`X.rec.json` (data.recordio.RecInfo) says what the labels are: their kind, the class count,
the digest of the category table and the record count; training reads its class count there.

The selection and the order are the original's (bson2rec_simple.py), so that the
same BSON and seed give the same images in the same order: on the images in file
order, `--md5-dict` keeps those whose MD5 has a single category, `--unique-md5`
the first occurrence of each MD5 (DATASET_C), `--under-sampling N` the first N
of each category; then Python's `random`, seeded once, shuffles each block of
`--shuffle-size` records (default: all in one block). Unlike the original, the
dataset is never held in memory: images are read one by one, by offset, in the
shuffled order.
"""
import argparse
import array
import collections
import dataclasses
import logging
import os
import random

import numpy as np
from tqdm import tqdm

from data.bson_index import NO_CATEGORY, BsonIndex
from data.categories import LEVEL_LABEL_KINDS, Categories, default_category_csv, label_kind_of_level
from cli.files import atomic_outputs, check_input_file, check_outputs
from cli.reporting import Timer, plural
from cli.runner import HelpFormatter, RefusedFlag, UserError, run_cli
from data.md5_dict import PICKLE_REFUSED, Md5Dictionary, digests_in_file_order, first_occurrences
from data.mosaic import DEFAULT_FILL, DEFAULT_SIZE, FILL_RULES, JPEG_QUALITY, MosaicLayout, build_mosaic, \
    decoded_pictures, encode_jpeg
from predict.preprocess import decode_rgb
from data.recordio import (IndexedRecordWriter, RecInfo, idx_path_of, pack_header, pack_label_vector_header,
                           rec_info_path, write_rec_info)

log = logging.getLogger(__name__)

JPEG_START, JPEG_END = b"\xff\xd8", b"\xff\xd9"
DEFAULT_SHUFFLE_SEED = 0xC0FFEE  # the original's --random-seed default


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


JPEG_PROBLEMS = (None, "not_jpeg", "truncated_jpeg")  # jpeg_problem's answers, by code


def scan_md5(index):
    """MD5 and JPEG check of every image in file order (one sequential pass): digests and problem codes
    (positions in JPEG_PROBLEMS; a byte per image, where a list would take 8)."""
    problems = np.zeros(index.num_images, dtype=np.uint8)

    def check_jpegs(product, pictures, digests, first):
        problems[first:first + len(pictures)] = [JPEG_PROBLEMS.index(jpeg_problem(p)) for p in pictures]

    return digests_in_file_order(index, desc="md5 pre-pass", each_product=check_jpegs), problems


def needs_prepass(unique_md5, md5_dict, under_sampling):
    """Whether the selection reads every picture first (then writing need not check them again)."""
    return unique_md5 or md5_dict is not None or under_sampling > 0


def select_images(index, image_classes, skipped, unique_md5=False, md5_dict=None,
                  under_sampling=0, shuffle_seed=None, shuffle_size=0):
    """Image positions to write, in output order; counts what it leaves out in `skipped`.

    The filters run in the original's order on the images in file order: single-label MD5,
    then first occurrence of each MD5, then the first N images of each category; the
    survivors are then shuffled as the original shuffled them.
    """
    keep = np.ones(index.num_images, dtype=bool)
    if needs_prepass(unique_md5, md5_dict, under_sampling):
        # Broken pictures are dropped before any counting, so that they take no category's place.
        digests, problems = scan_md5(index)
        index.forget_columns()  # the scan's offsets: the writing reads the image columns again
        for code, count in enumerate(np.bincount(problems, minlength=len(JPEG_PROBLEMS)).tolist()[1:], 1):
            if count:
                skipped[JPEG_PROBLEMS[code]] += count
        keep &= problems == 0
        del problems
        if md5_dict is not None:
            single = md5_dict.images.unique_category(digests) >= 0
            skipped["md5_not_single_category"] += int((keep & ~single).sum())
            keep &= single
        if unique_md5:
            first_of_kept = first_occurrences(digests if keep.all() else digests[keep])  # no copy if all kept
            skipped["duplicate_md5"] += int((~first_of_kept).sum())
            keep[np.flatnonzero(keep)[~first_of_kept]] = False
    order = np.flatnonzero(keep)
    if under_sampling > 0:
        capped = order[first_per_class(image_classes[order], under_sampling)]
        skipped["under_sampling"] += len(order) - len(capped)
        order = capped
    if shuffle_seed is not None:
        order = shuffle_in_blocks(order, shuffle_seed, shuffle_size)
    return order


def first_per_class(classes, limit):
    """Mask of the first `limit` entries of each class, in the given order; unlabelled (-1) all kept."""
    by_class = np.argsort(classes, kind="stable")  # stable: file order within each class
    sorted_classes = classes[by_class]
    group_starts = np.flatnonzero(np.r_[True, sorted_classes[1:] != sorted_classes[:-1]])
    group_sizes = np.diff(np.r_[group_starts, len(classes)])
    rank = np.empty(len(classes), dtype=np.int64)
    rank[by_class] = np.arange(len(classes)) - np.repeat(group_starts, group_sizes)
    return (rank < limit) | (classes < 0)


def shuffle_in_blocks(order, seed, block_size=0):
    """The original's record order: `random.seed(seed)`, then each block of `block_size` images
    (0: all in one block) shuffled with `random.shuffle` in turn. An int64 array rather than a
    list of Python ints holds 12 million positions in 100 MB instead of 450 MB."""
    rng = random.Random(seed)
    positions = array.array("q")
    positions.frombytes(memoryview(np.ascontiguousarray(order, dtype=np.int64)).cast("B"))
    if not block_size or block_size >= len(positions):
        rng.shuffle(positions)  # one block, shuffled in place
        return np.frombuffer(positions, dtype=np.int64)
    for start in range(0, len(positions), block_size):
        block = positions[start:start + block_size]
        rng.shuffle(block)
        positions[start:start + block_size] = block
    return np.frombuffer(positions, dtype=np.int64)


def image_labels(image_classes, categories, cate_type, level_labels=False):
    """Record labels: the class id (cate-type 3) or the index within the level-1 category (1); -1 unlabelled.
    `level_labels` (class ids of a labelled BSON): a (pictures, 3) vector each, the class id then its level-2 and
    level-1 group ids (LEVEL_LABEL_KINDS)."""
    if level_labels:
        known = np.maximum(image_classes, 0)  # -1 (a picture not written) stays -1 in every column
        groups = [np.where(image_classes >= 0, categories.group_ids_of(kind)[known], -1) for kind in LEVEL_LABEL_KINDS]
        return np.stack([image_classes] + groups, axis=1).astype(np.int32)
    if cate_type == 3 or categories is None:
        return image_classes
    return np.where(image_classes >= 0, categories.level1_sub_class_ids[np.maximum(image_classes, 0)], -1)


def describe_labels(categories, cate_type, level_labels=False):
    """One log line: what the labels are and how many classes they span (the model's output width)."""
    if categories is None:
        return "labels: -1 (a BSON without category_id)"
    if level_labels:
        level2, level1 = (categories.num_classes_of(kind) for kind in LEVEL_LABEL_KINDS)
        return (f"labels: vectors of the class id (0..{len(categories) - 1}), its level-2 group (0..{level2 - 1}) and "
                f"its level-1 group (0..{level1 - 1}) (--level-labels)")
    if cate_type == 1:
        width = categories.num_level1_sub_classes
        return (f"labels: index within the level-1 category (--cate-type 1), 0..{width - 1}: {width} classes "
                f"(the largest of {len(categories.level1_names)} level-1 categories)")
    return f"labels: class id (--cate-type 3), 0..{len(categories) - 1}: {len(categories)} classes"


def rec_info(categories, cate_type, category_csv, shuffled, level_labels=False):
    """The X.rec.json of records labelled as `cate_type` (and `level_labels`) says (its record count filled in
    when written)."""
    if categories is None:
        return RecInfo(label_kind=None, num_classes=None, categories_digest=None, records=0, shuffled=shuffled)
    kind = label_kind_of_level(cate_type)
    columns = {}
    if level_labels:
        kinds = (kind,) + LEVEL_LABEL_KINDS
        columns = dict(label_width=len(kinds), column_kinds=kinds,
                       column_classes=tuple(categories.num_classes_of(k) for k in kinds))
    return RecInfo(label_kind=kind, num_classes=categories.num_classes_of(kind), categories_digest=categories.digest,
                   records=0, category_csv=os.path.abspath(category_csv), shuffled=shuffled, **columns)


def write_records(index, order, labels, image_products, rec_path, idx_path, skipped, check_jpeg=True, info=None):
    """Write the records of `order` to an indexed RecordIO (as MXNet writes it), and `info` (a RecInfo)
    with their count as X.rec.json, the three renamed into place together; returns the number written."""
    written = 0
    product_ids = index.products["product_id"]
    first_images = index.products["first_image"]
    outputs = [rec_path, idx_path] + ([rec_info_path(rec_path)] if info is not None else [])
    with atomic_outputs(*outputs) as temps:
        with IndexedRecordWriter(temps[0], temps[1]) as writer:
            for j in tqdm(_as_ints(order), total=len(order), unit="img", desc=f"write {os.path.basename(rec_path)}"):
                picture = index.read_image(j)
                problem = jpeg_problem(picture) if check_jpeg else None
                if problem:
                    skipped[problem] += 1
                    continue
                product = int(image_products[j])
                # mx.recordio.pack's header: flag 0, label, id = product _id, id2 = image index in the product
                # (a label vector: flag = its length, label 0, the vector after the header).
                if labels.ndim == 1:
                    header = pack_header(float(labels[j]), int(product_ids[product]), j - int(first_images[product]))
                else:
                    header = pack_label_vector_header(labels[j], int(product_ids[product]),
                                                      j - int(first_images[product]))
                writer.write(written, header + picture)
                written += 1
        if info is not None:
            write_rec_info(temps[2], dataclasses.replace(info, records=written))
    return written


def mosaic_order(index, skipped, shuffle_seed=None, shuffle_size=0):
    """The products to write as mosaics, in output order: those with pictures, shuffled as select_images shuffles
    pictures (the same seed, blocks of `shuffle_size` products)."""
    with_pictures = index.products["num_imgs"] > 0
    skipped["product_without_pictures"] += int((~with_pictures).sum())
    order = np.flatnonzero(with_pictures)
    return order if shuffle_seed is None else shuffle_in_blocks(order, shuffle_seed, shuffle_size)


def write_mosaic_records(index, order, labels, layout, rec_path, idx_path, skipped, info):
    """Write one record per product of `order` (product positions): the JPEG of its mosaic (data.mosaic), labelled
    with labels[product], header id = its _id, id2 = the number of its pictures in the mosaic; and `info` with the
    count as X.rec.json, the three renamed into place together. A product none of whose pictures decodes is left
    out (counted). Returns the number written."""
    written = 0
    product_ids, first_images = index.products["product_id"], index.products["first_image"]
    num_images = index.products["num_imgs"]
    with atomic_outputs(rec_path, idx_path, rec_info_path(rec_path)) as temps:
        with IndexedRecordWriter(temps[0], temps[1]) as writer:
            for product in tqdm(_as_ints(order), total=len(order), unit="product",
                                desc=f"write {os.path.basename(rec_path)}"):
                first = int(first_images[product])
                jpegs = [index.read_image(first + k) for k in range(int(num_images[product]))]
                rgbs, decoded = decoded_pictures(jpegs, decode_rgb)
                skipped["picture_undecodable"] += decoded.count(False)
                if not rgbs:
                    skipped["product_without_decodable_picture"] += 1
                    continue
                header = pack_header(float(labels[product]), int(product_ids[product]), len(rgbs))
                writer.write(written, header + encode_jpeg(build_mosaic(rgbs, layout)))
                written += 1
        write_rec_info(temps[2], dataclasses.replace(info, records=written))
    return written


def _as_ints(positions, chunk=1 << 16):
    """Python ints of an array, a chunk at a time (a list of 12 million would take 450 MB)."""
    for start in range(0, len(positions), chunk):
        yield from positions[start:start + chunk].tolist()


def output_idx_path(rec_path):
    """The .idx to write beside an output .rec, whose name must end in .rec: readers find the .idx from it."""
    if os.path.splitext(rec_path)[1] != ".rec":
        raise UserError(f"{rec_path}: the output name must end in .rec")
    return idx_path_of(rec_path)


def add_record_args(group):
    """--out-rec, --category-csv, --cate-type, --level-labels, --skip-corrupt: what is written and how it is labelled
    (also data.hash_labelled_rec's; check_record_args checks them)."""
    group.add_argument("--out-rec", required=True,
                       help="output .rec; its .idx and X.rec.json (what the labels are) are written beside it")
    group.add_argument("--category-csv", default=None,
                       help="Kaggle category_names.csv (default: $DATA_DIR/category_names.csv, "
                            "DATA_DIR defaulting to data_dir)")
    group.add_argument("--cate-type", type=int, choices=(1, 3), default=3,
                       help="label: 3 = class id of the 5270 categories; 1 = index of the category within its "
                            "level-1 category (a level-1 sub-class model)")
    group.add_argument("--level-labels", action="store_true",
                       help="not the original's: label each record with a vector, the class id then its category's "
                            "level-2 and level-1 group ids of the category CSV (label_width 3 in X.rec.json), for "
                            "train.train_model --level-heads (rwightman's hierarchical heads); with --cate-type 3")
    group.add_argument("--skip-corrupt", action="store_true",
                       help="skip unreadable documents (reported) instead of stopping")


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m data.bson2rec", description=__doc__,
                                     formatter_class=HelpFormatter)
    io = parser.add_argument_group("input and output")
    io.add_argument("--bson", required=True, help="Kaggle BSON (train, validation split or test)")
    add_record_args(io)
    io.add_argument("--force", action="store_true", help="overwrite existing outputs")
    select = parser.add_argument_group("image selection (in this order, on the images in file order)")
    select.add_argument("--md5-dict", default=None,
                        help="MD5 dictionary (data.bson_md5_dict): keep images whose MD5 has a single category")
    select.add_argument("--md5-dict-pkl", action=RefusedFlag, explanation=PICKLE_REFUSED, metavar="PKL",
                        help="the original's pickled dictionary: refused with a one-line explanation; use --md5-dict")
    select.add_argument("--unique-md5", action="store_true",
                        help="keep only the first occurrence of each image MD5 (DATASET_C)")
    select.add_argument("--under-sampling", type=int, default=0, metavar="N",
                        help="keep the first N images of each category (0: all); unlabelled images are kept")
    order = parser.add_argument_group("record order (the original's: Python's random.shuffle)")
    # None until given, so that --no-shuffle can refuse them; main() fills in the defaults.
    order.add_argument("--shuffle-seed", "--random-seed", dest="shuffle_seed", type=int, default=None,
                       metavar="SEED", help=f"seed of the record order (--random-seed: the original's spelling) "
                                            f"(default: {DEFAULT_SHUFFLE_SEED} = 0xC0FFEE)")
    order.add_argument("--shuffle-size", type=int, default=None, metavar="N",
                       help="shuffle within consecutive blocks of N records (default: 0, all records as one block, "
                            "as the original's default of 99999999 did)")
    order.add_argument("--no-shuffle", action="store_true", help="keep file order (e.g. for a test BSON)")
    mosaic = parser.add_argument_group("product mosaics (not the original's: bestfitting's multi-image models)")
    mosaic.add_argument("--mosaic", action="store_true",
                        help="one record per product: its first 4 decodable pictures tiled 2x2 into one picture "
                             f"(data.mosaic), a JPEG of quality {JPEG_QUALITY}; products shuffled as pictures are. "
                             "Not with the picture selections (--md5-dict, --unique-md5, --under-sampling) nor "
                             "--level-labels")
    mosaic.add_argument("--mosaic-size", type=int, default=None, metavar="S",
                        help=f"with --mosaic: the mosaic is SxS, each tile S/2 x S/2 (default {DEFAULT_SIZE}: "
                             "180x180 pictures at their own size)")
    mosaic.add_argument("--mosaic-fill", choices=FILL_RULES, default=None,
                        help="with --mosaic: the tiles of a product of fewer than 4 pictures: repeat its pictures in "
                             f"order, or leave them white (blank) (default {DEFAULT_FILL})")
    return parser


def check_order_flags(args):
    """--no-shuffle with a seed or block size: refused, since one of the two would be ignored."""
    if args.no_shuffle:
        given = [flag for flag, value in (("--shuffle-seed", args.shuffle_seed), ("--shuffle-size", args.shuffle_size))
                 if value is not None]
        if given:
            raise UserError(f"--no-shuffle with {' and '.join(given)}: file order has no seed nor blocks; "
                            "give one or the other")
    args.shuffle_seed = DEFAULT_SHUFFLE_SEED if args.shuffle_seed is None else args.shuffle_seed
    args.shuffle_size = 0 if args.shuffle_size is None else args.shuffle_size
    for flag, value in (("--under-sampling", args.under_sampling), ("--shuffle-size", args.shuffle_size)):
        if value < 0:
            raise UserError(f"{flag} {value}: must be >= 0")


def check_record_args(args):
    """The flags of add_record_args that cannot go together."""
    if args.level_labels and args.cate_type != 3:
        raise UserError(f"--level-labels with --cate-type {args.cate_type}: the level labels go beside class ids "
                        "(--cate-type 3)")


def mosaic_layout(args):
    """The MosaicLayout of --mosaic (None without it); the flags that do not go with it refused in one line."""
    if not args.mosaic:
        given = [flag for flag, value in (("--mosaic-size", args.mosaic_size), ("--mosaic-fill", args.mosaic_fill))
                 if value is not None]
        if given:
            raise UserError(f"{given[0]}: only with --mosaic")
        return None
    picture_flags = [flag for flag, on in (("--md5-dict", args.md5_dict), ("--unique-md5", args.unique_md5),
                                           ("--under-sampling", args.under_sampling > 0),
                                           ("--level-labels", args.level_labels)) if on]
    if picture_flags:
        raise UserError(f"--mosaic with {picture_flags[0]}: " +
                        ("a mosaic's labels are one class per product; this version writes no label vectors for "
                         "mosaics" if picture_flags[0] == "--level-labels" else
                         "that selection keeps or drops single pictures, and a mosaic record is a whole product"))
    try:
        return MosaicLayout(DEFAULT_SIZE if args.mosaic_size is None else args.mosaic_size,
                            args.mosaic_fill or DEFAULT_FILL)
    except ValueError as exc:
        raise UserError(f"--mosaic-size {args.mosaic_size}: {exc}") from None


def check_labelled_for_levels(args, labelled, bson_path):
    """--level-labels on a BSON without category_id: refused (there is no class to take the groups of)."""
    if args.level_labels and not labelled:
        raise UserError(f"{bson_path}: its products have no category_id, so --level-labels has no class to take the "
                        "level-2 and level-1 groups of; leave it out for an unlabelled BSON")


def check_inputs(args):
    """Inputs and outputs, before the BSON is indexed (minutes on the 58 GB file)."""
    check_record_args(args)
    mosaic_layout(args)
    check_input_file(args.bson, "BSON")
    if args.category_csv:
        check_input_file(args.category_csv, "category CSV")
    if args.md5_dict:
        check_input_file(args.md5_dict, "MD5 dictionary")
    idx_path = output_idx_path(args.out_rec)
    check_outputs([args.out_rec, idx_path, rec_info_path(args.out_rec)], args.force,
                  inputs=[args.bson, args.category_csv or default_category_csv(), args.md5_dict])
    check_order_flags(args)
    return idx_path


def main(argv=None):
    args = build_parser().parse_args(argv)
    idx_path = check_inputs(args)
    md5_dict = Md5Dictionary.load(args.md5_dict) if args.md5_dict else None
    timer = Timer()
    index = BsonIndex.open(args.bson, skip_corrupt=args.skip_corrupt)
    labelled = bool((index.products["category_id"] != NO_CATEGORY).any())
    check_labelled_for_levels(args, labelled, args.bson)
    categories = Categories.load(args.category_csv or default_category_csv()) if labelled else None
    classes = product_classes(index, categories).astype(np.int32)
    # int32 positions and classes: 12 million images take 48 MB per array instead of 96
    image_products = np.repeat(np.arange(len(index), dtype=np.int32), index.products["num_imgs"])
    image_classes = classes[image_products]
    log.info("%s", describe_labels(categories, args.cate_type, args.level_labels))
    info = rec_info(categories, args.cate_type, args.category_csv or default_category_csv(),
                    shuffled=not args.no_shuffle, level_labels=args.level_labels)
    layout = mosaic_layout(args)
    if layout is not None:
        return write_mosaics(args, index, classes, categories, layout, idx_path, info, timer)

    skipped = collections.Counter()
    order = select_images(index, image_classes, skipped, unique_md5=args.unique_md5, md5_dict=md5_dict,
                          under_sampling=args.under_sampling,
                          shuffle_seed=None if args.no_shuffle else args.shuffle_seed,
                          shuffle_size=args.shuffle_size)
    prechecked = needs_prepass(args.unique_md5, md5_dict, args.under_sampling)
    written = write_records(index, order, image_labels(image_classes, categories, args.cate_type, args.level_labels),
                            image_products, args.out_rec, idx_path, skipped, check_jpeg=not prechecked, info=info)
    log_counts(index, written, skipped, args.out_rec, idx_path)
    if written + sum(skipped.values()) != index.num_images:
        raise UserError(f"image count mismatch: {written} written + {sum(skipped.values())} skipped "
                        f"!= {index.num_images} in")
    if written == 0:
        what = "holds no images" if index.num_images == 0 else "has no image left after the selection"
        log.warning("%s %s: wrote an empty %s and %s", args.bson, what, args.out_rec, os.path.basename(idx_path))
    log.info("done in %.1f s", timer.seconds)
    return 0


def write_mosaics(args, index, classes, categories, layout, idx_path, info, timer):
    """main's --mosaic: one record per product (write_mosaic_records), its counts checked and logged."""
    skipped = collections.Counter()
    order = mosaic_order(index, skipped, None if args.no_shuffle else args.shuffle_seed, args.shuffle_size)
    info = dataclasses.replace(info, mosaic_size=layout.size, mosaic_fill=layout.fill)
    written = write_mosaic_records(index, order, image_labels(classes, categories, args.cate_type), layout,
                                   args.out_rec, idx_path, skipped, info)
    log.info("in: %d products, %d images", len(index), index.num_images)
    log.info("written: %d product mosaics of %dx%d (%s fill) -> %s (+ %s, %s)", written, layout.size, layout.size,
             layout.fill, args.out_rec, os.path.basename(idx_path), os.path.basename(rec_info_path(args.out_rec)))
    for reason, count in sorted(skipped.items()):
        if count:
            log.info("skipped %s: %d", reason, count)
    left_out = skipped["product_without_pictures"] + skipped["product_without_decodable_picture"]
    if written + left_out != len(index):
        raise UserError(f"product count mismatch: {written} written + {left_out} left out != {len(index)} in")
    log.info("done in %.1f s", timer.seconds)
    return 0


def log_counts(index, written, skipped, rec_path, idx_path):
    no_images = int((index.products["num_imgs"] == 0).sum())
    log.info("in: %d products, %d images%s%s", len(index), index.num_images,
             f"; {plural(no_images, 'product')} without images" if no_images else "",
             f"; {plural(len(index.skipped), 'corrupt document')} skipped" if index.skipped else "")
    log.info("written: %d records -> %s (+ %s, %s)", written, rec_path, os.path.basename(idx_path),
             os.path.basename(rec_info_path(rec_path)))
    for reason, count in sorted(skipped.items()):
        log.info("skipped %s: %d", reason, count)


if __name__ == "__main__":
    run_cli(main)
