"""train_model end to end on a small generated .rec, through the published ResNet-18 graph."""
import csv
import os

import mxnet as mx
import numpy as np
import pytest

from data import bson2rec
from data.common import UserError
from train import train_model
from train.data import get_iterators
from train.fit import eval_metrics, make_optimizer
from train.lr_schedule import lr_at_epoch
from tests.conftest import shared_file
from tests.helpers import colour_products, write_bson, write_category_csv
from tests.test_finetune import save_published_params

NUM_CLASSES = 4


@pytest.fixture(scope="module")
def colour_rec(tmp_path_factory):
    """A .rec of 4 colour classes (96 images) converted by data.bson2rec, and its category CSV."""
    folder = tmp_path_factory.mktemp("colours")
    docs = colour_products(NUM_CLASSES, 24, size=32)
    csv_path = write_category_csv(folder / "category_names.csv", [1000000000 + c for c in range(NUM_CLASSES)])
    bson_path = write_bson(folder / "train.bson", docs)
    rec = str(folder / "train.rec")
    bson2rec.main(["--bson", bson_path, "--out-rec", rec, "--category-csv", csv_path])
    return rec


@pytest.fixture(scope="module")
def resnet18(tmp_path_factory):
    """The published ResNet-18 graph and made-up weights in the published .params format."""
    folder = tmp_path_factory.mktemp("resnet18")
    symbol = shared_file("mxnet_symbols/resnet-18-symbol.json")
    params = str(folder / "resnet-18-0000.params")
    save_published_params(mx.sym.load(symbol), params)
    return symbol, params


def train_argv(rec, prefix, symbol, params=None, epochs=3, extra=()):
    argv = ["--symbol", symbol, "--feature-layer", "flatten0", "--data-train", rec, "--data-val", rec,
            "--image-shape", "3,32,32", "--num-classes", str(NUM_CLASSES), "--batch-size", "16",
            "--num-epochs", str(epochs), "--lr", "0.001", "--lr-step-epochs", "2", "--lr-factor", "0.1",
            "--model-prefix", prefix, "--disp-batches", "100", "--data-nthreads", "1", "--top-k", "0", *extra]
    if params:
        argv += ["--params", params]
    return argv


def read_metrics(prefix):
    with open(f"{prefix}-metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_fine_tune_learns_and_writes_checkpoints(colour_rec, resnet18, tmp_path):
    symbol, params = resnet18
    prefix = str(tmp_path / "model" / "m")
    train_model.main(train_argv(colour_rec, prefix, symbol, params, epochs=3))
    rows = read_metrics(prefix)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    losses = [float(r["train_cross_entropy"]) for r in rows]
    assert losses[-1] < losses[0]
    assert float(rows[-1]["val_accuracy"]) > 2.0 / NUM_CLASSES  # chance is 0.25
    for epoch in (1, 2, 3):
        assert os.path.exists(f"{prefix}-{epoch:04d}.params")
    assert os.path.exists(f"{prefix}-symbol.json") and os.path.exists(f"{prefix}-curve.png")
    # The schedule: epochs 1-2 at lr, epoch 3 at lr * factor.
    assert [float(r["lr"]) for r in rows] == pytest.approx([0.001, 0.001, 0.0001])
    # The checkpoint holds the new classifier for 4 classes, not ResNet-18's 1000.
    saved = mx.nd.load(f"{prefix}-0003.params")
    assert saved["arg:fc_weight"].shape == (NUM_CLASSES, 512) and "arg:fc1_weight" not in saved


def test_resume_follows_the_uninterrupted_schedule(colour_rec, resnet18, tmp_path):
    symbol, params = resnet18
    prefix = str(tmp_path / "r" / "m")
    train_model.main(train_argv(colour_rec, prefix, symbol, params, epochs=1))
    train_model.main(train_argv(colour_rec, prefix, symbol, params, epochs=3, extra=["--load-epoch", "1"]))
    rows = read_metrics(prefix)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert [float(r["lr"]) for r in rows] == pytest.approx([0.001, 0.001, 0.0001])


def test_nadam_and_label_smoothing_are_in_use(resnet18):
    symbol, _ = resnet18
    args = train_model.build_parser().parse_args(
        ["--symbol", symbol, "--feature-layer", "flatten0", "--num-classes", "10", "--num-examples", "1000",
         "--batch-size", "100"])
    network = train_model.build_network(args)
    assert network.attr_dict()["softmax"]["smooth_alpha"] == "0.1"
    optimizer = make_optimizer(args, epoch_updates=10, begin_epoch=0)
    assert isinstance(optimizer, mx.optimizer.Nadam)
    assert optimizer.lr_scheduler(1) == pytest.approx(1e-4)
    assert optimizer.lr_scheduler(10 * 10) == pytest.approx(1e-4)       # last update of epoch 10
    assert optimizer.lr_scheduler(10 * 10 + 1) == pytest.approx(2e-5)   # first of epoch 11
    assert optimizer.lr_scheduler(13 * 10 + 1) == pytest.approx(4e-6)   # epoch 14 on
    resumed = make_optimizer(args, epoch_updates=10, begin_epoch=12)
    assert resumed.num_update == 120 and resumed.begin_num_update == 120


def test_lr_schedule_of_the_write_up():
    lrs = [lr_at_epoch(1e-4, 0.2, [10, 13], e) for e in range(16)]
    assert lrs[:10] == [1e-4] * 10
    assert lrs[10:13] == pytest.approx([2e-5] * 3)
    assert lrs[13:] == pytest.approx([4e-6] * 3)


def test_cli_errors_are_clear(colour_rec, resnet18, tmp_path):
    symbol, params = resnet18
    prefix = str(tmp_path / "e" / "m")
    with pytest.raises(UserError, match="--feature-layer nowhere: no such layer"):
        train_model.main(train_argv(colour_rec, prefix, symbol, params, extra=["--feature-layer", "nowhere"]))
    with pytest.raises(UserError, match="parameter file not found"):
        train_model.main(train_argv(colour_rec, prefix, symbol, str(tmp_path / "missing.params")))
    with pytest.raises(UserError, match="float16 needs --gpus"):
        train_model.main(train_argv(colour_rec, prefix, symbol, extra=["--dtype", "float16"]))
    with pytest.raises(UserError, match=r"\.rec file not found"):
        train_model.main(train_argv(str(tmp_path / "none.rec"), prefix, symbol))


def test_float16_graph_types():
    symbol = shared_file("mxnet_symbols/resnet-18-symbol.json")
    args = train_model.build_parser().parse_args(
        ["--symbol", symbol, "--feature-layer", "flatten0", "--num-classes", "10", "--dtype", "float16",
         "--gpus", "0"])
    network = train_model.build_network(args)
    arg_types, out_types, _ = network.infer_type(data=np.float32)
    types = dict(zip(network.list_arguments(), arg_types))
    assert types["conv0_weight"] == np.float16  # the body runs in float16 ...
    assert types["fc_weight"] == np.float32 and out_types == [np.float32]  # ... the classifier in float32


def test_validation_counts_each_image_once(colour_rec):
    # 96 images in batches of 20: the last batch holds 16 real images and 4 of padding.
    args = train_model.build_parser().parse_args(
        ["--symbol", "densenet-41", "--data-train", colour_rec, "--data-val", colour_rec,
         "--image-shape", "3,32,32", "--batch-size", "20"])
    _, val = get_iterators(args)
    for _ in range(2):  # the same on every epoch
        val.reset()
        batches = list(val)
        assert [b.pad for b in batches] == [0, 0, 0, 0, 4]
        labels = np.concatenate([b.label[0].asnumpy()[:20 - b.pad] for b in batches])
        assert len(labels) == 96 and labels.min() >= 0
        assert (batches[-1].label[0].asnumpy()[16:] == -1).all()


def test_metrics_skip_padding():
    args = train_model.build_parser().parse_args(["--symbol", "densenet-41", "--top-k", "2"])
    metric = eval_metrics(args)
    predictions = mx.nd.array([[0.1, 0.9, 0.0], [0.2, 0.1, 0.7], [0.9, 0.05, 0.05]])
    metric.update([mx.nd.array([1, 0, -1])], [predictions])  # the third sample is padding
    values = dict(metric.get_name_value())
    assert values["accuracy"] == pytest.approx(0.5)
    assert values["top_k_accuracy_2"] == pytest.approx(1.0)  # 0.2 is the second-best score of sample 2
    assert values["cross-entropy"] == pytest.approx(-(np.log(0.9) + np.log(0.2)) / 2, rel=1e-4)
