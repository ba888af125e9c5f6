"""Offset index of a Kaggle Cdiscount BSON file, built without decoding the pictures.

A Kaggle BSON file is a plain concatenation of documents, each starting with its
4-byte little-endian length:

    {"_id": int, "imgs": [{"picture": <JPEG bytes>}, ...], "category_id": int}

(test files have no `category_id`). The index walks those length prefixes and,
inside each document, only the element headers: it records for every product its
`_id`, byte offset, length, `category_id` (-1 when absent) and images, and for
every image the byte offset and length of its JPEG. Picture bytes are skipped with
positioned reads, so building the index reads about 2% of the file.

Everything else comes from the index: counts for progress bars, random access to
a product or a single JPEG, sharding by product range, sequential streaming of raw
documents. It is cached beside the BSON (or in a user cache folder when that
directory is read-only) and rebuilt when the file's size or mtime changes.
"""
import errno
import hashlib
import json
import logging
import os
import struct

import numpy as np
from tqdm import tqdm

from data.common import UserError, atomic_outputs, check_input_file, plural, write_npz

log = logging.getLogger(__name__)

INDEX_VERSION = 1
NO_CATEGORY = -1

PRODUCT_DTYPE = np.dtype([
    ("product_id", "<i8"),
    ("offset", "<i8"),       # byte offset of the document in the BSON
    ("length", "<i8"),       # document length in bytes (its own prefix)
    ("category_id", "<i8"),  # NO_CATEGORY for test files
    ("first_image", "<i8"),  # position of its first image in the image arrays
    ("num_imgs", "<i4"),
])

_INT32 = struct.Struct("<i")
_INT64 = struct.Struct("<q")
_DOUBLE = struct.Struct("<d")
# Fixed-size BSON element payloads; variable ones are handled in _skip_value.
_FIXED_SIZE = {0x01: 8, 0x07: 12, 0x08: 1, 0x09: 8, 0x0A: 0, 0x10: 4, 0x11: 8, 0x12: 8, 0x13: 16, 0x7F: 0, 0xFF: 0}
_WINDOW = 64  # bytes per positioned read: covers one element header chain


class BsonFormatError(UserError):
    """A BSON document that cannot be read; names the file, byte offset and product where known."""

    def __init__(self, path, offset, reason, product_id=None):
        self.path, self.offset, self.reason, self.product_id = path, offset, reason, product_id
        where = f"byte offset {offset}"
        if product_id is not None:
            where += f", product _id {product_id}"
        super().__init__(f"{path}: {where}: {reason}")


class _Corrupt(Exception):
    """Raised inside the document walker; turned into BsonFormatError with the context."""


class _PositionedReader:
    """Small window over os.pread, so header walking reads a few bytes per element."""

    def __init__(self, fd):
        self.fd = fd
        self.start = 0
        self.buf = b""

    def get(self, offset, size):
        end = offset + size
        if offset < self.start or end > self.start + len(self.buf):
            self.buf = os.pread(self.fd, max(size, _WINDOW), offset)
            self.start = offset
        rel = offset - self.start
        data = self.buf[rel:rel + size]
        if len(data) != size:
            raise _Corrupt("unexpected end of file")
        return data

    def cstring_end(self, offset, limit):
        """Offset just past the NUL that ends the key starting at `offset` (before `limit`)."""
        pos = offset
        while pos < limit:
            chunk = self.get(pos, min(_WINDOW, limit - pos))
            nul = chunk.find(b"\x00")
            if nul >= 0:
                return pos + nul + 1
            pos += len(chunk)
        raise _Corrupt("element name runs past the end of its document")


def _shown_name(name, most=40):
    """An element name from a damaged file, safe for a one-line message: escaped and shortened."""
    shown = repr(name[:most])[1:]  # b'...' -> '...' with control bytes escaped
    return shown + ("..." if len(name) > most else "")


def _int_value(kind, raw):
    if kind == 0x10:
        return _INT32.unpack(raw)[0]
    if kind == 0x12:
        return _INT64.unpack(raw)[0]
    value = _DOUBLE.unpack(raw)[0]  # 0x01: accept integral doubles only
    if value != int(value):
        raise _Corrupt(f"non-integral number {value}")
    return int(value)


def _value_size(reader, kind, offset, limit):
    """Bytes taken by an element value of BSON type `kind` starting at `offset`."""
    if kind in _FIXED_SIZE:
        return _FIXED_SIZE[kind]
    if kind in (0x02, 0x0D, 0x0E):  # string-like: int32 length then bytes
        return 4 + _INT32.unpack(reader.get(offset, 4))[0]
    if kind in (0x03, 0x04, 0x0F):  # embedded document/array: its own length
        return _INT32.unpack(reader.get(offset, 4))[0]
    if kind == 0x05:  # binary: int32 length, subtype, data
        return 5 + _INT32.unpack(reader.get(offset, 4))[0]
    if kind == 0x0B:  # regex: two C strings
        end = reader.cstring_end(offset, limit)
        return reader.cstring_end(end, limit) - offset
    raise _Corrupt(f"unknown BSON element type 0x{kind:02x}")


def _elements(reader, start, length):
    """Yield (kind, name, value_offset, value_size) of the document at `start`."""
    if length < 5:
        raise _Corrupt(f"document length {length} is below the minimum of 5")
    end = start + length - 1  # position of the terminating NUL
    pos = start + 4
    while True:
        kind = reader.get(pos, 1)[0]
        if kind == 0:
            if pos != end:
                raise _Corrupt(f"document ends at byte {pos}, its length says {end}")
            return
        if pos >= end:
            raise _Corrupt("document is not terminated by a NUL byte")
        name_end = reader.cstring_end(pos + 1, end)
        name = reader.get(pos + 1, name_end - pos - 2)
        size = _value_size(reader, kind, name_end, end)
        if size < 0 or name_end + size > end:
            raise _Corrupt(f"element {_shown_name(name)} runs past the end of its document")
        yield kind, name, name_end, size
        pos = name_end + size


def _scan_document(reader, offset, length):
    """Return (product_id, category_id, [(jpeg_offset, jpeg_length), ...]) of one document."""
    product_id, category_id, images, saw_imgs = None, NO_CATEGORY, [], False
    try:
        for kind, name, value_at, size in _elements(reader, offset, length):
            if name == b"_id":
                if kind not in (0x10, 0x12, 0x01):
                    raise _Corrupt(f"_id has BSON type 0x{kind:02x}, expected an integer")
                product_id = _int_value(kind, reader.get(value_at, size))
            elif name == b"category_id":
                if kind not in (0x10, 0x12, 0x01):
                    raise _Corrupt(f"category_id has BSON type 0x{kind:02x}, expected an integer")
                category_id = _int_value(kind, reader.get(value_at, size))
            elif name == b"imgs":
                if kind != 0x04:
                    raise _Corrupt(f"imgs has BSON type 0x{kind:02x}, expected an array")
                saw_imgs = True
                images = _scan_images(reader, value_at, size)
    except _Corrupt as exc:
        if len(exc.args) == 1 and product_id is not None:
            raise _Corrupt(exc.args[0], product_id) from None
        raise
    if product_id is None:
        raise _Corrupt("document has no _id")
    if not saw_imgs:
        raise _Corrupt("document has no imgs", product_id)
    return product_id, category_id, images


def _scan_images(reader, offset, length):
    images = []
    for kind, _, value_at, size in _elements(reader, offset, length):
        if kind != 0x03:
            raise _Corrupt(f"imgs entry has BSON type 0x{kind:02x}, expected a document")
        picture = None
        for inner_kind, inner_name, inner_at, inner_size in _elements(reader, value_at, size):
            if inner_name == b"picture":
                if inner_kind != 0x05:
                    raise _Corrupt(f"picture has BSON type 0x{inner_kind:02x}, expected binary")
                picture = (inner_at + 5, inner_size - 5)
        if picture is None:
            raise _Corrupt(f"image {len(images)} has no picture")
        images.append(picture)
    return images


# Kaggle's own layout, read with a few fixed-offset checks (the generic walker handles anything else):
# _id int32/int64, imgs = [{picture: binary}, ...], then category_id int32 (train) or nothing (test).
_ID32, _ID64, _IMGS = b"\x10_id\x00", b"\x12_id\x00", b"\x04imgs\x00"
_PICTURE, _CATEGORY32 = b"\x05picture\x00", b"\x10category_id\x00"
_IMAGE_KEYS = [str(k).encode() + b"\x00" for k in range(64)]


def _scan_kaggle_layout(fd, offset, length):
    """(product_id, category_id, images) like _scan_document, or None when the document is laid out
    otherwise (or is corrupt): the caller then runs the generic walker, which names the problem."""
    head = os.pread(fd, 64, offset)
    if head[4:9] == _ID32:
        product_id, pos = _INT32.unpack_from(head, 9)[0], 13
    elif head[4:9] == _ID64:
        product_id, pos = _INT64.unpack_from(head, 9)[0], 17
    else:
        return None
    if head[pos:pos + 6] != _IMGS or len(head) < pos + 10:
        return None
    array_start = offset + pos + 6
    array_end = array_start + _INT32.unpack_from(head, pos + 6)[0]  # just past the array's NUL
    doc_end = offset + length
    if not array_start + 5 <= array_end <= doc_end - 1:
        return None
    images, cursor, buf, buf_start = [], array_start + 4, head, offset
    while cursor < array_end - 1:
        rel = cursor - buf_start
        if rel + 32 > len(buf):
            buf, buf_start, rel = os.pread(fd, 32, cursor), cursor, 0
        if len(images) >= len(_IMAGE_KEYS):
            return None
        key = _IMAGE_KEYS[len(images)]
        at = rel + 1 + len(key)
        if buf[rel] != 0x03 or buf[rel + 1:at] != key or buf[at + 4:at + 13] != _PICTURE or len(buf) < at + 18:
            return None
        doc_length = _INT32.unpack_from(buf, at)[0]
        picture_length = _INT32.unpack_from(buf, at + 13)[0]
        if picture_length < 0 or doc_length != 4 + len(_PICTURE) + 5 + picture_length + 1:
            return None  # the image document holds more than its picture, or lies about a length
        images.append((cursor + 1 + len(key) + 4 + len(_PICTURE) + 5, picture_length))
        cursor += 1 + len(key) + doc_length
    if cursor != array_end - 1:
        return None
    tail = os.pread(fd, doc_end - cursor, cursor) if doc_end - cursor <= 32 else b""
    if tail == b"\x00\x00":  # the array's NUL, then the document's: a test product
        return product_id, NO_CATEGORY, images
    if len(tail) == 2 + len(_CATEGORY32) + 4 and tail[1:14] == _CATEGORY32 and tail[0] == 0 and tail[-1] == 0:
        return product_id, _INT32.unpack_from(tail, 14)[0], images
    return None


def _read_length(fd, offset, file_size):
    """(length, None) of the document at `offset`, or (None, reason) when its prefix is unusable."""
    left = file_size - offset
    if left < 4:
        return None, f"truncated length prefix ({left} bytes left)"
    length = _INT32.unpack(os.pread(fd, 4, offset))[0]
    if length < 5:
        return None, f"invalid document length {length}"
    if length > left:
        return None, f"document length {length} runs past the end of the file ({left} bytes left): truncated file?"
    return length, None


class BsonIndex:
    """Products and images of one BSON file, by offset. Build with `BsonIndex.open(path)`."""

    def __init__(self, path, products, image_offset, image_length, skipped):
        self.path = path
        self.products = products
        self.image_offset = image_offset
        self.image_length = image_length
        self.skipped = skipped  # [(byte_offset, reason)] left out with --skip-corrupt
        self._fd = None

    # ---- building and caching -------------------------------------------------
    @classmethod
    def open(cls, path, skip_corrupt=False, cache=True, progress=True):
        """Load the cached index of `path`, or build (and cache) it if missing or stale."""
        check_input_file(path, "BSON")
        stat = os.stat(path)
        if cache:
            index = cls._load_cache(path, stat)
            if index is not None:
                if index.skipped and not skip_corrupt:
                    offset, reason = index.skipped[0]
                    raise BsonFormatError(path, offset, reason + " (pass --skip-corrupt to skip it)")
                return index
        index = cls.build(path, skip_corrupt=skip_corrupt, progress=progress)
        if cache:
            index._save_cache(stat)
        return index

    @classmethod
    def build(cls, path, skip_corrupt=False, progress=True):
        file_size = os.path.getsize(path)
        rows, image_offsets, image_lengths, skipped = [], [], [], []
        first_seen = {}
        fd = os.open(path, os.O_RDONLY)
        try:
            reader = _PositionedReader(fd)
            offset = 0
            bar = tqdm(total=file_size, unit="B", unit_scale=True, desc=f"index {os.path.basename(path)}",
                       disable=not progress, leave=False)
            with bar:
                while offset < file_size:
                    length, framing_error = _read_length(fd, offset, file_size)
                    if framing_error:
                        # Without a valid length there is no next document to resynchronise on.
                        if not skip_corrupt:
                            raise BsonFormatError(path, offset, framing_error)
                        skipped.append((offset, f"{framing_error}; skipped the last {file_size - offset} bytes"))
                        break
                    try:
                        scanned = _scan_kaggle_layout(fd, offset, length)
                        product_id, category_id, images = scanned or _scan_document(reader, offset, length)
                        if product_id in first_seen:
                            raise _Corrupt(f"duplicate product _id {product_id} "
                                           f"(first seen at byte offset {first_seen[product_id]})")
                    except _Corrupt as exc:
                        reason = str(exc.args[0])
                        pid = exc.args[1] if len(exc.args) > 1 else None
                        if not skip_corrupt:
                            raise BsonFormatError(path, offset, reason, pid) from None
                        skipped.append((offset, reason))
                    else:
                        first_seen[product_id] = offset
                        rows.append((product_id, offset, length, category_id, len(image_offsets), len(images)))
                        for img_offset, img_length in images:
                            image_offsets.append(img_offset)
                            image_lengths.append(img_length)
                    offset += length
                    bar.update(length)
        finally:
            os.close(fd)
        products = np.array(rows, dtype=PRODUCT_DTYPE)
        index = cls(path, products, np.array(image_offsets, dtype=np.int64),
                    np.array(image_lengths, dtype=np.int64), skipped)
        log.info("indexed %s: %d products, %d images%s", path, len(products), index.num_images,
                 f", {plural(len(skipped), 'corrupt document')} skipped" if skipped else "")
        for skip_offset, reason in skipped:
            log.warning("%s: skipped byte offset %d: %s", path, skip_offset, reason)
        return index

    @staticmethod
    def cache_path(path):
        """Beside the BSON when writable, else in a per-user cache keyed by the absolute path."""
        beside = path + ".index.npz"
        directory = os.path.dirname(os.path.abspath(path))
        # Write bits too: root passes os.access even in a folder meant to be read-only.
        if os.access(directory, os.W_OK) and os.stat(directory).st_mode & 0o200:
            return beside
        root = os.environ.get("CDISCOUNT_CACHE_DIR") or os.path.join(
            os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "cdiscount_mx", "bson_index")
        key = hashlib.sha1(os.path.abspath(path).encode()).hexdigest()[:16]
        return os.path.join(root, f"{os.path.basename(path)}.{key}.index.npz")

    @classmethod
    def _load_cache(cls, path, stat):
        cache = cls.cache_path(path)
        if not os.path.exists(cache):
            return None
        try:
            with np.load(cache, allow_pickle=False) as npz:
                meta = json.loads(bytes(npz["meta"]).decode())
                if (meta.get("version") != INDEX_VERSION or meta.get("size") != stat.st_size
                        or meta.get("mtime_ns") != stat.st_mtime_ns):
                    log.info("index cache %s is stale; rebuilding", cache)
                    return None
                return cls(path, npz["products"], npz["image_offset"], npz["image_length"],
                           [tuple(s) for s in meta.get("skipped", [])])
        except (OSError, ValueError, KeyError) as exc:
            log.warning("index cache %s unreadable (%s); rebuilding", cache, exc)
            return None

    def _save_cache(self, stat):
        cache = self.cache_path(self.path)
        meta = {"version": INDEX_VERSION, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                "skipped": [list(s) for s in self.skipped]}
        try:
            os.makedirs(os.path.dirname(cache), exist_ok=True)
            with atomic_outputs(cache) as (tmp,):
                write_npz(tmp, {"products": self.products, "image_offset": self.image_offset,
                                "image_length": self.image_length,
                                "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)})
        except (OSError, ValueError) as exc:  # a cache we cannot write only costs a rebuild next time
            log.warning("could not write index cache %s: %s", cache, exc)

    # ---- queries ----------------------------------------------------------------
    def __len__(self):
        return len(self.products)

    @property
    def num_images(self):
        return len(self.image_offset)

    @property
    def has_labels(self):
        return len(self.products) > 0 and bool((self.products["category_id"] != NO_CATEGORY).all())

    def shard(self, shard_index, num_shards):
        """Contiguous product range [start, stop) of shard `shard_index` of `num_shards`."""
        if not 0 <= shard_index < num_shards:
            raise UserError(f"shard {shard_index}/{num_shards}: need 0 <= i < n")
        n = len(self.products)
        return n * shard_index // num_shards, n * (shard_index + 1) // num_shards

    def image_range(self, product):
        """Positions of the product's images in the image arrays."""
        row = self.products[product]
        return range(int(row["first_image"]), int(row["first_image"]) + int(row["num_imgs"]))

    # ---- reading ------------------------------------------------------------------
    def _file(self):
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        return self._fd

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def read_document(self, product):
        """Raw bytes of one product's BSON document (positioned read)."""
        row = self.products[product]
        return os.pread(self._file(), int(row["length"]), int(row["offset"]))

    def read_image(self, image):
        """JPEG bytes of one image, by its position in the image arrays."""
        return os.pread(self._file(), int(self.image_length[image]), int(self.image_offset[image]))

    def iter_documents(self, start=0, stop=None, buffer_size=16 << 20):
        """Yield (product, raw document bytes) in file order through one large read buffer."""
        stop = len(self.products) if stop is None else stop
        offsets = self.products["offset"][start:stop].tolist()  # plain ints: no numpy scalar per product
        lengths = self.products["length"][start:stop].tolist()
        with open(self.path, "rb", buffering=buffer_size) as fh:
            for product, offset, length in zip(range(start, stop), offsets, lengths):
                if fh.tell() != offset:  # only after a document skipped as corrupt
                    fh.seek(offset)
                raw = fh.read(length)
                if len(raw) != length:
                    raise BsonFormatError(self.path, offset, "file shrank since it was indexed")
                yield product, raw

    def iter_product_images(self, start=0, stop=None):
        """Yield (product, [JPEG bytes of each image]) in file order, from one sequential read."""
        stop = len(self.products) if stop is None else stop
        bases = self.products["offset"][start:stop].tolist()
        firsts = self.products["first_image"][start:stop].tolist()
        counts = self.products["num_imgs"][start:stop].tolist()
        image_offsets, image_lengths = self.image_offset.tolist(), self.image_length.tolist()
        for (product, raw), base, first, count in zip(self.iter_documents(start, stop), bases, firsts, counts):
            pictures = []
            for k in range(first, first + count):
                at = image_offsets[k] - base
                pictures.append(raw[at:at + image_lengths[k]])
            yield product, pictures

    def copy_documents(self, out_fd, start, stop):
        """Copy documents [start, stop) (consecutive in the file) to `out_fd` as raw bytes, in the kernel
        where it can (copy_file_range, as cp does); returns the bytes copied."""
        offset = int(self.products["offset"][start])
        end = int(self.products["offset"][stop - 1] + self.products["length"][stop - 1])
        fd, left = self._file(), end - offset
        while left > 0:
            try:
                copied = os.copy_file_range(fd, out_fd, min(left, 1 << 30), offset)
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):
                    raise
                copied = os.write(out_fd, os.pread(fd, min(left, 16 << 20), offset))  # e.g. across filesystems
            if copied == 0:
                raise BsonFormatError(self.path, offset, "file shrank since it was indexed")
            offset += copied
            left -= copied
        return end - int(self.products["offset"][start])
