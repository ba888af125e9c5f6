"""Training input: command-line groups for data and augmentation, and the iterators built from them.

The `.rec` files of the data stage are read with MXNet's `ImageRecordIter` (JPEG
decoding and augmentation in C++ threads). `--benchmark 1` swaps in synthetic
batches to measure compute alone.

The training iterator is built anew for every epoch with a shuffle seed and an augmentation
seed derived from (--seed, epoch), so that epoch N has the same images in the same order with
the same random flips whether the run was interrupted or not, and every epoch has exactly
ceil(images / batch size) batches. (A single iterator reset N times would not: its reset()
draws the next shuffle from one random stream, and with round_batch's wrap-around an epoch
starts where the previous one stopped.)

The order within an epoch (--data-order):
- chunks, the original's: the original's runs gave ImageRecordIter no .idx, so it read the
  once-shuffled .rec from start to end every epoch, one 8 MB chunk at a time (about 1,800 of
  Kaggle's pictures), shuffling the records within each chunk only. Omitting the .idx here
  does the same.
- global: with the .idx, a new permutation of all the records every epoch; needed for a .rec
  written in file order (data.bson2rec --no-shuffle).
Both are deterministic with several decoding threads: each thread's share of a chunk or a
batch is fixed.

--data-train-extra X.rec ... (not the original's; e.g. data.hash_labelled_rec's test pictures) adds
training .rec files read in full every epoch beside --data-train: each file has its own per-epoch
iterator (seeded from (--seed, epoch, file index); the --data-train file keeps the seed it has alone),
and the epoch is their batches, ceil(records / batch size) of each file, in a random order seeded from
(--seed, epoch), each batch from one file. Their X.rec.json must describe the training .rec's labels.

A .rec of label vectors (data.bson2rec --level-labels; not the original's) trains the level heads of
train.train_model --level-heads: ImageRecordIter reads its label_width labels per record, and each batch's
label vector is handed over split into one label per head (LabelSplitIter), under the label names of the
heads' SoftmaxOutputs (train.finetune.head_label_names).
"""
import logging
import math
import os
import zlib

import mxnet as mx
import numpy as np

from cli.files import check_input_file
from cli.runner import UserError
from data.categories import LABEL_KINDS
from data.recordio import count_records, idx_path_of, read_rec_info, rec_info_path, record_labels, record_offsets
from train.checkpoint import InputSettings
from train.finetune import LEVEL_HEAD_NAMES, head_label_names

log = logging.getLogger(__name__)


LABEL_SAMPLE = 1000000  # records per .rec whose labels are checked by default: a few seconds (see README)
DEFAULT_NUM_CLASSES = 5270  # Kaggle's categories: the class count of a .rec without X.rec.json, and of --benchmark
DEFAULT_LABEL_KIND = "class_id"
DATA_ORDERS = ("chunks", "global")  # see the module's docstring


def add_data_args(parser):
    data = parser.add_argument_group("Data", "the .rec files and how images are fed to the network")
    data.add_argument("--data-train", help="training .rec (its .idx beside it)")
    data.add_argument("--data-val", help="validation .rec (optional)")
    data.add_argument("--data-train-extra", nargs="+", action="extend", default=[], metavar="REC",
                      help="more training .rec files, each read in full every epoch beside --data-train (e.g. "
                           "data.hash_labelled_rec's test pictures), their batches interleaved in a seeded random "
                           "order, each batch from one file; their X.rec.json must describe --data-train's labels")
    data.add_argument("--rgb-mean", default="0,0,0",
                      help="per-channel mean subtracted (the solution fed raw 0-255 RGB: 0,0,0)")
    data.add_argument("--rgb-scale", type=float, default=1.0, help="multiplier after the mean (solution: 1.0)")
    data.add_argument("--image-shape", default="3,180,180", help="network input C,H,W")
    data.add_argument("--resize", type=int, default=0,
                      help="resize the shorter edge to this before cropping (0: keep; needed when "
                           "--image-shape is smaller than the stored 180x180 pictures)")
    data.add_argument("--num-classes", type=int, default=None,
                      help="outputs of the classifier (default: the class count in the training .rec's X.rec.json; "
                           f"{DEFAULT_NUM_CLASSES} for a .rec without one, and for --benchmark); a value that "
                           "disagrees with the X.rec.json is refused")
    data.add_argument("--label-kind", default=None, choices=sorted(LABEL_KINDS),
                      help="what the labels are: class_id (data.bson2rec --cate-type 3) or level1_sub_class "
                           "(--cate-type 1) (default: the training .rec's X.rec.json; class_id without one); "
                           "recorded in PREFIX-input.json, from which prediction takes its --cate-level")
    # from X.rec.json (resolve_labels), into PREFIX-input.json; the level heads' only with --level-heads
    parser.set_defaults(categories_digest=None, level_head_kinds=None, level_head_classes=None, mosaic_size=None,
                        mosaic_fill=None)
    data.add_argument("--num-examples", type=int, default=0,
                      help="training images per epoch (0: count the records in the .idx)")
    data.add_argument("--data-order", choices=DATA_ORDERS, default="chunks",
                      help="order of the training records within an epoch: chunks, the original's (the .rec read "
                           "from start to end, shuffled within each 8 MB chunk, about 1,800 pictures); global (a "
                           "new permutation of all records every epoch, through the .idx) (default: %(default)s)")
    data.add_argument("--data-nthreads", "--data-nthread", dest="data_nthreads", type=int, default=6,
                      help="decoding threads, as the original's runs (--data-nthread: the original's spelling)")
    data.add_argument("--inter-method", type=int, default=9, choices=(0, 1, 2, 3, 4, 9, 10),
                      help="interpolation when resizing or warping: 0 nearest, 1 bilinear, 2 cubic, 3 area, "
                           "4 Lanczos, 9 auto (cubic to enlarge, area to shrink, else bilinear), 10 random "
                           "(the original's default: 9)")
    data.add_argument("--check-labels", default=str(LABEL_SAMPLE), metavar="N|all",
                      help="before training, check that the labels of N evenly spaced records of each .rec (all "
                           "when it has fewer; 'all': every record; 0: none) are in [0, --num-classes); read from "
                           "the record headers, no decoding (default: %(default)s)")
    data.add_argument("--benchmark", type=int, default=0, help="1: train on synthetic data (compute speed)")
    data.add_argument("--test-io", type=int, default=0, help="1: only read the data and report images/s")
    return data


def add_data_aug_args(parser):
    aug = parser.add_argument_group("Augmentation", "the solution used only --random-mirror 1")
    aug.add_argument("--random-crop", type=int, default=0, help="1: random crop (solution: 0)")
    aug.add_argument("--random-mirror", type=int, default=1, help="1: random horizontal flip (solution: 1)")
    aug.add_argument("--max-random-h", type=int, default=0, help="max hue change in HSL")
    aug.add_argument("--max-random-s", type=int, default=0, help="max saturation change in HSL")
    aug.add_argument("--max-random-l", type=int, default=0, help="max lightness change in HSL")
    aug.add_argument("--max-random-rotate-angle", type=int, default=0, help="max rotation in degrees")
    aug.add_argument("--max-random-shear-ratio", type=float, default=0.0, help="max shear")
    aug.add_argument("--max-random-scale", type=float, default=1.0, help="max scale of the image")
    aug.add_argument("--min-random-scale", type=float, default=1.0, help="min scale of the image")
    aug.add_argument("--max-random-aspect-ratio", type=float, default=0.0, help="max aspect-ratio change")
    aug.add_argument("--pad-size", type=int, default=0, help="pixels of padding before cropping")
    return aug


def parse_image_shape(text, flag="--image-shape"):
    """C,H,W of a network-input flag (training's --image-shape, prediction's --data-shape)."""
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or shape[0] != 3 or min(shape) <= 0:
        raise UserError(f"{flag} {text}: expected 3,H,W such as 3,180,180")
    return shape


def parse_rgb_mean(text):
    """R,G,B of --rgb-mean (training and prediction)."""
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 3:
        raise UserError(f"--rgb-mean {text}: expected three numbers R,G,B")
    return values


def image_shape(args):
    return parse_image_shape(args.image_shape)


def rgb_mean(args):
    return parse_rgb_mean(args.rgb_mean)


def input_settings(args, feature_layer=None):
    """The input of this run, as its checkpoints record it (train.checkpoint.InputSettings)."""
    return InputSettings(image_shape=image_shape(args), resize=args.resize, rgb_mean=tuple(rgb_mean(args)),
                         rgb_scale=args.rgb_scale, inter_method=args.inter_method, feature_layer=feature_layer,
                         num_classes=args.num_classes, label_kind=args.label_kind,
                         categories_digest=args.categories_digest, level_head_kinds=args.level_head_kinds,
                         level_head_classes=args.level_head_classes, mosaic_size=args.mosaic_size,
                         mosaic_fill=args.mosaic_fill)


def resolve_labels(args):
    """--num-classes and --label-kind from the training .rec's X.rec.json where not given, before any
    work: a given value that disagrees with it, a validation .rec of other labels, an unlabelled
    .rec, or (under --data-order chunks) a training .rec in file order is refused in one line, and so is a
    --data-train-extra .rec whose X.rec.json is missing or describes other labels. A .rec without X.rec.json
    (made before it existed) trains as before (the flags or their defaults, the category table unknown), with
    one warning. With --level-heads the training .rec must hold label vectors (data.bson2rec --level-labels), whose
    columns after the class give the level heads (args.level_head_kinds, args.level_head_classes); without it, it
    must not."""
    args.categories_digest = args.level_head_kinds = args.level_head_classes = None
    args.mosaic_size = args.mosaic_fill = None
    if args.data_train_extra and (args.benchmark or not args.data_train):
        raise UserError("--data-train-extra: only beside --data-train" +
                        (" (--benchmark 1's synthetic batches read no .rec)" if args.benchmark else ""))
    infos = {}
    for rec_path in (() if args.benchmark else (args.data_train, args.data_val)):
        if rec_path:
            check_input_file(rec_path, ".rec")
            infos[rec_path] = read_rec_info(rec_path)
            if infos[rec_path] is None:
                log.warning("%s: no %s beside it (data.bson2rec writes one): its labels are taken as %s of "
                            "--num-classes %d, their category CSV unknown to prediction", rec_path,
                            os.path.basename(rec_info_path(rec_path)), args.label_kind or DEFAULT_LABEL_KIND,
                            args.num_classes or DEFAULT_NUM_CLASSES)
            elif infos[rec_path].label_kind is None:
                raise UserError(f"{rec_path}: its records are unlabelled ({rec_info_path(rec_path)}: made from a "
                                "BSON without category_id); train on a labelled .rec")
    train = infos.get(args.data_train)
    if train is None and args.data_train_extra:
        check_extra_labels(args, train)  # refused: nothing to check the extra files' labels against
    if train is None and args.level_heads:
        reason = "--benchmark 1 reads no .rec" if args.benchmark or not args.data_train else \
            f"{args.data_train} has none beside it"
        raise UserError(f"--level-heads: the heads come from the training .rec's X.rec.json (data.bson2rec "
                        f"--level-labels), and {reason}")
    if train is None:  # --benchmark, or a .rec from before X.rec.json: the flags or their defaults
        args.num_classes = args.num_classes or DEFAULT_NUM_CLASSES
        args.label_kind = args.label_kind or DEFAULT_LABEL_KIND
        return
    for flag, given, recorded in (("--num-classes", args.num_classes, train.num_classes),
                                  ("--label-kind", args.label_kind, train.label_kind)):
        if given is not None and given != recorded:
            raise UserError(f"{flag} {given}: {args.data_train} holds {train.describe()} "
                            f"({rec_info_path(args.data_train)}); give {flag} {recorded}, or leave it out")
    refuse_file_order(args, args.data_train, train)
    check_level_labels(args, train)
    val = infos.get(args.data_val)
    if val is not None:
        refuse_other_labels(args, args.data_val, val, train)
    check_extra_labels(args, train)
    args.num_classes, args.label_kind, args.categories_digest = train.num_classes, train.label_kind, \
        train.categories_digest
    if train.label_width > 1:
        args.level_head_kinds, args.level_head_classes = train.column_kinds[1:], train.column_classes[1:]
    check_mosaic_records(args, train, val)


def check_mosaic_records(args, train, val):
    """A .rec of product mosaics (data.bson2rec --mosaic; not the original's) gives the network its layout
    (args.mosaic_size, mosaic_fill: PREFIX-input.json's, which prediction builds its mosaics by); the validation and
    extra .rec files must hold records of the same kind and layout, and the input must take the whole mosaic
    (square, at its size or --resize to the input's), so that no crop cuts a tile. Refused in one line otherwise."""
    layout = train.mosaic_layout
    others = [("--data-val", args.data_val, val)] + \
        [("--data-train-extra", rec_path, read_rec_info(rec_path)) for rec_path in args.data_train_extra]
    for flag, rec_path, info in others:
        if info is not None and info.mosaic_layout != layout:
            raise UserError(f"{rec_path}: each record is {info.describe_records()}, but the training .rec "
                            f"{args.data_train} holds {train.describe_records()} per record; give {flag} a .rec made "
                            "as the training one (data.bson2rec with the same --mosaic flags)")
    if layout is None:
        return
    _, height, width = image_shape(args)
    fed = args.resize or layout.size
    if height != width or fed != height:
        raise UserError(f"{args.data_train}: product mosaics of {layout.size}x{layout.size}; --image-shape "
                        f"{args.image_shape} with --resize {args.resize} would crop tiles: give a square input 3,S,S "
                        f"with --resize S (or --resize 0 and S = {layout.size})")
    args.mosaic_size, args.mosaic_fill = layout.size, layout.fill


def check_level_labels(args, train):
    """--level-heads trains on a .rec of label vectors, and only it does: either mismatch is refused in one line."""
    where = rec_info_path(args.data_train)
    if args.level_heads and train.label_width == 1:
        raise UserError(f"--level-heads: {args.data_train} holds one label per record ({where}); make it with "
                        "data.bson2rec --level-labels (data/create_dataset_A_levels.sh), or leave --level-heads out")
    if not args.level_heads and train.label_width > 1:
        raise UserError(f"{args.data_train}: its records hold label vectors ({', '.join(train.column_kinds)}; {where}: "
                        "data.bson2rec --level-labels): give --level-heads, or train on a .rec made without "
                        "--level-labels")
    unknown = [kind for kind in (train.column_kinds or ())[1:] if kind not in LEVEL_HEAD_NAMES]
    if unknown:
        raise UserError(f"{where}: label column {unknown[0]}: this version trains level heads of "
                        f"{', '.join(LEVEL_HEAD_NAMES)}")


def check_extra_labels(args, train):
    """Each --data-train-extra .rec holds labels of the training .rec's kind, class count and category table
    (its X.rec.json; `train`: the training .rec's, None without one), in a shuffled order under chunks."""
    for rec_path in args.data_train_extra:
        check_input_file(rec_path, ".rec")
        info = read_rec_info(rec_path)
        if info is None:
            raise UserError(f"{rec_path}: --data-train-extra needs the {os.path.basename(rec_info_path(rec_path))} "
                            "beside it (data.bson2rec and data.hash_labelled_rec write one) to check that its labels "
                            f"are those of {args.data_train}")
        if info.label_kind is None:
            raise UserError(f"{rec_path}: its records are unlabelled ({rec_info_path(rec_path)}); "
                            "--data-train-extra takes labelled .rec files")
        if train is None:
            raise UserError(f"{args.data_train}: no {os.path.basename(rec_info_path(args.data_train))} beside it, so "
                            f"the labels of --data-train-extra {rec_path} cannot be checked against its own; remake it "
                            "with data.bson2rec")
        refuse_other_labels(args, rec_path, info, train)
        refuse_file_order(args, rec_path, info)


def refuse_other_labels(args, rec_path, info, train):
    """`rec_path` (its X.rec.json `info`) read beside --data-train (`train`) holds the same labels."""
    if not info.same_labels(train):
        raise UserError(f"{rec_path}: {info.describe()}, but the training .rec {args.data_train} holds "
                        f"{train.describe()}; " + ("make both with one category CSV and --cate-type"
                                                  if info.label_width == train.label_width
                                                  else "make both with --level-labels, or both without"))


def refuse_file_order(args, rec_path, info):
    """A training .rec in the BSON's file order is refused under --data-order chunks."""
    if args.data_order == "chunks" and info.shuffled is False:
        raise UserError(f"{rec_path}: its records are in the BSON's file order ({rec_info_path(rec_path)}: "
                        "data.bson2rec --no-shuffle), and --data-order chunks (the default) shuffles only within "
                        "8 MB; give --data-order global, or remake it without --no-shuffle")


def label_check_size(text):
    """--check-labels as a number of records (None: all)."""
    if text == "all":
        return None
    if not text.isdigit():
        raise UserError(f"--check-labels {text}: expected a number of records, or all")
    return int(text)


def check_data(args):
    """Before any work: each .rec is a file with records, each training .rec (--data-train, --data-train-extra)
    holds at least one batch (per distributed worker), and the labels fit --num-classes."""
    if args.benchmark:
        return
    if not args.data_train:
        raise UserError("--data-train is required (or --benchmark 1)")
    if args.data_train_extra and args.num_examples > 0:
        raise UserError(f"--num-examples {args.num_examples} with --data-train-extra: an epoch reads every record of "
                        "every training .rec; leave --num-examples out")
    most = label_check_size(args.check_labels)
    workers = int(os.environ.get("DMLC_NUM_WORKER", "1")) if "dist" in args.kv_store else 1
    files = [("--data-train", args.data_train), ("--data-val", args.data_val)] + \
        [("--data-train-extra", rec_path) for rec_path in args.data_train_extra]
    for flag, rec_path in files:
        if not rec_path:
            continue
        records = count_records(rec_path)
        if records == 0:
            raise UserError(f"{rec_path}: {flag} holds no records")
        if flag != "--data-val" and records // workers < args.batch_size:
            share = f" ({records // workers} per worker of {workers})" if workers > 1 else ""
            raise UserError(f"{rec_path}: {records} records{share}, fewer than --batch-size {args.batch_size}; "
                            "give a smaller --batch-size")
        checked = check_labels(rec_path, args.num_classes, most, args.level_head_classes)
        if checked:
            log.info("%s: labels of %d of %d records are in [0, %d)%s", rec_path, checked, records, args.num_classes,
                     "".join(f", [0, {count})" for count in args.level_head_classes or ()))


def check_labels(rec_path, num_classes, most=None, level_classes=None):
    """Labels of `rec_path` are whole numbers in [0, num_classes): all records (`most` None), or
    `most` evenly spaced ones of a larger file (0: no check). Returns how many were checked.
    `level_classes`: the records hold label vectors, whose further columns are in [0, each count)."""
    if most == 0:
        return 0
    offsets = record_offsets(rec_path)
    if most and len(offsets) > most:
        offsets = offsets[np.linspace(0, len(offsets) - 1, most).astype(np.int64)]
    counts = [num_classes, *(level_classes or ())]
    labels = record_labels(rec_path, offsets, label_width=len(counts)).reshape(len(offsets), len(counts))
    for column, count in enumerate(counts):
        values = labels[:, column]
        wrong = np.flatnonzero((values < 0) | (values >= count) | (values != np.floor(values)))
        if not len(wrong):
            continue
        if column:
            raise UserError(f"{rec_path}: record at byte {int(offsets[wrong[0]])} has {values[wrong[0]]:g} in label "
                            f"column {column}, outside its {count} classes ({rec_info_path(rec_path)}); "
                            f"{len(wrong)} of the {len(values)} records checked are outside: remake it with "
                            "data.bson2rec --level-labels")
        raise UserError(f"{rec_path}: record at byte {int(offsets[wrong[0]])} has label {values[wrong[0]]:g}, "
                        f"outside --num-classes {count} (0-{count - 1}); {len(wrong)} of the "
                        f"{len(values)} records checked are outside: give the --num-classes the .rec was made "
                        "with (its category CSV's rows), or remake it with data.bson2rec, which writes its "
                        "X.rec.json")
    return len(labels)


def epoch_seed(seed, epoch):
    """Seed of 0-based `epoch` of a run seeded with `seed`: the data order, the random
    augmentation and MXNet's random generator (dropout) of that epoch."""
    return derived_seed(seed, epoch)


def derived_seed(*parts):
    """A 31-bit seed of its parts, the same in every process and Python (crc32 of 'a/b/...')."""
    return zlib.crc32("/".join(str(part) for part in parts).encode()) & 0x7FFFFFFF


def file_epoch_seed(seed, epoch, file_index):
    """Seed of training file `file_index` (0: --data-train, then each --data-train-extra) in 0-based `epoch`;
    --data-train's is epoch_seed's, as when it is read alone."""
    return epoch_seed(seed, epoch) if file_index == 0 else derived_seed(seed, epoch, file_index)


def _rec_iter(args, rec_path, kv, epoch=None, file_index=0):
    """A training iterator for 0-based `epoch` of training file `file_index` (file_epoch_seed), or (epoch None)
    a validation iterator."""
    check_input_file(rec_path, ".rec")
    label_names = head_label_names(args.level_head_kinds or ())
    if len(label_names) > 1:  # a label vector per record: one label per head
        return LabelSplitIter(_image_record_iter(args, rec_path, kv, epoch, file_index, len(label_names)), label_names)
    return _image_record_iter(args, rec_path, kv, epoch, file_index)


def _image_record_iter(args, rec_path, kv, epoch, file_index, label_width=1):
    """_rec_iter's ImageRecordIter, of `label_width` labels per record (under the class head's label name)."""
    mean_r, mean_g, mean_b = rgb_mean(args)
    num_parts, part_index = (kv.num_workers, kv.rank) if kv is not None else (1, 0)
    common = dict(path_imgrec=rec_path,
                  label_width=label_width, data_name="data", label_name="softmax_label", data_shape=image_shape(args),
                  batch_size=args.batch_size, preprocess_threads=args.data_nthreads,
                  mean_r=mean_r, mean_g=mean_g, mean_b=mean_b, scale=args.rgb_scale,
                  resize=args.resize if args.resize > 0 else -1,
                  inter_method=args.inter_method, num_parts=num_parts, part_index=part_index, dtype="float32")
    if epoch is None:  # validation
        return mx.io.ImageRecordIter(path_imgidx=idx_path_of(rec_path), rand_crop=False, rand_mirror=False,
                                     round_batch=False, **common)
    seed = file_epoch_seed(args.seed, epoch, file_index)
    # Without path_imgidx, ImageRecordIter reads the file in chunks and shuffles within each.
    index = {"path_imgidx": idx_path_of(rec_path)} if args.data_order == "global" else {}
    # An extra file keeps one decoded batch ready, not MXNet's 4: at batch 512 of 180x180 each is 200 MB
    # (measured: +0.9 GB of memory per extra file instead of +1.5 GB), and its batches come rarely.
    ready = {"prefetch_buffer": 1} if file_index > 0 else {}
    return mx.io.ImageRecordIter(
        shuffle=True, seed=seed, seed_aug=seed, round_batch=True, **index, **ready,
        pad=args.pad_size, fill_value=127, rand_crop=bool(args.random_crop), rand_mirror=bool(args.random_mirror),
        max_random_scale=args.max_random_scale, min_random_scale=args.min_random_scale,
        max_aspect_ratio=args.max_random_aspect_ratio, random_h=args.max_random_h,
        random_s=args.max_random_s, random_l=args.max_random_l, max_rotate_angle=args.max_random_rotate_angle,
        max_shear_ratio=args.max_random_shear_ratio, **common)


class SyntheticDataIter(mx.io.DataIter):
    """Random images and labels resident in memory: training speed without any input cost."""

    def __init__(self, num_classes, data_shape, batches_per_epoch, dtype="float32"):
        super().__init__(batch_size=data_shape[0])
        self.batches_per_epoch = batches_per_epoch
        self.cursor = 0
        rng = np.random.default_rng(0)
        self.data = mx.nd.array(rng.uniform(0, 255, data_shape), dtype=dtype)
        self.label = mx.nd.array(rng.integers(0, num_classes, data_shape[0]), dtype="float32")

    @property
    def provide_data(self):
        return [mx.io.DataDesc("data", self.data.shape, self.data.dtype)]

    @property
    def provide_label(self):
        return [mx.io.DataDesc("softmax_label", self.label.shape, np.float32)]

    def next(self):
        if self.cursor >= self.batches_per_epoch:
            raise StopIteration
        self.cursor += 1
        return mx.io.DataBatch(data=[self.data], label=[self.label], pad=0, index=None,
                               provide_data=self.provide_data, provide_label=self.provide_label)

    def reset(self):
        self.cursor = 0


class LabelSplitIter(mx.io.DataIter):
    """The batches of `inner`, whose label is a (batch, heads) vector per picture, with that label split into one
    (batch,) label per head, named `label_names` (the class head's first: train.finetune.head_label_names)."""

    def __init__(self, inner, label_names):
        super().__init__(batch_size=inner.batch_size)
        self.inner, self.label_names = inner, list(label_names)
        (vector,) = inner.provide_label
        self._provide_label = [mx.io.DataDesc(name, vector.shape[:1], vector.dtype) for name in self.label_names]

    @property
    def provide_data(self):
        return self.inner.provide_data

    @property
    def provide_label(self):
        return self._provide_label

    def reset(self):
        self.inner.reset()

    def next(self):
        batch = self.inner.next()
        vectors = batch.label[0]
        labels = [vectors[:, column] for column in range(len(self.label_names))]
        return mx.io.DataBatch(data=batch.data, label=labels, pad=batch.pad, index=batch.index,
                               provide_data=self.provide_data, provide_label=self.provide_label)


class CountedIter(mx.io.DataIter):
    """Marks the samples past the end of the data in the last batch as padding, with label -1.

    ImageRecordIter fills its last batch up to the batch size and reports pad 0 (even with
    round_batch=0), with arbitrary labels there; counting the records is reliable."""

    def __init__(self, inner, num_samples):
        super().__init__(batch_size=inner.batch_size)
        self.inner = inner
        self.num_samples = num_samples
        self.seen = 0

    @property
    def provide_data(self):
        return self.inner.provide_data

    @property
    def provide_label(self):
        return self.inner.provide_label

    def reset(self):
        self.inner.reset()
        self.seen = 0

    def next(self):
        batch = self.inner.next()
        size = batch.data[0].shape[0]
        valid = min(size, self.num_samples - self.seen)
        self.seen += size
        if valid <= 0:
            raise StopIteration
        if valid == size:
            return batch
        labels = [label.copy() for label in batch.label]  # each head's label, when the network has several
        for label in labels:
            label[valid:] = -1
        return mx.io.DataBatch(data=batch.data, label=labels, pad=size - valid, index=batch.index,
                               provide_data=self.provide_data, provide_label=self.provide_label)


class _ShapedLike(mx.io.DataIter):
    """A training iterator over others: the batch size and data and label descriptions of `first`."""

    def __init__(self, first):
        super().__init__(batch_size=first.batch_size)
        self._provide_data, self._provide_label = first.provide_data, first.provide_label

    @property
    def provide_data(self):
        return self._provide_data

    @property
    def provide_label(self):
        return self._provide_label


class EpochSeededIter(_ShapedLike):
    """Training batches from `build(epoch)`, a new iterator for every epoch (see the module doc)."""

    def __init__(self, build, first_epoch=0):
        self.build = build
        self.epoch = first_epoch
        self.inner = build(first_epoch)
        super().__init__(self.inner)

    def reset(self):
        self.inner = None  # its decoding threads and buffers go before the next epoch's come
        self.epoch += 1

    def next(self):
        if self.inner is None:  # built on first use: Module.fit also resets after its last epoch
            self.inner = self.build(self.epoch)
        return self.inner.next()


def batches_per_file(args, kv):
    """Batches one worker reads per epoch from each training file (--data-train, then each --data-train-extra):
    its share of the file's images, the last batch rounded up."""
    workers = kv.num_workers if kv is not None else 1
    num_examples = args.num_examples if args.num_examples > 0 else count_records(args.data_train)
    counts = [num_examples] + [count_records(rec_path) for rec_path in args.data_train_extra]
    return [max(1, math.ceil(count / workers / args.batch_size)) for count in counts]


def updates_per_epoch(args, kv):
    """Batches one worker runs per epoch: the sum over the training files of batches_per_file."""
    return sum(batches_per_file(args, kv))


class InterleavedIter(_ShapedLike):
    """One epoch of several training iterators: `counts[f]` batches of `iterators[f]`, in a random order
    seeded by `seed`, each batch from one of them (the files of --data-train and --data-train-extra)."""

    def __init__(self, iterators, counts, seed, names):
        super().__init__(iterators[0])
        self.iterators, self.names = iterators, names
        self.order = np.random.RandomState(seed).permutation(np.repeat(np.arange(len(iterators)), counts))
        self.cursor = 0

    def reset(self):  # EpochSeededIter builds the next epoch anew; a reset starts this one over
        for inner in self.iterators:
            inner.reset()
        self.cursor = 0

    def next(self):
        if self.cursor >= len(self.order):
            raise StopIteration
        file_index = int(self.order[self.cursor])
        self.cursor += 1
        try:
            return self.iterators[file_index].next()
        except StopIteration:  # counted from its .idx: a file changed under the run
            raise UserError(f"{self.names[file_index]}: ended before its {int((self.order == file_index).sum())} "
                            "batches of this epoch; was it rewritten during training?") from None


def benchmark_batches(args):
    """Batches per epoch of --benchmark 1's synthetic data: --num-examples worth, else 20."""
    return max(1, args.num_examples // args.batch_size) if args.num_examples > 0 else 20


def get_iterators(args, kv=None, begin_epoch=0):
    """(train, val) iterators, train starting at 0-based `begin_epoch`; val is None without --data-val."""
    if args.benchmark:
        shape = (args.batch_size,) + image_shape(args)
        return SyntheticDataIter(args.num_classes, shape, benchmark_batches(args)), None
    if not args.data_train:
        raise UserError("--data-train is required (or --benchmark 1)")
    files = [args.data_train] + list(args.data_train_extra)
    distributed = kv is not None and kv.num_workers > 1
    counts = batches_per_file(args, kv) if distributed or len(files) > 1 else None
    if len(files) > 1:
        log.info("an epoch: %s batches, interleaved: %s", sum(counts),
                 ", ".join(f"{count} of {path}" for count, path in zip(counts, files)))

    def build_file(epoch, file_index):
        train = _rec_iter(args, files[file_index], kv, epoch, file_index)
        if distributed:
            # Workers' parts can differ by an image, and with round_batch each part's batches per
            # epoch could drift (14, 13, 14, 13, 14 vs 14, 13, 14, 13, 13); under dist_sync the
            # worker with the extra batch then waits forever. Every worker runs exactly its share.
            train = mx.io.ResizeIter(train, counts[file_index])
        return train

    def build(epoch):
        if len(files) == 1:
            return build_file(epoch, 0)
        # Every worker draws the same order: the same files in turn, each its own part.
        return InterleavedIter([build_file(epoch, f) for f in range(len(files))], counts,
                               derived_seed(args.seed, epoch, "interleave"), files)

    train = EpochSeededIter(build, begin_epoch)
    val = None
    if args.data_val:  # every worker scores the whole validation set
        val = CountedIter(_rec_iter(args, args.data_val, None), count_records(args.data_val))
    return train, val
