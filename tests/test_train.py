"""train_model end to end on a small generated .rec, through the published ResNet-18 graph."""
import csv
import json
import logging
import os

import mxnet as mx
import numpy as np
import pytest

from cli.runner import UserError
from train import train_model
from train.data import get_iterators
from train.fit import describe_optimizer, eval_metrics, fit, make_optimizer, optimizer_settings
from train.lr_schedule import EpochStepScheduler, lr_at_epoch
from tests.helpers import shared_file
from tests.train_helpers import NUM_CLASSES, train_argv


def read_metrics(prefix):
    with open(f"{prefix}-metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.smoke  # run on every Python the README promises (.ci/run)
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


def test_resume_follows_the_uninterrupted_schedule(colour_rec, tiny_symbol, tmp_path):
    # The schedule is the network's business nowhere: the tiny one (ResNet-18's fine-tune is above).
    prefix = str(tmp_path / "r" / "m")
    train_model.main(train_argv(colour_rec, prefix, tiny_symbol, epochs=1))
    train_model.main(train_argv(colour_rec, prefix, tiny_symbol, epochs=3, extra=["--load-epoch", "1"]))
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
    # A fresh optimizer at a resume counts from 0, as the original's; epoch 13 still gets its lr.
    resumed = make_optimizer(args, epoch_updates=10, begin_epoch=12)
    assert resumed.num_update == 0
    assert resumed.lr_scheduler(1) == pytest.approx(2e-5) and resumed.lr_scheduler(11) == pytest.approx(4e-6)


def optimizer_of(extra, batch=8):
    """The optimizer as fit has Module build it, on a network with a bias and a BatchNorm."""
    args = train_model.build_parser().parse_args(["--symbol", "densenet-41", "--wd", "0.001", "--mom", "0.5",
                                                  *extra])
    net = mx.sym.FullyConnected(mx.sym.BatchNorm(mx.sym.var("data"), name="bn"), num_hidden=3, name="fc")
    module = mx.mod.Module(mx.sym.SoftmaxOutput(net, name="softmax"), context=mx.cpu())
    module.bind(data_shapes=[("data", (batch, 4))], label_shapes=[("softmax_label", (batch,))])
    module.init_params()
    settings = optimizer_settings(args, EpochStepScheduler(args.lr, 0.1, [], 10))
    module.init_optimizer(optimizer=args.optimizer, optimizer_params=settings)
    wd = {name: module._optimizer._get_wd(i) for i, name in module._optimizer.idx2name.items()}
    return module._optimizer, wd, describe_optimizer(args, settings)


def test_adam_and_nadam_get_only_the_lr_as_in_the_original():
    for name in ("adam", "nadam"):
        optimizer, wd, said = optimizer_of(["--optimizer", name])
        assert set(wd.values()) == {0.0}  # --wd 0.001 is not applied
        assert optimizer.beta1 == 0.9 and optimizer.beta2 == 0.999  # --mom 0.5 is not beta1
        assert not optimizer.multi_precision and optimizer.clip_gradient is None
        assert optimizer.rescale_grad == pytest.approx(1 / 8)
        assert "--wd is not applied" in said and "--mom not used" in said
    optimizer, wd, said = optimizer_of(["--optimizer", "nadam", "--adam-wd"])
    assert wd["fc_weight"] == pytest.approx(0.001) and "weight decay 0.001" in said


def test_sgd_and_nag_get_momentum_wd_and_multi_precision():
    for name in ("sgd", "nag"):
        optimizer, wd, said = optimizer_of(["--optimizer", name])
        assert optimizer.momentum == 0.5 and optimizer.multi_precision
        # as Module builds an optimizer by name: weights and gammas decay, biases and betas do not
        assert wd == pytest.approx({"fc_weight": 0.001, "bn_gamma": 0.001, "fc_bias": 0.0, "bn_beta": 0.0})
        assert "momentum 0.5" in said and "weight decay 0.001" in said


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
    with pytest.raises(UserError, match="float16 needs --gpus"):  # CPU contexts standing in for GPUs
        train_model.main(train_argv(colour_rec, prefix, symbol, extra=["--dtype", "float16", "--gpus", "cpu:0,cpu:1"]))
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


def tiny_argv(rec, symbol, extra=()):
    return ["--symbol", symbol, "--feature-layer", "flatten0", "--data-train", rec, "--image-shape", "3,16,16",
            "--num-classes", str(NUM_CLASSES), "--batch-size", "32", "--num-epochs", "1", "--data-nthreads", "1",
            "--top-k", "0", "--disp-batches", "100", "--random-mirror", "0", *extra]


def run_fit(argv):
    args = train_model.build_parser().parse_args(argv)
    train_model.check_args(args)
    return fit(args, train_model.build_network(args), allow_missing=True)


def test_fit_has_module_build_the_optimizer_by_name(colour_rec, tiny_symbol):
    optimizer = run_fit(tiny_argv(colour_rec, tiny_symbol, ["--optimizer", "nag", "--wd", "0.001"])).module._optimizer
    wd = {name: optimizer._get_wd(i) for i, name in optimizer.idx2name.items()}
    assert wd["conv1_weight"] == pytest.approx(0.001) and wd["bn1_beta"] == 0.0 and wd["fc_bias"] == 0.0
    assert optimizer.rescale_grad == pytest.approx(1 / 32)


def test_monitor_logs_every_array(colour_rec, tiny_symbol, caplog):
    with caplog.at_level(logging.INFO):
        run_fit(tiny_argv(colour_rec, tiny_symbol))
    assert "conv1_weight" not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO):
        run_fit(tiny_argv(colour_rec, tiny_symbol, ["--monitor", "2"]))
    monitored = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Batch:")]
    assert {int(m.split()[1]) for m in monitored} == {1, 3}  # every second of the 3 batches
    assert any("conv1_weight" in m for m in monitored) and any("bn1_moving_var" in m for m in monitored)


def first_batch(rec, extra):
    args = train_model.build_parser().parse_args(
        ["--symbol", "densenet-41", "--data-train", rec, "--image-shape", "3,20,20", "--resize", "20",
         "--batch-size", "4", "--random-mirror", "0", "--data-nthreads", "1", *extra])
    train, _ = get_iterators(args)
    return next(iter(train)).data[0].asnumpy()


def test_inter_method_reaches_the_decoder(colour_rec):
    assert train_model.build_parser().parse_args([]).inter_method == 9  # the original's default
    nearest = first_batch(colour_rec, ["--inter-method", "0"])
    assert not np.array_equal(nearest, first_batch(colour_rec, ["--inter-method", "2"]))
    assert np.array_equal(nearest, first_batch(colour_rec, ["--inter-method", "0"]))


def test_the_originals_spellings(tmp_path):
    parse = train_model.build_parser().parse_args
    args = parse(["--num-epoch", "7", "--data-nthread", "3", "--layer-before-fullc", "pool5",
                  "--ignore-arg-names", "fc_weight", "fc_bias"])
    assert (args.num_epochs, args.data_nthreads, args.feature_layer) == (7, 3, "pool5")
    assert train_model.ignored_names(args) == {"fc_weight", "fc_bias"}
    assert train_model.ignored_names(parse(["--ignore-arg-names", "fc_weight,fc_bias"])) == {"fc_weight", "fc_bias"}
    assert train_model.ignored_names(parse([])) == set()
    with pytest.raises(UserError, match="--pretrained-model m/resnext: .*--params PREFIX-0000.params"):
        parse(["--pretrained-model", "m/resnext"])
    with pytest.raises(UserError, match="--fix-last-layer.*classifier 'fc' of the right shape is always kept"):
        parse(["--fix-last-layer", "--symbol", "resnext-14"])


def test_dropout_default_means_none_as_the_originals_none():
    def network(extra):
        return train_model.build_network(train_model.build_parser().parse_args(
            ["--symbol", "resnext-14", "--num-classes", "10", *extra]))

    def ops(net):
        return {node["op"] for node in json.loads(net.tojson())["nodes"]}

    assert "Dropout" not in ops(network([]))
    assert network([]).tojson() == network(["--dropout-ratio", "0.0"]).tojson()
    assert "Dropout" in ops(network(["--dropout-ratio", "0.2"]))
