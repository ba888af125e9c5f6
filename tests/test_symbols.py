"""The network builders of train/symbols: shapes, sizes, and names that fit the published checkpoints.

Parameter counts follow the usual convention of the published figures (papers, and the PyTorch
ports' `sum(p.numel() for p in model.parameters())`): every trainable tensor at 1000 classes,
i.e. convolution and classifier weights and biases and BatchNorm gamma and beta, but not the
BatchNorm moving mean and variance (MXNet auxiliary states, PyTorch buffers). In MXNet that is
every argument of the graph except `data` and `softmax_label`. (ResNeXt's `bn_data` adds 6 values
the PyTorch ports do not have.)
"""
import json
import os
import re
import types

import mxnet as mx
import numpy as np
import pytest

from cli.runner import UserError
from tests.helpers import shared_file
from train.finetune import attach_classifier
from train.symbols import FEATURE_LAYERS, build_features, family, get_symbol, list_symbols, resnext

IMAGENET = (1, 3, 224, 224)
NOT_PARAMETERS = ("data", "softmax_label")

# Published sizes in millions of parameters at 1000 classes.
PUBLISHED_MILLIONS = {
    "resnext-50": 25.0,
    "resnext-101": 44.2,
    "resnext-101-64x4d": 83.5,
    "se-resnext-50": 27.6,
    "dpn-68": 12.6,
    "dpn-92": 37.7,
    "dpn-98": 61.6,
    "dpn-107": 86.9,
    "dpn-131": 79.3,
    "densenet-121": 8.0,
    "densenet-161": 28.7,
}
# The published figures are rounded to 0.1M; 1% still catches a missing stage, SE block or wrong width.
SIZE_TOLERANCE = 0.01

DEMO_NETWORKS = ["resnext-14", "resnext-26", "dpn-26", "densenet-41"]


def published_graph(name):
    return mx.sym.load(shared_file(os.path.join("mxnet_symbols", f"{name}-symbol.json")))


def nodes(symbol):
    return json.loads(symbol.tojson())["nodes"]


# Operator attributes that one graph states and the other leaves at MXNet's default.
DEFAULT_ATTRS = {"pad": "(0, 0)", "stride": "(1, 1)", "num_group": "1", "dim": "1", "no_bias": "False",
                 "use_global_stats": "False", "momentum": "0.9", "global_pool": "False", "pooling_convention": "valid"}
# Attributes that do not change what is computed (scratch memory) or are the caller's choice.
IGNORED_ATTRS = ("workspace", "p", "smooth_alpha")


def operators(symbol, until=None):
    """(op, name, input names, attributes) of every non-variable node in graph order, up to node `until`."""
    graph = nodes(symbol)
    ops = []
    for node in graph:
        if node["op"] == "null":
            continue
        attrs = {**DEFAULT_ATTRS, **node.get("attrs", {})}
        for key in IGNORED_ATTRS:
            attrs.pop(key, None)
        ops.append((node["op"], node["name"], tuple(graph[i[0]]["name"] for i in node["inputs"]), attrs))
        if node["name"] == until:
            break
    return ops


def node_named(symbol, name):
    matches = [n for n in nodes(symbol) if n["name"] == name]
    assert len(matches) == 1, f"{len(matches)} nodes named {name}"
    return matches[0]


def input_names(symbol, name):
    graph = nodes(symbol)
    return [graph[i[0]]["name"] for i in node_named(symbol, name)["inputs"]]


def parameter_shapes(symbol, data_shape=IMAGENET):
    """{name: shape} of the arguments (without data and label) and auxiliary states."""
    arg_shapes, _, aux_shapes = symbol.infer_shape(data=data_shape)
    shapes = dict(zip(symbol.list_arguments(), map(tuple, arg_shapes)))
    shapes.update(zip(symbol.list_auxiliary_states(), map(tuple, aux_shapes)))
    for name in NOT_PARAMETERS:
        shapes.pop(name, None)
    return shapes


def count_parameters(symbol, data_shape=IMAGENET):
    arg_shapes, _, _ = symbol.infer_shape(data=data_shape)
    return sum(int(np.prod(shape)) for name, shape in zip(symbol.list_arguments(), arg_shapes)
               if name not in NOT_PARAMETERS)


def classifier_name(symbol):
    """The FullyConnected that feeds `softmax`."""
    fc = input_names(symbol, "softmax")[0]
    assert node_named(symbol, fc)["op"] == "FullyConnected"
    return fc


# --- every registered network -------------------------------------------------------------------

@pytest.mark.parametrize("name", list_symbols())
def test_network_classifies_180px_images(name):
    symbol = get_symbol(name, num_classes=7)
    _, out_shapes, _ = symbol.infer_shape(data=(2, 3, 180, 180))
    assert out_shapes == [(2, 7)]
    assert symbol.list_outputs() == ["softmax_output"]


@pytest.mark.parametrize("name", list_symbols())
def test_feature_layer_is_a_global_pool_right_before_the_classifier(name):
    symbol = get_symbol(name, num_classes=7)
    layer = FEATURE_LAYERS[family(name)]
    assert input_names(symbol, classifier_name(symbol))[0] == layer
    features = symbol.get_internals()[f"{layer}_output"]
    _, (shape,), _ = features.infer_shape(data=(2, 3, 180, 180))
    assert shape[0] == 2 and all(size == 1 for size in shape[2:])  # (N, C) or (N, C, 1, 1)
    pools = [n for n in nodes(symbol) if n["op"] == "Pooling"]
    assert pools[-1]["attrs"]["global_pool"] == "True"


def test_feature_layers_by_family():
    assert FEATURE_LAYERS == {"resnext": "flatten0", "se-resnext": "flatten0", "dpn": "flatten", "densenet": "pool5"}
    assert [build_features(n)[1] for n in ("resnext-101", "se-resnext-101-64x4d", "dpn-131", "densenet-161")] == \
        ["flatten0", "flatten0", "flatten", "pool5"]
    assert family("se-resnext-50") == "se-resnext"


def test_the_solutions_networks_are_registered():
    wanted = {"resnext-50", "resnext-101", "resnext-101-64x4d", "se-resnext-101-64x4d", "dpn-68", "dpn-92",
              "dpn-98", "dpn-107", "dpn-131", "densenet-121", "densenet-161", *DEMO_NETWORKS}
    assert wanted <= set(list_symbols())


def test_unknown_name_is_a_clear_error():
    with pytest.raises(UserError, match="unknown network 'resnext-77'.*resnext-101"):
        get_symbol("resnext-77", num_classes=10)
    with pytest.raises(UserError, match="dpn-92: has no squeeze-excitation layers"):
        build_features("dpn-92", se_ratio=4)


@pytest.mark.parametrize("build, misspelled", [
    (lambda: get_symbol("dpn-92", num_classes=10, num_layers=131), "num_layers"),
    (lambda: get_symbol("resnext-14", num_classes=10, dropout_rate=0.5), "dropout_rate"),
    (lambda: build_features("se-resnext-50", se_ration=8), "se_ration"),
    (lambda: resnext.build(num_layers=14, use_squeeze_excitation=True), "use_squeeze_excitation"),
])
def test_an_argument_no_builder_takes_is_an_error(build, misspelled):
    # the builders took **kwargs once, and a misspelled argument built another network without a word
    with pytest.raises(TypeError, match=misspelled):
        build()


@pytest.mark.parametrize("name", list_symbols())
def test_builders_return_features_and_their_layer_without_a_head(name):
    features, layer = build_features(name)
    assert layer == FEATURE_LAYERS[family(name)] and features.list_outputs() == [f"{layer}_output"]
    assert not [n for n in nodes(features) if n["op"] in ("FullyConnected", "SoftmaxOutput", "Cast")
                and not n["name"].endswith(("_excitation1", "_excitation2"))]


# --- sizes against the published figures --------------------------------------------------------

@pytest.mark.parametrize("name", sorted(PUBLISHED_MILLIONS))
def test_parameter_count_matches_the_published_figure(name):
    millions = count_parameters(get_symbol(name, num_classes=1000)) / 1e6
    published = PUBLISHED_MILLIONS[name]
    assert abs(millions - published) <= SIZE_TOLERANCE * published, f"{name}: {millions:.2f}M, published {published}M"


def test_more_classes_grow_only_the_classifier():
    small = parameter_shapes(get_symbol("dpn-68", num_classes=10))
    large = parameter_shapes(get_symbol("dpn-68", num_classes=5270))
    differing = {n for n in small if small[n] != large[n]}
    assert differing == {"fc6_weight", "fc6_bias"}
    assert large["fc6_weight"] == (5270, 832)


# --- names against the published graphs ---------------------------------------------------------

def test_resnext_101_64x4d_is_the_published_graph():
    mine = get_symbol("resnext-101-64x4d", num_classes=1000)
    published = published_graph("resnext-101-64x4d")
    # every parameter and moving statistic, the classifier fc1 included, by name and shape
    assert parameter_shapes(mine) == parameter_shapes(published)
    # and the graph itself, node by node: operators, names, inputs, attributes (`workspace` aside)
    assert operators(mine) == operators(published)


def test_se_resnext_50_64x2d_is_the_published_senet_graph():
    # SENet.mxnet's published SE-ResNeXt-50 has 64 groups of 2 channels in stage 1, with
    # a Dropout `dp1` before fc1 (p=0 there; any p > 0 puts it in our graph).
    mine = get_symbol("se-resnext-50-64x2d", num_classes=1000, dropout_ratio=0.2)
    published = published_graph("se-resnext-imagenet-50-0")
    assert parameter_shapes(mine) == parameter_shapes(published)
    assert operators(mine) == operators(published)


def test_se_resnext_50_32x4d_differs_from_the_published_graph_only_in_the_grouped_convolutions():
    # Our se-resnext-50 is the SENet paper's 32x4d (27.6M). Its names are the published graph's,
    # but the grouped 3x3 weights hold 4 instead of 2 input channels per group, so those 16 tensors
    # cannot load from SENet.mxnet's 64x2d checkpoint (use se-resnext-50-64x2d for that); all else can.
    mine = parameter_shapes(get_symbol("se-resnext-50", num_classes=1000))
    published = parameter_shapes(published_graph("se-resnext-imagenet-50-0"))
    assert set(mine) == set(published)
    differing = {n for n in mine if mine[n] != published[n]}
    grouped = {n for n in mine if n.endswith("_conv2_weight")}
    assert differing == grouped and len(grouped) == 16
    for name in grouped:
        assert mine[name][1] == 2 * published[name][1]


@pytest.mark.parametrize("depth", [121, 161])
def test_densenet_matches_the_published_graph_up_to_the_classifier(depth):
    # The converted Caffe graph's classifier fc6 is a 1x1 Convolution with a (1000, C, 1, 1) weight;
    # ours is a FullyConnected fc6 with the same values as a (1000, C) weight. All else is identical:
    # every name, shape and node up to the feature layer pool5.
    mine = get_symbol(f"densenet-{depth}", num_classes=1000)
    published = published_graph(f"densenet-{depth}")
    mine_shapes, published_shapes = parameter_shapes(mine), parameter_shapes(published)
    assert set(mine_shapes) == set(published_shapes)
    assert {n for n in mine_shapes if mine_shapes[n] != published_shapes[n]} == {"fc6_weight"}
    assert published_shapes["fc6_weight"] == mine_shapes["fc6_weight"] + (1, 1)
    assert operators(mine, until="pool5") == operators(published, until="pool5")


CYPW_DPN_SHAPES = os.path.join(os.path.dirname(__file__), "data", "cypw_dpn_param_shapes.json")


@pytest.mark.parametrize("name", ["dpn-92", "dpn-107"])
def test_dpn_loads_the_parameter_names_of_cypws_checkpoints(name):
    """Every parameter of cypw's published graph up to `flatten` is in ours, with its shape, as argument or
    auxiliary state alike, and nothing else is, so `dpn92-5k` (M02/M03/M06) and `dpn107-extra` (M14) load
    by name. No published symbol JSON of these checkpoints could be found; the data file lists the names
    and shapes that cypw/DPNs' own symbol code (settings/symbol_dpn-92.py, symbol_dpn-107.py) gives when
    built with MXNet 1.9.1 at 224 px: names and shapes only, the commit is in its "source" field."""
    with open(CYPW_DPN_SHAPES) as f:
        published = json.load(f)["networks"][name]
    num_classes = published["classifier"]["fc6_bias"][0]  # 5000 for the ImageNet-5k dpn92-5k
    symbol = get_symbol(name, num_classes=num_classes)
    arg_shapes, _, aux_shapes = symbol.infer_shape(data=IMAGENET)
    arguments = {n: list(s) for n, s in zip(symbol.list_arguments(), arg_shapes) if n not in NOT_PARAMETERS}
    auxiliary = {n: list(s) for n, s in zip(symbol.list_auxiliary_states(), aux_shapes)}
    assert arguments == {**published["arguments"], **published["classifier"]}
    assert auxiliary == published["auxiliary_states"]


def test_dpn_uses_cypw_names():
    # Spot checks that spell out the scheme; the full lists are checked against cypw's graph above.
    shapes = parameter_shapes(get_symbol("dpn-92", num_classes=1000))
    expected = {
        "conv1_x_1__conv_weight": (64, 3, 7, 7),
        "conv1_x_1__relu-sp__bn_gamma": (64,),
        "conv2_x__1_c1x1-w(s/1)__conv_weight": (256 + 2 * 16, 64, 1, 1),
        "conv2_x__1_c1x1-a__bn__bn_moving_var": (64,),
        "conv2_x__2_c3x3-b__conv_weight": (96, 96 // 32, 3, 3),
        # stage 2 ends with 256 residual + (2 + 3) * 16 dense channels
        "conv3_x__1_c1x1-w(s/2)__conv_weight": (512 + 2 * 32, 256 + 5 * 16, 1, 1),
        "conv5_x__3_c1x1-c__conv_weight": (2048 + 128, 768, 1, 1),
        "conv5_x_x__relu-sp__bn_beta": (2048 + 5 * 128,),
        "fc6_weight": (1000, 2048 + 5 * 128),
    }
    assert {n: shapes.get(n) for n in expected} == expected
    assert not [n for n in shapes if "(s/2)" in n and n.startswith("conv2_")]  # stage 2 keeps the size


def test_dpn_68_has_the_small_3x3_stem():
    shapes = parameter_shapes(get_symbol("dpn-68", num_classes=1000))
    assert shapes["conv1_x_1__conv_weight"] == (10, 3, 3, 3)


def test_building_twice_gives_the_same_graph():
    # automatic names (_plus0, reshape0, ...) restart with each build
    first = get_symbol("se-resnext-50", num_classes=10).tojson()
    assert get_symbol("se-resnext-50", num_classes=10).tojson() == first


# --- the head: label smoothing, dropout, float16 -------------------------------------------------

def test_smooth_alpha_and_dropout_reach_the_head():
    symbol = get_symbol("resnext-14", num_classes=10, smooth_alpha=0.1, dropout_ratio=0.3)
    assert float(node_named(symbol, "softmax")["attrs"]["smooth_alpha"]) == pytest.approx(0.1)
    assert input_names(symbol, "fc1")[0] == "dp1"
    assert float(node_named(symbol, "dp1")["attrs"]["p"]) == pytest.approx(0.3)
    assert input_names(symbol, "dp1")[0] == "flatten0"
    plain = get_symbol("densenet-41", num_classes=10)
    assert not [n for n in nodes(plain) if n["op"] == "Dropout"]
    assert input_names(plain, "fc6")[0] == "pool5"


@pytest.mark.parametrize("bad", [dict(smooth_alpha=1.0), dict(dropout_ratio=-0.1), dict(num_classes=0)])
def test_bad_head_arguments_are_refused(bad):
    with pytest.raises(ValueError):
        get_symbol("dpn-26", **{"num_classes": 10, **bad})


def test_float16_network_keeps_the_classifier_in_float32():
    symbol = get_symbol("resnext-14", num_classes=10, float16=True)
    arg_types, out_types, _ = symbol.infer_type(data=np.float32)
    types = dict(zip(symbol.list_arguments(), arg_types))
    assert types["conv0_weight"] == np.float16
    assert types["fc1_weight"] == np.float32
    assert out_types == [np.float32]


# --- a real pass through the demo-sized networks ------------------------------------------------

def fixed_gamma_parameters(symbol):
    """BatchNorm gammas with fix_gamma=True: constant 1, their gradient is zero by design."""
    return {f"{n['name']}_gamma" for n in nodes(symbol)
            if n["op"] == "BatchNorm" and n["attrs"].get("fix_gamma") == "True"}


def forward_backward(symbol, batch=(2, 3, 64, 64)):
    executor = symbol.simple_bind(ctx=mx.cpu(), data=batch, softmax_label=(batch[0],))
    init = mx.init.Xavier(magnitude=2.0)
    for name, array in executor.arg_dict.items():
        if name not in NOT_PARAMETERS:
            init(mx.init.InitDesc(name), array)
    for name, array in executor.aux_dict.items():
        array[:] = 1.0 if name.endswith("_moving_var") else 0.0
    rng = np.random.default_rng(0)
    executor.arg_dict["data"][:] = rng.uniform(0, 255, batch)  # raw pixels, as the solution fed them
    executor.arg_dict["softmax_label"][:] = rng.integers(0, 5, batch[0])
    executor.forward(is_train=True)
    executor.backward()
    grads = {n: g.asnumpy() for n, g in executor.grad_dict.items() if n not in NOT_PARAMETERS}
    return executor.outputs[0].asnumpy(), grads


@pytest.mark.parametrize("build", [
    *[lambda name=name: get_symbol(name, num_classes=5) for name in DEMO_NETWORKS],
    lambda: attach_classifier(resnext.build(num_layers=14, use_se=True)[0], 5),
], ids=[*DEMO_NETWORKS, "se-resnext-14"])
def test_demo_network_trains_one_step(build):
    symbol = build()
    probabilities, grads = forward_backward(symbol)
    assert probabilities.shape == (2, 5)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert all(np.isfinite(g).all() for g in grads.values())
    # every trainable parameter is connected to the loss
    silent = {n for n, g in grads.items() if not np.abs(g).any()} - fixed_gamma_parameters(symbol)
    assert not silent


# --- the original's way of naming a ResNeXt (--symbol resnext --num-layers ...) -------------------

def network_of(argv):
    """The network train_model builds for `argv` (the class count given: no .rec tells it here)."""
    from train import train_model

    args = train_model.build_parser().parse_args(["--num-classes", "5270", *argv])
    train_model.check_args(args)
    return train_model.build_network(args)


def test_resnext_by_its_parts_is_our_named_network():
    se_101_64 = ["--symbol", "resnext", "--num-layers", "101", "--num-conv-groups", "64", "--use-squeeze-excitation"]
    assert network_of(se_101_64).tojson() == network_of(["--symbol", "se-resnext-101-64x4d"]).tojson()
    assert network_of(["--symbol", "resnext", "--num-layers", "101"]).tojson() == \
        network_of(["--symbol", "resnext-101"]).tojson()  # 32 groups unless told
    # --excitation-ratio 1/4: the SE layers are a quarter as wide as their unit's output
    quarter = network_of(["--symbol", "resnext", "--num-layers", "50", "--use-squeeze-excitation",
                          "--excitation-ratio", "0.25"])
    shapes = parameter_shapes(quarter, (1, 3, 180, 180))
    assert shapes["stage1_unit1_excitation1_weight"] == (64, 256)
    assert shapes["stage4_unit1_excitation1_weight"] == (512, 2048)


@pytest.mark.parametrize("argv, message", [
    (["--symbol", "resnext", "--num-layers", "18"], "resnext with 18 layers, 32 groups is not built here; built:"),
    (["--symbol", "resnext", "--num-layers", "101", "--num-conv-groups", "16"], "16 groups is not built"),
    (["--symbol", "resnext"], "--symbol resnext needs --num-layers"),
    (["--symbol", "dpn-92", "--num-layers", "101"], "--num-layers: only with --symbol resnext"),
    (["--symbol", "resnext", "--num-layers", "50", "--excitation-ratio", "0.25"],
     "--excitation-ratio: only with --use-squeeze-excitation"),
    (["--symbol", "resnext", "--num-layers", "50", "--use-squeeze-excitation", "--excitation-ratio", "0.3"],
     "expected 1/N"),
])
def test_resnext_parts_we_do_not_build_are_one_line_errors(argv, message):
    with pytest.raises(UserError, match=re.escape(message)):
        network_of(argv)


def test_m11_loads_m07s_checkpoint_all_but_the_squeeze_excitation_layers():
    # M07 fine-tuned the published ResNeXt-101 64x4d (cut at flatten0, new 5270-class `fc`);
    # M11 builds SE-ResNeXt-101 64x4d the original's way and starts from M07's epoch-15 weights.
    from train.finetune import cut_at, select_params

    data_shape = (1, 3, 180, 180)
    m07 = attach_classifier(cut_at(published_graph("resnext-101-64x4d"), "flatten0"), 5270)
    m07_params = {name: types.SimpleNamespace(shape=shape) for name, shape in parameter_shapes(m07, data_shape).items()}
    m11 = network_of(["--symbol", "resnext", "--num-layers", "101", "--num-conv-groups", "64",
                      "--use-squeeze-excitation", "--num-classes", "5270"])
    aux_names = set(m07.list_auxiliary_states())
    args = {k: v for k, v in m07_params.items() if k not in aux_names}
    aux = {k: v for k, v in m07_params.items() if k in aux_names}
    kept_args, kept_aux, missing = select_params(m11, data_shape, args, aux)
    assert len(kept_args) + len(kept_aux) == len(m07_params)  # every M07 tensor loads, its classifier too
    assert missing and all(re.fullmatch(r"stage\d_unit\d+_excitation[12]_(weight|bias)", n) for n in missing)
    assert len(missing) == 4 * (3 + 4 + 23 + 3)  # two FullyConnected layers in each of the 33 units
