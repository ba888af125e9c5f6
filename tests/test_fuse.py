"""predict.fuse: learned fusion weights fitted on labelled stores, estimated by k-fold, applied to others.

The stores are written with predict.prob_store.StoreWriter from probabilities made up here: model 0
sees the class clearly, models 1 and 2 weakly and both lean to the next class, so that the original's
equal-weight mean is worse than model 0 alone and a learned weighting has something to find."""
import csv
import json

import mxnet as mx
import numpy as np
import pytest

from cli.runner import UserError
from data import bson_md5_dict
from data.bson_index import BsonIndex
from data.categories import Categories
from data.md5_dict import image_md5
from predict import fuse
from predict.fuse_weights import WeightFusion, class_groups, count_groups
from predict.prob_store import StoreWriter
from tests.helpers import make_jpeg, product, write_bson, write_category_csv

NUM_CLASSES = 8
FIRST_CATEGORY = 1000000000
MODELS = ["good.params", "weak1.params", "weak2.params"]
STRENGTH = np.array([2.2, 0.6, 0.6])  # logit added to the product's class
LEAN = np.array([0.0, 1.0, 1.0])  # logit added to the next class


FEATURE_DIM = 12
CENTRES = np.random.default_rng(99).normal(0, 1, (NUM_CLASSES, FEATURE_DIM))  # model 0's features: the class's


def made_up_features(rng, label, count):
    """Per model, (2 views, count pictures, FEATURE_DIM) non-negative features: model 0's near its class's
    centre, the others noise."""
    informative = np.maximum(CENTRES[label] + rng.normal(0, 0.3, (2, count, FEATURE_DIM)), 0)
    return [informative.astype(np.float32)] + [np.abs(rng.normal(0, 1, (2, count, FEATURE_DIM))).astype(np.float32)
                                               for _ in MODELS[1:]]


def made_up_run(tmp_path, name, num_products, seed, labelled=True, features=False):
    """A BSON of `num_products` products of 1-4 pictures, and a store of MODELS' made-up probabilities
    (and feature vectors of 2 views per picture, with `features`)."""
    rng = np.random.default_rng(seed)
    classes = rng.integers(0, NUM_CLASSES, num_products)
    counts = rng.integers(1, 5, num_products)
    docs = [product(seed * 100000 + n, [make_jpeg(seed * 100000 + 10 * n + i, size=8) for i in range(counts[n])],
                    FIRST_CATEGORY + int(classes[n]) if labelled else None) for n in range(num_products)]
    bson_path = write_bson(tmp_path / f"{name}.bson", docs)
    index = BsonIndex.open(bson_path, progress=False)
    store_dir = tmp_path / f"{name}-store"
    writer = StoreWriter(str(store_dir), index, 0, num_products, NUM_CLASSES, MODELS, NUM_CLASSES,
                         {"multi_view": 1, "cate_level": 3, "categories_digest": categories(tmp_path).digest},
                         **(dict(feature_dims=[FEATURE_DIM] * len(MODELS), feature_views=2) if features else {}))
    probs = []
    for n in range(num_products):
        logits = rng.normal(0, 1, (len(MODELS), counts[n], NUM_CLASSES))
        logits[:, :, classes[n]] += STRENGTH[:, None]
        logits[:, :, (classes[n] + 1) % NUM_CLASSES] += LEAN[:, None]
        p = np.exp(logits)
        p /= p.sum(axis=-1, keepdims=True)
        probs.append(p.astype(np.float32))
        digests = [image_md5(doc["picture"]) for doc in docs[n]["imgs"]]
        writer.write(n, p.astype(np.float32), np.ones(counts[n], dtype=bool), digests,
                     made_up_features(rng, classes[n], counts[n]) if features else None)
    writer.commit()
    return dict(bson=bson_path, store=str(store_dir), classes=classes, probs=probs, docs=docs)


def categories(tmp_path):
    path = tmp_path / "category_names.csv"
    if not path.exists():
        write_category_csv(path, [FIRST_CATEGORY + c for c in range(NUM_CLASSES)])
    return Categories.load(str(path))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("fuse")
    return dict(tmp=tmp_path, csv=str(tmp_path / "category_names.csv"),
                valid=made_up_run(tmp_path, "valid", 600, 1), test=made_up_run(tmp_path, "test", 300, 2))


def read_submission(path):
    with open(path) as fh:
        return {int(row["_id"]): int(row["category_id"]) for row in csv.DictReader(fh)}


def test_train_estimates_by_kfold_and_beats_the_equal_mean(runs, capsys):
    out = str(runs["tmp"] / "f1")
    assert fuse.main(["train", "--probs", runs["valid"]["store"], "--category-csv", runs["csv"], "--out", out,
                      "--folds", "4"]) == 0
    printed = capsys.readouterr().out
    assert "k-fold estimate on 600 labelled products" in printed
    with open(out + "-fuse.json") as fh:
        record = json.load(fh)
    methods = {m["name"]: m for m in record["estimate"]["methods"]}
    learned, m0 = methods["learned weights (k-fold)"], methods["m0"]
    assert learned["accuracy"] > m0["accuracy"] + 0.02  # the weak models' lean is learned away
    assert learned["low"] < learned["accuracy"] < learned["high"]
    weights = np.exp(np.asarray(record["fusion"]["theta"]))[0, 0]
    assert weights[0] > 2 * max(weights[1], weights[2])
    assert record["models"] == [f"valid-store:{name}" for name in MODELS]


def test_apply_writes_what_the_weights_give_and_md5_overrides_after_fusion(runs, tmp_path):
    fusion_prefix = str(tmp_path / "f")
    fuse.main(["train", "--probs", runs["valid"]["store"], "--category-csv", runs["csv"], "--out", fusion_prefix,
               "--folds", "0", "--per-count"])
    with open(fusion_prefix + "-fuse.json") as fh:
        fusion = WeightFusion.from_json(json.load(fh)["fusion"])
    assert fusion.theta.shape == (4, 1, 3)  # per count group
    # a training BSON whose pictures are three test pictures, labelled with another class
    test = runs["test"]
    chosen = [0, 1, 2]
    relabel = {n: (int(test["classes"][n]) + 3) % NUM_CLASSES for n in chosen}
    train_docs = [product(900000 + n, [bytes(test["docs"][n]["imgs"][0]["picture"])], FIRST_CATEGORY + relabel[n])
                  for n in chosen]
    dictionary = str(tmp_path / "dict.npz")
    bson_md5_dict.main(["--bson", str(write_bson(tmp_path / "train.bson", train_docs)), "--out", dictionary])

    output = str(tmp_path / "sub.csv")
    assert fuse.main(["apply", "--fuse", fusion_prefix + "-fuse.json", "--probs", test["store"], "--category-csv",
                      runs["csv"], "--output", output, "--md5-dict", dictionary, "--md5-dict-type", "unique"]) == 0
    written = read_submission(output)
    assert set(written) == {doc["_id"] for doc in test["docs"]}
    assert (tmp_path / "sub.fused.m1.csv").exists()
    for n, doc in enumerate(test["docs"]):
        probs = test["probs"][n]  # stored as top-K logs in float16: compare the fused argmax by hand
        a = fusion.weights[count_groups([len(probs[0])], True)[0]][0]
        fused = np.einsum("m,mic->ic", a, np.log(probs))
        fused = np.exp(fused - fused.max(axis=1, keepdims=True))
        fused /= fused.sum(axis=1, keepdims=True)
        if n in chosen:  # fuse, then override: the overridden picture is one-hot, the others fused
            fused[0] = np.eye(NUM_CLASSES)[relabel[n]]
        with np.errstate(divide="ignore"):  # the one-hot picture: log 0 for the other classes, as m0
            expected = FIRST_CATEGORY + int(np.argmax(np.log(fused).sum(axis=0)))
        assert written[doc["_id"]] == expected, n
    assert all(written[test["docs"][n]["_id"]] == FIRST_CATEGORY + relabel[n] for n in chosen)


def test_apply_refuses_stores_of_other_models(runs, tmp_path):
    fusion_prefix = str(tmp_path / "f")
    fuse.main(["train", "--probs", runs["valid"]["store"], "--category-csv", runs["csv"], "--out", fusion_prefix,
               "--folds", "0", "--iterations", "5"])
    record = json.loads(open(fusion_prefix + "-fuse.json").read())
    record["models"] = record["models"][::-1]
    with open(tmp_path / "swapped-fuse.json", "w") as fh:
        json.dump(record, fh)
    with pytest.raises(UserError, match=r"swapped-fuse.json: fitted on the models weak2.params, weak1.params, "
                                        r"good.params, but the stores hold good.params"):
        fuse.main(["apply", "--fuse", str(tmp_path / "swapped-fuse.json"), "--probs", runs["test"]["store"],
                   "--category-csv", runs["csv"], "--output", str(tmp_path / "s.csv")])
    (tmp_path / "bad-fuse.json").write_text("{\"format\": \"other\"}")
    with pytest.raises(UserError, match=r"bad-fuse.json: not a fusion predict.fuse train writes"):
        fuse.main(["apply", "--fuse", str(tmp_path / "bad-fuse.json"), "--probs", runs["test"]["store"],
                   "--category-csv", runs["csv"], "--output", str(tmp_path / "s.csv")])


def test_train_refuses_unlabelled_stores_and_keeps_outputs(runs, tmp_path):
    unlabelled = made_up_run(tmp_path, "unlabelled", 20, 3, labelled=False)
    with pytest.raises(UserError, match=r"0 labelled products; fitting needs labelled products"):
        fuse.main(["train", "--probs", unlabelled["store"], "--category-csv", runs["csv"], "--out",
                   str(tmp_path / "u")])
    existing = tmp_path / "e-fuse.json"
    existing.write_text("keep")
    with pytest.raises(UserError, match="e-fuse.json"):
        fuse.main(["train", "--probs", runs["valid"]["store"], "--category-csv", runs["csv"], "--out",
                   str(tmp_path / "e")])
    assert existing.read_text() == "keep"


def test_groups():
    assert count_groups([1, 2, 3, 4, 7], True).tolist() == [0, 1, 2, 3, 3]
    assert count_groups([1, 2, 7], False).tolist() == [0, 0, 0]
    labels = np.array([2, 2, 2, 1, 1, 0, 3])
    assert class_groups(labels, 5, 2).tolist() == [1, 0, 0, 1, 1]  # classes 2 and 1 are the most frequent
    assert class_groups(labels, 5, 0).tolist() == [0] * 5


@pytest.fixture(scope="module")
def feature_runs(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("fuse_net")
    categories(tmp_path)
    return dict(tmp=tmp_path, csv=str(tmp_path / "category_names.csv"),
                valid=made_up_run(tmp_path, "valid", 300, 4, features=True),
                test=made_up_run(tmp_path, "test", 100, 5, features=True))


def test_the_fusion_net_learns_from_features_and_resumes_exactly(feature_runs, tmp_path):
    out = str(tmp_path / "net")
    common = ["train", "--method", "net", "--probs", feature_runs["valid"]["store"], "--category-csv",
              feature_runs["csv"], "--hidden", "32", "--batch-size", "32", "--net-learning-rate", "0.01", "--epochs", "12"]
    assert fuse.main(common + ["--out", out, "--folds", "3"]) == 0
    with open(out + "-fuse.json") as fh:
        record = json.load(fh)
    methods = {m["name"]: m for m in record["estimate"]["methods"]}
    assert methods["fusion net (k-fold)"]["accuracy"] > methods["m0"]["accuracy"] + 0.05  # model 0's features
    assert record["fusion"]["net"]["slots"] == 8 and record["fusion"]["net"]["width"] == 3 * FEATURE_DIM
    # interrupted after epoch 6, resumed: the same weights as the uninterrupted run's epoch 12
    resumed = str(tmp_path / "resumed")
    fuse.main(common[:-1] + ["6", "--out", resumed, "--folds", "0"])
    fuse.main(common + ["--out", resumed, "--folds", "0", "--load-epoch", "6", "--force"])
    whole, split = mx.nd.load(out + "-fusenet-0012.params"), mx.nd.load(resumed + "-fusenet-0012.params")
    assert sorted(whole) == sorted(split)
    assert all(np.array_equal(whole[k].asnumpy(), split[k].asnumpy()) for k in whole)

    output = str(tmp_path / "sub.csv")
    assert fuse.main(["apply", "--fuse", out + "-fuse.json", "--probs", feature_runs["test"]["store"],
                      "--category-csv", feature_runs["csv"], "--output", output]) == 0
    written = read_submission(output)
    test = feature_runs["test"]
    right = np.mean([written[doc["_id"]] == FIRST_CATEGORY + int(c) for doc, c in zip(test["docs"], test["classes"])])
    assert right > 0.85


def test_the_fusion_net_refuses_stores_without_features(runs, tmp_path):
    with pytest.raises(UserError, match=r"valid-store: no features in this store: the fusion net needs"):
        fuse.main(["train", "--method", "net", "--probs", runs["valid"]["store"], "--category-csv", runs["csv"],
                   "--out", str(tmp_path / "n"), "--folds", "0"])
