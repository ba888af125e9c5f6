"""Trained networks for inference: load a `*-symbol.json` and its `.params`, output probabilities.

A Model knows the input its network was trained on (train.checkpoint's PREFIX-input.json beside the
symbol, flags as overrides), so that each model of an ensemble can be fed its own input, resized as
its training resized it (predict.preprocess.Resize). `label_level` reads what the outputs mean
from the same files: the label kind (--cate-level) and the category table they index. Asked for them
(predict --save-features), a Model also outputs each view's penultimate features (`feature_symbol`).
A network trained with level heads (train.train_model --level-heads; not the original's) outputs its class head's
probabilities, its other heads left out, or, asked to combine them (predict --combine-levels,
`combined_probability_symbol`), each class's probability multiplied by its level groups' and renormalised.
"""
import json
import logging
import os

from predict.engine import use_prediction_engine

use_prediction_engine()  # before MXNet loads: it reads its engine settings then

import mxnet as mx  # noqa: E402
import numpy as np  # noqa: E402

from cli.runner import UserError
from data.categories import LABEL_KINDS, short_digest
from predict.preprocess import Resize
from train.checkpoint import load_params, load_symbol, mxnet_reason, resolve_input_settings, stored_input_settings
from train.finetune import CLASS_OUTPUT, LEVEL_HEAD_NAMES, cut_at, feature_layer_of

log = logging.getLogger(__name__)


def probability_symbol(symbol):
    """The network with its training head replaced by a plain softmax (no label input needed); of a network with
    level heads, the class head's (the first output), the others left out."""
    outputs = symbol.list_outputs()
    head_symbol = symbol[CLASS_OUTPUT] if len(outputs) > 1 and CLASS_OUTPUT in outputs else symbol
    graph = json.loads(head_symbol.tojson())
    head = graph["nodes"][graph["heads"][0][0]]
    if head["op"] == "SoftmaxOutput":
        return mx.sym.softmax(head_symbol.get_children()[0], axis=1, name="prob")
    return symbol


def group_index_name(kind):
    """The input of combined_probability_symbol that holds the level group of each class, for a level head's kind."""
    return f"{LEVEL_HEAD_NAMES[kind]}_group_of_class"


def combined_probability_symbol(symbol, level_kinds, num_classes):
    """The class probabilities of a network with level heads (train.finetune.attach_classifier) combined with them:
    softmax over the classes of log p(class) + the sum over the heads of log p(the class's group at that level),
    i.e. each class's probability multiplied by its groups' and renormalised, computed in logs so that no product of
    small probabilities underflows. Each head's group of every class (`num_classes` of them) is an input,
    group_index_name(kind)."""
    def logits(output):
        return symbol[output].get_children()[0]  # the FullyConnected under the SoftmaxOutput

    total = mx.sym.log_softmax(logits(CLASS_OUTPUT), axis=1)
    for kind in level_kinds:
        level = mx.sym.log_softmax(logits(f"softmax_{LEVEL_HEAD_NAMES[kind]}_output"), axis=1)
        groups = mx.sym.var(group_index_name(kind), shape=(num_classes,), dtype="float32")
        total = total + mx.sym.take(level, groups, axis=1)
    return mx.sym.softmax(total, axis=1, name="prob")


def feature_symbol(symbol, symbol_path):
    """The penultimate feature vector of a training graph: the input of its last FullyConnected layer, the
    classifier (through the Dropout and float16 Cast of its head, identities at inference).

    That input is the layer train.finetune cut the network at to attach the classifier (feature_layer_of,
    recorded as PREFIX-input.json's `feature_layer`): the features the classifier was fitted on, the
    same layer however the network was built (published checkpoint, train/symbols, fine-tune of ours)."""
    graph = json.loads(symbol.tojson())
    head = graph["nodes"][graph["heads"][0][0]]
    below = graph["nodes"][head["inputs"][0][0]] if head["inputs"] else head
    if head["op"] != "SoftmaxOutput" or below["op"] != "FullyConnected":
        raise UserError(f"{symbol_path}: --save-features needs a network ending in FullyConnected -> "
                        f"SoftmaxOutput (training's head); this one ends in {below['op']} -> {head['op']}")
    return cut_at(symbol, feature_layer_of(symbol), symbol_path)


class Model:
    """One bound network: `forward(normalise(batch))` of a uint8 NCHW batch of `batch_size` at its
    input (`num_classes`: the output count it must have; None: any). `input` holds its input settings
    (train.checkpoint.InputSettings): the checkpoint's, with `data_shape` (C,H,W) and `overrides`
    ({setting: value}, None: not given) in their place; without the checkpoint's, `data_shape` is needed.
    `features`: bind the penultimate features as a second output (`forward_features`, `feature_dim` wide);
    without it the bound graph is the probabilities alone. `combine_levels`: the Categories (the checkpoint's, checked
    by label_level) whose level groups a network with level heads combines into its class probabilities
    (combined_probability_symbol); a network without level heads then gives its class head's, as without it."""

    def __init__(self, symbol_path, params_path, batch_size, data_shape, context, num_classes, classes_are="",
                 overrides=None, features=False, combine_levels=None):
        self.input = resolve_input_settings(symbol_path, {**(overrides or {}), "image_shape": data_shape})
        try:
            Resize.of(self.input)  # how the workers will resize its pictures (predictor.input_groups)
        except ValueError as exc:
            raise UserError(f"{symbol_path}: its input settings: {exc}") from None
        self.normalise = normaliser(self.input.rgb_mean, self.input.rgb_scale)
        training_symbol = load_symbol(symbol_path)
        level_kinds = self.input.level_head_kinds if combine_levels is not None else None
        if level_kinds:
            symbol = combined_probability_symbol(training_symbol, level_kinds, len(combine_levels))
        else:
            symbol = probability_symbol(training_symbol)
        if features:  # one graph: the features are computed on the way to the probabilities
            symbol = mx.sym.Group([symbol, feature_symbol(training_symbol, symbol_path)])
        arg_params, aux_params = load_params(params_path)
        if level_kinds:
            arg_params = {**arg_params, **level_group_inputs(symbol_path, self.input, combine_levels)}
        self.name = os.path.basename(params_path)
        self.module = mx.mod.Module(symbol, data_names=["data"], label_names=None, context=context)
        self.module.bind(data_shapes=[("data", (batch_size, *self.input.image_shape))], for_training=False)
        try:
            self.module.set_params(arg_params, aux_params, allow_missing=False, allow_extra=True)
        except (RuntimeError, AssertionError, mx.base.MXNetError) as exc:
            raise UserError(f"{params_path}: does not fit {symbol_path} ({mxnet_reason(exc)})") from None
        # Module keeps a CPU copy of every parameter beside the executors' (for get_params and saving, never used
        # here): at 14 models that would be the 4.1 GB of the checkpoints in this process, whatever the devices.
        self.module._arg_params = self.module._aux_params = {}
        outputs = self.module.output_shapes[0][1]
        if num_classes is not None and outputs[-1] != num_classes:
            raise UserError(f"{symbol_path}: the network has {outputs[-1]} outputs, expected {num_classes}"
                            f"{' (' + classes_are + ')' if classes_are else ''}")
        # (N, D) or (N, D, 1, 1) when the layer is a pooling the classifier flattened itself (DenseNet's pool5)
        self.feature_dim = int(np.prod(self.module.output_shapes[1][1][1:])) if features else None

    def forward(self, batch):
        """Start the forward pass; returns its probabilities as an NDArray still being computed
        (a copy: the next forward overwrites the module's own output)."""
        self.module.forward(mx.io.DataBatch([batch]), is_train=False)
        return self.module.get_outputs()[0].copy()

    def forward_features(self, batch):
        """As `forward`, for a Model bound with `features`: (probabilities, (N, feature_dim) features)."""
        self.module.forward(mx.io.DataBatch([batch]), is_train=False)
        probs, features = self.module.get_outputs()
        return probs.copy(), features.reshape((0, -1)).copy()


def level_group_inputs(symbol_path, settings, categories):
    """{group_index_name(kind): the level group of each class} of the level heads `settings` records, each head's
    class count checked against `categories`."""
    inputs = {}
    for kind, count in zip(settings.level_head_kinds, settings.level_head_classes):
        if kind not in LEVEL_HEAD_NAMES:
            raise UserError(f"{symbol_path}: a level head of {kind} labels; this version combines "
                            f"{', '.join(LEVEL_HEAD_NAMES)}")
        if count != categories.num_classes_of(kind):
            raise UserError(f"{symbol_path}: its {kind} head has {count} classes, {categories.path} has "
                            f"{categories.num_classes_of(kind)}; give the category CSV it was trained with")
        inputs[group_index_name(kind)] = mx.nd.array(categories.group_ids_of(kind), dtype="float32")
    return inputs


def label_level(symbol_paths, categories, cate_level=None):
    """The --cate-level of a run of the networks `symbol_paths`: the label kind their PREFIX-input.json
    records (`cate_level`, given, must agree), each checked to index `categories` (its digest). Refused
    in one line before any model is loaded: kinds that differ between models, a --cate-level or a
    category CSV other than the training's. Checkpoints without these fields (older) get `cate_level`
    or 3, with one warning."""
    kinds, older = {}, []
    for symbol_path in dict.fromkeys(symbol_paths):
        path, settings = stored_input_settings(symbol_path)
        if settings is None or settings.label_kind is None:
            older.append(path or symbol_path)
            continue
        if settings.label_kind not in LABEL_KINDS:
            raise UserError(f"{path}: label kind {settings.label_kind}: this version predicts "
                            f"{', '.join(LABEL_KINDS)}")
        if settings.categories_digest and settings.categories_digest != categories.digest:
            raise UserError(f"{categories.path}: categories {short_digest(categories.digest)}, but {path} was trained "
                            f"on categories {short_digest(settings.categories_digest)}: its class ids would name "
                            "other categories; give the category CSV the model was trained with")
        kinds.setdefault(settings.label_kind, path)
    if len(kinds) > 1:
        (kind, path), (other_kind, other_path) = list(kinds.items())[:2]
        raise UserError(f"{path}: {kind} labels, but {other_path}: {other_kind} labels; one run predicts one kind")
    level = cate_level or 3
    if kinds:
        kind, path = next(iter(kinds.items()))
        level = LABEL_KINDS[kind]
        if cate_level is not None and cate_level != level:
            raise UserError(f"--cate-level {cate_level}: {path} says the network was trained on {kind} labels "
                            f"(--cate-level {level}); leave --cate-level out")
    if older:
        log.warning("%s: no label kind nor category digest recorded (a checkpoint from before they were): "
                    "--cate-level %d, the category CSV unchecked", ", ".join(older), level)
    return level


def model_files(symbol_paths, params_paths):
    """(symbol, params) of each model: one --symbol serves every --params, else one each."""
    if len(symbol_paths) == 1 and len(params_paths) > 1:  # one architecture, several checkpoints
        symbol_paths = symbol_paths * len(params_paths)
    if len(symbol_paths) != len(params_paths):
        raise UserError(f"{len(symbol_paths)} --symbol files for {len(params_paths)} --params files")
    return list(zip(symbol_paths, params_paths))


def load_models(symbol_paths, params_paths, batch_size, data_shape, context, num_classes, classes_are="",
                overrides=None, features=False, combine_levels=None):
    """One Model per --params on the devices `context` (train.devices.contexts), each at its
    checkpoint's input unless `data_shape` or `overrides` say otherwise; `classes_are` says what
    the expected output count is, for the error; `features`: each also outputs its penultimate features;
    `combine_levels`: the Categories whose level groups the models with level heads combine (Model)."""
    models = []
    for symbol_path, params_path in model_files(symbol_paths, params_paths):
        models.append(Model(symbol_path, params_path, batch_size, data_shape, context, num_classes, classes_are,
                            overrides, features, combine_levels))
        heads = models[-1].input.level_head_kinds
        combined = "; its level heads combined" if heads and combine_levels is not None else \
            "; its class head (level heads left out)" if heads else ""
        log.info("model %d: %s + %s, %s%s", len(models), symbol_path, params_path, models[-1].input.describe(),
                 combined)
    return models


def normaliser(rgb_mean, rgb_scale):
    """uint8 NCHW numpy -> float32 mx.nd with the training's mean and scale."""
    mean = mx.nd.array(np.asarray(rgb_mean, dtype=np.float32).reshape(1, 3, 1, 1))

    def normalise(batch_uint8):
        batch = mx.nd.array(batch_uint8, dtype=np.float32)
        if any(rgb_mean):
            batch = mx.nd.broadcast_sub(batch, mean)
        return batch * rgb_scale if rgb_scale != 1.0 else batch

    return normalise
