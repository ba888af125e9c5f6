"""Trained networks for inference: load a `*-symbol.json` and its `.params`, output probabilities.

A Model knows the input its network was trained on (train.checkpoint's PREFIX-input.json beside the
symbol, flags as overrides), so that each model of an ensemble can be fed its own input, resized as
its training resized it (predict.preprocess.Resize). `label_level` reads what the outputs mean
from the same files: the label kind (--cate-level) and the category table they index.
"""
import json
import logging
import os

import mxnet as mx
import numpy as np

from cli.runner import UserError
from data.categories import LABEL_KINDS, short_digest
from predict.preprocess import Resize
from train.checkpoint import load_params, load_symbol, mxnet_reason, resolve_input_settings, stored_input_settings

log = logging.getLogger(__name__)


def probability_symbol(symbol):
    """The network with its training head replaced by a plain softmax (no label input needed)."""
    graph = json.loads(symbol.tojson())
    head = graph["nodes"][graph["heads"][0][0]]
    if head["op"] == "SoftmaxOutput":
        return mx.sym.softmax(symbol.get_children()[0], axis=1, name="prob")
    return symbol


class Model:
    """One bound network: `forward(normalise(batch))` of a uint8 NCHW batch of `batch_size` at its
    input (`num_classes`: the output count it must have; None: any). `input` holds its input settings
    (train.checkpoint.InputSettings): the checkpoint's, with `data_shape` (C,H,W) and `overrides`
    ({setting: value}, None: not given) in their place; without the checkpoint's, `data_shape` is needed."""

    def __init__(self, symbol_path, params_path, batch_size, data_shape, context, num_classes, classes_are="",
                 overrides=None):
        self.input = resolve_input_settings(symbol_path, {**(overrides or {}), "image_shape": data_shape})
        try:
            Resize.of(self.input)  # how the workers will resize its pictures (predictor.input_groups)
        except ValueError as exc:
            raise UserError(f"{symbol_path}: its input settings: {exc}") from None
        self.normalise = normaliser(self.input.rgb_mean, self.input.rgb_scale)
        symbol = probability_symbol(load_symbol(symbol_path))
        arg_params, aux_params = load_params(params_path)
        self.name = os.path.basename(params_path)
        self.module = mx.mod.Module(symbol, data_names=["data"], label_names=None, context=context)
        self.module.bind(data_shapes=[("data", (batch_size, *self.input.image_shape))], for_training=False)
        try:
            self.module.set_params(arg_params, aux_params, allow_missing=False, allow_extra=True)
        except (RuntimeError, AssertionError, mx.base.MXNetError) as exc:
            raise UserError(f"{params_path}: does not fit {symbol_path} ({mxnet_reason(exc)})") from None
        outputs = self.module.output_shapes[0][1]
        if num_classes is not None and outputs[-1] != num_classes:
            raise UserError(f"{symbol_path}: the network has {outputs[-1]} outputs, expected {num_classes}"
                            f"{' (' + classes_are + ')' if classes_are else ''}")

    def forward(self, batch):
        """Start the forward pass; returns its probabilities as an NDArray still being computed
        (a copy: the next forward overwrites the module's own output)."""
        self.module.forward(mx.io.DataBatch([batch]), is_train=False)
        return self.module.get_outputs()[0].copy()


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
                overrides=None):
    """One Model per --params on the devices `context` (train.devices.contexts), each at its
    checkpoint's input unless `data_shape` or `overrides` say otherwise; `classes_are` says what
    the expected output count is, for the error."""
    models = []
    for symbol_path, params_path in model_files(symbol_paths, params_paths):
        models.append(Model(symbol_path, params_path, batch_size, data_shape, context, num_classes, classes_are,
                            overrides))
        log.info("model %d: %s + %s, %s", len(models), symbol_path, params_path, models[-1].input.describe())
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
