"""Builders of small hand-made Kaggle-format BSONs for the tests; process look-ups in /proc."""
import os

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


def read_csv_rows(path):
    """Every row of a CSV file, header included, as lists of strings."""
    import csv
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def read_records(rec_path):
    """(header, payload) of every record of an indexed .rec, in write (key) order."""
    import mxnet as mx

    from data.recordio import idx_path_of

    reader = mx.recordio.MXIndexedRecordIO(idx_path_of(rec_path), rec_path, "r")
    try:
        return [mx.recordio.unpack(reader.read_idx(key)) for key in sorted(reader.keys)]
    finally:
        reader.close()


def write_category_csv(path, category_ids):
    """A category_names.csv in Kaggle's format for the given ids."""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("category_id,category_level1,category_level2,category_level3\n")
        for i, cid in enumerate(category_ids):
            fh.write(f"{cid},LEVEL1 {i % 2},LEVEL2 {i % 3},CATEGORY {i}\n")
    return str(path)


def colour_products(num_classes, per_class, size=32, seed=0, first_category=1000000000):
    """Products whose single picture is a noisy patch of a class colour: learnable in a few batches."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, (num_classes, 3))
    docs = []
    for n in range(num_classes * per_class):
        c = n % num_classes
        image = np.clip(colours[c] + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", image)
        docs.append(product(n, [buf.tobytes()], first_category + c))
    return docs


# ---- processes -----------------------------------------------------------------------------
def write_colour_rec(folder, num_classes, per_class, size=32):
    """A .rec of `num_classes` colour classes, `per_class` pictures each, converted by data.bson2rec
    (with its category CSV beside it); returns the .rec path."""
    from data import bson2rec

    csv_path = write_category_csv(os.path.join(folder, "category_names.csv"),
                                  [1000000000 + c for c in range(num_classes)])
    bson_path = write_bson(os.path.join(folder, "train.bson"), colour_products(num_classes, per_class, size=size))
    rec = os.path.join(str(folder), "train.rec")
    bson2rec.main(["--bson", bson_path, "--out-rec", rec, "--category-csv", csv_path])
    return rec


def children_of(pid):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry))
    return found


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
