"""Turn an ImageNet network of the gluoncv2 (imgclsmob) zoo into a checkpoint our training reads.

    python -m train.import_weights --zoo gluoncv2 --model resnext101_64x4d --out pretrained/resnext-101-64x4d
    python -m train.train_model --symbol pretrained/resnext-101-64x4d-symbol.json \\
        --params pretrained/resnext-101-64x4d-0000.params --feature-layer flatten0 ...

The published MXNet checkpoints the solution started from are no longer all reachable;
the zoo publishes ImageNet weights for most of its networks. Our model scripts feed raw
0-255 RGB (RGB_MEAN=0,0,0, RGB_SCALE=1), while the zoo expects (x/255 - mean)/std with
ImageNet's mean (0.485,0.456,0.406) and std (0.229,0.224,0.225) (imgclsmob's ImageNet-1K
evaluation settings), so that normalisation is folded into the written graph.

ResNeXt and SE-ResNeXt are written in our train/symbols graph with the published MXNet
checkpoint's parameter names (the normalisation becomes `bn_data`'s statistics), so
`--symbol resnext-101-64x4d` and M11/M13, which rebuild that graph from M07/M09's
checkpoints, load them by name. DenseNet and DPN keep the zoo's graph and names, with the
normalisation as scalar operations at the input. The last fixed 7x7 average pooling
becomes global average pooling (the same at the zoo's 224 px, and it lets the network run
at 180 px); DPN gets the zoo's training head (global average pooling, not test-time
pooling). The feature layer is named as in the family's published checkpoint (flatten0
for ResNeXt and SE-ResNeXt, flatten for DPN, pool5 for DenseNet), so a checkpoint written
under the published name in PRETRAINED_DIR serves train/Mxx.sh unchanged.
Before anything is written, the checkpoint read back through MXNet's Module must give
the zoo network's output on random images; otherwise nothing is written.

Without --zoo-params the zoo downloads its published weights (needs network access) into
~/.mxnet/models. The published checkpoints the model scripts expect in PRETRAINED_DIR (the --out
name) and the zoo network each is made from are listed below (train/published_weights.py). The
zoo has no DPN-92 (M02, M03, M06) and no DPN-107 weights (M14): those come from cypw's dpn92-5k
and dpn107-extra (https://github.com/cypw/DPNs).
"""
import argparse
import json
import logging
import re

import mxnet as mx
import numpy as np

from cli.files import atomic_outputs, check_input_file, check_outputs
from cli.runner import HelpFormatter, UserError, run_cli
from train import published_weights, symbols
from train.checkpoint import (InputSettings, checkpoint_paths, input_settings_path, load_params, load_symbol,
                              mxnet_reason, write_input_settings, write_params)
from train.finetune import attach_classifier, cut_at

log = logging.getLogger(__name__)

ZOO_MEAN_RGB = (0.485, 0.456, 0.406)
ZOO_STD_RGB = (0.229, 0.224, 0.225)
# The feature layer's name in the published MXNet checkpoint of each family (train/M*.sh FEATURE_LAYER).
FEATURE_LAYERS = {zoo_family: symbols.FEATURE_LAYERS[family]
                  for zoo_family, family in (("resnext", "resnext"), ("seresnext", "se-resnext"),
                                             ("densenet", "densenet"), ("dpn", "dpn"))}
FAMILIES = tuple(FEATURE_LAYERS)
TOLERANCE = 1e-4  # relative to the largest absolute zoo output: float32 rounding only
CHECK_IMAGES = 2
GLUON_BN_EPS = 1e-5  # gluoncv2's BatchNorm epsilon
GLUON_TO_MXNET_BN = {"running_mean": "moving_mean", "running_var": "moving_var"}
SEED = 0


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m train.import_weights",
                                     description=f"{__doc__}\n{published_weights.table_text()}",
                                     formatter_class=HelpFormatter)
    parser.add_argument("--zoo", choices=["gluoncv2"], required=True, help="the model zoo")
    parser.add_argument("--model", required=True,
                        help=f"zoo network name of the families {', '.join(FAMILIES)} (e.g. resnext101_64x4d)")
    parser.add_argument("--out", required=True, metavar="PREFIX",
                        help="writes PREFIX-symbol.json, PREFIX-0000.params, PREFIX-input.json (the input "
                             "settings with the feature layer, train.checkpoint's)")
    parser.add_argument("--zoo-params", metavar="FILE",
                        help="Gluon .params of that zoo network; without it the zoo downloads its "
                             "published weights (needs network access)")
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    return parser


def output_paths(prefix):
    return (*checkpoint_paths(prefix, 0), input_settings_path(prefix))


def zoo_network(name, zoo_params=None):
    """The zoo's Gluon network `name` with its weights (from `zoo_params` or the zoo's download)."""
    from gluoncv2.model_provider import _models, get_model
    if name not in _models or not name.startswith(FAMILIES):
        known = sorted(m for m in _models if m.startswith(FAMILIES) and "cifar" not in m and "_cub" not in m)
        raise UserError(f"--model {name}: not a supported gluoncv2 network; one of {', '.join(known)}")
    kwargs = {"prefix": f"{name}_"}  # parameter names that do not depend on what was built before
    if name.startswith("dpn"):
        kwargs["for_training"] = True  # plain global pooling head
    if zoo_params is None:
        try:
            return get_model(name, pretrained=True, **kwargs)
        except Exception as exc:  # the zoo raises whatever its downloader raises
            raise UserError(f"--model {name}: could not download the zoo's weights ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''}); without network access "
                            "pass --zoo-params FILE") from None
    net = get_model(name, **kwargs)
    try:
        net.load_parameters(zoo_params, ctx=mx.cpu())
    except (AssertionError, ValueError, mx.base.MXNetError) as exc:
        reason = mxnet_reason(exc) if isinstance(exc, mx.base.MXNetError) else str(exc).splitlines()[0]
        raise UserError(f"{zoo_params}: not the Gluon parameters of gluoncv2 {name}: {reason}") from None
    return net


def normalised(data):
    """The zoo's input, (x/255 - mean)/std per RGB channel, from raw 0-255 `data` (scalar ops: no
    parameters, so fine-tuning cannot change it)."""
    channels = mx.sym.split(data, num_outputs=3, axis=1, name="zoo_input_split")
    scaled = [(channels[c] - 255.0 * ZOO_MEAN_RGB[c]) * (1.0 / (255.0 * ZOO_STD_RGB[c])) for c in range(3)]
    return mx.sym.concat(*scaled, dim=1, name="zoo_input")


def family_of(name):
    return next(family for family in FEATURE_LAYERS if name.startswith(family))


def pooled_features(net, x):
    """The zoo network's features of `x` before its pooling (the fixed 7x7 pooling left out)."""
    if isinstance(net.features[len(net.features) - 1], mx.gluon.nn.AvgPool2D):
        for i in range(len(net.features) - 1):
            x = net.features[i](x)
        return x
    return net.features(x)


def zoo_classifier(net):
    """The one layer with parameters of the zoo's head (Dense, or DPN's 1x1 convolution)."""
    with_params = [block for block in net.output if len(block.collect_params().keys()) > 0]
    if len(with_params) != 1:
        raise UserError(f"{net.name}: expected one classifier layer in the zoo's head, found {len(with_params)}")
    return with_params[0]


def checkpoint_symbol(net, family):
    """(logits on raw images, feature layer). Global average pooling replaces the zoo's pooling,
    and the feature layer has the name it has in the published checkpoint of the family, so the
    model scripts' FEATURE_LAYER fits either checkpoint."""
    layer = FEATURE_LAYERS[family]
    x = pooled_features(net, normalised(mx.sym.var("data")))
    pooled = mx.sym.Pooling(x, global_pool=True, pool_type="avg", kernel=(1, 1),
                            name=layer if layer.startswith("pool") else "global_pool")
    features = pooled if layer.startswith("pool") else mx.sym.Flatten(pooled, name=layer)
    classifier = zoo_classifier(net)
    if isinstance(classifier, mx.gluon.nn.Conv2D):  # DPN: 1x1 convolution on the pooled map
        logits = classifier(mx.sym.reshape(features, shape=(0, 0, 1, 1), name="classifier_map"))
        return mx.sym.Flatten(logits, name="classifier_flatten"), layer
    return classifier(features), layer


def resnext_architecture(name):
    """(layers, groups, width, SE) of a zoo ResNeXt our train/symbols builds, else None."""
    from train.symbols.resnext import UNITS_PER_STAGE
    match = re.fullmatch(r"(se)?resnext(\d+)_(\d+)x(\d+)d", name)
    if match and int(match[2]) in UNITS_PER_STAGE:
        return int(match[2]), int(match[3]), int(match[4]), bool(match[1])
    return None


def published_param(layer, kind):
    return f"{layer}_{GLUON_TO_MXNET_BN.get(kind, kind)}"


def published_resnext_name(short):
    """The published ResNeXt graph's name of a zoo parameter (`short`: without the network prefix)."""
    match = re.fullmatch(r"resinitblock0_convblock0_(conv|batchnormextra)0_(\w+)", short)
    if match:
        return published_param("conv0" if match[1] == "conv" else "bn0", match[2])
    match = re.fullmatch(r"stage(\d+)_(?:se)?resnextunit(\d+)_(\w+)", short)
    if match:
        unit, rest = f"stage{match[1]}_unit{int(match[2]) + 1}", match[3]
        body = re.fullmatch(r"resnextbottleneck0_convblock(\d)_(conv|batchnormextra)0_(\w+)", rest)
        if body:
            return published_param(f"{unit}_{'conv' if body[2] == 'conv' else 'bn'}{int(body[1]) + 1}", body[3])
        shortcut = re.fullmatch(r"convblock0_(conv|batchnormextra)0_(\w+)", rest)
        if shortcut:
            return published_param(f"{unit}_sc" if shortcut[1] == "conv" else f"{unit}_sc_bn", shortcut[2])
        gate = re.fullmatch(r"seblock0_conv(\d)_(weight|bias)", rest)
        if gate:
            return f"{unit}_excitation{int(gate[1]) + 1}_{gate[2]}"
    match = re.fullmatch(r"dense0_(weight|bias)", short)
    if match:
        return f"fc1_{match[1]}"
    raise UserError(f"gluoncv2 parameter {short}: no counterpart in the published ResNeXt graph")


def published_resnext(net, name, architecture):
    """(logits, arg_params, aux_params) of the zoo ResNeXt in train/symbols' graph (the published
    checkpoint's names): the zoo's normalisation becomes `bn_data`'s statistics, and each BatchNorm's
    variance absorbs the difference of epsilons, so the arithmetic is the zoo's."""
    from train.symbols.resnext import BN_EPS, PUBLISHED_HEAD, build
    layers, groups, width, squeeze_excitation = architecture
    features, _ = build(num_layers=layers, num_group=groups, bottleneck_width=width, use_se=squeeze_excitation)
    logits = cut_at(attach_classifier(features, 1000, fc_name=PUBLISHED_HEAD[0]), PUBLISHED_HEAD[0])
    values = {}
    for param in net.collect_params().values():
        target, value = published_resnext_name(param.name[len(f"{name}_"):]), param.data(mx.cpu())
        if target.endswith("moving_var"):
            value = value + (GLUON_BN_EPS - BN_EPS)
        elif "_excitation" in target and target.endswith("weight"):
            value = value.reshape(value.shape[:2])  # the zoo's 1x1 convolutions are our FullyConnected
        values[target] = value
    scale = 255.0 * np.array(ZOO_STD_RGB)
    values.update({"bn_data_gamma": mx.nd.ones(3), "bn_data_beta": mx.nd.zeros(3),
                   "bn_data_moving_mean": mx.nd.array(255.0 * np.array(ZOO_MEAN_RGB)),
                   "bn_data_moving_var": mx.nd.array(scale * scale - BN_EPS)})
    args = {n: values[n] for n in logits.list_arguments() if n != "data"}
    aux = {n: values[n] for n in logits.list_auxiliary_states()}
    return logits, args, aux


def checkpoint_arrays(net, symbol):
    """(arg_params, aux_params) of `symbol` from the Gluon network's parameters."""
    values = {p.name: p.data(mx.cpu()) for p in net.collect_params().values()}
    args = {n: values[n] for n in symbol.list_arguments() if n != "data"}
    aux = {n: values[n] for n in symbol.list_auxiliary_states()}
    return args, aux


def checkpoint_graph(net, name):
    """(logits symbol, arg_params, aux_params, feature layer) of the checkpoint: ResNeXt and
    SE-ResNeXt in our train/symbols graph (so `--symbol resnext-101` and M11/M13, which build it,
    load them by name), other networks in the zoo's own graph."""
    architecture = resnext_architecture(name)
    if architecture:
        return (*published_resnext(net, name, architecture), FEATURE_LAYERS[family_of(name)])
    symbol, feature_layer = checkpoint_symbol(net, family_of(name))
    return (symbol, *checkpoint_arrays(net, symbol), feature_layer)


def random_images(net):
    height, width = net.in_size
    rng = np.random.RandomState(SEED)
    return rng.uniform(0, 255, size=(CHECK_IMAGES, 3, height, width)).astype(np.float32)


def zoo_output(net, raw):
    """The zoo network's output on `raw` normalised the zoo's way (imperative Gluon)."""
    mean = np.array(ZOO_MEAN_RGB, np.float32).reshape(1, 3, 1, 1)
    std = np.array(ZOO_STD_RGB, np.float32).reshape(1, 3, 1, 1)
    return net(mx.nd.array((raw / 255.0 - mean) / std)).asnumpy()


def checkpoint_output(symbol_path, params_path, raw):
    """The written checkpoint's output on `raw`, loaded back through an MXNet Module."""
    symbol = load_symbol(symbol_path)
    args, aux = load_params(params_path)
    module = mx.mod.Module(symbol, data_names=["data"], label_names=None, context=mx.cpu())
    module.bind(data_shapes=[("data", raw.shape)], for_training=False)
    module.set_params(args, aux, allow_missing=False, allow_extra=False)
    module.forward(mx.io.DataBatch([mx.nd.array(raw)]), is_train=False)
    return module.get_outputs()[0].asnumpy()


def largest_difference(expected, got):
    """Largest absolute difference, and it relative to the largest absolute expected value."""
    if expected.shape != got.shape:
        raise UserError(f"checkpoint output shape {got.shape} differs from the zoo's {expected.shape}")
    worst = float(np.abs(expected - got).max())
    return worst, worst / max(float(np.abs(expected).max()), 1e-12)


def save_checkpoint(symbol, args, aux, symbol_path, params_path):
    symbol.save(symbol_path)
    write_params(params_path, args, aux)


def convert(name, prefix, zoo_params=None, force=False):
    """Write the checkpoint of zoo network `name` at `prefix`; returns (feature layer, largest
    absolute difference, relative difference). Writes nothing if the outputs differ."""
    outputs = output_paths(prefix)
    check_outputs(outputs, force, inputs=[zoo_params] if zoo_params else ())
    if zoo_params:
        check_input_file(zoo_params, "zoo parameters")
    net = zoo_network(name, zoo_params)
    raw = random_images(net)
    expected = zoo_output(net, raw)
    symbol, args, aux, feature_layer = checkpoint_graph(net, name)
    log.info("%s: %d parameters, %d BatchNorm statistics", name, len(args), len(aux))
    with atomic_outputs(*outputs) as (symbol_tmp, params_tmp, settings_tmp):
        save_checkpoint(symbol, args, aux, symbol_tmp, params_tmp)
        worst, relative = largest_difference(expected, checkpoint_output(symbol_tmp, params_tmp, raw))
        log.info("%s: largest output difference %.3g (%.3g of the largest output) on %d random %dx%d images",
                 name, worst, relative, len(raw), raw.shape[2], raw.shape[3])
        if not relative <= TOLERANCE:
            raise UserError(f"{name}: the checkpoint's output differs from the zoo network's by {worst:.3g} "
                            f"({relative:.3g} relative, tolerance {TOLERANCE:g}); nothing written")
        # raw 0-255 RGB: the zoo's normalisation is in the graph; the zoo's image size
        write_input_settings(settings_tmp, InputSettings(image_shape=raw.shape[1:], feature_layer=feature_layer,
                                                         num_classes=expected.shape[1]))
    return feature_layer, worst, relative


def main(argv=None):
    args = build_parser().parse_args(argv)
    feature_layer, worst, relative = convert(args.model, args.out, args.zoo_params, args.force)
    symbol_path, params_path, settings_path = output_paths(args.out)
    print(json.dumps({"model": args.model, "largest_difference": worst, "relative_difference": relative,
                      "feature_layer": feature_layer}))
    log.info("wrote %s, %s, %s (feature layer %s); fine-tune with --symbol %s --params %s",
             symbol_path, params_path, settings_path, feature_layer, symbol_path, params_path)
    return 0


if __name__ == "__main__":
    run_cli(main)
