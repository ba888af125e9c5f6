"""The probability store (--save-probs) and predict.ensemble: the outputs of a direct run, from the store.

Three small networks over 120 classes (more than the K=50 kept) predict generated products with
repeated and dictionary-known pictures; the store's ensembles must give the direct run's
categories for every output, MD5 type, shard layout and store combination."""
import json
import os
import shutil

import cv2
import numpy as np
import pytest

from data import bson_md5_dict
from data.bson_index import BsonIndex
from cli.runner import UserError
from predict import ensemble, predict, prob_store, probability
from predict.predictor import image_ensembles, make_variants, product_classes
from predict.submission import read_submission
from tests.flat_models import SIZE, save_flat_model
from tests.helpers import make_jpeg, product, run, write_bson, write_category_csv

NUM_CLASSES = 120
FIRST = 2000
TAGS = ("e1.m0", "e1.m1", "e2.m0", "e2.m1", "e3.m0", "e3.m1")


def category_picture(rng, template):
    """A product picture of a category: a faint copy of its template under heavy noise."""
    image = np.clip(128 + 0.3 * (template - 128.0) + rng.normal(0, 50, template.shape), 0, 255).astype(np.uint8)
    return cv2.imencode(".jpg", image)[1].tobytes()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Products whose pictures show their category (as real products' pictures agree), three template
    -matching networks of different noise (top probabilities mostly 0.5 to 1), some pictures known to
    the dictionary, some repeated across products."""
    tmp = tmp_path_factory.mktemp("ensemble")
    rng = np.random.default_rng(11)
    categories = [FIRST + i for i in range(NUM_CLASSES)]
    templates = rng.integers(0, 256, (NUM_CLASSES, SIZE, SIZE, 3)).astype(np.float64)
    known = [category_picture(rng, templates[c]) for c in range(8)]
    # the dictionary knows them under other categories, so that its overrides change products
    train = [product(i, [p], categories[i + 20]) for i, p in enumerate(known)] + [
        product(50, [known[0]], categories[9]), product(51, [known[1]], categories[21])]
    shared = {c: category_picture(rng, templates[c]) for c in range(8, 14)}
    docs = []
    for n in range(120):
        c = int(rng.integers(NUM_CLASSES))
        pictures = [known[c] if c < 8 and rng.random() < 0.5 else shared[c] if c in shared and rng.random() < 0.5
                    else category_picture(rng, templates[c]) for _ in range(1 + n % 4)]
        docs.append(product(900 + n, pictures, categories[c]))
    paths = {"test": write_bson(tmp / "test.bson", docs), "csv": write_category_csv(tmp / "categories.csv", categories),
             "dict": str(tmp / "md5.npz"), "dir": tmp}
    assert bson_md5_dict.main(["--bson", write_bson(tmp / "train.bson", train), "--out", paths["dict"]]) == 0
    paths["models"] = []
    scale = 2.6e-5
    for m in range(3):  # the network flattens C, H, W: the templates in that order, plus noise
        weight = scale * ((templates - 128).transpose(0, 3, 1, 2).reshape(NUM_CLASSES, -1)
                          + rng.normal(0, 40 + 20 * m, (NUM_CLASSES, 3 * SIZE * SIZE)))
        bias = -128 * weight.sum(axis=1)
        paths["models"].append(save_flat_model(str(tmp / f"net{m}"), weight, bias))
    paths["store"] = str(tmp / "store")
    assert predict.main(predict_argv(paths, tmp / "stored.csv", "unique", "--save-probs", paths["store"])) == 0
    return paths


def predict_argv(setup, output, kind, *extra, models=None):
    models = models or setup["models"]
    return ["--bson", setup["test"], "--csv", setup["csv"], "--symbol", *(s for s, _ in models),
            "--params", *(p for _, p in models), "--data-shape", f"3,{SIZE},{SIZE}", "--batch-size", "8",
            "--num-procs", "1", "--multi-view", "1", "--ensembles", *map(str, range(1, len(models) + 1)),
            "--md5-dict", setup["dict"], "--md5-dict-type", kind, "--output", str(output), *extra]


def ensemble_argv(setup, output, kind, *stores):
    return ["--probs", *(stores or [setup["store"]]), "--csv", setup["csv"], "--md5-dict", setup["dict"],
            "--md5-dict-type", kind, "--ensembles", "1", "2", "3", "--output", str(output)]


def outputs(path):
    path = str(path)
    got = {tag: read_submission(path.replace(".csv", f".{tag}.csv")) for tag in TAGS}
    got["main"] = read_submission(path)
    return got


def assert_agree(got, expected, least=0.999):
    for tag, (ids, categories) in expected.items():
        assert got[tag][0].tolist() == ids.tolist(), tag
        assert (got[tag][1] == categories).mean() >= least, tag


@pytest.mark.parametrize("kind", ["unique", "l1", "softmax"])
def test_every_output_of_every_md5_type_from_the_store(setup, kind):
    direct, stored = setup["dir"] / f"direct_{kind}.csv", setup["dir"] / f"from_store_{kind}.csv"
    assert predict.main(predict_argv(setup, direct, kind)) == 0
    assert ensemble.main(ensemble_argv(setup, stored, kind)) == 0
    expected = outputs(direct)
    assert_agree(outputs(stored), expected)
    # the MD5 type matters on this data: the store does not just echo the run that wrote it
    if kind == "unique":
        plain = setup["dir"] / "from_store_none.csv"
        assert ensemble.main(ensemble_argv(setup, plain, "none")) == 0
        assert any((outputs(plain)[tag][1] != expected[tag][1]).any() for tag in TAGS)


def test_stores_of_separate_runs_combine_in_the_order_given(setup):
    stores = []
    for m, model in enumerate(setup["models"]):
        stores.append(str(setup["dir"] / f"store_model{m}"))
        assert predict.main(predict_argv(setup, setup["dir"] / f"one{m}.csv", "unique", "--save-probs", stores[-1],
                                         models=[model])) == 0
    combined = setup["dir"] / "combined.csv"
    assert ensemble.main(ensemble_argv(setup, combined, "unique", *stores)) == 0
    assert predict.main(predict_argv(setup, setup["dir"] / "direct3.csv", "unique")) == 0
    assert_agree(outputs(combined), outputs(setup["dir"] / "direct3.csv"))
    reversed_order = setup["dir"] / "reversed.csv"
    assert ensemble.main(ensemble_argv(setup, reversed_order, "unique", *stores[::-1])) == 0
    # e1 is the first store's model alone: the order given decides it
    assert (outputs(reversed_order)["e1.m1"][1] != outputs(combined)["e1.m1"][1]).any()


def test_shards_fill_one_store(setup):
    store = str(setup["dir"] / "sharded")
    for shard in ("0/3", "1/3", "2/3"):
        assert predict.main(predict_argv(setup, setup["dir"] / f"part{shard[0]}.csv", "unique",
                                         "--save-probs", store, "--shard", shard)) == 0
    assert sorted(os.listdir(store)) == ["products-000000000-000000040", "products-000000040-000000080",
                                         "products-000000080-000000120"]
    sharded = setup["dir"] / "sharded.csv"
    assert ensemble.main(ensemble_argv(setup, sharded, "unique", store)) == 0
    assert predict.main(predict_argv(setup, setup["dir"] / "direct_u.csv", "unique")) == 0
    assert_agree(outputs(sharded), outputs(setup["dir"] / "direct_u.csv"))
    shutil.rmtree(os.path.join(store, "products-000000040-000000080"))  # a shard missing in between
    with pytest.raises(UserError, match="products 40-80 are in no range folder"):
        ensemble.main(ensemble_argv(setup, setup["dir"] / "gap.csv", "unique", store))


def test_errors_are_one_line_before_any_work(setup, tmp_path):
    other = str(tmp_path / "cut")
    assert predict.main(predict_argv(setup, tmp_path / "cut.csv", "unique", "--save-probs", other, "--cut", "7")) == 0
    with pytest.raises(UserError, match="products differ from those of"):
        ensemble.main(ensemble_argv(setup, tmp_path / "x.csv", "unique", setup["store"], other))
    with pytest.raises(UserError, match="already exists"):
        predict.main(predict_argv(setup, tmp_path / "again.csv", "unique", "--save-probs", other, "--cut", "7"))
    argv = ensemble_argv(setup, tmp_path / "x.csv", "unique")
    with pytest.raises(UserError, match=r"--ensembles \[4\]"):
        ensemble.main(argv + ["--ensembles", "4"])
    with pytest.raises(UserError, match="was predicted with --multi-view 1"):
        ensemble.main(argv + ["--multi-view", "0"])
    with pytest.raises(UserError, match="store given twice"):
        ensemble.main(ensemble_argv(setup, tmp_path / "x.csv", "unique", setup["store"], setup["store"]))
    with pytest.raises(UserError, match="no probability store"):
        ensemble.main(ensemble_argv(setup, tmp_path / "x.csv", "unique", str(tmp_path)))
    # an array replaced by a pickled object array is refused, never unpickled
    folder = os.path.join(other, os.listdir(other)[0])
    np.save(os.path.join(folder, "rest.npy"), np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(UserError, match="rest.npy: not a readable probability store array"):
        ensemble.main(ensemble_argv(setup, tmp_path / "x.csv", "unique", other))


def test_ensemble_imports_no_mxnet():
    code = "import sys, predict.ensemble; assert 'mxnet' not in sys.modules, 'mxnet imported'"
    run(["python", "-c", code], expect=0)


# ---- top-K arithmetic ----------------------------------------------------------------------
def test_top_k_keeps_small_probabilities_and_zeros_only_where_the_network_gave_them():
    probs = np.array([[0.7, 0.3 - 3e-20, 2e-20, 1e-20, 0.0],     # tail: tiny but positive, and a zero
                      [0.6, 0.4, 0.0, 0.0, 0.0]], dtype=np.float32)  # tail: zeros (float32 underflow)
    ids, logs, rest, tail_log_mean = probability.top_k(probs, 3)
    assert ids.tolist() == [[0, 1, 2], [0, 1, 2]] or ids[0].tolist() == [0, 1, 2]
    np.testing.assert_allclose(rest, [1e-20, 0.0], atol=1e-7)
    dense = probability.from_top_k(ids, logs, tail_log_mean, 5)
    np.testing.assert_allclose(dense[0, 2], 2e-20, rtol=2e-2)  # a float16 probability would be 0
    np.testing.assert_allclose(dense[0, 3:], 1e-20, rtol=2e-2)  # the zero of class 4: never a spurious zero ...
    assert (dense[1, 3:] == 0).all()  # ... but where every other class was zero, they stay zero
    np.testing.assert_allclose(dense.sum(axis=1), probs.sum(axis=1), rtol=1e-3)


def test_largest_ids_selects_as_a_whole_partition_does():
    """The sampled threshold's selection holds the same values as np.argpartition's on softmax rows of
    several spreads, and on the rows it hands to the whole partition: fewer than k values pass (a few
    large ones), too many pass (ties: rows of zeros and a constant row), and k close to C."""
    rng = np.random.default_rng(4)
    rows = [rng.dirichlet(np.full(5270, alpha), size=40) for alpha in (0.05, 1.0, 50.0)]
    sparse = np.zeros((3, 5270))
    sparse[0, :30] = rng.random(30)           # 30 positive values: fewer than k pass
    sparse[1, ::7] = rng.random(753)          # a sample of positives, the rest zero: ties at 0
    sparse[2, :] = 1 / 5270                   # every value equal
    rows.append(sparse)
    probs = np.concatenate(rows).astype(np.float32)
    for k in (1, 50, 200, 5000):
        ids = probability.largest_ids(probs, k)
        assert ids.shape == (len(probs), k) and all(len(set(row)) == k for row in ids.tolist())
        expected = np.sort(np.take_along_axis(probs, np.argpartition(-probs, k - 1, axis=1)[:, :k], axis=1), axis=1)
        assert (np.sort(np.take_along_axis(probs, ids, axis=1), axis=1) == expected).all(), k
    small = probs[:, :100]  # C <= 4 k: partitioned whole
    assert (np.sort(np.take_along_axis(small, probability.largest_ids(small, 30), axis=1), axis=1) ==
            np.sort(small, axis=1)[:, -30:]).all()


def test_top_k_keeps_the_named_classes_whatever_their_probability():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(40), size=3).astype(np.float32)
    probs[0, 7] = 0.0        # a class the network gave 0 (float32 underflow)
    probs[1, 9] = 1e-30      # one far below the top
    kept = np.array([[7, -1], [9, 7], [-1, -1]])
    ids, logs, rest, tail_log_mean = probability.top_k(probs, 5, kept)
    plain = probability.top_k(probs, 5)
    assert 7 in ids[0] and {7, 9} <= set(ids[1].tolist())
    assert ids[2].tolist() == plain[0][2].tolist()  # a row without named classes: the top 5
    assert set(ids[0].tolist()) - {7} <= set(plain[0][0].tolist())  # the others: the largest
    values = np.exp(logs.astype(np.float32))
    assert (np.diff(values, axis=1) <= 0).all()  # still the largest first
    dense = probability.from_top_k(ids, logs, tail_log_mean, 40)
    assert dense[0, 7] == 0.0 and probability.from_top_k(*[a for a in plain[:2]], plain[3], 40)[0, 7] > 0
    np.testing.assert_allclose(dense[1, 9], 1e-30, rtol=2e-2)
    np.testing.assert_allclose(rest + np.exp(logs.astype(np.float64)).sum(axis=1), probs.sum(axis=1), rtol=1e-3)


def overridden_products():
    """Two products of one model over 40 classes whose category the MD5 overrides and the network's smallest
    probabilities decide, as a direct run sees them: (means (1, pictures, C), overrides {picture: one-hot},
    the named classes). m0: one picture answered (class 30), the other gave class 30 exactly 0, so every class
    scores -inf and the original takes class 0. m1: two pictures answered by different classes (30, 35) tie
    at 1.0, broken by the third picture's probabilities of them, far outside its top classes."""
    rng = np.random.default_rng(1)
    one_hot = {c: np.eye(40, dtype=np.float64)[c] for c in (30, 35)}
    zero = rng.dirichlet(np.ones(40), size=(1, 2))
    zero[0, 1, 30] = 0.0
    tie = rng.dirichlet(np.ones(40), size=(1, 3))
    tie[0, 2, :] = np.r_[np.full(20, 0.05 - 1e-4), np.full(20, 1e-6)]  # the top 20 hold nearly all
    tie[0, 2, 30], tie[0, 2, 35] = 1e-7, 4e-7
    return [(zero.astype(np.float32), {0: one_hot[30]}, [30]),
            (tie.astype(np.float32), {0: one_hot[30], 1: one_hot[35]}, [30, 35])]


def test_the_named_classes_make_the_store_decide_as_the_direct_run():
    variants = make_variants(1, [1])  # m0 of the model, e1.m0, e1.m1
    directs = []
    for means, overrides, named in overridden_products():
        decoded = np.ones(means.shape[1], bool)
        direct = product_classes(image_ensembles(means, decoded, overrides, [1]), variants)
        directs.append(direct)

        def from_store(kept):
            ids, logs, _, tail = probability.top_k(means[0], 10, kept)
            dense = probability.from_top_k(ids, logs, tail, 40)[None]
            return product_classes(image_ensembles(dense, decoded, overrides, [1]), variants)

        assert from_store(np.tile(named, (means.shape[1], 1))) == direct
        assert from_store(None) != direct  # the top 10 alone: the tail's mean decides otherwise
    assert directs[0][0] == 0 and directs[1][2] == 35  # m0: all -inf, class 0; m1: 1 + 4e-7 beats 1 + 1e-7


def test_the_writer_keeps_each_products_named_classes_for_every_picture(tmp_path):
    docs = [product(1, [make_jpeg(1, size=8), make_jpeg(2, size=8)], None), product(2, [make_jpeg(3, size=8)], None)]
    index = BsonIndex.open(write_bson(tmp_path / "t.bson", docs), progress=False)
    writer = prob_store.StoreWriter(str(tmp_path / "store"), index, 0, 2, 40, ["m"], 4,
                                    {"multi_view": 1, "cate_level": 3})
    means = np.random.default_rng(0).dirichlet(np.ones(40), size=(1, 3)).astype(np.float32)
    means[0, 0, 30] = 0.0
    means[0, 1, 31] = 1e-9
    named = [np.array([30, 31, 32]), np.array([])]  # at most K // 2 = 2 are kept: 30 and 31
    for row, pictures in enumerate((slice(0, 2), slice(2, 3))):
        count = pictures.stop - pictures.start
        writer.write(row, means[:, pictures], np.ones(count, bool), [b"x" * 16] * count, None, named[row])
    writer.commit()
    top = prob_store.Store(str(tmp_path / "store")).ranges[0].array("top_class")[0]
    assert all({30, 31} <= set(row.tolist()) and 32 not in row.tolist() for row in top[:2])
    assert top[2].tolist() == probability.top_k(means[0, 2:], 4)[0][0].tolist()  # nothing named: the top 4
    rebuilt = prob_store.Store(str(tmp_path / "store")).model_rows(0, 2)
    assert rebuilt[0, 0, 30] == 0.0 and rebuilt[0, 1, 30] == pytest.approx(means[0, 1, 30], rel=2e-2)
    assert rebuilt[0, 1, 31] == pytest.approx(1e-9, rel=2e-2)


def half_ulp_tie():
    """A product of three pictures over 40 classes whose m1 category the float64 rounding of the direct run
    decides: pictures 1 and 2 are answered by classes 36 and 31 (1.0 each), and picture 0 gives class 36
    1.1105e-16, just above half of float64's spacing at 1 (1.1102e-16), so that 1 + it rounds up and 36 wins.
    Its float16 log rounds it to 1.0956e-16, 1 + which is 1: the tie then goes to 31, the first class."""
    means = np.random.default_rng(2).dirichlet(np.ones(40), size=(1, 3)).astype(np.float32)
    means[0, 0, 36], means[0, 0, 31] = 1.1105e-16, 1e-20
    one_hot = np.eye(40, dtype=np.float64)
    return means, {1: one_hot[36], 2: one_hot[31]}, np.array([36, 31])


def test_the_store_keeps_the_named_classes_values_exactly(tmp_path):
    means, overrides, named = half_ulp_tie()
    docs = [product(1, [make_jpeg(i, size=8) for i in range(3)], None), product(2, [make_jpeg(3, size=8)], None)]
    index = BsonIndex.open(write_bson(tmp_path / "t.bson", docs), progress=False)
    writer = prob_store.StoreWriter(str(tmp_path / "store"), index, 0, 2, 40, ["m"], 10,
                                    {"multi_view": 1, "cate_level": 3})
    other = np.random.default_rng(3).dirichlet(np.ones(40), size=(1, 1)).astype(np.float32)
    writer.write(0, means, np.ones(3, bool), [b"x" * 16] * 3, None, named)
    writer.write(1, other, np.ones(1, bool), [b"y" * 16], None, np.zeros(0, np.int64))
    writer.commit()
    store = prob_store.Store(str(tmp_path / "store"))
    part = store.ranges[0]
    assert part.meta["named_exact"] == prob_store.NAMED_EXACT
    assert part.array("named_class")[:, :2].tolist() == [[36, 31]] * 3 + [[-1, -1]]
    rebuilt = store.model_rows(0, 4)
    assert (rebuilt[0, :3, [36, 31]] == means[0, :, [36, 31]]).all()  # as computed, to the bit
    assert (rebuilt[0, 3] == probability.from_top_k(*[part.array(n)[:, 3:] for n in
                                                      ("top_class", "top_log_prob", "tail_log_mean")], 40)[0, 0]).all()

    variants = make_variants(1, [1])  # m0 of the model, e1.m0, e1.m1
    decoded = np.ones(3, bool)
    direct = product_classes(image_ensembles(means, decoded, overrides, [1]), variants)
    assert direct[2] == 36
    assert product_classes(image_ensembles(rebuilt[:, :3], decoded, overrides, [1]), variants) == direct
    logs_only = probability.from_top_k(*[part.array(n)[:, :3] for n in ("top_class", "top_log_prob", "tail_log_mean")],
                                       40)
    assert product_classes(image_ensembles(logs_only, decoded, overrides, [1]), variants)[2] == 31  # float16: 31


def test_a_store_without_the_exact_named_classes_reads_as_before(tmp_path):
    """Stores written before named_exact existed, and a meta file that gives a nonsense count."""
    means, _, named = half_ulp_tie()
    docs = [product(1, [make_jpeg(i, size=8) for i in range(3)], None)]
    index = BsonIndex.open(write_bson(tmp_path / "t.bson", docs), progress=False)
    writer = prob_store.StoreWriter(str(tmp_path / "store"), index, 0, 1, 40, ["m"], 10,
                                    {"multi_view": 1, "cate_level": 3})
    writer.write(0, means, np.ones(3, bool), [b"x" * 16] * 3, None, named)
    folder = writer.commit()
    meta_path = os.path.join(folder, prob_store.META)
    with open(meta_path) as fh:
        meta = json.load(fh)
    for name in ("named_class", "named_prob"):
        os.remove(os.path.join(folder, name + ".npy"))
    with open(meta_path, "w") as fh:
        json.dump({key: value for key, value in meta.items() if key != "named_exact"}, fh)
    store = prob_store.Store(str(tmp_path / "store"))
    part = store.ranges[0]
    expected = probability.from_top_k(*[part.array(n) for n in ("top_class", "top_log_prob", "tail_log_mean")], 40)
    assert (store.model_rows(0, 3) == expected).all()
    with open(meta_path, "w") as fh:
        json.dump(dict(meta, named_exact="four"), fh)
    with pytest.raises(UserError, match="named_exact"):
        prob_store.Store(str(tmp_path / "store"))


def test_agreement_grows_with_k(setup):
    """The measurement the README reports: fewer classes kept, more products change (K=50 is enough)."""
    rows = {}
    for k in (1, 50):
        store = str(setup["dir"] / f"store_k{k}")
        assert predict.main(predict_argv(setup, setup["dir"] / f"k{k}.csv", "none", "--save-probs", store,
                                         "--save-probs-top-k", str(k))) == 0
        assert ensemble.main(ensemble_argv(setup, setup["dir"] / f"from_k{k}.csv", "none", store)) == 0
        got, direct = outputs(setup["dir"] / f"from_k{k}.csv"), outputs(setup["dir"] / f"k{k}.csv")
        rows[k] = min(float((got[t][1] == direct[t][1]).mean()) for t in TAGS)
    assert rows[50] >= 0.999 and rows[1] < rows[50], rows


def test_a_store_written_in_small_batches_and_remapped_is_the_same(setup, monkeypatch):
    """The writer reduces WRITE_IMAGES pictures at a time and maps its arrays again every REMAP_BYTES (so that
    the store stays out of the process's memory): neither may change a byte of the store."""
    monkeypatch.setattr(prob_store, "WRITE_IMAGES", 3)
    monkeypatch.setattr(prob_store, "REMAP_BYTES", 4096)
    remaps = []
    remap = prob_store.StoreWriter._remap
    monkeypatch.setattr(prob_store.StoreWriter, "_remap", lambda self: remaps.append(1) or remap(self))
    store = str(setup["dir"] / "small_batches")
    assert predict.main(predict_argv(setup, setup["dir"] / "small.csv", "unique", "--save-probs", store)) == 0
    assert len(remaps) > 10
    (folder,) = os.listdir(store)
    for name in sorted(os.listdir(os.path.join(setup["store"], folder))):
        with open(os.path.join(setup["store"], folder, name), "rb") as fh, \
                open(os.path.join(store, folder, name), "rb") as other:
            assert fh.read() == other.read(), name
