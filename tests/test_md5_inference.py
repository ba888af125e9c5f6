"""MD5-aware inference: pictures the dictionary answers and repeats are not forwarded, and nothing changes.

Generated products repeat pictures within and across products and show pictures a training
dictionary knows; the default run must give every product the same image probabilities,
scores and categories as --forward-all, with fewer pictures through the networks."""
import logging

import numpy as np
import pytest

from data import bson_md5_dict
from predict import predict
from predict.forward_plan import admitted_groups, build_plan
from predict.predictor import Predictor, make_variants
from predict.submission import read_submission
from tests.flat_models import NUM_CATEGORIES, SIZE, picture, random_models
from tests.helpers import product, write_bson, write_category_csv
from tests.predict_helpers import TableModel, prepared, scored_run

FIRST = 1000


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A labelled test BSON: 60 products of 1-4 pictures, some known to the dictionary (single and
    conflicting categories), some repeated within a product and across products."""
    tmp = tmp_path_factory.mktemp("md5_inference")
    rng = np.random.default_rng(3)
    known = [picture(rng) for _ in range(6)]
    shared = [picture(rng) for _ in range(5)]  # repeated across test products, unknown to training
    categories = [FIRST + i for i in range(NUM_CATEGORIES)]
    train = [product(i, [p], categories[i % NUM_CATEGORIES]) for i, p in enumerate(known)]
    train.append(product(99, [known[0]], categories[3]))  # known[0]: two categories, unique leaves it
    docs, expected = [], {"images": 0, "answered": 0, "repeats": 0}
    seen = set()
    for n in range(60):
        pictures = []
        for _ in range(1 + n % 4):
            draw = rng.random()
            pool = known if draw < 0.3 else shared if draw < 0.6 else None
            pictures.append(pool[int(rng.integers(len(pool)))] if pool else picture(rng))
        if n % 7 == 0:
            pictures.append(pictures[0])  # a picture repeated within its product
        for p in pictures:
            expected["images"] += 1
            if p in known[1:]:
                expected["answered"] += 1
            elif p in seen:
                expected["repeats"] += 1
            else:
                seen.add(p)
        docs.append(product(500 + n, pictures, categories[int(rng.integers(NUM_CATEGORIES))]))
    paths = {"test": write_bson(tmp / "test.bson", docs), "train": write_bson(tmp / "train.bson", train),
             "csv": write_category_csv(tmp / "categories.csv", categories), "dict": str(tmp / "md5.npz"), "dir": tmp}
    assert bson_md5_dict.main(["--bson", paths["train"], "--out", paths["dict"]]) == 0
    paths["models"] = random_models(tmp, NUM_CATEGORIES, seed=4)
    paths["expected"] = expected
    return paths


def argv(data, output, *extra):
    models = data["models"]
    return ["--bson", data["test"], "--csv", data["csv"], "--symbol", *(m[2] for m in models),
            "--params", *(m[3] for m in models), "--data-shape", f"3,{SIZE},{SIZE}", "--batch-size", "5",
            "--num-procs", "2", "--multi-view", "1", "--ensembles", "1", "2", "3", "--md5-dict", data["dict"],
            "--md5-dict-type", "unique", "--output", str(output), "--force", *extra]


def test_skipping_changes_no_score_and_no_category(data, monkeypatch):
    aware, aware_scores = scored_run(monkeypatch, argv(data, data["dir"] / "aware.csv"))
    every, every_scores = scored_run(monkeypatch, argv(data, data["dir"] / "all.csv", "--forward-all"))
    expected = data["expected"]
    a, e = aware.predictor, every.predictor
    assert (a.images, a.images_overridden, a.images_reused) == (expected["images"], expected["answered"],
                                                               expected["repeats"])
    assert a.images_forwarded == expected["images"] - expected["answered"] - expected["repeats"]
    assert (e.images_forwarded, e.images_reused) == (expected["images"], 0)
    assert expected["answered"] >= 10 and expected["repeats"] >= 10  # the data exercises both
    np.testing.assert_array_equal(a.class_ids, e.class_ids)
    assert sorted(aware_scores) == sorted(every_scores) == list(range(60))
    for row, by_key in every_scores.items():
        for key, reference in by_key.items():
            np.testing.assert_allclose(aware_scores[row][key], reference, rtol=1e-5, atol=1e-6,
                                       err_msg=f"product {row}, {key}")
    assert a.live_repeats == 0 and not a.waiting  # every repeated picture's row freed after its last use
    assert a.spill.rows >= 1 and a.spill.bytes_read == expected["repeats"] * a.spill.row_bytes


def test_counts_line_and_print_summary(data, capsys, caplog):
    with caplog.at_level(logging.INFO, logger="predict.predict"):
        assert predict.main(argv(data, data["dir"] / "counts.csv", "--print-summary")) == 0
    expected = data["expected"]
    forwarded = expected["images"] - expected["answered"] - expected["repeats"]
    line = (f"forwarded {forwarded} of {expected['images']} images ({expected['answered']} answered by the MD5 "
            f"dictionary, {expected['repeats']} repeats)")
    assert line in caplog.text
    assert line in capsys.readouterr().out


def test_shards_skip_what_they_can_and_give_the_same_categories(data):
    whole = data["dir"] / "whole.csv"
    assert predict.main(argv(data, whole, "--forward-all")) == 0
    rows = {}
    for shard in ("0/2", "1/2"):
        output = data["dir"] / f"shard{shard[0]}.csv"
        result = predict.run(predict.build_parser().parse_args(argv(data, output, "--shard", shard)))
        assert result.predictor.images_forwarded < result.predictor.images
        ids = result.index.products["product_id"][result.start:result.stop]
        rows.update(zip(ids.tolist(), result.categories.category_ids[result.predictor.class_ids[0]].tolist()))
    ids, categories = read_submission(str(whole))
    assert [rows[i] for i in ids.tolist()] == categories.tolist()


# ---- the plan and the repeated pictures' rows, without processes -------------------------------
def test_the_spill_bound_admits_repeats_while_they_fit():
    # a: positions 0 and 2; b: 1 and 3 (overlapping a); c: 4 and 5 (after a's last use)
    digests = np.array([b"a", b"b", b"a", b"b", b"c", b"c"], dtype="S16")
    plan = build_plan(digests, np.array([0]), np.zeros(6, bool), False, capacity=1)
    assert plan.forward.tolist() == [True, True, False, True, True, False]
    assert plan.group.tolist() == [0, -1, 0, -1, 1, 1] and plan.uses.tolist() == [1, 1]
    assert (plan.num_repeated, plan.peak_rows, plan.peak_rows_needed) == (3, 1, 2)
    assert admitted_groups(np.array([0, 1]), np.array([2, 3]), 2).all()
    # no bound: every repeated picture is forwarded once, its group numbered in order of first occurrence
    unbounded = build_plan(digests, np.array([0]), np.zeros(6, bool), False)
    assert unbounded.forward.tolist() == [True, True, False, False, True, False]
    assert unbounded.group.tolist() == [0, 1, 0, 1, 2, 2] and unbounded.peak_rows == 2
    # answered pictures are not forwarded, unless the probability store needs them
    answered = np.array([True, False, True, False, False, False])
    assert build_plan(digests, np.array([0]), answered, False, 9).forward.tolist() == [False, True, False,
                                                                                       False, True, False]
    assert build_plan(digests, np.array([0]), answered, True, 9).forward.tolist() == [True, True, False,
                                                                                      False, True, False]


def test_a_repeat_arriving_before_its_first_occurrence_waits_for_it():
    model = TableModel([[0.9, 0.1], [0.2, 0.8]])
    x, y = b"x" * 16, b"y" * 16
    # product 10: pictures x (class 1) and y (class 0); product 11 repeats both. The plan forwards
    # product 10's pictures only; product 11 arrives first (another worker was quicker).
    plan = build_plan(np.array([x, y, y, x], dtype="S16"), np.array([0, 2]), np.zeros(4, bool), False, 9)
    variants = make_variants(1, [1])
    predictor = Predictor([model], 4, 2, variants, 10, 2, plan=plan)
    predictor.add(prepared(11, [], digests=[y, x], valid=[False, False]))
    assert predictor.completed == 0 and len(predictor.waiting) == 2
    predictor.add(prepared(10, [1, 0], digests=[x, y]))
    predictor.flush()
    assert predictor.completed == 2 and predictor.live_repeats == 0 and not predictor.waiting
    assert predictor.images_forwarded == 2 and predictor.images_reused == 2
    # product 11's pictures are product 10's: the same scores; m1 (sum) ties -> class 0, m0 (0.18 vs 0.08) -> 0
    assert predictor.class_ids[:, 0].tolist() == predictor.class_ids[:, 1].tolist()
