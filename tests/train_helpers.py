"""Tiny training runs for the tests: the command lines of train.train_model on the colour_rec and
tiny_symbol fixtures (tests/conftest.py), made-up published weights, and model scripts like
train/Mxx.sh, scaled down, with their dry runs."""
import json
import shlex

import mxnet as mx
import numpy as np

from tests.helpers import REPO_ROOT, run
from train import checkpoint

NUM_CLASSES = 4  # colour_rec's classes


def train_argv(rec, prefix, symbol, params=None, epochs=3, extra=()):
    """Fine-tuning on colour_rec at 32x32 (the resnet18 fixture): lr 0.001, x0.1 from epoch 3."""
    argv = ["--symbol", symbol, "--feature-layer", "flatten0", "--data-train", rec, "--data-val", rec,
            "--image-shape", "3,32,32", "--num-classes", str(NUM_CLASSES), "--batch-size", "16",
            "--num-epochs", str(epochs), "--lr", "0.001", "--lr-step-epochs", "2", "--lr-factor", "0.1",
            "--model-prefix", prefix, "--disp-batches", "100", "--data-nthreads", "1", "--top-k", "0", *extra]
    if params:
        argv += ["--params", params]
    return argv


def fresh_value(name, shape, rng):
    """He-initialised weights, unit BatchNorm: a freshly initialised network, as MXNet would make it."""
    if name.endswith("weight") and len(shape) >= 2:
        return rng.normal(0, np.sqrt(2.0 / np.prod(shape[1:])), shape)
    if name.endswith(("gamma", "moving_var")):
        return np.ones(shape)
    return np.zeros(shape)  # beta, bias, moving_mean


def save_published_params(symbol, path, seed=0):
    """Fresh ImageNet-shaped weights saved like MXNet's published checkpoints (arg:/aux: names)."""
    rng = np.random.default_rng(seed)
    arg_shapes, _, aux_shapes = symbol.infer_shape(data=(1, 3, 224, 224))
    saved = {f"arg:{n}": mx.nd.array(fresh_value(n, s, rng).astype(np.float32))
             for n, s in zip(symbol.list_arguments(), arg_shapes) if n not in ("data", "softmax_label")}
    saved.update({f"aux:{n}": mx.nd.array(fresh_value(n, s, rng).astype(np.float32))
                  for n, s in zip(symbol.list_auxiliary_states(), aux_shapes)})
    mx.nd.save(path, saved)


# ---- resuming ------------------------------------------------------------------------------------
# resume_argv on colour_rec: 96 images in batches of 20, 5 batches an epoch, the last one wrapping around.
BATCHES_PER_EPOCH = 5
RESUME_RTOL = 1e-5  # a resumed run against the uninterrupted one


def resume_argv(rec, symbol, prefix, optimizer, epochs, extra=()):
    """tiny_symbol on colour_rec at 16x16, batches of 20, lr 0.01 then 0.001 from epoch 2."""
    # random flips, colour jitter, dropout and two decoding threads: all reproduced on resume
    return ["--symbol", symbol, "--feature-layer", "flatten0", "--data-train", rec, "--image-shape", "3,16,16",
            "--num-classes", "4", "--batch-size", "20", "--optimizer", optimizer, "--lr", "0.01",
            "--lr-step-epochs", "1", "--lr-factor", "0.1", "--num-epochs", str(epochs), "--model-prefix", prefix,
            "--data-nthreads", "2", "--random-mirror", "1", "--max-random-l", "20", "--dropout-ratio", "0.3",
            "--top-k", "0", "--disp-batches", "100", *extra]


def max_relative_difference(expected_path, got_path):
    """The largest relative difference between two checkpoints' arrays (BatchNorm statistics included)."""
    expected, got = mx.nd.load(expected_path), mx.nd.load(got_path)
    assert set(expected) == set(got)
    assert any(k.startswith("aux:bn1_moving") for k in got)  # BatchNorm statistics are compared too
    return max(float(np.max(np.abs(got[k].asnumpy() - expected[k].asnumpy()) /
                            np.maximum(np.abs(expected[k].asnumpy()), 1e-12))) for k in expected)


def read_state_json(prefix, epoch):
    """The optimizer state description saved beside checkpoint `epoch`."""
    with open(checkpoint.optimizer_state_paths(f"{prefix}-{epoch:04d}.params")[1]) as fh:
        return json.load(fh)


# ---- model scripts -------------------------------------------------------------------------------
TINY_SETTINGS = dict(DATASET="dataset_A", OPTIMIZER="nadam", LR="0.001", LR_FACTOR="0.2", LR_STEP_EPOCHS="1",
                     MOM="0.9", WD="0.00004", BATCH_SIZE="16", SMOOTH_ALPHA="0.1", DROPOUT_RATIO="0.0",
                     IMAGE_SHAPE="3,32,32", RESIZE="0", INTER_METHOD="9", RANDOM_CROP="0", RANDOM_MIRROR="1",
                     MAX_RANDOM_H="0", MAX_RANDOM_S="0", MAX_RANDOM_L="0")


def model_script(path, stages, default_stages="1", **settings):
    """Write a model script like train/Mxx.sh, scaled down for the tests (demo network, 4 classes, CPU)."""
    header = dict(MODEL_NAME="Mtiny", SYMBOL="densenet-41", NETWORK_ARGS="", PARAMS="", FEATURE_LAYER="",
                  PRETRAINED_SOURCE="", GPUS="", **TINY_SETTINGS)
    header.update(settings)
    header.update({f"STAGE_{i}": stage for i, stage in enumerate(stages, 1)}, DEFAULT_STAGES=default_stages)
    lines = ["#!/usr/bin/env bash", "set -euo pipefail", f"cd {shlex.quote(REPO_ROOT)}", "set -a"]
    lines += [f"{name}={shlex.quote(value)}" for name, value in header.items() if value is not None]
    lines += ["set +a", "exec train/run_model.sh"]
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o755)
    return str(path)


def dry_run(script, tmp_path, **env):
    """(exit code, [(comment lines before it, flags of a train_model command)], output) of DRY_RUN=1 script."""
    changes = dict(DRY_RUN="1", DATA_DIR=str(tmp_path / "data"), MODEL_DIR=str(tmp_path / "models"),
                   PRETRAINED_DIR=str(tmp_path / "pretrained"), **env)
    for name in ("STAGES", "LOAD_EPOCH", "VARIANTS", "GPUS", "FORCE"):
        if name not in env:
            changes[name] = None
    result = run(script, **changes, timeout=60)
    commands, comments = [], []
    for line in result.stdout.splitlines():
        if line.startswith("#"):
            comments.append(line)
            continue
        words = shlex.split(line)
        assert words[:3] == ["python", "-m", "train.train_model"], line
        commands.append((comments, flags_of(words[3:])))
        comments = []
    return result.returncode, commands, result.stdout + result.stderr


def flags_of(words):
    """{'--flag': value} of a command's words; a flag without a value maps to True."""
    flags, i = {}, 0
    while i < len(words):
        assert words[i].startswith("--"), words[i]
        if i + 1 < len(words) and not words[i + 1].startswith("--"):
            flags[words[i]] = words[i + 1]
            i += 2
        else:
            flags[words[i]] = True
            i += 1
    return flags
