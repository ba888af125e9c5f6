"""MD5 dictionaries of the training images and products: hash -> {category_id: count}.

Two tables, built in one pass over a labelled BSON:
- image MD5 (16-byte digest of the JPEG bytes) -> {category_id: count};
- product hash -> {category_id: count}, where the product hash is the sorted set
  of the product's image MD5s (hex), joined by "_". On disk and in lookups a
  product is keyed by the 16-byte MD5 of that string, which keeps keys fixed-size.

Each key's categories are kept in the order they were first seen in the BSON, as the
original's Counter kept them: `--md5-dict-type majority` gives a tie to the category
seen first (format version 2; version 1 files, sorted by category id, still load, but
majority refuses them).

Saved as an uncompressed `.npz` of plain arrays (sorted keys, CSR offsets,
category ids, counts) and loaded with `allow_pickle=False`: no code can run from
a dictionary file, and 8 million entries load in about a second.
"""
import hashlib
import json
import logging

import numpy as np

from cli.files import check_input_file, write_npz
from cli.runner import UserError

log = logging.getLogger(__name__)

FORMAT = "cdiscount-md5-dict"
FORMAT_VERSION = 2  # 2: each key's categories in first-seen order (1: sorted by category id)
READABLE_VERSIONS = (1, 2)
KEY_DTYPE = np.dtype("S16")
BUILD_COMMAND = "python -m data.bson_md5_dict --bson TRAIN.bson --out DICT.npz"
# why the original's --md5-dict-pkl is refused wherever it named a dictionary to read
PICKLE_REFUSED = f"a pickle can run code, so none is loaded: pass an .npz dictionary with --md5-dict, built by " \
                 f"{BUILD_COMMAND}"


def image_md5(jpeg):
    """16-byte MD5 digest of one picture's bytes."""
    return hashlib.md5(jpeg).digest()


def product_hash(image_digests):
    """The product hash: sorted set of its image MD5s (hex), joined by '_'."""
    return "_".join(sorted({d.hex() for d in image_digests}))


def product_key(image_digests):
    """16-byte key of a product hash, as stored in the dictionary."""
    return hashlib.md5(product_hash(image_digests).encode()).digest()


def iter_image_digests(index, start=0, stop=None, batch_images=4096):
    """Yield (product, pictures, digests) of products [start, stop) in file order; MD5s computed on
    two threads (hashlib releases the GIL on pictures over 2 KB) while the main thread reads."""
    from concurrent.futures import ThreadPoolExecutor

    def digest_all(pictures):
        return [hashlib.md5(p).digest() for p in pictures]

    with ThreadPoolExecutor(max_workers=2) as pool:
        batch, images = [], 0
        for product, pictures in index.iter_product_images(start, stop):
            batch.append((product, pictures))
            images += len(pictures)
            if images >= batch_images:
                yield from _digest_batch(batch, pool, digest_all)
                batch, images = [], 0
        if batch:
            yield from _digest_batch(batch, pool, digest_all)


def digests_in_file_order(index, start=0, stop=None, desc="md5", each_product=None):
    """The MD5 of every picture of products [start, stop), in file order (an S16 array), in one pass
    with a progress bar; `each_product(product, pictures, digests, first)` sees each product on the
    way (`first`: its first picture's position in the array)."""
    from tqdm import tqdm

    total = int(index.products["num_imgs"][start:stop].sum())
    digests_out = np.zeros(total, dtype=KEY_DTYPE)
    # Bytes written through a memoryview: numpy's item assignment costs more than the MD5 of a small picture.
    out_bytes = memoryview(digests_out).cast("B")
    first = 0  # the products come in file order, so their images do too
    with tqdm(total=total, unit="img", desc=desc) as bar:
        for count, (product, pictures, digests) in enumerate(iter_image_digests(index, start, stop)):
            out_bytes[16 * first:16 * (first + len(digests))] = b"".join(digests)
            if each_product is not None:
                each_product(product, pictures, digests, first)
            first += len(digests)
            if count % 4096 == 0:  # tqdm costs a microsecond per call: 7 seconds per call per product
                bar.update(first - bar.n)
        bar.update(first - bar.n)
    return digests_out


def _digest_batch(batch, pool, digest_all):
    flat = [picture for _, pictures in batch for picture in pictures]
    half = len(flat) // 2
    first, second = pool.submit(digest_all, flat[:half]), pool.submit(digest_all, flat[half:])
    digests = first.result() + second.result()
    at = 0
    for product, pictures in batch:
        yield product, pictures, digests[at:at + len(pictures)]
        at += len(pictures)


class HashTable:
    """Sorted 16-byte keys, each with a small {category_id: count} in CSR form."""

    def __init__(self, keys, ptr, category_ids, counts):
        self.keys = keys
        self.ptr = ptr
        self.category_ids = category_ids
        self.counts = counts

    @classmethod
    def from_pairs(cls, keys, category_ids):
        """Count (key, category_id) occurrences; `keys` is an S16 array, one per item, in file order.
        Each key's categories come in the order of their first occurrence.

        Built from one sort order and gathers, a chunk at a time where it can, so that 12 million keys
        take little more than the inputs and the table (no dict, no sorted copy of the pairs)."""
        keys = np.ascontiguousarray(keys, dtype=KEY_DTYPE)
        category_ids = np.asarray(category_ids)
        if len(keys) == 0:
            empty = np.zeros(0, dtype=np.int64)
            return cls(np.zeros(0, dtype=KEY_DTYPE), np.zeros(1, dtype=np.int64), empty, empty)
        order = _pair_order(keys, category_ids)
        new_key = _changes(keys, order)
        pair_starts = np.flatnonzero(new_key | _changes(category_ids, order))
        first_seen = order[pair_starts]  # a stable order: each run of equal pairs starts at its first occurrence
        del order
        key_starts = new_key[pair_starts]
        del new_key
        counts = np.empty(len(pair_starts), dtype=np.int64)
        np.subtract(pair_starts[1:], pair_starts[:-1], out=counts[:-1])
        counts[-1] = len(keys) - pair_starts[-1]
        del pair_starts
        # Each step below frees what it no longer needs before the next allocates: at 12 million distinct
        # keys every array here is 50-200 MB.
        unique_keys = keys[first_seen[key_starts]]  # any occurrence of a key holds its bytes
        ptr = np.flatnonzero(np.r_[key_starts, True])
        del key_starts
        shared, within = _first_seen_within_keys(ptr, first_seen)
        first_seen[shared], counts[shared] = first_seen[within], counts[within]
        pair_categories = category_ids[first_seen]
        del first_seen
        return cls(unique_keys, ptr, pair_categories.astype(np.int64), counts)

    def __len__(self):
        return len(self.keys)

    def find(self, keys):
        """Position of each key in the table, -1 where absent (vectorised)."""
        query = np.asarray(keys, dtype=KEY_DTYPE)
        if len(self.keys) == 0:
            return np.full(len(query), -1, dtype=np.int64)
        pos = np.searchsorted(self.keys, query)
        pos_clipped = np.minimum(pos, len(self.keys) - 1)
        found = self.keys[pos_clipped] == query
        return np.where(found, pos_clipped, -1).astype(np.int64)

    def num_categories(self):
        """Distinct categories per key."""
        return np.diff(self.ptr)

    def num_categories_of(self, keys):
        """Distinct categories of each of `keys` (vectorised): 0 where the table does not hold it."""
        pos = self.find(keys)
        counts = np.zeros(len(pos), dtype=np.int64)
        counts[pos >= 0] = self.num_categories()[pos[pos >= 0]]
        return counts

    def entry(self, position):
        """{category_id: count} of the key at `position`, in first-seen order (version 2 files)."""
        lo, hi = self.ptr[position], self.ptr[position + 1]
        return {int(c): int(n) for c, n in zip(self.category_ids[lo:hi], self.counts[lo:hi])}

    def get(self, key):
        pos = self.find([key])[0]
        return None if pos < 0 else self.entry(pos)

    def unique_category(self, keys):
        """Category of each key that maps to exactly one category, else -1."""
        pos = self.find(keys)
        result = np.full(len(pos), -1, dtype=np.int64)
        hit = pos >= 0
        single = np.zeros(len(pos), dtype=bool)
        single[hit] = self.num_categories()[pos[hit]] == 1
        result[single] = self.category_ids[self.ptr[pos[single]]]
        return result


def compact_ints(values):
    """`values` as int32 when they all fit (Kaggle's category ids do): half the memory of int64."""
    values = np.asarray(values)
    fits = len(values) == 0 or (values.min() >= np.iinfo(np.int32).min and values.max() <= np.iinfo(np.int32).max)
    return values.astype(np.int32) if fits else values


def first_occurrences(keys):
    """Whether each S16 key is the first of its value in file order (a sort order, not a set of 12M keys)."""
    keys = np.ascontiguousarray(keys, dtype=KEY_DTYPE)
    order = _pair_order(keys)
    first = np.zeros(len(keys), dtype=bool)
    first[order[_changes(keys, order)]] = True  # stable order: each run of equal keys starts at its first
    return first


def _pair_order(keys, category_ids=None):
    """Stable order of the items by (key, category). A key's big-endian 8-byte words sort as its bytes do;
    MD5s rarely share their first word unless they are equal, so the rest is sorted only within such ties."""
    words = keys.view(">u8").reshape(-1, 2)
    order = np.argsort(words[:, 0], kind="stable")
    first_words = words[order, 0]
    tie = first_words[1:] == first_words[:-1]
    del first_words
    tied = np.flatnonzero(np.r_[tie, False] | np.r_[False, tie])  # sorted positions in runs of equal first words
    if len(tied):
        run = np.cumsum(np.r_[True, ~tie])[tied]
        items = order[tied]
        within = (words[items, 1], run) if category_ids is None else (category_ids[items], words[items, 1], run)
        order[tied] = items[np.lexsort(within)]
    return order


def _changes(values, order, chunk=1 << 20):
    """Whether each item in `order` differs from the one before (the first does), a chunk at a time."""
    changed = np.ones(len(order), dtype=bool)
    for start in range(0, len(order), chunk):
        part = values[order[start:start + chunk + 1]]
        changed[start + 1:start + len(part)] = part[1:] != part[:-1]
    return changed


def _first_seen_within_keys(ptr, first_seen):
    """(positions, source positions) that put each key's pairs in first-seen order: only the pairs of
    keys with several categories move."""
    sizes = np.diff(ptr)
    shared = np.flatnonzero(np.repeat(sizes > 1, sizes))
    group = np.searchsorted(ptr, shared, side="right") - 1  # the key of each moving pair
    return shared, shared[np.lexsort((first_seen[shared], group))]


class Md5Dictionary:
    """Image and product tables plus the build's totals."""

    def __init__(self, images, products, meta=None):
        self.images = images
        self.products = products
        self.meta = meta or {"version": FORMAT_VERSION}

    @property
    def first_seen_order(self):
        """Whether each key's categories are in first-seen order (False for version 1 files)."""
        return self.meta.get("version", FORMAT_VERSION) >= 2

    @classmethod
    def build(cls, digests, image_categories, product_keys, product_categories, source=""):
        images = HashTable.from_pairs(digests, image_categories)  # from_pairs makes the keys KEY_DTYPE
        products = HashTable.from_pairs(product_keys, product_categories)
        return cls.from_tables(images, products, len(digests), len(product_keys), source)

    @classmethod
    def from_tables(cls, images, products, total_images, total_products, source=""):
        meta = {"format": FORMAT, "version": FORMAT_VERSION, "source": source}
        meta.update(summarise(images, products, total_images, total_products))
        return cls(images, products, meta)

    def save(self, path):
        arrays = {}
        for name, table in (("image", self.images), ("product", self.products)):
            arrays[f"{name}_keys"] = table.keys
            arrays[f"{name}_ptr"] = table.ptr
            arrays[f"{name}_category_ids"] = table.category_ids
            arrays[f"{name}_counts"] = table.counts
        arrays["meta"] = np.frombuffer(json.dumps(self.meta).encode(), dtype=np.uint8)
        write_npz(path, arrays)

    @classmethod
    def load(cls, path, tables=("image", "product")):
        """The dictionary of `path`; `tables`: the ones to read (prediction's overrides need only the images':
        the product table of Kaggle's 7 million products would be a quarter of a GB in memory for nothing),
        the others empty."""
        check_input_file(path, "MD5 dictionary")
        check_is_npz(path)
        try:
            with np.load(path, allow_pickle=False) as npz:
                meta = json.loads(bytes(npz["meta"]).decode())
                if meta.get("format") != FORMAT:
                    raise ValueError("not an MD5 dictionary written by data.bson_md5_dict")
                if meta.get("version") not in READABLE_VERSIONS:
                    raise ValueError(f"format version {meta.get('version')}, this code reads {READABLE_VERSIONS}")
                wanted = tables
                tables = [HashTable(npz[f"{n}_keys"], npz[f"{n}_ptr"], npz[f"{n}_category_ids"], npz[f"{n}_counts"])
                          if n in wanted else HashTable(np.zeros(0, KEY_DTYPE), np.zeros(1, np.int64),
                                                        np.zeros(0, np.int64), np.zeros(0, np.int64))
                          for n in ("image", "product")]
        except (ValueError, KeyError, OSError, EOFError) as exc:
            # np.load refuses pickled objects (allow_pickle=False); a pickle lands here too.
            raise UserError(f"{path}: not a readable MD5 dictionary ({exc})") from None
        for name, table in zip(("image", "product"), tables):
            if table.keys.dtype != KEY_DTYPE or len(table.ptr) != len(table.keys) + 1:
                raise UserError(f"{path}: malformed {name} table")
        return cls(tables[0], tables[1], meta)


def check_is_npz(path):
    """A file that is no .npz archive at all (a CSV, a pickle) gets a message saying what it is not."""
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic == b"PK\x03\x04":
        return
    what = "a pickle" if magic[:1] == b"\x80" else "an empty file" if not magic else "not an .npz archive"
    hint = PICKLE_REFUSED if magic[:1] == b"\x80" else f"build one with {BUILD_COMMAND}"
    raise UserError(f"{path}: not an MD5 dictionary ({what}); {hint}")


def summarise(images, products, total_images, total_products):
    """The totals the original printed: images, unique, conflicts, refined; same for products."""
    image_labels = images.num_categories()
    product_labels = products.num_categories()
    return {
        "total_images": int(total_images),
        "unique_images": int(len(images)),
        "image_label_conflicts": int((image_labels > 1).sum()),
        "refined_images": int((image_labels == 1).sum()),
        "total_products": int(total_products),
        "unique_product_hashes": int(len(products)),
        "product_label_conflicts": int((product_labels > 1).sum()),
        "refined_products": int((product_labels == 1).sum()),
    }
