"""Learned fusion after prediction (not the original's): fit how models and pictures combine on the
labelled validation products, then apply it to the test products, from probability stores.

The original combines its models by an equal-weight mean and a product's pictures by their product
(m0) or sum (m1). The teams around it learned that step; this command does it as an optional stage
after `predict.predict --save-probs` (the faithful outputs do not change):

  python -m predict.fuse train --probs VALID_STORES... --out FUSE [--per-count] [--frequent-classes N]
  python -m predict.fuse apply --fuse FUSE-fuse.json --probs TEST_STORES... --output SUB.csv [--md5-dict D]

train: a k-fold estimate first (--folds, grouped by product and seeded; each product is predicted by
the fit of the folds that do not hold it), printed beside each model alone and the original's m0 and
m1 on the same products, then the fit on all of them, written as FUSE-fuse.json (no pickle).
apply: each picture's fused probabilities, then the MD5 override (--md5-dict) in the original's order
(fuse, then override), then the product's pictures: OUTPUT (m0) and OUTPUT's .fused.m1. The checks and
outputs are predict.ensemble's. Product-hash post-processing (predict.md5_predict) applies to OUTPUT
as to any submission.

Methods (--method): weights, non-negative per-model weights and a temperature, optionally per picture
count (outrunner) and per frequent/rare class group (NighTurs), see predict.fuse_weights; net, the 2nd
place's view-gated fusion net over the models' feature vectors (--save-features), see predict.fuse_net.
"""
import argparse
import json
import logging
import os

import numpy as np

from cli.files import atomic_outputs, check_input_paths, check_outputs
from cli.reporting import Timer, plural
from cli.runner import HelpFormatter, UserError, run_cli
from cli.statistics import paired_difference, wilson_interval
from data.categories import default_category_csv
from predict.ensemble import iter_products, load_categories, open_stores, product_pictures, write_store_outputs
from predict import fuse_net
from predict.fuse_weights import WeightFusion, class_groups
from predict.fusion_table import build_table
from predict.outputs import add_reduction_flags, load_md5_override
from predict.prob_store import META
from predict.predictor import Variant, image_ensembles, product_classes
from predict.probability import first_occurrences
from predict.submission import variant_path
from train.checkpoint import checkpoint_paths, load_params, load_symbol, save_checkpoint
from train.optimizer_state import read_state, restore_state, write_state

log = logging.getLogger(__name__)

FORMAT = "cdiscount-fusion/1"
SETTINGS = ("per_count", "frequent_classes", "candidates", "iterations", "learning_rate", "flips", "epochs",
            "batch_size", "hidden", "net_learning_rate", "seed")  # recorded in PREFIX-fuse.json
METHODS = ("weights", "net")


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m predict.fuse", description=__doc__,
                                     formatter_class=HelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="estimate by k-fold, then fit on labelled stores",
                                formatter_class=HelpFormatter)
    add_store_args(train, "labelled probability stores (predict.predict --save-probs on the validation split)")
    train.add_argument("--out", required=True, metavar="PREFIX", help="writes PREFIX-fuse.json")
    fit = train.add_argument_group("Fitting")
    fit.add_argument("--method", default="weights", choices=METHODS,
                     help="what is learned: weights (per model, see --per-count, --frequent-classes) or net "
                          "(the view-gated fusion net over the models' features)")
    fit.add_argument("--per-count", action="store_true",
                     help="weights per count of usable pictures (1, 2, 3, 4+), as outrunner")
    fit.add_argument("--frequent-classes", type=int, default=0, metavar="N",
                     help="weights for the N most frequent classes of the labels and for the rest, as NighTurs "
                          "(2000 of 5270; 0: one group)")
    fit.add_argument("--candidates", type=int, default=32,
                     help="classes per product the fit scores (the best by the models' summed log products)")
    fit.add_argument("--iterations", type=int, default=300, help="full-batch Adam steps")
    fit.add_argument("--learning-rate", type=float, default=0.05, help="Adam's step on the log-weights")
    net = train.add_argument_group("The fusion net (--method net; needs stores with --save-features)")
    net.add_argument("--flips", default="views", choices=fuse_net.FLIPS,
                     help="a picture's flip as a view of its own (8 slots a product) or averaged with it (4)")
    net.add_argument("--epochs", type=int, default=0, help="epochs (0: about 3,000 updates, 5 to 60 epochs)")
    net.add_argument("--batch-size", type=int, default=64, help="products per update")
    net.add_argument("--hidden", type=int, default=512, help="width of the MLP's hidden layer")
    net.add_argument("--net-learning-rate", type=float, default=1e-3, help="Adam's learning rate")
    net.add_argument("--load-epoch", type=int, default=0,
                     help="resume the final fit from PREFIX-fusenet-NNNN.params and its optimizer state")
    fit.add_argument("--folds", type=int, default=5, help="k of the k-fold estimate (0: fit only)")
    fit.add_argument("--seed", type=int, default=0, help="seed of the folds")
    train.add_argument("--force", action="store_true", help="overwrite PREFIX-fuse.json")

    apply = commands.add_parser("apply", help="write a submission from stores with a fitted fusion",
                                formatter_class=HelpFormatter)
    apply.add_argument("--fuse", required=True, metavar="PREFIX-fuse.json", help="what `train` wrote")
    add_store_args(apply, "probability stores of the same models, in the same order (e.g. of test.bson)")
    apply.add_argument("--output", required=True,
                       help="submission CSV (.gz to compress), with OUTPUT's .fused.m1 beside it; empty: write "
                            "nothing (accuracy only)")
    add_reduction_flags(apply.add_argument_group("MD5 override (after the fusion, as the original's order)"),
                        ensembles=False)
    apply.add_argument("--print-summary", nargs="?", const="-", default=None, metavar="CSV",
                       help="labelled products: per-category accuracy and most-confused category")
    apply.add_argument("--force", action="store_true", help="overwrite existing outputs")
    return parser


def add_store_args(parser, what):
    parser.add_argument("--probs", nargs="+", required=True, metavar="DIR", help=what)
    parser.add_argument("--category-csv", "--csv", dest="category_csv", default=None,
                        help="category_names.csv (default $DATA_DIR/category_names.csv)")
    parser.set_defaults(multi_view=None)  # predict.ensemble.open_stores checks it when given


def read_stores(args):
    stores = open_stores(args)
    args.category_csv = args.category_csv or default_category_csv()
    check_input_paths([(args.category_csv, "--category-csv category")])
    categories = load_categories(args, stores)
    return stores, categories


# ---- train ------------------------------------------------------------------------------------------
class WeightsMethod:
    """--method weights (predict.fuse_weights)."""
    name = "learned weights"

    def __init__(self, args, table, stores):
        self.args, self.table = args, table

    def fit(self, rows):
        groups = class_groups(self.table.labels[rows], self.table.num_classes, self.args.frequent_classes)
        fusion = WeightFusion.initial(len(self.table.model_names), groups, self.args.per_count)
        loss = fusion.fit(self.table, rows, self.args.iterations, self.args.learning_rate)
        return fusion, loss

    def fold(self, train_rows, held_rows):
        fusion, loss = self.fit(train_rows)
        log.info("fitted on %d products (loss %.4f)", len(train_rows), loss)
        scores = fusion.product_scores(self.table, held_rows)
        return self.table.candidates[held_rows, np.argmax(scores, axis=1)]

    def fit_all(self, rows):
        fusion, loss = self.fit(rows)
        for line in fusion.describe(self.table.model_names):
            log.info("fitted: %s", line)
        return {"loss": loss, **fusion.to_json()}


class NetMethod:
    """--method net (predict.fuse_net)."""
    name = "fusion net"

    def __init__(self, args, table, stores):
        self.args, self.table = args, table
        self.features, self.mask = fuse_net.product_views(stores, args.flips)
        self.labels = table.labels.astype(np.float32)

    def epochs(self, rows):
        return self.args.epochs or fuse_net.epochs_for(len(rows), self.args.batch_size)

    def train(self, rows, held_rows=None, **resume):
        held_out = None if held_rows is None else (self.features[held_rows], self.mask[held_rows],
                                                   self.table.labels[held_rows])
        return fuse_net.train(self.features[rows], self.mask[rows], self.labels[rows], self.table.num_classes,
                              epochs=self.epochs(rows), batch_size=self.args.batch_size, hidden=self.args.hidden,
                              learning_rate=self.args.net_learning_rate, seed=self.args.seed, held_out=held_out,
                              **resume)

    def fold(self, train_rows, held_rows):
        module = self.train(train_rows, held_rows)
        return fuse_net.predict(module, self.features[held_rows], self.mask[held_rows]).argmax(axis=1)

    def fit_all(self, rows):
        prefix, epochs = f"{self.args.out}-fusenet", self.epochs(rows)

        def save(epoch, module):
            arg_params, aux_params = module.get_params()
            save_checkpoint(prefix, epoch, module.symbol, arg_params, aux_params,
                            write_state=lambda params, arrays, description: write_state(
                                module, "adam", epoch, params, arrays, description))

        resume = {}
        if self.args.load_epoch:
            _, params_path = checkpoint_paths(prefix, self.args.load_epoch)
            check_input_paths([(params_path, "--load-epoch checkpoint")])
            arg_params, aux_params = load_params(params_path)
            state = read_state(params_path, "adam")
            resume = dict(begin_epoch=self.args.load_epoch, arg_params=arg_params, aux_params=aux_params,
                          state=(lambda module: restore_state(module, *state)) if state else None)
        self.train(rows, epoch_end=save, **resume)
        slots, width = self.features.shape[1:]
        return {"net": {"prefix": os.path.abspath(prefix), "epoch": epochs, "slots": int(slots),
                        "width": int(width), "flips": self.args.flips, "hidden": self.args.hidden}}


def fold_of_products(count, folds, seed):
    """Each labelled product's fold (0..folds-1): a seeded permutation cut into near-equal parts."""
    order = np.random.default_rng(seed).permutation(count)
    fold = np.empty(count, dtype=np.int64)
    fold[order] = np.arange(count) % folds
    return fold


def kfold_answers(args, table, method):
    """Out-of-fold classes of the labelled products (in table.labelled order); a product without a usable
    picture gets class 0, as predict.predict gives it."""
    rows = table.labelled
    fold = fold_of_products(len(rows), args.folds, args.seed)
    answers = np.zeros(len(rows), dtype=np.int64)
    for k in range(args.folds):
        held_out = rows[fold == k]
        log.info("fold %d of %d: %d products to fit on, %d to predict", k + 1, args.folds,
                 int((fold != k).sum()), len(held_out))
        answers[fold == k] = np.where(table.usable[held_out] > 0, method.fold(rows[fold != k], held_out), 0)
    return answers


def estimate_rows(table, learned, name):
    """(name, accuracy, low, high, difference to the best fixed reduction, its half-width) per method."""
    rows = table.labelled
    truth = table.labels[rows]
    answers = {name: table.fixed[name][rows] for name in table.model_names + ["m0", "m1"]}
    best_fixed = max(["m0", "m1"], key=lambda name: (answers[name] == truth).mean())
    answers[f"{name} (k-fold)"] = learned
    lines = []
    for name, answer in answers.items():
        right = answer == truth
        low, high = wilson_interval(int(right.sum()), len(right))
        difference, half = paired_difference(right, answers[best_fixed] == truth)
        lines.append((name, float(right.mean()), low, high, difference, half))
    return lines, best_fixed


def print_estimate(lines, best_fixed, products):
    print(f"k-fold estimate on {products} labelled products (95% intervals; difference to {best_fixed}, "
          "paired by product)")
    print(f"{'method':<40} {'accuracy':>9} {'interval':>17} {'difference':>18}")
    for name, accuracy, low, high, difference, half in lines:
        print(f"{name:<40} {accuracy:>9.4f} {low:>8.4f}-{high:.4f} {difference:>+9.4f} ± {half:.4f}")


def train_main(args):
    if args.folds == 1 or args.folds < 0:
        raise UserError(f"--folds {args.folds}: 0 (no estimate) or 2 or more")
    for flag, value in (("--candidates", args.candidates), ("--iterations", args.iterations),
                        ("--batch-size", args.batch_size), ("--hidden", args.hidden)):
        if value < 1:
            raise UserError(f"{flag} {value}: must be >= 1")
    stores, categories = read_stores(args)
    out = f"{args.out}-fuse.json"
    check_outputs([out], args.force, inputs=[os.path.join(p.folder, META) for s in stores for p in s.ranges])
    meta = stores[0].meta
    table = build_table(stores, categories, meta["cate_level"], args.candidates)
    rows = table.labelled
    if len(rows) < max(args.folds, 1) or len(rows) == 0:
        raise UserError(f"{', '.join(args.probs)}: {plural(len(rows), 'labelled product')}; fitting needs labelled "
                        "products (the validation split), at least one per fold")
    if args.frequent_classes < 0 or args.frequent_classes >= meta["num_classes"]:
        raise UserError(f"--frequent-classes {args.frequent_classes}: between 0 and {meta['num_classes'] - 1}")
    outside = int((table.truth_position[rows] < 0).sum())
    log.info("in: %s, %s (%d with their class outside the %d candidates)", plural(len(table.model_names), "model"),
             plural(len(rows), "labelled product"), outside, table.candidates.shape[1])
    method = (WeightsMethod if args.method == "weights" else NetMethod)(args, table, stores)
    estimate = None
    if args.folds:
        lines, best_fixed = estimate_rows(table, kfold_answers(args, table, method), method.name)
        print_estimate(lines, best_fixed, len(rows))
        estimate = {"folds": args.folds, "seed": args.seed, "products": int(len(rows)), "best_fixed": best_fixed,
                    "methods": [dict(zip(("name", "accuracy", "low", "high", "difference", "half_width"), line))
                                for line in lines]}
    fitted = method.fit_all(rows)
    record = {"format": FORMAT, "method": args.method, "models": table.model_names,
              "num_classes": meta["num_classes"], "cate_level": meta["cate_level"],
              "multi_view": meta["multi_view"], "categories_digest": categories.digest,
              "fitted_on": {"stores": [os.path.abspath(p) for p in args.probs], "products": int(len(rows))},
              "settings": {key: getattr(args, key) for key in SETTINGS}, "estimate": estimate, "fusion": fitted}
    with atomic_outputs(out) as (tmp,), open(tmp, "w") as fh:
        json.dump(record, fh, indent=1)
    log.info("out: %s", out)
    return 0


# ---- apply ------------------------------------------------------------------------------------------
def read_fusion(path, stores, categories):
    """The fitted fusion of `path`, checked against the stores it is applied to."""
    check_input_paths([(path, "--fuse fusion")])
    try:
        with open(path) as fh:
            record = json.load(fh)
        if not isinstance(record, dict) or record.get("format") != FORMAT:
            raise ValueError(f"format is not {FORMAT}")
        fusion = NetFusion(record["fusion"]["net"]) if record["method"] == "net" else \
            WeightFusion.from_json(record["fusion"])
    except (ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: not a fusion predict.fuse train writes ({exc})") from None
    names = [name for store in stores for name in store.models]
    fitted = [name.split(":", 1)[1] for name in record["models"]]
    meta = stores[0].meta
    if fitted != names:
        raise UserError(f"{path}: fitted on the models {', '.join(fitted)}, but the stores hold {', '.join(names)} "
                        "(give the stores of the same models in the same order)")
    for key in ("num_classes", "cate_level", "multi_view"):
        if record[key] != meta[key]:
            raise UserError(f"{path}: {key} {record[key]}, but {meta[key]} in {stores[0].directory}")
    if record.get("categories_digest") not in (None, categories.digest):
        raise UserError(f"{path}: fitted on other categories than {categories.path}")
    if record["method"] == "weights" and len(fusion.class_group) != meta["num_classes"]:
        raise UserError(f"{path}: {len(fusion.class_group)} class groups for {meta['num_classes']} classes")
    return fusion


class NetFusion:
    """A fusion net written by `train --method net`, bound for prediction."""

    def __init__(self, record):
        self.record = record
        symbol_path, params_path = checkpoint_paths(record["prefix"], record["epoch"])
        check_input_paths([(symbol_path, "fusion net symbol"), (params_path, "fusion net parameters")])
        self.symbol, self.params = load_symbol(symbol_path), load_params(params_path)

    def classes(self, stores, variants, md5_override, product_unique_md5):
        """(variants, products) class ids: the net's product probabilities, then the MD5 override of the
        pictures the dictionary answers, multiplied in (m0) or added (m1), as predict.predict reduces."""
        features, mask = fuse_net.product_views(stores, self.record["flips"])
        if features.shape[1:] != (self.record["slots"], self.record["width"]):
            raise UserError(f"{stores[0].directory}: features of {features.shape[1]} views x {features.shape[2]}, "
                            f"but the fusion net takes {self.record['slots']} x {self.record['width']}")
        module = fuse_net.inference_module(self.symbol, *self.params, *features.shape[1:])
        product_probs = fuse_net.predict(module, features, mask)
        image_start, decoded, digests = product_pictures(stores[0])
        class_ids = np.zeros((len(variants), len(image_start) - 1), dtype=np.int64)
        for row in range(len(image_start) - 1):
            a, b = int(image_start[row]), int(image_start[row + 1])
            overrides = md5_override(digests[a:b]) if md5_override is not None else {}
            if product_unique_md5:
                keep = set(first_occurrences(digests[a:b]))
                overrides = {p: v for p, v in overrides.items() if p in keep}
            rows = ([product_probs[row]] if decoded[a:b].any() else []) + [overrides[p] for p in sorted(overrides)]
            image_probs = {1: np.asarray(rows, dtype=np.float64)} if rows else None
            class_ids[:, row] = product_classes(image_probs, variants)
        return class_ids


def fused_classes(stores, fusion, variants, md5_override, product_unique_md5):
    """(variants, products) class ids: each picture fused, overridden, then the pictures reduced."""
    if isinstance(fusion, NetFusion):
        return fusion.classes(stores, variants, md5_override, product_unique_md5)
    class_ids = np.zeros((len(variants), len(stores[0].concatenated("num_images"))), dtype=np.int64)
    for row, means, decoded, digests in iter_products(stores):
        overrides = md5_override(digests) if md5_override is not None else {}
        fused = fusion.image_probs(means, int(decoded.sum()))[None]
        image_probs = image_ensembles(fused, decoded, overrides, [1], digests if product_unique_md5 else None)
        class_ids[:, row] = product_classes(image_probs, variants)
    return class_ids


def fused_variants():
    variants = [Variant(1, "product"), Variant(1, "sum")]
    variants[0].tag, variants[1].tag = "fused.m0", "fused.m1"
    return variants


def apply_main(args):
    stores, categories = read_stores(args)
    fusion = read_fusion(args.fuse, stores, categories)
    check_input_paths([(args.md5_dict, "--md5-dict")])
    variants = fused_variants()
    outputs = [args.output, variant_path(args.output, variants[1].tag)] if args.output else []
    summary = args.print_summary if args.print_summary != "-" else None
    inputs = [args.fuse, args.category_csv] + ([args.md5_dict] if args.md5_dict else []) + [
        os.path.join(p.folder, META) for s in stores for p in s.ranges]
    check_outputs(outputs + [summary], args.force, inputs=inputs)
    meta = stores[0].meta
    md5_override = load_md5_override(args.md5_dict, args.md5_dict_type, categories, meta["num_classes"],
                                     meta["cate_level"])
    log.info("in: %s, %s; fusion %s", plural(len(stores[0].concatenated("product_id")), "product"),
             plural(int(stores[0].image_bounds[-1]), "image"), args.fuse)
    class_ids = fused_classes(stores, fusion, variants, md5_override, args.product_unique_md5)
    write_store_outputs(args, stores, categories, variants, class_ids, outputs)
    return 0


def main(argv=None):
    args = build_parser().parse_args(argv)
    timer = Timer()
    result = train_main(args) if args.command == "train" else apply_main(args)
    log.info("done in %.1f s", timer.seconds)
    return result


if __name__ == "__main__":
    run_cli(main)
