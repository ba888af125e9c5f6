"""Fitting: command-line group, learning-rate schedule, optimizer, checkpoints, the Module.fit loop.

The schedule is defined per epoch (`--lr-step-epochs 10,13`: epochs 1-10 at lr,
11-13 at lr*factor, then lr*factor^2) and the optimizer's update counter starts
at `load_epoch * updates_per_epoch`, so a resumed run follows exactly the
schedule of an uninterrupted one.
"""
import logging
import os
import time

import mxnet as mx
import numpy as np

from data.common import UserError, atomic_outputs
from train.data import count_records, get_iterators, updates_per_epoch
from train.lr_schedule import EpochStepScheduler, lr_at_epoch
from train.metrics_log import EpochRecorder

log = logging.getLogger(__name__)

OPTIMIZERS = ("sgd", "nag", "adam", "nadam")


def add_fit_args(parser):
    fit = parser.add_argument_group("Fitting", "devices, optimizer, schedule and checkpoints")
    fit.add_argument("--gpus", default="", help="GPU ids, e.g. 0,1,2,3 (empty: CPU)")
    fit.add_argument("--kv-store", default="device",
                     help="kvstore: local, device, nccl (multi-GPU), dist_sync, dist_device_sync")
    fit.add_argument("--num-epochs", type=int, default=20, help="last epoch to train (1-based count)")
    fit.add_argument("--batch-size", type=int, default=512, help="images per update over all devices")
    fit.add_argument("--optimizer", default="nadam", choices=OPTIMIZERS, help="the solution used nadam")
    fit.add_argument("--lr", type=float, default=0.0001, help="initial learning rate")
    fit.add_argument("--lr-factor", type=float, default=0.2, help="lr multiplier at each step epoch")
    fit.add_argument("--lr-step-epochs", default="10,13", help="epochs after which lr is multiplied")
    fit.add_argument("--wd", type=float, default=0.00004, help="weight decay")
    fit.add_argument("--mom", type=float, default=0.9, help="momentum (sgd, nag) or beta1 (adam, nadam)")
    fit.add_argument("--model-prefix", help="checkpoints PREFIX-symbol.json and PREFIX-%%04d.params")
    fit.add_argument("--load-epoch", type=int, default=0, help="resume from PREFIX-%%04d.params of this epoch")
    fit.add_argument("--top-k", type=int, default=5, help="also report top-k accuracy (0: off)")
    fit.add_argument("--disp-batches", type=int, default=20, help="log speed and metrics every N batches")
    fit.add_argument("--dtype", default="float32", choices=("float32", "float16"),
                     help="float16: mixed precision on GPUs (multi-precision optimizer)")
    fit.add_argument("--seed", type=int, default=0, help="seed of the data order and the initialisation")
    return fit


def contexts(args):
    if not args.gpus.strip():
        return [mx.cpu()]
    try:
        return [mx.gpu(int(i)) for i in args.gpus.split(",")]
    except ValueError:
        raise UserError(f"--gpus {args.gpus}: expected comma-separated ids such as 0,1") from None


def step_epochs(args):
    if not args.lr_step_epochs.strip():
        return []
    try:
        return sorted(int(e) for e in args.lr_step_epochs.split(","))
    except ValueError:
        raise UserError(f"--lr-step-epochs {args.lr_step_epochs}: expected epochs such as 10,13") from None


def make_optimizer(args, epoch_updates, begin_epoch, sync_workers=1):
    """The optimizer, its update counter already at `begin_epoch` (gradients of `sync_workers` are summed)."""
    scheduler = EpochStepScheduler(args.lr, args.lr_factor, step_epochs(args), epoch_updates)
    params = dict(learning_rate=args.lr, wd=args.wd, lr_scheduler=scheduler,
                  rescale_grad=1.0 / (args.batch_size * sync_workers),
                  begin_num_update=begin_epoch * epoch_updates,
                  multi_precision=args.dtype == "float16")
    if args.optimizer in ("sgd", "nag"):
        params["momentum"] = args.mom
    else:
        params["beta1"] = args.mom
    optimizer = mx.optimizer.create(args.optimizer, **params)
    return optimizer


def make_kvstore(args):
    devices = contexts(args)
    if "dist" not in args.kv_store and len(devices) == 1:
        return None  # one device: no kvstore needed
    try:
        kv = mx.kvstore.create(args.kv_store)
    except mx.base.MXNetError as exc:
        raise UserError(f"--kv-store {args.kv_store}: {str(exc).splitlines()[0]}") from None
    log.info("kvstore %s: worker %d of %d", kv.type, kv.rank, kv.num_workers)
    return kv


def checkpoint_paths(prefix, epoch):
    return f"{prefix}-symbol.json", f"{prefix}-{epoch:04d}.params"


def save_checkpoint(prefix, epoch, symbol, arg_params, aux_params):
    """PREFIX-symbol.json and PREFIX-%04d.params, each written to a temporary name then renamed."""
    symbol_path, params_path = checkpoint_paths(prefix, epoch)
    saved = {f"arg:{k}": v.as_in_context(mx.cpu()) for k, v in arg_params.items()}
    saved.update({f"aux:{k}": v.as_in_context(mx.cpu()) for k, v in aux_params.items()})
    with atomic_outputs(symbol_path, params_path) as (tmp_symbol, tmp_params):
        symbol.save(tmp_symbol)
        mx.nd.save(tmp_params, saved)
    log.info("saved checkpoint %s", params_path)


def load_params(params_path):
    """(arg_params, aux_params) of a .params file in the format of MXNet's checkpoints."""
    if not os.path.isfile(params_path):
        raise UserError(f"{params_path}: parameter file not found")
    try:
        saved = mx.nd.load(params_path)
    except mx.base.MXNetError as exc:
        raise UserError(f"{params_path}: not a readable MXNet .params file (truncated or corrupt): "
                        f"{str(exc).splitlines()[0]}") from None
    if not isinstance(saved, dict):
        raise UserError(f"{params_path}: holds a list of arrays, not named parameters")
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


def eval_metrics(args):
    metrics = [Accuracy(name="accuracy"), CrossEntropy(name="cross-entropy")]
    if 1 < args.top_k < args.num_classes:  # top-k of k or more classes is always 1
        metrics.insert(1, TopKAccuracy(top_k=args.top_k, name="top_k_accuracy"))
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


def fit(args, symbol, arg_params=None, aux_params=None, allow_missing=False):
    """Train `symbol` on the iterators of `args`; returns the EpochRecorder with per-epoch metrics."""
    kv = make_kvstore(args)
    if args.num_examples <= 0 and not args.benchmark:
        args.num_examples = count_records(args.data_train) if args.data_train else 0
    train, val = get_iterators(args, kv)
    if args.test_io:
        test_io(train, disp=args.disp_batches)
        return None
    if args.benchmark and args.num_examples <= 0:
        args.num_examples = train.batches_per_epoch * args.batch_size
    epoch_updates = updates_per_epoch(args, kv)
    begin_epoch = args.load_epoch
    if begin_epoch:
        if not args.model_prefix:
            raise UserError("--load-epoch needs --model-prefix")
        arg_params, aux_params = load_params(checkpoint_paths(args.model_prefix, begin_epoch)[1])
        log.info("resuming after epoch %d at lr %g", begin_epoch,
                 lr_at_epoch(args.lr, args.lr_factor, step_epochs(args), begin_epoch))
    if begin_epoch >= args.num_epochs:
        raise UserError(f"--load-epoch {begin_epoch} is not before --num-epochs {args.num_epochs}")
    sync = kv is not None and "dist" in kv.type and "_sync" in kv.type
    optimizer = make_optimizer(args, epoch_updates, begin_epoch, kv.num_workers if sync else 1)
    rank = kv.rank if kv is not None else 0
    recorder = EpochRecorder(args.model_prefix if rank == 0 else None, args.batch_size, optimizer,
                             begin_epoch=begin_epoch, has_validation=val is not None)
    epoch_end = [recorder.epoch_end]
    if args.model_prefix and rank == 0:
        prefix_dir = os.path.dirname(os.path.abspath(args.model_prefix))
        os.makedirs(prefix_dir, exist_ok=True)
        epoch_end.insert(0, lambda epoch, sym, arg, aux: save_checkpoint(args.model_prefix, epoch + 1, sym, arg, aux))
    module = mx.mod.Module(symbol, context=contexts(args))
    mx.random.seed(args.seed)
    module.fit(train, eval_data=val, eval_metric=eval_metrics(args), kvstore=kv or "local",
               optimizer=optimizer, initializer=mx.init.MSRAPrelu(), arg_params=arg_params,
               aux_params=aux_params, allow_missing=allow_missing, begin_epoch=begin_epoch,
               num_epoch=args.num_epochs,
               batch_end_callback=[mx.callback.Speedometer(args.batch_size, args.disp_batches, auto_reset=False),
                                   recorder.batch_end],
               epoch_end_callback=epoch_end, eval_end_callback=recorder.eval_end)
    recorder.finish()
    if kv is not None and "dist" in kv.type:
        # Every worker finishes all its work before any starts shutting the kvstore down: a worker
        # still waiting on the servers while another entered ps-lite's exit barrier hung at exit.
        mx.nd.waitall()
        kv._barrier()
    recorder.module, recorder.kvstore = module, kv  # for callers that inspect the trained state
    return recorder
