"""train.import_weights: gluoncv2 networks become checkpoints with the zoo's outputs, and fine-tune."""
import json
import os
import re

import mxnet as mx
import numpy as np
import pytest

from cli.runner import UserError
from train import checkpoint, import_weights, symbols, train_model
from train.finetune import select_params
from tests.helpers import write_colour_rec
from tests.train_helpers import NUM_CLASSES, train_argv

# Small networks of the solution's families, and a model script starting from the family's published checkpoint.
SMALL_NETWORKS = {"resnext14_32x4d": "M07", "dpn68": "M05", "densenet121": "M04"}


def save_random_zoo_params(name, path, seed=0):
    """A Gluon .params of zoo network `name`: Xavier weights, and random BatchNorm parameters and
    statistics (initialised ones are 0 and 1, which would hide a lost mean or variance)."""
    from gluoncv2.model_provider import get_model
    net = get_model(name, prefix=f"{name}_")
    net.initialize(mx.init.Xavier(magnitude=2))
    net(mx.nd.zeros((1, 3, 224, 224)))  # completes the deferred shapes
    rng = np.random.RandomState(seed)
    for param in net.collect_params().values():
        if not param.name.endswith("weight"):
            low, high = (0.5, 1.5) if param.name.endswith(("running_var", "gamma")) else (-0.2, 0.2)
            param.set_data(mx.nd.array(rng.uniform(low, high, size=param.data().shape)))
    net.save_parameters(str(path))
    return str(path)


@pytest.fixture(scope="module")
def one_batch_rec(tmp_path_factory):
    """16 images of 4 colour classes: one training step of batch 16 (these networks are slow on a CPU)."""
    return write_colour_rec(tmp_path_factory.mktemp("colours"), NUM_CLASSES, 4)


@pytest.fixture(scope="module")
def zoo_params(tmp_path_factory):
    folder = tmp_path_factory.mktemp("zoo")
    return {name: save_random_zoo_params(name, folder / f"{name}.params") for name in SMALL_NETWORKS}


def script_feature_layer(script):
    with open(f"train/{script}.sh") as fh:
        return re.search(r"^FEATURE_LAYER=(\S+)", fh.read(), re.M).group(1)


def run(name, prefix, params, capsys, extra=()):
    assert import_weights.main(["--zoo", "gluoncv2", "--model", name, "--out", prefix,
                                "--zoo-params", params, *extra]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("name", SMALL_NETWORKS)
def test_checkpoint_gives_the_zoo_output_and_fine_tunes(name, zoo_params, one_batch_rec, tmp_path, capsys):
    prefix = str(tmp_path / name)
    report = run(name, prefix, zoo_params[name], capsys)
    assert report["relative_difference"] <= import_weights.TOLERANCE
    # The published checkpoint's feature layer name: the model scripts' FEATURE_LAYER fits either.
    assert report["feature_layer"] == script_feature_layer(SMALL_NETWORKS[name])
    print(f"{name}: largest difference {report['largest_difference']:.3g}, "
          f"relative {report['relative_difference']:.3g}")
    symbol_path, params_path, settings_path = import_weights.output_paths(prefix)
    assert checkpoint.read_input_settings(settings_path) == checkpoint.InputSettings(
        image_shape=(3, 224, 224), feature_layer=report["feature_layer"], num_classes=1000)
    # Fine-tune from it at 32 px (not the zoo's 224): the imported weights are the starting point; the
    # feature layer comes from its input settings, with no --feature-layer.
    out = str(tmp_path / "ft" / "m")
    argv = train_argv(one_batch_rec, out, symbol_path, params_path, epochs=1, extra=["--lr", "1e-6"])
    at = argv.index("--feature-layer")
    train_model.main(argv[:at] + argv[at + 2:])
    imported = mx.nd.load(params_path)
    tuned = mx.nd.load(f"{out}-0001.params")
    first_conv = next(k for k in imported if k.startswith("arg:") and k.endswith("conv0_weight"))
    assert np.abs(tuned[first_conv].asnumpy() - imported[first_conv].asnumpy()).max() < 1e-3
    assert tuned["arg:fc_weight"].shape[0] == NUM_CLASSES


def test_resnext_checkpoints_load_by_name_into_our_graphs(zoo_params, tmp_path, capsys):
    """M11 and M13 build SE-ResNeXt with train/symbols and continue from M07/M09's checkpoints,
    so an imported ResNeXt must carry the published graph's parameter names."""
    params = {"resnext14_32x4d": zoo_params["resnext14_32x4d"],
              "seresnext50_32x4d": save_random_zoo_params("seresnext50_32x4d", tmp_path / "se.params")}
    for zoo_name, ours in (("resnext14_32x4d", "resnext-14"), ("seresnext50_32x4d", "se-resnext-50")):
        report = run(zoo_name, str(tmp_path / zoo_name), params[zoo_name], capsys)
        assert report["relative_difference"] <= import_weights.TOLERANCE
        saved = mx.nd.load(import_weights.output_paths(str(tmp_path / zoo_name))[1])
        args = {k[4:]: v for k, v in saved.items() if k.startswith("arg:")}
        aux = {k[4:]: v for k, v in saved.items() if k.startswith("aux:")}
        kept_args, kept_aux, missing = select_params(symbols.get_symbol(ours, num_classes=1000), (1, 3, 224, 224),
                                                     args, aux)
        assert missing == [] and (len(kept_args), len(kept_aux)) == (len(args), len(aux))


def test_a_differing_checkpoint_is_refused_and_nothing_written(zoo_params, tmp_path, monkeypatch):
    name = "resnext14_32x4d"
    real = import_weights.save_checkpoint

    def corrupted(symbol, args, aux, symbol_path, params_path):
        key = sorted(k for k in args if k.endswith("weight"))[0]
        real(symbol, {**args, key: args[key] * 1.01}, aux, symbol_path, params_path)

    monkeypatch.setattr(import_weights, "save_checkpoint", corrupted)
    with pytest.raises(UserError, match="differs from the zoo network's.*nothing written"):
        import_weights.main(["--zoo", "gluoncv2", "--model", name, "--out", str(tmp_path / name),
                             "--zoo-params", zoo_params[name]])
    assert os.listdir(tmp_path) == []


def test_inputs_are_checked_before_any_work(zoo_params, tmp_path, monkeypatch):
    params = zoo_params["dpn68"]
    with pytest.raises(UserError, match="not a supported gluoncv2 network"):
        import_weights.convert("resnet18", str(tmp_path / "x"), params)
    with pytest.raises(UserError, match="not the Gluon parameters of gluoncv2 resnext14_32x4d"):
        import_weights.convert("resnext14_32x4d", str(tmp_path / "x"), params)
    (tmp_path / "x-symbol.json").write_text("{}")
    with pytest.raises(UserError, match="exists"):
        import_weights.convert("dpn68", str(tmp_path / "x"), params)
    assert sorted(os.listdir(tmp_path)) == ["x-symbol.json"]


def test_a_failed_download_says_to_pass_zoo_params(tmp_path, monkeypatch):
    import gluoncv2.model_provider as provider

    def offline(name, **kwargs):
        if kwargs.get("pretrained"):
            raise OSError("[Errno -3] Temporary failure in name resolution")
        return provider._models[name](**kwargs)

    monkeypatch.setattr(provider, "get_model", offline)
    with pytest.raises(UserError, match="could not download.*--zoo-params FILE"):
        import_weights.convert("dpn68", str(tmp_path / "x"))
    assert os.listdir(tmp_path) == []


# The solution's networks the zoo publishes weights for, and our network each loads into by name.
FULL_SIZE = {"resnext101_32x4d": "resnext-101", "resnext101_64x4d": "resnext-101-64x4d",
             "seresnext101_64x4d": "se-resnext-101-64x4d", "densenet161": None, "dpn98": None, "dpn131": None}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(FULL_SIZE))
def test_a_full_size_network_converts_and_runs_at_180_px(name, tmp_path, capsys):
    params = save_random_zoo_params(name, tmp_path / f"{name}.params")
    report = run(name, str(tmp_path / name), params, capsys)
    assert report["relative_difference"] <= import_weights.TOLERANCE
    print(f"{name}: largest difference {report['largest_difference']:.3g}, "
          f"relative {report['relative_difference']:.3g}")
    symbol_path, params_path, _ = import_weights.output_paths(str(tmp_path / name))
    raw = np.random.RandomState(1).uniform(0, 255, size=(1, 3, 180, 180)).astype(np.float32)
    assert import_weights.checkpoint_output(symbol_path, params_path, raw).shape == (1, 1000)
    if FULL_SIZE[name] is None:  # DenseNet and DPN keep the zoo's graph: fine-tuned through the symbol JSON
        return
    saved = mx.nd.load(params_path)  # ResNeXt: our network (as M11/M13 rebuild it) loads it by name
    args = {k[4:]: v for k, v in saved.items() if k.startswith("arg:")}
    aux = {k[4:]: v for k, v in saved.items() if k.startswith("aux:")}
    _, _, missing = select_params(symbols.get_symbol(FULL_SIZE[name], num_classes=1000), (1, 3, 180, 180),
                                  args, aux)
    assert missing == []
