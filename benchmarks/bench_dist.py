"""Distributed-training benchmark: 1 worker vs 2 local workers on the parameter-server kvstore.

Part 1 trains a demo network (densenet-41, 64x64) on the same generated .rec with
`train.launch --launcher local` and `--kv-store dist_sync`, once with 1 worker and once with
2 (1 server each time), and prints images/s per worker and in total (median of the epochs after
the first). All processes share this machine's cores, so this shows the overhead of the
parameter server, not a speed-up: that needs one machine per worker.

Part 2 prints what each worker sends and receives per batch with `dist_sync` (gradients pushed,
weights pulled: 2 x the float32 parameter bytes) for the demo network and the solution's networks,
and the network bandwidth a worker needs at the original's per-machine training speeds (about
250 to 580 images/s on 8 GPUs, batch 512).

Run from the repository root:  python -m benchmarks.bench_dist [--markdown OUT.md]
"""
import argparse
import csv
import os
import statistics
import subprocess
import sys

import numpy as np

from benchmarks.report import print_tables
from data import bson2rec
from data.make_demo_data import generate_demo_dataset
from train import symbols

DEMO_NETWORK, DEMO_SIZE = "densenet-41", 64
NUM_CATEGORIES = 40
SOLUTION_NETWORKS = ["resnext-101", "resnext-101-64x4d", "se-resnext-101-64x4d", "dpn-92", "dpn-107", "dpn-131",
                     "densenet-161"]
SOLUTION_SPEEDS = (250, 580)  # images/s of one 8-GPU machine: the range of the original training logs
SOLUTION_BATCH = 512          # per machine


def make_rec(work_dir):
    rec = os.path.join(work_dir, "train.rec")
    if not os.path.exists(rec):
        data_dir = os.path.join(work_dir, "demo")
        generate_demo_dataset(data_dir, num_categories=NUM_CATEGORIES, num_train_products=500, num_test_products=10,
                              seed=7, progress=False)
        bson2rec.main(["--bson", os.path.join(data_dir, "train.bson"), "--out-rec", rec,
                       "--category-csv", os.path.join(data_dir, "category_names.csv"), "--force"])
    return rec


def parameter_bytes(network, size, num_classes):
    net = symbols.get_symbol(network, num_classes=num_classes)
    arg_shapes, _, _ = net.infer_shape(data=(1, 3, size, size))
    return 4 * sum(int(np.prod(s)) for n, s in zip(net.list_arguments(), arg_shapes)
                   if n not in ("data", "softmax_label"))


def distributed_speed(work_dir, rec, workers, epochs, batch_size):
    """Median images/s per worker (rank 0's metrics) over the epochs after the first."""
    prefix = os.path.join(work_dir, f"run{workers}", "m")
    command = [sys.executable, "-m", "train.launch", "-n", str(workers), "-s", "1", "--launcher", "local",
               "--log-dir", os.path.join(work_dir, f"run{workers}", "logs"), "--",
               sys.executable, "-m", "train.train_model", "--symbol", DEMO_NETWORK, "--data-train", rec,
               "--image-shape", f"3,{DEMO_SIZE},{DEMO_SIZE}", "--resize", str(DEMO_SIZE),
               "--num-classes", str(NUM_CATEGORIES), "--batch-size", str(batch_size), "--num-epochs", str(epochs),
               "--optimizer", "nadam", "--lr", "0.001", "--kv-store", "dist_sync", "--data-nthreads", "1",
               "--top-k", "0", "--disp-batches", "1000000", "--model-prefix", prefix]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    with open(f"{prefix}-metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    return statistics.median(float(r["images_per_sec"]) for r in rows[1:])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", default="/tmp/cdiscount_bench_dist", help="generated data and runs go here")
    parser.add_argument("--epochs", type=int, default=4, help="epochs per run (the first is a warm-up)")
    parser.add_argument("--batch-size", type=int, default=32, help="per worker")
    parser.add_argument("--markdown", help="also write the tables as markdown here")
    args = parser.parse_args(argv)
    os.makedirs(args.work_dir, exist_ok=True)
    rec = make_rec(args.work_dir)
    print(f"{os.cpu_count()} CPU cores; {DEMO_NETWORK} 3x{DEMO_SIZE}x{DEMO_SIZE}, batch {args.batch_size} per worker, "
          f"dist_sync, 1 server, all on 127.0.0.1")
    demo_bytes = parameter_bytes(DEMO_NETWORK, DEMO_SIZE, NUM_CATEGORIES)
    lines = ["| workers | images/s per worker | images/s total | MB pushed + pulled per worker per batch |",
             "|---|---|---|---|"]
    for workers in (1, 2):
        per_worker = distributed_speed(args.work_dir, rec, workers, args.epochs, args.batch_size)
        lines.append(f"| {workers} | {per_worker:,.1f} | {per_worker * workers:,.1f} | {2 * demo_bytes / 1e6:.2f} |")
        print(lines[-1], flush=True)
    tables = ["\n".join(lines)]

    lines = ["| network | parameters (5270 classes) | MB pushed + pulled per worker per batch | "
             + " | ".join(f"Gbit/s per worker at {v} img/s" for v in SOLUTION_SPEEDS) + " |",
             "|---|---|---|" + "---|" * len(SOLUTION_SPEEDS)]
    for network in SOLUTION_NETWORKS:
        per_batch = 2 * parameter_bytes(network, 180, 5270)
        needs = [per_batch * speed / SOLUTION_BATCH * 8 / 1e9 for speed in SOLUTION_SPEEDS]
        lines.append(f"| {network} | {per_batch / 8 / 1e6:.1f} M | {per_batch / 1e6:,.0f} | "
                     + " | ".join(f"{n:.1f}" for n in needs) + " |")
        print(lines[-1], flush=True)
    tables.append("\n".join(lines))
    print_tables(tables, args.markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
