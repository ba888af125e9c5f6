"""Train or fine-tune a CNN on the `.rec` files of the data stage (MXNet Module API).

    python -m train.train_model --symbol resnext-101 --params resnext-101-0000.params \\
        --data-train dataset_A/train.rec --data-val dataset_A/valid.rec --model-prefix models/M10 \\
        --optimizer nadam --lr 0.0001 --lr-factor 0.2 --lr-step-epochs 10,13 --smooth-alpha 0.1

`--symbol` is a network of `train/symbols` (see --list-symbols) or a published
`*-symbol.json`; with `--params` the network is cut at its feature layer and gets
a new classifier (fine-tuning). Every network ends in FullyConnected `fc` and
SoftmaxOutput `softmax` with label smoothing `--smooth-alpha`. Its class count and label kind
are the training `.rec`'s (its `X.rec.json`, written by data.bson2rec), recorded with the
checkpoints in PREFIX-input.json for prediction. With `--level-heads` (not the original's: rwightman's
hierarchical heads) a training `.rec` of label vectors (data.bson2rec --level-labels) also trains a
classifier of each category's level-2 and level-1 group on the same features, the losses weighted by
`--head-weights`.

The original's way of naming a ResNeXt works too: `--symbol resnext --num-layers 101
--num-conv-groups 64 --use-squeeze-excitation` is se-resnext-101-64x4d.
"""
import argparse
import logging
import os
import sys
import traceback

from cli.files import check_input_file
from cli.reporting import plural
from cli.runner import HelpFormatter, RefusedFlag, UserError, run_cli
from train import symbols
from train.data import add_data_args, add_data_aug_args, check_data, image_shape, input_settings, resolve_labels
from train.checkpoint import input_settings_path, load_params, load_symbol, read_input_settings, stored_input_settings
from train.cpu_kernels import add_cpu_kernel_args, use_faster_kernels
from train.finetune import attach_classifier, cut_at, select_params
from train.fit import add_fit_args, check_model_prefix, fit, module_contexts

log = logging.getLogger(__name__)

PRETRAINED_MODEL_REFUSED = ("the original fine-tune.py's checkpoint prefix; use --symbol PREFIX-symbol.json "
                            "--params PREFIX-0000.params --feature-layer LAYER")
FIX_LAST_LAYER_REFUSED = ("not needed: a loaded classifier 'fc' of the right shape is always kept (resumes "
                          "keep everything); --ignore-arg-names fc_weight fc_bias starts a new one")
RESNEXT_PARTS = ("num_layers", "num_conv_groups", "use_squeeze_excitation", "excitation_ratio")
# rwightman's loss weights of the heads of 5270, 483 and 49 classes (the class head, level 2, level 1)
DEFAULT_HEAD_WEIGHTS = "0.8,0.1,0.1"


def add_network_args(parser):
    net = parser.add_argument_group("Network", "which network, and where its weights come from")
    net.add_argument("--symbol", help="a name from train/symbols (e.g. resnext-101, dpn-92, densenet-161), "
                                      "'resnext' with --num-layers (the original's way), or a *-symbol.json path")
    net.add_argument("--params", help=".params file to start from (published ImageNet or our own checkpoint)")
    net.add_argument("--feature-layer", "--layer-before-fullc", dest="feature_layer",
                     help="layer to cut at before the new classifier (default: the family's, e.g. flatten0, "
                          "flatten, pool5; --layer-before-fullc: the original fine-tune.py's spelling)")
    net.add_argument("--smooth-alpha", type=float, default=0.1, help="label smoothing of SoftmaxOutput")
    net.add_argument("--dropout-ratio", type=float, default=0.0,
                     help="Dropout before the classifier (0: none; the original's default None meant none too)")
    net.add_argument("--level-heads", action="store_true",
                     help="not the original's: beside the class head, a head per level of the category tree (its "
                          "level-2 and level-1 groups) on the same features, trained on the label vectors of a "
                          ".rec made by data.bson2rec --level-labels (rwightman's hierarchical heads)")
    net.add_argument("--head-weights", default=None, metavar="W,W,W",
                     help="with --level-heads: the loss weights of the class head, the level-2 head and the level-1 "
                          f"head (default: {DEFAULT_HEAD_WEIGHTS}, rwightman's)")
    net.add_argument("--ignore-arg-names", nargs="+", default=[], metavar="NAME",
                     help="parameters not to load: space-separated as in the original, or comma-separated")
    net.add_argument("--ignore-mismatched-params", action="store_true",
                     help="skip (with a warning) loaded parameters whose shapes differ from the network's, "
                          "e.g. SE-ResNeXt-101-64x4d from a 32x4d ResNeXt checkpoint")
    net.add_argument("--list-symbols", action="store_true", help="print the network names and exit")
    resnext = parser.add_argument_group("ResNeXt by its parts", "the original's flags for --symbol resnext")
    resnext.add_argument("--num-layers", type=int, help="depth: 50, 101 or 152 (14 and 26: demo-sized)")
    resnext.add_argument("--num-conv-groups", type=int, help="groups of the 3x3 convolutions: 32 (default) or 64")
    resnext.add_argument("--use-squeeze-excitation", action="store_true", help="SE-ResNeXt")
    resnext.add_argument("--excitation-ratio", type=float,
                         help="SE bottleneck width as a fraction of the channels (default 1/16 = 0.0625)")
    original = parser.add_argument_group("The original fine-tune.py's flags", "refused, with what to use instead")
    original.add_argument("--pretrained-model", action=RefusedFlag, explanation=PRETRAINED_MODEL_REFUSED)
    original.add_argument("--fix-last-layer", action=RefusedFlag, nargs="?", const="",
                          explanation=FIX_LAST_LAYER_REFUSED)
    return net


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m train.train_model", description=__doc__,
                                     formatter_class=HelpFormatter)
    add_network_args(parser)
    add_fit_args(parser)
    add_data_args(parser)
    add_data_aug_args(parser)
    add_cpu_kernel_args(parser)
    return parser


def resnext_parts(args):
    """(registry name, builder keyword arguments) of `--symbol resnext` and its part flags."""
    if args.symbol != "resnext":
        return args.symbol, {}
    if args.num_layers is None:
        raise UserError("--symbol resnext needs --num-layers (50, 101 or 152)")
    name = symbols.resnext_name(args.num_layers, args.num_conv_groups or 32, args.use_squeeze_excitation)
    if args.excitation_ratio is None:
        return name, {}
    if not args.use_squeeze_excitation:
        raise UserError("--excitation-ratio: only with --use-squeeze-excitation")
    return name, {"se_ratio": symbols.se_ratio_of(args.excitation_ratio)}


def stored_feature_layer(symbol_path):
    """The feature layer that PREFIX-input.json beside PREFIX-symbol.json names (train.import_weights
    and training write it), or None."""
    settings = stored_input_settings(symbol_path)[1]
    return settings.feature_layer if settings else None


def feature_symbol(args):
    """The features of --symbol, cut at --feature-layer when given (fit reads the layer off the graph)."""
    if args.symbol.endswith(".json") or os.path.sep in args.symbol:
        check_input_file(args.symbol, "symbol")  # "not found" before asking for its --feature-layer
        layer = args.feature_layer or stored_feature_layer(args.symbol)
        if not layer:
            raise UserError(f"{args.symbol}: a symbol file without input settings beside it needs --feature-layer "
                            "(flatten0 for ResNet/ResNeXt/SE-ResNeXt, flatten for DPN, pool5 for DenseNet)")
        return cut_at(load_symbol(args.symbol), layer, args.symbol)
    name, architecture = resnext_parts(args)
    features, layer = symbols.build_features(name, **architecture)
    if args.feature_layer and args.feature_layer != layer:
        return cut_at(features, args.feature_layer, f"symbol {name}")
    return features


def head_weights(args):
    """The loss weights of --head-weights (the class head's first), or rwightman's; checked."""
    text = args.head_weights or DEFAULT_HEAD_WEIGHTS
    try:
        weights = [float(value) for value in text.split(",")]
    except ValueError:
        weights = []
    if not weights or min(weights) < 0 or weights[0] == 0:
        raise UserError(f"--head-weights {text}: expected comma-separated loss weights >= 0, the class head's first "
                        "and above 0, such as 0.8,0.1,0.1")
    return weights


def check_level_heads(args):
    """--head-weights only with --level-heads, one weight per head of the training .rec's label vectors."""
    if args.head_weights is not None and not args.level_heads:
        raise UserError(f"--head-weights {args.head_weights}: only with --level-heads")
    if args.level_heads and len(head_weights(args)) != 1 + len(args.level_head_kinds):
        raise UserError(f"--head-weights {args.head_weights or DEFAULT_HEAD_WEIGHTS}: {args.data_train} gives "
                        f"{1 + len(args.level_head_kinds)} heads (the class and {', '.join(args.level_head_kinds)}); "
                        "give one weight each")


def build_network(args):
    """The network to train: the features of --symbol under the classifier head (and, with --level-heads, the
    level heads of the training .rec's label columns)."""
    level_heads, class_weight = (), None
    if args.level_heads:
        class_weight, *weights = head_weights(args)
        level_heads = tuple(zip(args.level_head_kinds, args.level_head_classes, weights))
    return attach_classifier(feature_symbol(args), args.num_classes, args.dropout_ratio, args.smooth_alpha,
                             float16=args.dtype == "float16", level_heads=level_heads, class_weight=class_weight)


def ignored_names(args):
    """--ignore-arg-names as a set: space-separated (the original's) or comma-separated items."""
    return {name for item in args.ignore_arg_names for name in item.split(",") if name}


def check_args(args):
    if not args.symbol:
        raise UserError("--symbol is required (see --list-symbols)")
    if args.dtype == "float16" and (not args.gpus.strip() or args.gpus.strip().startswith("cpu:")):
        raise UserError("--dtype float16 needs --gpus with GPU ids: MXNet has no float16 GEMM on the CPU")
    for flag in ("batch_size", "num_epochs"):
        if getattr(args, flag) <= 0:
            raise UserError(f"--{flag.replace('_', '-')} {getattr(args, flag)}: must be at least 1")
    module_contexts(args)  # ids and GPUs of this build, and --bn-groups, before the data or the network
    if args.load_epoch < 0:
        raise UserError(f"--load-epoch {args.load_epoch}: must be 0 (a fresh run) or a checkpoint number")
    if not 0.0 <= args.smooth_alpha < 1.0:
        raise UserError(f"--smooth-alpha {args.smooth_alpha}: must be in [0, 1)")
    if args.head_weights is not None:
        head_weights(args)  # its form now; its count once the .rec says how many heads (check_level_heads)
    given = [f"--{p.replace('_', '-')}" for p in RESNEXT_PARTS if getattr(args, p) not in (None, False)]
    if given and args.symbol != "resnext":
        raise UserError(f"{', '.join(given)}: only with --symbol resnext; {args.symbol} names its network")


def check_resumed_labels(args):
    """A resumed run trains on labels of the kind, count and category table its checkpoints were
    trained on (their PREFIX-input.json; an older one without them is not checked)."""
    if not args.load_epoch or not args.model_prefix:
        return
    path = input_settings_path(args.model_prefix)
    stored = read_input_settings(path)
    if stored is None:
        return
    for name in ("num_classes", "label_kind", "categories_digest"):
        recorded, now = getattr(stored, name), getattr(args, name)
        if recorded is not None and now is not None and recorded != now:
            raise UserError(f"{path}: its checkpoints were trained with {name} {recorded}, this run's "
                            f"{args.data_train or '--benchmark'} has {now}; resume on the data it was trained on")
    recorded, now = stored.mosaic_layout, input_settings(args).mosaic_layout
    if recorded != now:
        def kind(layout):
            return "single pictures" if layout is None else f"product mosaics {layout}"
        raise UserError(f"{path}: its checkpoints were trained on {kind(recorded)}, this run's {args.data_train} holds "
                        f"{kind(now)}; resume on the data it was trained on")
    # None: the class head alone, as every checkpoint from before level heads
    recorded, now = stored.level_head_kinds or (), args.level_head_kinds or ()
    if recorded != now:
        raise UserError(f"{path}: its checkpoints were trained with " +
                        (f"the level heads {', '.join(recorded)}" if recorded else "the class head alone") +
                        ", this run has " + (f"the level heads {', '.join(now)}" if now else "the class head alone") +
                        " (--level-heads); resume as it was trained")


def main(argv=None):
    args = build_parser().parse_args(argv)
    if "dist" in args.kv_store and os.environ.get("DMLC_ROLE") == "worker":
        return exit_hard_on_error(_main, args)
    return _main(args)


def exit_hard_on_error(run, args):
    """A distributed worker that fails must end now: a normal interpreter exit waits for the
    parameter servers to say goodbye, which they never do after an error; the launcher then
    sees the non-zero exit and stops the run."""
    try:
        return run(args)
    except BaseException as exc:  # noqa: B902
        if isinstance(exc, UserError):
            print(f"error: {exc}", file=sys.stderr, flush=True)
        else:
            traceback.print_exc()
        sys.stdout.flush()
        os._exit(2 if isinstance(exc, UserError) else 1)


def _main(args):
    if args.list_symbols:
        print("\n".join(symbols.list_symbols()))
        return 0
    check_args(args)
    resolve_labels(args)  # the class count the network is built with, from the .rec's X.rec.json
    check_level_heads(args)
    check_resumed_labels(args)
    check_model_prefix(args, inputs=[args.data_train, args.data_val, *args.data_train_extra, args.params,
                                     args.symbol if args.symbol.endswith(".json") else None])
    network = build_network(args)  # the symbol's file checked before the data
    check_data(args)
    use_faster_kernels(args, network, image_shape(args))  # before MXNet's first operator
    arg_params = aux_params = None
    if args.params and not args.load_epoch:
        loaded_args, loaded_aux = load_params(args.params)
        arg_params, aux_params, _ = select_params(network, (1,) + image_shape(args), loaded_args, loaded_aux,
                                                  ignored_names(args), source=args.params,
                                                  ignore_mismatched=args.ignore_mismatched_params)
    result = fit(args, network, arg_params, aux_params, allow_missing=True)
    if result and result.rows:
        last = result.rows[-1]
        log.info("done: %s; last epoch train accuracy %.4f, validation accuracy %s", plural(len(result.rows), "epoch"),
                 float(last.get("train_accuracy", "nan")),
                 f"{float(last['val_accuracy']):.4f}" if "val_accuracy" in last else "-")
    return 0


if __name__ == "__main__":
    run_cli(main)
