"""Builders of small hand-made Kaggle-format BSONs for the tests."""
import bson
import cv2
import numpy as np


def make_jpeg(seed, size=32):
    """A small real JPEG whose bytes depend on `seed`."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", image)
    assert ok
    return buf.tobytes()


def product(product_id, pictures, category_id=None):
    """A document in Kaggle's key order: _id, imgs, category_id."""
    doc = {"_id": product_id, "imgs": [{"picture": bson.Binary(p)} for p in pictures]}
    if category_id is not None:
        doc["category_id"] = category_id
    return doc


def write_bson(path, docs):
    with open(path, "wb") as fh:
        for doc in docs:
            fh.write(doc if isinstance(doc, bytes) else bson.encode(doc))
    return str(path)


def read_docs(path):
    with open(path, "rb") as fh:
        return list(bson.decode_file_iter(fh))
