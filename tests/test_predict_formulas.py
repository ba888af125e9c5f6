"""predict.predict against an independent computation of the original solution's formulas.

Three small networks (flattened picture -> fully connected -> softmax) predict generated
products of one to four pictures, some of them known to a training MD5 dictionary with
single, conflicting and tied categories. The test recomputes every output from scratch in
plain numpy, as the original's predict.py did: decode, RGB, the picture and its horizontal
flip; each model's forward pass; per picture the mean over the first k models' views;
the MD5 override rules on a Counter of the training BSON in file order; per product the
product (m0) or the sum (m1) of its pictures' probabilities; the argmax.
"""
import csv
import hashlib
from collections import Counter, defaultdict

import cv2
import numpy as np
import pytest

from data import bson_md5_dict
from cli.runner import UserError
from predict import predict
from predict.submission import read_submission
from tests.flat_models import NUM_CATEGORIES, NUM_MODELS, SIZE, picture, random_models
from tests.helpers import product, read_docs, write_bson, write_category_csv

FIRST_CATEGORY = 1000
MD5_TYPES = ("none", "unique", "majority", "l1", "l2", "softmax")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Training and test BSONs, the category CSV and the MD5 dictionary of the training BSON."""
    tmp = tmp_path_factory.mktemp("formulas")
    rng = np.random.default_rng(7)
    known = [picture(rng) for _ in range(4)]
    unknown = [picture(rng) for _ in range(10)]
    c = [FIRST_CATEGORY + i for i in range(NUM_CATEGORIES)]
    train = [product(1, [known[0]], c[2]), product(2, [known[0]], c[2]),            # single category
             product(3, [known[1]], c[3]), product(4, [known[1]], c[1]),            # a 2-2 tie: c[3] seen first
             product(5, [known[1]], c[1]), product(6, [known[1]], c[3]),
             product(7, [known[2]], c[5]), product(8, [known[2]], c[0]),            # 3-1 for c[0]
             product(9, [known[2]], c[0]), product(10, [known[2], known[3]], c[0]),
             product(11, [known[3]], c[4])]                                          # 1-1 tie: c[0] first
    test = []
    for n in range(40):
        count = 1 + n % 4
        pool = unknown + known * (n % 3 == 0)  # a third of the products can show known pictures
        pictures = [pool[i] for i in rng.integers(0, len(pool), count)]
        if n < 4:
            pictures[0] = known[n]  # each known picture at least once, alone for the first four
        test.append(product(100 + n, pictures, c[int(rng.integers(0, NUM_CATEGORIES))]))
    paths = {"train": write_bson(tmp / "train.bson", train), "test": write_bson(tmp / "test.bson", test),
             "csv": write_category_csv(tmp / "categories.csv", c), "dict": str(tmp / "md5.npz"), "dir": tmp}
    assert bson_md5_dict.main(["--bson", paths["train"], "--out", paths["dict"]]) == 0
    return paths


# ---- the original's formulas, written out ---------------------------------------------------
def image_views(jpeg):
    rgb = cv2.cvtColor(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    return [rgb, cv2.flip(rgb, 1)]  # --multi-view 1


def forward(weight, bias, view):
    logits = weight @ view.transpose(2, 0, 1).reshape(-1).astype(np.float64) + bias
    exp = np.exp(logits - logits.max())
    return exp / exp.sum()


def md5_hex(jpeg):
    return hashlib.md5(jpeg).hexdigest()


def training_counters(train_docs):
    """md5 -> Counter{category_id: count} in file order, as the original's bson_md5_dict.py."""
    counters = defaultdict(Counter)
    for doc in train_docs:
        for img in doc["imgs"]:
            counters[md5_hex(img["picture"])][doc["category_id"]] += 1
    return counters


def original_override(counter, kind, label_of, num_classes):
    """The original's _do_forward rules; None keeps the models' probabilities."""
    if kind == "none" or (kind == "unique" and len(counter) != 1):
        return None
    prob = np.zeros(num_classes)
    if kind in ("unique", "majority"):
        prob[label_of[counter.most_common(1)[0][0]]] = 1.0
        return prob
    for category, count in counter.items():
        prob[label_of[category]] = count
    if kind == "l1":
        return prob / sum(counter.values())
    if kind == "l2":
        return prob / np.linalg.norm(list(counter.values()))
    e = np.exp(prob - prob.max())
    return e / e.sum()


def picture_probs(test_docs, models, override_of):
    """Per product, per picture: [(model_id, probability)] for every model and view, as _do_forward
    collected them; `override_of(md5 hex)` is the dictionary's vector or None."""
    products = []
    for doc in test_docs:
        pictures = []
        for img in doc["imgs"]:
            override = override_of(md5_hex(img["picture"]))
            pictures.append([(m, forward(w, b, view) if override is None else override)
                             for m, (w, b, *_) in enumerate(models) for view in image_views(img["picture"])])
        products.append(pictures)
    return products


def original_reduction(products, ensembles):
    """The original's _predict: {(k, mode): class per product}, mode 0 the product and 1 the sum over the
    pictures of each picture's mean over the first k models' views."""
    result = defaultdict(list)
    for pictures in products:
        for k in ensembles:
            images_prob = [np.mean([p for m, p in entries if m < k], axis=0) for entries in pictures]
            result[(k, 0)].append(int(np.argmax(np.prod(images_prob, axis=0))))
            result[(k, 1)].append(int(np.argmax(np.sum(images_prob, axis=0))))
    return result


def original_predictions(test_docs, models, counters, kind, label_of, ensembles):
    num_classes = len(models[0][1])

    def override_of(digest):
        return original_override(counters[digest], kind, label_of, num_classes) if digest in counters else None

    return original_reduction(picture_probs(test_docs, models, override_of), ensembles)


def run_project(setup, models, kind, output, *extra):
    argv = ["--bson", setup["test"], "--csv", setup["csv"], "--symbol", *(m[2] for m in models),
            "--params", *(m[3] for m in models), "--data-shape", f"3,{SIZE},{SIZE}", "--batch-size", "7",
            "--num-procs", "1", "--multi-view", "1", "--ensembles", "1", "2", "3", "--md5-dict", setup["dict"],
            "--md5-dict-type", kind, "--output", str(output), *extra]
    assert predict.main(argv) == 0
    outputs = {(k, m): read_submission(str(output).replace(".csv", f".e{k}.m{m}.csv"))[1]
               for k in (1, 2, 3) for m in (0, 1)}
    outputs["main"] = read_submission(str(output))[1]
    return outputs


# ---- the tests -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def level3_runs(setup):
    models = random_models(setup["dir"], NUM_CATEGORIES, seed=0)
    label_of = {FIRST_CATEGORY + i: i for i in range(NUM_CATEGORIES)}
    counters = training_counters(read_docs(setup["train"]))
    test_docs = read_docs(setup["test"])
    runs = {}
    for kind in MD5_TYPES:
        got = run_project(setup, models, kind, setup["dir"] / f"l3_{kind}.csv")
        expected = original_predictions(test_docs, models, counters, kind, label_of, (1, 2, 3))
        runs[kind] = (got, expected)
    return runs, models, counters, test_docs, label_of


@pytest.mark.parametrize("kind", MD5_TYPES)
def test_every_output_matches_the_original_formulas(level3_runs, kind):
    runs = level3_runs[0]
    got, expected = runs[kind]
    for k in (1, 2, 3):
        for mode in (0, 1):
            assert (got[(k, mode)] - FIRST_CATEGORY).tolist() == expected[(k, mode)], f"e{k}.m{mode}"
    assert (got["main"] - FIRST_CATEGORY).tolist() == expected[(3, 0)]  # the main output: m0 of all models


def test_the_data_tells_the_formulas_apart(level3_runs):
    """Each rule the comparison above checks changes some product here, so a wrong formula fails it."""
    runs, models, counters, test_docs, label_of = level3_runs
    expected = {kind: runs[kind][1] for kind in MD5_TYPES}
    none = expected["none"]
    assert none[(3, 0)] != none[(3, 1)]                                   # product vs sum of the pictures
    assert none[(1, 0)] != none[(3, 0)] and none[(1, 1)] != none[(3, 1)]  # the first k models
    for kind in MD5_TYPES[1:]:
        assert expected[kind][(3, 0)] != none[(3, 0)], kind               # each override type acts
    # m0 as a per-model product (normalised geometric mean) averaged over the models differs
    plain = picture_probs(test_docs, models, lambda digest: None)
    per_model = []
    for pictures in plain:
        views = np.array([[p for m, p in entries] for entries in pictures])  # pictures, models x views, C
        per_model_views = views.reshape(len(pictures), NUM_MODELS, -1, views.shape[-1]).mean(axis=2)
        geometric = np.exp(np.log(per_model_views).mean(axis=0))
        per_model.append(int(np.argmax((geometric / geometric.sum(axis=1, keepdims=True)).mean(axis=0))))
    assert per_model != none[(3, 0)]
    # softmax over the seen categories only, and majority ties by category id, would differ too
    def seen_only_softmax(digest):
        if digest not in counters:
            return None
        prob = np.zeros(NUM_CATEGORIES)
        exp = np.exp(np.array(list(counters[digest].values()), dtype=float))
        prob[[label_of[c] for c in counters[digest]]] = exp / exp.sum()
        return prob

    def majority_by_id(digest):
        if digest not in counters:
            return None
        by_id = sorted(counters[digest].items())
        return np.eye(NUM_CATEGORIES)[label_of[max(by_id, key=lambda item: item[1])[0]]]

    for alternative, kind in ((seen_only_softmax, "softmax"), (majority_by_id, "majority")):
        assert original_reduction(picture_probs(test_docs, models, alternative), (3,))[(3, 0)] != \
            expected[kind][(3, 0)], kind


def test_level1_sub_class_model_scores_and_writes_sub_class_ids(setup, capsys):
    # write_category_csv puts category i in level-1 group i % 2: sub-class ids 0, 0, 1, 1, 2, 2
    with open(setup["csv"], newline="") as fh:
        rows = list(csv.reader(fh))[1:]
    rank, label_of = Counter(), {}
    for category_id, level1, *_ in rows:  # the original's child_cate3 numbering, in file order
        label_of[int(category_id)] = rank[level1]
        rank[level1] += 1
    num_sub_classes = max(label_of.values()) + 1
    models = random_models(setup["dir"], num_sub_classes, seed=1)
    counters = training_counters(read_docs(setup["train"]))
    test_docs = read_docs(setup["test"])
    for kind in ("unique", "l1"):
        output = setup["dir"] / f"l1_{kind}.csv"
        got = run_project(setup, models, kind, output, "--cate-level", "1")
        expected = original_predictions(test_docs, models, counters, kind, label_of, (1, 2, 3))
        for key, classes in expected.items():
            assert got[key].tolist() == classes, key  # the CSVs hold sub-class ids
        truth = np.array([label_of[d["category_id"]] for d in test_docs])
        table = capsys.readouterr().out.splitlines()
        main_line = table[1].split()
        assert main_line[0] == "main" and main_line[1] == "3"  # all 3 models
        assert float(main_line[-1]) == pytest.approx((np.array(expected[(3, 0)]) == truth).mean(), abs=1e-5)
    assert len(set(expected[(3, 0)])) > 1  # not one class for all
    # a level-3 network refused up front, naming the expected count
    level3 = random_models(setup["dir"], NUM_CATEGORIES, seed=2)
    with pytest.raises(UserError, match=rf"{NUM_CATEGORIES} outputs, expected {num_sub_classes} \(--cate-level 1"):
        run_project(setup, level3, "none", setup["dir"] / "refused.csv", "--cate-level", "1")
