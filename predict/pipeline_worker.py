"""The reader and the preprocessing workers of the prediction pipeline, each its own process.

Started by `predict.pipeline` (never by hand):
  python -m predict.pipeline_worker reader --bson B --start I --stop J --bind ENDPOINT --control C
      [--forward-mask M.npy --digests D.npy]
  python -m predict.pipeline_worker worker --products P --views V --control C --input 3,H,W:R[:S,FILL] ...

reader: products [I, J) of the BSON in file order, through its offset index, one pictures
  message per product (predict.messages) on a PUSH socket (bound; the workers connect). It reports its endpoint on the control socket, and
  stays until the parent stops it. `skip` lists the pictures --forward-mask (a bool .npy, one
  per picture of the range) leaves out: the predictor gets their probability elsewhere.
  --digests (an S16 .npy, one per picture of the range: the run's first pass hashed them) go
  with the pictures, so that no picture is hashed twice.
worker: PULLs products, decodes and prepares the views at each model input (`--input`, one per
  distinct input of the ensemble; not of skipped pictures, which it flags as not valid), MD5s
  each picture unless the reader sent its digest (--forward-all runs have no first pass), and
  PUSHes a prepared-product message (predict.messages). An input with a mosaic layout (:S,FILL, a network of
  product mosaics; not the original's) gets the views of the product's mosaic, built from all its pictures,
  the skipped ones too (predict.preprocess.mosaic_views).

Both die with their parent (PR_SET_PDEATHSIG), ignore Ctrl-C (the parent stops them),
and report an exception as one line on the control socket before exiting non-zero.
"""
import argparse
import os
import signal
import sys
import time

import numpy as np
import zmq

from cli.processes import set_parent_death_signal
from predict import messages

def die_with_parent(parent_pid):
    """SIGTERM this process when its parent dies, so that no worker outlives a killed run."""
    set_parent_death_signal()  # not Linux: the parent's cleanup is all there is
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        sys.exit(1)


def run_reader(args, context, control):
    from data.bson_index import BsonIndex  # numpy only: the reader stays light

    sender = context.socket(zmq.PUSH)
    sender.setsockopt(zmq.SNDHWM, args.queue)
    sender.setsockopt(zmq.LINGER, -1)  # deliver everything before exiting
    sender.bind(args.bind)
    endpoint = sender.getsockopt(zmq.LAST_ENDPOINT)
    control.send_multipart([messages.READY, b"reader", endpoint])
    index = BsonIndex.open(args.bson, skip_corrupt=args.skip_corrupt, progress=False)
    product_ids = index.products["product_id"][args.start:args.stop].tolist()
    forward = np.load(args.forward_mask, allow_pickle=False) if args.forward_mask else None
    digests = load_digests(args.digests, int(index.products["num_imgs"][args.start:args.stop].sum()))
    at = 0
    for (product, pictures), product_id in zip(index.iter_product_images(args.start, args.stop), product_ids):
        skip = [] if forward is None else np.flatnonzero(~forward[at:at + len(pictures)]).tolist()
        carried = None if digests is None else digests[at:at + len(pictures)].tobytes()  # S16: 16 bytes each
        at += len(pictures)
        sender.send_multipart(messages.encode_pictures(product, product_id, skip, pictures, carried), copy=False)
    # Stay connected until the parent stops us: a worker drops the messages still queued from
    # a peer that has disconnected, so leaving now would lose the last products.
    while True:
        time.sleep(3600)


def load_digests(path, num_images):
    """The S16 digests of --digests (None without one), one per picture of the reader's range."""
    from data.md5_dict import KEY_DTYPE

    if not path:
        return None
    digests = np.load(path, allow_pickle=False)
    if digests.dtype != KEY_DTYPE or digests.shape != (num_images,):
        raise ValueError(f"{path}: {digests.shape} {digests.dtype} digests, expected ({num_images},) {KEY_DTYPE}")
    return digests


def parse_input(text):
    """(height, width, predict.preprocess.Resize, data.mosaic.MosaicLayout or None) of an --input
    C,H,W:RESIZE[:SIZE,FILL] (RESIZE as Resize.__str__, the layout as MosaicLayout.__str__)."""
    from data.mosaic import MosaicLayout
    from predict.preprocess import Resize

    shape, _, rest = text.partition(":")
    resize, _, layout = rest.partition(":")
    _, height, width = (int(n) for n in shape.split(","))
    return height, width, Resize.parse(resize or "0"), MosaicLayout.parse(layout) if layout else None


def run_worker(args, context, control):
    from data.md5_dict import image_md5
    from predict.preprocess import MULTI_VIEWS, mosaic_views, product_views

    inputs = [parse_input(text) for text in args.input or ["3,180,180:0"]]
    num_views = len(MULTI_VIEWS[args.multi_view])
    receiver = context.socket(zmq.PULL)
    receiver.setsockopt(zmq.RCVHWM, 2)  # small: products stay with the reader until a worker is free
    receiver.connect(args.products)
    sender = context.socket(zmq.PUSH)
    sender.setsockopt(zmq.SNDHWM, args.queue)
    sender.connect(args.views)
    while True:
        product, skip, pictures, digests = messages.decode_pictures(receiver.recv_multipart(copy=True))
        kept = [i for i in range(len(pictures)) if i not in skip]
        views_by_input, kept_valid, mosaic_inputs = [], None, []
        for height, width, resize, layout in inputs:
            if layout is None:
                views, kept_valid = product_views([pictures[i] for i in kept], height, width, args.multi_view, resize)
            else:  # a mosaic needs every picture of the product, those the predictor answers otherwise too
                views, decoded = mosaic_views(pictures, layout, height, width, args.multi_view, resize)
                mosaic_inputs.append(len(views_by_input))
            views_by_input.append(views)
        if kept_valid is None:  # mosaic inputs only: a kept picture is valid when it decodes
            kept_valid = [decoded[i] for i in kept]
        valid = [False] * len(pictures)
        for i, ok in zip(kept, kept_valid):  # decoding does not depend on the input
            valid[i] = ok
        if digests is None:  # no first pass hashed this run (--forward-all)
            digests = [image_md5(p) for p in pictures]
        sender.send_multipart(messages.encode_product(product, num_views, valid, views_by_input, digests,
                                                      mosaic_inputs), copy=False)


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m predict.pipeline_worker", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("role", choices=("reader", "worker"))
    parser.add_argument("--control", required=True, help="the parent's control endpoint")
    parser.add_argument("--parent-pid", type=int, default=None)
    parser.add_argument("--name", default=None, help="name in error reports (e.g. worker 2)")
    parser.add_argument("--queue", type=int, default=16, help="send high-water mark (messages)")
    # reader
    parser.add_argument("--bson")
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--stop", type=int, default=None)
    parser.add_argument("--bind", help="endpoint for the product socket (tcp://127.0.0.1:* or ipc://...)")
    parser.add_argument("--skip-corrupt", action="store_true")
    parser.add_argument("--forward-mask", help="bool .npy per picture of the range: False = skip it")
    parser.add_argument("--digests", help="S16 .npy of the MD5 of each picture of the range")
    # worker
    parser.add_argument("--products", help="the reader's endpoint")
    parser.add_argument("--views", help="the predictor's endpoint")
    parser.add_argument("--input", action="append", help="C,H,W:RESIZE of a model input (repeat for each)")
    parser.add_argument("--multi-view", type=int, default=1)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    name = args.name or args.role
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the parent stops us
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))  # stopped by the parent: nothing to flush
    if args.parent_pid:
        die_with_parent(args.parent_pid)
    context = zmq.Context()
    control = context.socket(zmq.PUSH)
    control.setsockopt(zmq.LINGER, 2000)
    control.connect(args.control)
    try:
        (run_reader if args.role == "reader" else run_worker)(args, context, control)
    except Exception as exc:  # reported to the parent as one line, then a non-zero exit
        reason = f"{type(exc).__name__}: {exc}".replace("\n", " ")
        control.send_multipart([messages.FAILED, name.encode(), reason.encode()])
        control.close()
        return 1
    control.close()
    context.term()
    return 0


if __name__ == "__main__":
    sys.exit(main())
