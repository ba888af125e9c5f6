"""data.recordio writes what MXNet's own indexed RecordIO writer writes, byte for byte, and reads back
(the .idx beside a .rec, the record count, the labels) what MXNet's reader reads."""
import os
import random

import cv2
import mxnet as mx
import numpy as np
import pytest

from cli.runner import UserError
from data import bson2rec, dataset_summary
from data.recordio import (MAGIC_BYTES, IndexedRecordWriter, count_records, existing_idx_path, idx_path_of, pack_header,
                           read_labels, read_rec_info, record_labels, record_offsets, split_at_magic)
from tests.helpers import colour_products, run, write_bson, write_category_csv
from train.summarise_runs import majority_share


def tricky_records(count=400, seed=0):
    """Records of every awkward kind: empty, any length mod 4, the magic word at aligned and
    unaligned offsets, at the very start and end, repeated, back to back, alone."""
    rng = random.Random(seed)
    records = [b"", MAGIC_BYTES, MAGIC_BYTES * 3, MAGIC_BYTES + b"x", b"x" + MAGIC_BYTES, b"abc" + MAGIC_BYTES,
               b"abcd" + MAGIC_BYTES, MAGIC_BYTES + b"abcd" + MAGIC_BYTES, b"ab" + MAGIC_BYTES + b"ab" + MAGIC_BYTES,
               MAGIC_BYTES[:3], MAGIC_BYTES[1:] + MAGIC_BYTES, pack_header(-1.0, 0xCED7230A, 7) + b"\xff\xd8",
               pack_header(3.0, 12, 0xCED7230A) + MAGIC_BYTES]
    while len(records) < count:
        data = bytearray(rng.randbytes(rng.randrange(0, 64)))
        for _ in range(rng.choice((0, 0, 1, 2, 3))):
            at = rng.randrange(0, len(data) + 1)
            if rng.random() < 0.6:
                at -= at % 4  # aligned: dmlc-core cuts the record there
            data[at:at] = MAGIC_BYTES
        if rng.random() < 0.5:
            data[0:0] = pack_header(float(rng.randrange(-1, 5270)), rng.randrange(1 << 40), rng.randrange(4))
        records.append(bytes(data))
    rng.shuffle(records)
    return records


def write_with_mxnet(rec, idx, records, keys):
    writer = mx.recordio.MXIndexedRecordIO(str(idx), str(rec), "w")
    for key, record in zip(keys, records):
        writer.write_idx(key, record)
    writer.close()


def write_with_ours(rec, idx, records, keys):
    with IndexedRecordWriter(str(rec), str(idx)) as writer:
        for key, record in zip(keys, records):
            writer.write(key, record)


def test_the_records_exercise_every_case():
    records = tricky_records()
    cflags = {cflag for r in records for cflag, _ in split_at_magic(r)}
    assert cflags == {0, 1, 2, 3}
    assert {len(r) % 4 for r in records} == {0, 1, 2, 3}
    assert any(MAGIC_BYTES in r and split_at_magic(r) == [(0, r)] for r in records)  # unaligned only
    assert any(r.startswith(MAGIC_BYTES) for r in records) and any(r.endswith(MAGIC_BYTES) for r in records)


@pytest.mark.parametrize("key_order", ["sequential", "shuffled"])
def test_output_is_byte_identical_to_mxnet(tmp_path, key_order):
    records = tricky_records()
    keys = list(range(len(records)))
    if key_order == "shuffled":
        random.Random(1).shuffle(keys)
    write_with_mxnet(tmp_path / "mx.rec", tmp_path / "mx.idx", records, keys)
    write_with_ours(tmp_path / "ours.rec", tmp_path / "ours.idx", records, keys)
    assert (tmp_path / "ours.rec").read_bytes() == (tmp_path / "mx.rec").read_bytes()
    assert (tmp_path / "ours.idx").read_bytes() == (tmp_path / "mx.idx").read_bytes()


def test_small_buffer_gives_the_same_bytes(tmp_path):
    records = tricky_records(100, seed=3)
    keys = range(len(records))
    write_with_mxnet(tmp_path / "mx.rec", tmp_path / "mx.idx", records, keys)
    with IndexedRecordWriter(str(tmp_path / "ours.rec"), str(tmp_path / "ours.idx"), buffer_bytes=16) as writer:
        for key, record in zip(keys, records):
            writer.write(key, record)
    assert writer.position == (tmp_path / "ours.rec").stat().st_size
    assert (tmp_path / "ours.rec").read_bytes() == (tmp_path / "mx.rec").read_bytes()


def test_mxnet_reads_our_records_back(tmp_path):
    records = tricky_records(300, seed=5)
    headers = [(float(k % 50 - 1), 10**12 + k, k % 4) for k in range(len(records))]
    keys = list(range(len(records)))
    random.Random(2).shuffle(keys)  # random access by key, not just sequential reading
    write_with_ours(tmp_path / "r.rec", tmp_path / "r.idx", [pack_header(*h) + r for h, r in zip(headers, records)],
                    range(len(records)))
    reader = mx.recordio.MXIndexedRecordIO(str(tmp_path / "r.idx"), str(tmp_path / "r.rec"), "r")
    try:
        assert reader.keys == list(range(len(records)))
        for key in keys:
            header, payload = mx.recordio.unpack(reader.read_idx(key))
            assert payload == records[key]
            assert (header.flag, header.label, header.id, header.id2) == (0, *headers[key])
    finally:
        reader.close()
    sequential = mx.recordio.MXRecordIO(str(tmp_path / "r.rec"), "r")
    try:
        assert [mx.recordio.unpack(sequential.read())[1] for _ in records] == records
        assert sequential.read() is None
    finally:
        sequential.close()


def test_pack_header_matches_mxnet():
    for label, record_id, record_id2 in [(0.0, 0, 0), (-1.0, 5, 1), (5269.0, 2**63 - 1, 3), (0.5, 0xCED7230A, 0)]:
        expected = mx.recordio.pack(mx.recordio.IRHeader(0, label, record_id, record_id2), b"")
        assert pack_header(label, record_id, record_id2) == expected


def test_image_record_iter_reads_bson2rec_output(tmp_path):
    num_classes, per_class, size = 3, 5, 32
    docs = colour_products(num_classes, per_class, size=size)
    bson_path = write_bson(tmp_path / "train.bson", docs)
    csv_path = write_category_csv(tmp_path / "categories.csv", [d["category_id"] for d in docs[:num_classes]])
    rec = tmp_path / "train.rec"
    bson2rec.main(["--bson", bson_path, "--out-rec", str(rec), "--category-csv", csv_path])

    reader = mx.recordio.MXIndexedRecordIO(str(tmp_path / "train.idx"), str(rec), "r")
    expected = [mx.recordio.unpack(reader.read_idx(key)) for key in reader.keys]
    reader.close()
    assert len(expected) == num_classes * per_class

    it = mx.io.ImageRecordIter(path_imgrec=str(rec), data_shape=(3, size, size), batch_size=5,
                               shuffle=False, round_batch=False, preprocess_threads=1)
    labels, images = [], []
    for batch in it:
        assert batch.pad == 0
        labels.extend(batch.label[0].asnumpy().tolist())
        images.extend(batch.data[0].asnumpy())
    assert labels == [h.label for h, _ in expected]
    for image, (_, jpeg) in zip(images, expected):
        decoded = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1].transpose(2, 0, 1)
        assert np.abs(image - decoded).max() <= 2  # same picture (decoders may round differently)


def test_data_stage_does_not_import_mxnet(tmp_path):
    docs = colour_products(2, 2)
    bson_path = write_bson(tmp_path / "t.bson", docs)
    csv_path = write_category_csv(tmp_path / "c.csv", [d["category_id"] for d in docs[:2]])
    code = ("import sys; from data import bson2rec; "
            f"bson2rec.main(['--bson', {bson_path!r}, '--out-rec', {str(tmp_path / 't.rec')!r}, "
            f"'--category-csv', {csv_path!r}]); "
            "assert 'mxnet' not in sys.modules, 'mxnet was imported'")
    run(["python", "-c", code], expect=0)
    assert (tmp_path / "t.rec").stat().st_size > 0


# --- reading ---------------------------------------------------------------------------------------------

def read_with_mxnet(rec):
    """(key, label) of every record of `rec`, in key order, as MXNet's own indexed reader reads them."""
    reader = mx.recordio.MXIndexedRecordIO(idx_path_of(str(rec)), str(rec), "r")
    try:
        return [(key, mx.recordio.unpack(reader.read_idx(key))[0].label) for key in sorted(reader.keys)]
    finally:
        reader.close()


@pytest.fixture
def kaggle_sample_rec(example_bson, category_csv, tmp_path):
    """Kaggle's train_example.bson (82 products, 110 pictures) as data.bson2rec writes it."""
    rec = str(tmp_path / "sample" / "train.rec")
    os.makedirs(os.path.dirname(rec))
    bson2rec.main(["--bson", example_bson, "--out-rec", rec, "--category-csv", category_csv])
    return rec


def test_idx_path_of_replaces_the_extension():
    assert idx_path_of("dataset_A/train.rec") == "dataset_A/train.idx"
    assert idx_path_of("/d.v1/valid.rec") == "/d.v1/valid.idx"  # a dot in a folder name is kept
    assert idx_path_of("records") == "records.idx"


def test_the_sample_rec_is_counted_and_its_labels_read_as_mxnet_reads_them(kaggle_sample_rec, category_csv):
    assert existing_idx_path(kaggle_sample_rec) == kaggle_sample_rec[:-4] + ".idx"
    expected = read_with_mxnet(kaggle_sample_rec)
    assert count_records(kaggle_sample_rec) == len(expected) == read_rec_info(kaggle_sample_rec).records == 110
    labels = read_labels(kaggle_sample_rec)
    assert labels.dtype == np.float32
    assert labels.tolist() == [label for _, label in expected]
    assert len(set(labels.tolist())) > 1  # real class ids of several categories, not one constant
    with open(category_csv, encoding="utf-8") as fh:
        classes = sum(1 for _ in fh) - 1
    assert labels.min() >= 0 and labels.max() < classes and (labels == np.floor(labels)).all()


def test_labels_are_read_past_the_magic_word_in_a_header(tmp_path):
    # ids holding the magic word make the writer cut the record inside its header: the label comes first, intact
    magic = 0xCED7230A
    headers = [(4.0, magic, 0), (7.0, 12, magic), (0.0, magic << 32 | magic, magic), (2.0, 1, 2)]
    records = [pack_header(*h) + b"\xff\xd8" + MAGIC_BYTES for h in headers]
    write_with_ours(tmp_path / "m.rec", tmp_path / "m.idx", records, list(range(len(records))))
    assert read_labels(str(tmp_path / "m.rec")).tolist() == [4.0, 7.0, 0.0, 2.0]
    assert [label for _, label in read_with_mxnet(tmp_path / "m.rec")] == [4.0, 7.0, 0.0, 2.0]


def test_a_rewritten_idx_is_counted_again(tmp_path):
    rec = str(tmp_path / "r.rec")
    write_with_ours(rec, tmp_path / "r.idx", [pack_header(1.0, 1)] * 3, [0, 1, 2])
    assert count_records(rec) == 3
    write_with_ours(rec, tmp_path / "r.idx", [pack_header(1.0, 1)] * 12, list(range(12)))
    assert count_records(rec) == 12


def test_a_missing_rec_or_idx_is_one_line(tmp_path):
    rec = tmp_path / "r.rec"
    with pytest.raises(UserError, match=r"r\.rec: \.rec file not found"):
        count_records(str(rec))
    rec.write_bytes(b"")
    with pytest.raises(UserError, match=r"r\.idx: index of .*r\.rec not found \(written by data\.bson2rec\)"):
        read_labels(str(rec))


def test_a_bad_idx_is_named(kaggle_sample_rec):
    idx = idx_path_of(kaggle_sample_rec)
    offsets = record_offsets(kaggle_sample_rec)
    assert len(offsets) == 110 and offsets[0] == 0 and (np.diff(offsets) > 0).all()
    with pytest.raises(UserError, match=r"its \.idx points past the end of the file"):
        record_labels(kaggle_sample_rec, offsets + os.path.getsize(kaggle_sample_rec))
    with open(idx, "a") as fh:
        fh.write("110 no-tab\n")
    with pytest.raises(UserError, match=r"not an index of key<TAB>offset lines"):
        read_labels(kaggle_sample_rec)


def test_callers_count_and_read_through_recordio(kaggle_sample_rec):
    # data.dataset_summary's record count and train.summarise_runs' chance level, checked against MXNet's reader
    lines = dataset_summary.summary_lines(os.path.dirname(kaggle_sample_rec))
    assert lines[0].startswith("train.rec  110 records")
    labels = [label for _, label in read_with_mxnet(kaggle_sample_rec)]
    most = max(labels.count(label) for label in set(labels))
    assert majority_share(kaggle_sample_rec) == (most / 110, len(set(labels)))
