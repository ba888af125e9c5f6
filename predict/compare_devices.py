"""Compare one network's probabilities on the devices of --gpus with the CPU's, on a BSON's first pictures.

A GPU build can load, run and still compute something else than the CPU build (a wrong kernel, a
cuDNN algorithm with a bug, float16 where float32 was meant). scripts/gpu_check.sh runs this on a
few demo pictures with flip TTA, the way predict.predict sees them, and fails when the largest
difference of a probability is above --tolerance.
"""
import argparse
import logging

import mxnet as mx
import numpy as np

from data.bson_index import BsonIndex
from cli.files import check_input_paths
from cli.runner import HelpFormatter, UserError, run_cli
from predict.models import Model, normaliser
from predict.preprocess import MULTI_VIEWS, product_views
from predict.probability import view_mean
from train.data import parse_image_shape, parse_rgb_mean
from train.devices import DEVICES_HELP, contexts

log = logging.getLogger(__name__)


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m predict.compare_devices", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--bson", required=True, help="pictures: the first --num-images of this BSON")
    parser.add_argument("--symbol", required=True, help="*-symbol.json")
    parser.add_argument("--params", required=True, help="*.params")
    parser.add_argument("--gpus", required=True, help=DEVICES_HELP + "; compared with the CPU")
    parser.add_argument("--num-images", type=int, default=16, help="pictures compared")
    parser.add_argument("--image-shape", default="3,180,180", help="network input C,H,W")
    parser.add_argument("--multi-view", type=int, default=1, choices=sorted(MULTI_VIEWS),
                        help="views per picture, as predict.predict (1: the picture and its flip)")
    parser.add_argument("--rgb-mean", default="0,0,0", help="as in training")
    parser.add_argument("--rgb-scale", type=float, default=1.0, help="as in training")
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="largest allowed difference of a probability")
    return parser


def first_pictures(bson_path, count):
    """JPEG bytes of the first `count` pictures of the BSON, in file order."""
    pictures = []
    with BsonIndex.open(bson_path) as index:
        for _, jpegs in index.iter_product_images():
            pictures.extend(jpegs[:count - len(pictures)])
            if len(pictures) == count:
                break
    if len(pictures) < count:
        raise UserError(f"{bson_path}: has {len(pictures)} pictures, fewer than --num-images {count}")
    return pictures


def picture_probabilities(args, views, num_views, device_contexts):
    """(pictures, classes): the mean over each picture's views, computed on `device_contexts`."""
    image_shape = parse_image_shape(args.image_shape, "--image-shape")
    model = Model(args.symbol, args.params, len(views), image_shape, device_contexts, num_classes=None)
    batch = normaliser(parse_rgb_mean(args.rgb_mean), args.rgb_scale)(views)
    return view_mean(model.forward(batch).asnumpy(), num_views)


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.num_images < 1:
        raise UserError(f"--num-images {args.num_images}: must be at least 1")
    check_input_paths([(args.bson, "BSON"), (args.symbol, "symbol"), (args.params, "parameter")])
    device_contexts = contexts(args.gpus)
    _, height, width = parse_image_shape(args.image_shape, "--image-shape")
    views, valid = product_views(first_pictures(args.bson, args.num_images), height, width, args.multi_view)
    if not all(valid):
        raise UserError(f"{args.bson}: picture {valid.index(False)} of the first {args.num_images} does not decode")
    num_views = len(MULTI_VIEWS[args.multi_view])
    on_cpu = picture_probabilities(args, views, num_views, [mx.cpu()])
    on_devices = picture_probabilities(args, views, num_views, device_contexts)
    difference = float(np.abs(on_devices - on_cpu).max())
    same_class = int((on_devices.argmax(axis=1) == on_cpu.argmax(axis=1)).sum())
    devices_text = ", ".join(str(ctx) for ctx in device_contexts)
    print(f"{args.num_images} pictures ({len(views)} views): largest probability difference {devices_text} vs "
          f"cpu {difference:.3g} (tolerance {args.tolerance:g}); same top class for {same_class} of "
          f"{args.num_images}")
    if difference > args.tolerance:
        raise UserError(f"{devices_text}: probabilities differ from the CPU's by {difference:.3g}, "
                        f"more than --tolerance {args.tolerance:g}")
    return 0


if __name__ == "__main__":
    run_cli(main)
