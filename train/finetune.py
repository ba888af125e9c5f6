"""Fine-tuning: cut a network at its feature layer, attach a new classifier, keep the loaded weights.

Works on published ImageNet checkpoints (`NAME-symbol.json` + `NAME-0000.params`)
and on our own networks from `train/symbols`. The new head is
[Dropout] -> FullyConnected(num_classes, name="fc") -> SoftmaxOutput(smooth_alpha);
its parameters are initialised fresh, and every loaded parameter past the feature
layer (the old 1000-class classifier) is dropped. With level heads (not the original's: rwightman's
hierarchical heads, train.train_model --level-heads) the same features also feed a classifier per
level of the category tree, each with its loss weight.
"""
import json
import logging

import mxnet as mx

from cli.runner import UserError

log = logging.getLogger(__name__)


def cut_at(symbol, layer, source="the network"):
    """The output of `layer` (a node name, with or without `_output`)."""
    internals = symbol.get_internals()
    outputs = internals.list_outputs()
    name = layer if layer.endswith("_output") else f"{layer}_output"
    if name not in outputs:
        tail = [o[:-len("_output")] for o in outputs if o.endswith("_output")][-6:]
        raise UserError(f"--feature-layer {layer}: no such layer in {source}; its last layers are {', '.join(tail)}")
    return internals[name]


# The name of the level head of each label kind of data.categories.LEVEL_LABEL_KINDS: its layers are fc_NAME and
# softmax_NAME, its label softmax_NAME_label, its accuracy NAME_accuracy (train.fit, train.metrics_log).
LEVEL_HEAD_NAMES = {"level2_id": "level2", "level1_id": "level1"}
CLASS_OUTPUT = "softmax_output"  # the class head's output, the first of a network with level heads


def head_label_names(level_kinds=()):
    """The label inputs of the heads attach_classifier builds, the class head's first: what the training iterator
    names the columns of its label vector (train.data)."""
    return ["softmax_label"] + [f"softmax_{LEVEL_HEAD_NAMES[kind]}_label" for kind in level_kinds]


def attach_classifier(features, num_classes, dropout_ratio=0.0, smooth_alpha=0.0, float16=False, fc_name="fc",
                      dropout_name="dropout", level_heads=(), class_weight=None):
    """The one head of every network here: [Dropout] -> FullyConnected `fc_name` -> SoftmaxOutput
    `softmax` on `features`. `float16`: mixed precision, the float32 input cast to float16 at the start
    and the features back to float32 before the head (classifier and loss stay float32).
    The published graphs name the classifier differently (train.symbols.get_symbol passes theirs).

    `level_heads` (rwightman's hierarchical heads): (label kind of LEVEL_HEAD_NAMES, class count, loss weight) of
    more heads on the same features after the same Dropout, each FullyConnected fc_NAME -> SoftmaxOutput
    softmax_NAME whose gradient is scaled by its loss weight; the class head keeps its names (so that its weights
    load into and from a network of one head), gets `class_weight` as its loss weight, and comes first in the
    Group of the heads that is then the network."""
    if int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"num_classes {num_classes!r}: must be a positive integer")
    if not 0.0 <= dropout_ratio < 1.0:
        raise ValueError(f"dropout_ratio {dropout_ratio}: must be in [0, 1)")
    if not 0.0 <= smooth_alpha < 1.0:
        raise ValueError(f"smooth_alpha {smooth_alpha}: must be in [0, 1)")
    if class_weight is not None and not level_heads:
        raise ValueError("class_weight: a loss weight only beside level_heads")
    net = mx.sym.Cast(features, dtype="float32", name="features_float32") if float16 else features
    if dropout_ratio > 0:
        net = mx.sym.Dropout(net, p=dropout_ratio, name=dropout_name)

    def classifier(classes, fc, softmax, weight=None):
        if int(classes) != classes or classes < 1:
            raise ValueError(f"{fc}: {classes!r} classes; must be a positive integer")
        logits = mx.sym.FullyConnected(net, num_hidden=int(classes), name=fc)  # flattens (N, C, 1, 1) itself
        # no grad_scale attribute at all on a network of one head: its symbol file stays as it always was
        scale = {} if weight is None else {"grad_scale": float(weight)}
        return mx.sym.SoftmaxOutput(logits, smooth_alpha=smooth_alpha, name=softmax, **scale)

    network = classifier(num_classes, fc_name, "softmax", class_weight)
    if level_heads:
        heads = [classifier(classes, f"fc_{LEVEL_HEAD_NAMES[kind]}", f"softmax_{LEVEL_HEAD_NAMES[kind]}", weight)
                 for kind, classes, weight in level_heads]
        network = mx.sym.Group([network] + heads)
    if float16:
        network = network(data=mx.sym.Cast(mx.sym.var("data"), dtype="float16", name="data_float16"))
    return network


def label_names_of(network):
    """The label inputs of a network's SoftmaxOutput heads (softmax_label, and those of its level heads)."""
    arguments = set(network.list_arguments())
    return [name for name in (f"{output[:-len('_output')]}_label" for output in network.list_outputs())
            if name in arguments]


HEAD_OPS = ("SoftmaxOutput", "FullyConnected", "Dropout", "Cast")


def feature_layer_of(network):
    """The name of the layer under a network's attach_classifier head (None for another head)."""
    graph = json.loads(network.tojson())
    node = graph["nodes"][graph["heads"][0][0]]
    if node["op"] != "SoftmaxOutput":
        return None
    while node["op"] in HEAD_OPS:
        node = graph["nodes"][node["inputs"][0][0]]
    return node["name"]


def select_params(symbol, data_shape, arg_params, aux_params, ignore_names=(), source="parameters",
                  ignore_mismatched=False):
    """Keep the loaded parameters the new network uses; shapes must fit (or, with `ignore_mismatched`,
    misfits are dropped with a warning); the rest is dropped and logged."""
    arg_shapes, _, aux_shapes = symbol.infer_shape(data=data_shape)
    wanted = dict(zip(symbol.list_arguments(), arg_shapes))
    wanted.update(zip(symbol.list_auxiliary_states(), aux_shapes))
    kept_args, kept_aux, dropped = {}, {}, []
    for loaded, kept in ((arg_params, kept_args), (aux_params, kept_aux)):
        for name, value in loaded.items():
            if name in ignore_names or name not in wanted:
                dropped.append(name)
                continue
            if tuple(value.shape) != tuple(wanted[name]):
                if ignore_mismatched:
                    log.warning("%s: not loading %s: shape %s, the network needs %s", source, name,
                                tuple(value.shape), tuple(wanted[name]))
                    dropped.append(name)
                    continue
                raise UserError(f"{source}: parameter {name} has shape {tuple(value.shape)}, "
                                f"the network needs {tuple(wanted[name])}")
            kept[name] = value
    inputs = {"data", *label_names_of(symbol)}
    missing = [n for n in wanted if n not in kept_args and n not in kept_aux and n not in inputs]
    log.info("loaded %d parameters, dropped %d (%s), initialising %d new (%s)",
             len(kept_args) + len(kept_aux), len(dropped), _short(dropped), len(missing), _short(missing))
    return kept_args, kept_aux, missing


def _short(names, most=6):
    names = sorted(names)
    return ", ".join(names[:most]) + (f", ... {len(names) - most} more" if len(names) > most else "") or "none"
