"""benchmarks.bench_predict_scale's generator (counts, pictures per product, answered and repeated shares, byte
copies of the training pictures), its log parsing and its extrapolation formulas, at tiny scales."""
import json

import numpy as np
import pytest

from benchmarks import bench_predict_scale as bench
from benchmarks.bench_scale import picture_counts, write_scale_bson
from benchmarks.kaggle_counts import (ANSWERED_SHARE, KAGGLE_PICTURE_COUNTS, KAGGLE_PRODUCTS, KAGGLE_TEST_PICTURES,
                                      KAGGLE_TEST_PRODUCTS, REPEAT_SHARE, kaggle_test_picture_counts)
from data.bson_index import BsonIndex
from data.md5_dict import digests_in_file_order


def test_the_test_counts_are_kaggles_totals_in_the_training_proportions():
    counts = kaggle_test_picture_counts()
    assert sum(counts.values()) == KAGGLE_TEST_PRODUCTS
    assert sum(k * n for k, n in counts.items()) == KAGGLE_TEST_PICTURES
    for k, n in counts.items():  # the products moved to reach the picture total are a small correction
        assert n / KAGGLE_TEST_PRODUCTS == pytest.approx(KAGGLE_PICTURE_COUNTS[k] / KAGGLE_PRODUCTS, abs=1e-3)


def test_picture_kinds_have_the_stated_shares_and_repeats_point_back_far():
    numbers, kinds = bench.test_picture_numbers(200_000, train_pictures=50_000, seed=3)
    assert (kinds == bench.ANSWERED).mean() == pytest.approx(ANSWERED_SHARE, abs=0.005)
    assert (kinds == bench.REPEAT).mean() == pytest.approx(REPEAT_SHARE, abs=0.005)
    answered, new = numbers[kinds == bench.ANSWERED], numbers[kinds == bench.NEW]
    assert answered.max() < 50_000  # a training picture's number: the same bytes
    assert new.min() >= bench.FIRST_NEW_NUMBER and len(np.unique(new)) == len(new)
    first_new = {int(n): i for i, n in zip(np.flatnonzero(kinds == bench.NEW), new)}
    repeats = np.flatnonzero(kinds == bench.REPEAT)
    sources = np.array([first_new[int(numbers[i])] for i in repeats])  # KeyError: a repeat of nothing
    assert (sources < repeats).all()
    # uniform over the earlier new pictures: half the repeats are farther than about a quarter of the file
    assert np.median(repeats - sources) > 200_000 / 8


def test_generated_test_bson_copies_training_pictures_and_has_no_category(tmp_path):
    train, test = str(tmp_path / "train.bson"), str(tmp_path / "test.bson")
    counts = picture_counts(0.0005, 0)
    train_pictures = write_scale_bson(train, counts, [1000, 1001], 770, 0)
    bench.generate_test(test, 0.0005, 770, train_pictures, seed=0)
    described = json.load(open(test + ".json"))
    index = BsonIndex.open(test)
    assert not index.has_labels
    scaled = [round(n * 0.0005) for n in kaggle_test_picture_counts().values()]
    assert len(index) == described["products"] == sum(scaled)
    by_count = np.bincount(index.products["num_imgs"], minlength=5)[1:]
    assert by_count.tolist() == [described["products_by_pictures"][str(k)] for k in (1, 2, 3, 4)] == scaled
    test_digests = digests_in_file_order(index)
    train_digests = set(digests_in_file_order(BsonIndex.open(train)).tolist())
    known = np.array([d in train_digests for d in test_digests.tolist()])
    assert known.sum() == described["answered"]
    assert len(np.unique(test_digests)) == described["unique_pictures"]
    assert len(np.unique(test_digests[~known])) == described["unique_unanswered"]
    assert described["repeats"] == described["pictures"] - described["answered"] - described["new"]


LOG = ("md5 of the run's pictures:  50%|#    | 500/1000 [00:01<00:01, 500.00img/s]\r"
       "md5 of the run's pictures: 100%|#####| 1000/1000 [00:02<00:00, 400.00img/s]\n"
       "WARNING 90 of 100 repeated pictures do not fit --reuse-cache-mb: forwarded each time\n"
       "INFO predicted 600 products, 1000 images (424 overridden by MD5, 0 products without a usable picture) "
       "with 2 models x 2 views in 50.0 s: 20.0 images/s, forward 40% of the time\n"
       "INFO forwarded 950 of 1000 images (424 answered by the MD5 dictionary, 50 repeats); --save-probs ...\n")


def test_the_predict_log_figures():
    found = bench.parse_predict_log(LOG)
    assert found["hash_s"] == pytest.approx(2.5)  # 1000 pictures at 400 img/s, finer than the clock's 00:02
    assert (found["run_s"], found["forward_share"], found["forwarded"], found["reused"]) == (50.0, 0.4, 950, 50)
    assert (found["repeated_groups"], found["groups_not_cached"]) == (100, 90)
    with pytest.raises(SystemExit):
        bench.parse_predict_log("nothing logged")
    # the repeats' means on disk (after b91d087): every repeated picture fits, its peak is logged
    spilled = bench.parse_predict_log(LOG.replace("WARNING 90 of 100 repeated pictures do not fit --reuse-cache-mb: "
                                                  "forwarded each time", "INFO 100 pictures repeated: at most 7 live "
                                                  "at once, 1.2 MB of 4.0 GB on disk in /tmp"))
    assert (spilled["repeated_groups"], spilled["groups_not_cached"], spilled["spill_peak_rows"]) == (100, 0, 7)


def figures(scale, anon, file_backed, store_bytes):
    process = {"name": "predictor (predict.predict)", "peak_rss": anon + file_backed, "peak_anon": anon,
               "peak_file": file_backed}
    reader = {"name": "reader", "peak_rss": 50e6, "peak_anon": 30e6, "peak_file": 20e6}
    return {"scale": scale, "models": 2, "reuse_cache_mb": 10, "hash_s": 10.0, "run_s": 110.0, "pictures": 1000,
            "forwarded": 900, "store_bytes": store_bytes, "forward_views_per_s": [100.0, 100.0],
            "test_set": {"unique_pictures": 800}, "processes": [process, reader],
            "ensemble": {"wall_s": 4.0, "peak_rss": 200e6, "peak_anon": 150e6, "peak_file": 50e6}}


def test_extrapolation_to_full_counts_and_14_models():
    large = figures(0.5, anon=400e6, file_backed=300e6, store_bytes=1e9)
    rows = {name: (measured, full, target)
            for name, measured, full, target, _ in bench.extrapolation_rows(large)}
    assert rows["forward passes per model (pictures x views)"] == (1800, 3600, 3600)
    assert rows["forward passes, all models"][2] == 3600 * 14
    assert rows["store (GB)"][1:] == pytest.approx((2.0, 14.0))
    assert rows["predictor, first product to last (s)"][1:] == pytest.approx((220.0, (10 + 100 * 7) / 0.5))
    assert rows["reader peak RSS (GB)"] == pytest.approx((0.05, 0.05, 0.05))
    assert rows["predict.ensemble peak RSS (GB)"][2] == pytest.approx((150e6 + 50e6 * 7) / 1e9)
    # one scale: memory is not extrapolated in counts; 14 models add the cache's budget and 7x the store's maps
    cache = 10 * 2 ** 20
    assert rows["predictor (predict.predict) peak RSS (GB)"][2] == pytest.approx(
        (400e6 + (2 ** 30 - cache) + 300e6 * 7) / 1e9)
    # two scales: linear in the pictures through both runs (base 100 MB + 600 MB per whole file)
    small = figures(0.1, anon=100e6 + 60e6, file_backed=60e6, store_bytes=0.2e9)
    large = figures(0.5, anon=100e6 + 300e6, file_backed=300e6, store_bytes=1e9)
    rows = {name: (measured, full, target)
            for name, measured, full, target, _ in bench.extrapolation_rows(large, small)}
    assert rows["predictor (predict.predict) peak RSS (GB)"][1] == pytest.approx(1.3)
    assert rows["predictor (predict.predict) peak RSS (GB)"][2] == pytest.approx(
        (700e6 + (2 ** 30 - cache / 0.5) + 600e6 * 7) / 1e9)


def test_the_cache_holds_what_the_default_holds_at_14_models():
    assert bench.cache_entries(bench.DEFAULT_CACHE_MB, 14, 5270) == 3638  # the "about 3,600"
    mb = bench.cache_mb(1.0, 2)
    assert bench.cache_entries(mb, 2, 5270) == pytest.approx(3638, rel=0.01)
    assert bench.cache_mb(0.5, 2) == round(mb / 2)


def test_with_the_repeats_on_disk_the_predictors_memory_does_not_grow_with_models():
    """That code also remaps the store's files (prob_store.REMAP_BYTES): neither part grows with the models."""
    large = dict(figures(0.5, anon=400e6, file_backed=300e6, store_bytes=1e9), reuse_cache_mb=None)
    rows = {name: target for name, _, _, target, _ in bench.extrapolation_rows(large)}
    assert rows["predictor (predict.predict): anonymous (GB)"] == pytest.approx(0.4)
    assert rows["predictor (predict.predict) peak RSS (GB)"] == pytest.approx((400e6 + 300e6) / 1e9)
    assert rows["store (GB)"] == pytest.approx(1e9 / 0.5 * 7 / 1e9)  # the store itself still grows as M/m


def test_the_repeated_pictures_file_grows_with_the_pictures_and_the_models():
    large = dict(figures(0.5, anon=400e6, file_backed=300e6, store_bytes=1e9), reuse_cache_mb=None,
                 spill_peak_rows=1000, classes=5270)
    rows = {name: (measured, full, target) for name, measured, full, target, _ in bench.extrapolation_rows(large)}
    row_bytes = 4 * 5270  # one model's float32 means
    assert rows["repeated pictures' file at its peak, on disk (GB)"] == pytest.approx(
        (1000 * row_bytes * 2 / 1e9, 2000 * row_bytes * 2 / 1e9, 2000 * row_bytes * 14 / 1e9))
    in_memory = dict(large, reuse_cache_mb=10)  # the cache's code had no such file
    assert not any(name.startswith("repeated pictures' file") for name, *_ in bench.extrapolation_rows(in_memory))


def test_the_outputs_of_both_runs_are_compared_product_by_product(tmp_path):
    for prefix, categories in (("predict", [5, 6, 7]), ("ensemble", [5, 9, 7])):
        for tag in ("", ".e1.m1"):
            (tmp_path / f"{prefix}{tag}.csv").write_text(
                "_id,category_id\n" + "".join(f"{i},{c}\n" for i, c in enumerate(categories)))
    (tmp_path / "ensemble.e1.m1.csv").write_text("_id,category_id\n0,5\n1,6\n2,7\n")
    assert bench.output_agreement(str(tmp_path)) == {"main (all models, m0)": [2, 3], "e1.m1": [3, 3]}
    (tmp_path / "ensemble.csv").write_text("_id,category_id\n0,5\n2,7\n1,6\n")
    with pytest.raises(ValueError, match="other products"):
        bench.output_agreement(str(tmp_path))


def test_the_throughput_is_judged_against_the_networks_at_the_runs_engine_threads():
    """The reference runs MXNet as the run did (predict.engine's CPU operator threads); the rate at MXNet's
    default, one at a time (the earlier runs' reference), is reported beside it, not judged."""
    run = dict(figures(0.5, anon=400e6, file_backed=300e6, store_bytes=1e9), groups_not_cached=0, reused=100,
               repeated_groups=100, forward_share=0.4, forward_samples=6, engine_threads=2,
               forward_together_views_per_s=40.0, forward_together_default_views_per_s=20.0)
    ensemble = {"name": "x", "cpu_s": 1.0}
    run["ensemble"].update(ensemble)
    for process in run["processes"]:
        process.update(wall_s=100.0, cpu_s=10.0)
    table = bench.process_table(run)
    # 900 pictures x 2 views made: 45 s of forward at 40 views/s, 90 s at 20; the run took 110 s
    assert "running 2 CPU operators at once as the run did): 40 views/s" in table
    assert "end to end / forward = 0.41 of the passes made" in table
    assert "forward 20 views/s (with 2: 2.00x as many): end to end is 0.82 of that rate" in table
    assert "0.41 of the passes made (FAIL)" in bench.extrapolation_table(run)


def test_the_predictors_main_thread_against_the_original_gpus(monkeypatch):
    """Its CPU per picture, scaled to 14 models, set beside the 14 models' passes per picture on 8 GPUs."""
    run = figures(0.5, anon=400e6, file_backed=300e6, store_bytes=1e9)
    assert bench.main_thread_budget(run) is None  # runs before the main thread was measured
    run["processes"][0]["main_cpu_s"] = 2.0  # 2 ms per picture at 2 models: 14 ms at 14
    monkeypatch.setattr(bench, "gpu_rows", lambda large: (1000 / 0.5 * 0.02 / 3600, 0.0))  # 20 ms a picture
    gpu_ms, main_ms = bench.main_thread_budget(run)
    assert (gpu_ms, main_ms) == pytest.approx((20.0, 14.0))
    assert "the pipeline keeps up with the GPUs" in bench.extrapolation_table(run)
    run["processes"][0]["main_cpu_s"] = 4.0
    assert "would be slower than the GPUs" in bench.extrapolation_table(run)
