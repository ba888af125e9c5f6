"""--bn-groups and BN_GROUPS: several executors on one device keep the original's per-GPU BatchNorm batch.

BatchNorm normalises over what one executor sees. 8 executors listed on cpu(0) must train exactly what
8 distinct contexts cpu(0)..cpu(7) train (the 8 GPUs of the record, as far as BatchNorm goes), and
something measurably different from one executor over the whole batch."""
import logging

import mxnet as mx
import numpy as np
import pytest

from cli.runner import UserError
from tests.helpers import run
from tests.train_helpers import (BATCHES_PER_EPOCH, RESUME_RTOL, dry_run, max_relative_difference, model_script,
                                 read_state_json, resume_argv)
from tests.training_records import RECORDS
from train import devices, fit, train_model

EIGHT_CPUS = ",".join(f"cpu:{i}" for i in range(8))
# The same sums in the same order on one device or eight: only float32 rounding may differ.
ATOL = 1e-5
# The GPUs each record trained on (its logged --gpus): 8, but M02 on 0-3 and M03 on 4-7.
RECORD_GPUS = {name: 4 if name in ("M02", "M03") else 8 for name in RECORDS}
RGB_SCALE = str(1 / 255)  # inputs in 0-1, as tests/test_multi_device.py explains
MODULE_INIT = fit._Module.__init__


# ---- the context list -------------------------------------------------------------------------
def test_each_device_is_listed_groups_over_devices_times(monkeypatch):
    assert devices.training_contexts("") == [mx.cpu()]  # no --bn-groups: one executor a device, as before
    assert devices.training_contexts("cpu:0,cpu:1") == [mx.cpu(0), mx.cpu(1)]
    assert devices.training_contexts("", 8, 512) == [mx.cpu(0)] * 8
    assert devices.training_contexts("cpu:0,cpu:1", 8, 512) == [mx.cpu(0)] * 4 + [mx.cpu(1)] * 4
    assert devices.training_contexts("cpu:0,cpu:1", 2, 512) == [mx.cpu(0), mx.cpu(1)]
    monkeypatch.setattr(devices, "visible_gpus", lambda: 2)
    assert devices.training_contexts("0", 8, 512) == [mx.gpu(0)] * 8
    assert devices.training_contexts("0,1", 8, 384) == [mx.gpu(0)] * 4 + [mx.gpu(1)] * 4
    assert "2 on cpu(0), 2 on cpu(1)" in devices.describe_contexts([mx.cpu(0)] * 2 + [mx.cpu(1)] * 2, 256)


def test_nccl_keeps_one_executor_a_gpu(monkeypatch):
    monkeypatch.setattr(devices, "visible_gpus", lambda: 2)
    assert devices.training_contexts("0,1", 2, 256, "nccl") == [mx.gpu(0), mx.gpu(1)]
    with pytest.raises(UserError, match=r"--kv-store nccl: NCCL cannot run 4 executors on one GPU "
                                        r"\(--bn-groups 8 on 2 device\(s\)\); use --kv-store device"):
        devices.training_contexts("0,1", 8, 256, "nccl")


@pytest.mark.parametrize("gpus, groups, batch, message", [
    ("", 0, 32, "--bn-groups 0: must be at least 1"),
    ("cpu:0,cpu:1", -2, 32, "--bn-groups -2: must be at least 1"),
    ("cpu:0,cpu:1", 3, 24, r"--bn-groups 3: not a multiple of the 2 devices of --gpus 'cpu:0,cpu:1'; .*"
                           r"\(e.g. --bn-groups 4\)"),
    ("", 5, 32, r"--bn-groups 5: does not divide --batch-size 32; .*\(e.g. a batch of 30 or 35\)"),
    ("", 8, 4, r"--bn-groups 8: does not divide --batch-size 4; .*\(e.g. a batch of 8\)"),
    ("0", 8, 512, "this MXNet build sees no GPU"),  # the devices are checked first
])
def test_groups_that_do_not_fit_are_one_line_errors(gpus, groups, batch, message):
    with pytest.raises(UserError, match=message):
        devices.training_contexts(gpus, groups, batch)


def test_train_model_refuses_bad_groups_before_any_work(colour_rec, tiny_symbol, tmp_path):
    prefix = tmp_path / "made" / "m"
    argv = ["--symbol", tiny_symbol, "--feature-layer", "flatten0", "--data-train", colour_rec,
            "--model-prefix", str(prefix), "--batch-size", "20", "--gpus", "cpu:0,cpu:1"]
    with pytest.raises(UserError, match="--bn-groups 3: not a multiple of the 2 devices"):
        train_model.main([*argv, "--bn-groups", "3"])
    with pytest.raises(UserError, match="--bn-groups 8: does not divide --batch-size 20"):
        train_model.main([*argv, "--bn-groups", "8"])
    assert not prefix.parent.exists()  # refused before the model folder, the data or the network
    with pytest.raises(SystemExit):
        train_model.build_parser().parse_args(["--bn-groups", "eight"])
    assert train_model.build_parser().parse_args([]).bn_groups is None


def test_the_command_line_error_is_one_line(tmp_path):
    result = run(["python", "-m", "train.train_model", "--symbol", "resnext-14", "--gpus", "", "--bn-groups", "3",
                  "--batch-size", "32", "--model-prefix", str(tmp_path / "m" / "m")], timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: --bn-groups 3: does not divide --batch-size 32; every BatchNorm group gets the same number of "
        "pictures (e.g. a batch of 30 or 33)"]


def test_a_kvstore_is_made_for_groups_on_one_device():
    args = train_model.build_parser().parse_args(["--gpus", "", "--bn-groups", "4", "--batch-size", "16"])
    assert fit.module_contexts(args) == [mx.cpu()] * 4
    assert fit.make_kvstore(args).type == "device"  # the 4 executors' gradients are summed
    args.bn_groups = 1
    assert fit.make_kvstore(args) is None


# ---- the arithmetic, on a raw Module -------------------------------------------------------------
def conv_bn_network():
    """Three convolution + BatchNorm + ReLU layers and a classifier: every layer's output depends on how
    the batch is split."""
    net = mx.sym.var("data")
    for i, channels in enumerate((8, 8, 16), 1):
        net = mx.sym.Convolution(net, num_filter=channels, kernel=(3, 3), pad=(1, 1), no_bias=True, name=f"conv{i}")
        net = mx.sym.BatchNorm(net, fix_gamma=False, momentum=0.9, name=f"bn{i}")
        net = mx.sym.Activation(net, act_type="relu", name=f"relu{i}")
    net = mx.sym.Pooling(net, global_pool=True, kernel=(1, 1), pool_type="avg", name="pool")
    net = mx.sym.FullyConnected(mx.sym.Flatten(net), num_hidden=5, name="fc")
    return mx.sym.SoftmaxOutput(net, name="softmax")


def trained_params(device_contexts, steps=6, batch=64):
    """{name: array} of weights and BatchNorm moving statistics after `steps` SGD updates from the same
    start on the same batches, the batch split between `device_contexts`."""
    rng = np.random.default_rng(7)
    batches = [(rng.standard_normal((batch, 3, 12, 12)).astype(np.float32) + rng.uniform(-1, 1, (batch, 3, 1, 1)),
                rng.integers(0, 5, batch).astype(np.float32)) for _ in range(steps)]
    network = conv_bn_network()
    shapes = network.infer_shape(data=(batch, 3, 12, 12))
    arg_shapes = dict(zip(network.list_arguments(), shapes[0]))
    aux_shapes = dict(zip(network.list_auxiliary_states(), shapes[2]))
    start = np.random.default_rng(3)
    arg_params = {name: mx.nd.array(start.normal(0, 0.3, shape)) for name, shape in arg_shapes.items()
                  if name not in ("data", "softmax_label")}
    aux_params = {name: mx.nd.zeros(shape) if "mean" in name else mx.nd.ones(shape)
                  for name, shape in aux_shapes.items()}
    module = mx.mod.Module(network, context=device_contexts)
    module.bind(data_shapes=[("data", (batch, 3, 12, 12))], label_shapes=[("softmax_label", (batch,))])
    module.init_params(arg_params=arg_params, aux_params=aux_params)
    module.init_optimizer(kvstore="device" if len(device_contexts) > 1 else None, optimizer="sgd",
                          optimizer_params={"learning_rate": 0.1, "momentum": 0.9, "rescale_grad": 1 / batch})
    for data, label in batches:
        module.forward_backward(mx.io.DataBatch([mx.nd.array(data)], [mx.nd.array(label)]))
        module.update()
    # MXNet 1.x updates the moving statistics in BatchNorm's backward without telling its engine
    # (apache/mxnet#18610): reading them right away can give the values of a step before
    mx.nd.waitall()
    args, aux = module.get_params()  # the executors' moving statistics are averaged
    return {**{k: v.asnumpy() for k, v in args.items()}, **{k: v.asnumpy() for k, v in aux.items()}}


def largest_difference(a, b, names=None):
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in (names or a))


def test_eight_executors_on_one_device_train_what_eight_devices_train():
    on_one_device = trained_params([mx.cpu(0)] * 8)
    on_eight = trained_params([mx.cpu(i) for i in range(8)])
    whole_batch = trained_params([mx.cpu(0)])
    assert set(on_one_device) == set(on_eight) == set(whole_batch)
    statistics = [k for k in on_one_device if k.endswith(("moving_mean", "moving_var"))]
    assert len(statistics) == 6
    print(f"largest difference, 8 executors on cpu(0) vs cpu(0)..cpu(7): "
          f"{largest_difference(on_one_device, on_eight):.3g}; vs one executor: "
          f"{largest_difference(on_one_device, whole_batch):.3g}")
    assert largest_difference(on_one_device, on_eight) <= ATOL
    # one executor normalises over all 64 pictures instead of 8: other weights and statistics
    assert largest_difference(on_one_device, whole_batch, statistics) > 100 * ATOL
    assert largest_difference(on_one_device, whole_batch, ["conv1_weight", "fc_weight"]) > 100 * ATOL
    # and the moving variance of a group is below that of the whole batch (the means' spread is missing)
    assert float(on_one_device["bn1_moving_var"].mean()) < float(whole_batch["bn1_moving_var"].mean())


# ---- through train.train_model --------------------------------------------------------------------
def train_checkpoint(rec, symbol, prefix, gpus, groups, monkeypatch):
    """The weights and statistics of checkpoint 2 (2 epochs of 3 updates, batch 32), and the contexts the
    training Module was given."""
    given = []

    def spy(module, symbol, context, after_optimizer):
        given.append(list(context))
        MODULE_INIT(module, symbol, context, after_optimizer)

    monkeypatch.setattr(fit._Module, "__init__", spy)
    argv = ["--symbol", symbol, "--feature-layer", "flatten0", "--data-train", rec, "--image-shape", "3,16,16",
            "--num-classes", "4", "--batch-size", "32", "--optimizer", "sgd", "--lr", "0.05", "--rgb-scale", RGB_SCALE,
            "--num-epochs", "2", "--model-prefix", prefix, "--gpus", gpus, "--kv-store", "device",
            "--data-nthreads", "1", "--random-mirror", "0", "--top-k", "0", "--disp-batches", "100"]
    train_model.main(argv + (["--bn-groups", str(groups)] if groups else []))
    saved = mx.nd.load(f"{prefix}-0002.params")
    return {k.split(":", 1)[1]: v.asnumpy() for k, v in saved.items()}, given[0]


def test_train_model_with_bn_groups_trains_what_eight_devices_train(colour_rec, tiny_symbol, tmp_path,
                                                                    monkeypatch, caplog):
    caplog.set_level("INFO")
    grouped, grouped_contexts = train_checkpoint(colour_rec, tiny_symbol, str(tmp_path / "grouped" / "m"), "", 8,
                                                 monkeypatch)
    assert grouped_contexts == [mx.cpu(0)] * 8
    assert "8 executor(s) (8 on cpu(0)): each BatchNorm normalises over 4 pictures of the batch of 32" in caplog.text
    eight, eight_contexts = train_checkpoint(colour_rec, tiny_symbol, str(tmp_path / "eight" / "m"), EIGHT_CPUS,
                                             None, monkeypatch)
    assert eight_contexts == [mx.cpu(i) for i in range(8)]
    one, one_contexts = train_checkpoint(colour_rec, tiny_symbol, str(tmp_path / "one" / "m"), "", None, monkeypatch)
    assert one_contexts == [mx.cpu()]
    assert set(grouped) == set(eight) == set(one) and {"bn1_moving_mean", "bn1_moving_var"} <= set(grouped)
    print(f"checkpoint 2: --bn-groups 8 on the CPU vs 8 CPU contexts {largest_difference(grouped, eight):.3g}, "
          f"vs one executor {largest_difference(grouped, one):.3g}")
    assert largest_difference(grouped, eight) <= ATOL
    assert largest_difference(grouped, one, ["bn1_moving_var"]) > 100 * ATOL
    assert largest_difference(grouped, one, ["conv1_weight"]) > 100 * ATOL


# ---- the model scripts ---------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(RECORDS))
def test_model_scripts_default_to_the_records_gpu_count(name, tmp_path, monkeypatch):
    monkeypatch.delenv("BN_GROUPS", raising=False)
    code, commands, output = dry_run(f"train/{name}.sh", tmp_path)
    assert code == 0 and commands, output
    for _, flags in commands:
        assert flags["--bn-groups"] == str(RECORD_GPUS[name]) == str(len(flags["--gpus"].split(",")))
        assert int(flags["--batch-size"]) // RECORD_GPUS[name] in (48, 64)  # the record's pictures a GPU
    # one GPU: the same BatchNorm groups, all on it; BN_GROUPS= (empty): one executor a GPU
    _, commands, _ = dry_run(f"train/{name}.sh", tmp_path, GPUS="0")
    assert [(f["--gpus"], f["--bn-groups"]) for _, f in commands] == [("0", str(RECORD_GPUS[name]))] * len(commands)
    _, commands, _ = dry_run(f"train/{name}.sh", tmp_path, GPUS="0", BN_GROUPS="")
    assert commands and all("--bn-groups" not in f for _, f in commands)


def test_demo_scripts_keep_one_executor(tmp_path, monkeypatch):
    monkeypatch.delenv("BN_GROUPS", raising=False)
    for demo in ("D01", "D02", "D03"):
        code, commands, output = dry_run(f"train/demo/{demo}.sh", tmp_path)
        assert code == 0 and commands, output
        assert all(f["--gpus"] == "" and "--bn-groups" not in f for _, f in commands)


def test_run_model_passes_bn_groups_through(tmp_path, monkeypatch):
    monkeypatch.delenv("BN_GROUPS", raising=False)
    script = model_script(tmp_path / "Mtiny.sh", ["START_EPOCH=0 END_EPOCH=1"], BN_GROUPS="4")
    _, commands, output = dry_run(script, tmp_path)
    assert commands and commands[0][1]["--bn-groups"] == "4", output
    script = model_script(tmp_path / "Mtiny.sh", ["START_EPOCH=0 END_EPOCH=1"])  # a header without it
    _, commands, output = dry_run(script, tmp_path)
    assert commands and "--bn-groups" not in commands[0][1], output


# ---- resuming -------------------------------------------------------------------------------------
def test_resume_with_groups_is_exact_and_another_group_count_keeps_the_state(colour_rec, tiny_symbol,
                                                                             tmp_path, caplog):
    whole, split, regrouped = (str(tmp_path / name / "m") for name in ("whole", "split", "regrouped"))
    four = ["--bn-groups", "4"]  # 5 pictures of the batch of 20 each
    train_model.main(resume_argv(colour_rec, tiny_symbol, whole, "nadam", 2, four))
    for prefix in (split, regrouped):
        train_model.main(resume_argv(colour_rec, tiny_symbol, prefix, "nadam", 1, four))
    train_model.main(resume_argv(colour_rec, tiny_symbol, split, "nadam", 2, ["--load-epoch", "1", *four]))
    assert max_relative_difference(f"{whole}-0002.params", f"{split}-0002.params") <= RESUME_RTOL
    caplog.clear()
    caplog.set_level(logging.WARNING)
    # the state is saved per parameter, not per executor: one executor takes it up
    train_model.main(resume_argv(colour_rec, tiny_symbol, regrouped, "nadam", 2,
                                 ["--load-epoch", "1", "--bn-groups", "1"]))
    assert "fresh" not in caplog.text
    assert read_state_json(regrouped, 2)["num_update"] == 2 * BATCHES_PER_EPOCH
    assert max_relative_difference(f"{whole}-0002.params", f"{regrouped}-0002.params") > 100 * RESUME_RTOL
