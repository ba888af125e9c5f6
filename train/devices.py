"""Devices of `--gpus`, checked before any work.

The default GPUS=0,...,7 of the model and prediction scripts on MXNet's CPU build used to
end, after the data was opened and the network built, in about 45 lines of MXNet errors.
`contexts` checks the ids and that this build sees that many GPUs first, and says in one
line what to do instead. Training and prediction both use it.

`cpu:0,cpu:1` lists CPU contexts instead of GPUs: it exists to test the multi-device path
(Module over a list of contexts, the `device` kvstore summing their gradients) on a machine
without GPUs, through the very code `--gpus 0,1` runs. Plain ids always mean GPUs.

`training_contexts` adds `--bn-groups`: BatchNorm normalises over what one executor sees, so the
original's 8 GPUs normalised over batch/8 pictures. Listing a device several times gives it that
many executors (MXNet's Module and its `local`/`device` kvstores accept a repeated context), so one
or two GPUs keep the record's per-device batch; see docs/gpus-batchnorm.md.
"""
import argparse

import mxnet as mx
import numpy as np

from cli.runner import UserError, run_cli
from train.checkpoint import mxnet_reason

CPU_HINT = "set GPUS= (empty) to run on the CPU"
GPU_BUILD_HINT = ("or install MXNet's CUDA build (REQUIREMENTS=requirements-gpu.txt when the scripts make the "
                  "venv, or pip install -r requirements-gpu.txt)")
CPU_PREFIX = "cpu:"
BN_GROUPS_HELP = ("executors the batch is split between, each with its own BatchNorm statistics (batch/N "
                  "pictures each): a multiple of the devices of --gpus, several executors on each, that divides "
                  "--batch-size; the model scripts set the record's GPU count (8, or 4 for M02/M03) so that one "
                  "or two GPUs normalise as the original's 8 did (default: one executor per device)")
DEVICES_HELP = ("GPU ids, e.g. 0,1,2,3; empty: the CPU; cpu:0,cpu:1: several CPU contexts, for testing the "
                "multi-device path on the CPU")


def cpu_ids(gpus_text):
    """The ids of 'cpu:0,cpu:1' (CPU contexts standing in for GPUs), or None when the text lists no CPU."""
    items = [item.strip() for item in (gpus_text or "").split(",")]
    if not any(item.startswith(CPU_PREFIX) for item in items):
        return None
    numbers = [item[len(CPU_PREFIX):] for item in items]
    if any(not item.startswith(CPU_PREFIX) or not number.isdigit() for item, number in zip(items, numbers)):
        raise UserError(f"--gpus {gpus_text}: expected GPU ids such as 0,1 or, to test the multi-device path "
                        "on the CPU, only CPU contexts such as cpu:0,cpu:1")
    return _distinct(gpus_text, [int(number) for number in numbers])


def _distinct(gpus_text, ids):
    if len(set(ids)) != len(ids):
        raise UserError(f"--gpus {gpus_text}: a device is listed twice")
    return ids


def gpu_ids(gpus_text):
    """The ids of '0,1,2' (spaces allowed, empty: none); one line for anything else."""
    items = [item.strip() for item in (gpus_text or "").split(",")]
    if items == [""]:
        return []
    if any(not item.isdigit() for item in items):
        raise UserError(f"--gpus {gpus_text}: expected comma-separated GPU ids such as 0,1 (empty: the CPU)")
    return _distinct(gpus_text, [int(item) for item in items])


def visible_gpus():
    """How many GPUs this MXNet build sees (0 on the CPU build, whose query may raise)."""
    try:
        return mx.context.num_gpus()
    except mx.base.MXNetError:
        return 0


def contexts(gpus_text):
    """[mx.gpu(i) for each id of `gpus_text`], or [mx.cpu()] when it is empty, or
    [mx.cpu(i) for each i] of 'cpu:0,cpu:1'.

    Raises UserError when the text is no list of ids, or the build has no CUDA or fewer GPUs
    than the highest id needs."""
    cpus = cpu_ids(gpus_text)
    if cpus is not None:
        return [mx.cpu(i) for i in cpus]
    ids = gpu_ids(gpus_text)
    if not ids:
        return [mx.cpu()]
    available = visible_gpus()
    if available == 0:
        raise UserError(f"--gpus {gpus_text}: this MXNet build sees no GPU (a CPU build, or no CUDA device); "
                        f"{CPU_HINT}, {GPU_BUILD_HINT}")
    missing = [i for i in ids if i >= available]
    if missing:
        raise UserError(f"--gpus {gpus_text}: only {available} GPU(s) visible (ids 0-{available - 1}); "
                        f"list only those, or {CPU_HINT}")
    return [mx.gpu(i) for i in ids]


def training_contexts(gpus_text, bn_groups=None, batch_size=None, kv_store="device"):
    """The contexts a training Module gets: each device of `contexts(gpus_text)` listed
    bn_groups/devices times in a row, so that each BatchNorm normalises over batch_size/bn_groups
    pictures whatever the number of devices; `contexts` itself when bn_groups is None.

    Raises UserError (before any work) when bn_groups is no multiple of the devices, does not
    divide batch_size, or would put several executors on a GPU of the nccl kvstore."""
    devices = contexts(gpus_text)
    if bn_groups is None:
        return devices
    shown = f"--gpus {gpus_text!r}" if gpus_text.strip() else "--gpus '' (the CPU)"
    if bn_groups < 1:
        raise UserError(f"--bn-groups {bn_groups}: must be at least 1")
    if bn_groups % len(devices):
        raise UserError(f"--bn-groups {bn_groups}: not a multiple of the {len(devices)} devices of {shown}; "
                        f"each device runs the same number of executors (e.g. --bn-groups "
                        f"{len(devices) * max(1, round(bn_groups / len(devices)))})")
    if batch_size is not None and batch_size % bn_groups:
        below = batch_size // bn_groups * bn_groups
        batches = " or ".join(str(b) for b in (below, below + bn_groups) if b > 0)
        raise UserError(f"--bn-groups {bn_groups}: does not divide --batch-size {batch_size}; every BatchNorm "
                        f"group gets the same number of pictures (e.g. a batch of {batches})")
    per_device = bn_groups // len(devices)
    if per_device > 1 and "nccl" in kv_store:
        # MXNet's NCCL kvstore makes one communicator rank per listed GPU, and NCCL refuses two ranks
        # on one GPU ("Duplicate GPU detected"); the device kvstore sums on the GPUs without NCCL.
        raise UserError(f"--kv-store {kv_store}: NCCL cannot run {per_device} executors on one GPU "
                        f"(--bn-groups {bn_groups} on {len(devices)} device(s)); use --kv-store device")
    return [device for device in devices for _ in range(per_device)]


def describe_contexts(device_contexts, batch_size):
    """One line: how many executors on which devices, and the pictures each BatchNorm normalises over."""
    counts = {}
    for ctx in device_contexts:
        counts[str(ctx)] = counts.get(str(ctx), 0) + 1
    where = ", ".join(f"{n} on {name}" if n > 1 else name for name, n in counts.items())
    return (f"{len(device_contexts)} executor(s) ({where}): each BatchNorm normalises over "
            f"{batch_size / len(device_contexts):g} pictures of the batch of {batch_size}")


def build_summary():
    """One line: MXNet's version and whether it was built with CUDA, cuDNN and NCCL."""
    features = mx.runtime.Features()
    parts = [f"{name} {'yes' if features.is_enabled(name) else 'no'}" for name in ("CUDA", "CUDNN", "NCCL")]
    return f"MXNet {mx.__version__}: " + ", ".join(parts)


def run_tiny_op(device_contexts):
    """A 3x3 convolution on each device, checked against the CPU's: the CUDA libraries load and this
    build has code for the GPU (a wheel without it fails here with "no kernel image is available")."""
    rng = np.random.default_rng(0)
    data, weight = rng.standard_normal((1, 2, 5, 5)), rng.standard_normal((3, 2, 3, 3))

    def convolve(ctx):
        out = mx.nd.Convolution(mx.nd.array(data, ctx=ctx), mx.nd.array(weight, ctx=ctx), no_bias=True,
                                kernel=(3, 3), num_filter=3)
        return out.asnumpy()

    expected = convolve(mx.cpu())
    for ctx in device_contexts:
        try:
            got = convolve(ctx)
        except mx.base.MXNetError as exc:
            raise UserError(f"{ctx}: a convolution fails: {mxnet_reason(exc)}") from None
        if not np.allclose(got, expected, atol=1e-4):
            raise UserError(f"{ctx}: a convolution gives wrong numbers (largest difference "
                            f"{np.abs(got - expected).max():.3g})")


def main(argv=None):
    """`python -m train.devices --gpus 0,1`: the scripts' pre-flight check, one line on failure."""
    parser = argparse.ArgumentParser(prog="python -m train.devices",
                                     description="Check that this MXNet build has the GPUs of --gpus.")
    parser.add_argument("--gpus", default="", help=DEVICES_HELP + " (default: empty, the CPU)")
    parser.add_argument("--run-op", action="store_true",
                        help="also run a small convolution on each device and say what the build supports")
    args = parser.parse_args(argv)
    device_contexts = contexts(args.gpus)
    if args.run_op:
        run_tiny_op(device_contexts)
        print(f"{build_summary()}; {visible_gpus()} GPU(s) visible; a convolution runs on "
              f"{', '.join(str(ctx) for ctx in device_contexts)}")
    return 0


if __name__ == "__main__":
    run_cli(main)
