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
               class ids and float16 natural logs of the probabilities (precise to 0.05% near 1 and 1.5% near 1e-20: see probability.top_k), largest first; among them, whatever their
               probability, up to K // 2 classes the run's MD5 dictionary names for any picture of the
               product (older stores kept only the largest); rest, the mass of the
               other classes (float32); tail_log_mean, the mean log of their positive
               probabilities (float16), which stands for each of them when rebuilding.
  named classes, exactly: named_class (images, W), the first W = meta.json's `named_exact` of those
               classes (-1: none), and named_prob (models, images, W), their image means in float32 as
               computed, which replace the float16 values when rebuilding. Where answered pictures of
               different categories tie, the direct run is decided by the float64 rounding of 1 + a tiny
               probability, which no float16 log keeps (stores without `named_exact` read as before).
The store serves every MD5 override type, so a run that writes it forwards the pictures the
dictionary answers too (repeated pictures are still forwarded once).

With --save-features, per model m: features-m.npy (views, images, D), each view's penultimate feature
vector (predict.models.feature_symbol; D differs between models, hence one array each), float16 as
computed or uint8 quantised (FeatureEncoder), and meta.json's `features`, one entry per model: model,
dim, views, dtype, scale (value = stored * scale), clipped (values out of the stored range). An
undecoded picture's rows are zeros. Stores without the key (no features, or older) read as before.
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
# the named classes whose image means are kept exactly (float32) per picture: Kaggle's products have 1-4 pictures,
# and the default override (unique) names one class per answered picture
NAMED_EXACT = 4
# the run settings that must agree for stores to be combined
SHARED_SETTINGS = ("num_classes", "multi_view", "cate_level")
FEATURE_DTYPES = {"float16": np.float16, "uint8": np.uint8}
DEFAULT_FEATURE_DTYPE = "float16"
FEATURE_FIELDS = ("model", "dim", "views", "dtype")  # what every range folder of a store must agree on
# uint8: the first batch's 99.9th percentile becomes level 200 of 255 (FeatureEncoder)
UINT8_PERCENTILE, UINT8_LEVEL = 99.9, 200
# A memory map's pages count in the process's resident set once touched, until it is unmapped: the writer
# maps its arrays again after this many bytes, and readers map them only while they read.
REMAP_BYTES = 64 << 20
WRITE_IMAGES = 256  # the writer reduces this many pictures' probabilities to their top K at once


def range_folder(directory, start, stop):
    return os.path.join(directory, f"products-{start:09d}-{stop:09d}")


def features_name(model_index):
    return f"features-{model_index}"


class FeatureEncoder:
    """How one model's features are stored. float16: as computed (scale 1; `clipped` counts values beyond
    float16's range, which become inf). uint8: round(x / scale) clipped to 0..255 (`clipped` counts the
    values above 255 and the negative ones; these networks' features are pooled ReLU outputs, never
    negative). The scale is chosen once, from the first batch the model computes, before any of its
    pictures is stored, so that every row of a range folder shares it: that batch's 99.9th percentile
    becomes level 200, so that a few outlying activations do not spend the 256 levels, and values up to
    1.27 times that percentile in later batches (brighter or busier pictures) still fit."""

    def __init__(self, dtype):
        self.dtype = dtype
        self.scale = 1.0 if dtype == "float16" else None  # None: no positive value seen yet
        self.clipped = 0

    def observe(self, batch):
        """A batch of features as computed: sets the uint8 scale if it is not set yet."""
        if self.scale is None and batch.size:
            top = float(np.percentile(batch, UINT8_PERCENTILE))
            top = top if top > 0 else float(batch.max())  # mostly zeros: the largest value then
            self.scale = top / UINT8_LEVEL if top > 0 else None

    def encode(self, values):
        """`values` (float32) in the stored dtype, counting the values clipped."""
        if self.dtype == "float16":
            stored = values.astype(np.float16)
            self.clipped += int(np.count_nonzero(np.isinf(stored) & np.isfinite(values)))
            return stored
        self.observe(values)
        if self.scale is None:  # nothing positive yet: every value is stored as 0
            self.clipped += int(np.count_nonzero(values < 0))
            return np.zeros(values.shape, np.uint8)
        levels = np.rint(values / self.scale)
        self.clipped += int(np.count_nonzero((values < 0) | (levels > 255)))
        return np.clip(levels, 0, 255).astype(np.uint8)


class StoreWriter:
    """Fills one range folder as products finish (any order); `commit()` renames it into place.
    `feature_dims` (one per model; None: no features): keep `feature_views` views of each picture's
    features in `feature_dtype` (FEATURE_DTYPES)."""

    def __init__(self, directory, index, start, stop, num_classes, model_names, top_k, settings, feature_dims=None,
                 feature_views=1, feature_dtype=DEFAULT_FEATURE_DTYPE):
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
                  "tail_log_mean": ((num_models, num_images), np.float16),
                  "named_class": ((num_images, NAMED_EXACT), class_dtype),
                  "named_prob": ((num_models, num_images, NAMED_EXACT), np.float32)}
        self.meta["named_exact"] = NAMED_EXACT
        self.arrays = {name: np.lib.format.open_memmap(os.path.join(self.temp, name + ".npy"), mode="w+",
                                                       dtype=dtype, shape=shape)
                       for name, (shape, dtype) in shapes.items()}
        self.arrays["product_id"][:] = product_ids
        self.arrays["num_images"][:] = counts
        self.arrays["category_id"][:] = index.products["category_id"][start:stop] if index.has_labels else -1
        self.arrays["image_product"][:] = np.repeat(product_ids, counts)
        self.arrays["image_index"][:] = np.arange(num_images) - np.repeat(self.first_image, counts)
        self.arrays["named_class"][:] = -1
        self._remap()  # the per-product and per-image columns just written leave this process's memory
        self.feature_dims = None if feature_dims is None else [int(dim) for dim in feature_dims]
        self.feature_views = feature_views
        self.encoders = [FeatureEncoder(feature_dtype) for _ in feature_dims or ()]
        if feature_dims is not None:
            self.meta["features"] = [{"model": name, "dim": int(dim), "views": feature_views, "dtype": feature_dtype}
                                     for name, dim in zip(model_names, feature_dims)]
            for m, dim in enumerate(feature_dims):  # zeros until written: an undecoded picture's stay so
                self.arrays[features_name(m)] = np.lib.format.open_memmap(
                    os.path.join(self.temp, features_name(m) + ".npy"), mode="w+",
                    dtype=FEATURE_DTYPES[feature_dtype], shape=(feature_views, num_images, int(dim)))
        self.written = 0
        self.waiting, self.waiting_images = [], 0  # products written but not yet reduced (write)
        self.bytes_since_remap = 0
        self.image_bytes = sum(array.nbytes for array in self.arrays.values()) // max(1, num_images)

    def _remap(self):
        """Unmap the arrays (their pages stay in the page cache, out of this process) and map them again."""
        for name, array in self.arrays.items():
            array.flush()
            self.arrays[name] = np.load(array.filename, mmap_mode="r+", allow_pickle=False)
        self.bytes_since_remap = 0

    def observe_features(self, model_index, batch):
        """A batch of model `model_index`'s features as computed, before any of them is written."""
        self.encoders[model_index].observe(batch)

    def write(self, row, means, decoded, digests, features=None, named_classes=None):
        """Product `row` of the range: `means` (models, its images, C) image means, `decoded` per image;
        `features`: per model, (views, its images, D) float32 (zeros for an undecoded picture);
        `named_classes`: the classes the MD5 dictionary names for its pictures, which every picture of the
        product keeps among its K whatever their probability (at most K // 2 of them, the first), the first
        NAMED_EXACT of them also exactly (named_class, named_prob). Kept until
        WRITE_IMAGES pictures wait, then reduced to their top K together: per product, the dozen numpy
        calls of the reduction cost more than the reduction itself."""
        if len(decoded):
            named = np.zeros(0, np.int64) if named_classes is None else np.asarray(named_classes, np.int64)
            self.waiting.append((int(self.first_image[row]), means, decoded, digests, features, named))
            self.waiting_images += len(decoded)
            if self.waiting_images >= WRITE_IMAGES:
                self._write_waiting()
        self.written += 1

    def _write_waiting(self):
        if not self.waiting:
            return
        means = np.concatenate([entry[1] for entry in self.waiting], axis=1)  # (models, pictures, C)
        kept_width = self.top_k // 2
        named = np.full((means.shape[1], min(kept_width, max(len(entry[5]) for entry in self.waiting))), -1, np.int64)
        offset = 0
        for entry in self.waiting:  # each picture of a product keeps its product's named classes
            kept_named = entry[5][:kept_width]
            named[offset:offset + len(entry[2]), :len(kept_named)] = kept_named
            offset += len(entry[2])
        named = np.broadcast_to(named, (means.shape[0], *named.shape)).reshape(means.shape[0] * len(named), -1)
        kept = [values.reshape(means.shape[0], means.shape[1], *values.shape[1:])
                for values in probability.top_k(means.reshape(-1, means.shape[-1]), self.top_k, named)]
        offset = 0
        for at, _, decoded, digests, features, product_named in self.waiting:
            count = len(decoded)
            for name, values in zip(MODEL_ARRAYS, kept):
                self.arrays[name][:, at:at + count] = values[:, offset:offset + count]
            self.arrays["md5"][at:at + count] = digests
            exact = product_named[:NAMED_EXACT]
            if len(exact):
                self.arrays["named_class"][at:at + count, :len(exact)] = exact
                self.arrays["named_prob"][:, at:at + count, :len(exact)] = means[:, offset:offset + count][:, :, exact]
            self.arrays["decoded"][at:at + count] = decoded
            for m, values in enumerate(features or ()):
                self.arrays[features_name(m)][:, at:at + count] = self.encoders[m].encode(values)
            offset += count
        self.bytes_since_remap += offset * self.image_bytes
        self.waiting, self.waiting_images = [], 0
        if self.bytes_since_remap >= REMAP_BYTES:
            self._remap()

    def commit(self, force=False):
        """Flush, write the meta file, and rename the folder into place (replacing an old one with `force`)."""
        if self.written != self.meta["num_products"]:
            raise UserError(f"internal: {self.written} of {self.meta['num_products']} products stored")
        self._write_waiting()
        for array in self.arrays.values():
            array.flush()
        self.arrays = {}
        for entry, encoder in zip(self.meta.get("features", ()), self.encoders):
            # a scale never set: nothing positive was computed, every value is stored as 0 whatever the scale
            entry.update(scale=encoder.scale or 1.0, clipped=encoder.clipped)
        with open(os.path.join(self.temp, META), "w") as fh:
            json.dump(self.meta, fh, indent=1)
        if os.path.exists(self.final) and force:
            shutil.rmtree(self.final)
        os.rename(self.temp, self.final)
        log.info("probability store: %s (%s, %s, top %d)", self.final, plural(self.meta["num_images"], "image"),
                 plural(len(self.meta["models"]), "model"), self.top_k)
        for entry in self.meta.get("features", ()):
            (log.warning if entry["clipped"] else log.info)(
                "features of %s: %d x %d per picture, %s, scale %.6g, %s clipped", entry["model"], entry["views"],
                entry["dim"], entry["dtype"], entry["scale"], plural(entry["clipped"], "value"))
        return self.final

    def abandon(self):
        self.arrays = {}
        shutil.rmtree(self.temp, ignore_errors=True)


def _feature_layout(meta):
    """What the range folders of a store must agree on about its features (the uint8 scale is each one's own)."""
    return [{key: entry[key] for key in FEATURE_FIELDS} for entry in meta.get("features", ())]


def _load(folder, name):
    path = os.path.join(folder, name + ".npy")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable probability store array ({exc})") from None


class _Range:
    """One range folder of a store; `array(name)` maps one of its arrays (checked when opened), for one read:
    a map kept open would keep every page read in the process's memory (REMAP_BYTES)."""

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
        arrays = {name: _load(folder, name) for name in PRODUCT_ARRAYS + IMAGE_ARRAYS + MODEL_ARRAYS}
        num_products, num_images = self.meta["num_products"], self.meta["num_images"]
        models, k = len(self.meta["models"]), self.meta["top_k"]
        expected = {"product_id": (num_products,), "num_images": (num_products,), "category_id": (num_products,),
                    "image_product": (num_images,), "image_index": (num_images,), "md5": (num_images,),
                    "decoded": (num_images,), "top_class": (models, num_images, k),
                    "top_log_prob": (models, num_images, k), "rest": (models, num_images),
                    "tail_log_mean": (models, num_images)}
        self.named_exact = self.meta.get("named_exact", 0)  # 0: an older store, without the exact named classes
        if not isinstance(self.named_exact, int) or self.named_exact < 0:
            raise UserError(f"{meta_path}: named_exact: expected a count, got {self.named_exact!r}")
        if self.named_exact:
            for name, shape in (("named_class", (num_images, self.named_exact)),
                                ("named_prob", (models, num_images, self.named_exact))):
                arrays[name], expected[name] = _load(folder, name), shape
        features = self.meta.get("features", [])
        if not isinstance(features, list) or len(features) not in (0, models):
            raise UserError(f"{meta_path}: features: expected one entry per model ({models})")
        for m, entry in enumerate(features):
            name = features_name(m)
            if not isinstance(entry, dict) or any(key not in entry for key in FEATURE_FIELDS + ("scale",)):
                raise UserError(f"{meta_path}: features entry {m} lacks one of {', '.join(FEATURE_FIELDS)}, scale")
            arrays[name] = _load(folder, name)
            expected[name] = (entry["views"], num_images, entry["dim"])
            if arrays[name].dtype != FEATURE_DTYPES.get(entry["dtype"]):
                raise UserError(f"{os.path.join(folder, name + '.npy')}: dtype {arrays[name].dtype}, "
                                f"expected {entry['dtype']} from {META}")
        for name, shape in expected.items():
            if arrays[name].shape != shape:
                raise UserError(f"{os.path.join(folder, name + '.npy')}: shape {arrays[name].shape}, "
                                f"expected {shape} from {META}")
        self.names = set(arrays)

    def array(self, name):
        """One of the folder's arrays, freshly mapped (read-only)."""
        if name not in self.names:
            raise KeyError(name)
        return _load(self.folder, name)


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
            if _feature_layout(part.meta) != _feature_layout(first):
                raise UserError(f"{part.folder}: its features ({META} 'features') differ from those of "
                                f"{self.ranges[0].folder}")
        self.meta = first
        self.models = list(first["models"])
        self.feature_layout = _feature_layout(first)  # per model: model, dim, views, dtype; [] without features
        self.image_bounds = np.cumsum([0] + [r.meta["num_images"] for r in self.ranges])

    def concatenated(self, name):
        """A product or image array over all range folders."""
        return np.concatenate([r.array(name) for r in self.ranges])

    def _pieces(self, first, last):
        """(range, its image slice) of each range folder holding images [first, last) of the store."""
        for part, lo in zip(self.ranges, self.image_bounds[:-1].tolist()):
            a, b = max(first, lo), min(last, lo + part.meta["num_images"])
            if a < b:
                yield part, slice(a - lo, b - lo)

    def model_rows(self, first, last):
        """Dense (models, images, C) float32 probabilities of images [first, last) of the store."""
        parts = []
        for part, rows in self._pieces(first, last):
            dense = probability.from_top_k(part.array("top_class")[:, rows], part.array("top_log_prob")[:, rows],
                                           part.array("tail_log_mean")[:, rows], self.meta["num_classes"])
            if part.named_exact:  # the named classes' values as computed, in place of their float16 logs
                named = part.array("named_class")[rows]
                images, slots = np.nonzero(named >= 0)
                dense[:, images, named[images, slots]] = part.array("named_prob")[:, rows][:, images, slots]
            parts.append(dense)
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)

    def features(self, model_index, first, last):
        """(views, last - first, D) float32 features of model `model_index` (its position in `models`) for
        images [first, last) of the store, the uint8 ones dequantised with each range folder's scale."""
        if not self.feature_layout:
            raise UserError(f"{self.directory}: no features in this store (predict.predict --save-features)")
        if not 0 <= model_index < len(self.feature_layout):
            raise UserError(f"{self.directory}: no model {model_index}: its features are of models 0 to "
                            f"{len(self.feature_layout) - 1}")
        if not 0 <= first <= last <= self.image_bounds[-1]:
            raise ValueError(f"images [{first}, {last}): the store has {self.image_bounds[-1]}")
        entry, name = self.feature_layout[model_index], features_name(model_index)
        parts = [np.zeros((entry["views"], 0, entry["dim"]), np.float32)]  # first == last: this, empty
        for part, rows in self._pieces(first, last):
            scale = np.float32(part.meta["features"][model_index]["scale"])
            parts.append(part.array(name)[:, rows].astype(np.float32) * scale)
        return parts[-1] if len(parts) <= 2 else np.concatenate(parts, axis=1)


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
