"""Ensembles, MD5 override types and product reductions from probability stores, without a forward pass.

`predict.predict --save-probs DIR` keeps each image's top-K model probabilities
(predict.prob_store). This command reads one or more such stores (one per model from
separate runs, or one holding several models; their models are taken in the order given),
checks that they describe the same products, pictures and MD5s, and writes what
predict.predict writes: OUTPUT (all models, m0) and OUTPUT's .e{k}.m0 / .e{k}.m1 for each k
of --ensembles, with any --md5-dict-type; on labelled products it prints the accuracy of
each. The reduction is predict.predict's own code (predict.predictor.image_ensembles and
product_classes); each class outside an image's top K gets the geometric mean of those
classes' probabilities (predict.probability.from_top_k), and the classes the MD5 dictionary
names for a product's pictures are kept exactly (predict.prob_store), so the categories agree
with a direct run on almost every product (measured in docs/benchmarks.md against K).

It needs no MXNet: a sweep over override types or ensembles costs seconds, not a prediction.
"""
import argparse
import logging
import os

import numpy as np

from data.categories import Categories, default_category_csv, short_digest
from cli.files import check_input_paths, check_outputs
from cli.reporting import Timer, plural
from cli.runner import HelpFormatter, UserError, run_cli
from predict.outputs import add_reduction_flags, load_md5_override, report_accuracy, write_outputs
from predict.predictor import image_ensembles, make_variants, product_classes
from predict.prob_store import META, Store, check_stores_agree
from predict.submission import variant_path

log = logging.getLogger(__name__)
CHUNK_BYTES = 64 << 20  # dense probabilities rebuilt at a time by iter_products


def product_pictures(store):
    """(image_start: each product's first picture row and, last, the picture count; decoded; 16-byte
    digests) of a store's pictures, in product order."""
    num_images = store.concatenated("num_images").astype(np.int64)
    image_start = np.concatenate([[0], np.cumsum(num_images)])
    return image_start, store.concatenated("decoded"), [bytes(d).ljust(16, b"\0") for d in store.concatenated("md5")]


def iter_products(stores):
    """(row, (models, its images, C) dense image means, decoded, 16-byte digests) for every product of
    `stores` (checked to agree) in order, the models of all stores stacked; rebuilt in chunks of about
    CHUNK_BYTES so that a store of any size streams."""
    first = stores[0]
    image_start, decoded, digests = product_pictures(first)
    num_products = len(image_start) - 1
    num_models = sum(len(store.models) for store in stores)
    num_classes = first.meta["num_classes"]
    chunk_images = max(1, CHUNK_BYTES // (4 * num_models * num_classes))
    product = 0
    while product < num_products:
        # at least one product, however many pictures it has
        last = max(int(np.searchsorted(image_start, image_start[product] + chunk_images, side="right")) - 1,
                   product + 1)
        lo, hi = int(image_start[product]), int(image_start[last])
        dense = (np.concatenate([store.model_rows(lo, hi) for store in stores]) if hi > lo else
                 np.zeros((num_models, 0, num_classes), dtype=np.float32))
        for row in range(product, last):
            a, b = int(image_start[row]), int(image_start[row + 1])
            yield row, dense[:, a - lo:b - lo], decoded[a:b], digests[a:b]
        product = last


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m predict.ensemble", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--probs", nargs="+", required=True, metavar="DIR",
                        help="probability stores (predict.predict --save-probs DIR), models in this order")
    parser.add_argument("--category-csv", "--csv", dest="category_csv", default=None,
                        help="category_names.csv (default $DATA_DIR/category_names.csv)")
    parser.add_argument("--output", required=True,
                        help="submission CSV (.gz to compress); empty: write nothing (accuracy only)")
    add_reduction_flags(parser)
    parser.add_argument("--multi-view", type=int, default=None,
                        help="the views the stores were predicted with (checked; the stores hold the view means)")
    parser.add_argument("--print-summary", nargs="?", const="-", default=None, metavar="CSV",
                        help="labelled products: per-category accuracy and most-confused category, to CSV "
                             "(bare flag: to stdout)")
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    return parser


def open_stores(args):
    """The stores, checked against each other and against --multi-view."""
    seen = {}
    for directory in args.probs:
        real = os.path.realpath(directory)
        if real in seen:
            raise UserError(f"{directory}: store given twice (also as {seen[real]})")
        seen[real] = directory
    stores = [Store(directory) for directory in args.probs]
    check_stores_agree(stores)
    views = stores[0].meta["multi_view"]
    if args.multi_view is not None and args.multi_view != views:
        raise UserError(f"--multi-view {args.multi_view}: {stores[0].directory} was predicted with --multi-view "
                        f"{views} (its views are averaged in the store: predict again to change them)")
    return stores


def check_arguments(args, stores):
    """Flags, inputs and outputs against the stores, before any work; returns (variants, outputs)."""
    num_models = sum(len(store.models) for store in stores)
    bad = [k for k in args.ensembles if not 1 <= k <= num_models]
    if bad:
        raise UserError(f"--ensembles {bad}: each k must be between 1 and the {plural(num_models, 'model')} "
                        "of the stores")
    args.category_csv = args.category_csv or default_category_csv()
    inputs = check_input_paths([(args.category_csv, "--category-csv category"), (args.md5_dict, "--md5-dict")])
    inputs += [os.path.join(part.folder, META) for store in stores for part in store.ranges]
    variants = make_variants(num_models, args.ensembles)
    outputs = [args.output] + [variant_path(args.output, v.tag) for v in variants[1:]] if args.output else []
    summary = args.print_summary if args.print_summary != "-" else None
    check_outputs(outputs + [summary], args.force, inputs=inputs)
    return variants, outputs


def load_categories(args, stores):
    """The category CSV, checked against the stores: their class count and, in stores that record it
    (predict.predict writes it with the run's settings), the digest of the categories."""
    meta = stores[0].meta
    categories = Categories.load(args.category_csv)
    for store in stores:
        recorded = store.meta.get("categories_digest")
        if recorded and recorded != categories.digest:
            raise UserError(f"{args.category_csv}: categories {short_digest(categories.digest)}, but {store.directory} "
                            f"was predicted with categories {short_digest(recorded)}: its class ids would name other "
                            "categories; give the category CSV it was predicted with")
    num_classes = len(categories) if meta["cate_level"] == 3 else categories.num_level1_sub_classes
    if num_classes != meta["num_classes"]:
        raise UserError(f"{args.category_csv}: {num_classes} classes at --cate-level {meta['cate_level']}, but the "
                        f"stores hold {meta['num_classes']}")
    return categories


def ensemble_classes(stores, variants, md5_override, product_unique_md5):
    """(variants, products) class ids of every product of the stores."""
    sizes = sorted({v.num_models for v in variants})
    class_ids = np.zeros((len(variants), len(stores[0].concatenated("num_images"))), dtype=np.int64)
    for row, means, decoded, digests in iter_products(stores):
        overrides = md5_override(digests) if md5_override is not None else {}
        image_probs = image_ensembles(means, decoded, overrides, sizes, digests if product_unique_md5 else None)
        class_ids[:, row] = product_classes(image_probs, variants)
    return class_ids


def main(argv=None):
    args = build_parser().parse_args(argv)
    timer = Timer()
    stores = open_stores(args)
    variants, outputs = check_arguments(args, stores)
    meta = stores[0].meta
    categories = load_categories(args, stores)
    md5_override = load_md5_override(args.md5_dict, args.md5_dict_type, categories, meta["num_classes"],
                                     meta["cate_level"])
    models = store_model_names(stores)
    log.info("in: %s from %s: %s; %s, %s", plural(len(models), "model"), plural(len(stores), "store"),
             ", ".join(models), plural(len(stores[0].concatenated("product_id")), "product"),
             plural(int(stores[0].image_bounds[-1]), "image"))
    class_ids = ensemble_classes(stores, variants, md5_override, args.product_unique_md5)
    write_store_outputs(args, stores, categories, variants, class_ids, outputs)
    log.info("done in %.1f s", timer.seconds)
    return 0


def write_store_outputs(args, stores, categories, variants, class_ids, outputs):
    """The CSVs of every output, their accuracy on labelled products (and --print-summary), the counts."""
    meta = stores[0].meta
    product_ids = stores[0].concatenated("product_id")
    write_outputs(outputs, product_ids, class_ids, categories, meta["cate_level"])
    labels = stores[0].concatenated("category_id")
    labelled = len(labels) and (labels >= 0).all()
    report_accuracy(labels if labelled else None, categories, variants, class_ids, meta["cate_level"],
                    args.print_summary, ", ".join(args.probs))
    for path in outputs:
        log.info("out: %s (%s)", path, plural(len(product_ids), "row"))
    if not outputs:
        log.info("no --output: nothing written")


def store_model_names(stores):
    """'store folder:model' of every model of the stores, in order."""
    return [f"{os.path.basename(os.path.normpath(store.directory))}:{name}"
            for store in stores for name in store.models]


if __name__ == "__main__":
    run_cli(main)
