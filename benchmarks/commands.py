"""Running the project's commands from a benchmark, as a user would: each in its own process, each step once."""
import os
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python_module(module, *args, log_path=None):
    """Run `python -m module args` from the repository root and return its seconds; its output is appended
    to `log_path` when given, and shown if it fails (then the benchmark stops)."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO_ROOT, capture_output=True, text=True)
    if log_path:
        with open(log_path, "a") as fh:
            fh.write(f"$ python -m {module} {' '.join(args)}\n{done.stdout}{done.stderr}\n")
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
        raise SystemExit(f"python -m {module} failed ({done.returncode})")
    return time.monotonic() - started


def once(path, make):
    """Run `make()` unless `path` exists (the step's last output, written under a temporary name and renamed by the
    command, so that it exists only once the step is complete)."""
    if not os.path.exists(path):
        make()
    return path


def train_small_network(network, train_rec, valid_rec, prefix, epochs, log_path, *extra, seed=0,
                        image_shape="3,32,32", resize=32):
    """Train `network` of train/symbols from scratch at the beds' budget (3x32x32 by default, NAdam lr 0.001 x0.2 for
    the last epoch, batch 32, `seed`) unless PREFIX-EPOCH.params exists; returns the params file. `extra`: more flags
    (level heads, extra .rec files)."""
    params = f"{prefix}-{epochs:04d}.params"
    if not os.path.exists(params):
        os.makedirs(os.path.dirname(prefix), exist_ok=True)
        seconds = python_module(
            "train.train_model", "--symbol", network, "--data-train", train_rec, "--data-val", valid_rec,
            "--image-shape", image_shape, "--resize", str(resize), "--batch-size", "32", "--optimizer", "nadam",
            "--lr", "0.001", "--lr-factor", "0.2", "--lr-step-epochs", str(max(epochs - 1, 1)),
            "--num-epochs", str(epochs), "--gpus", "", "--seed", str(seed), "--model-prefix", prefix, "--force",
            "--disp-batches", "1000", *extra, log_path=log_path)
        print(f"  trained {prefix}: {seconds:.0f} s", flush=True)
    return params


def split_by_product(work, bson_path, log_path=None):
    """{'train_bson', 'valid_bson'}: the labelled `bson_path` split by product, 20% to validation (seed 0xC0FFEE, as
    DATASET_A), into `work` once."""
    paths = {f"{part}_bson": os.path.join(work, f"train_{part}.bson") for part in ("train", "valid")}
    once(paths["valid_bson"], lambda: python_module(
        "data.split_train_bson", "--bson", bson_path, "--val-ratio", "0.2", "--random-seed", str(0xC0FFEE),
        "--save-train-bson", paths["train_bson"], "--save-val-bson", paths["valid_bson"], "--force", log_path=log_path))
    return paths
