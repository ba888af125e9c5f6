"""The probability store of `predict.predict --save-probs DIR`: every image's model probabilities,
kept so that ensembles, MD5 override types and product reductions are recomputed without a
forward pass (predict.ensemble).

One folder per predicted product range, `DIR/products-START-STOP/`, written under a hidden
temporary name and renamed when the range is complete, holding memory-mapped .npy arrays
(np.lib.format.open_memmap; read back with allow_pickle=False, nothing is ever unpickled) and
a JSON meta file:
  per product: product_id, num_images, category_id (-1 without labels);
  per image:   image_product (its product's _id), image_index (within the product), md5 (S16),
               decoded (False: the picture could not be decoded, it has no model probabilities);
  per model and image: top_class / top_log_prob, the K largest image means (views averaged) as
               class ids and float16 natural logs of the probabilities (precise to 0.05% near 1 and 1.5% near 1e-20: see probability.top_k), largest first; rest, the mass of the
               other classes (float32); tail_log_mean, the mean log of their positive
               probabilities (float16), which stands for each of them when rebuilding.
The store serves every MD5 override type, so a run that writes it forwards the pictures the
dictionary answers too (repeated pictures are still forwarded once).
"""
import json
import logging
import os
import re
import shutil

import numpy as np

from cli.reporting import plural
from cli.runner import UserError
from data.md5_dict import KEY_DTYPE
from predict import probability

log = logging.getLogger(__name__)

FORMAT = "cdiscount-probability-store"
VERSION = 1
META = "meta.json"
_RANGE = re.compile(r"^products-(\d+)-(\d+)$")
PRODUCT_ARRAYS = ("product_id", "num_images", "category_id")
IMAGE_ARRAYS = ("image_product", "image_index", "md5", "decoded")
MODEL_ARRAYS = ("top_class", "top_log_prob", "rest", "tail_log_mean")
# the run settings that must agree for stores to be combined
SHARED_SETTINGS = ("num_classes", "multi_view", "cate_level")


def range_folder(directory, start, stop):
    return os.path.join(directory, f"products-{start:09d}-{stop:09d}")


class StoreWriter:
    """Fills one range folder as products finish (any order); `commit()` renames it into place."""

    def __init__(self, directory, index, start, stop, num_classes, model_names, top_k, settings):
        self.final = range_folder(directory, start, stop)
        self.temp = os.path.join(directory, f".{os.path.basename(self.final)}.tmp-{os.getpid()}")
        shutil.rmtree(self.temp, ignore_errors=True)
        os.makedirs(self.temp)
        product_ids = index.products["product_id"][start:stop]
        counts = index.products["num_imgs"][start:stop].astype(np.int64)
        self.first_image = index.first_images_in(start, stop)
        num_images, num_models = int(counts.sum()), len(model_names)
        self.top_k = min(top_k, num_classes)
        class_dtype = np.int16 if num_classes <= np.iinfo(np.int16).max else np.int32
        self.meta = dict(settings, format=FORMAT, version=VERSION, num_classes=num_classes, top_k=self.top_k,
                         models=list(model_names), bson=os.path.basename(index.path), start=start, stop=stop,
                         num_products=stop - start, num_images=num_images)
        shapes = {"product_id": ((stop - start,), np.int64), "num_images": ((stop - start,), np.int32),
                  "category_id": ((stop - start,), np.int64), "image_product": ((num_images,), np.int64),
                  "image_index": ((num_images,), np.int16), "md5": ((num_images,), KEY_DTYPE),
                  "decoded": ((num_images,), bool), "top_class": ((num_models, num_images, self.top_k), class_dtype),
                  "top_log_prob": ((num_models, num_images, self.top_k), np.float16),
                  "rest": ((num_models, num_images), np.float32),
                  "tail_log_mean": ((num_models, num_images), np.float16)}
        self.arrays = {name: np.lib.format.open_memmap(os.path.join(self.temp, name + ".npy"), mode="w+",
                                                       dtype=dtype, shape=shape)
                       for name, (shape, dtype) in shapes.items()}
        self.arrays["product_id"][:] = product_ids
        self.arrays["num_images"][:] = counts
        self.arrays["category_id"][:] = index.products["category_id"][start:stop] if index.has_labels else -1
        self.arrays["image_product"][:] = np.repeat(product_ids, counts)
        self.arrays["image_index"][:] = np.arange(num_images) - np.repeat(self.first_image, counts)
        self.written = 0

    def write(self, row, means, decoded, digests):
        """Product `row` of the range: `means` (models, its images, C) image means, `decoded` per image."""
        at, count = int(self.first_image[row]), len(decoded)
        if count:
            kept = probability.top_k(means.reshape(-1, means.shape[-1]), self.top_k)
            for name, values in zip(MODEL_ARRAYS, kept):
                self.arrays[name][:, at:at + count] = values.reshape(means.shape[0], count, *values.shape[1:])
            self.arrays["md5"][at:at + count] = digests
            self.arrays["decoded"][at:at + count] = decoded
        self.written += 1

    def commit(self, force=False):
        """Flush, write the meta file, and rename the folder into place (replacing an old one with `force`)."""
        if self.written != self.meta["num_products"]:
            raise UserError(f"internal: {self.written} of {self.meta['num_products']} products stored")
        for array in self.arrays.values():
            array.flush()
        self.arrays = {}
        with open(os.path.join(self.temp, META), "w") as fh:
            json.dump(self.meta, fh, indent=1)
        if os.path.exists(self.final) and force:
            shutil.rmtree(self.final)
        os.rename(self.temp, self.final)
        log.info("probability store: %s (%s, %s, top %d)", self.final, plural(self.meta["num_images"], "image"),
                 plural(len(self.meta["models"]), "model"), self.top_k)
        return self.final

    def abandon(self):
        self.arrays = {}
        shutil.rmtree(self.temp, ignore_errors=True)


def _load(folder, name):
    path = os.path.join(folder, name + ".npy")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable probability store array ({exc})") from None


class _Range:
    """One range folder of a store, its arrays memory-mapped."""

    def __init__(self, folder):
        meta_path = os.path.join(folder, META)
        try:
            with open(meta_path) as fh:
                self.meta = json.load(fh)
        except (OSError, json.JSONDecodeError) as exc:
            raise UserError(f"{meta_path}: not a readable probability store meta file ({exc})") from None
        if self.meta.get("format") != FORMAT or self.meta.get("version") != VERSION:
            raise UserError(f"{meta_path}: not a version-{VERSION} probability store")
        self.folder = folder
        self.arrays = {name: _load(folder, name) for name in PRODUCT_ARRAYS + IMAGE_ARRAYS + MODEL_ARRAYS}
        num_products, num_images = self.meta["num_products"], self.meta["num_images"]
        models, k = len(self.meta["models"]), self.meta["top_k"]
        expected = {"product_id": (num_products,), "num_images": (num_products,), "category_id": (num_products,),
                    "image_product": (num_images,), "image_index": (num_images,), "md5": (num_images,),
                    "decoded": (num_images,), "top_class": (models, num_images, k),
                    "top_log_prob": (models, num_images, k), "rest": (models, num_images),
                    "tail_log_mean": (models, num_images)}
        for name, shape in expected.items():
            if self.arrays[name].shape != shape:
                raise UserError(f"{os.path.join(folder, name + '.npy')}: shape {self.arrays[name].shape}, "
                                f"expected {shape} from {META}")


class Store:
    """Every range folder of one --save-probs DIR, in product order (they must follow each other)."""

    def __init__(self, directory):
        if not os.path.isdir(directory):
            raise UserError(f"{directory}: probability store folder not found")
        names = sorted(n for n in os.listdir(directory) if _RANGE.match(n))
        if not names:
            raise UserError(f"{directory}: no probability store in it (products-START-STOP folders of "
                            "predict.predict --save-probs)")
        self.directory = directory
        self.ranges = sorted((_Range(os.path.join(directory, n)) for n in names), key=lambda r: r.meta["start"])
        first = self.ranges[0].meta
        for previous, current in zip(self.ranges, self.ranges[1:]):
            if current.meta["start"] != previous.meta["stop"]:
                raise UserError(f"{directory}: products {previous.meta['stop']}-{current.meta['start']} are in no "
                                "range folder (a shard missing?)")
        for part in self.ranges[1:]:
            for key in SHARED_SETTINGS + ("models", "top_k", "bson"):
                if part.meta[key] != first[key]:
                    raise UserError(f"{part.folder}: {key} {part.meta[key]} differs from {first[key]} of "
                                    f"{self.ranges[0].folder}")
        self.meta = first
        self.models = list(first["models"])
        self.image_bounds = np.cumsum([0] + [r.meta["num_images"] for r in self.ranges])

    def concatenated(self, name):
        """A product or image array over all range folders."""
        return np.concatenate([r.arrays[name] for r in self.ranges])

    def model_rows(self, first, last):
        """Dense (models, images, C) float32 probabilities of images [first, last) of the store."""
        parts = []
        for part, lo in zip(self.ranges, self.image_bounds[:-1].tolist()):
            a, b = max(first, lo), min(last, lo + part.meta["num_images"])
            if a < b:
                arrays = part.arrays
                parts.append(probability.from_top_k(arrays["top_class"][:, a - lo:b - lo],
                                                    arrays["top_log_prob"][:, a - lo:b - lo],
                                                    arrays["tail_log_mean"][:, a - lo:b - lo],
                                                    self.meta["num_classes"]))
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


def check_stores_agree(stores):
    """Stores combined as one ensemble: the same run settings, products, images and MD5s."""
    first = stores[0]
    reference = {name: first.concatenated(name) for name in ("product_id", "num_images", "md5")}
    for store in stores[1:]:
        for key in SHARED_SETTINGS:
            if store.meta[key] != first.meta[key]:
                raise UserError(f"{store.directory}: {key} {store.meta[key]}, but {first.meta[key]} in "
                                f"{first.directory}")
        for name, values in reference.items():
            other = store.concatenated(name)
            if len(other) != len(values) or not np.array_equal(other, values):
                what = {"product_id": "products", "num_images": "image counts", "md5": "picture MD5s"}[name]
                raise UserError(f"{store.directory}: its {what} differ from those of {first.directory} "
                                "(predicted from another BSON or product range?)")
