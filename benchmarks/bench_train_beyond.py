"""Training beyond the original (issue 22): hierarchical heads, hash-labelled test pictures and product mosaics,
each against the faithful single-picture model at one budget, alone and in an ensemble with it, on two beds.

The beds are benchmarks.bench_fusion's (its make_bed, in the same --work-dir, so that its data and its faithful
densenet-41 are reused): the demo generator (--demo-categories, --demo-products) and Fashion-MNIST's product photos
(--fashion-products; needs Debian's dataset-fashion-mnist package). Each bed's train.bson is split by product, 20%
to validation; test.bson's products are scored against the bed's ground truth. The budget, the same for every
network: densenet-41 from scratch at 3x32x32, --epochs epochs, NAdam lr 0.001 (x0.2 for the last epoch), batch
32, seed 0 (benchmarks.commands.train_small_network). The networks:
- faithful: one record per picture (data.bson2rec), the class head;
- + hierarchical heads: the same pictures with label vectors (--level-labels), --level-heads with rwightman's
  weights 0.8,0.1,0.1 (train/beyond/B02's), predicted with the class head;
- + hash-labelled test pictures: the faithful records plus data.hash_labelled_rec's extra .rec (creafz's rule,
  with the MD5 dictionary of the training half only, so that no validation label reaches training), read by
  --data-train-extra (train/beyond/B01's);
- mosaic: one record per product, its pictures tiled 2x2 (data.bson2rec --mosaic --mosaic-size S --mosaic-fill FILL;
  the mosaic is resized to the same 32x32 input as every other network, so each picture gets a quarter of it);
- the control: the faithful network again with seed 1. A network trained on other records sees another order
  and other draws, so a single run's difference mixes the technique with the run-to-run spread; the control
  shows that spread, and its ensemble with the faithful network shows what any second network adds.
predict.predict classifies the validation and the test products with each network alone and with each beside the
faithful one (flip TTA, the original's product of the pictures' probabilities: m0; no MD5 dictionary, so that the
networks are compared, not the dictionary). Each accuracy comes with its 95% Wilson interval, and its difference to
the faithful network's with a 95% interval paired by product. Every step's output is kept and reused.

Run from the repository root:  python -m benchmarks.bench_train_beyond [--beds demo,fashion] [--markdown OUT.md]
"""
import argparse
import csv
import json
import os
import sys

import numpy as np

from benchmarks.bench_fusion import make_bed
from benchmarks.commands import once, python_module, train_small_network
from benchmarks.report import format_accuracy, print_tables
from cli.statistics import paired_difference
from data.bson_index import BsonIndex

NETWORK = "densenet-41"
HEAD_WEIGHTS = "0.8,0.1,0.1"  # rwightman's, as train/beyond/B02_hierarchical_heads.sh
TECHNIQUES = ("control", "heads", "hash", "mosaic")
NAMES = {"faithful": "faithful (one picture, class head)", "control": "faithful, seed 1 (the control)",
         "heads": "+ hierarchical heads", "hash": "+ hash-labelled test pictures",
         "mosaic": "mosaic of the product's pictures"}


def beyond_recs(work, paths, args):
    """The extra .rec files of each technique (made once), beside the bed's own."""
    out = os.path.join(work, "beyond")
    os.makedirs(out, exist_ok=True)
    log = os.path.join(work, "log.txt")
    for part in ("train", "valid"):
        if "heads" in args.techniques:
            rec = paths[f"levels_{part}_rec"] = os.path.join(out, f"levels_{part}.rec")
            once(rec + ".json", lambda part=part, rec=rec: python_module(
                "data.bson2rec", "--bson", paths[f"{part}_bson"], "--out-rec", rec, "--category-csv", paths["csv"],
                "--level-labels", "--force", log_path=log))
        if "mosaic" in args.techniques:
            rec = paths[f"mosaic_{part}_rec"] = os.path.join(
                out, f"mosaic_{args.mosaic_size}_{args.mosaic_fill}_{part}.rec")
            once(rec + ".json", lambda part=part, rec=rec: python_module(
                "data.bson2rec", "--bson", paths[f"{part}_bson"], "--out-rec", rec, "--category-csv", paths["csv"],
                "--mosaic", "--mosaic-size", str(args.mosaic_size), "--mosaic-fill", args.mosaic_fill, "--force",
                log_path=log))
    if "hash" in args.techniques:
        rec = paths["hash_rec"] = os.path.join(out, "test_hash_labelled.rec")
        once(rec + ".json", lambda: python_module(
            "data.hash_labelled_rec", "--bson", paths["test"], "--md5-dict", paths["valid_dict"], "--category-csv",
            paths["csv"], "--out-rec", rec, "--exclude-bson", paths["train_bson"], paths["valid_bson"], "--force",
            log_path=log))
    return paths


def train_all(work, paths, args):
    """{network name: (symbol, params)}, each trained once at the budget."""
    log = os.path.join(work, "log.txt")
    models = os.path.join(work, "beyond", "models")
    runs = {"faithful": lambda: (os.path.join(work, "models", NETWORK, NETWORK), paths["train_rec"], paths["valid_rec"],
                                 []),
            "control": lambda: (os.path.join(models, "seed1", "seed1"), paths["train_rec"], paths["valid_rec"], []),
            "heads": lambda: (os.path.join(models, "heads", "heads"), paths["levels_train_rec"],
                              paths["levels_valid_rec"], ["--level-heads", "--head-weights", HEAD_WEIGHTS]),
            "hash": lambda: (os.path.join(models, "hash", "hash"), paths["train_rec"], paths["valid_rec"],
                             ["--data-train-extra", paths["hash_rec"]]),
            "mosaic": lambda: (os.path.join(models, f"mosaic_{args.mosaic_size}_{args.mosaic_fill}", "mosaic"),
                               paths["mosaic_train_rec"], paths["mosaic_valid_rec"], [])}
    checkpoints = {}
    for name in ["faithful"] + args.techniques:
        prefix, train_rec, valid_rec, extra = runs[name]()
        params = train_small_network(NETWORK, train_rec, valid_rec, prefix, args.epochs, log, *extra,
                                     seed=1 if name == "control" else 0)
        checkpoints[name] = (f"{prefix}-symbol.json", params)
    return checkpoints


def seconds_per_epoch(params):
    """Mean training seconds per epoch from the checkpoint's metrics CSV (train.metrics_log)."""
    with open(params.rsplit("-", 1)[0] + "-metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    return sum(float(row["seconds"]) for row in rows) / max(len(rows), 1)


def predicted(work, paths, checkpoints, split, name):
    """{output tag: {product _id: category_id}} of the networks `checkpoints` (a list) on `split`: the main output
    (all of them, m0) and, with two, the first alone (e1.m0)."""
    out = os.path.join(work, "beyond", "predictions")
    os.makedirs(out, exist_ok=True)
    output = os.path.join(out, f"{split}_{name}.csv")
    bson_path = paths["valid_bson"] if split == "valid" else paths["test"]
    ensembles = ["--ensembles", "1"] if len(checkpoints) > 1 else []
    once(output, lambda: python_module(
        "predict.predict", "--bson", bson_path, "--category-csv", paths["csv"], "--symbol", *[s for s, _ in checkpoints],
        "--params", *[p for _, p in checkpoints], "--gpus", "", "--multi-view", "1", "--batch-size", "128",
        "--num-procs", "1", "--output", output, *ensembles, "--force", log_path=os.path.join(work, "log.txt")))
    answers = {"all": read_answers(output)}
    if len(checkpoints) > 1:
        answers["first"] = read_answers(output[:-len(".csv")] + ".e1.m0.csv")
    return answers


def read_answers(path):
    with open(path) as fh:
        return {int(row["_id"]): int(row["category_id"]) for row in csv.DictReader(fh)}


def truths(paths):
    """{split: {product _id: category_id}} of the validation and the test products."""
    index = BsonIndex.open(paths["valid_bson"])
    valid = dict(zip(index.products["product_id"].tolist(), index.products["category_id"].tolist()))
    return {"valid": valid, "test": read_answers(paths["truth"])}


def bed_table(bed, args):
    work = os.path.join(args.work_dir, bed)
    os.makedirs(work, exist_ok=True)
    print(f"{bed}: data", flush=True)
    paths = beyond_recs(work, make_bed(bed, work, args), args)
    print(f"{bed}: training", flush=True)
    checkpoints = train_all(work, paths, args)
    print(f"{bed}: prediction", flush=True)
    truth = truths(paths)
    right = {}  # (row name, split) -> bool per product, in sorted _id order
    for split in ("valid", "test"):
        ids = sorted(truth[split])
        expected = np.array([truth[split][i] for i in ids])

        def correct(answers):
            return np.array([answers.get(i) for i in ids]) == expected

        right[("faithful", split)] = correct(predicted(work, paths, [checkpoints["faithful"]], split, "faithful")["all"])
        for name in args.techniques:
            answers = predicted(work, paths, [checkpoints[name], checkpoints["faithful"]], split, f"{name}+faithful")
            right[(name, split)] = correct(answers["first"])
            right[(f"{name}+faithful", split)] = correct(answers["all"])
    notes = ""
    if "hash" in args.techniques:
        with open(paths["hash_rec"] + ".json") as fh:
            notes += f" Hash-labelled test pictures: {json.load(fh)['records']} records."
    if "mosaic" in args.techniques:
        notes += f" Mosaics: {args.mosaic_size}x{args.mosaic_size}, --mosaic-fill {args.mosaic_fill}, resized to 32x32."
    lines = [f"**{bed}**: {len(truth['valid'])} validation and {len(truth['test'])} test products; {NETWORK} at "
             f"3x32x32, {args.epochs} epochs, seed 0; m0, flip TTA, no MD5 dictionary.{notes} Differences to the "
             "faithful network, paired by product (95% intervals).", "",
             "| network | val products | difference | test products | difference | training s per epoch |",
             "|---|---|---|---|---|---|"]
    rows = ["faithful"] + [row for name in args.techniques for row in (name, f"{name}+faithful")]
    for row in rows:
        base = row.split("+")[0]
        label = NAMES[base] + (", in an ensemble with the faithful network" if row.endswith("+faithful") else "")
        cells = [label]
        for split in ("valid", "test"):
            values = right[(row, split)]
            difference, half = paired_difference(values, right[("faithful", split)])
            cells += [format_accuracy(int(values.sum()), len(values)),
                      "—" if row == "faithful" else f"{difference:+.4f} ± {half:.4f}"]
        cells.append("" if row.endswith("+faithful") else f"{seconds_per_epoch(checkpoints[base][1]):.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_train_beyond", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", default="/tmp/cdiscount_bench_fusion",
                        help="every step's outputs, reused (benchmarks.bench_fusion's by default: its beds and its "
                             "faithful network)")
    parser.add_argument("--beds", default="demo,fashion", help="demo, fashion or both")
    parser.add_argument("--demo-categories", type=int, default=60)
    parser.add_argument("--demo-products", type=int, default=12000)
    parser.add_argument("--fashion-products", type=int, default=12000)
    parser.add_argument("--epochs", type=int, default=2, help="epochs of each network (the budget)")
    parser.add_argument("--techniques", default=",".join(TECHNIQUES),
                        type=lambda text: [t for t in text.split(",") if t],
                        help=f"which of {', '.join(TECHNIQUES)} to train and score")
    parser.add_argument("--mosaic-fill", default="repeat", help="data.bson2rec --mosaic-fill of the mosaic network")
    parser.add_argument("--mosaic-size", type=int, default=64,
                        help="data.bson2rec --mosaic-size: tiles of half of it, resized with the mosaic to the 32x32 "
                             "input (64: tiles of 32, the pictures' own input size)")
    parser.add_argument("--markdown", help="also write the tables as markdown here")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    unknown = [t for t in args.techniques if t not in TECHNIQUES]
    if unknown:
        raise SystemExit(f"--techniques {','.join(unknown)}: expected some of {', '.join(TECHNIQUES)}")
    print_tables([bed_table(bed, args) for bed in args.beds.split(",")], args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
