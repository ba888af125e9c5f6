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
count, the digest of the category table they index, and the record count; training takes its
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


def record_labels(rec_path, offsets, chunk=1 << 20):
    """The label of each record at `offsets` of `rec_path`, read from its header alone (magic word,
    length, then mx.recordio's IRHeader: flag, label): no image is decoded."""
    size = os.path.getsize(rec_path)
    if len(offsets) and (offsets[-1] + 16 > size or offsets[0] < 0):
        raise UserError(f"{rec_path}: its .idx points past the end of the file (byte {int(offsets[-1])} of "
                        f"{size}): a truncated .rec, or another file's .idx")
    data = np.memmap(rec_path, dtype=np.uint8, mode="r") if size else np.zeros(0, np.uint8)
    labels = np.empty(len(offsets), dtype=np.float32)
    for start in range(0, len(offsets), chunk):
        part = offsets[start:start + chunk]
        header = data[part[:, None] + np.arange(16)].copy().view("<u4")  # magic, lrec, flag, label
        bad = np.flatnonzero(header[:, 0] != MAGIC)
        if len(bad):
            raise UserError(f"{rec_path}: no record at byte {int(part[bad[0]])} that its .idx names "
                            "(a corrupt .rec, or another file's .idx)")
        labels[start:start + len(part)] = header[:, 3].view("<f4")
    return labels


def read_labels(rec_path):
    """The labels (float32) of every record of a .rec, in file order."""
    return record_labels(rec_path, record_offsets(rec_path))


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

    def describe(self):
        if self.label_kind is None:
            return "unlabelled records"
        categories = short_digest(self.categories_digest)
        return f"{self.label_kind} labels of {self.num_classes} classes (categories {categories})"

    def same_labels(self, other):
        return (self.label_kind, self.num_classes, self.categories_digest) == \
            (other.label_kind, other.num_classes, other.categories_digest)


def rec_info_path(rec_path):
    return f"{rec_path}.json"


def write_rec_info(path, info):
    with open(path, "w", encoding="utf-8") as fh:
        json.dump({"format": REC_INFO_FORMAT, **dataclasses.asdict(info)}, fh, indent=1)
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
        info = RecInfo(**{name: value for name, value in record.items() if name != "format"})
        if info.label_kind is not None and not (isinstance(info.num_classes, int) and info.num_classes > 0):
            raise ValueError(f"num_classes {info.num_classes!r}: expected a positive count")
    except (ValueError, TypeError) as exc:
        raise UserError(f"{path}: not the label description data.bson2rec writes ({exc})") from None
    return info
