"""Offset index of a Kaggle Cdiscount BSON file, built without decoding the pictures.

A Kaggle BSON file is a plain concatenation of documents, each starting with its
4-byte little-endian length:

    {"_id": int, "imgs": [{"picture": <JPEG bytes>}, ...], "category_id": int}

(test files have no `category_id`). The index records for every product its `_id`,
byte offset, length, `category_id` (-1 when absent) and images, and for every image
the byte offset and length of its JPEG.

At Kaggle's scale (7 million products, 12 million pictures, 58 GB) a loop in Python
per product costs minutes and gigabytes, so the build walks the chain of length
prefixes once and then checks and reads Kaggle's fixed layout for a whole chunk of
documents at a time, with numpy over a memory map: only the bytes around each
element header are touched, never the pictures (nor the holes of a sparse file).
Any document laid out otherwise (other key order, extra fields, 64-bit category,
corrupt) goes to the general element walker, which reads it or names its problem.

Everything else comes from the index: counts for progress bars, random access to
a product or a single JPEG, sharding by product range, sequential streaming of raw
documents. It is held as one compact array per column and cached beside the BSON
(or in a user cache folder when that directory is read-only) as an uncompressed
.npz whose columns are read only when a command first uses them; it is rebuilt when
the file's size or mtime changes, or when the cache is of another format version.
"""
import array
import errno
import hashlib
import json
import logging
import mmap
import os
import struct

import numpy as np
from tqdm import tqdm

from cli.files import atomic_outputs, check_input_file, write_npz
from cli.reporting import plural
from cli.runner import UserError

log = logging.getLogger(__name__)

INDEX_VERSION = 2  # 2: one array per column, read on first use; 1 (one structured array) is rebuilt
NO_CATEGORY = -1

# Column dtypes. Lengths fit in 32 bits: a BSON document's length prefix is an int32.
PRODUCT_COLUMNS = {
    "product_id": "<i8",
    "offset": "<i8",       # byte offset of the document in the BSON
    "length": "<i4",       # document length in bytes (its own prefix)
    "category_id": "<i8",  # NO_CATEGORY for test files
    "first_image": "<i8",  # position of its first image in the image arrays
    "num_imgs": "<i4",
}
IMAGE_COLUMNS = {"image_offset": "<i8", "image_length": "<i4"}  # where each JPEG's bytes are

_INT32 = struct.Struct("<i")
_INT64 = struct.Struct("<q")
_DOUBLE = struct.Struct("<d")
# Fixed-size BSON element payloads; variable ones are handled in _value_size.
_FIXED_SIZE = {0x01: 8, 0x07: 12, 0x08: 1, 0x09: 8, 0x0A: 0, 0x10: 4, 0x11: 8, 0x12: 8, 0x13: 16, 0x7F: 0, 0xFF: 0}
_WINDOW = 64  # bytes per positioned read of the general walker: covers one element header chain
# Documents per chunk of the vectorised build, and file bytes per chunk: the chunk's mapped pages are
# released after it, so that they never add more than this to the peak RSS.
_CHUNK_DOCUMENTS = 1 << 16
_CHUNK_BYTES = 64 << 20


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


# ---- Kaggle's layout, read for a whole chunk of documents at once ------------------------------------
# Byte by byte, from the start of a document (a 64-bit _id moves everything after it 4 bytes on):
#    0  int32 document length
#    4  "\x10_id\0" + int32 _id              (or "\x12_id\0" + int64 _id)
#   13  "\x04imgs\0" + int32 array length, then per image, key k = "0", "1", ...:
#         "\x03" k "\0" + int32 image-document length + "\x05picture\0" + int32 picture length
#         + subtype byte + JPEG bytes + "\0" (end of the image document)
#       and "\0" (end of the array)
#  then "\x10category_id\0" + int32 category_id (absent in test files) and "\0" (end of the document).
_ID_AT = 4                       # the _id element's type byte
_ID_ELEMENTS = ((b"\x10_id\x00", "<i4"), (b"\x12_id\x00", "<i8"))
_IMGS = b"\x04imgs\x00"
_ARRAY_HEAD = 4                  # the array's int32 length, before its first element
_PICTURE = b"\x05picture\x00"
_IMAGE_KEYS = [str(k).encode() + b"\x00" for k in range(64)]  # more images: the general walker
# From an image element's key end: int32 document length, "\x05picture\0", int32 picture length, subtype.
_PICTURE_NAME_AT = 4
_PICTURE_LENGTH_AT = _PICTURE_NAME_AT + len(_PICTURE)
_PICTURE_DATA_AT = _PICTURE_LENGTH_AT + 4 + 1
_IMAGE_DOC_OVERHEAD = _PICTURE_DATA_AT + 1  # image-document length minus its picture's length
_CATEGORY = b"\x10category_id\x00"
_CATEGORY_TAIL = len(_CATEGORY) + 4 + 1     # bytes from the array's end to the document's end (train)
_TEST_TAIL = 1                              # the same for a test document: only its NUL


class _FileBytes:
    """Little-endian reads at arrays of positions of a memory-mapped file. One strided view per width
    (unaligned items, one byte apart) lets numpy copy one item per position: about five times faster than
    gathering rows of bytes."""

    def __init__(self, data, size):
        self.size = size
        self.views = {dtype: np.ndarray((max(size - np.dtype(dtype).itemsize + 1, 0),), dtype, buffer=data,
                                        strides=(1,)) for dtype in ("<u8", "u1", "<i4", "<i8")}

    def ints(self, at, dtype):
        return self.views[dtype][at].astype(np.int64)

    def byte(self, at):
        return self.views["u1"][at]

    def matches(self, at, pattern):
        """Whether the bytes at each position are `pattern`: 8-byte words compared under a mask. A word may
        read past the pattern, never past the file (such positions do not match)."""
        padded = -(-len(pattern) // 8) * 8
        same = at + padded <= self.size
        inside = np.flatnonzero(same)
        for start in range(0, len(pattern), 8):
            piece = pattern[start:start + 8]
            mask = np.uint64((1 << (8 * len(piece))) - 1)
            words = self.views["<u8"][at[inside] + start]
            same[inside] &= (words & mask) == np.uint64(int.from_bytes(piece, "little"))
        return same

    def close(self):
        self.views.clear()  # the views hold the memory map open


def _kaggle_heads(fb, starts, ends):
    """(fits, product_id, array_at, array_end) of documents that start as Kaggle's: _id, then imgs."""
    fits = np.zeros(len(starts), dtype=bool)
    product_id, array_at = np.zeros(len(starts), dtype=np.int64), np.zeros(len(starts), dtype=np.int64)
    for id_element, id_dtype in _ID_ELEMENTS:
        imgs_at = _ID_AT + len(id_element) + np.dtype(id_dtype).itemsize
        head = imgs_at + len(_IMGS) + _ARRAY_HEAD
        rows = np.flatnonzero(~fits & (ends - starts >= head + 2))  # + the array's NUL and the document's
        rows = rows[fb.matches(starts[rows] + _ID_AT, id_element) & fb.matches(starts[rows] + imgs_at, _IMGS)]
        product_id[rows] = fb.ints(starts[rows] + _ID_AT + len(id_element), id_dtype)
        array_at[rows] = starts[rows] + imgs_at + len(_IMGS)
        fits[rows] = True
    array_end = array_at.copy()  # just past the array's NUL
    array_end[fits] += fb.ints(array_at[fits], "<i4")
    fits &= (array_end >= array_at + _ARRAY_HEAD + 1) & (array_end <= ends - _TEST_TAIL)
    return fits, product_id, array_at, array_end


def _kaggle_images(fb, array_at, array_end):
    """Pictures of arrays laid out as Kaggle's, one element rank at a time over all documents.

    Returns (fits, num_imgs, [(rows, rank, picture offsets, picture lengths) per rank])."""
    fits, num_imgs = np.ones(len(array_at), dtype=bool), np.zeros(len(array_at), dtype=np.int32)
    cursor, alive, found = array_at + _ARRAY_HEAD, np.arange(len(array_at)), []
    for rank, key in enumerate(_IMAGE_KEYS):
        alive = alive[cursor[alive] != array_end[alive] - 1]  # at the array's NUL: done (checked later)
        if not len(alive):
            return fits, num_imgs, found
        at, last = cursor[alive], array_end[alive] - 1
        key_end = at + 1 + len(key)
        good = key_end + _PICTURE_DATA_AT <= last
        good[good] = fb.matches(at[good], b"\x03" + key) & fb.matches(key_end[good] + _PICTURE_NAME_AT, _PICTURE)
        doc_length = np.zeros(len(alive), dtype=np.int64)
        picture_length = np.zeros(len(alive), dtype=np.int64)
        doc_length[good] = fb.ints(key_end[good], "<i4")
        picture_length[good] = fb.ints(key_end[good] + _PICTURE_LENGTH_AT, "<i4")
        after = key_end + doc_length
        good &= (picture_length >= 0) & (doc_length == picture_length + _IMAGE_DOC_OVERHEAD) & (after <= last)
        good[good] = fb.byte(after[good] - 1) == 0  # the image document's own NUL
        fits[alive[~good]] = False
        alive, after = alive[good], after[good]
        found.append((alive, rank, key_end[good] + _PICTURE_DATA_AT, picture_length[good]))
        num_imgs[alive] += 1
        cursor[alive] = after
    fits[alive[cursor[alive] != array_end[alive] - 1]] = False  # more images than keys: the general walker
    return fits, num_imgs, found


def _kaggle_tails(fb, array_end, ends):
    """(fits, category_id): a train document's category, NO_CATEGORY for a test document."""
    is_test, is_train = ends == array_end + _TEST_TAIL, ends == array_end + _CATEGORY_TAIL
    fits = (is_test | is_train) & (fb.byte(array_end - 1) == 0) & (fb.byte(ends - 1) == 0)
    category_id = np.full(len(ends), NO_CATEGORY, dtype=np.int64)
    train = np.flatnonzero(fits & is_train)
    fits[train] = fb.matches(array_end[train], _CATEGORY)
    category_id[train] = fb.ints(array_end[train] + len(_CATEGORY), "<i4")
    return fits, category_id


def _scan_kaggle_chunk(fb, starts, ends):
    """Vectorised read of the documents [starts, ends) in Kaggle's layout: (fits, product_id, category_id,
    num_imgs, pictures), `pictures` listing (rows, rank, offsets, lengths); rows that do not fit (and their
    pictures) are left to the general walker."""
    fits, product_id, array_at, array_end = _kaggle_heads(fb, starts, ends)
    category_id = np.full(len(starts), NO_CATEGORY, dtype=np.int64)
    rows = np.flatnonzero(fits)
    fits[rows], category_id[rows] = _kaggle_tails(fb, array_end[rows], ends[rows])
    rows = np.flatnonzero(fits)
    num_imgs = np.zeros(len(starts), dtype=np.int32)
    fits[rows], num_imgs[rows], pictures = _kaggle_images(fb, array_at[rows], array_end[rows])
    return fits, product_id, category_id, num_imgs, [(rows[r], k, at, n) for r, k, at, n in pictures]


def _length_problem(length, left):
    """Why a length prefix with `left` bytes from it to the end of the file is unusable, or None."""
    if left < 4:
        return f"truncated length prefix ({left} bytes left)"
    if length < 5:
        return f"invalid document length {length}"
    if length > left:
        return f"document length {length} runs past the end of the file ({left} bytes left): truncated file?"
    return None


def _walk_lengths(data, offset, file_size):
    """Starts of one chunk of documents from `offset`, following the length prefixes: (starts, the offset
    after them, why the chain broke there or None). Sequential by nature: each start needs the last length."""
    starts = array.array("q")
    limit = min(file_size, offset + _CHUNK_BYTES)
    unpack = _INT32.unpack_from
    for _ in range(_CHUNK_DOCUMENTS):
        if offset >= limit:
            break
        left = file_size - offset
        length = unpack(data, offset)[0] if left >= 4 else 0
        if not 5 <= length <= left:
            return starts, offset, _length_problem(length, left)
        starts.append(offset)
        offset += length
    return starts, offset, None


def _scan_chunk(fb, reader, starts, ends, errors):
    """Product columns and image columns of the documents [starts, ends): the vectorised read, then the
    general walker for the documents it did not take. Corrupt ones are left out and appended to `errors`
    as (byte offset, reason, product _id or None)."""
    fits, product_id, category_id, num_imgs, pictures = _scan_kaggle_chunk(fb, starts, ends)
    keep, walked = fits.copy(), {}
    for row in np.flatnonzero(~fits).tolist():
        offset = int(starts[row])
        try:
            product_id[row], category_id[row], walked[row] = _scan_document(reader, offset, int(ends[row]) - offset)
        except _Corrupt as exc:
            errors.append((offset, str(exc.args[0]), exc.args[1] if len(exc.args) > 1 else None))
            continue
        num_imgs[row], keep[row] = len(walked[row]), True
    num_imgs[~keep] = 0
    first = np.cumsum(num_imgs, dtype=np.int64) - num_imgs
    images = {"image_offset": np.empty(int(num_imgs.sum()), dtype=IMAGE_COLUMNS["image_offset"]),
              "image_length": np.empty(int(num_imgs.sum()), dtype=IMAGE_COLUMNS["image_length"])}
    for rows, rank, offsets, lengths in pictures:
        mine = fits[rows]
        images["image_offset"][first[rows[mine]] + rank] = offsets[mine]
        images["image_length"][first[rows[mine]] + rank] = lengths[mine]
    for row, row_images in walked.items():
        at = slice(int(first[row]), int(first[row]) + len(row_images))
        images["image_offset"][at] = [image_offset for image_offset, _ in row_images]
        images["image_length"][at] = [image_length for _, image_length in row_images]
    products = {"product_id": product_id[keep], "offset": starts[keep], "length": (ends - starts)[keep],
                "category_id": category_id[keep], "num_imgs": num_imgs[keep]}
    return {name: array.astype(PRODUCT_COLUMNS.get(name) or IMAGE_COLUMNS[name], copy=False)
            for name, array in {**products, **images}.items()}


def _duplicates(product_id, offset):
    """Rows whose _id an earlier row has, and their errors naming the first occurrence."""
    order = np.argsort(product_id, kind="stable")  # stable: file order within each _id
    sorted_ids = product_id[order]
    same = sorted_ids[1:] == sorted_ids[:-1]
    if not same.any():
        return np.zeros(0, dtype=np.int64), []
    group_starts = np.flatnonzero(np.r_[True, ~same])
    repeats = np.flatnonzero(same) + 1
    rows, firsts = order[repeats], order[group_starts[np.searchsorted(group_starts, repeats, side="right") - 1]]
    return rows, [(int(offset[row]), f"duplicate product _id {int(product_id[row])} "
                                     f"(first seen at byte offset {int(offset[first])})", None)
                  for row, first in zip(rows.tolist(), firsts.tolist())]


class _Column:
    """One column's pieces, appended chunk by chunk and joined into blocks of at least `block_bytes` as
    they come. Arrays under 32 MB live in malloc's heap, which cannot give freed ones back while later
    ones sit above them: a thousand kept pieces would double the build's peak memory."""

    def __init__(self, dtype, block_bytes=32 << 20):
        self.dtype, self.block_bytes = dtype, block_bytes
        self.blocks, self.pieces, self.piece_bytes = [], [], 0

    def append(self, array):
        self.pieces.append(array)
        self.piece_bytes += array.nbytes
        if self.piece_bytes >= self.block_bytes:
            self.blocks.append(np.concatenate(self.pieces))
            self.pieces, self.piece_bytes = [], 0

    def join(self):
        parts, self.blocks, self.pieces = self.blocks + self.pieces, [], []
        return np.concatenate(parts) if parts else np.zeros(0, dtype=self.dtype)


def _drop_products(columns, rows):
    """The columns without the products at `rows` and without their images."""
    keep = np.ones(len(columns["product_id"]), dtype=bool)
    keep[rows] = False
    keep_images = np.repeat(keep, columns["num_imgs"])
    return {name: array[keep_images if name in IMAGE_COLUMNS else keep] for name, array in columns.items()}


class Columns:
    """Arrays of one length by name: built in memory, or read from the cache's .npz when first used, so
    that a command holds only the columns it reads (`index.products["offset"]`)."""

    def __init__(self, names, count, arrays=None, npz=None):
        self.names, self._count, self._arrays, self._npz = tuple(names), count, dict(arrays or {}), npz

    def __len__(self):
        return self._count

    def __getitem__(self, name):
        if name not in self.names:
            raise KeyError(f"no column {name!r}; there are {', '.join(self.names)}")
        if name not in self._arrays:
            self._arrays[name] = self._npz[name]
        return self._arrays[name]

    def arrays(self):
        return {name: self[name] for name in self.names}

    def forget(self):
        """Free the columns read from the cache so far (they are read again if used again)."""
        if self._npz is not None:
            self._arrays.clear()


class BsonIndex:
    """Products and images of one BSON file, by offset. Build with `BsonIndex.open(path)`.

    `products[name]` is a column of PRODUCT_COLUMNS; `image_offset` and `image_length` are the image columns."""

    def __init__(self, path, products, images, skipped, npz=None):
        self.path = path
        self.products = products
        self.images = images
        self.skipped = skipped  # [(byte_offset, reason)] left out with --skip-corrupt
        self._npz = npz  # the open cache the columns are read from, if any
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
        if cache and index._save_cache(stat):
            # Read back from the cache: the build's arrays are freed and the command reads only its columns.
            return cls._load_cache(path, stat) or index
        return index

    @classmethod
    def from_columns(cls, path, columns, skipped=()):
        """An index over in-memory columns ({name: array} of PRODUCT_COLUMNS and IMAGE_COLUMNS)."""
        return cls(path, Columns(PRODUCT_COLUMNS, len(columns["product_id"]), columns),
                   Columns(IMAGE_COLUMNS, len(columns["image_offset"]), columns), list(skipped))

    @classmethod
    def build(cls, path, skip_corrupt=False, progress=True):
        file_size = os.path.getsize(path)
        columns = {name: _Column(dtype) for name, dtype in {**PRODUCT_COLUMNS, **IMAGE_COLUMNS}.items()
                   if name != "first_image"}
        errors, broken_at, broken = [], file_size, None
        with open(path, "rb") as fh, tqdm(total=file_size, unit="B", unit_scale=True, leave=False,
                                          desc=f"index {os.path.basename(path)}", disable=not progress) as bar:
            data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) if file_size else b""
            fb, reader, offset, released = _FileBytes(data, file_size), _PositionedReader(fh.fileno()), 0, 0
            try:
                while offset < file_size and broken is None and (skip_corrupt or not errors):
                    starts, end, broken = _walk_lengths(data, offset, file_size)
                    starts = np.array(starts, dtype=np.int64)
                    for name, values in _scan_chunk(fb, reader, starts, np.r_[starts[1:], end], errors).items():
                        columns[name].append(values)
                    bar.update(end - offset)
                    offset, broken_at = end, end
                    if file_size:  # the chunk's pages leave this process (they stay in the page cache)
                        page_end = end - end % mmap.PAGESIZE
                        data.madvise(mmap.MADV_DONTNEED, released, page_end - released)
                        released = page_end
            finally:
                fb.close()
                if file_size:
                    data.close()
        columns = {name: columns.pop(name).join() for name in list(columns)}
        duplicate_rows, duplicates = _duplicates(columns["product_id"], columns["offset"])
        problems = sorted(errors + duplicates, key=lambda problem: problem[0])
        if broken:
            # Without a valid length there is no next document to resynchronise on.
            skipped_tail = f"; skipped the last {file_size - broken_at} bytes" if skip_corrupt else ""
            problems.append((broken_at, broken + skipped_tail, None))
        if problems and not skip_corrupt:
            raise BsonFormatError(path, *problems[0])
        if len(duplicate_rows):
            columns = _drop_products(columns, duplicate_rows)
        columns["first_image"] = np.cumsum(columns["num_imgs"], dtype=np.int64) - columns["num_imgs"]
        index = cls.from_columns(path, columns, [(offset, reason) for offset, reason, _ in problems])
        log.info("indexed %s: %d products, %d images%s", path, len(index), index.num_images,
                 f", {plural(len(problems), 'corrupt document')} skipped" if problems else "")
        for skip_offset, reason in index.skipped:
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
        """The cached index with its columns left unread, or None when the cache is missing, stale,
        of another format version or unreadable."""
        cache = cls.cache_path(path)
        if not os.path.exists(cache):
            return None
        try:
            npz = np.load(cache, allow_pickle=False)  # an .npz reads each array when it is first asked for
            meta = json.loads(bytes(npz["meta"]).decode())
            if (meta.get("version") != INDEX_VERSION or meta.get("size") != stat.st_size
                    or meta.get("mtime_ns") != stat.st_mtime_ns
                    or not {*PRODUCT_COLUMNS, *IMAGE_COLUMNS} <= {name[:-4] for name in npz.zip.namelist()}):
                npz.close()
                log.info("index cache %s is stale; rebuilding", cache)
                return None
            return cls(path, Columns(PRODUCT_COLUMNS, meta["products"], npz=npz),
                       Columns(IMAGE_COLUMNS, meta["images"], npz=npz),
                       [tuple(s) for s in meta.get("skipped", [])], npz=npz)
        except (OSError, ValueError, KeyError) as exc:
            log.warning("index cache %s unreadable (%s); rebuilding", cache, exc)
            return None

    def _save_cache(self, stat):
        cache = self.cache_path(self.path)
        meta = {"version": INDEX_VERSION, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                "products": len(self), "images": self.num_images, "skipped": [list(s) for s in self.skipped]}
        try:
            os.makedirs(os.path.dirname(cache), exist_ok=True)
            with atomic_outputs(cache) as (tmp,):
                write_npz(tmp, {**self.products.arrays(), **self.images.arrays(),
                                "meta": np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)})
            return True
        except (OSError, ValueError) as exc:  # a cache we cannot write only costs a rebuild next time
            log.warning("could not write index cache %s: %s", cache, exc)
            return False

    # ---- queries ----------------------------------------------------------------
    def __len__(self):
        return len(self.products)

    @property
    def num_images(self):
        return len(self.images)

    @property
    def image_offset(self):
        return self.images["image_offset"]

    @property
    def image_length(self):
        return self.images["image_length"]

    @property
    def has_labels(self):
        return len(self.products) > 0 and bool((self.products["category_id"] != NO_CATEGORY).all())

    def shard(self, shard_index, num_shards):
        """Contiguous product range [start, stop) of shard `shard_index` of `num_shards`."""
        if not 0 <= shard_index < num_shards:
            raise UserError(f"shard {shard_index}/{num_shards}: need 0 <= i < n")
        n = len(self.products)
        return n * shard_index // num_shards, n * (shard_index + 1) // num_shards

    # ---- reading ------------------------------------------------------------------
    def _file(self):
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        return self._fd

    def forget_columns(self):
        """Free the columns read from the cache so far, for a command done with them (read again if used)."""
        self.products.forget()
        self.images.forget()

    def close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._npz is not None:
            self._npz.close()
            self._npz = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def read_document(self, product):
        """Raw bytes of one product's BSON document (positioned read)."""
        return os.pread(self._file(), int(self.products["length"][product]), int(self.products["offset"][product]))

    def first_images_in(self, start, stop):
        """Position of each product's first image among the images of products [start, stop)."""
        first = self.products["first_image"][start:stop]
        return first - first[0] if len(first) else first

    def read_image(self, image):
        """JPEG bytes of one image, by its position in the image arrays."""
        return os.pread(self._file(), int(self.image_length[image]), int(self.image_offset[image]))

    def iter_documents(self, start=0, stop=None, buffer_size=16 << 20):
        """Yield (product, raw document bytes) in file order through one large read buffer."""
        stop = len(self.products) if stop is None else stop
        with open(self.path, "rb", buffering=buffer_size) as fh:
            position = fh.tell()
            for first, last in _row_chunks(start, stop):
                offsets = self.products["offset"][first:last].tolist()
                lengths = self.products["length"][first:last].tolist()
                for product, offset, length in zip(range(first, last), offsets, lengths):
                    if position != offset:  # at the start, and after a document skipped as corrupt
                        fh.seek(offset)
                    raw = fh.read(length)
                    if len(raw) != length:
                        raise BsonFormatError(self.path, offset, "file shrank since it was indexed")
                    position = offset + length
                    yield product, raw

    def iter_product_images(self, start=0, stop=None, block_bytes=16 << 20):
        """Yield (product, [JPEG bytes of each image]) in file order. The file is read in blocks of about
        `block_bytes` and the pictures are sliced out of them: no read nor document per product."""
        stop = len(self.products) if stop is None else stop
        fd = self._file()
        for first, last in _row_chunks(start, stop):
            offsets = self.products["offset"][first:last]
            ends = offsets + self.products["length"][first:last]
            first_images = self.products["first_image"][first:last].tolist()
            counts = self.products["num_imgs"][first:last].tolist()
            low, high = first_images[0], first_images[-1] + counts[-1]
            image_offsets = self.image_offset[low:high].tolist()
            image_lengths = self.image_length[low:high].tolist()
            block_of = (offsets - offsets[0]) // block_bytes  # a document longer than a block gets its own
            bounds = np.r_[0, np.flatnonzero(np.diff(block_of)) + 1, len(offsets)].tolist()
            for block_start, block_stop in zip(bounds[:-1], bounds[1:]):
                base = int(offsets[block_start])
                span = int(ends[block_stop - 1]) - base
                block = os.pread(fd, span, base)
                if len(block) != span:
                    raise BsonFormatError(self.path, base + len(block), "file shrank since it was indexed")
                for row in range(block_start, block_stop):
                    at = first_images[row] - low
                    yield first + row, [block[image_offsets[k] - base:image_offsets[k] - base + image_lengths[k]]
                                        for k in range(at, at + counts[row])]

    def copy_documents(self, out_fd, start, stop):
        """Copy documents [start, stop) (consecutive in the file) to `out_fd` as raw bytes, in the kernel
        where it can (copy_file_range, as cp does); returns the bytes copied."""
        offset = int(self.products["offset"][start])
        end = int(self.products["offset"][stop - 1]) + int(self.products["length"][stop - 1])
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


def _row_chunks(start, stop, rows=1 << 16):
    """[first, last) ranges covering [start, stop): rows are turned into Python ints a chunk at a time
    (lists of 12 million would take gigabytes)."""
    for first in range(start, stop, rows):
        yield first, min(stop, first + rows)
