"""Trained networks for inference: load a `*-symbol.json` and its `.params`, output probabilities.

A Model knows the input its network was trained on (train.checkpoint's PREFIX-input.json beside the
symbol, flags as overrides), so that each model of an ensemble can be fed its own input.
"""
import json
import logging
import os

import mxnet as mx
import numpy as np

from cli.runner import UserError
from train.checkpoint import load_params, load_symbol, mxnet_reason, resolve_input_settings

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
