"""Prediction benchmark: the whole pipeline vs the models' pure forward speed, side by side in one run.

For each configuration (network, input size), with the same model, batch size and device:
  - forward: views/s of the bound model on ready-made uint8 batches (normalise + forward + read
    the probabilities): what the pipeline could reach if input preparation were free;
  - end to end: views/s of `predict.predict` on a generated test BSON with flip TTA (reader ->
    workers -> predictor over ZeroMQ, product reduction included), timed from the first product
    to the last (model loading excluded);
  and the ratio end-to-end / forward (target >= 0.9; the original's logs show about 0.78).
The two are measured alternately, `--repeats` times each, and the table gives medians.
Then end-to-end views/s of the light configuration as the workers grow from 1 to the core count.

Run from the repository root:  python -m benchmarks.bench_predict [--markdown OUT.md]
"""
import argparse
import logging
import os
import statistics
import time

import mxnet as mx
import numpy as np

from benchmarks.report import print_tables
from data.make_demo_data import generate_demo_dataset
from predict import predict
from predict.models import Model
from train import symbols
from train.devices import contexts

NUM_CATEGORIES = 40
CONFIGS = [  # (network, input size, products of the test BSON)
    ("densenet-41", 64, 1200),     # a demo network: cheap forward, the pipeline is most exposed
    ("resnext-50", 180, 60),       # a solution-family network at the solution's size
]


def make_test_bson(work_dir, num_products):
    data_dir = os.path.join(work_dir, f"demo_{num_products}")
    if not os.path.exists(os.path.join(data_dir, "test.bson")):
        generate_demo_dataset(data_dir, num_categories=NUM_CATEGORIES, num_train_products=3 * NUM_CATEGORIES,
                              num_test_products=num_products, seed=11, progress=False)
    return os.path.join(data_dir, "test.bson"), os.path.join(data_dir, "category_names.csv")


def make_checkpoint(work_dir, network, size, num_classes=NUM_CATEGORIES, name=None):
    """Randomly initialised weights saved as training saves them (speed does not depend on them)."""
    prefix = os.path.join(work_dir, name or f"{network}-{size}")
    if not os.path.exists(f"{prefix}-0001.params"):
        net = symbols.get_symbol(network, num_classes=num_classes)
        module = mx.mod.Module(net, context=mx.cpu())
        module.bind(data_shapes=[("data", (1, 3, size, size))], label_shapes=[("softmax_label", (1,))])
        module.init_params(mx.init.MSRAPrelu())
        arg_params, aux_params = module.get_params()
        mx.model.save_checkpoint(prefix, 1, net, arg_params, aux_params)
    return f"{prefix}-symbol.json", f"{prefix}-0001.params"


def forward_speed(symbol, params, size, batch_size, batches, num_classes=NUM_CATEGORIES):
    """Views/s of normalise + forward + outputs on ready-made batches (after one warm-up batch)."""
    model = Model(symbol, params, batch_size, (3, size, size), contexts(""), num_classes)
    batch = np.random.default_rng(0).integers(0, 256, (batch_size, 3, size, size), dtype=np.uint8)
    times = []
    for _ in range(batches + 1):
        start = time.perf_counter()
        model.forward(model.normalise(batch)).asnumpy()
        times.append(time.perf_counter() - start)
    return batch_size / statistics.median(times[1:])


def forward_speed_together(checkpoints, size, batch_size, batches, num_classes=NUM_CATEGORIES):
    """Views/s through every model of `checkpoints` ((symbol, params) each) as a prediction runs them: each batch
    started on all the models, and waited for only once the next batch's passes are started (MXNet runs them
    asynchronously, as predict.predictor's double buffering does)."""
    models = [Model(symbol, params, batch_size, (3, size, size), contexts(""), num_classes)
              for symbol, params in checkpoints]
    batch = np.random.default_rng(0).integers(0, 256, (batch_size, 3, size, size), dtype=np.uint8)

    def start():
        return [model.forward(model.normalise(batch)) for model in models]

    for output in start():  # warm-up
        output.asnumpy()
    began, in_flight = time.perf_counter(), start()
    for _ in range(batches - 1):
        following = start()
        for output in in_flight:
            output.asnumpy()
        in_flight = following
    for output in in_flight:
        output.asnumpy()
    return batch_size * batches / (time.perf_counter() - began)


def end_to_end_speed(bson, csv, symbol, params, size, batch_size, num_procs, output):
    args = predict.build_parser().parse_args(
        ["--bson", bson, "--csv", csv, "--symbol", symbol, "--params", params, "--data-shape", f"3,{size},{size}",
         "--resize", str(size), "--batch-size", str(batch_size), "--num-procs", str(num_procs),
         "--multi-view", "1", "--output", output, "--force"])
    result = predict.run(args)
    return result.predictor.images * result.num_views / result.seconds


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", default="/tmp/cdiscount_bench_predict", help="generated data goes here")
    parser.add_argument("--batch-size", type=int, default=32, help="views per forward pass")
    parser.add_argument("--repeats", type=int, default=3, help="measurements of each kind (medians reported)")
    parser.add_argument("--markdown", help="also write the tables as markdown here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    os.makedirs(args.work_dir, exist_ok=True)
    cores = os.cpu_count() or 1
    workers = max(1, cores - 1)
    output = os.path.join(args.work_dir, "sub.csv")
    print(f"{cores} CPU cores, MXNet {mx.__version__}, batch {args.batch_size} views, flip TTA, "
          f"{workers} worker(s)")

    lines = ["| network | input | test set | forward views/s | end-to-end views/s | end-to-end / forward |",
             "|---|---|---|---|---|---|"]
    for network, size, num_products in CONFIGS:
        bson, csv = make_test_bson(args.work_dir, num_products)
        symbol, params = make_checkpoint(args.work_dir, network, size)
        batches = max(3, min(30, 2000 // (size * size // 64 + args.batch_size)))
        forward, end_to_end = [], []
        for _ in range(args.repeats):  # alternated, so that a noisy neighbour hits both alike
            forward.append(forward_speed(symbol, params, size, args.batch_size, batches))
            end_to_end.append(end_to_end_speed(bson, csv, symbol, params, size, args.batch_size, workers, output))
        f, e = statistics.median(forward), statistics.median(end_to_end)
        verdict = "PASS" if e / f >= 0.9 else "FAIL"
        lines.append(f"| {network} | 3x{size}x{size} | {num_products} products | {f:,.1f} | {e:,.1f} | "
                     f"{e / f:.2f} ({verdict} >= 0.9) |")
        print(lines[-1], flush=True)
    tables = ["\n".join(lines)]

    network, size, num_products = CONFIGS[0]
    bson, csv = make_test_bson(args.work_dir, num_products)
    symbol, params = make_checkpoint(args.work_dir, network, size)
    lines = [f"| workers | end-to-end views/s ({network}, 3x{size}x{size}) |", "|---|---|"]
    for num_procs in range(1, cores + 1):
        speeds = [end_to_end_speed(bson, csv, symbol, params, size, args.batch_size, num_procs, output)
                  for _ in range(args.repeats)]
        lines.append(f"| {num_procs} | {statistics.median(speeds):,.1f} |")
        print(lines[-1], flush=True)
    tables.append("\n".join(lines))
    print_tables(tables, args.markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
