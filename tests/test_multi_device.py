"""The multi-device path on the CPU: `--gpus cpu:0,cpu:1` runs the code `--gpus 0,1` runs (a Module over
a list of contexts, each batch split between them, the `device` kvstore summing their gradients) and
ends where one context ends, for training and for prediction."""
import os
import shutil
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

from cli.runner import UserError
from predict import compare_devices, predict
from predict.predictor import Predictor
from predict.submission import read_submission
from train import devices, fit, train_model
from tests.predict_helpers import predict_args

TWO_CPUS = "cpu:0,cpu:1"
# Two half-batch gradients summed differ from one full-batch gradient only by float32 rounding.
WEIGHT_ATOL = 1e-5
PROB_ATOL = 1e-6
# Inputs in 0-1: on raw 0-255 pixels an lr of 0.05 blows the weights up to thousands, where float32's
# rounding of the two summation orders alone differs by 1e-3.
RGB_SCALE = str(1 / 255)
PREDICTOR_VIEWS_DONE, LOAD_MODELS, MODULE_INIT = Predictor._views_done, predict.load_models, fit._Module.__init__


def test_cpu_contexts_are_explicit_and_plain_ids_stay_gpus(monkeypatch):
    assert devices.contexts(TWO_CPUS) == [mx.cpu(0), mx.cpu(1)]
    assert devices.contexts(" cpu:0 , cpu:1 ") == [mx.cpu(0), mx.cpu(1)]
    monkeypatch.setattr(devices, "visible_gpus", lambda: 2)
    assert devices.contexts("0,1") == [mx.gpu(0), mx.gpu(1)]
    for mixed in ("cpu:0,1", "cpu:x", "cpu:"):
        with pytest.raises(UserError, match="only CPU contexts such as cpu:0,cpu:1"):
            devices.contexts(mixed)
    with pytest.raises(UserError, match="listed twice"):
        devices.contexts("cpu:1,cpu:1")


def test_two_cpu_contexts_make_a_device_kvstore():
    args = train_model.build_parser().parse_args(["--gpus", TWO_CPUS, "--kv-store", "device"])
    assert fit.make_kvstore(args).type == "device"
    args.gpus = ""
    assert fit.make_kvstore(args) is None  # one context: no kvstore, as with one GPU


@pytest.fixture(scope="module")
def no_batchnorm_symbol(tmp_path_factory):
    """Convolution, ReLU, pooling, fc: no layer whose output depends on the batch (BatchNorm's
    statistics are per device), so a split batch is mathematically the whole batch."""
    net = mx.sym.Convolution(mx.sym.var("data"), num_filter=8, kernel=(3, 3), pad=(1, 1), name="conv1")
    net = mx.sym.Activation(net, act_type="relu", name="relu1")
    net = mx.sym.Pooling(net, global_pool=True, kernel=(1, 1), pool_type="avg", name="pool1")
    net = mx.sym.FullyConnected(mx.sym.Flatten(net, name="flatten0"), num_hidden=10, name="fc1")
    path = str(tmp_path_factory.mktemp("nobn") / "nobn-symbol.json")
    mx.sym.SoftmaxOutput(net, name="softmax").save(path)
    return path


def train_weights(rec, symbol, prefix, gpus, optimizer, monkeypatch):
    """Weights after 2 epochs of 5 updates (batch 20: 10 images a context with two), deterministic data;
    and the contexts the Module was given."""
    given = []
    module_init = MODULE_INIT  # not a spy of an earlier call

    def spy(module, symbol, context, after_optimizer):
        given.append(context)
        module_init(module, symbol, context, after_optimizer)

    monkeypatch.setattr(fit._Module, "__init__", spy)
    train_model.main(["--symbol", symbol, "--feature-layer", "flatten0", "--data-train", rec,
                      "--image-shape", "3,16,16", "--num-classes", "4", "--batch-size", "20", "--optimizer", optimizer,
                      "--lr", "0.01", "--rgb-scale", RGB_SCALE, "--num-epochs", "2", "--model-prefix", prefix, "--gpus", gpus,
                      "--kv-store", "device", "--data-nthreads", "1", "--random-mirror", "0", "--top-k", "0",
                      "--disp-batches", "100"])
    assert given == [devices.contexts(gpus)]
    return [{k: v.asnumpy() for k, v in mx.nd.load(f"{prefix}-{epoch:04d}.params").items()} for epoch in (1, 2)]


@pytest.mark.parametrize("optimizer", ["nadam", "nag"])
def test_two_cpu_contexts_train_the_weights_of_one(colour_rec, no_batchnorm_symbol, tmp_path, optimizer,
                                                   monkeypatch):
    train = [colour_rec, no_batchnorm_symbol]
    first_epoch, one = train_weights(*train, str(tmp_path / "one" / "m"), "", optimizer, monkeypatch)
    _, two = train_weights(*train, str(tmp_path / "two" / "m"), TWO_CPUS, optimizer, monkeypatch)
    assert set(one) == set(two)
    difference = max(float(np.max(np.abs(one[k] - two[k]))) for k in one)
    print(f"{optimizer}: largest weight difference, two contexts vs one: {difference:.3g}")
    assert difference <= WEIGHT_ATOL
    # the weights still move in the second epoch: the comparison is not of two networks at rest
    assert max(float(np.max(np.abs(one[k] - first_epoch[k]))) for k in one) > 100 * WEIGHT_ATOL


def predicted_probabilities(run, output, gpus, monkeypatch):
    """{product id: (models, views, classes) probabilities} of a predict.main run, flip TTA."""
    seen, loaded = {}, []
    views_done, load_models = PREDICTOR_VIEWS_DONE, LOAD_MODELS  # not a spy of an earlier call

    def record(predictor, pending):  # every view through the models: their probabilities, before the means
        seen[pending.prepared.product] = pending.probs.copy()
        views_done(predictor, pending)

    def spy_models(*args, **kwargs):
        loaded.extend(load_models(*args, **kwargs))
        return loaded

    monkeypatch.setattr(Predictor, "_views_done", record)
    monkeypatch.setattr(predict, "load_models", spy_models)
    assert predict.main(predict_args(run, output, "--gpus", gpus, "--multi-view", "2", "--num-procs", "1")) == 0
    assert [model.module._context for model in loaded] == [devices.contexts(gpus)]
    return seen


def test_two_cpu_contexts_predict_what_one_predicts(colour_run, monkeypatch):
    one = predicted_probabilities(colour_run, colour_run["dir"] / "one.csv.gz", "", monkeypatch)
    two = predicted_probabilities(colour_run, colour_run["dir"] / "two.csv.gz", TWO_CPUS, monkeypatch)
    assert sorted(one) == sorted(two) == sorted(d["_id"] for d in colour_run["docs"])
    difference = max(float(np.max(np.abs(one[p] - two[p]))) for p in one)
    print(f"largest probability difference, two contexts vs one: {difference:.3g}")
    assert difference <= PROB_ATOL
    assert min(float(one[p].max()) for p in one) > 0.5  # real predictions, not zeros
    ids_one, categories_one = read_submission(str(colour_run["dir"] / "one.csv.gz"))
    ids_two, categories_two = read_submission(str(colour_run["dir"] / "two.csv.gz"))
    assert ids_one.tolist() == ids_two.tolist() and categories_one.tolist() == categories_two.tolist()


def test_compare_devices_runs_the_model_on_both_and_reports(colour_run, capsys):
    files = ["--bson", colour_run["bson"], "--symbol", colour_run["symbol"], "--params", colour_run["params"],
             "--image-shape", "3,32,32", "--num-images", "16"]
    assert compare_devices.main([*files, "--gpus", TWO_CPUS]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("16 pictures (32 views): largest probability difference cpu(0), cpu(1) vs cpu 0 ")
    assert line.endswith("same top class for 16 of 16")
    with pytest.raises(UserError, match="fewer than --num-images 1000"):
        compare_devices.main([*files[:-1], "1000", "--gpus", TWO_CPUS])


def test_compare_devices_fails_above_the_tolerance(colour_run, monkeypatch):
    real = compare_devices.picture_probabilities

    def off_on_the_devices(args, views, num_views, device_contexts):  # a GPU that computes something else
        probs = real(args, views, num_views, device_contexts)
        return probs + 0.01 * (device_contexts != [mx.cpu()])

    monkeypatch.setattr(compare_devices, "picture_probabilities", off_on_the_devices)
    with pytest.raises(UserError, match=r"differ from the CPU's by 0.01, more than --tolerance 0.0001"):
        compare_devices.main(["--bson", colour_run["bson"], "--symbol", colour_run["symbol"], "--params",
                              colour_run["params"], "--image-shape", "3,32,32", "--gpus", "cpu:1"])


def test_devices_run_op_checks_each_device(capsys, monkeypatch):
    assert devices.main(["--gpus", TWO_CPUS, "--run-op"]) == 0
    assert capsys.readouterr().out.startswith("MXNet 1.9.1: CUDA no, CUDNN no, NCCL no; 0 GPU(s) visible; "
                                              "a convolution runs on cpu(0), cpu(1)")

    convolution = mx.nd.Convolution

    def failing(data, *args, **kwargs):  # as a wheel without code for the GPU, on cpu(1) only
        if data.context == mx.cpu(1):
            raise mx.base.MXNetError("Traceback ...\nMXNetError: no kernel image is available for execution")
        return convolution(data, *args, **kwargs)

    monkeypatch.setattr(mx.nd, "Convolution", failing)
    with pytest.raises(UserError, match="a convolution fails: no kernel image is available"):
        devices.run_tiny_op([mx.cpu(1)])
