"""Generate a seeded demo product catalog of JPEG and PNG files, the input of data.catalog_to_bson.

The pictures are the demo dataset's (data.make_demo_data draws them: a style per category, views
of one object per product); here they are written as files, as a shop's catalog would hold them:
--png-fraction of them as PNG, --other-size-fraction of them at 320x240 instead of 180x180, and
a few products with 5 or 6 pictures (Kaggle allows 4). Category names are the demo's level-3 names
(some contain a comma, quoted in the CSV).

--layout csv writes OUT_DIR/catalog.csv (product_id,category,pictures; pictures separated by ';',
relative to the CSV) and OUT_DIR/pictures/; --layout folders writes OUT_DIR/catalog/CATEGORY/
PRODUCT_ID/1.jpg ... Products without a category (--num-unlabelled-products) have an empty
category field, or sit in the folder _test. The same seed gives byte-identical files.
"""
import argparse
import contextlib
import csv
import logging
import os
import shutil

import cv2
import numpy as np
from tqdm import tqdm

from cli.reporting import Timer, plural
from cli.runner import HelpFormatter, UserError, run_cli
from data.make_demo_data import (MIN_TRAIN_PRODUCTS_PER_CATEGORY, NoiseBank, assign_categories, category_weights,
                                 draw_image, encode_jpeg, make_categories, make_styles, num_pictures, product_ids,
                                 product_look, view_params)

log = logging.getLogger(__name__)

LAYOUT_OUTPUTS = {"csv": ("catalog.csv", "pictures"), "folders": ("catalog",)}
UNLABELLED_FOLDER = "_test"      # data.catalog_to_bson's default --unlabelled-folder
PICTURE_SIZE = 180
OTHER_SIZE = (320, 240)          # width, height: a landscape photo, fitted back into 180x180 by the converter
MANY_PICTURES_PROB = 0.03        # products with 5 or 6 pictures, above Kaggle's 4
FIRST_PRODUCT_ID = 1000


def catalog_products(rng, num_categories, num_products, num_unlabelled):
    """(product_id, category index, labelled) in catalog order: labelled products first, each category
    with at least MIN_TRAIN_PRODUCTS_PER_CATEGORY of them, then the unlabelled ones."""
    weights = category_weights(rng, num_categories)
    categories = np.concatenate([assign_categories(rng, weights, num_products, MIN_TRAIN_PRODUCTS_PER_CATEGORY),
                                 assign_categories(rng, weights, num_unlabelled)])
    ids = product_ids(rng, num_products + num_unlabelled) + FIRST_PRODUCT_ID
    return [(int(pid), int(c), n < num_products) for n, (pid, c) in enumerate(zip(ids, categories))]


def product_pictures(rng, style, noise, png_fraction, other_size_fraction, jpeg_quality):
    """(extension, encoded bytes, resized) of one product's pictures: views of one object."""
    count = int(rng.integers(5, 7)) if rng.random() < MANY_PICTURES_PROB else num_pictures(rng)
    look = product_look(rng, style, PICTURE_SIZE)
    pictures = []
    for _ in range(count):
        rgb = draw_image(style, view_params(rng, look, PICTURE_SIZE), PICTURE_SIZE, noise)
        resized = bool(rng.random() < other_size_fraction)
        if resized:
            rgb = cv2.resize(rgb, OTHER_SIZE, interpolation=cv2.INTER_CUBIC)
        if rng.random() < png_fraction:
            ok, buffer = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            if not ok:
                raise RuntimeError("cv2.imencode failed")
            pictures.append(("png", buffer.tobytes(), resized))
        else:
            pictures.append(("jpg", encode_jpeg(rgb, jpeg_quality), resized))
    return pictures


def write_file(path, data):
    with open(path, "wb") as fh:
        fh.write(data)


def generate_demo_catalog(out_dir, layout="csv", num_categories=12, num_products=600, num_unlabelled=30,
                          png_fraction=0.3, other_size_fraction=0.1, seed=0, jpeg_quality=90, force=False,
                          progress=True):
    """Write the catalog to `out_dir` (created if missing); returns counts."""
    check_settings(layout, num_categories, num_products, num_unlabelled, png_fraction, other_size_fraction)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise UserError(f"{out_dir}: --out-dir is a file, not a folder")
    outputs = [os.path.join(out_dir, name) for name in LAYOUT_OUTPUTS[layout]]
    for path in outputs:
        if os.path.exists(path) and not force:
            raise UserError(f"{path}: output exists; pass --force to overwrite it")
    os.makedirs(out_dir, exist_ok=True)
    timer = Timer()
    rng = np.random.default_rng(seed)
    names = [row[3] for row in make_categories(rng, num_categories)]
    styles = make_styles(rng, num_categories, PICTURE_SIZE)
    noise = NoiseBank(rng, PICTURE_SIZE)
    products = catalog_products(rng, num_categories, num_products, num_unlabelled)
    counts = dict(products=len(products), unlabelled=num_unlabelled, categories=num_categories, pictures=0,
                  png=0, other_size=0, above_four=0)
    # Everything is written in a temporary folder and moved into place at the end: nothing half written.
    temporary = os.path.join(out_dir, f".demo_catalog.tmp-{os.getpid()}")
    os.makedirs(temporary)
    try:
        rows = []
        for product_id, category, labelled in tqdm(products, unit="product", desc="demo catalog",
                                                   disable=not progress):
            pictures = product_pictures(rng, styles[category], noise, png_fraction, other_size_fraction,
                                        jpeg_quality)
            if layout == "csv":
                folder = os.path.join(temporary, "pictures")
                names_of = [f"{product_id}-{k + 1}" for k in range(len(pictures))]
            else:
                folder = os.path.join(temporary, "catalog", names[category] if labelled else UNLABELLED_FOLDER,
                                      str(product_id))
                names_of = [str(k + 1) for k in range(len(pictures))]
            os.makedirs(folder, exist_ok=True)
            files = [f"{name}.{ext}" for name, (ext, _, _) in zip(names_of, pictures)]
            for file_name, (_, data, _) in zip(files, pictures):
                write_file(os.path.join(folder, file_name), data)
            rows.append((product_id, names[category] if labelled else "",
                         ";".join(f"pictures/{name}" for name in files)))
            counts["pictures"] += len(pictures)
            counts["png"] += sum(ext == "png" for ext, _, _ in pictures)
            counts["other_size"] += sum(resized for _, _, resized in pictures)
            counts["above_four"] += len(pictures) > 4
        if layout == "csv":
            with open(os.path.join(temporary, "catalog.csv"), "w", newline="", encoding="utf-8") as fh:
                writer = csv.writer(fh, lineterminator="\n")
                writer.writerow(["product_id", "category", "pictures"])
                writer.writerows(rows)
        for path in outputs:
            remove(path)   # only with --force, checked above
            os.replace(os.path.join(temporary, os.path.basename(path)), path)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    counts["seconds"] = timer.seconds
    log.info("catalog: %s (%d without category), %s in %s, %s (%d PNG, %d JPEG; %d of 320x240), "
             "%s with more than 4 pictures", plural(counts["products"], "product"), num_unlabelled,
             plural(num_categories, "category", "categories"), layout, plural(counts["pictures"], "picture"),
             counts["png"], counts["pictures"] - counts["png"], counts["other_size"],
             plural(counts["above_four"], "product"))
    log.info("wrote %s in %.1f s", " and ".join(outputs), counts["seconds"])
    return counts


def remove(path):
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def check_settings(layout, num_categories, num_products, num_unlabelled, png_fraction, other_size_fraction):
    if layout not in LAYOUT_OUTPUTS:
        raise UserError(f"--layout {layout}: one of {', '.join(LAYOUT_OUTPUTS)}")
    if num_categories < 2:
        raise UserError(f"--num-categories {num_categories}: need at least 2")
    least = MIN_TRAIN_PRODUCTS_PER_CATEGORY * num_categories
    if num_products < least:
        raise UserError(f"--num-products {num_products}: need at least {least} "
                        f"({MIN_TRAIN_PRODUCTS_PER_CATEGORY} per category)")
    if num_unlabelled < 0:
        raise UserError(f"--num-unlabelled-products {num_unlabelled}: must be >= 0")
    for name, value in (("--png-fraction", png_fraction), ("--other-size-fraction", other_size_fraction)):
        if not 0.0 <= value <= 1.0:
            raise UserError(f"{name} {value}: must be in [0, 1]")


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m data.make_demo_catalog", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--out-dir", required=True, help="folder for the catalog (created if missing)")
    parser.add_argument("--layout", default="csv", choices=sorted(LAYOUT_OUTPUTS),
                        help="csv: catalog.csv + pictures/; folders: catalog/CATEGORY/PRODUCT_ID/pictures")
    parser.add_argument("--num-categories", type=int, default=12, help="number of categories")
    parser.add_argument("--num-products", type=int, default=600, help="products with a category")
    parser.add_argument("--num-unlabelled-products", type=int, default=30, help="products without a category")
    parser.add_argument("--png-fraction", type=float, default=0.3, help="fraction of pictures written as PNG")
    parser.add_argument("--other-size-fraction", type=float, default=0.1,
                        help="fraction of pictures at 320x240 instead of 180x180")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives identical files")
    parser.add_argument("--force", action="store_true", help="overwrite an existing catalog")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.seed < 0:
        raise UserError(f"--seed {args.seed}: must be >= 0")
    generate_demo_catalog(args.out_dir, layout=args.layout, num_categories=args.num_categories,
                          num_products=args.num_products, num_unlabelled=args.num_unlabelled_products,
                          png_fraction=args.png_fraction, other_size_fraction=args.other_size_fraction,
                          seed=args.seed, force=args.force)
    return 0


if __name__ == "__main__":
    run_cli(main)
