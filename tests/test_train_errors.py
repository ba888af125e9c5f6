"""Training's start-up checks: each mistake is one `error:` line and exit 2, before any heavy work."""
import os

import mxnet as mx
import pytest

from cli.runner import UserError
from data.recordio import idx_path_of, record_labels, record_offsets
from train import devices, train_model
from train.data import check_labels, parse_image_shape
from tests.helpers import run


def test_gpus_text_that_is_no_list_of_ids_is_one_line():
    with pytest.raises(UserError, match=r"--gpus abc: expected comma-separated GPU ids"):
        devices.contexts("abc")
    with pytest.raises(UserError, match="listed twice"):
        devices.contexts("0,0")


def test_empty_gpus_is_the_cpu():
    import mxnet as mx
    assert devices.contexts("") == [mx.cpu()]
    assert devices.contexts(" ") == [mx.cpu()]


def test_gpus_on_a_build_without_gpus_says_what_to_do(monkeypatch):
    monkeypatch.setattr(devices, "visible_gpus", lambda: 0)
    with pytest.raises(UserError) as err:
        devices.contexts("0,1,2,3,4,5,6,7")
    message = str(err.value)
    assert "no GPU" in message and "GPUS=" in message and "requirements-gpu.txt" in message


def test_fewer_gpus_than_asked_names_how_many(monkeypatch):
    import mxnet as mx
    monkeypatch.setattr(devices, "visible_gpus", lambda: 2)
    with pytest.raises(UserError, match=r"only 2 GPU\(s\) visible"):
        devices.contexts("0,1,2")
    assert devices.contexts("0,1") == [mx.gpu(0), mx.gpu(1)]


def test_this_cpu_build_sees_no_gpu():
    assert devices.visible_gpus() == 0


def test_train_model_on_the_cpu_build_with_gpus_fails_in_one_line(tmp_path):
    result = run(["python", "-m", "train.train_model", "--symbol", "resnet-18", "--data-train",
                  str(tmp_path / "none.rec"), "--model-prefix", str(tmp_path / "m"), "--gpus", "0,1,2,3,4,5,6,7"])
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: --gpus 0,1,2,3,4,5,6,7: this MXNet build")
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


# --model-prefix: required, and an earlier run's checkpoints are never trained over silently

def tiny_argv(rec, symbol, prefix, epochs=1, extra=()):
    argv = ["--symbol", symbol, "--feature-layer", "flatten0", "--data-train", rec, "--image-shape", "3,32,32",
            "--num-classes", "4", "--batch-size", "16", "--num-epochs", str(epochs), "--disp-batches", "100",
            "--data-nthreads", "1", "--top-k", "0", *extra]
    return argv + (["--model-prefix", prefix] if prefix else [])


def test_model_prefix_is_required(colour_rec, tiny_symbol):
    with pytest.raises(UserError, match="--model-prefix is required"):
        train_model.main(tiny_argv(colour_rec, tiny_symbol, None))


def test_a_prefix_with_checkpoints_is_refused_without_load_epoch_or_force(colour_rec, tiny_symbol, tmp_path):
    prefix = str(tmp_path / "m" / "m")
    train_model.main(tiny_argv(colour_rec, tiny_symbol, prefix))
    finished = open(f"{prefix}-0001.params", "rb").read(), open(f"{prefix}-metrics.csv").read()
    with pytest.raises(UserError, match=r"earlier run's checkpoints are there \(m-0001.params, m-metrics.csv, m-args.json\); "
                                        r"resume with --load-epoch N"):
        train_model.main(tiny_argv(colour_rec, tiny_symbol, prefix))
    assert (open(f"{prefix}-0001.params", "rb").read(), open(f"{prefix}-metrics.csv").read()) == finished
    train_model.main(tiny_argv(colour_rec, tiny_symbol, prefix, epochs=2, extra=["--load-epoch", "1"]))
    assert os.path.exists(f"{prefix}-0002.params")  # a resume is no clobber
    train_model.main(tiny_argv(colour_rec, tiny_symbol, prefix, extra=["--force", "--seed", "5"]))
    assert open(f"{prefix}-0001.params", "rb").read() != finished[0]  # --force trains over it


def test_a_metrics_file_alone_is_an_earlier_run(colour_rec, tiny_symbol, tmp_path):
    (tmp_path / "m-metrics.csv").write_text("epoch\n1\n")
    with pytest.raises(UserError, match="earlier run's checkpoints"):
        train_model.main(tiny_argv(colour_rec, tiny_symbol, str(tmp_path / "m")))


def test_prefix_folder_must_be_writable(colour_rec, tiny_symbol, tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as root: permissions are not enforced")
        with pytest.raises(UserError, match="is not writable"):
            train_model.main(tiny_argv(colour_rec, tiny_symbol, str(locked / "m")))
    finally:
        locked.chmod(0o700)


def test_a_prefix_whose_folder_cannot_be_made_is_one_line(colour_rec, tiny_symbol, tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match="cannot make its folder .*file/models: Not a directory"):
        train_model.main(tiny_argv(colour_rec, tiny_symbol, str(tmp_path / "file" / "models" / "m")))


def test_a_directory_as_prefix_is_refused(colour_rec, tiny_symbol, tmp_path):
    with pytest.raises(UserError, match="is a directory; give a folder and a name"):
        train_model.main(tiny_argv(colour_rec, tiny_symbol, str(tmp_path)))


# One line, exit 2, before training: bad numbers, bad .rec files, wrong labels, wrong files

def run_train(*argv):
    return run(["python", "-m", "train.train_model", *argv], timeout=120)


def assert_one_line(result, starts):
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert lines[-1].startswith(f"error: {starts}"), lines[-1]
    assert all(" INFO " in line or " WARNING " in line for line in lines[:-1]), lines  # only our log lines


@pytest.mark.parametrize("flag, value", [("--batch-size", "0"), ("--batch-size", "-4"), ("--num-epochs", "0")])
def test_non_positive_numbers_are_one_line(colour_rec, tiny_symbol, tmp_path, flag, value):
    with pytest.raises(UserError, match=f"^{flag} {value}: must be at least 1$"):
        train_model.main(tiny_argv(colour_rec, tiny_symbol, str(tmp_path / "m"), extra=[flag, value]))


def test_a_batch_larger_than_the_training_rec(colour_rec, tiny_symbol, tmp_path):
    result = run_train(*tiny_argv(colour_rec, tiny_symbol, str(tmp_path / "m"), extra=["--batch-size", "97"]))
    assert_one_line(result, f"{colour_rec}: 96 records, fewer than --batch-size 97")
    assert not os.path.exists(tmp_path / "m-symbol.json")


def test_an_empty_rec(tiny_symbol, tmp_path):
    (tmp_path / "empty.rec").write_bytes(b"")
    (tmp_path / "empty.idx").write_bytes(b"")
    with pytest.raises(UserError, match=f"^{tmp_path}/empty.rec: --data-train holds no records$"):
        train_model.main(tiny_argv(str(tmp_path / "empty.rec"), tiny_symbol, str(tmp_path / "m")))


def older_rec(rec, folder):
    """A copy of `rec` and its .idx without the X.rec.json data.bson2rec writes now (an older .rec)."""
    import shutil
    copy = os.path.join(str(folder), "older.rec")
    shutil.copyfile(rec, copy)
    shutil.copyfile(idx_path_of(rec), idx_path_of(copy))
    return copy


def test_labels_outside_num_classes_are_found_before_training(colour_rec, tiny_symbol, tmp_path):
    older = older_rec(colour_rec, tmp_path)  # without X.rec.json, --num-classes is not checked against it
    argv = tiny_argv(older, tiny_symbol, str(tmp_path / "m"))
    result = run_train(*argv, "--num-classes", "3")  # the .rec has labels 0-3
    assert_one_line(result, f"{older}: record at byte ")
    assert "has label 3, outside --num-classes 3 (0-2); 24 of the 96 records checked" in result.stderr
    assert "Epoch[" not in result.stderr  # before any training
    assert check_labels(colour_rec, 4) == 96 and check_labels(colour_rec, 4, most=10) == 10
    assert check_labels(colour_rec, 3, most=0) == 0  # --check-labels 0: no check


def test_labels_are_read_from_the_headers_mxnet_wrote(colour_rec):
    reader = mx.recordio.MXIndexedRecordIO(idx_path_of(colour_rec), colour_rec, "r")
    expected = [mx.recordio.unpack(reader.read_idx(key))[0].label for key in sorted(reader.keys)]
    reader.close()
    assert record_labels(colour_rec, record_offsets(colour_rec)).tolist() == expected


def test_an_idx_of_another_file_is_named(colour_rec, tmp_path):
    rec = tmp_path / "other.rec"
    rec.write_bytes(open(colour_rec, "rb").read()[:-100] + b"\0" * 100)
    (tmp_path / "other.idx").write_text("0\t4\n")
    with pytest.raises(UserError, match=r"no record at byte 4 that its .idx names"):
        check_labels(str(rec), 4)


def test_a_text_file_as_params_is_one_line(colour_rec, tiny_symbol, tmp_path):
    (tmp_path / "notes.params").write_text("hello\n")
    result = run_train(*tiny_argv(colour_rec, tiny_symbol, str(tmp_path / "m"), extra=[
        "--params", str(tmp_path / "notes.params")]))
    assert_one_line(result, f"{tmp_path}/notes.params: not a readable MXNet .params file")
    assert "Invalid NDArray file format" in result.stderr


@pytest.mark.parametrize("flag", ["--params", "--data-train", "--symbol"])
def test_a_directory_where_a_file_is_expected(colour_rec, tiny_symbol, tmp_path, flag):
    argv = tiny_argv(colour_rec, tiny_symbol, str(tmp_path / "m"))
    argv = argv + [flag, str(tmp_path)] if flag == "--params" else \
        [str(tmp_path) if argv[i - 1] == flag else word for i, word in enumerate(argv)]
    with pytest.raises(UserError, match=f"^{tmp_path}: .* is a directory, not a file$"):
        train_model.main(argv)


def test_a_missing_symbol_json_is_not_found_before_feature_layer(colour_rec, tmp_path):
    result = run_train("--symbol", str(tmp_path / "nets" / "dpn92-symbol.json"), "--data-train", colour_rec,
                       "--model-prefix", str(tmp_path / "m"), "--num-classes", "4")
    assert_one_line(result, f"{tmp_path}/nets/dpn92-symbol.json: symbol file not found")


def test_ps_node_help_prints_usage_without_starting_mxnet():
    result = run(["python", "-m", "train.ps_node", "--help"], timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("usage: python -m train.ps_node")
    assert "DMLC_ROLE" in result.stdout and result.stderr == ""


# One epoch numbering in our lines, the metrics and the curve

def test_a_one_epoch_curve_has_one_tick_at_its_epoch():
    import matplotlib.pyplot as plt
    from train.metrics_log import curve_figure
    fig = curve_figure([{"epoch": "1", "lr": "0.001", "train_accuracy": "0.5", "val_accuracy": "0.4"}])
    try:
        for ax in fig.axes[:2]:
            assert list(ax.get_xticks()) == [1.0] and ax.get_xlim() == (0.5, 1.5)
            assert ax.get_xlabel() == "epoch (checkpoint number)"
    finally:
        plt.close(fig)


def test_log_says_how_epochs_are_numbered(colour_rec, tiny_symbol, tmp_path, caplog):
    import logging
    caplog.set_level(logging.INFO)
    train_model.main(tiny_argv(colour_rec, tiny_symbol, str(tmp_path / "m")))
    text = caplog.text
    assert "MXNet's own lines count from 0: its Epoch[0] is epoch 1" in text
    assert "epoch 1 (MXNet's Epoch[0]): lr " in text


@pytest.mark.parametrize("module", ["train.train_model", "train.launch"])
def test_help_shows_every_default(module):
    import argparse
    import importlib
    parser = importlib.import_module(module).build_parser()
    formatter = parser.formatter_class(prog=parser.prog)
    for action in parser._actions:
        if action.default in (None, False, argparse.SUPPRESS) or not action.option_strings:
            continue
        assert "%(default)" in formatter._get_help_string(action), action.option_strings


@pytest.mark.parametrize("text", ["3,180", "1,180,180", "3,0,180", "3,180,x", "3,-8,8"])
def test_image_shape_is_three_channels_and_a_positive_size(text):
    # one rule for training's --image-shape and prediction's --data-shape (train.data.parse_image_shape);
    # the networks take small inputs too (the tests train at 16 px), so no minimum size beyond 1
    with pytest.raises(UserError, match=f"^--data-shape {text}: expected 3,H,W such as 3,180,180"):
        parse_image_shape(text, "--data-shape")
    assert parse_image_shape("3,16,24") == (3, 16, 24)
