"""Fitting: command-line group, learning-rate schedule, optimizer, checkpoints, the Module.fit loop.

The schedule is defined per epoch (`--lr-step-epochs 10,13`: epochs 1-10 at lr,
11-13 at lr*factor, then lr*factor^2). The optimizer is built as the original's fit
built it: by name inside Module (which sets rescale_grad to 1/batch and exempts biases
and BatchNorm betas from weight decay); Adam and NADAM get only the learning rate and
its schedule (MXNet's betas, no weight decay unless --adam-wd), SGD and NAG momentum,
weight decay and multi-precision.

Checkpoints are written through train.checkpoint, with the input settings of the run
(PREFIX-input.json) and, once per run, its arguments (PREFIX-args.json).
Every checkpoint carries the optimizer state (train.optimizer_state), and --load-epoch
restores it, so a resumed run continues exactly as an uninterrupted one: same moments,
update counter, lr and data order. A checkpoint without state (older, or the original's)
or a stage that changes the optimizer resumes with a fresh optimizer whose counter starts
at 0, as the original did; the schedule is offset so that the epoch still gets its lr.
--fresh-optimizer asks for that fresh start on purpose: train.stages passes it where a recorded
stage begins, because each of the original's logged restarts built a new optimizer (its checkpoints
held only the weights); a LOAD_EPOCH resume inside a stage still restores the saved state.

Parameters that are not loaded (with --params: the new classifier) are initialised by --initializer:
MSRAPrelu (factor avg, slope 0.25) as the original's common/fit.py from 12 Nov 2017 on (train_model.py),
or Xavier (gaussian, factor in, magnitude 2) as before it (the runs of its fine-tune.py).
"""
import dataclasses
import logging
import os
import time

import mxnet as mx
import numpy as np

from cli.files import check_outputs, same_file
from cli.runner import UserError
from train import checkpoint, optimizer_state
from train.devices import BN_GROUPS_HELP, DEVICES_HELP, describe_contexts, training_contexts
from data.recordio import count_records
from train.data import epoch_seed, get_iterators, input_settings, updates_per_epoch
from train.finetune import CLASS_OUTPUT, LEVEL_HEAD_NAMES, feature_layer_of, head_label_names, label_names_of
from train.lr_schedule import EpochStepScheduler
from train.metrics_log import EpochRecorder

log = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "nag", "adam", "nadam")
# The original's two initialisers: its common/fit.py used Xavier until commit 5177513 (12 Nov 2017),
# MSRAPrelu from then on.
INITIALIZERS = {
    "msra": lambda: mx.init.MSRAPrelu(factor_type="avg", slope=0.25),
    "xavier": lambda: mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2),
}
EPOCH_NUMBERING = ("epochs are numbered from 1, as the checkpoints (PREFIX-0001.params after the first), the "
                   "metrics and the curve; MXNet's own lines count from 0: its Epoch[0] is epoch 1")


def add_fit_args(parser):
    fit = parser.add_argument_group("Fitting", "devices, optimizer, schedule and checkpoints")
    fit.add_argument("--gpus", default="", help=DEVICES_HELP + " (default: %(default)r)")
    fit.add_argument("--bn-groups", type=int, default=None, metavar="N", help=BN_GROUPS_HELP)
    fit.add_argument("--kv-store", default="device",
                     help="kvstore: local, device, nccl (multi-GPU), dist_sync, dist_device_sync")
    fit.add_argument("--num-epochs", "--num-epoch", dest="num_epochs", type=int, default=20,
                     help="last epoch to train (1-based count; --num-epoch: the original's spelling)")
    fit.add_argument("--batch-size", type=int, default=512, help="images per update over all devices")
    fit.add_argument("--optimizer", default="nadam", choices=OPTIMIZERS, help="the solution used nadam")
    fit.add_argument("--lr", type=float, default=0.0001, help="initial learning rate")
    fit.add_argument("--lr-factor", type=float, default=0.2, help="lr multiplier at each step epoch")
    fit.add_argument("--lr-step-epochs", default="10,13", help="epochs after which lr is multiplied")
    fit.add_argument("--wd", type=float, default=0.00004,
                     help="weight decay of sgd and nag (not of biases and BatchNorm betas)")
    fit.add_argument("--adam-wd", action="store_true",
                     help="apply --wd to adam/nadam too; the original did not (their weight decay was 0)")
    fit.add_argument("--mom", type=float, default=0.9,
                     help="momentum of sgd and nag (adam and nadam keep MXNet's beta1 0.9, as in the original)")
    fit.add_argument("--model-prefix", help="required (except with --test-io or --benchmark): checkpoints "
                                            "PREFIX-symbol.json, PREFIX-%%04d.params, PREFIX-input.json (the "
                                            "input settings prediction reads), PREFIX-args.json (the arguments "
                                            "of each run), PREFIX-metrics.csv, PREFIX-curve.png; its folder is made")
    fit.add_argument("--force", action="store_true",
                     help="train from --load-epoch 0 over a prefix that already has checkpoints (refused without)")
    fit.add_argument("--load-epoch", type=int, default=0,
                     help="resume from PREFIX-%%04d.params of this epoch and the optimizer state saved with it "
                          "(with --params another file: those weights, numbered from this epoch, a fresh "
                          "optimizer, as the original)")
    fit.add_argument("--fresh-optimizer", action="store_true",
                     help="with --load-epoch: start a fresh optimizer (update counter 0) instead of restoring "
                          "the saved state, as every logged restart of the original did (the model scripts pass "
                          "it where a recorded stage begins)")
    fit.add_argument("--initializer", default="msra", choices=sorted(INITIALIZERS),
                     help="initialiser of the parameters not loaded (with --params: the new classifier): msra, "
                          "MSRAPrelu(avg, 0.25) as the original's train_model.py runs (M04, M08, M11-M14); xavier, "
                          "Xavier(gaussian, in, 2) as its older fine-tune.py runs (M01-M03, M05-M07, M09, M10)")
    fit.add_argument("--top-k", type=int, default=5, help="also report top-k accuracy (0: off)")
    fit.add_argument("--disp-batches", type=int, default=100,
                     help="log speed and metrics every N batches (the original's runs: 100)")
    fit.add_argument("--dtype", default="float32", choices=("float32", "float16"),
                     help="float16: mixed precision on GPUs (multi-precision optimizer)")
    fit.add_argument("--seed", type=int, default=0,
                     help="seed of the initialisation and, with the epoch, of each epoch's data order, "
                          "random augmentation and dropout")
    fit.add_argument("--monitor", type=int, default=0,
                     help="log statistics of every array (weights, gradients, outputs) every N batches (0: off)")
    return fit


def step_epochs(args):
    if not args.lr_step_epochs.strip():
        return []
    try:
        return sorted(int(e) for e in args.lr_step_epochs.split(","))
    except ValueError:
        raise UserError(f"--lr-step-epochs {args.lr_step_epochs}: expected epochs such as 10,13") from None


def optimizer_settings(args, scheduler):
    """Keyword arguments of the optimizer, as the original's fit gave them (Module adds rescale_grad,
    the symbol and the parameter names)."""
    settings = dict(learning_rate=args.lr, lr_scheduler=scheduler)
    if args.optimizer in ("sgd", "nag"):
        settings.update(momentum=args.mom, wd=args.wd, multi_precision=True)
    else:  # adam, nadam: MXNet's beta1/beta2/epsilon; weight decay only when asked
        if args.adam_wd:
            settings["wd"] = args.wd
        if args.dtype == "float16":  # the original never trained in float16; without it Adam drifts
            settings["multi_precision"] = True
    return settings


def describe_optimizer(args, settings):
    """One line: what the optimizer actually gets (flags it ignores said so)."""
    adam_like = args.optimizer in ("adam", "nadam")
    parts = [f"optimizer {args.optimizer}: lr {args.lr:g}",
             "beta1 0.9, beta2 0.999 (MXNet's; --mom not used)" if adam_like else f"momentum {args.mom:g}"]
    if settings.get("wd"):
        parts.append(f"weight decay {settings['wd']:g} (not on biases and BatchNorm betas)")
    elif adam_like:
        parts.append("weight decay 0 (--wd is not applied to adam/nadam, as in the original; --adam-wd applies it)")
    else:
        parts.append("weight decay 0")
    parts.append(f"multi-precision {'on' if settings.get('multi_precision') else 'off'}, no gradient clipping, "
                 "gradients scaled by 1/batch")
    return ", ".join(parts)


def make_optimizer(args, epoch_updates, begin_epoch=0, sync_workers=1):
    """An optimizer with fit's settings, for code that drives a Module by hand (fit itself has Module
    build it by name, which also exempts biases and BatchNorm betas from weight decay). A fresh one:
    its update counter starts at 0 at `begin_epoch`."""
    scheduler = EpochStepScheduler(args.lr, args.lr_factor, step_epochs(args), epoch_updates, begin_epoch)
    return mx.optimizer.create(args.optimizer, rescale_grad=1.0 / (args.batch_size * sync_workers),
                               **optimizer_settings(args, scheduler))


def module_contexts(args):
    """The Module's contexts: the devices of --gpus, each as many times as --bn-groups asks."""
    return training_contexts(args.gpus, args.bn_groups, args.batch_size, args.kv_store)


def make_kvstore(args):
    if "dist" not in args.kv_store and len(module_contexts(args)) == 1:
        return None  # one executor: no kvstore needed
    try:
        kv = mx.kvstore.create(args.kv_store)
    except mx.base.MXNetError as exc:
        raise UserError(f"--kv-store {args.kv_store}: {checkpoint.mxnet_reason(exc)}") from None
    log.info("kvstore %s: worker %d of %d", kv.type, kv.rank, kv.num_workers)
    return kv


def check_model_prefix(args, inputs=()):
    """Before any work: --model-prefix given, its folder made and writable, and no earlier run's
    checkpoints trained over unless resumed from (--load-epoch) or --force."""
    if args.test_io or args.benchmark:
        return
    prefix = args.model_prefix
    if not prefix:
        raise UserError("--model-prefix is required: where the checkpoints go (e.g. models/M10/M10)")
    if prefix.endswith(os.sep) or os.path.isdir(prefix):
        raise UserError(f"--model-prefix {prefix}: is a directory; give a folder and a name, "
                        f"e.g. {prefix.rstrip(os.sep)}/NAME")
    folder = os.path.dirname(os.path.abspath(prefix))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--model-prefix {prefix}: cannot make its folder {folder}: {exc.strerror}") from None
    earlier = checkpoint.existing_checkpoints(prefix)
    if earlier and not args.load_epoch:
        if not args.force:
            raise UserError(f"--model-prefix {prefix}: an earlier run's checkpoints are there "
                            f"({_listing(earlier)}); resume with --load-epoch N, choose another prefix, or "
                            "pass --force to train over them")
        log.warning("--force: training over %d files of an earlier run at %s; checkpoints past epoch %d stay "
                    "from that run", len(earlier), prefix, args.num_epochs)
    written = checkpoint.written_files(prefix, range(args.load_epoch + 1, args.num_epochs + 1))
    check_outputs(written + [f"{prefix}-metrics.csv", f"{prefix}-curve.png"], force=True, inputs=inputs)


def _listing(paths, shown=3):
    names = [os.path.basename(p) for p in paths[:shown]]
    return ", ".join(names) + (f" and {len(paths) - shown} more" if len(paths) > shown else "")


class _SkipPadding:
    """Metric mixin: samples labelled -1 (padding of the last validation batch) are not counted."""

    def update(self, labels, preds):
        kept_labels, kept_preds = [], []
        for label, pred in zip(labels, preds):
            label_np = label.asnumpy()
            keep = np.flatnonzero(label_np >= 0)
            if len(keep) == len(label_np):
                kept_labels.append(label)
                kept_preds.append(pred)
            elif len(keep):
                kept_labels.append(mx.nd.array(label_np[keep]))
                kept_preds.append(mx.nd.array(pred.asnumpy()[keep]))
        if kept_labels:
            super().update(kept_labels, kept_preds)


class Accuracy(_SkipPadding, mx.metric.Accuracy):
    pass


class TopKAccuracy(_SkipPadding, mx.metric.TopKAccuracy):
    pass


class CrossEntropy(_SkipPadding, mx.metric.CrossEntropy):
    pass


def level_head_names(args):
    """The names of the run's level heads (--level-heads; train.finetune.LEVEL_HEAD_NAMES), none without."""
    return [LEVEL_HEAD_NAMES[kind] for kind in args.level_head_kinds or ()]


def eval_metrics(args):
    """Accuracy, top-k and cross-entropy of the class head; with level heads, also each one's accuracy (NAME_accuracy),
    each metric reading its own head's output and label."""
    heads = level_head_names(args)
    # with several heads each metric names its own; one head: MXNet's defaults, as always
    of_class = dict(output_names=[CLASS_OUTPUT], label_names=head_label_names()) if heads else {}
    metrics = [Accuracy(name="accuracy", **of_class), CrossEntropy(name="cross-entropy", **of_class)]
    # top-k of k or more classes is always 1 (num_classes None: not yet read from the .rec, train.data.resolve_labels)
    if 1 < args.top_k and (args.num_classes is None or args.top_k < args.num_classes):
        metrics.insert(1, TopKAccuracy(top_k=args.top_k, name="top_k_accuracy", **of_class))
    for name, label in zip(heads, head_label_names(args.level_head_kinds or ())[1:]):
        metrics.append(Accuracy(name=f"{name}_accuracy", output_names=[f"softmax_{name}_output"], label_names=[label]))
    return mx.metric.CompositeEvalMetric(metrics)


def test_io(train, batches=0, disp=20):
    """Read the training data only; returns images/s."""
    start, images = time.perf_counter(), 0
    for n, batch in enumerate(train, 1):
        images += batch.data[0].shape[0] - (batch.pad or 0)
        if n % disp == 0:
            log.info("batch %d: %.1f images/s", n, images / (time.perf_counter() - start))
        if batches and n >= batches:
            break
    speed = images / (time.perf_counter() - start)
    log.info("test-io: %d images, %.1f images/s", images, speed)
    return speed


class _Module(mx.mod.Module):
    """Module that calls `after_optimizer(self)` once it has built its optimizer and updater,
    before the first update: where a resumed run puts back the saved optimizer state."""

    def __init__(self, symbol, context, after_optimizer):
        heads = label_names_of(symbol)
        # a network with level heads takes a label per head; one head: Module's own softmax_label, as always
        super().__init__(symbol, context=context, **({"label_names": heads} if len(heads) > 1 else {}))
        self._after_optimizer = after_optimizer

    def init_optimizer(self, *args, **kwargs):
        super().init_optimizer(*args, **kwargs)
        self._after_optimizer(self)


def _is_dist(kv):
    return kv is not None and "dist" in kv.type


def load_resume_point(args, kv):
    """(arg_params, aux_params, saved optimizer state or None) of checkpoint --load-epoch."""
    if not args.model_prefix:
        raise UserError("--load-epoch needs --model-prefix")
    if args.load_epoch >= args.num_epochs:
        raise UserError(f"--load-epoch {args.load_epoch} is not before --num-epochs {args.num_epochs}")
    params_path = checkpoint.checkpoint_paths(args.model_prefix, args.load_epoch)[1]
    if args.params and not same_file(args.params, params_path):
        # The original's meaning of the two flags together: weights from --params, epochs numbered
        # from --load-epoch (M08's NADAM runs took epoch 15's weights as epoch 18).
        arg_params, aux_params = checkpoint.load_params(args.params)
        log.warning("weights from --params %s, numbered as epoch %d; resuming with a fresh %s optimizer "
                    "(update counter 0)", args.params, args.load_epoch, args.optimizer)
        return arg_params, aux_params, None
    arg_params, aux_params = checkpoint.load_params(params_path)
    if args.fresh_optimizer:
        log.info("--fresh-optimizer: a recorded stage begins; a fresh %s optimizer (update counter 0), as the "
                 "original's every restart", args.optimizer)
        return arg_params, aux_params, None
    if _is_dist(kv):
        log.warning("%s: the optimizer state of a distributed run lives on its parameter servers and is "
                    "not restored; resuming with a fresh %s optimizer (update counter 0)", kv.type, args.optimizer)
        return arg_params, aux_params, None
    return arg_params, aux_params, optimizer_state.read_state(params_path, args.optimizer)


def _restorer(args, saved):
    def restore(module):
        if saved is not None and not optimizer_state.restore_state(module, *saved):
            log.warning("resuming with a fresh %s optimizer (update counter 0)", args.optimizer)
    return restore


def _writes_checkpoints(args, kv):
    """Whether this process writes the run's files at --model-prefix (rank 0 of a distributed run)."""
    return bool(args.model_prefix) and (kv is None or kv.rank == 0)


def _epoch_end_callbacks(args, kv, recorder, module, settings):
    """Checkpoint (rank 0, with the input settings, and the optimizer state where it can be read),
    seed the next epoch's random generator, record the metrics."""
    def save(epoch, symbol, arg_params, aux_params):
        write_state = None
        if optimizer_state.readable(module):
            def write_state(params, arrays, description):
                optimizer_state.write_state(module, args.optimizer, epoch + 1, params, arrays, description)
        checkpoint.save_checkpoint(args.model_prefix, epoch + 1, symbol, arg_params, aux_params, settings,
                                   write_state)

    def seed_next_epoch(epoch, *_):
        mx.random.seed(epoch_seed(args.seed, epoch + 1))

    callbacks = [seed_next_epoch, recorder.epoch_end]
    if _writes_checkpoints(args, kv):
        callbacks.insert(0, save)
        if _is_dist(kv):
            log.warning("%s: optimizer states live on the parameter servers and are not saved with the "
                        "checkpoints; a resume will start a fresh optimizer", kv.type)
    return callbacks


@dataclasses.dataclass
class FitResult:
    """What `fit` trained: the metrics rows of its epochs (train.metrics_log's columns), the
    Module with the trained weights, and the kvstore (None on one device)."""
    rows: list
    module: mx.mod.Module
    kvstore: object = None


def fit(args, symbol, arg_params=None, aux_params=None, allow_missing=False):
    """Train `symbol` on the iterators of `args`; returns a FitResult (None with --test-io)."""
    log.info("start with arguments %s", " ".join(f"{name}={value!r}" for name, value in sorted(vars(args).items())))
    kv = make_kvstore(args)
    if args.num_examples <= 0 and not args.benchmark:
        args.num_examples = count_records(args.data_train) if args.data_train else 0
    begin_epoch, saved = args.load_epoch, None
    train, val = get_iterators(args, kv, begin_epoch)
    if args.test_io:
        test_io(train, disp=args.disp_batches)
        return None
    if begin_epoch:
        arg_params, aux_params, saved = load_resume_point(args, kv)
    if args.benchmark and args.num_examples <= 0:
        args.num_examples = train.batches_per_epoch * args.batch_size
    scheduler = EpochStepScheduler(args.lr, args.lr_factor, step_epochs(args), updates_per_epoch(args, kv),
                                   begin_epoch)
    settings = optimizer_settings(args, scheduler)
    log.info("%s; epoch %d at lr %g", describe_optimizer(args, settings), begin_epoch + 1,
             scheduler.lr_of_epoch(begin_epoch))
    log.info(EPOCH_NUMBERING)
    writes = _writes_checkpoints(args, kv)
    if writes:
        os.makedirs(os.path.dirname(os.path.abspath(args.model_prefix)), exist_ok=True)
        checkpoint.record_arguments(args.model_prefix, vars(args), resumed=begin_epoch > 0)
    recorder = EpochRecorder(args.model_prefix if writes else None, args.batch_size,
                             scheduler, begin_epoch=begin_epoch, has_validation=val is not None,
                             head_names=level_head_names(args))
    device_contexts = module_contexts(args)
    log.info(describe_contexts(device_contexts, args.batch_size))
    module = _Module(symbol, device_contexts, _restorer(args, saved))
    monitor = mx.mon.Monitor(args.monitor, pattern=".*") if args.monitor > 0 else None
    mx.random.seed(args.seed if not begin_epoch else epoch_seed(args.seed, begin_epoch))
    module.fit(train, eval_data=val, eval_metric=eval_metrics(args), kvstore=kv or "local",
               optimizer=args.optimizer, optimizer_params=settings, initializer=INITIALIZERS[args.initializer](),
               arg_params=arg_params, aux_params=aux_params, allow_missing=allow_missing,
               begin_epoch=begin_epoch, num_epoch=args.num_epochs, monitor=monitor,
               batch_end_callback=[mx.callback.Speedometer(args.batch_size, args.disp_batches, auto_reset=False),
                                   recorder.batch_end],
               epoch_end_callback=_epoch_end_callbacks(args, kv, recorder, module,
                                                       input_settings(args, feature_layer_of(symbol))),
               eval_end_callback=recorder.eval_end)
    recorder.finish()
    if _is_dist(kv):
        # Every worker finishes all its work before any starts shutting the kvstore down: a worker
        # still waiting on the servers while another entered ps-lite's exit barrier hung at exit.
        mx.nd.waitall()
        kv._barrier()
    return FitResult(recorder.rows, module, kv)
