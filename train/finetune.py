"""Fine-tuning: cut a network at its feature layer, attach a new classifier, keep the loaded weights.

Works on published ImageNet checkpoints (`NAME-symbol.json` + `NAME-0000.params`)
and on our own networks from `train/symbols`. The new head is
[Dropout] -> FullyConnected(num_classes, name="fc") -> SoftmaxOutput(smooth_alpha);
its parameters are initialised fresh, and every loaded parameter past the feature
layer (the old 1000-class classifier) is dropped.
"""
import json
import logging
import os

import mxnet as mx

from data.common import UserError, check_input_file
from train.symbols.common import classifier

log = logging.getLogger(__name__)


def mxnet_reason(exc):
    """The one line of an MXNetError that says what went wrong: MXNet 1.9 puts a C++ traceback
    ("Traceback (most recent call last): File ...") before it."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reason = next((line for line in reversed(lines) if line.startswith(("MXNetError:", "Check failed"))),
                  lines[-1] if lines else type(exc).__name__)
    return reason.split("MXNetError: ", 1)[-1]


def load_named_arrays(path, kind, content, hint=""):
    """{name: NDArray} of an MXNet NDArray file saved from a dict (`mx.nd.save`); a one-line
    UserError naming `path` if it is not one (`hint`: what the user can do about it)."""
    try:
        saved = mx.nd.load(path)
    except mx.base.MXNetError as exc:
        raise UserError(f"{path}: not a readable MXNet {kind} file (truncated or corrupt): "
                        f"{mxnet_reason(exc)}{hint}") from None
    if saved == []:  # a dict saved empty (SGD without momentum has no state) loads as a list
        return {}
    if not isinstance(saved, dict):
        raise UserError(f"{path}: holds a list of arrays, not named {content}{hint}")
    return saved


def load_symbol(path):
    check_input_file(path, "symbol")
    try:
        with open(path) as fh:
            json.load(fh)  # a clear message for a file that is not JSON at all
        return mx.sym.load(path)
    except (ValueError, mx.base.MXNetError) as exc:
        raise UserError(f"{path}: not a readable MXNet symbol JSON ({mxnet_reason(exc)})") from None


def cut_at(symbol, layer, source="the network"):
    """The output of `layer` (a node name, with or without `_output`)."""
    internals = symbol.get_internals()
    outputs = internals.list_outputs()
    name = layer if layer.endswith("_output") else f"{layer}_output"
    if name not in outputs:
        tail = [o[:-len("_output")] for o in outputs if o.endswith("_output")][-6:]
        raise UserError(f"--feature-layer {layer}: no such layer in {source}; its last layers are {', '.join(tail)}")
    return internals[name]


def attach_classifier(features, num_classes, dropout_ratio=0.0, smooth_alpha=0.0, float16=False):
    """The solution's head on `features`: [Dropout] -> FullyConnected `fc` -> SoftmaxOutput `softmax`."""
    return classifier(features, num_classes, fc_name="fc", dtype="float16" if float16 else "float32",
                      dropout_ratio=dropout_ratio, smooth_alpha=smooth_alpha)


def float16_input(symbol):
    """Feed `symbol` float16 data: cast the float32 input at the start (GPU mixed precision)."""
    data = mx.sym.var("data")
    return symbol(data=mx.sym.Cast(data, dtype="float16"))


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
    missing = [n for n in wanted if n not in kept_args and n not in kept_aux
               and n not in ("data", "softmax_label")]
    log.info("loaded %d parameters, dropped %d (%s), initialising %d new (%s)",
             len(kept_args) + len(kept_aux), len(dropped), _short(dropped), len(missing), _short(missing))
    return kept_args, kept_aux, missing


def _short(names, most=6):
    names = sorted(names)
    return ", ".join(names[:most]) + (f", ... {len(names) - most} more" if len(names) > most else "") or "none"
