"""MXNet indexed RecordIO (`.rec` + `.idx`) written in pure Python, without importing MXNet.

The output is byte for byte what `mx.recordio.MXIndexedRecordIO(idx, rec, "w")` with
`write_idx(key, mx.recordio.pack(header, payload))` writes (dmlc-core's RecordIO):

  .rec  each record is  uint32 magic 0xced7230a | uint32 lrec = cflag << 29 | length
        | data | zero padding of the record to a multiple of 4 bytes (little-endian).
        A record holding the magic word at a 4-byte-aligned offset is cut there into
        parts (cflag 1 first, 2 middle, 3 last; 0 for a record in one piece), the
        magic word itself being left out: the reader puts it back between the parts.
  .idx  one text line `key<TAB>offset` per record, in write order, where offset is
        the position in the .rec of the record's first magic word.

Writes go through large buffers instead of one ctypes call per record. Reading lives here too:
where a .rec's .idx is (`idx_path_of`), how many records it holds (`count_records`, from the .idx)
and their labels (`read_labels`, from the record headers alone, no image decoded).

Beside each `X.rec`, `X.rec.json` (RecInfo) says what its labels mean: their kind, the class
count, the digest of the category table they index, and the record count (and, for a label vector
per record, `pack_label_vector_header`, each column's kind and class count); training takes its
class count from it and prediction checks its category CSV against it (through the checkpoint).
"""
import dataclasses
import functools
import json
import os
import struct
import typing

import numpy as np

from cli.files import check_input_file
from cli.reporting import plural
from cli.runner import UserError
from data.categories import short_digest

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)
MAX_RECORD_BYTES = (1 << 29) - 1  # dmlc-core refuses records of 2^29 bytes or more
BUFFER_BYTES = 8 << 20

_FRAME = struct.Struct("<II")          # magic, lrec
_IR_HEADER = struct.Struct("<IfQQ")    # mx.recordio.IRHeader: flag, label, id, id2
_PADDING = (b"", b"\0\0\0", b"\0\0", b"\0")  # indexed by len % 4


def pack_header(label, record_id, record_id2=0):
    """The 24-byte header `mx.recordio.pack` puts before the payload for a scalar label (flag 0)."""
    return _IR_HEADER.pack(0, label, record_id, record_id2)


def pack_label_vector_header(labels, record_id, record_id2=0):
    """What `mx.recordio.pack` puts before the payload for a label array: the header with flag = the label count
    and label 0, then the labels as float32 (ImageRecordIter reads them with label_width = that count)."""
    values = np.asarray(labels, dtype="<f4").ravel()
    return _IR_HEADER.pack(len(values), 0.0, record_id, record_id2) + values.tobytes()


def split_at_magic(record):
    """The (cflag, data) parts of `record` as dmlc-core's RecordIOWriter::WriteRecord cuts them."""
    cuts = []
    i = record.find(MAGIC_BYTES)
    while i >= 0:
        if i % 4 == 0:  # only aligned occurrences are cut; unaligned ones stay in the data
            cuts.append(i)
            i = record.find(MAGIC_BYTES, i + 4)
        else:
            i = record.find(MAGIC_BYTES, i + 1)
    if not cuts:
        return [(0, record)]
    parts, start = [], 0
    for n, cut in enumerate(cuts):
        parts.append((1 if n == 0 else 2, record[start:cut]))
        start = cut + 4
    parts.append((3, record[start:]))
    return parts


class IndexedRecordWriter:
    """Writes `rec_path` and `idx_path` like MXIndexedRecordIO in "w" mode; a context manager.

        with IndexedRecordWriter("train.rec", "train.idx") as writer:
            writer.write(0, pack_header(label, product_id, image_index) + jpeg_bytes)
    """

    def __init__(self, rec_path, idx_path, buffer_bytes=BUFFER_BYTES):
        self.position = 0  # bytes written to the .rec so far
        self._rec = open(rec_path, "wb", buffering=buffer_bytes)
        try:
            self._idx = open(idx_path, "w", encoding="utf-8", newline="\n", buffering=1 << 20)
        except BaseException:
            self._rec.close()
            raise

    def write(self, key, record):
        """Append one record (bytes) and its index line `key<TAB>offset`."""
        size = len(record)
        if size > MAX_RECORD_BYTES:
            raise ValueError(f"record {key}: {size} bytes, RecordIO takes at most {MAX_RECORD_BYTES}")
        position = self.position
        write = self._rec.write
        if MAGIC_BYTES not in record:  # the usual case: one part
            write(_FRAME.pack(MAGIC, size))
            write(record)
            written = 8 + size
        else:
            parts = split_at_magic(record)
            for cflag, data in parts:
                write(_FRAME.pack(MAGIC, cflag << 29 | len(data)))
                write(data)
            written = 8 * len(parts) + size - 4 * (len(parts) - 1)  # the cut magic words are not written
        padding = _PADDING[size & 3]  # parts before the last are multiples of 4: only the end is padded
        if padding:
            write(padding)
        self._idx.write(f"{key}\t{position}\n")
        self.position = position + written + len(padding)

    def close(self):
        try:
            self._rec.close()
        finally:
            self._idx.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


# --- reading: the .idx beside a .rec, record counts, labels ------------------------------------------

def idx_path_of(rec_path):
    """The .idx MXNet and data.bson2rec pair with `rec_path`: its extension replaced by .idx."""
    return os.path.splitext(rec_path)[0] + ".idx"


def existing_idx_path(rec_path):
    """idx_path_of(rec_path), the .rec and the .idx both checked to be files."""
    check_input_file(rec_path, ".rec")
    idx = idx_path_of(rec_path)
    if not os.path.isfile(idx):
        raise UserError(f"{idx}: index of {rec_path} not found (written by data.bson2rec)")
    return idx


def count_records(rec_path):
    """Records in a .rec, from the lines of its .idx (no decoding). Training's start-up checks, the
    epoch length and the validation iterator all ask; a 12M-line .idx is read once while it is unchanged."""
    idx = existing_idx_path(rec_path)
    stat = os.stat(idx)
    return _count_lines(idx, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _count_lines(path, size, mtime_ns):  # size and mtime: a rewritten file is counted again
    with open(path) as fh:
        return sum(1 for line in fh if line.strip())


def record_offsets(rec_path):
    """Byte offsets of the records of a .rec, in file order, from its .idx (`key<TAB>offset` lines)."""
    idx = existing_idx_path(rec_path)
    with open(idx, "rb") as fh:
        text = fh.read()
    try:
        offsets = np.array([int(line.split(b"\t")[1]) for line in text.splitlines() if line.strip()],
                           dtype=np.int64)
    except (IndexError, ValueError):
        raise UserError(f"{idx}: not an index of key<TAB>offset lines (written by data.bson2rec)") from None
    return np.sort(offsets)


def record_labels(rec_path, offsets, chunk=1 << 20, label_width=1):
    """The label of each record at `offsets` of `rec_path`, read from its header alone (magic word,
    length, then mx.recordio's IRHeader: flag, label): no image is decoded. With `label_width` > 1
    (data.bson2rec --level-labels), the (records, label_width) label vectors that follow the header."""
    # magic, lrec, flag, label; a label vector follows the header's id and id2 (8 bytes each)
    read = 16 if label_width == 1 else 32 + 4 * label_width
    size = os.path.getsize(rec_path)
    if len(offsets) and (offsets[-1] + read > size or offsets[0] < 0):
        raise UserError(f"{rec_path}: its .idx points past the end of the file (byte {int(offsets[-1])} of "
                        f"{size}): a truncated .rec, or another file's .idx")
    data = np.memmap(rec_path, dtype=np.uint8, mode="r") if size else np.zeros(0, np.uint8)
    labels = np.empty((len(offsets), label_width), dtype=np.float32)
    for start in range(0, len(offsets), chunk):
        part = offsets[start:start + chunk]
        header = data[part[:, None] + np.arange(read)].copy().view("<u4")
        bad = np.flatnonzero(header[:, 0] != MAGIC)
        if len(bad):
            raise UserError(f"{rec_path}: no record at byte {int(part[bad[0]])} that its .idx names "
                            "(a corrupt .rec, or another file's .idx)")
        # flag: 0 for one label (in the header), else the length of the label vector after the header
        other = np.flatnonzero(header[:, 2] != (0 if label_width == 1 else label_width))
        if len(other):
            found = plural(max(int(header[other[0], 2]), 1), "label")
            raise UserError(f"{rec_path}: the record at byte {int(part[other[0]])} holds {found}, not {label_width} as "
                            f"its {os.path.basename(rec_info_path(rec_path))} says (without one: 1)")
        labels[start:start + len(part)] = header[:, 3:4].view("<f4") if label_width == 1 else header[:, 8:].view("<f4")
    return labels[:, 0] if label_width == 1 else labels


def read_labels(rec_path):
    """The labels (float32) of every record of a .rec, in file order: of a .rec of label vectors (its X.rec.json's
    label_width), the first column, the class."""
    info = read_rec_info(rec_path)
    width = info.label_width if info is not None else 1
    labels = record_labels(rec_path, record_offsets(rec_path), label_width=width)
    return labels if width == 1 else labels[:, 0]


# --- X.rec.json: what the labels of X.rec mean ------------------------------------------------------

REC_INFO_FORMAT = "cdiscount-rec-info/1"


@dataclasses.dataclass(frozen=True)
class RecInfo:
    """X.rec.json: the labels of X.rec, written by data.bson2rec with the .rec and its .idx."""
    label_kind: typing.Optional[str]  # a key of data.categories.LABEL_KINDS; None: unlabelled (-1, a test BSON)
    num_classes: typing.Optional[int]  # the labels are 0..num_classes-1 (None: unlabelled)
    categories_digest: typing.Optional[str]  # data.categories.Categories.digest of the table the labels index
    records: int
    category_csv: typing.Optional[str] = None  # the category CSV it was made with, for people
    shuffled: typing.Optional[bool] = None  # records shuffled when written (None: not recorded)
    # A label vector per record (data.bson2rec --level-labels): label_width labels, column k of kind column_kinds[k]
    # (data.categories: label_kind, then LEVEL_LABEL_KINDS) with column_classes[k] classes. One label (and files
    # written before these fields): 1, None, None, and the fields are left out of the file.
    label_width: int = 1
    column_kinds: typing.Optional[tuple] = None
    column_classes: typing.Optional[tuple] = None
    # Product mosaics (data.bson2rec --mosaic; not the original's): one record per product, its pictures tiled as
    # data.mosaic.MosaicLayout(mosaic_size, mosaic_fill) says. None (left out of the file): one record per picture.
    mosaic_size: typing.Optional[int] = None
    mosaic_fill: typing.Optional[str] = None

    @property
    def mosaic_layout(self):
        """The data.mosaic.MosaicLayout of a .rec of product mosaics; None for one of pictures."""
        from data.mosaic import layout_of  # here: data.mosaic imports OpenCV, which reading labels does not need
        return layout_of(self.mosaic_size, self.mosaic_fill)

    def describe_records(self):
        """What one record is, for messages."""
        layout = self.mosaic_layout
        return "a picture" if layout is None else f"a product mosaic ({layout.size}x{layout.size}, {layout.fill} fill)"

    def describe(self):
        if self.label_kind is None:
            return "unlabelled records"
        categories = short_digest(self.categories_digest)
        levels = "".join(f", {kind} of {count}"
                         for kind, count in zip((self.column_kinds or ())[1:], (self.column_classes or ())[1:]))
        return f"{self.label_kind} labels of {self.num_classes} classes{levels} (categories {categories})"

    def same_labels(self, other):
        return (self.label_kind, self.num_classes, self.categories_digest, self.label_width, self.column_kinds,
                self.column_classes) == (other.label_kind, other.num_classes, other.categories_digest,
                                         other.label_width, other.column_kinds, other.column_classes)


def rec_info_path(rec_path):
    return f"{rec_path}.json"


LABEL_VECTOR_FIELDS = ("label_width", "column_kinds", "column_classes")
MOSAIC_FIELDS = ("mosaic_size", "mosaic_fill")


def write_rec_info(path, info):
    record = {"format": REC_INFO_FORMAT, **dataclasses.asdict(info)}
    if info.label_width == 1:  # the file of one label per record stays as it was before label vectors
        for name in LABEL_VECTOR_FIELDS:
            del record[name]
    if info.mosaic_size is None:  # a .rec of pictures: the file as before mosaics
        for name in MOSAIC_FIELDS:
            del record[name]
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(record, fh, indent=1)
        fh.write("\n")


def read_rec_info(rec_path):
    """RecInfo of the X.rec.json beside `rec_path`; None without one (a .rec made before it existed)."""
    path = rec_info_path(rec_path)
    if not os.path.exists(path):
        return None
    check_input_file(path, "label description")
    try:
        with open(path, encoding="utf-8") as fh:
            record = json.load(fh)
        if not isinstance(record, dict) or record.get("format") != REC_INFO_FORMAT:
            raise ValueError(f"format is not {REC_INFO_FORMAT}")
        fields = {field.name for field in dataclasses.fields(RecInfo)}
        unknown = set(record) - fields - {"format"}
        if unknown:
            raise ValueError(f"unknown field {sorted(unknown)[0]!r}")
        values = {name: tuple(value) if isinstance(value, list) else value for name, value in record.items()
                  if name != "format"}
        info = RecInfo(**values)
        if info.label_kind is not None and not (isinstance(info.num_classes, int) and info.num_classes > 0):
            raise ValueError(f"num_classes {info.num_classes!r}: expected a positive count")
        check_label_columns(info)
        _ = info.mosaic_layout  # data.mosaic.layout_of checks the two fields
    except (ValueError, TypeError) as exc:
        raise UserError(f"{path}: not the label description data.bson2rec writes ({exc})") from None
    return info


def check_label_columns(info):
    """A RecInfo's label vector fields agree with each other and with its label kind; ValueError otherwise."""
    width = info.label_width
    if width == 1:
        if info.column_kinds is not None or info.column_classes is not None:
            raise ValueError("column_kinds or column_classes without a label_width above 1")
        return
    if not isinstance(width, int) or width < 1:
        raise ValueError(f"label_width {width!r}: expected a positive count")
    kinds, classes = info.column_kinds, info.column_classes
    if not (isinstance(kinds, tuple) and isinstance(classes, tuple) and len(kinds) == len(classes) == width):
        raise ValueError(f"label_width {width}: expected {width} column_kinds and column_classes")
    if info.label_kind is None or kinds[0] != info.label_kind or classes[0] != info.num_classes:
        raise ValueError(f"the first label column ({kinds[0]}, {classes[0]}) is not the label kind and class count "
                         f"({info.label_kind}, {info.num_classes})")
    if not all(isinstance(kind, str) for kind in kinds) or \
            not all(isinstance(count, int) and count > 0 for count in classes):
        raise ValueError("column_kinds: expected names; column_classes: expected positive counts")
