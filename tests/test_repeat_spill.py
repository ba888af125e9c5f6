"""Repeated pictures are forwarded once at any distance: their image means wait in a file on disk.

The file's rows hold float32 means (and features) bit for bit, are reused once freed, and the file
never shows in its folder. A run whose repeats are far apart forwards each distinct picture once and
gives --forward-all's categories; a bound too small for them forwards the rest again, with a warning."""
import logging
import os

import numpy as np
import pytest

from cli.runner import UserError
from predict import predict
from predict.repeat_spill import RepeatSpill, row_bytes
from tests.flat_models import NUM_CATEGORIES, SIZE, picture, random_models
from tests.helpers import product, write_bson, write_category_csv

FIRST = 2000


def test_rows_hold_means_and_features_exactly_and_are_reused(tmp_path):
    spill = RepeatSpill(str(tmp_path), num_models=3, num_classes=5, num_views=2, feature_dims=[4, 7])
    assert spill.row_bytes == row_bytes(3, 5, 2, [4, 7]) == 4 * (15 + 2 * 11)
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(3):
        means = rng.random((3, 5), dtype=np.float32)
        features = [rng.random((2, 4), dtype=np.float32), rng.random((2, 7), dtype=np.float32)]
        rows.append((spill.store(means, features), means, features))
    assert [r[0] for r in rows] == [0, 1, 2] and spill.live == 3
    assert os.listdir(tmp_path) == []  # unlinked as soon as open: nothing to leave behind
    for row, means, features in rows:
        loaded_means, loaded_features = spill.load(row)
        assert loaded_means.tobytes() == means.tobytes()
        assert [f.tobytes() for f in loaded_features] == [f.tobytes() for f in features]
    spill.release(1)
    spill.release(0)
    assert spill.store(np.zeros((3, 5)), [np.zeros((2, 4)), np.zeros((2, 7))]) == 0  # the lowest free row
    assert spill.rows == 3 and os.fstat(spill.fd).st_size == spill.file_bytes == 3 * spill.row_bytes
    spill.close()


@pytest.fixture(scope="module")
def far_repeats(tmp_path_factory):
    """40 products; 12 pictures each shown at product i and again 20-39 products later, so that about a
    dozen repeated pictures are live at once; the rest occur once."""
    tmp = tmp_path_factory.mktemp("far_repeats")
    rng = np.random.default_rng(11)
    shared = [picture(rng) for _ in range(12)]
    products = [[picture(rng)] for _ in range(40)]
    for i, p in enumerate(shared):
        products[i].append(p)
        products[min(39, i + 20 + int(rng.integers(0, 8)))].append(p)
    categories = [FIRST + c for c in range(NUM_CATEGORIES)]
    docs = [product(700 + n, pictures, categories[n % NUM_CATEGORIES]) for n, pictures in enumerate(products)]
    return {"dir": tmp, "test": write_bson(tmp / "test.bson", docs),
            "csv": write_category_csv(tmp / "categories.csv", categories),
            "models": random_models(tmp, NUM_CATEGORIES, seed=12), "pictures": sum(map(len, products))}


def far_argv(data, output, *extra):
    models = data["models"]
    return ["--bson", data["test"], "--csv", data["csv"], "--symbol", *(m[2] for m in models),
            "--params", *(m[3] for m in models), "--data-shape", f"3,{SIZE},{SIZE}", "--batch-size", "4",
            "--num-procs", "2", "--multi-view", "1", "--ensembles", "1", "2", "--output", str(output),
            "--force", *extra]


def test_far_repeats_are_forwarded_once_and_change_no_category(far_repeats, caplog):
    data = far_repeats
    every = predict.run(predict.build_parser().parse_args(far_argv(data, data["dir"] / "all.csv", "--forward-all")))
    with caplog.at_level(logging.INFO, logger="predict.predict"):
        once = predict.run(predict.build_parser().parse_args(far_argv(data, data["dir"] / "once.csv")))
    assert once.predictor.images_forwarded == data["pictures"] - 12 and once.predictor.images_reused == 12
    assert every.predictor.images_forwarded == data["pictures"]
    np.testing.assert_array_equal(once.predictor.class_ids, every.predictor.class_ids)
    # far apart: many live at once (in file order; the rows used also depend on the order products arrive in)
    assert once.predictor.plan.peak_rows >= 8 and once.predictor.spill.rows >= 1
    assert "12 pictures repeated: at most" in caplog.text and "do not fit" not in caplog.text
    assert not [name for name in os.listdir(data["dir"]) if name.startswith(".repeat-spill")]


def test_a_bound_below_one_row_forwards_the_repeats_again(far_repeats, caplog):
    data = far_repeats
    every = predict.run(predict.build_parser().parse_args(far_argv(data, data["dir"] / "all2.csv", "--forward-all")))
    with caplog.at_level(logging.WARNING, logger="predict.predict"):
        bounded = predict.run(predict.build_parser().parse_args(
            far_argv(data, data["dir"] / "bounded.csv", "--repeat-spill-gb", "1e-9")))
    assert bounded.predictor.images_forwarded == data["pictures"] and bounded.predictor.images_reused == 0
    np.testing.assert_array_equal(bounded.predictor.class_ids, every.predictor.class_ids)
    assert "12 of 12 repeated pictures do not fit --repeat-spill-gb 1e-09" in caplog.text


@pytest.mark.parametrize("extra, message", [
    (["--reuse-cache-mb", "512"], "--reuse-cache-mb 512: the repeated pictures' means are now kept on disk"),
    (["--repeat-spill-dir", "/nonexistent/spill"], "--repeat-spill-dir /nonexistent/spill: no such folder"),
    (["--repeat-spill-gb", "0"], "--repeat-spill-gb 0.0: must be above 0"),
])
def test_spill_flags_are_checked_before_any_work(far_repeats, extra, message):
    with pytest.raises(UserError, match=message):
        predict.run(predict.build_parser().parse_args(far_argv(far_repeats, far_repeats["dir"] / "x.csv", *extra)))
