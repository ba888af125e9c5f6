"""Memory of --bn-groups: what several executors on one device cost, measured on the CPU and computed for
the solution's networks at 5,270 classes.

Each executor of MXNet's Module holds its own weights, gradients and its slice's activations; with more
than one executor the `device` kvstore adds, for each parameter, a merge buffer, one copy buffer per
further executor (MXNet 1.9.1's CommDevice::Reduce) and its own copy of the weights. Against one
executor (no kvstore) G executors on one device therefore hold 3G - 1 more copies of the parameters;
the optimizer state is one set either way.

Part 1 (measured): peak resident memory of `python -m train.train_model --benchmark 1 --gpus ''
--bn-groups G` (synthetic batches; ResNeXt-14 at 3x64x64, 5,270 classes, batch 32, NAdam) for each G,
each a fresh process; the figure is its peak RSS minus its RSS before training, the median of
--repeats processes run in turn (the machine is shared). Beside it the 3G - 1 copies predicted, and
what is left (the executors' activations and workspaces, the allocator's slack).
Part 2 (computed): for each M-script's network (train/symbols' builder) at 5,270 classes, one copy of
its parameters, and the copies of them a GPU holds: one executor on one GPU; the record's groups on
one GPU; on two GPUs; and on the record's own GPUs (merge buffers spread over them).

Run from the repository root:  python -m benchmarks.bench_bn_groups [--repeats 3] [--markdown OUT.md]
"""
import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time

import numpy as np

from benchmarks.report import print_tables

NUM_CLASSES = 5270
BYTES_PER_VALUE = 4  # float32
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The network each M-script trains, as train/symbols builds it (the scripts load the published graphs).
MODEL_NETWORKS = {"M01": "resnext-101", "M02": "dpn-92", "M03": "dpn-92", "M04": "densenet-161", "M05": "dpn-98",
                  "M06": "dpn-92", "M07": "resnext-101-64x4d", "M08": "dpn-131", "M09": "resnext-101-64x4d",
                  "M10": "resnext-101", "M11": "se-resnext-101-64x4d", "M12": "dpn-131",
                  "M13": "se-resnext-101-64x4d", "M14": "dpn-107"}
GiB = 1024 ** 3
MiB = 1024 ** 2


def rss_bytes():
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def parameter_count(network, num_classes=NUM_CLASSES, image_size=180):
    """Trained parameters (no BatchNorm moving statistics) of `network` under the 5,270-class head."""
    from train import symbols
    from train.finetune import attach_classifier
    features, _ = symbols.build_features(network)
    net = attach_classifier(features, num_classes)
    shapes, _, _ = net.infer_shape(data=(1, 3, image_size, image_size))
    return sum(int(np.prod(shape)) for name, shape in zip(net.list_arguments(), shapes)
               if name not in ("data", "softmax_label"))


def predicted_extra_copies(groups):
    """Copies of the parameters that `groups` executors on one device hold beyond one executor's two (weights,
    gradients): G weights + G gradients + the device kvstore's merge buffer, G - 1 copy buffers and weights."""
    return 0 if groups == 1 else 3 * groups - 1


def copies_per_gpu(groups, gpus):
    """About how many copies of the parameters each of `gpus` GPUs holds with `groups` executors over them
    (the kvstore's buffers, 1 + (G - 1) + 1 a parameter, spread over the GPUs by size)."""
    per_gpu = groups // gpus
    return 2 * per_gpu + ((groups + 1) / gpus if groups > 1 else 0)


def measure_child(args):
    """One training process: print {"peak": bytes, "base": bytes, "seconds": s} as JSON."""
    import logging
    from train import train_model
    logging.disable(logging.WARNING)
    base = rss_bytes()
    start = time.perf_counter()
    train_model.main(["--symbol", args.network, "--num-classes", str(NUM_CLASSES), "--benchmark", "1",
                      "--num-examples", str(args.batch_size * args.steps), "--num-epochs", "1",
                      "--image-shape", f"3,{args.image_size},{args.image_size}", "--batch-size", str(args.batch_size),
                      "--gpus", "", "--bn-groups", str(args.child), "--optimizer", "nadam", "--top-k", "0",
                      "--cpu-kernels", "onednn", "--disp-batches", "1000"])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"peak": peak, "base": base, "seconds": time.perf_counter() - start}))


def run_child(args, groups):
    command = [sys.executable, "-m", "benchmarks.bench_bn_groups", "--child", str(groups), "--network", args.network,
               "--image-size", str(args.image_size), "--batch-size", str(args.batch_size), "--steps", str(args.steps)]
    result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True,
                            env=dict(os.environ, MXNET_STORAGE_FALLBACK_LOG_VERBOSE="0"))
    if result.returncode:
        raise SystemExit(f"groups {groups}: the training process failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def measured_table(args):
    params = parameter_count(args.network, image_size=args.image_size)
    copy_bytes = params * BYTES_PER_VALUE
    runs = {groups: [] for groups in args.groups}
    for _ in range(args.repeats):  # the group counts in turn, so that a busy spell hits them alike
        for groups in args.groups:
            runs[groups].append(run_child(args, groups))
    growth = {g: statistics.median(r["peak"] - r["base"] for r in runs[g]) for g in args.groups}
    single = growth[args.groups[0]]
    rows = [f"Measured on the CPU: {args.network} at 3x{args.image_size}x{args.image_size}, {NUM_CLASSES} classes "
            f"({params / 1e6:.2f} M parameters, {copy_bytes / MiB:.1f} MiB a copy), batch {args.batch_size}, NAdam, "
            f"{args.steps} steps; median of {args.repeats} processes each",
            "",
            "| executors on cpu(0) | pictures each | peak RSS growth | more than 1 executor | predicted: copies of "
            "the parameters | left: activations, workspace, slack | seconds a process (not a speed figure) |",
            "|---:|---:|---:|---:|---:|---:|---:|"]
    for groups in args.groups:
        extra = growth[groups] - single
        predicted = predicted_extra_copies(groups) * copy_bytes
        seconds = statistics.median(r["seconds"] for r in runs[groups])
        rows.append(f"| {groups} | {args.batch_size // groups} | {growth[groups] / MiB:.0f} MiB "
                    f"| {extra / MiB:.0f} MiB | {predicted_extra_copies(groups)} x {copy_bytes / MiB:.1f} = {predicted / MiB:.0f} MiB "
                    f"| {(extra - predicted) / MiB:+.0f} MiB | {seconds:.1f} |")
    return "\n".join(rows)


def record_groups(model):
    """BN_GROUPS's default in train/Mxx.sh (the record's GPU count)."""
    with open(os.path.join(REPO_ROOT, "train", f"{model}.sh")) as fh:
        match = re.search(r'^BN_GROUPS="\$\{BN_GROUPS-(\d+)\}"', fh.read(), re.MULTILINE)
    if not match:
        raise SystemExit(f"train/{model}.sh: no BN_GROUPS default in its header")
    return int(match.group(1))


def computed_table():
    networks = {}
    for model, network in MODEL_NETWORKS.items():
        networks.setdefault((network, record_groups(model)), []).append(model)
    rows = [f"Computed: copies of the parameters a GPU holds (float32, {NUM_CLASSES} classes; the optimizer state, "
            "one set, comes on top; activations stay about the same in total)",
            "",
            "| models | network | parameters | one copy | 1 GPU, 1 executor | 1 GPU, G executors | extra on 1 GPU "
            "| 2 GPUs, G/2 executors each | record: G GPUs |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for (network, groups), models in networks.items():
        params = parameter_count(network)
        copy = params * BYTES_PER_VALUE

        def size(copies):
            return f"{copies:g} = {copies * copy / GiB:.2f} GiB"

        rows.append(f"| {', '.join(models)} | {network} | {params / 1e6:.1f} M | {copy / MiB:.0f} MiB "
                    f"| {size(copies_per_gpu(1, 1))} | G={groups}: {size(copies_per_gpu(groups, 1))} "
                    f"| {predicted_extra_copies(groups) * copy / GiB:.2f} GiB | {size(copies_per_gpu(groups, 2))} "
                    f"| {size(round(copies_per_gpu(groups, groups), 3))} |")
    return "\n".join(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_bn_groups", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="training processes per group count")
    parser.add_argument("--groups", type=lambda text: [int(g) for g in text.split(",")], default=[1, 4, 8],
                        help="executor counts on cpu(0), the first the reference (default: 1,4,8)")
    parser.add_argument("--network", default="resnext-14", help="a network of train/symbols")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--steps", type=int, default=3, help="training batches per process")
    parser.add_argument("--skip-measure", action="store_true", help="only the computed table")
    parser.add_argument("--markdown", help="also write the tables to this file")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)  # one measured process
    args = parser.parse_args(argv)
    if args.child:
        measure_child(args)
        return 0
    tables = [] if args.skip_measure else [measured_table(args)]
    tables.append(computed_table())
    print_tables(tables, args.markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())
