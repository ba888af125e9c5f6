import os
import struct

import bson
import numpy as np
import pytest

from data.bson_index import PRODUCT_COLUMNS, BsonFormatError, BsonIndex
from tests.helpers import make_jpeg, product, read_docs, write_bson


def test_index_matches_pymongo_on_kaggle_example(example_bson):
    index = BsonIndex.open(example_bson)
    docs = read_docs(example_bson)
    assert len(index) == len(docs) == 82
    assert index.num_images == 110
    assert index.products["product_id"].tolist() == [d["_id"] for d in docs]
    assert index.products["category_id"].tolist() == [d["category_id"] for d in docs]
    assert index.products["num_imgs"].tolist() == [len(d["imgs"]) for d in docs]
    pictures = [img["picture"] for d in docs for img in d["imgs"]]
    assert [index.read_image(j) for j in range(index.num_images)] == pictures
    assert [p for _, pics in index.iter_product_images() for p in pics] == pictures
    assert index.has_labels
    # Offsets tile the file exactly, and each document round-trips through pymongo.
    ends = index.products["offset"] + index.products["length"]
    assert index.products["offset"][0] == 0 and ends[-1] == os.path.getsize(example_bson)
    assert (index.products["offset"][1:] == ends[:-1]).all()
    assert bson.decode(index.read_document(5)) == docs[5]


def test_index_reads_a_small_part_of_the_file(example_bson):
    # The walker skips picture bytes: the index reads a few % of the file, not all of it.
    before = _rchar()
    BsonIndex.build(example_bson, progress=False)
    read = _rchar() - before
    assert read < 0.2 * os.path.getsize(example_bson)


def _rchar():
    with open("/proc/self/io") as fh:
        return int(next(line for line in fh if line.startswith("rchar")).split()[1])


def test_cache_is_reused_and_rebuilt_when_the_file_changes(tmp_path, monkeypatch):
    path = write_bson(tmp_path / "a.bson", [product(1, [make_jpeg(1)], 10), product(2, [make_jpeg(2)], 11)])
    first = BsonIndex.open(path)
    assert os.path.exists(path + ".index.npz")

    def no_build(*args, **kwargs):
        raise AssertionError("index rebuilt although the cache is fresh")

    monkeypatch.setattr(BsonIndex, "build", classmethod(no_build))
    cached = BsonIndex.open(path)
    for name in PRODUCT_COLUMNS:
        assert cached.products[name].tolist() == first.products[name].tolist()
    assert cached.image_offset.tolist() == first.image_offset.tolist()
    monkeypatch.undo()

    with open(path, "ab") as fh:
        fh.write(bson.encode(product(3, [make_jpeg(3), make_jpeg(4)], 12)))
    grown = BsonIndex.open(path)
    assert grown.products["product_id"].tolist() == [1, 2, 3]
    assert grown.num_images == 4


def test_cache_goes_to_user_cache_for_read_only_folder(tmp_path, monkeypatch):
    folder = tmp_path / "ro"
    folder.mkdir()
    path = write_bson(folder / "a.bson", [product(1, [make_jpeg(1)], 10)])
    folder.chmod(0o555)
    cache_dir = tmp_path / "cache"
    monkeypatch.setenv("CDISCOUNT_CACHE_DIR", str(cache_dir))
    try:
        BsonIndex.open(path)
        assert not os.path.exists(path + ".index.npz")
        assert len(list(cache_dir.iterdir())) == 1
    finally:
        folder.chmod(0o755)


def test_test_bson_has_no_labels_and_empty_imgs_is_valid(tmp_path):
    path = write_bson(tmp_path / "t.bson", [product(5, [make_jpeg(1)]), product(6, [])])
    index = BsonIndex.open(path)
    assert index.products["category_id"].tolist() == [-1, -1]
    assert index.products["num_imgs"].tolist() == [1, 0]
    assert not index.has_labels


def test_shards_cover_every_product_once(example_bson):
    index = BsonIndex.open(example_bson)
    covered = []
    for i in range(5):
        start, stop = index.shard(i, 5)
        covered.extend(range(start, stop))
    assert covered == list(range(len(index)))


def _good_docs():
    return [product(1, [make_jpeg(1)], 10), product(2, [make_jpeg(2), make_jpeg(3)], 11),
            product(3, [make_jpeg(4)], 12)]


def _corrupt_cases():
    good = [bson.encode(d) for d in _good_docs()]
    off2 = len(good[0]) + len(good[1])  # byte offset of the third document
    bad_type = bson.encode({"_id": 3, "imgs": [], "category_id": "x"})
    no_id = bson.encode({"imgs": [{"picture": bson.Binary(b"x")}], "category_id": 1})
    no_imgs = bson.encode({"_id": 3, "category_id": 1})
    # A document whose inner picture length lies about its size.
    lying = bytearray(good[2])
    pos = lying.index(b"picture\x00") + len(b"picture\x00")
    lying[pos:pos + 4] = struct.pack("<i", 10 ** 6)
    return {
        "truncated_prefix": (good[0] + good[1] + good[2][:2], off2, "truncated length prefix"),
        "truncated_body": (good[0] + good[1] + good[2][:-7], off2, "runs past the end of the file"),
        "length_larger_than_file": (good[0] + good[1] + struct.pack("<i", 10 ** 9) + good[2][4:], off2,
                                    "runs past the end of the file"),
        "zero_length": (good[0] + good[1] + struct.pack("<i", 0) + good[2][4:], off2, "invalid document length 0"),
        "negative_length": (good[0] + good[1] + struct.pack("<i", -8) + good[2][4:], off2, "invalid document length"),
        "garbage": (good[0] + good[1] + b"\x0b\x00\x00\x00\xabx\x00\x01\x02\x03\x00", off2, "unknown BSON element type 0xab"),
        "category_wrong_type": (good[0] + good[1] + bad_type, off2, "category_id has BSON type 0x02"),
        "no_id": (good[0] + good[1] + no_id, off2, "no _id"),
        "no_imgs": (good[0] + good[1] + no_imgs, off2, "no imgs"),
        "inner_length_lies": (good[0] + good[1] + bytes(lying), off2, "runs past the end"),
        "duplicate_id": (good[0] + good[1] + good[0], off2, "duplicate product _id 1"),
    }


@pytest.mark.parametrize("case", sorted(_corrupt_cases()))
def test_corrupt_document_is_a_clear_error_naming_the_offset(tmp_path, case):
    data, offset, reason = _corrupt_cases()[case]
    path = tmp_path / f"{case}.bson"
    path.write_bytes(data)
    with pytest.raises(BsonFormatError) as err:
        BsonIndex.open(str(path))
    message = str(err.value)
    assert message.startswith(f"{path}: byte offset {offset}")
    assert reason in message
    assert "\n" not in message
    if case in ("category_wrong_type", "no_imgs", "duplicate_id", "inner_length_lies"):
        assert "product _id" in message


@pytest.mark.parametrize("case", sorted(_corrupt_cases()))
def test_skip_corrupt_keeps_the_good_documents_and_reports(tmp_path, case):
    data, offset, _ = _corrupt_cases()[case]
    path = tmp_path / f"{case}.bson"
    path.write_bytes(data)
    index = BsonIndex.open(str(path), skip_corrupt=True)
    assert index.products["product_id"].tolist() == [1, 2]
    assert [s[0] for s in index.skipped] == [offset]
    # The cached index remembers the skip: opening without --skip-corrupt still fails.
    with pytest.raises(BsonFormatError):
        BsonIndex.open(str(path))


def test_corrupt_first_document_without_skip_reports_offset_zero(tmp_path):
    path = tmp_path / "zero.bson"
    path.write_bytes(b"\x03\x00")
    with pytest.raises(BsonFormatError, match=r"byte offset 0: truncated length prefix"):
        BsonIndex.open(str(path))


def test_index_is_consistent_for_many_random_products(tmp_path):
    rng = np.random.default_rng(7)
    docs = [product(int(i) * 3 + 1, [make_jpeg(int(s)) for s in rng.integers(0, 10 ** 6, rng.integers(0, 5))],
                    int(rng.integers(10, 20)))
            for i in range(200)]
    path = write_bson(tmp_path / "many.bson", docs)
    index = BsonIndex.open(path)
    for k in (0, 17, 199):
        assert index.read_document(k) == bson.encode(docs[k])
    assert index.num_images == sum(len(d["imgs"]) for d in docs)


def _odd_and_kaggle_docs():
    """Kaggle-layout documents mixed with valid ones laid out otherwise, which the general walker reads."""
    rng = np.random.default_rng(3)
    pictures = lambda n: [make_jpeg(int(s), size=8) for s in rng.integers(0, 10 ** 6, n)]  # noqa: E731
    docs = [product(int(i), pictures(int(rng.integers(0, 5))), int(rng.integers(10, 20))) for i in range(40)]
    docs += [product(100, pictures(2)),                                   # test document
             product(2 ** 40, pictures(1), 12),                           # 64-bit _id: still Kaggle's layout
             product(101, pictures(12), 13),                              # two-digit keys
             product(102, pictures(70), 14),                              # more images than the fast keys
             {"category_id": 15, "_id": 103, "imgs": [{"picture": bson.Binary(b"ab")}]},  # other key order
             product(104, pictures(1), 2 ** 40),                          # 64-bit category
             {"_id": 105, "imgs": [{"picture": bson.Binary(b"cd"), "md5": "x"}], "category_id": 16},  # extra field
             {"_id": 106.0, "imgs": [], "category_id": 17},               # double _id
             product(107, [b""], 18)]                                     # empty picture
    return docs


def test_vectorised_read_and_general_walker_agree(tmp_path, monkeypatch):
    import data.bson_index as bson_index

    docs = _odd_and_kaggle_docs()
    path = write_bson(tmp_path / "mixed.bson", docs)
    walked = []
    general = bson_index._scan_document
    monkeypatch.setattr(bson_index, "_scan_document", lambda *args: walked.append(args[1]) or general(*args))
    fast = BsonIndex.build(path, progress=False)
    # Every Kaggle-layout document took the vectorised path, the five odd ones the walker.
    assert len(walked) == 5
    monkeypatch.setattr(bson_index, "_scan_kaggle_chunk", _nothing_fits(bson_index._scan_kaggle_chunk))
    slow = BsonIndex.build(path, progress=False)
    assert len(walked) == 5 + len(docs)
    for name in PRODUCT_COLUMNS:
        assert fast.products[name].tolist() == slow.products[name].tolist(), name
    assert fast.image_offset.tolist() == slow.image_offset.tolist()
    assert fast.image_length.tolist() == slow.image_length.tolist()
    assert fast.products["product_id"].tolist() == [int(d["_id"]) for d in docs]
    assert fast.products["category_id"].tolist() == [d.get("category_id", -1) for d in docs]
    pictures = [bytes(img["picture"]) for d in docs for img in d["imgs"]]
    assert [fast.read_image(j) for j in range(fast.num_images)] == pictures


def _nothing_fits(scan):
    def general_walker_only(fb, starts, ends):
        fits, *rest = scan(fb, starts, ends)
        return (np.zeros_like(fits), *rest)
    return general_walker_only


def test_chunks_of_the_build_join_in_file_order(tmp_path, monkeypatch):
    import data.bson_index as bson_index

    docs = _odd_and_kaggle_docs()
    path = write_bson(tmp_path / "mixed.bson", docs)
    whole = BsonIndex.build(path, progress=False)
    monkeypatch.setattr(bson_index, "_CHUNK_DOCUMENTS", 3)
    chunked = BsonIndex.build(path, progress=False)
    for name in PRODUCT_COLUMNS:
        assert chunked.products[name].tolist() == whole.products[name].tolist()
    assert chunked.image_offset.tolist() == whole.image_offset.tolist()


def test_old_cache_version_is_rebuilt_not_misread(tmp_path):
    from cli.files import write_npz

    path = write_bson(tmp_path / "a.bson", [product(1, [make_jpeg(1)], 10)])
    stat = os.stat(path)
    version_1 = {"version": 1, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "skipped": []}
    old = np.zeros(1, dtype=[("product_id", "<i8"), ("offset", "<i8")])
    old["product_id"] = 999
    write_npz(path + ".index.npz", {"products": old, "image_offset": np.zeros(0, np.int64),
                                    "image_length": np.zeros(0, np.int64),
                                    "meta": np.frombuffer(__import__("json").dumps(version_1).encode(), np.uint8)})
    assert BsonIndex.open(path).products["product_id"].tolist() == [1]


SPARSE_PICTURE = (1 << 31) - 200  # nearly the largest picture a BSON document can hold (int32 lengths)


def _write_sparse_bson(path, num_holes=3, num_after=4):
    """Products whose pictures are holes of nearly 2 GiB each (no disk space), then normal products;
    returns each product's expected byte offset."""
    offsets, at = [], 0
    with open(path, "wb") as fh:
        for k in range(num_holes):
            tail = bson.encode(product(k, [b"\xff\xd8"], 10))  # a tiny document, then its picture widened
            picture = tail.index(b"\xff\xd8")
            head = bytearray(tail[:picture])
            grow = SPARSE_PICTURE - 2
            for length_at in (0, head.index(b"\x04imgs\x00") + 6, head.index(b"\x030\x00") + 3):
                struct.pack_into("<i", head, length_at, struct.unpack_from("<i", head, length_at)[0] + grow)
            struct.pack_into("<i", head, len(head) - 5, SPARSE_PICTURE)
            offsets.append(at)
            fh.write(head)
            fh.seek(SPARSE_PICTURE, os.SEEK_CUR)  # the hole: the picture's bytes are never written
            fh.write(tail[picture + 2:])
            at = fh.tell()
        for k in range(num_after):
            offsets.append(at)
            fh.write(bson.encode(product(100 + k, [make_jpeg(k), make_jpeg(k + 9)], 11)))
            at = fh.tell()
    return offsets


def test_offsets_past_4_gib_from_a_sparse_file_without_reading_its_holes(tmp_path):
    import resource

    path = str(tmp_path / "sparse.bson")
    expected = _write_sparse_bson(path)
    if os.stat(path).st_blocks * 512 > 64 << 20:
        pytest.skip("this filesystem has no sparse files")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    index = BsonIndex.build(path, progress=False)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert faults < 20000  # reading the 6 GiB of holes would map at least 6 GiB / 64 KiB = 98,304 times
    assert index.products["offset"].tolist() == expected
    assert expected[3] > 3 * SPARSE_PICTURE > 1 << 32
    assert index.image_length.tolist()[:3] == [SPARSE_PICTURE] * 3
    assert index.products["product_id"].tolist() == [0, 1, 2, 100, 101, 102, 103]
    assert bson.decode(index.read_document(6))["_id"] == 103
    assert index.read_image(index.num_images - 1) == make_jpeg(3 + 9)
    assert index.image_offset[-1] > 1 << 32


def test_pictures_read_in_blocks_are_those_of_each_document(tmp_path):
    docs = _odd_and_kaggle_docs()
    path = write_bson(tmp_path / "mixed.bson", docs)
    index = BsonIndex.open(path)
    expected = [[bytes(img["picture"]) for img in d["imgs"]] for d in docs]
    for block_bytes in (1, 700, 1 << 20):  # a block per document, a few documents, all of them
        assert [pictures for _, pictures in index.iter_product_images(block_bytes=block_bytes)] == expected
        assert [p for p, _ in index.iter_product_images(3, 40, block_bytes=block_bytes)] == list(range(3, 40))
