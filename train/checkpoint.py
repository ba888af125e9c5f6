"""Checkpoint files: the one module that reads and writes them, for training, weight import and prediction.

A checkpoint at PREFIX is what training hands to prediction:
- `PREFIX-symbol.json`: the network (MXNet's symbol JSON);
- `PREFIX-%04d.params`: its weights after an epoch, keyed `arg:NAME` / `aux:NAME` as MXNet's own
  checkpoints, with the optimizer state beside them (train.optimizer_state);
- `PREFIX-input.json`: the input the network was trained on (image shape, how pictures were resized
  to it, RGB mean and scale, the layer it was cut at) and what its outputs mean (class count, label
  kind, digest of the category table, the level heads beside the class head), so that prediction need not be
  told again and can check
  what it is told (`resolve_input_settings`, after timm's resolve_data_config: the checkpoint's
  settings, flags as overrides);
- `PREFIX-args.json`: the arguments of every run that trained at PREFIX (a resume adds one).
Checkpoints written before the input settings existed still load; prediction then needs the flags.
"""
import dataclasses
import datetime
import glob
import json
import logging
import os
import typing

import mxnet as mx

from cli.files import atomic_outputs, check_input_file
from cli.runner import UserError

log = logging.getLogger(__name__)

INPUT_FORMAT = "cdiscount-input-settings/2"  # /2 added resize_mode, label_kind, categories_digest
READABLE_INPUT_FORMATS = ("cdiscount-input-settings/1", INPUT_FORMAT)  # a /1 file reads with their defaults
ARGS_FORMAT = "cdiscount-train-args/1"
SYMBOL_SUFFIX = "-symbol.json"


def mxnet_reason(exc):
    """The one line of an MXNetError that says what went wrong: MXNet 1.9 puts a C++ traceback
    ("Traceback (most recent call last): File ...") before it."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reason = next((line for line in reversed(lines) if line.startswith(("MXNetError:", "Check failed"))),
                  lines[-1] if lines else type(exc).__name__)
    return reason.split("MXNetError: ", 1)[-1]


# --- paths -----------------------------------------------------------------------------------------

def checkpoint_paths(prefix, epoch):
    return f"{prefix}{SYMBOL_SUFFIX}", f"{prefix}-{epoch:04d}.params"


def optimizer_state_paths(params_path):
    """(arrays, description) files of the optimizer state that goes with `params_path`
    (train.optimizer_state writes and reads them)."""
    stem = params_path[:-len(".params")] if params_path.endswith(".params") else params_path
    return f"{stem}.optimizer.nd", f"{stem}.optimizer.json"


def input_settings_path(prefix):
    return f"{prefix}-input.json"


def args_path(prefix):
    return f"{prefix}-args.json"


def prefix_of_symbol(symbol_path):
    """PREFIX of `PREFIX-symbol.json`, or None for a symbol file named otherwise."""
    return symbol_path[:-len(SYMBOL_SUFFIX)] if symbol_path.endswith(SYMBOL_SUFFIX) else None


def existing_checkpoints(prefix):
    """Files of an earlier run at `prefix`: its PREFIX-%04d.params, PREFIX-metrics.csv and PREFIX-args.json."""
    found = sorted(glob.glob(f"{glob.escape(prefix)}-[0-9][0-9][0-9][0-9].params"))
    return found + [path for path in (f"{prefix}-metrics.csv", args_path(prefix)) if os.path.exists(path)]


def written_files(prefix, epochs):
    """Every file training at `prefix` for `epochs` writes (the optimizer state aside)."""
    return ([f"{prefix}{SYMBOL_SUFFIX}", input_settings_path(prefix), args_path(prefix)]
            + [checkpoint_paths(prefix, epoch)[1] for epoch in epochs])


# --- symbol and weights ----------------------------------------------------------------------------

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


def load_params(params_path):
    """(arg_params, aux_params) of a .params file in the format of MXNet's checkpoints."""
    check_input_file(params_path, "parameter")
    saved = load_named_arrays(params_path, ".params", "parameters")
    arg_params, aux_params = {}, {}
    for key, value in saved.items():
        kind, _, name = key.partition(":")
        if kind == "arg":
            arg_params[name] = value
        elif kind == "aux":
            aux_params[name] = value
        else:
            raise UserError(f"{params_path}: parameter name {key!r} lacks the arg:/aux: prefix")
    return arg_params, aux_params


def write_params(path, arg_params, aux_params):
    """A .params file in the format of MXNet's checkpoints (arrays copied to the CPU)."""
    saved = {f"arg:{k}": v.as_in_context(mx.cpu()) for k, v in arg_params.items()}
    saved.update({f"aux:{k}": v.as_in_context(mx.cpu()) for k, v in aux_params.items()})
    mx.nd.save(path, saved)


def save_checkpoint(prefix, epoch, symbol, arg_params, aux_params, input_settings=None, write_state=None):
    """PREFIX-symbol.json, PREFIX-input.json (when `input_settings` is given) and PREFIX-%04d.params,
    with the optimizer state beside them when `write_state(params, arrays, description)` writes it
    (train.optimizer_state), each written to a temporary name then renamed: the state before the
    .params, so that a .params file never appears without its state."""
    symbol_path, params_path = checkpoint_paths(prefix, epoch)
    outputs = [symbol_path] + ([input_settings_path(prefix)] if input_settings else [])
    if write_state is not None:
        outputs += optimizer_state_paths(params_path)
    outputs.append(params_path)
    with atomic_outputs(*outputs) as temps:
        symbol.save(temps[0])
        if input_settings:
            write_input_settings(temps[1], input_settings)
        write_params(temps[-1], arg_params, aux_params)
        if write_state is not None:
            write_state(temps[-1], temps[-3], temps[-2])
    log.info("saved checkpoint %s%s", params_path, " and its optimizer state" if write_state else "")


# --- input settings --------------------------------------------------------------------------------

RESIZE_MODES = ("shorter_edge", "squash")


@dataclasses.dataclass(frozen=True)
class InputSettings:
    """What a network was trained on: the pictures' size and normalisation, where its head sits, and
    what its outputs mean. Prediction feeds the pictures exactly as these say (predict.preprocess)."""
    image_shape: tuple  # (channels, height, width) of the network input
    resize: int = 0  # the picture resized as resize_mode says before the centre crop (0: kept as stored)
    rgb_mean: tuple = (0.0, 0.0, 0.0)  # subtracted per channel from raw 0-255 RGB
    rgb_scale: float = 1.0  # multiplier after the mean
    inter_method: int = 9  # OpenCV interpolation of the resize (MXNet's numbering; 9: auto)
    feature_layer: typing.Optional[str] = None  # the layer the network was cut at before its classifier
    num_classes: typing.Optional[int] = None  # outputs of the classifier (None: not known)
    # shorter_edge: ImageRecordIter's resize, what training does (shorter edge to `resize`, aspect kept);
    # squash: the original predictor's --resize (RxR, aspect not kept), only ever a prediction flag.
    resize_mode: str = "shorter_edge"
    label_kind: typing.Optional[str] = None  # data.categories.LABEL_KINDS (None: an older checkpoint)
    categories_digest: typing.Optional[str] = None  # data.categories.Categories.digest of its labels' table
    # The level heads beside the class head (train.train_model --level-heads): the label kind of each
    # (data.categories.LEVEL_LABEL_KINDS, in the network's output order after the class head) and its class count.
    # None: the class head alone (every checkpoint before them); then the fields are left out of the file.
    level_head_kinds: typing.Optional[tuple] = None
    level_head_classes: typing.Optional[tuple] = None
    # A network of product mosaics (trained on a data.bson2rec --mosaic .rec; not the original's): its input is a
    # product's pictures tiled as data.mosaic.MosaicLayout(mosaic_size, mosaic_fill) says, from the .rec's X.rec.json.
    # None: a network of single pictures (every checkpoint before them); then the fields are left out of the file.
    mosaic_size: typing.Optional[int] = None
    mosaic_fill: typing.Optional[str] = None

    @property
    def mosaic_layout(self):
        """The data.mosaic.MosaicLayout the network takes; None for a network of single pictures."""
        from data.mosaic import layout_of  # here: data.mosaic imports OpenCV, which reading settings does not need
        return layout_of(self.mosaic_size, self.mosaic_fill)

    def describe(self):
        mosaic = "" if self.mosaic_size is None else f", product mosaics {self.mosaic_size} ({self.mosaic_fill} fill)"
        return (f"input {','.join(map(str, self.image_shape))}, resize {self.resize}, "
                f"RGB mean {','.join(f'{v:g}' for v in self.rgb_mean)}, scale {self.rgb_scale:g}{mosaic}")


FIELDS = tuple(field.name for field in dataclasses.fields(InputSettings))


LEVEL_HEAD_FIELDS = ("level_head_kinds", "level_head_classes")
MOSAIC_FIELDS = ("mosaic_size", "mosaic_fill")


def write_input_settings(path, settings):
    record = {"format": INPUT_FORMAT, **dataclasses.asdict(settings)}
    record["image_shape"], record["rgb_mean"] = list(settings.image_shape), list(settings.rgb_mean)
    if settings.level_head_kinds is None:  # a network of one head: the file as before level heads
        for name in LEVEL_HEAD_FIELDS:
            del record[name]
    if settings.mosaic_size is None:  # a network of pictures: the file as before mosaics
        for name in MOSAIC_FIELDS:
            del record[name]
    with open(path, "w") as fh:
        json.dump(record, fh, indent=1)
        fh.write("\n")


def _checked_settings(record):
    """InputSettings of a parsed record; ValueError/TypeError saying what is wrong."""
    if not isinstance(record, dict) or record.get("format") not in READABLE_INPUT_FORMATS:
        raise ValueError(f"format is not {INPUT_FORMAT}")
    unknown = set(record) - set(FIELDS) - {"format"}
    if unknown:
        raise ValueError(f"unknown field {sorted(unknown)[0]!r}")
    if "image_shape" not in record:
        raise ValueError("no image_shape")
    values = dict(record)
    del values["format"]
    values["image_shape"] = tuple(int(v) for v in record["image_shape"])
    if len(values["image_shape"]) != 3 or min(values["image_shape"]) < 1:
        raise ValueError(f"image_shape {record['image_shape']}: expected [channels, height, width]")
    if "rgb_mean" in record:
        values["rgb_mean"] = tuple(float(v) for v in record["rgb_mean"])
        if len(values["rgb_mean"]) != 3:
            raise ValueError("rgb_mean: expected three numbers")
    for name, kind in (("resize", int), ("rgb_scale", float), ("inter_method", int)):
        if name in record:
            values[name] = kind(record[name])
    if values.get("num_classes") is not None:
        values["num_classes"] = int(record["num_classes"])
    for name in ("feature_layer", "label_kind", "categories_digest"):
        if values.get(name) is not None and not isinstance(values[name], str):
            raise ValueError(f"{name}: expected a string")
    kinds, classes = values.get("level_head_kinds"), values.get("level_head_classes")
    if kinds is not None or classes is not None:
        if not (isinstance(kinds, list) and isinstance(classes, list) and len(kinds) == len(classes) > 0
                and all(isinstance(kind, str) for kind in kinds)
                and all(isinstance(count, int) and count > 0 for count in classes)):
            raise ValueError("level_head_kinds, level_head_classes: expected as many label kinds as positive counts")
        values["level_head_kinds"], values["level_head_classes"] = tuple(kinds), tuple(classes)
    if values.get("resize_mode", RESIZE_MODES[0]) not in RESIZE_MODES:
        raise ValueError(f"resize_mode {values['resize_mode']!r}: expected one of {', '.join(RESIZE_MODES)}")
    settings = InputSettings(**values)
    _ = settings.mosaic_layout  # data.mosaic.layout_of checks the two fields
    return settings


def read_input_settings(path):
    """InputSettings of a PREFIX-input.json; None when there is no such file (an older checkpoint)."""
    if not os.path.exists(path):
        return None
    check_input_file(path, "input settings")
    try:
        with open(path) as fh:
            return _checked_settings(json.load(fh))
    except (ValueError, TypeError) as exc:
        raise UserError(f"{path}: not the input settings training writes ({exc})") from None


def stored_input_settings(symbol_path):
    """(path, InputSettings or None) of the PREFIX-input.json beside PREFIX-symbol.json (path None for a
    symbol file named otherwise)."""
    prefix = prefix_of_symbol(symbol_path)
    path = input_settings_path(prefix) if prefix else None
    return path, read_input_settings(path) if path else None


def resolve_input_settings(symbol_path, overrides=None):
    """The input settings of the network `symbol_path`: its checkpoint's PREFIX-input.json, each
    setting in `overrides` (a flag the user gave; None: not given) replacing it with a warning when
    they differ. Without the file (an older checkpoint) the overrides are all there is, and
    `image_shape` must be among them."""
    given = {name: tuple(value) if isinstance(value, list) else value
             for name, value in (overrides or {}).items() if value is not None}
    unknown = set(given) - set(FIELDS)
    if unknown:
        raise ValueError(f"no input setting {sorted(unknown)[0]!r}; settings: {', '.join(FIELDS)}")
    path, stored = stored_input_settings(symbol_path)
    if stored is None:
        if "image_shape" not in given:
            raise UserError(f"{symbol_path}: no input settings beside it ({path or 'PREFIX-input.json'}, written "
                            "with the checkpoints by train.train_model); give the input shape as a flag")
        return InputSettings(**given)
    for name, value in given.items():
        if value != getattr(stored, name):
            log.warning("%s: %s %s replaces the %s it was trained with", path, name, value, getattr(stored, name))
    return dataclasses.replace(stored, **given)


# --- the arguments of each run ---------------------------------------------------------------------

def record_arguments(prefix, arguments, resumed):
    """Add this run's `arguments` to PREFIX-args.json (written to a temporary name, then renamed).
    A resumed run keeps the earlier runs' entries; a fresh run (the caller checked --force) starts
    the file anew."""
    path = args_path(prefix)
    runs = _earlier_runs(path) if resumed else []
    runs.append({"started": datetime.datetime.now().isoformat(timespec="seconds"), "arguments": arguments})
    with atomic_outputs(path) as (temp,):
        with open(temp, "w") as fh:
            json.dump({"format": ARGS_FORMAT, "runs": runs}, fh, indent=1, default=str)
            fh.write("\n")
    log.info("arguments recorded in %s (run %d)", path, len(runs))


def _earlier_runs(path):
    if not os.path.exists(path):
        return []
    try:
        with open(path) as fh:
            record = json.load(fh)
        if record.get("format") != ARGS_FORMAT or not isinstance(record.get("runs"), list):
            raise ValueError(f"format is not {ARGS_FORMAT}")
    except (ValueError, AttributeError) as exc:
        raise UserError(f"{path}: not the run record training writes ({exc}); move it away to resume") from None
    return record["runs"]
