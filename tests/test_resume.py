"""Resume: 1 epoch + --load-epoch 1 ends where 2 uninterrupted epochs end (weights and BatchNorm
statistics), for NADAM and NAG; checkpoints without optimizer state, or a stage that changes the
optimizer, resume with a warning and a fresh optimizer whose counter starts at 0; the state files
are MXNet NDArray + JSON files, restored on one device and through a kvstore updater alike."""
import logging
import os
import shutil

import mxnet as mx
import numpy as np
import pytest

from cli.runner import UserError
from train import checkpoint, optimizer_state, train_model
from train.data import get_iterators
from train.lr_schedule import EpochStepScheduler
from tests.train_helpers import (BATCHES_PER_EPOCH, RESUME_RTOL, max_relative_difference, read_state_json,
                                 resume_argv)


def lrs(prefix):
    with open(f"{prefix}-metrics.csv") as fh:
        return [float(line.split(",")[1]) for line in fh.read().splitlines()[1:]]


# (SGD without momentum has no state arrays: what it checks is the data order and the schedule.)
@pytest.mark.parametrize("optimizer, extra", [("nadam", []), ("nag", []), ("sgd", ["--mom", "0"])])
def test_one_epoch_and_a_resume_equal_two_epochs(colour_rec, tiny_symbol, tmp_path, optimizer, extra):
    whole, split = str(tmp_path / "whole" / "m"), str(tmp_path / "split" / "m")
    train_model.main(resume_argv(colour_rec, tiny_symbol, whole, optimizer, 2, extra))
    train_model.main(resume_argv(colour_rec, tiny_symbol, split, optimizer, 1, extra))
    train_model.main(resume_argv(colour_rec, tiny_symbol, split, optimizer, 2, ["--load-epoch", "1", *extra]))
    assert max_relative_difference(f"{whole}-0002.params", f"{split}-0002.params") <= RESUME_RTOL
    assert read_state_json(split, 2)["num_update"] == read_state_json(whole, 2)["num_update"] == 2 * BATCHES_PER_EPOCH
    assert lrs(split) == lrs(whole) == pytest.approx([0.01, 0.001])


def test_a_resumed_epoch_reads_what_the_uninterrupted_epoch_reads(colour_rec):
    args = train_model.build_parser().parse_args(
        ["--symbol", "densenet-41", "--data-train", colour_rec, "--image-shape", "3,16,16", "--batch-size", "20",
         "--random-mirror", "1", "--max-random-l", "20", "--data-nthreads", "2"])

    def epochs(train, count):
        read = []
        for _ in range(count):
            read.append(np.concatenate([b.data[0].asnumpy() for b in train]))
            train.reset()
        return read

    uninterrupted = epochs(get_iterators(args)[0], 3)
    assert [len(e) for e in uninterrupted] == [BATCHES_PER_EPOCH * 20] * 3  # no batch carried over
    assert not np.array_equal(uninterrupted[1], uninterrupted[2])  # each epoch its own order and flips
    resumed = epochs(get_iterators(args, begin_epoch=2)[0], 1)
    assert np.array_equal(resumed[0], uninterrupted[2])


def test_state_files_are_ndarrays_and_json(colour_rec, tiny_symbol, tmp_path):
    prefix = str(tmp_path / "m")
    train_model.main(resume_argv(colour_rec, tiny_symbol, prefix, "nadam", 1))
    arrays_path, json_path = checkpoint.optimizer_state_paths(f"{prefix}-0001.params")
    assert arrays_path.endswith("m-0001.optimizer.nd") and json_path.endswith("m-0001.optimizer.json")
    arrays = mx.nd.load(arrays_path)  # MXNet's own format: no pickle
    assert sorted(k for k in arrays if k.startswith("fc_weight")) == ["fc_weight:s.0", "fc_weight:s.1"]
    assert arrays["fc_weight:s.1"].shape == (4, 8) and arrays["fc_weight:s.1"].min().asscalar() >= 0  # variance
    description = read_state_json(prefix, 1)
    assert description["optimizer"] == "nadam" and description["num_update"] == BATCHES_PER_EPOCH
    assert 0 < description["m_schedule"] < 1  # NADAM's momentum schedule, a Python float


def resume_after_one_epoch(rec, symbol, prefix, first, second, caplog, prepare=lambda: None):
    train_model.main(resume_argv(rec, symbol, prefix, first, 1))
    prepare()
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        train_model.main(resume_argv(rec, symbol, prefix, second, 2, ["--load-epoch", "1"]))
    return caplog.text


def test_checkpoint_without_state_resumes_fresh(colour_rec, tiny_symbol, tmp_path, caplog):
    prefix = str(tmp_path / "m")

    def remove_state():  # as a checkpoint written before states were saved, or by the original
        for path in checkpoint.optimizer_state_paths(f"{prefix}-0001.params"):
            os.remove(path)

    warnings = resume_after_one_epoch(colour_rec, tiny_symbol, prefix, "nadam", "nadam", caplog, remove_state)
    assert "no saved optimizer state" in warnings and "fresh nadam optimizer (update counter 0" in warnings
    assert read_state_json(prefix, 2)["num_update"] == BATCHES_PER_EPOCH  # counted from 0 at the resume
    assert lrs(prefix) == pytest.approx([0.01, 0.001])  # the schedule still gives epoch 2 its lr


def test_fresh_optimizer_at_a_stage_start_is_the_original_restart(colour_rec, tiny_symbol, tmp_path):
    """--fresh-optimizer (train.stages passes it where a recorded stage begins) ignores the saved state:
    zero moments and update counter 0, as a resume from one of the original's checkpoints (weights only)."""
    fresh, weights_only = str(tmp_path / "fresh" / "m"), str(tmp_path / "weights_only" / "m")
    train_model.main(resume_argv(colour_rec, tiny_symbol, fresh, "nadam", 1))
    shutil.copytree(os.path.dirname(fresh), os.path.dirname(weights_only))
    for path in checkpoint.optimizer_state_paths(f"{weights_only}-0001.params"):
        os.remove(path)
    train_model.main(resume_argv(colour_rec, tiny_symbol, fresh, "nadam", 2,
                                 ["--load-epoch", "1", "--fresh-optimizer"]))
    train_model.main(resume_argv(colour_rec, tiny_symbol, weights_only, "nadam", 2, ["--load-epoch", "1"]))
    assert read_state_json(fresh, 2)["num_update"] == BATCHES_PER_EPOCH  # restored, it would be 2 epochs' updates
    assert max_relative_difference(f"{weights_only}-0002.params", f"{fresh}-0002.params") == 0
    assert lrs(fresh) == pytest.approx([0.01, 0.001])


def test_changed_optimizer_starts_fresh(colour_rec, tiny_symbol, tmp_path, caplog):
    prefix = str(tmp_path / "m")
    warnings = resume_after_one_epoch(colour_rec, tiny_symbol, prefix, "nag", "nadam", caplog)
    assert "the saved state is of nag, this stage uses nadam" in warnings
    assert read_state_json(prefix, 2)["optimizer"] == "nadam"
    assert read_state_json(prefix, 2)["num_update"] == BATCHES_PER_EPOCH
    assert lrs(prefix) == pytest.approx([0.01, 0.001])


def test_state_of_another_checkpoint_is_not_used(colour_rec, tiny_symbol, tmp_path, caplog):
    prefix = str(tmp_path / "m")

    def swap_weights():  # epoch 1's state files beside other weights
        params = mx.nd.load(f"{prefix}-0001.params")
        params["arg:fc_bias"] += 1
        mx.nd.save(f"{prefix}-0001.params", params)

    warnings = resume_after_one_epoch(colour_rec, tiny_symbol, prefix, "nadam", "nadam", caplog, swap_weights)
    assert "the saved state belongs to another" in warnings
    assert read_state_json(prefix, 2)["num_update"] == BATCHES_PER_EPOCH


def test_unreadable_state_is_a_clear_error(colour_rec, tiny_symbol, tmp_path):
    prefix = str(tmp_path / "m")
    train_model.main(resume_argv(colour_rec, tiny_symbol, prefix, "nadam", 1))
    json_path = checkpoint.optimizer_state_paths(f"{prefix}-0001.params")[1]
    with open(json_path, "w") as fh:
        fh.write("{truncated")
    with pytest.raises(UserError, match=r"m-0001\.optimizer\.json: unreadable optimizer state .*delete it"):
        train_model.main(resume_argv(colour_rec, tiny_symbol, prefix, "nadam", 2, ["--load-epoch", "1"]))


# --- the updater paths, driven directly on two CPU devices: updates on the kvstore, or on each
# device after the kvstore sums the gradients (MXNet's choice for parameters over 16M values) ---
def small_module(kvstore, devices=2, params=(None, None), optimizer="nadam"):
    data = mx.sym.var("data")
    net = mx.sym.BatchNorm(mx.sym.FullyConnected(data, num_hidden=6, name="fc0"), name="bn0")
    net = mx.sym.SoftmaxOutput(mx.sym.FullyConnected(net, num_hidden=3, name="fc1"), name="softmax")
    module = mx.mod.Module(net, context=[mx.cpu(i) for i in range(devices)])
    module.bind(data_shapes=[("data", (8, 5))], label_shapes=[("softmax_label", (8,))])
    mx.random.seed(1)
    module.init_params(mx.init.Xavier(), arg_params=params[0], aux_params=params[1])
    module.init_optimizer(kvstore=kvstore, optimizer=optimizer, optimizer_params={
        "learning_rate": 0.05, "lr_scheduler": EpochStepScheduler(0.05, 0.1, [2], 3)})
    return module


def batches(count, seed=0):
    rng = np.random.default_rng(seed)
    return [mx.io.DataBatch([mx.nd.array(rng.normal(size=(8, 5)))], [mx.nd.array(rng.integers(0, 3, 8))])
            for _ in range(count)]


def train_on(module, data):
    for batch in data:
        module.forward_backward(batch)
        module.update()


# NADAM only on the kvstore: updating each device's copy, MXNet multiplies NADAM's one m_schedule
# number once per copy, so the copies drift apart even without any resume.
@pytest.mark.parametrize("on_kvstore, optimizer", [(True, "nadam"), (False, "adam")])
def test_restore_through_each_updater(tmp_path, monkeypatch, on_kvstore, optimizer):
    monkeypatch.setenv("MXNET_UPDATE_ON_KVSTORE", "1" if on_kvstore else "0")
    data = batches(6)
    whole = small_module("local", optimizer=optimizer)
    assert whole._update_on_kvstore == on_kvstore
    train_on(whole, data)

    first = small_module("local", optimizer=optimizer)
    train_on(first, data[:3])
    params = first.get_params()
    params_path = str(tmp_path / "m-0001.params")
    mx.nd.save(params_path, {f"arg:{k}": v for k, v in params[0].items()})
    arrays_path, json_path = checkpoint.optimizer_state_paths(params_path)
    optimizer_state.write_state(first, optimizer, 1, params_path, arrays_path, json_path)

    resumed = small_module("local", params=params, optimizer=optimizer)
    assert optimizer_state.restore_state(resumed, *optimizer_state.read_state(params_path, optimizer))
    assert resumed._optimizer.num_update == 3 and resumed._optimizer.lr_scheduler.begin_update == 3
    train_on(resumed, data[3:])
    expected, got = whole.get_params()[0], resumed.get_params()[0]
    for name in expected:
        np.testing.assert_allclose(got[name].asnumpy(), expected[name].asnumpy(), rtol=RESUME_RTOL, atol=1e-7)


def test_state_that_does_not_fit_is_not_restored(tmp_path):
    module = small_module(None, devices=1)
    train_on(module, batches(2))
    params_path = str(tmp_path / "m-0001.params")
    mx.nd.save(params_path, {"arg:x": mx.nd.zeros(1)})
    arrays_path, json_path = checkpoint.optimizer_state_paths(params_path)
    optimizer_state.write_state(module, "nadam", 1, params_path, arrays_path, json_path)
    description, arrays = optimizer_state.read_state(params_path, "nadam")
    arrays["fc1_weight:s.0"] = mx.nd.zeros((2, 2))  # as from another network
    fresh = small_module(None, devices=1)
    assert not optimizer_state.restore_state(fresh, description, arrays)
    assert fresh._optimizer.num_update == 0 and not fresh._updater.states  # left as created


def test_params_with_load_epoch_resumes_those_weights_numbered_from_the_epoch(colour_rec, tiny_symbol,
                                                                               tmp_path, caplog):
    """The original's two flags together: M08's NADAM runs took epoch 15's weights (--params) as epoch 18."""
    prefix = str(tmp_path / "m")
    train_model.main(resume_argv(colour_rec, tiny_symbol, prefix, "nag", 2))
    first, second = (mx.nd.load(f"{prefix}-{e:04d}.params") for e in (1, 2))
    with caplog.at_level(logging.WARNING):
        train_model.main(resume_argv(colour_rec, tiny_symbol, prefix, "nadam", 3,
                                     ["--load-epoch", "2", "--params", f"{prefix}-0001.params", "--lr", "0"]))
    assert "weights from --params" in caplog.text and "numbered as epoch 2" in caplog.text
    third = mx.nd.load(f"{prefix}-0003.params")
    # lr 0: the weights are not updated, so epoch 3's are epoch 1's (not epoch 2's) ...
    assert np.array_equal(third["arg:fc_weight"].asnumpy(), first["arg:fc_weight"].asnumpy())
    assert not np.array_equal(third["arg:fc_weight"].asnumpy(), second["arg:fc_weight"].asnumpy())
    assert read_state_json(prefix, 3)["num_update"] == BATCHES_PER_EPOCH  # ... with a fresh optimizer


def test_a_resume_says_which_epochs_have_no_metrics_row(tmp_path, caplog):
    """MXNet writes an epoch's checkpoint before validating it: a run stopped in between left no row."""
    from train.metrics_log import EpochRecorder, _write_rows
    prefix = str(tmp_path / "m")
    _write_rows(f"{prefix}-metrics.csv", [{"epoch": 2, "lr": 0.1, "images_per_sec": 1.0, "seconds": 1.0}])
    scheduler = EpochStepScheduler(0.1, 0.1, [], 10)
    with caplog.at_level(logging.WARNING):
        recorder = EpochRecorder(prefix, 4, scheduler, begin_epoch=3)
    assert [int(r["epoch"]) for r in recorder.rows] == [2]
    assert "has no row for epoch 1, 3" in caplog.text
