"""MD5-aware inference and the probability store, measured side by side in one run.

The generated test set has the real competition's shares of pictures that need no forward pass:
  - answered by the training MD5 dictionary: 42.4% of the pictures. Public figure: 749k of the
    1.77M test products are fully resolved by training MD5s (issue 13, from public solutions);
    no public image-level figure was found, so the product share stands in for the picture share;
  - repeats of an earlier unanswered test picture: 37.2% of the rest (21.4% of all pictures),
    the duplicate share of Kaggle's train.bson (12,371,293 pictures, 7,772,910 distinct MD5s:
    the original solution's data/create_train_md5_dict.out), applied to the test pictures the
    dictionary does not answer.
So 63.8% of the pictures need no forward pass.

Part 1, with the 3-model demo ensemble (densenet-41, dpn-26, densenet-41 at 64x64, randomly
initialised: speed and agreement do not depend on training): `predict.run` with and without
--forward-all, alternated --repeats times: forward passes (pictures through the networks x views),
wall time from the first product to the last (the MD5 pass and the processes' start included,
model loading and MXNet's first-batch warm-up excluded), and whether every output's categories
are identical. Goal: passes fall by the share, and the
wall time by at least 90% of that fall.
Part 2: `predict.ensemble` from a store against re-predicting (`predict.main`, model loading
included, as a re-run pays it), for a new MD5 type. Goal: at least 20x faster.
Part 3: category agreement of the store's ensembles with a direct run against K. The random
networks' pictures of one product disagree (each is random noise), so the product over pictures
(m0) is decided by the classes outside the top K more often than with trained networks, whose
pictures of a product agree: this table is the pessimistic case (tests/test_ensemble.py
measures agreeing pictures).

Run from the repository root:  python -m benchmarks.bench_md5_inference [--markdown OUT.md]
"""
import argparse
import contextlib
import io
import logging
import os
import shutil
import statistics
import time

import bson
import cv2
import mxnet as mx
import numpy as np

from benchmarks.bench_predict import make_checkpoint
from benchmarks.kaggle_counts import ANSWERED_SHARE, REPEAT_SHARE
from benchmarks.report import print_tables
from data import bson_md5_dict
from predict import ensemble, predict
from predict.submission import read_submission

NUM_CATEGORIES = 200
FIRST_CATEGORY = 1000000000
SIZE = 64
NETWORKS = ("densenet-41", "dpn-26", "densenet-41")  # the demo's three models
IMAGES_PER_PRODUCT = (0.55, 0.25, 0.10, 0.10)       # Kaggle's mix, mean 1.75 (as data.make_demo_data)


def jpeg(rng):
    image = cv2.GaussianBlur(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8), (5, 5), 0)
    return cv2.imencode(".jpg", image)[1].tobytes()


def write_docs(path, docs):
    with open(path, "wb") as fh:
        for doc in docs:
            fh.write(bson.encode(doc))


def make_data(work_dir, num_products, seed=5):
    """train.bson (the dictionary's pictures, one category each), test.bson with the shares above,
    category_names.csv and the MD5 dictionary; returns their paths."""
    paths = {name: os.path.join(work_dir, name) for name in ("train.bson", "test.bson", "categories.csv", "md5.npz")}
    if all(os.path.exists(p) for p in paths.values()):
        return paths
    rng = np.random.default_rng(seed)
    known = [jpeg(rng) for _ in range(num_products)]
    train = [{"_id": i, "imgs": [{"picture": bson.Binary(p)}], "category_id": FIRST_CATEGORY + i % NUM_CATEGORIES}
             for i, p in enumerate(known)]
    unanswered, test = [], []
    for n in range(num_products):
        pictures = []
        for _ in range(1 + int(rng.choice(4, p=IMAGES_PER_PRODUCT))):
            draw = rng.random()
            if draw < ANSWERED_SHARE:
                pictures.append(known[int(rng.integers(len(known)))])
            elif draw < ANSWERED_SHARE + REPEAT_SHARE and unanswered:
                pictures.append(unanswered[int(rng.integers(len(unanswered)))])
            else:
                unanswered.append(jpeg(rng))
                pictures.append(unanswered[-1])
        test.append({"_id": 10 ** 6 + n, "imgs": [{"picture": bson.Binary(p)} for p in pictures],
                     "category_id": FIRST_CATEGORY + int(rng.integers(NUM_CATEGORIES))})
    write_docs(paths["train.bson"], train)
    write_docs(paths["test.bson"], test)
    with open(paths["categories.csv"], "w") as fh:
        fh.write("category_id,category_level1,category_level2,category_level3\n")
        fh.writelines(f"{FIRST_CATEGORY + c},L1 {c % 5},L2 {c % 17},C {c}\n" for c in range(NUM_CATEGORIES))
    bson_md5_dict.main(["--bson", paths["train.bson"], "--out", paths["md5.npz"], "--force"])
    return paths


def make_models(work_dir):
    """Randomly initialised checkpoints of the demo's three networks (bench_predict's)."""
    return [make_checkpoint(work_dir, network, SIZE, NUM_CATEGORIES, f"model{number}-{network}")
            for number, network in enumerate(NETWORKS)]


def predict_argv(paths, models, output, md5_type, *extra):
    return ["--bson", paths["test.bson"], "--csv", paths["categories.csv"],
            "--symbol", *(s for s, _ in models), "--params", *(p for _, p in models),
            "--data-shape", f"3,{SIZE},{SIZE}", "--batch-size", "32", "--num-procs", "1", "--multi-view", "1",
            "--ensembles", "1", "2", "3", "--md5-dict", paths["md5.npz"], "--md5-dict-type", md5_type,
            "--output", output, "--force", *extra]


def quiet(function, *args):
    with contextlib.redirect_stdout(io.StringIO()):
        return function(*args)


def skip_comparison(paths, models, work_dir, repeats):
    """Part 1: medians of forward passes and wall time, with and without --forward-all."""
    runs = {"MD5-aware (default)": [], "--forward-all": []}
    classes = {}
    warm_up = predict.build_parser().parse_args(predict_argv(paths, models, os.path.join(work_dir, "skip.csv"),
                                                             "unique", "--cut", "20"))
    quiet(predict.run, warm_up)  # MXNet builds its kernels on the first forward pass of a process
    for _ in range(repeats):  # alternated, so that a noisy neighbour hits both alike
        for label, extra in (("MD5-aware (default)", []), ("--forward-all", ["--forward-all"])):
            args = predict.build_parser().parse_args(
                predict_argv(paths, models, os.path.join(work_dir, "skip.csv"), "unique", *extra))
            result = quiet(predict.run, args)
            p = result.predictor
            runs[label].append((p.images_forwarded * result.num_views, result.seconds, p.images,
                                p.images_overridden, p.images_reused))
            classes[label] = p.class_ids.copy()
    identical = "yes" if np.array_equal(*classes.values()) else "no"
    lines = ["| run | pictures | answered by the dictionary | repeats reused | forward passes per model | "
             "wall time (s) | categories identical |", "|---|---|---|---|---|---|---|"]
    medians = {}
    for label, rows in runs.items():
        passes, seconds = rows[0][0], statistics.median(r[1] for r in rows)
        medians[label] = (passes, seconds)
        answered = rows[0][3] if label.startswith("MD5") else f"{rows[0][3]} (forwarded)"
        lines.append(f"| {label} | {rows[0][2]} | {answered} | {rows[0][4]} | {passes} | {seconds:.2f} | "
                     f"{identical} |")
    (aware_passes, aware_time), (all_passes, all_time) = medians.values()
    passes_saved, time_saved = 1 - aware_passes / all_passes, 1 - aware_time / all_time
    verdict = "PASS" if time_saved >= 0.9 * passes_saved else "FAIL"
    lines.append(f"| saving | | | | {100 * passes_saved:.1f}% (share {100 * (ANSWERED_SHARE + REPEAT_SHARE):.1f}%) "
                 f"| {100 * time_saved:.1f}% ({time_saved / passes_saved:.2f} of the passes saved: {verdict} "
                 f">= 0.90) | |")
    return "\n".join(lines)


def read_outputs(output):
    return {tag: read_submission(output.replace(".csv", f".{tag}.csv"))[1]
            for tag in ("e1.m0", "e1.m1", "e2.m0", "e2.m1", "e3.m0", "e3.m1")}


def store_comparison(paths, models, work_dir, repeats):
    """Part 2: a new MD5 type by re-predicting vs from the store; both in this process, medians."""
    store = os.path.join(work_dir, "store")
    shutil.rmtree(store, ignore_errors=True)
    quiet(predict.main, predict_argv(paths, models, os.path.join(work_dir, "stored.csv"), "unique",
                                     "--save-probs", store))
    direct_out, ensemble_out = os.path.join(work_dir, "direct.csv"), os.path.join(work_dir, "from_store.csv")
    direct, from_store = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        quiet(predict.main, predict_argv(paths, models, direct_out, "l1"))
        direct.append(time.perf_counter() - start)
        start = time.perf_counter()
        quiet(ensemble.main, ["--probs", store, "--csv", paths["categories.csv"], "--md5-dict", paths["md5.npz"],
                              "--md5-dict-type", "l1", "--ensembles", "1", "2", "3", "--output", ensemble_out,
                              "--force"])
        from_store.append(time.perf_counter() - start)
    a, b = read_outputs(direct_out), read_outputs(ensemble_out)
    agree = min(float((a[tag] == b[tag]).mean()) for tag in a)
    d, e = statistics.median(direct), statistics.median(from_store)
    verdict = "PASS" if d / e >= 20 else "FAIL"
    return "\n".join([
        "| new MD5 type (l1), every output of the 3-model ensemble | time (s) | categories equal to the direct run |",
        "|---|---|---|",
        f"| re-predict (`predict.predict`, models loaded) | {d:.2f} | (the reference) |",
        f"| from the store (`predict.ensemble`, K=50) | {e:.2f} | {100 * agree:.2f}% (lowest output) |",
        f"| speed-up | {d / e:.0f}x ({verdict} >= 20x) | |"])


def agreement_against_k(paths, models, work_dir, top_ks):
    """Part 3: the lowest agreement over the outputs of a store of top K against the direct run."""
    direct = os.path.join(work_dir, "k_direct.csv")
    quiet(predict.main, predict_argv(paths, models, direct, "unique"))
    reference = read_outputs(direct)
    lines = ["| K (probabilities kept per model and picture) | store size (MB) | categories equal to the direct run "
             "(lowest of the 6 outputs) |", "|---|---|---|"]
    for k in top_ks:
        store, output = os.path.join(work_dir, f"store_k{k}"), os.path.join(work_dir, f"k{k}.csv")
        shutil.rmtree(store, ignore_errors=True)
        quiet(predict.main, predict_argv(paths, models, os.path.join(work_dir, "k_stored.csv"), "unique",
                                         "--save-probs", store, "--save-probs-top-k", str(k)))
        quiet(ensemble.main, ["--probs", store, "--csv", paths["categories.csv"], "--md5-dict", paths["md5.npz"],
                              "--ensembles", "1", "2", "3", "--output", output, "--force"])
        got = read_outputs(output)
        agree = min(float((got[tag] == reference[tag]).mean()) for tag in got)
        size = sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(store) for f in files)
        lines.append(f"| {k} | {size / 2 ** 20:.2f} | {100 * agree:.2f}% |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", default="/tmp/cdiscount_bench_md5", help="generated data goes here")
    parser.add_argument("--products", type=int, default=1200, help="test products")
    parser.add_argument("--repeats", type=int, default=3, help="measurements of each kind (medians reported)")
    parser.add_argument("--top-k", type=int, nargs="+", default=[5, 10, 20, 50], help="store sizes to compare")
    parser.add_argument("--markdown", help="also write the tables as markdown here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    os.makedirs(args.work_dir, exist_ok=True)
    paths = make_data(args.work_dir, args.products)
    models = make_models(args.work_dir)
    print(f"{os.cpu_count()} CPU cores, MXNet {mx.__version__}, {args.products} test products, "
          f"{NUM_CATEGORIES} classes, networks {', '.join(NETWORKS)} at {SIZE}x{SIZE}, flip TTA, batch 32 views; "
          f"shares: answered {ANSWERED_SHARE:.3f}, repeats {REPEAT_SHARE:.3f}", flush=True)
    tables = [skip_comparison(paths, models, args.work_dir, args.repeats)]
    print(tables[-1], flush=True)
    tables.append(store_comparison(paths, models, args.work_dir, args.repeats))
    print(tables[-1], flush=True)
    tables.append(agreement_against_k(paths, models, args.work_dir, args.top_k))
    print_tables(tables, args.markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
