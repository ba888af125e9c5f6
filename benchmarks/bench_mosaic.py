"""Product mosaics (data.bson2rec --mosaic, not the original's: bestfitting's multi-image models) on the demo
generator: the two fill rules of a product's empty tiles (repeat, blank) against a network of single pictures, and
the pictures' network with the repeat mosaic's in one ensemble.

The labelled train.bson of data.make_demo_data (--categories, --products, seed 0) is split by product, 20% to
validation (seed 0xC0FFEE). Both halves are converted by data.bson2rec three times: one record per picture, and one
mosaic per product of --mosaic-size (tiles of half that: the pictures' network's input size) with each fill rule.
densenet-41 trains from scratch on each (pictures at 3xTxT with --resize T, T = mosaic size / 2; mosaics at their
size), --epochs epochs, NAdam lr 0.001 (x0.2 for the last epoch), batch 32, seed 0. predict.predict then classifies
the validation products (flip TTA: each tile mirrored in place for a mosaic; the pictures' probabilities multiplied,
m0, and summed, m1), and once more with the pictures' network and the repeat mosaic's as one ensemble of 2.

The table: each method's product accuracy with its 95% Wilson interval, its difference to the pictures' network
(paired by product, 95% interval), the training time and the prediction rate. Every step's output is kept in
--work-dir and reused when present (delete a file to redo its step).

Run from the repository root:  python -m benchmarks.bench_mosaic [--markdown OUT.md]
"""
import argparse
import csv
import os

import numpy as np

from benchmarks.commands import once, python_module, split_by_product, train_small_network
from benchmarks.report import format_accuracy, print_tables
from cli.statistics import paired_difference
from data.bson_index import BsonIndex
from data.recordio import count_records

NETWORK = "densenet-41"
FILLS = ("repeat", "blank")


def make_bed(work, args):
    """The bed's raw files, its split, and each half as pictures and as mosaics of each fill rule."""
    raw = os.path.join(work, "raw")
    once(os.path.join(raw, "test_ground_truth.csv"), lambda: python_module(
        "data.make_demo_data", "--out-dir", raw, "--num-categories", str(args.categories), "--num-train-products",
        str(args.products), "--num-test-products", "1", "--seed", "0", "--force"))
    paths = {"csv": os.path.join(raw, "category_names.csv"), **split_by_product(work, os.path.join(raw, "train.bson"))}
    kinds = [("pictures", [])] + [(fill, ["--mosaic", "--mosaic-size", str(args.mosaic_size), "--mosaic-fill", fill])
                                  for fill in args.fills]
    for kind, flags in kinds:
        for part in ("train", "valid"):
            rec = paths[f"{kind}_{part}_rec"] = os.path.join(work, f"{kind}_{part}.rec")
            once(rec + ".json", lambda part=part, rec=rec, flags=flags: python_module(
                "data.bson2rec", "--bson", paths[f"{part}_bson"], "--out-rec", rec, "--category-csv", paths["csv"],
                "--force", *flags))
    return paths


def epochs_of(kind, args):
    """Training epochs of the network of `kind` (pictures, or a fill rule's mosaics)."""
    return args.epochs if kind == "pictures" or args.mosaic_epochs is None else args.mosaic_epochs


def train(work, paths, kind, args):
    """(checkpoint prefix, training seconds, epochs) of the network trained on the `kind` .rec files (trained once):
    pictures at the tiles' size, mosaics whole."""
    epochs = epochs_of(kind, args)
    prefix = os.path.join(work, "models", f"{kind}_e{epochs}", kind)
    tile = args.mosaic_size // 2
    image_shape, resize = (f"3,{tile},{tile}", tile) if kind == "pictures" else \
        (f"3,{args.mosaic_size},{args.mosaic_size}", 0)
    train_small_network(NETWORK, paths[f"{kind}_train_rec"], paths[f"{kind}_valid_rec"], prefix, epochs,
                        os.path.join(work, "log.txt"), image_shape=image_shape, resize=resize)
    with open(f"{prefix}-metrics.csv") as fh:
        seconds = sum(float(row["seconds"]) for row in csv.DictReader(fh))
    print(f"  {kind}, {epochs} epochs: {seconds:.0f} s of training", flush=True)
    return prefix, seconds, epochs


def predicted(work, paths, networks, name):
    """({product _id: category_id} of m0 and of m1, seconds) of the validation products by the checkpoints
    `networks` ((prefix, epoch) each) as one ensemble (flip TTA)."""
    output = os.path.join(work, f"{name}_{'_'.join(str(epoch) for _, epoch in networks)}.csv")
    prefixes = [prefix for prefix, _ in networks]
    seconds_path = output + ".seconds"
    k = str(len(prefixes))

    def run():
        seconds = python_module(
            "predict.predict", "--bson", paths["valid_bson"], "--category-csv", paths["csv"],
            "--symbol", *(f"{p}-symbol.json" for p in prefixes), "--params",
            *(f"{p}-{epoch:04d}.params" for p, epoch in networks), "--gpus", "", "--multi-view", "1",
            "--batch-size", "64", "--num-procs", "1", "--ensembles", k, "--output", output, "--force",
            log_path=os.path.join(work, "log.txt"))
        with open(seconds_path, "w") as fh:
            fh.write(f"{seconds}\n")

    once(seconds_path, run)
    answers = []
    for reduction in ("m0", "m1"):
        with open(output.replace(".csv", f".e{k}.{reduction}.csv")) as fh:
            answers.append({int(row["_id"]): int(row["category_id"]) for row in csv.DictReader(fh)})
    with open(seconds_path) as fh:
        return answers, float(fh.read())


def rows_of(work, paths, args):
    """One table row per method and product reduction."""
    index = BsonIndex.open(paths["valid_bson"])
    truth = dict(zip(index.products["product_id"].tolist(), index.products["category_id"].tolist()))
    products = sorted(truth)
    trained = {kind: train(work, paths, kind, args) for kind in ("pictures",) + tuple(args.fills)}
    methods = [("pictures", "network of single pictures", ["pictures"])]
    methods += [(fill, f"mosaic, {fill} fill, {trained[fill][2]} epochs", [fill]) for fill in args.fills]
    methods.append((f"pictures_{args.fills[0]}", f"ensemble: pictures + mosaic ({args.fills[0]})",
                    ["pictures", args.fills[0]]))
    rows, reference = [], {}
    for name, label, kinds in methods:
        answers, seconds = predicted(work, paths, [(trained[kind][0], trained[kind][2]) for kind in kinds], name)
        for reduction, by_product in zip(("m0", "m1"), answers):
            right = np.array([by_product[p] == truth[p] for p in products])
            if name == "pictures":
                reference[reduction] = right
            mean, half = paired_difference(right, reference[reduction])
            training = "—" if len(kinds) > 1 else f"{trained[kinds[0]][1]:.0f}"
            rows.append((f"{label}, {reduction}", format_accuracy(int(right.sum()), len(right)),
                         "—" if name == "pictures" else f"{mean:+.4f} ± {half:.4f}", training,
                         f"{len(products) / seconds:.0f}"))
    return rows, len(products)


def table(rows, products, paths, args):
    pictures = count_records(paths["pictures_valid_rec"])
    train_products = count_records(paths[f"{args.fills[0]}_train_rec"])
    tile = args.mosaic_size // 2
    lines = [f"Demo generator, {args.categories} categories, {args.products} products split 80/20 by product "
             f"({train_products} training products; {products} validation products, {pictures} pictures). "
             f"{NETWORK} from scratch, seed 0: pictures at 3x{tile}x{tile} for {args.epochs} epochs, mosaics of "
             f"{args.mosaic_size}x{args.mosaic_size} (tiles of {tile}). Flip TTA; accuracy of the validation products "
             "with its 95% Wilson interval; the difference to the pictures' network with the same reduction, paired "
             "by product (95% interval); the prediction rate includes starting the process.",
             "",
             "| method | product accuracy | difference | training s | products/s predicted |",
             "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_mosaic", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", default="/tmp/cdiscount_bench_mosaic",
                        help="where every step's output is kept and reused")
    parser.add_argument("--categories", type=int, default=40, help="categories of the demo generator")
    parser.add_argument("--products", type=int, default=3000, help="products of the generated train.bson")
    parser.add_argument("--mosaic-size", type=int, default=128, help="mosaics of SxS (tiles S/2: the pictures' input)")
    parser.add_argument("--epochs", type=int, default=2, help="training epochs of each network")
    parser.add_argument("--mosaic-epochs", type=int, default=None, metavar="N",
                        help="training epochs of the mosaic networks (default: --epochs; an epoch of mosaics is one "
                             "batch per 32 products, of pictures one per 32 pictures)")
    parser.add_argument("--fills", nargs="+", choices=FILLS, default=list(FILLS),
                        help="the fill rules to train mosaics of; the first joins the pictures' network in the ensemble")
    parser.add_argument("--markdown", default=None, metavar="OUT.md", help="also write the table there")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    work = os.path.join(args.work_dir, f"demo_c{args.categories}_p{args.products}_s{args.mosaic_size}")
    os.makedirs(work, exist_ok=True)
    paths = make_bed(work, args)
    rows, products = rows_of(work, paths, args)
    print_tables([table(rows, products, paths, args)], args.markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
