"""--data-order: the original's chunked order (the default) and a global permutation per epoch.

The .rec here holds 2,400 records of about 9.2 KB whose labels are their positions in the file, so
the labels read show which part of the file each batch came from: 8 MB is about 910 records."""
import types

import cv2
import numpy as np
import pytest

from cli.runner import UserError
from data import bson2rec
from data.recordio import IndexedRecordWriter, pack_header, read_rec_info
from tests.helpers import colour_products, write_bson, write_category_csv
from train import train_model
from train.data import get_iterators, resolve_labels

RECORDS = 2400
RECORD_PADDING = 9000  # bytes after the JPEG's end (decoders stop at its end marker)
RECORDS_PER_CHUNK = (8 << 20) // (RECORD_PADDING + 200)  # about 910
BATCH = 32  # 2,400 = 75 batches: no wrap-around in an epoch


@pytest.fixture(scope="module")
def position_rec(tmp_path_factory):
    folder = tmp_path_factory.mktemp("order")
    rec, idx = str(folder / "p.rec"), str(folder / "p.idx")
    ok, jpeg = cv2.imencode(".jpg", np.full((8, 8, 3), 90, np.uint8))
    assert ok
    body = jpeg.tobytes() + bytes(RECORD_PADDING)
    with IndexedRecordWriter(rec, idx) as writer:
        for position in range(RECORDS):
            writer.write(position, pack_header(float(position), position) + body)
    return rec


def parse(rec, *flags):
    return train_model.build_parser().parse_args(
        ["--symbol", "densenet-41", "--data-train", rec, "--image-shape", "3,8,8", "--batch-size", str(BATCH),
         "--data-nthreads", "2", *flags])


def epoch_labels(train):
    labels = np.concatenate([batch.label[0].asnumpy() for batch in train]).astype(np.int64)
    train.reset()
    return labels


def test_the_original_order_is_the_default(position_rec):
    assert parse(position_rec).data_order == "chunks"


def test_chunks_read_the_file_from_start_to_end_shuffled_within_8mb(position_rec):
    labels = epoch_labels(get_iterators(parse(position_rec))[0])
    assert sorted(labels) == list(range(RECORDS))  # every record once
    assert not np.array_equal(labels, np.arange(RECORDS))  # shuffled
    first_chunk = labels[:RECORDS_PER_CHUNK // 2]
    assert first_chunk.max() < RECORDS_PER_CHUNK * 1.1  # the first half-chunk of the epoch: first 8 MB only
    assert labels[-RECORDS_PER_CHUNK // 4:].min() > RECORDS - RECORDS_PER_CHUNK * 1.1  # the last: the last chunk's
    # within a chunk the order is a shuffle: the first 300 come from all over the first chunk
    assert labels[:300].max() - labels[:300].min() > RECORDS_PER_CHUNK * 0.8


def test_global_permutes_the_whole_file_every_epoch(position_rec):
    labels = epoch_labels(get_iterators(parse(position_rec, "--data-order", "global"))[0])
    assert sorted(labels) == list(range(RECORDS))
    assert labels[:300].max() > RECORDS * 0.8 and labels[:300].min() < RECORDS * 0.2


@pytest.mark.parametrize("order", ["chunks", "global"])
def test_each_epoch_shuffles_anew_and_a_resumed_epoch_reads_the_same(position_rec, order):
    args = parse(position_rec, "--data-order", order)
    train = get_iterators(args)[0]
    uninterrupted = [epoch_labels(train) for _ in range(3)]
    assert [len(e) for e in uninterrupted] == [RECORDS] * 3
    assert not np.array_equal(uninterrupted[1], uninterrupted[2])
    resumed = epoch_labels(get_iterators(args, begin_epoch=2)[0])
    assert np.array_equal(resumed, uninterrupted[2])
    other_seed = epoch_labels(get_iterators(parse(position_rec, "--data-order", order, "--seed", "1"),
                                            begin_epoch=2)[0])
    assert not np.array_equal(other_seed, uninterrupted[2])


@pytest.mark.parametrize("order", ["chunks", "global"])
def test_two_workers_read_the_whole_file_between_them(position_rec, order):
    args = parse(position_rec, "--data-order", order)
    parts = [epoch_labels(get_iterators(args, types.SimpleNamespace(num_workers=2, rank=rank))[0])
             for rank in (0, 1)]
    assert [len(p) for p in parts] == [38 * BATCH] * 2  # ceil(2400 / 2 / 32) batches each
    assert set(parts[0]) | set(parts[1]) == set(range(RECORDS))


def test_a_rec_in_file_order_is_refused_under_chunks_only(tmp_path):
    csv_path = write_category_csv(tmp_path / "c.csv", [1000000000 + c for c in range(4)])
    bson_path = write_bson(tmp_path / "t.bson", colour_products(4, 3, size=8))
    recs = {}
    for name, flags in (("shuffled", []), ("file_order", ["--no-shuffle"])):
        recs[name] = str(tmp_path / f"{name}.rec")
        bson2rec.main(["--bson", bson_path, "--out-rec", recs[name], "--category-csv", csv_path, *flags])
    assert read_rec_info(recs["shuffled"]).shuffled is True and read_rec_info(recs["file_order"]).shuffled is False
    resolve_labels(parse(recs["shuffled"]))
    resolve_labels(parse(recs["file_order"], "--data-order", "global"))
    with pytest.raises(UserError, match=r"file_order.rec: its records are in the BSON's file order .*--data-order global"):
        resolve_labels(parse(recs["file_order"]))
