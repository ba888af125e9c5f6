"""The fine-tune path on real published ImageNet graphs (../shared/data/mxnet_symbols), weights made up."""
import os

import mxnet as mx
import numpy as np
import pytest

from cli.runner import UserError
from train.checkpoint import load_params, load_symbol
from train.finetune import attach_classifier, cut_at, select_params
from tests.helpers import shared_file
from tests.train_helpers import save_published_params

# (graph, its feature layer, the old classifier's parameters that must be dropped)
PUBLISHED = [
    ("resnet-18-symbol.json", "flatten0", "fc1_weight"),
    # resnet-34's and resnet-50's layers are resnet-18's and resnet-101's (4 s together): RUN_SLOW=1
    pytest.param("resnet-34-symbol.json", "flatten0", "fc1_weight", marks=pytest.mark.slow),
    pytest.param("resnet-50-symbol.json", "flatten0", "fc1_weight", marks=pytest.mark.slow),
    ("resnet-101-symbol.json", "flatten0", "fc1_weight"),
    # the largest graph (7 s): the same path as resnet-101's, kept for RUN_SLOW=1
    pytest.param("resnext-101-64x4d-symbol.json", "flatten0", "fc1_weight", marks=pytest.mark.slow),
    ("se-resnext-imagenet-50-0-symbol.json", "flatten0", "fc1_weight"),
    ("densenet-121-symbol.json", "pool5", "fc6_weight"),
    ("densenet-161-symbol.json", "pool5", "fc6_weight"),
    ("squeezenet_v1.1-symbol.json", "drop9", "conv10_weight"),
]
DATA_SHAPE = (2, 3, 180, 180)


@pytest.mark.parametrize("graph, layer, old_classifier", PUBLISHED)
def test_published_graph_fine_tunes_at_180(tmp_path, graph, layer, old_classifier):
    path = shared_file(os.path.join("mxnet_symbols", graph))
    published = load_symbol(path)
    params_path = str(tmp_path / "published-0000.params")
    save_published_params(published, params_path)

    num_classes = 100 if graph.startswith("squeezenet") else 5270  # squeezenet's head is 11x11x512 wide
    network = attach_classifier(cut_at(published, layer, path), num_classes, smooth_alpha=0.1)
    loaded_args, loaded_aux = load_params(params_path)
    arg_params, aux_params, missing = select_params(network, DATA_SHAPE, loaded_args, loaded_aux)
    assert old_classifier in loaded_args and old_classifier not in arg_params
    assert sorted(missing) == ["fc_bias", "fc_weight"]

    module = mx.mod.Module(network, context=mx.cpu())
    module.bind(data_shapes=[("data", DATA_SHAPE)], label_shapes=[("softmax_label", (2,))])
    module.init_params(mx.init.MSRAPrelu(), arg_params=arg_params, aux_params=aux_params, allow_missing=True)
    batch = mx.io.DataBatch([mx.nd.random.uniform(0, 255, DATA_SHAPE)], [mx.nd.array([3, 7])])
    module.forward_backward(batch)
    probabilities = module.get_outputs()[0].asnumpy()
    assert probabilities.shape == (2, num_classes)
    assert np.allclose(probabilities.sum(axis=1), 1, atol=1e-4)
    grads = [per_device[0].asnumpy() for per_device in module._exec_group.grad_arrays]
    assert all(np.isfinite(g).all() for g in grads) and any(np.abs(g).sum() > 0 for g in grads)
    # Loaded weights are kept as loaded; the new classifier was initialised.
    got_args, _ = module.get_params()
    some = sorted(arg_params)[len(arg_params) // 2]
    assert np.array_equal(got_args[some].asnumpy(), arg_params[some].asnumpy())
    assert got_args["fc_weight"].shape == (num_classes, got_args["fc_weight"].shape[1])


def test_missing_feature_layer_is_a_clear_error():
    path = shared_file("mxnet_symbols/resnet-18-symbol.json")
    with pytest.raises(UserError, match=r"--feature-layer pool99: no such layer in .*resnet-18.*last layers are"):
        cut_at(load_symbol(path), "pool99", path)


def test_missing_or_corrupt_params_are_clear_errors(tmp_path):
    with pytest.raises(UserError, match="parameter file not found"):
        load_params(str(tmp_path / "nope.params"))
    good = tmp_path / "good.params"
    mx.nd.save(str(good), {"arg:w": mx.nd.ones((30, 30))})
    truncated = tmp_path / "truncated.params"
    truncated.write_bytes(good.read_bytes()[:-100])
    with pytest.raises(UserError, match="truncated or corrupt"):
        load_params(str(truncated))
    garbage = tmp_path / "garbage.params"
    garbage.write_bytes(b"\x00" * 7)
    with pytest.raises(UserError, match="not a readable MXNet .params"):
        load_params(str(garbage))


def test_bad_symbol_json_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad-symbol.json"
    bad.write_text("{not json")
    with pytest.raises(UserError, match="not a readable MXNet symbol JSON"):
        load_symbol(str(bad))


def test_parameters_that_do_not_fit_are_refused(tmp_path):
    path = shared_file("mxnet_symbols/resnet-18-symbol.json")
    network = attach_classifier(cut_at(load_symbol(path), "flatten0"), 10)
    with pytest.raises(UserError, match=r"parameter conv0_weight has shape \(3, 3\), the network needs"):
        select_params(network, DATA_SHAPE, {"conv0_weight": mx.nd.ones((3, 3))}, {}, source="x.params")
