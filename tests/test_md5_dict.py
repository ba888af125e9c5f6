import logging
import os
import pickle

import numpy as np
import pytest

from data import bson_md5_dict
from cli.runner import UserError
from data.md5_dict import Md5Dictionary, image_md5, product_hash, product_key
from tests.helpers import make_jpeg, product, read_docs, write_bson


@pytest.mark.smoke  # run on every Python the README promises (.ci/run)
def test_totals_on_kaggle_example(example_bson, tmp_path, caplog):
    out = tmp_path / "dict.npz"
    with caplog.at_level(logging.INFO):
        bson_md5_dict.main(["--bson", example_bson, "--out", str(out)])
    dictionary = Md5Dictionary.load(str(out))
    assert dictionary.meta["total_images"] == 110
    assert dictionary.meta["unique_images"] == 109
    assert dictionary.meta["image_label_conflicts"] == 0
    assert dictionary.meta["refined_images"] == 109
    assert dictionary.meta["total_products"] == 82
    assert "unique images: 109" in caplog.text
    # Every picture and product of the file is found with its category.
    for doc in read_docs(example_bson):
        digests = [image_md5(img["picture"]) for img in doc["imgs"]]
        for d in digests:
            assert doc["category_id"] in dictionary.images.get(d)
        assert doc["category_id"] in dictionary.products.get(product_key(digests))


def test_counts_conflicts_and_product_hashes(tmp_path):
    shared, a, b = make_jpeg(0), make_jpeg(1), make_jpeg(2)
    path = write_bson(tmp_path / "c.bson", [
        product(1, [shared, a], 10), product(2, [a, shared], 10),  # same image set, other order
        product(3, [shared], 20), product(4, [b, b], 30)])
    bson_md5_dict.main(["--bson", path, "--out", str(tmp_path / "d.npz")])
    d = Md5Dictionary.load(str(tmp_path / "d.npz"))
    assert d.images.get(image_md5(shared)) == {10: 2, 20: 1}
    assert d.images.get(image_md5(a)) == {10: 2}
    assert d.images.get(image_md5(b)) == {30: 2}
    assert d.images.get(image_md5(make_jpeg(9))) is None
    assert d.meta["image_label_conflicts"] == 1 and d.meta["refined_images"] == 2
    assert d.products.get(product_key([image_md5(a), image_md5(shared)])) == {10: 2}
    assert d.products.get(product_key([image_md5(b)])) == {30: 1}  # a set: b twice is b once
    unique = d.images.unique_category([image_md5(shared), image_md5(a), image_md5(make_jpeg(9))])
    assert unique.tolist() == [-1, 10, -1]


def test_product_hash_is_sorted_set_joined():
    x, y = image_md5(b"x"), image_md5(b"y")
    assert product_hash([y, x, y]) == "_".join(sorted([x.hex(), y.hex()]))
    assert product_key([x, y]) == product_key([y, x])


def test_test_bson_is_refused(tmp_path):
    path = write_bson(tmp_path / "t.bson", [product(1, [make_jpeg(1)])])
    with pytest.raises(UserError, match="without category_id"):
        bson_md5_dict.main(["--bson", path, "--out", str(tmp_path / "d.npz")])


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch pwned_marker",))


def test_a_pickle_is_refused_not_executed(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    evil = tmp_path / "evil.npz"
    evil.write_bytes(pickle.dumps(_Exploit()))
    with pytest.raises(UserError, match=r"not an MD5 dictionary \(a pickle\)"):
        Md5Dictionary.load(str(evil))
    # An .npz holding a pickled object array is refused as well.
    np.savez(tmp_path / "evil2.npz", meta=np.array([_Exploit()], dtype=object))
    with pytest.raises(UserError, match="not a readable MD5 dictionary"):
        Md5Dictionary.load(str(tmp_path / "evil2.npz"))
    assert not (tmp_path / "pwned_marker").exists()


def test_large_dictionary_round_trip(tmp_path):
    # 1M random keys: the arrays round-trip exactly and lookups stay vectorised.
    rng = np.random.default_rng(0)
    keys = rng.integers(0, 256, (1_000_000, 16), dtype=np.uint8).view("S16").ravel()
    cats = rng.integers(0, 50, len(keys))
    d = Md5Dictionary.build(keys, cats, keys[:1000], cats[:1000])
    d.save(str(tmp_path / "big.npz"))
    loaded = Md5Dictionary.load(str(tmp_path / "big.npz"))
    assert len(loaded.images) == len(np.unique(keys))
    assert (loaded.images.unique_category(keys[:5000]) == cats[:5000]).all()


def test_each_keys_categories_keep_their_first_seen_order(tmp_path):
    # The original's Counter kept insertion order, which decided majority ties: keep it on disk too.
    a, b = make_jpeg(1), make_jpeg(2)
    path = write_bson(tmp_path / "order.bson", [
        product(1, [a], 30), product(2, [a, b], 10), product(3, [a], 20), product(4, [b], 5), product(5, [a, b], 10)])
    bson_md5_dict.main(["--bson", path, "--out", str(tmp_path / "d.npz")])
    d = Md5Dictionary.load(str(tmp_path / "d.npz"))
    assert list(d.images.get(image_md5(a)).items()) == [(30, 1), (10, 2), (20, 1)]
    assert list(d.images.get(image_md5(b)).items()) == [(10, 2), (5, 1)]
    assert d.first_seen_order and d.meta["version"] == 2
    assert d.images.unique_category([image_md5(a)]).tolist() == [-1]


def test_version_1_files_still_load(tmp_path):
    d = Md5Dictionary.build(np.array([b"k" * 16], dtype="S16"), [7], np.array([b"p" * 16], dtype="S16"), [7])
    d.meta["version"] = 1
    d.save(str(tmp_path / "old.npz"))
    old = Md5Dictionary.load(str(tmp_path / "old.npz"))
    assert not old.first_seen_order and old.images.get(b"k" * 16) == {7: 1}
    d.meta["version"] = 99
    d.save(str(tmp_path / "future.npz"))
    with pytest.raises(UserError, match="format version 99"):
        Md5Dictionary.load(str(tmp_path / "future.npz"))


def test_sorted_array_counting_matches_a_dict_of_counters():
    import collections

    from data.md5_dict import HashTable

    rng = np.random.default_rng(5)
    pool = rng.integers(0, 256, (300, 16), dtype=np.uint8)
    pool[::5, 12:] = 0  # trailing NUL bytes, which numpy's S16 hides on reading
    pool[:100, :8] = pool[0, :8]  # keys sharing their first 8 bytes: sorted by the rest too
    keys = pool[rng.integers(0, len(pool), 5000)].view("S16").ravel()
    categories = rng.integers(0, 6, len(keys))
    reference = collections.defaultdict(dict)
    for row, category in zip(keys.view(np.uint8).reshape(-1, 16), categories.tolist()):
        entry = reference[row.tobytes()]
        entry[category] = entry.get(category, 0) + 1  # dicts keep insertion order: first seen
    table = HashTable.from_pairs(keys, categories)
    assert len(table) == len(reference)
    assert sorted(reference) == [k.ljust(16, b"\x00") for k in table.keys.tolist()]
    for key, entry in reference.items():
        found = table.entry(table.find(np.frombuffer(key, dtype="S16"))[0])
        assert list(found.items()) == list(entry.items())


def test_first_occurrences_are_those_np_unique_finds():
    from data.md5_dict import first_occurrences

    rng = np.random.default_rng(9)
    pool = rng.integers(0, 256, (50, 16), dtype=np.uint8)
    pool[:25, :8] = pool[0, :8]  # keys sharing their first 8 bytes: ordered by the rest
    keys = pool[rng.integers(0, len(pool), 2000)].view("S16").ravel()
    _, first = np.unique(keys, return_index=True)
    assert np.flatnonzero(first_occurrences(keys)).tolist() == sorted(first.tolist())
    assert first_occurrences(np.zeros(0, dtype="S16")).tolist() == []
