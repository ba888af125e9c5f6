"""The training -> prediction contract of train.checkpoint: input settings and run arguments beside
the checkpoints, read back by prediction's Model; the one classifier head."""
import json
import logging
import os
import pathlib

import mxnet as mx
import numpy as np
import pytest

from cli.runner import UserError
from predict.models import Model
from tests.helpers import REPO_ROOT
from tests.train_helpers import NUM_CLASSES
from data.categories import Categories
from train import checkpoint, symbols, train_model
from train.finetune import attach_classifier, feature_layer_of

SETTINGS = checkpoint.InputSettings(image_shape=(3, 32, 32), resize=40, rgb_mean=(1.0, 2.0, 3.0), rgb_scale=0.5,
                                    inter_method=2, feature_layer="flatten0", num_classes=4)


def tiny_argv(rec, symbol, prefix, epochs=1, extra=()):
    return ["--symbol", symbol, "--feature-layer", "flatten0", "--data-train", rec, "--image-shape", "3,32,32",
            "--resize", "36", "--rgb-mean", "10,20,30", "--rgb-scale", "0.5", "--num-classes", str(NUM_CLASSES),
            "--batch-size", "16", "--num-epochs", str(epochs), "--disp-batches", "100", "--data-nthreads", "1",
            "--top-k", "0", "--model-prefix", prefix, *extra]


def category_csv_of(rec):
    """The category CSV tests.helpers.write_colour_rec writes beside its .rec."""
    return os.path.join(os.path.dirname(rec), "category_names.csv")


def runs_of(prefix):
    with open(checkpoint.args_path(prefix)) as fh:
        record = json.load(fh)
    assert record["format"] == checkpoint.ARGS_FORMAT
    return record["runs"]


# --- the input settings file ----------------------------------------------------------------------

def test_input_settings_are_written_and_read_back(tmp_path):
    path = str(tmp_path / "m-input.json")
    checkpoint.write_input_settings(path, SETTINGS)
    assert checkpoint.read_input_settings(path) == SETTINGS
    with open(path) as fh:
        assert json.load(fh)["format"] == checkpoint.INPUT_FORMAT  # plain, versioned JSON
    assert checkpoint.read_input_settings(str(tmp_path / "none-input.json")) is None  # an older checkpoint


@pytest.mark.parametrize("text, reason", [
    ("{not json", "Expecting property name"),
    ('{"format": "other/1", "image_shape": [3, 32, 32]}', "format is not"),
    ('{"format": "cdiscount-input-settings/1"}', "no image_shape"),
    ('{"format": "cdiscount-input-settings/1", "image_shape": [3, 32]}', "expected \\[channels, height, width\\]"),
    ('{"format": "cdiscount-input-settings/1", "image_shape": [3, 32, 32], "rgb_mean": [1, 2]}', "three numbers"),
    ('{"format": "cdiscount-input-settings/1", "image_shape": [3, 32, 32], "image_size": 32}', "unknown field"),
])
def test_a_malformed_input_settings_file_is_one_line_naming_it(tmp_path, text, reason):
    path = tmp_path / "m-input.json"
    path.write_text(text)
    with pytest.raises(UserError, match=f"^{path}: not the input settings training writes .*{reason}"):
        checkpoint.read_input_settings(str(path))


def test_flags_override_the_checkpoints_settings_with_a_warning(tmp_path, caplog):
    prefix = str(tmp_path / "m")
    checkpoint.write_input_settings(checkpoint.input_settings_path(prefix), SETTINGS)
    symbol_path = f"{prefix}-symbol.json"
    assert checkpoint.resolve_input_settings(symbol_path, {"image_shape": None, "resize": None}) == SETTINGS
    assert not caplog.records
    with caplog.at_level(logging.WARNING):
        resolved = checkpoint.resolve_input_settings(symbol_path, {"image_shape": (3, 48, 48), "rgb_scale": 0.5})
    assert resolved == checkpoint.InputSettings(**{**SETTINGS.__dict__, "image_shape": (3, 48, 48)})
    assert len(caplog.records) == 1 and "m-input.json: image_shape (3, 48, 48) replaces the (3, 32, 32)" in caplog.text
    with pytest.raises(ValueError, match="no input setting 'imageshape'"):
        checkpoint.resolve_input_settings(symbol_path, {"imageshape": (3, 48, 48)})


def test_without_input_settings_the_shape_flag_is_required(tmp_path):
    symbol_path = str(tmp_path / "old-symbol.json")
    with pytest.raises(UserError, match=f"^{symbol_path}: no input settings beside it \\({tmp_path}/old-input.json"):
        checkpoint.resolve_input_settings(symbol_path, {"image_shape": None})
    assert checkpoint.resolve_input_settings(symbol_path, {"image_shape": (3, 16, 16)}) == \
        checkpoint.InputSettings(image_shape=(3, 16, 16))


# --- training writes them, prediction reads them ---------------------------------------------------

def test_training_writes_its_input_and_arguments_and_model_reads_the_input(colour_rec, tiny_symbol, tmp_path):
    prefix = str(tmp_path / "m" / "m")
    train_model.main(tiny_argv(colour_rec, tiny_symbol, prefix))
    written = checkpoint.read_input_settings(checkpoint.input_settings_path(prefix))
    assert written == checkpoint.InputSettings(image_shape=(3, 32, 32), resize=36, rgb_mean=(10.0, 20.0, 30.0),
                                               rgb_scale=0.5, inter_method=9, feature_layer="flatten0",
                                               num_classes=NUM_CLASSES, label_kind="class_id",
                                               categories_digest=Categories.load(category_csv_of(colour_rec)).digest)
    (run,) = runs_of(prefix)
    assert run["arguments"]["rgb_mean"] == "10,20,30" and run["arguments"]["model_prefix"] == prefix
    model = Model(f"{prefix}-symbol.json", f"{prefix}-0001.params", 5, None, [mx.cpu()], NUM_CLASSES)
    assert model.input == written
    assert model.module.data_shapes[0].shape == (5, 3, 32, 32)  # bound at the checkpoint's input
    batch = mx.nd.array(np.random.default_rng(0).uniform(0, 255, (5, 3, 32, 32)))
    assert model.forward(batch).shape == (5, NUM_CLASSES)
    overridden = Model(f"{prefix}-symbol.json", f"{prefix}-0001.params", 5, (3, 40, 40), [mx.cpu()], NUM_CLASSES,
                       overrides={"rgb_scale": 1.0})
    assert (overridden.input.image_shape, overridden.input.rgb_scale, overridden.input.resize) == ((3, 40, 40), 1.0, 36)


def test_the_arguments_file_is_not_overwritten_without_resume_or_force(colour_rec, tiny_symbol, tmp_path):
    prefix = str(tmp_path / "m")
    with open(checkpoint.args_path(prefix), "w") as fh:  # a run that stopped before its first checkpoint
        fh.write("{}")
    with pytest.raises(UserError, match=r"earlier run's checkpoints are there \(m-args.json\)"):
        train_model.main(tiny_argv(colour_rec, tiny_symbol, prefix))
    assert open(checkpoint.args_path(prefix)).read() == "{}"
    train_model.main(tiny_argv(colour_rec, tiny_symbol, prefix, extra=["--force"]))
    assert len(runs_of(prefix)) == 1
    train_model.main(tiny_argv(colour_rec, tiny_symbol, prefix, epochs=2, extra=["--load-epoch", "1", "--lr", "0.01"]))
    first, resumed = runs_of(prefix)  # a resume adds its run to the record
    assert (first["arguments"]["lr"], resumed["arguments"]["lr"]) == (0.0001, 0.01)
    assert resumed["arguments"]["load_epoch"] == 1
    train_model.main(tiny_argv(colour_rec, tiny_symbol, prefix, extra=["--force"]))
    assert len(runs_of(prefix)) == 1  # --force starts the record anew
    with open(checkpoint.args_path(prefix), "w") as fh:
        fh.write("[1, 2]")
    with pytest.raises(UserError, match="m-args.json: not the run record training writes"):
        train_model.main(tiny_argv(colour_rec, tiny_symbol, prefix, epochs=2, extra=["--load-epoch", "1"]))


def test_an_older_checkpoint_without_input_settings_loads_with_the_shape_flag(tmp_path):
    prefix = str(tmp_path / "old")
    network = symbols.get_symbol("resnext-14", num_classes=3)
    module = mx.mod.Module(network, context=mx.cpu())
    module.bind(data_shapes=[("data", (1, 3, 32, 32))], label_shapes=[("softmax_label", (1,))])
    module.init_params(mx.init.Xavier())
    mx.model.save_checkpoint(prefix, 1, network, *module.get_params())  # MXNet's own writer: no input JSON
    with pytest.raises(UserError, match="old-symbol.json: no input settings beside it"):
        Model(f"{prefix}-symbol.json", f"{prefix}-0001.params", 2, None, [mx.cpu()], 3)
    model = Model(f"{prefix}-symbol.json", f"{prefix}-0001.params", 2, (3, 32, 32), [mx.cpu()], 3)
    assert model.input == checkpoint.InputSettings(image_shape=(3, 32, 32))


def test_a_checkpoint_written_here_loads_back(tmp_path):
    args = {"w": mx.nd.array([1.0, 2.0])}
    aux = {"m": mx.nd.array([3.0])}
    prefix = str(tmp_path / "c")
    checkpoint.save_checkpoint(prefix, 7, mx.sym.var("w") * 2, args, aux, SETTINGS)
    loaded_args, loaded_aux = checkpoint.load_params(f"{prefix}-0007.params")
    assert loaded_args["w"].asnumpy().tolist() == [1.0, 2.0] and loaded_aux["m"].asnumpy().tolist() == [3.0]
    assert checkpoint.load_symbol(f"{prefix}-symbol.json").list_arguments() == ["w"]
    assert checkpoint.read_input_settings(f"{prefix}-input.json") == SETTINGS
    assert sorted(os.listdir(tmp_path)) == ["c-0007.params", "c-input.json", "c-symbol.json"]


# --- one classifier head ---------------------------------------------------------------------------

def test_attach_classifier_is_the_only_head_builder():
    root = pathlib.Path(REPO_ROOT)
    sources = [path for folder in ("train", "predict") for path in (root / folder).rglob("*.py")]
    building = [str(path.relative_to(root)) for path in sources
                if "sym.SoftmaxOutput(" in path.read_text() or 'dtype="float16"' in path.read_text()]
    assert building == ["train/finetune.py"]


def test_a_float16_network_casts_once_at_the_input_and_once_before_the_head():
    args = train_model.build_parser().parse_args(["--symbol", "resnext-14", "--num-classes", "5", "--dtype", "float16"])
    network = train_model.build_network(args)
    casts = {node["name"]: node["attrs"]["dtype"] for node in json.loads(network.tojson())["nodes"]
             if node["op"] == "Cast"}
    assert casts == {"data_float16": "float16", "features_float32": "float32"}
    arg_types, _, _ = network.infer_type(data=np.float32)
    types = dict(zip(network.list_arguments(), arg_types))
    assert types["conv0_weight"] == np.float16 and types["fc_weight"] == np.float32
    assert feature_layer_of(network) == "flatten0"
    plain = train_model.build_network(train_model.build_parser().parse_args(["--symbol", "resnext-14",
                                                                             "--num-classes", "5"]))
    assert plain.list_arguments() == network.list_arguments()  # the same parameter names, so checkpoints load


def test_feature_layer_of_the_heads_input():
    features, layer = symbols.build_features("densenet-41")
    assert feature_layer_of(attach_classifier(features, 3, dropout_ratio=0.5)) == layer == "pool5"
    assert feature_layer_of(features) is None  # no head


def test_a_symbol_file_takes_its_feature_layer_from_its_input_settings(colour_rec, tiny_symbol, tmp_path):
    prefix = str(tmp_path / "m")
    argv = tiny_argv(colour_rec, tiny_symbol, prefix)
    without_layer = argv[:2] + argv[4:]
    with pytest.raises(UserError, match="tiny-symbol.json: a symbol file without input settings beside it needs "
                                        "--feature-layer"):
        train_model.main(without_layer)
    train_model.main(argv)
    again = [f"{prefix}-symbol.json" if word == tiny_symbol else word for word in without_layer]
    train_model.main([*again[:-1], str(tmp_path / "again"), "--params", f"{prefix}-0001.params"])
    assert checkpoint.read_input_settings(str(tmp_path / "again-input.json")).feature_layer == "flatten0"
