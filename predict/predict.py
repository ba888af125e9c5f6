"""Predict the category of every product of a BSON with one or more trained networks.

A reader process streams products through the BSON's offset index to --num-procs
workers (decode, RGB, views for --multi-view), which hand them over ZeroMQ to this
process; it runs every model on each batch and reduces the probabilities:
  views of an image      -> arithmetic mean (flip TTA with --multi-view 1)
  images of a product    -> arithmetic mean (m0) and geometric mean (m1)
  models                 -> arithmetic mean of the first k, for each k of --ensembles
An image whose MD5 is in the training dictionary (--md5-dict) gets the dictionary's
probability instead (--md5-dict-type; `unique` was the solution's best).

Writes OUTPUT (all models, arithmetic product mean) and, for each k of --ensembles,
OUTPUT's name with .e{k}.m0 / .e{k}.m1 before its extension (the original wrote
OUTPUT.e{k}.m{0,1}). On a labelled BSON (e.g. the 5% validation split) it prints the
product-level accuracy of every output.
"""
import argparse
import csv
import logging
import os
import time
import types

import numpy as np
from tqdm import tqdm

from data.bson_index import BsonIndex
from data.categories import Categories, default_category_csv
from data.common import (Timer, UserError, atomic_outputs, check_input_file, check_outputs_free, run_cli)
from data.md5_dict import Md5Dictionary
from predict import probability
from predict.models import load_models, normaliser
from predict.pipeline import TRANSPORTS, Pipeline
from predict.predictor import Md5Override, Predictor, make_variants
from predict.preprocess import MULTI_VIEWS
from predict.submission import variant_path, write_submission
from train.data import parse_image_shape, parse_rgb_mean

log = logging.getLogger(__name__)


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m predict.predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    data = parser.add_argument_group("Input")
    data.add_argument("--bson", required=True, help="products to predict (test.bson or a validation split)")
    data.add_argument("--csv", default=None, help="category_names.csv (default $DATA_DIR/category_names.csv)")
    data.add_argument("--cut", type=int, default=0, help="only the first N products (of the shard)")
    data.add_argument("--shard", default=None, help="i/n: predict the i-th (0-based) of n product ranges")
    data.add_argument("--skip-corrupt", action="store_true", help="skip unreadable BSON documents (reported)")
    models = parser.add_argument_group("Models")
    models.add_argument("--symbol", nargs="+", required=True,
                        help="*-symbol.json per model (one for all when every model shares it)")
    models.add_argument("--params", nargs="+", required=True, help="*.params per model, in ensemble order")
    models.add_argument("--gpus", default="", help="GPU ids, e.g. 0,1 (empty: CPU)")
    models.add_argument("--batch-size", type=int, default=128, help="views per forward pass")
    models.add_argument("--data-shape", default="3,180,180", help="network input C,H,W")
    models.add_argument("--resize", type=int, default=0,
                        help="resize the shorter edge to this before the centre crop (as training's --resize)")
    models.add_argument("--rgb-mean", default="0,0,0", help="as in training (solution: raw 0-255 RGB)")
    models.add_argument("--rgb-scale", type=float, default=1.0, help="as in training")
    tta = parser.add_argument_group("Views and ensembles")
    tta.add_argument("--multi-view", type=int, default=1, choices=sorted(MULTI_VIEWS),
                     help="0 original; 1 adds the horizontal flip (solution); 2 adds the vertical flip; "
                          "3 adds a centre crop")
    tta.add_argument("--ensembles", type=int, nargs="*", default=[],
                     help="extra outputs of the first k models, e.g. 8 11 14")
    tta.add_argument("--md5-dict", default=None, help="training MD5 dictionary (data.bson_md5_dict)")
    tta.add_argument("--md5-dict-type", default="unique", choices=probability.MD5_DICT_TYPES,
                     help="how a known image MD5 sets its probability (unique: one-hot if single-category)")
    tta.add_argument("--product-unique-md5", action="store_true", help="count repeated pictures of a product once")
    pipe = parser.add_argument_group("Pipeline")
    pipe.add_argument("--num-procs", type=int, default=max(1, (os.cpu_count() or 2) - 1),
                      help="preprocessing worker processes")
    pipe.add_argument("--transport", default="ipc", choices=TRANSPORTS,
                      help="ipc (socket files in a private folder) or tcp on 127.0.0.1")
    pipe.add_argument("--queue", type=int, default=16, help="messages buffered between processes")
    out = parser.add_argument_group("Output")
    out.add_argument("--output", required=True, help="submission CSV (.gz to compress)")
    out.add_argument("--print-summary", default=None,
                     help="labelled BSON: write per-category accuracy and most-confused category here")
    out.add_argument("--force", action="store_true", help="overwrite existing outputs")
    return parser


def product_range(index, shard, cut):
    start, stop = 0, len(index)
    if shard:
        try:
            shard_index, num_shards = (int(n) for n in shard.split("/"))
        except ValueError:
            raise UserError(f"--shard {shard}: expected i/n, e.g. 0/4") from None
        start, stop = index.shard(shard_index, num_shards)
    if cut:
        stop = min(stop, start + cut)
    return start, stop


def accuracy_table(variants, class_ids, labels):
    lines = [f"{'output':<8} {'models':>6} {'product mean':<12} {'accuracy':>9}"]
    for variant, predicted in zip(variants, class_ids):
        lines.append(f"{variant.tag:<8} {variant.num_models:>6} {variant.product_mean:<12} "
                     f"{float((predicted == labels).mean()):>9.5f}")
    return "\n".join(lines)


def write_category_summary(path, categories, predicted, labels):
    """Per category: products, correct, accuracy, the category it is most often mistaken for."""
    pairs, counts = np.unique(np.stack([labels, predicted], axis=1), axis=0, return_counts=True)
    rows = {}
    for (label, guess), count in zip(pairs.tolist(), counts.tolist()):
        row = rows.setdefault(label, {"total": 0, "correct": 0, "confused": None, "confused_count": 0})
        row["total"] += count
        if guess == label:
            row["correct"] = count
        elif count > row["confused_count"]:
            row["confused"], row["confused_count"] = guess, count
    with atomic_outputs(path) as (tmp,), open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["category_id", "class_id", "products", "correct", "accuracy",
                         "most_confused_category_id", "most_confused_products", "name"])
        for class_id, row in sorted(rows.items()):
            confused = "" if row["confused"] is None else categories.category_of(row["confused"])
            writer.writerow([categories.category_of(class_id), class_id, row["total"], row["correct"],
                             f"{row['correct'] / row['total']:.4f}", confused, row["confused_count"],
                             categories.level3_names[class_id]])


def run(args):
    """Everything up to the outputs: check the arguments, load, predict. Returns the run's parts."""
    data_shape = parse_image_shape(args.data_shape, "--data-shape")
    rgb_mean = parse_rgb_mean(args.rgb_mean)
    if args.batch_size < 1:
        raise UserError("--batch-size must be at least 1")
    num_models = len(args.params)
    bad = [k for k in args.ensembles if not 1 <= k <= num_models]
    if bad:
        raise UserError(f"--ensembles {bad}: each k must be between 1 and the {num_models} models given")
    variants = make_variants(num_models, args.ensembles)
    outputs = [args.output] + [variant_path(args.output, v.tag) for v in variants[1:]]
    check_outputs_free(outputs + [args.print_summary], args.force)

    timer = Timer()
    categories = Categories.load(args.csv or default_category_csv())
    check_input_file(args.bson, "BSON")
    index = BsonIndex.open(args.bson, skip_corrupt=args.skip_corrupt)
    start, stop = product_range(index, args.shard, args.cut)
    num_products = stop - start
    num_images = int(index.products["num_imgs"][start:stop].sum())
    log.info("%s: products %d..%d of %d (%d products, %d images)", args.bson, start, stop, len(index),
             num_products, num_images)
    if index.skipped:
        log.warning("%d unreadable documents skipped (--skip-corrupt); they get no row", len(index.skipped))
    md5_override = None
    if args.md5_dict and args.md5_dict_type != "none":
        dictionary = Md5Dictionary.load(args.md5_dict)
        md5_override = Md5Override(dictionary, categories, args.md5_dict_type, len(categories))
        log.info("MD5 dictionary %s: %d images (%s)", args.md5_dict, len(dictionary.images), args.md5_dict_type)

    models = load_models(args.symbol, args.params, args.batch_size, data_shape, args.gpus, len(categories))
    predictor = Predictor(models, normaliser(rgb_mean, args.rgb_scale), args.batch_size, len(categories), variants,
                          start, num_products, md5_override, args.product_unique_md5)

    received = 0
    started = time.perf_counter()
    with Pipeline(args.bson, start, stop, args.num_procs, data_shape, args.multi_view, args.resize,
                  args.transport, args.skip_corrupt, args.queue) as pipeline, \
            tqdm(total=num_products, unit="product", desc="predict") as bar:
        while received < num_products:
            for prepared in pipeline.receive():
                predictor.add(prepared)
                received += 1
                bar.update(1)
        predictor.flush()
    seconds = time.perf_counter() - started
    return types.SimpleNamespace(index=index, categories=categories, variants=variants, predictor=predictor,
                                 outputs=outputs, start=start, stop=stop, seconds=seconds, timer=timer,
                                 num_views=len(MULTI_VIEWS[args.multi_view]))


def main(argv=None):
    args = build_parser().parse_args(argv)
    result = run(args)
    index, categories, variants, predictor = result.index, result.categories, result.variants, result.predictor
    start, stop, seconds, outputs = result.start, result.stop, result.seconds, result.outputs
    num_products = stop - start
    # Products in = rows out, each exactly once.
    if predictor.completed != num_products or (predictor.class_ids < 0).any():
        raise UserError(f"internal: {predictor.completed} of {num_products} products predicted")
    product_ids = index.products["product_id"][start:stop]
    for path, class_ids in zip(outputs, predictor.class_ids):
        write_submission(path, product_ids, categories.category_ids[class_ids])
    log.info("predicted %d products, %d images (%d overridden by MD5, %d products without a usable picture) "
             "with %d models x %d views in %.1f s: %.1f images/s, forward %.0f%% of the time",
             num_products, predictor.images, predictor.images_overridden, predictor.products_without_picture,
             len(predictor.models), result.num_views, seconds, predictor.images / seconds,
             100 * predictor.forward_seconds / seconds)
    if index.has_labels:
        labels = categories.classes_of(index.products["category_id"][start:stop])
        print(accuracy_table(variants, predictor.class_ids, labels))
        if args.print_summary:
            write_category_summary(args.print_summary, categories, predictor.class_ids[0], labels)
            log.info("per-category summary: %s", args.print_summary)
    elif args.print_summary:
        log.warning("--print-summary needs category_id in the BSON; %s has none", args.bson)
    for path in outputs:
        log.info("wrote %s", path)
    log.info("done in %.1f s", result.timer.seconds)
    return 0


if __name__ == "__main__":
    run_cli(main)
