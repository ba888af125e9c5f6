"""Predict the category of every product of a BSON with one or more trained networks.

A reader process streams products through the BSON's offset index to --num-procs
workers (decode, RGB, views for --multi-view), which hand them over ZeroMQ to this
process; it runs every model on each batch and reduces the probabilities as the
original solution's predict.py did:
  views of an image      -> arithmetic mean, per model (flip TTA with --multi-view 1)
  models                 -> arithmetic mean of the first k, per image, for each k of --ensembles
  images of a product    -> their product (m0) and their sum (m1); the argmax is the class
An image whose MD5 is in the training dictionary (--md5-dict) gets the dictionary's
probability instead (--md5-dict-type; `unique` was the solution's choice).

Writes OUTPUT (all models, m0, as the original) and, for each k of --ensembles, OUTPUT's
name with .e{k}.m0 / .e{k}.m1 before its extension (the original wrote OUTPUT.e{k}.m{0,1});
the solution submitted e14.m1 after product-hash post-processing. On a labelled BSON
(e.g. the 5% validation split) it prints the product-level accuracy of every output.

MD5-aware inference (predict.forward_plan): a first pass hashes the pictures of the run (the
run's only hashing: the digests travel with the pictures to the workers); a picture the
dictionary answers is not decoded nor forwarded, and a picture repeated within the run is
forwarded once per model at any distance, its image mean kept in a file on disk until its last
use (predict.repeat_spill; --repeat-spill-dir, --repeat-spill-gb) and reused (--forward-all: forward
every picture, to compare; the workers hash them). The outputs are the same either way, within float rounding.
--save-probs DIR keeps every image's probabilities (predict.prob_store) for predict.ensemble;
it forwards the answered pictures too, since the store serves every --md5-dict-type. With
--save-features the store also keeps each model's penultimate features of every view of every picture.

--cate-level 1 runs a level-1 sub-class model (outputs: a category's index within its
level-1 group, data.bson2rec --cate-type 1): accuracy is against the products' sub-class
ids, MD5 overrides set sub-class ids, and the CSVs hold the predicted sub-class id (not a
submission), as the original. The level is each checkpoint's (its PREFIX-input.json records
the label kind training read from the .rec's X.rec.json), and the category CSV must be the
one it was trained on (the recorded digest): either mismatch is refused before any work.

A checkpoint trained with level heads (train.train_model --level-heads; not the original's) is predicted with
its class head; --combine-levels multiplies each class's probability by those of its level-2 and level-1
groups from the level heads and renormalises, before the views, models and pictures are reduced as above.
Checkpoints without level heads, in the same ensemble, give their class head's probabilities either way.

A checkpoint trained on product mosaics (data.bson2rec --mosaic; not the original's: bestfitting's multi-image
models; its PREFIX-input.json records the layout) is fed each product's mosaic, built by data.mosaic as the training
records were, its flip view mirroring each tile in place. Its product probability is taken as that model's
probability of every usable picture of the product, so the views, models, MD5 overrides and pictures are reduced
as above, and the probability store holds it per picture (predict.predictor; docs/beyond.md).
"""
import argparse
import dataclasses
import logging
import os
import tempfile
import time

from tqdm import tqdm

from data.bson_index import BsonIndex
from data.categories import Categories, default_category_csv
from cli.files import check_input_paths, check_output_folder, check_outputs
from cli.reporting import Timer, human_bytes, plural
from cli.runner import HelpFormatter, RefusedFlag, UserError, run_cli
from data.md5_dict import PICKLE_REFUSED
from predict.forward_plan import plan_run
from predict.models import label_level, load_models, model_files
from predict.outputs import add_reduction_flags, forward_counts, load_md5_override, report_accuracy, write_outputs
from predict.pipeline import TRANSPORTS, Pipeline
from predict.predictor import CATE_LEVELS, Predictor, input_groups, make_variants
from predict.prob_store import DEFAULT_FEATURE_DTYPE, FEATURE_DTYPES, StoreWriter, range_folder
from predict.preprocess import BORDER_PIXELS, MULTI_VIEWS, Resize
from predict.repeat_spill import free_bytes
from predict.repeat_spill import row_bytes as spill_row_bytes
from predict.submission import variant_path
from train.data import parse_image_shape, parse_rgb_mean
from train.devices import DEVICES_HELP, contexts

log = logging.getLogger(__name__)

MULTI_VIEW_MEAN_REFUSED = ("the original dropped this flag before its final run (it combined all views and pictures "
                           "of a product by sum or product); here views are averaged and both product reductions "
                           "are written: pass --ensembles N and read OUTPUT.eN.m1 (sum) or .eN.m0 (product)")


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m predict.predict", description=__doc__,
                                     formatter_class=HelpFormatter)
    data = parser.add_argument_group("Input")
    data.add_argument("--bson", required=True, help="products to predict (test.bson or a validation split)")
    data.add_argument("--category-csv", "--csv", dest="category_csv", default=None,
                      help="category_names.csv (default $DATA_DIR/category_names.csv; --csv: the original's name)")
    data.add_argument("--cut", type=int, default=0, help="only the first N products (of the shard); 0: all")
    data.add_argument("--shard", default=None, help="i/n: predict the i-th (0-based) of n product ranges")
    data.add_argument("--skip-corrupt", action="store_true", help="skip unreadable BSON documents (reported)")
    models = parser.add_argument_group("Models")
    models.add_argument("--symbol", nargs="+", required=True,
                        help="*-symbol.json per model (one for all when every model shares it)")
    models.add_argument("--params", nargs="+", required=True, help="*.params per model, in ensemble order")
    models.add_argument("--cate-level", type=int, default=None, choices=CATE_LEVELS,
                        help="3: one output per category; 1: a level-1 sub-class model (see above) (default: the "
                             "checkpoints' label kind; 3 for checkpoints that do not record it)")
    models.add_argument("--combine-levels", action="store_true",
                        help="not the original's: for checkpoints trained with level heads (train.train_model "
                             "--level-heads), multiply each class's probability by its level-2 and level-1 groups' "
                             "from those heads and renormalise (default: the class head alone); others are unchanged")
    models.add_argument("--gpus", default="", help=DEVICES_HELP)
    models.add_argument("--batch-size", type=int, default=128, help="views per forward pass")
    # The input settings: each model's own, from PREFIX-input.json beside its symbol (written by
    # training); a flag overrides them for every model (needed for checkpoints without the file).
    models.add_argument("--image-shape", "--data-shape", dest="image_shape", default=None,
                        help="network input C,H,W (default: each checkpoint's; --data-shape: the original's name)")
    models.add_argument("--resize", type=int, default=None,
                        help="squash every picture to RxR (cubic), as the original's predictor, then the centre "
                             "crop; 0: pictures as stored (default: each checkpoint's resize, done as its training "
                             "did it: shorter edge, its interpolation)")
    models.add_argument("--rgb-mean", default=None, help="R,G,B mean subtracted (default: each checkpoint's; "
                                                         "the solution: raw 0-255 RGB, 0,0,0)")
    models.add_argument("--rgb-scale", type=float, default=None, help="multiplier after the mean "
                                                                      "(default: each checkpoint's)")
    tta = parser.add_argument_group("Views and ensembles")
    tta.add_argument("--multi-view", type=int, default=1, choices=sorted(MULTI_VIEWS),
                     help="0 the picture; 1 adds the horizontal flip (solution); 2 adds the vertical flip; "
                          f"3 adds the picture without a {BORDER_PIXELS}-pixel border, resized back")
    add_reduction_flags(tta)
    pipe = parser.add_argument_group("Pipeline")
    pipe.add_argument("--num-procs", type=int, default=max(1, (os.cpu_count() or 2) - 1),
                      help="preprocessing worker processes")
    pipe.add_argument("--transport", default="ipc", choices=TRANSPORTS,
                      help="ipc (socket files in a private folder) or tcp on 127.0.0.1")
    pipe.add_argument("--queue", type=int, default=16, help="messages buffered between processes")
    pipe.add_argument("--forward-all", action="store_true",
                      help="forward every picture, also those the MD5 dictionary answers and repeats (to compare)")
    pipe.add_argument("--repeat-spill-dir", default=None, metavar="DIR",
                      help="folder of the file holding the image means (with --save-features, also the features) "
                           "of repeated pictures between their first and last use (default: the folder of "
                           "--output, else of --save-probs, else the system's temporary folder); it is never "
                           "left behind")
    pipe.add_argument("--repeat-spill-gb", type=float, default=None, metavar="GB",
                      help="at most this much for that file (default: what the run needs, within 90%% of the "
                           "folder's free space); repeats beyond it are forwarded again")
    pipe.add_argument("--reuse-cache-mb", action=RefusedFlag,
                      explanation="the repeated pictures' means are now kept on disk: --repeat-spill-gb GB bounds them",
                      help="refused with a one-line explanation: use --repeat-spill-gb")
    out = parser.add_argument_group("Output")
    out.add_argument("--output", required=True,
                     help="submission CSV (.gz to compress); empty: write nothing (accuracy only), as the original")
    out.add_argument("--print-summary", nargs="?", const="-", default=None, metavar="CSV",
                     help="labelled BSON: per-category accuracy and most-confused category, to CSV "
                          "(bare flag, as the original: to stdout)")
    out.add_argument("--save-probs", default=None, metavar="DIR",
                     help="keep every image's top probabilities in DIR/products-START-STOP/ for predict.ensemble "
                          "(forwards the pictures the dictionary answers as well)")
    out.add_argument("--save-probs-top-k", type=int, default=50, metavar="K",
                     help="probabilities kept per model and image (float16 logs, with the remaining mass)")
    out.add_argument("--save-features", action="store_true",
                     help="with --save-probs: also keep each model's penultimate features (the input of its "
                          "classifier, training's feature layer) of every view of every picture, "
                          "DIR/products-START-STOP/features-M.npy (views, images, D) for model M")
    out.add_argument("--save-features-dtype", default=None, choices=sorted(FEATURE_DTYPES),
                     help=f"with --save-features: float16 (as computed) or uint8 (half the size: quantised "
                          f"with a scale per model, recorded in meta.json) (default {DEFAULT_FEATURE_DTYPE})")
    out.add_argument("--force", action="store_true", help="overwrite existing outputs")
    add_original_flags(parser)
    return parser


def add_original_flags(parser):
    """The original's flags that have no use here, so that its command lines still run."""
    original = parser.add_argument_group("The original's flags (accepted for its command lines)")
    original.add_argument("--md5-dict-pkl", action=RefusedFlag, explanation=PICKLE_REFUSED,
                          help="refused with a one-line explanation: use --md5-dict DICT.npz")
    original.add_argument("--zmq-port", type=int, default=None,
                          help="ignored: the processes talk over private sockets (--transport)")
    original.add_argument("--md5-mode", type=int, default=None,
                          help="ignored, as the original's final predict.py ignored it "
                               "(product hashes: predict.md5_predict)")
    original.add_argument("--mean-max-pooling", type=int, default=0,
                          help="0 only (the original's default and final run); other values are refused")
    original.add_argument("--multi-view-mean", action=RefusedFlag, explanation=MULTI_VIEW_MEAN_REFUSED,
                          help="refused with a one-line explanation (an early version's flag)")


def check_original_flags(args):
    """Refuse what cannot be honoured; one log line for each accepted flag that does nothing here."""
    if args.mean_max_pooling:
        raise UserError(f"--mean-max-pooling {args.mean_max_pooling}: DPN mean-max pooling at test time is not "
                        "implemented (the original's final run did not use it)")
    if args.zmq_port is not None:
        log.info("--zmq-port %d ignored: the processes talk over private %s sockets", args.zmq_port, args.transport)
    if args.md5_mode is not None:
        log.info("--md5-mode %d ignored, as in the original's final predict.py (product hashes: predict.md5_predict)",
                 args.md5_mode)


def parse_shard(shard):
    """(i, n) of --shard i/n, or None."""
    if not shard:
        return None
    try:
        shard_index, num_shards = (int(n) for n in shard.split("/"))
    except ValueError:
        raise UserError(f"--shard {shard}: expected i/n, e.g. 0/4") from None
    if not 0 <= shard_index < num_shards:
        raise UserError(f"--shard {shard}: need 0 <= i < n, e.g. 0/4")
    return shard_index, num_shards


def product_range(index, shard, cut):
    start, stop = 0, len(index)
    if shard:
        start, stop = index.shard(*shard)
    if cut:
        stop = min(stop, start + cut)
    return start, stop


def check_arguments(args):
    """Everything that can be checked before loading anything: every flag, the devices, every input
    file, every output. Returns (input overrides, variants, outputs, contexts)."""
    check_original_flags(args)
    overrides = {"image_shape": parse_image_shape(args.image_shape, "--image-shape") if args.image_shape else None,
                 "resize": args.resize, "rgb_scale": args.rgb_scale,
                 "rgb_mean": tuple(parse_rgb_mean(args.rgb_mean)) if args.rgb_mean else None}
    if args.resize:  # the original predictor's --resize: squashed, cubic (predict.preprocess)
        overrides.update(resize_mode="squash", inter_method=Resize.of(args.resize).inter_method)
    for flag, value, least in (("--batch-size", args.batch_size, 1), ("--cut", args.cut, 0),
                               ("--num-procs", args.num_procs, 1), ("--queue", args.queue, 1),
                               ("--save-probs-top-k", args.save_probs_top_k, 1)):
        if value < least:
            raise UserError(f"{flag} {value}: must be at least {least}")
    parse_shard(args.shard)
    if args.save_features and not args.save_probs:
        raise UserError("--save-features: needs --save-probs DIR (the features are stored beside the probabilities)")
    if args.save_features_dtype and not args.save_features:
        raise UserError(f"--save-features-dtype {args.save_features_dtype}: only with --save-features")
    num_models = len(args.params)
    bad = [k for k in args.ensembles if not 1 <= k <= num_models]
    if bad:
        raise UserError(f"--ensembles {bad}: each k must be between 1 and the {plural(num_models, 'model')} given")
    device_contexts = contexts(args.gpus)
    variants = make_variants(num_models, args.ensembles)
    outputs = [args.output] + [variant_path(args.output, v.tag) for v in variants[1:]] if args.output else []
    summary = args.print_summary if args.print_summary != "-" else None
    check_outputs(outputs + [summary], args.force, inputs=check_input_files(args))
    if args.save_probs:
        check_output_folder(args.save_probs)
    if args.repeat_spill_gb is not None and args.repeat_spill_gb <= 0:
        raise UserError(f"--repeat-spill-gb {args.repeat_spill_gb}: must be above 0")
    args.repeat_spill_dir = spill_folder(args)
    return overrides, variants, outputs, device_contexts


def spill_folder(args):
    """The folder of the repeated pictures' file (checked: it must exist and be a folder)."""
    if args.repeat_spill_dir:
        folder = args.repeat_spill_dir
        if not os.path.isdir(folder):
            raise UserError(f"--repeat-spill-dir {folder}: no such folder")
        return folder
    if args.output:
        return os.path.dirname(os.path.abspath(args.output))
    return args.save_probs or tempfile.gettempdir()


def spill_capacity(args, row_bytes):
    """(rows the repeated pictures' file may hold, what bounds it: words for the log)."""
    free = int(0.9 * free_bytes(args.repeat_spill_dir))
    if args.repeat_spill_gb is not None and args.repeat_spill_gb * 2 ** 30 < free:
        return int(args.repeat_spill_gb * 2 ** 30) // row_bytes, f"--repeat-spill-gb {args.repeat_spill_gb:g}"
    return free // row_bytes, f"90% of the free space in {args.repeat_spill_dir}"


def check_model_inputs(models, multi_view, save_features=False):
    """Each model's input (its checkpoint's, or the flags') fits what the workers can prepare."""
    for model in models:
        _, height, width = model.input.image_shape
        resize, source = model.input.resize, f"{model.name}'s input"
        if model.input.mosaic_layout is not None:
            check_mosaic_input(model, multi_view, save_features)
            continue
        if resize and resize < max(height, width):
            how = "squashed to RxR" if model.input.resize_mode == "squash" else "resized shorter edge to R"
            raise UserError(f"{source}: resize {resize} is smaller than {height}x{width}: the pictures are "
                            f"{how}, then centre-cropped to the input (--resize, --image-shape)")
        if multi_view == 3 and min(height, width) <= 2 * BORDER_PIXELS:
            raise UserError(f"--multi-view 3 drops a {BORDER_PIXELS}-pixel border: {source} {height}x{width} "
                            "is too small")


def check_mosaic_input(model, multi_view, save_features):
    """A network of product mosaics: its input takes the whole mosaic (as training required), with the views a
    mosaic has, and no feature store (whose features are per picture)."""
    layout, (_, height, width) = model.input.mosaic_layout, model.input.image_shape
    fed = model.input.resize or layout.size
    if height != width or fed != height:
        raise UserError(f"{model.name}'s input: product mosaics of {layout.size}x{layout.size} resized to {fed} "
                        f"would be cropped to {height}x{width}, cutting tiles (--resize, --image-shape)")
    if multi_view == 3:
        raise UserError(f"--multi-view 3: {model.name} takes product mosaics, whose views are the mosaic and its "
                        "tiles flipped (--multi-view 0-2); a border crop would cut its tiles unevenly")
    if save_features:
        raise UserError(f"--save-features: {model.name} takes product mosaics, and the feature store keeps "
                        "features per picture; leave the mosaic model out of a feature run")


def check_input_files(args):
    """Each input file exists and is no directory (named by its flag); returns their paths."""
    args.category_csv = args.category_csv or default_category_csv()
    inputs = [(args.bson, "--bson BSON"), (args.category_csv, "--category-csv category")]
    model_files(args.symbol, args.params)
    inputs += [(path, "--symbol") for path in args.symbol] + [(path, "--params") for path in args.params]
    if args.md5_dict:
        inputs.append((args.md5_dict, "--md5-dict"))
    return check_input_paths(inputs)


@dataclasses.dataclass
class PredictionRun:
    """What `run` hands to the outputs: the products [start, stop) of `index` and their classes."""
    index: BsonIndex
    categories: Categories
    variants: list  # predictor.Variant of each output, the main output first
    predictor: Predictor  # class_ids[variant][row] and the run's counts
    outputs: list  # the file of each variant
    start: int
    stop: int
    seconds: float  # the prediction itself, models loaded
    timer: Timer
    num_views: int  # views per picture


def run(args):
    """Everything up to the outputs: check the arguments, load, predict. Returns the run's parts."""
    overrides, variants, outputs, device_contexts = check_arguments(args)
    timer = Timer()
    categories = Categories.load(args.category_csv)
    args.cate_level = label_level(args.symbol, categories, args.cate_level)
    if args.cate_level == 1:
        num_classes = categories.num_level1_sub_classes
        classes_are = f"--cate-level 1: the largest level-1 group of {categories.path}"
    else:
        num_classes, classes_are = len(categories), f"the categories of {categories.path}"
    md5_override = load_md5_override(args.md5_dict, args.md5_dict_type, categories, num_classes, args.cate_level)
    models = load_models(args.symbol, args.params, args.batch_size, overrides.pop("image_shape"), device_contexts,
                         num_classes, classes_are, overrides, args.save_features,
                         categories if args.combine_levels else None)
    if args.combine_levels and not any(model.input.level_head_kinds for model in models):
        log.warning("--combine-levels: no model has level heads (train.train_model --level-heads); each gives its "
                    "class head's probabilities")
    check_model_inputs(models, args.multi_view, args.save_features)
    index = BsonIndex.open(args.bson, skip_corrupt=args.skip_corrupt)
    start, stop = product_range(index, parse_shard(args.shard), args.cut)
    if args.save_probs and os.path.exists(range_folder(args.save_probs, start, stop)) and not args.force:
        raise UserError(f"{range_folder(args.save_probs, start, stop)}: already exists (--force to replace it)")
    num_products = stop - start
    num_images = int(index.products["num_imgs"][start:stop].sum())
    log.info("%s: products %d..%d of %d (%d products, %d images)", args.bson, start, stop, len(index),
             num_products, num_images)
    if index.skipped:
        log.warning("%d unreadable documents skipped (--skip-corrupt); they get no row", len(index.skipped))
    started = time.perf_counter()
    num_views = len(MULTI_VIEWS[args.multi_view])
    feature_dims = [model.feature_dim for model in models] if args.save_features else None
    plan = None
    if not args.forward_all and num_products:
        row = spill_row_bytes(len(models), num_classes, num_views, feature_dims)
        capacity, bound = spill_capacity(args, row)
        plan = plan_run(index, start, stop, md5_override, bool(args.save_probs), capacity)
        report_plan(plan, row, bound, args.repeat_spill_dir)
    store = None
    if args.save_probs:
        os.makedirs(args.save_probs, exist_ok=True)
        store = StoreWriter(args.save_probs, index, start, stop, num_classes, [os.path.basename(p) for p in args.params],
                            args.save_probs_top_k, {"multi_view": args.multi_view, "cate_level": args.cate_level,
                                                     "categories_digest": categories.digest,
                                                     # recorded only when on: the stores of other runs are unchanged
                                                     **({"combine_levels": True} if args.combine_levels else {})},
                            feature_dims, num_views, args.save_features_dtype or DEFAULT_FEATURE_DTYPE)
    predictor = Predictor(models, args.batch_size, num_classes, variants, start, num_products, md5_override,
                          args.product_unique_md5, plan, store, args.repeat_spill_dir)
    try:
        if num_products:
            stream(args, predictor, start, stop, plan)
        else:
            log.warning("nothing to predict: %s has no products%s; the outputs get only their header line",
                        args.bson, f" in --shard {args.shard}" if args.shard and len(index) else "")
        if store is not None:
            store.commit(args.force)
    finally:
        predictor.close()
        if store is not None and store.arrays:
            store.abandon()
    seconds = time.perf_counter() - started
    return PredictionRun(index, categories, variants, predictor, outputs, start, stop, seconds, timer, num_views)


def report_plan(plan, row, bound, folder):
    """Log what the repeated pictures need on disk, and warn when some do not fit."""
    if not plan.num_repeated:
        return
    log.info("%s repeated: at most %d live at once, %s of %s on disk in %s", plural(plan.num_repeated, "picture"),
             plan.peak_rows, human_bytes(plan.peak_rows * row), human_bytes(row), folder)
    if plan.peak_rows < plan.peak_rows_needed:
        log.warning("%d of %d repeated pictures do not fit %s (%s needed): forwarded each time",
                    plan.num_repeated - len(plan.uses), plan.num_repeated, bound,
                    human_bytes(plan.peak_rows_needed * row))


def stream(args, predictor, start, stop, plan=None):
    """Products start..stop through the pipeline's workers into the predictor (the workers prepare
    views at each distinct model input, and skip the pictures `plan` does not forward)."""
    received = 0
    with Pipeline(args.bson, start, stop, args.num_procs, input_groups(predictor.models)[0], args.multi_view,
                  args.transport, args.skip_corrupt, args.queue,
                  forward_mask=None if plan is None else plan.forward,
                  digests=None if plan is None else plan.digests) as pipeline, \
            tqdm(total=stop - start, unit="product", desc="predict") as bar:
        while received < stop - start:
            for prepared in pipeline.receive():
                predictor.add(prepared)
                received += 1
                bar.update(1)
        predictor.flush()


def main(argv=None):
    args = build_parser().parse_args(argv)
    result = run(args)
    index, categories, predictor = result.index, result.categories, result.predictor
    start, stop, seconds, outputs = result.start, result.stop, result.seconds, result.outputs
    num_products = stop - start
    # Products in = rows out, each exactly once.
    if predictor.completed != num_products or (predictor.class_ids < 0).any():
        raise UserError(f"internal: {predictor.completed} of {num_products} products predicted")
    write_outputs(outputs, index.products["product_id"][start:stop], predictor.class_ids, categories, args.cate_level)
    log.info("predicted %d products, %d images (%d overridden by MD5, %d products without a usable picture) "
             "with %s x %d views in %.1f s: %.1f images/s, forward %.0f%% of the time",
             num_products, predictor.images, predictor.images_overridden, predictor.products_without_picture,
             plural(len(predictor.models), "model"), result.num_views, seconds,
             predictor.images / max(seconds, 1e-9),
             100 * predictor.forward_seconds / max(seconds, 1e-9))
    counts = forward_counts(predictor.images_forwarded, predictor.images, predictor.images_overridden,
                            predictor.images_reused)
    if args.save_probs and not args.forward_all:
        counts += "; --save-probs forwards the answered ones too"
    labelled = index.has_labels and stop > start
    report_accuracy(index.products["category_id"][start:stop] if labelled else None, categories, result.variants,
                    predictor.class_ids, args.cate_level, args.print_summary, args.bson)
    if args.print_summary:
        print(counts)  # the summary's counts of pictures forwarded
    for path in outputs:
        log.info("wrote %s (%s)", path, plural(num_products, "row"))
    if not outputs:
        log.info("no --output: nothing written")
    log.info(counts)
    log.info("done in %.1f s", result.timer.seconds)
    return 0


if __name__ == "__main__":
    run_cli(main)
