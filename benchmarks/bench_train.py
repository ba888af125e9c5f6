"""Training benchmark: input pipeline vs compute, side by side in one run, on the CPU.

Part 1, for each demo network at its demo input size on a generated `.rec` (about 650 images):
  - `--test-io 1`: images/s the ImageRecordIter delivers (decode + augment only);
  - `--benchmark 1`: training images/s on synthetic in-memory batches (compute only);
  - real data: training images/s reading the `.rec` (what a user gets);
  and the ratio real / synthetic (target >= 0.9: the input never starves the network).
  Synthetic and real-data epochs train one and the same module and alternate
  (synthetic, real, synthetic, real, ...), so that a slow spell of a shared machine
  hits both sides alike; each speed is the median of `--repeats` epochs after one
  warm-up epoch of each. The epoch loop is Module.fit's (forward_backward, update,
  update_metric with the training metrics, next batch), and an epoch's speed counts
  the batches after its first, as `train.metrics_log.EpochRecorder` does.
Part 2: forward+backward images/s of each of the solution's networks at 3x180x180, batch 32
(median of 2 batches after a warm-up batch).
Part 3, CPU kernels: what `--cpu-kernels auto` chooses for a grouped-convolution network
(ResNeXt) and one without (DenseNet), at demo and at small real sizes. Each side is the
training probe itself (`train.cpu_kernels.measure_both`: a process with MXNET_MKLDNN_ENABLED=1,
then one with 0, each timing forward+backward batches after a warm-up batch), run
`--kernel-repeats` times alternately; the table gives the medians, native / oneDNN, the
choice, and how long one probe pair (what a training run pays once) took.
Run from the repository root:  python -m benchmarks.bench_train [--markdown OUT.md]
"""
import argparse
import logging
import os
import statistics
import time

import mxnet as mx

from benchmarks.report import print_tables
from data import bson2rec
from data.make_demo_data import generate_demo_dataset
from data.recordio import count_records
from train import cpu_kernels, symbols, train_model
from train.fit import eval_metrics, make_optimizer, test_io
from train.data import get_iterators, updates_per_epoch

DEMO_NETWORKS = [("resnext-14", 64), ("densenet-41", 64), ("dpn-26", 64)]
KERNEL_RUNS = [("resnext-14", 64, 32), ("densenet-41", 64, 32), ("resnext-50", 160, 8), ("densenet-121", 160, 8)]
SOLUTION_NETWORKS = ["resnext-101", "resnext-101-64x4d", "se-resnext-101-64x4d", "dpn-92", "dpn-98", "dpn-107",
                     "dpn-131", "densenet-161"]


def make_rec(work_dir):
    """A demo train.rec of about 650 images (reused when present)."""
    rec = os.path.join(work_dir, "bench_train.rec")
    if os.path.exists(rec):
        return rec
    data_dir = os.path.join(work_dir, "demo")
    if not os.path.exists(os.path.join(data_dir, "train.bson")):
        generate_demo_dataset(data_dir, num_categories=40, num_train_products=380, num_test_products=10, seed=5,
                              progress=False)
    bson2rec.main(["--bson", os.path.join(data_dir, "train.bson"), "--out-rec", rec,
                   "--category-csv", os.path.join(data_dir, "category_names.csv")])
    return rec


def train_args(network, size, rec, batch_size, nthreads, extra=()):
    return train_model.build_parser().parse_args(
        ["--symbol", network, "--data-train", rec, "--image-shape", f"3,{size},{size}", "--resize", str(size),
         "--num-classes", "40", "--batch-size", str(batch_size), "--disp-batches", "1000000",
         "--data-nthreads", str(nthreads), "--top-k", "0", *extra])


def train_epoch(module, data, metric):
    """One epoch of Module.fit's loop; images/s over the batches after the first one."""
    data.reset()
    metric.reset()
    batches = iter(data)
    batch, start, timed = next(batches), None, 0
    while batch is not None:
        module.forward_backward(batch)
        module.update()
        module.update_metric(metric, batch.label)  # reads the outputs back: waits for the batch
        if start is None:
            start = time.perf_counter()
        else:
            timed += batch.data[0].shape[0]
        batch = next(batches, None)
        if batch is not None:
            module.prepare(batch)
    return timed / (time.perf_counter() - start)


def training_speeds(network, size, rec, batch_size, repeats, nthreads):
    """(synthetic, real-data) training images/s: medians of `repeats` alternating epochs after a warm-up."""
    num_examples = count_records(rec)
    args = train_args(network, size, rec, batch_size, nthreads, ["--num-examples", str(num_examples)])
    synthetic_args = train_args(network, size, rec, batch_size, nthreads,
                                ["--benchmark", "1", "--num-examples", str(num_examples)])
    real_data, _ = get_iterators(args)
    synthetic_data, _ = get_iterators(synthetic_args)
    module = mx.mod.Module(train_model.build_network(args), context=mx.cpu())
    module.bind(data_shapes=real_data.provide_data, label_shapes=real_data.provide_label)
    mx.random.seed(args.seed)
    module.init_params(mx.init.MSRAPrelu())
    module.init_optimizer(kvstore="local", optimizer=make_optimizer(args, updates_per_epoch(args, None), 0))
    metric = eval_metrics(args)
    speeds = {"synthetic": [], "real": []}
    for repeat in range(repeats + 1):  # the first round warms up
        for kind, data in (("synthetic", synthetic_data), ("real", real_data)):
            speed = train_epoch(module, data, metric)
            if repeat:
                speeds[kind].append(speed)
    print(f"  {network}: synthetic epochs {', '.join(f'{v:.1f}' for v in speeds['synthetic'])}; "
          f"real-data epochs {', '.join(f'{v:.1f}' for v in speeds['real'])} img/s", flush=True)
    return statistics.median(speeds["synthetic"]), statistics.median(speeds["real"])


def io_speed(size, rec, batch_size, repeats, nthreads):
    args = train_args("resnext-14", size, rec, batch_size, nthreads)
    train, _ = get_iterators(args)
    speeds = []
    for _ in range(repeats + 1):
        train.reset()
        speeds.append(test_io(train, disp=10 ** 9))
    return statistics.median(speeds[1:])


def forward_backward_speed(network, batch_size=32, size=180, batches=2):
    """Images/s of forward+backward at 3 x size x size (after one warm-up batch)."""
    net = symbols.get_symbol(network, num_classes=5270)
    return batch_size / cpu_kernels.time_batches(net, (3, size, size), batch_size, batches)


def demo_table(args):
    """Part 1, in this process (MXNet's kernels as MXNET_MKLDNN_ENABLED says: oneDNN when unset)."""
    os.makedirs(args.work_dir, exist_ok=True)
    rec = make_rec(args.work_dir)
    setting = (f"{count_records(rec)} images, batch {args.batch_size}, {args.data_nthreads} decoding threads, "
               f"medians of {args.repeats} epochs of each kind after a warm-up epoch of each, "
               f"{os.cpu_count()} CPU cores, MXNet {mx.__version__}")
    print(f"data: {rec}; {setting}", flush=True)
    lines = ["| network | input | test-io img/s | synthetic train img/s | real-data train img/s | real / synthetic |",
             "|---|---|---|---|---|---|"]
    for network, size in DEMO_NETWORKS:
        io = io_speed(size, rec, args.batch_size, args.repeats, args.data_nthreads)
        synthetic, real = training_speeds(network, size, rec, args.batch_size, args.repeats, args.data_nthreads)
        verdict = "PASS" if real / synthetic >= 0.9 else "FAIL"
        lines.append(f"| {network} | 3x{size}x{size} | {io:,.0f} | {synthetic:,.1f} | {real:,.1f} | "
                     f"{real / synthetic:.2f} ({verdict} >= 0.9) |")
        print(lines[-1], flush=True)
    return f"Demo `.rec`: {setting}.\n\n" + "\n".join(lines)


def solution_table():
    lines = ["| network | forward+backward img/s (3x180x180, batch 32, CPU) |", "|---|---|"]
    for network in SOLUTION_NETWORKS:
        lines.append(f"| {network} | {forward_backward_speed(network):.2f} |")
        print(lines[-1], flush=True)
    return "\n".join(lines)


def kernel_speeds(network, size, batch_size, repeats):
    """({kernels: median images/s}, seconds of the first probe pair) of the network as training builds it."""
    args = train_model.build_parser().parse_args(["--symbol", network, "--num-classes", "40"])
    network_json = train_model.build_network(args).tojson()
    runs, first_pair = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        runs.append(cpu_kernels.measure_both(network_json, (3, size, size), batch_size))
        first_pair = first_pair or time.perf_counter() - start
    print(f"  {network}: " + "; ".join(f"{cpu_kernels.NAMES[k]} {', '.join(f'{run[k]:.2f}' for run in runs)}"
                                       for k in cpu_kernels.SETTINGS) + " img/s", flush=True)
    return {k: statistics.median(run[k] for run in runs) for k in cpu_kernels.SETTINGS}, first_pair


def kernel_table(repeats):
    lines = ["| network | grouped 3x3 convolutions | input, batch | oneDNN img/s | native img/s | native / oneDNN "
             "| `--cpu-kernels auto` takes | gain over MXNet's default | one probe pair |",
             "|---|---|---|---|---|---|---|---|---|"]
    for network, size, batch_size in KERNEL_RUNS:
        speeds, probe_seconds = kernel_speeds(network, size, batch_size, repeats)
        choice = cpu_kernels.faster(speeds)
        lines.append(f"| {network} | {'yes' if network.startswith('resnext') else 'no'} | 3x{size}x{size}, "
                     f"{batch_size} | {speeds['onednn']:.2f} | {speeds['native']:.2f} | "
                     f"{speeds['native'] / speeds['onednn']:.2f} | {cpu_kernels.NAMES[choice]} | "
                     f"{speeds[choice] / speeds['onednn']:.2f}x | {probe_seconds:.0f} s |")
        print(lines[-1], flush=True)
    setting = (f"CPU kernels (forward+backward, {cpu_kernels.WARMUP_BATCHES} warm-up and "
               f"{cpu_kernels.PROBE_BATCHES} timed batches per probe process, medians of {repeats} alternating "
               f"probe pairs; {os.cpu_count()} cores, {cpu_kernels.cpu_model()}, MXNet {mx.__version__})")
    return f"{setting}:\n\n" + "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", default="/tmp/cdiscount_bench_train", help="generated data goes here")
    parser.add_argument("--batch-size", type=int, default=32, help="batch of the demo-network runs")
    parser.add_argument("--repeats", type=int, default=3,
                        help="measured epochs of each kind (after one warm-up epoch of each)")
    parser.add_argument("--data-nthreads", type=int, default=2, help="decoding threads of the ImageRecordIter")
    parser.add_argument("--skip-demo-networks", action="store_true", help="no part 1")
    parser.add_argument("--skip-solution-networks", action="store_true", help="no part 2")
    parser.add_argument("--skip-kernels", action="store_true", help="no part 3 (oneDNN vs native kernels)")
    parser.add_argument("--kernel-repeats", type=int, default=3, help="probe pairs per network in part 3")
    parser.add_argument("--markdown", help="also write the tables as markdown here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    started = time.perf_counter()
    tables = []
    if not args.skip_demo_networks:
        tables.append(demo_table(args))
    if not args.skip_solution_networks:
        tables.append(solution_table())
    if not args.skip_kernels:
        tables.append(kernel_table(args.kernel_repeats))
    print(f"\ntotal {time.perf_counter() - started:.0f} s")
    print_tables(tables, args.markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
