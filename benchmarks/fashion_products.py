"""A test bed of real product photos: Zalando's Fashion-MNIST articles as Cdiscount products.

Debian's `dataset-fashion-mnist` package (`apt-get install dataset-fashion-mnist`) holds 70,000
28x28 grey photos of articles in 10 classes, as IDX files under /usr/share/datasets/fashion-mnist.
Each product here is one article: its photo, and 0-3 more views of it made by a stated augmentation
(a shift of up to 3 pixels, a scale of 0.9-1.1, a rotation of up to 8 degrees, a horizontal flip with
probability 0.5, a brightness change of up to 15%), so that a product has 1-4 pictures with the demo
generator's shares (data.make_demo_data.IMAGES_PER_PRODUCT_PROBS). Pictures are upscaled to
--image-size (bicubic) and stored as RGB JPEGs (quality 90), as Kaggle's were.

train.bson takes its articles from Fashion-MNIST's training part, test.bson from its test part. As in
Kaggle's data, some test pictures repeat training pictures: --shared-share of the test products get,
in place of one of their views, the first picture of a training product of the same class (the same
JPEG bytes, so the MD5 dictionary knows it). The categories form a small hierarchy (level 1: all
"MODE"; level 2: tops, bottoms, dresses, shoes, bags) for the hierarchical heads.

Writes train.bson, test.bson, category_names.csv and test_ground_truth.csv, as data.make_demo_data,
so that every script runs on it with DATA_DIR pointing there.

Run from the repository root:  python -m benchmarks.fashion_products --out-dir /tmp/fashion_products
"""
import argparse
import gzip
import logging
import os

import bson
import cv2
import numpy as np

from cli.files import atomic_outputs, check_outputs
from cli.runner import HelpFormatter, UserError, run_cli
from data.make_demo_data import IMAGES_PER_PRODUCT_PROBS

log = logging.getLogger(__name__)

PACKAGE_DIR = "/usr/share/datasets/fashion-mnist"
FIRST_CATEGORY = 1000020000
# Fashion-MNIST's classes in label order, with the level-2 group each gets here
CLASSES = [("T-shirt/top", "TOPS"), ("Trouser", "BOTTOMS"), ("Pullover", "TOPS"), ("Dress", "DRESSES"),
           ("Coat", "TOPS"), ("Sandal", "SHOES"), ("Shirt", "TOPS"), ("Sneaker", "SHOES"), ("Bag", "BAGS"),
           ("Ankle boot", "SHOES")]
OUTPUT_NAMES = ("train.bson", "test.bson", "category_names.csv", "test_ground_truth.csv")


def read_idx(path):
    """The array of an IDX file (gzipped), as Fashion-MNIST ships them: magic 0x0000 08 <dims>, sizes."""
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 8:
        raise UserError(f"{path}: not an IDX file of unsigned bytes")
    dims = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims)
    if body.size != int(np.prod(shape)):
        raise UserError(f"{path}: {body.size} values for the shape {shape} its header gives")
    return body.reshape(shape)


def load_part(package_dir, part):
    """(images (n, 28, 28), labels (n,)) of Fashion-MNIST's `part` ('train' or 't10k')."""
    paths = [os.path.join(package_dir, f"{part}-{kind}-idx{dims}-ubyte.gz") for kind, dims in
             (("images", 3), ("labels", 1))]
    for path in paths:
        if not os.path.exists(path):
            raise UserError(f"{path}: not found; install Debian's dataset-fashion-mnist package "
                            "(apt-get install dataset-fashion-mnist) or give --package-dir")
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if len(images) != len(labels):
        raise UserError(f"{paths[0]}: {len(images)} images but {len(labels)} labels in {paths[1]}")
    return images, labels


def view(photo, rng, size):
    """One augmented RGB view of a grey photo at size x size."""
    angle, scale = rng.uniform(-8, 8), rng.uniform(0.9, 1.1)
    matrix = cv2.getRotationMatrix2D((13.5, 13.5), angle, scale)
    matrix[:, 2] += rng.integers(-3, 4, 2)
    moved = cv2.warpAffine(photo, matrix, (28, 28), flags=cv2.INTER_LINEAR, borderValue=0)
    if rng.random() < 0.5:
        moved = moved[:, ::-1]
    moved = np.clip(moved.astype(np.float32) * rng.uniform(0.85, 1.15), 0, 255).astype(np.uint8)
    return as_picture(moved, size)


def as_picture(grey, size):
    """A JPEG of the grey image upscaled to size x size, in RGB (photos are dark on light: inverted)."""
    big = cv2.resize(255 - grey, (size, size), interpolation=cv2.INTER_CUBIC)
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(big, cv2.COLOR_GRAY2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return jpeg.tobytes()


def product_pictures(photo, count, rng, size):
    """The photo itself, then count - 1 augmented views of it."""
    return [as_picture(photo, size)] + [view(photo, rng, size) for _ in range(count - 1)]


def make_products(images, labels, num_products, rng, size, first_id):
    """(documents, first picture of each) of `num_products` articles drawn without replacement."""
    chosen = rng.choice(len(images), size=num_products, replace=False)
    counts = rng.choice(len(IMAGES_PER_PRODUCT_PROBS), size=num_products, p=IMAGES_PER_PRODUCT_PROBS) + 1
    docs = []
    for n, (article, count) in enumerate(zip(chosen.tolist(), counts.tolist())):
        pictures = product_pictures(images[article], count, rng, size)
        docs.append({"_id": first_id + n, "imgs": [{"picture": bson.Binary(p)} for p in pictures],
                     "category_id": FIRST_CATEGORY + int(labels[article])})
    return docs


def share_training_pictures(test_docs, train_docs, share, rng):
    """Give `share` of the test products one training picture of their class in place of a view;
    returns how many got one."""
    by_class = {}
    for doc in train_docs:
        by_class.setdefault(doc["category_id"], []).append(doc["imgs"][0]["picture"])
    shared = 0
    for doc in test_docs:
        if rng.random() < share and by_class.get(doc["category_id"]):
            pool = by_class[doc["category_id"]]
            doc["imgs"][int(rng.integers(len(doc["imgs"])))] = {"picture": pool[int(rng.integers(len(pool)))]}
            shared += 1
    return shared


def write_outputs(out_dir, train_docs, test_docs):
    paths = [os.path.join(out_dir, name) for name in OUTPUT_NAMES]
    with atomic_outputs(*paths) as temps:
        for temp, docs in ((temps[0], train_docs), (temps[1], test_docs)):
            with open(temp, "wb") as fh:
                for doc in docs:
                    body = dict(doc) if temp == temps[0] else {k: v for k, v in doc.items() if k != "category_id"}
                    fh.write(bson.encode(body))
        with open(temps[2], "w", encoding="utf-8") as fh:
            fh.write("category_id,category_level1,category_level2,category_level3\n")
            for label, (name, group) in enumerate(CLASSES):
                fh.write(f"{FIRST_CATEGORY + label},MODE,{group},{name.upper()}\n")
        with open(temps[3], "w", encoding="utf-8") as fh:
            fh.write("_id,category_id\n")
            for doc in test_docs:
                fh.write(f"{doc['_id']},{doc['category_id']}\n")
    return paths


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m benchmarks.fashion_products", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--out-dir", required=True, help="folder for the four files (created if missing)")
    parser.add_argument("--package-dir", default=PACKAGE_DIR, help="where the IDX files are")
    parser.add_argument("--num-train-products", type=int, default=12000, help="of Fashion-MNIST's 60,000 training photos")
    parser.add_argument("--num-test-products", type=int, default=3000, help="of its 10,000 test photos")
    parser.add_argument("--shared-share", type=float, default=0.15,
                        help="share of test products given a training product's picture of their class")
    parser.add_argument("--image-size", type=int, default=64, help="pictures are upscaled to this")
    parser.add_argument("--seed", type=int, default=0, help="the same seed gives identical files")
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    os.makedirs(args.out_dir, exist_ok=True)
    check_outputs([os.path.join(args.out_dir, name) for name in OUTPUT_NAMES], args.force)
    train_images, train_labels = load_part(args.package_dir, "train")
    test_images, test_labels = load_part(args.package_dir, "t10k")
    for flag, wanted, available in (("--num-train-products", args.num_train_products, len(train_images)),
                                    ("--num-test-products", args.num_test_products, len(test_images))):
        if not 1 <= wanted <= available:
            raise UserError(f"{flag} {wanted}: between 1 and the {available} photos of that part")
    rng = np.random.default_rng(args.seed)
    train_docs = make_products(train_images, train_labels, args.num_train_products, rng, args.image_size, 1)
    test_docs = make_products(test_images, test_labels, args.num_test_products, rng, args.image_size,
                              10 ** 7)
    shared = share_training_pictures(test_docs, train_docs, args.shared_share, rng)
    paths = write_outputs(args.out_dir, train_docs, test_docs)
    pictures = sum(len(d["imgs"]) for d in train_docs), sum(len(d["imgs"]) for d in test_docs)
    log.info("train: %d products, %d pictures; test: %d products, %d pictures, %d with a training picture",
             len(train_docs), pictures[0], len(test_docs), pictures[1], shared)
    for path in paths:
        log.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    run_cli(main)
