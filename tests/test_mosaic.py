"""Product mosaics (not the original's: bestfitting's multi-image models): data/mosaic.py's layout and per-tile flip,
data.bson2rec --mosaic's records and X.rec.json, training on them (PREFIX-input.json's layout), and prediction of a
mosaic network alone, beside a network of pictures, through the MD5 plan's skips and repeats, and from the store."""
import json
import os
import shutil

import cv2
import numpy as np
import pytest

from cli.runner import UserError
from data import bson2rec, bson_md5_dict
from data.mosaic import BLANK_VALUE, MosaicLayout, build_mosaic, encode_jpeg, flip_tiles, tile_sources
from data.recordio import read_rec_info
from predict import ensemble, predict
from predict.prob_store import Store
from predict.preprocess import decode_rgb, mosaic_views, product_views
from predict.probability import PRODUCT_REDUCTIONS, product_scores
from predict.submission import read_submission
from tests.flat_models import SIZE, picture, random_models
from tests.helpers import colour_products, product, read_records, run, write_bson, write_category_csv
from tests.predict_helpers import scored_run
from tests.train_helpers import dry_run
from train import train_model
from train.checkpoint import InputSettings, input_settings_path, read_input_settings, write_input_settings

COLOURS = np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200], [220, 220, 40]], dtype=np.uint8)


def solid(colour, size=8):
    return np.broadcast_to(np.asarray(colour, np.uint8), (size, size, 3)).copy()


def tile_colours(mosaic):
    """The mean colour of each tile, row-major."""
    half = mosaic.shape[0] // 2
    return [mosaic[r * half:(r + 1) * half, c * half:(c + 1) * half].reshape(-1, 3).mean(axis=0)
            for r in range(2) for c in range(2)]


# ---- the layout ----------------------------------------------------------------------------------

@pytest.mark.parametrize("count, repeat, blank", [
    (1, [0, 0, 0, 0], [0, None, None, None]),
    (2, [0, 1, 0, 1], [0, 1, None, None]),
    (3, [0, 1, 2, 0], [0, 1, 2, None]),
    (4, [0, 1, 2, 3], [0, 1, 2, 3]),
    (6, [0, 1, 2, 3], [0, 1, 2, 3]),  # beyond 4: the first 4
])
def test_each_tile_holds_the_picture_of_the_fill_rule(count, repeat, blank):
    assert tile_sources(count, "repeat") == repeat
    assert tile_sources(count, "blank") == blank
    for fill, sources in (("repeat", repeat), ("blank", blank)):
        mosaic = build_mosaic([solid(c) for c in COLOURS[:count]], MosaicLayout(16, fill))
        expected = [COLOURS[s] if s is not None else [BLANK_VALUE] * 3 for s in sources]
        np.testing.assert_array_equal(tile_colours(mosaic), expected, err_msg=f"{count} pictures, {fill}")


def test_pictures_of_other_sizes_are_resized_to_the_tile():
    mosaic = build_mosaic([solid(COLOURS[0], 30), solid(COLOURS[1], 5)], MosaicLayout(20, "blank"))
    assert mosaic.shape == (20, 20, 3)
    np.testing.assert_array_equal(tile_colours(mosaic), [COLOURS[0], COLOURS[1], [255] * 3, [255] * 3])


def test_a_bad_layout_is_refused():
    for size, fill in ((361, "repeat"), (360, "mirror")):
        with pytest.raises(ValueError):
            MosaicLayout(size, fill)


def test_the_flip_mirrors_each_tile_in_place_not_the_whole_mosaic():
    rng = np.random.default_rng(0)
    tiles = [rng.integers(0, 256, (4, 4, 3), dtype=np.uint8) for _ in range(4)]
    mosaic = build_mosaic(tiles, MosaicLayout(8))
    flipped = flip_tiles(mosaic)
    np.testing.assert_array_equal(flipped, build_mosaic([t[:, ::-1] for t in tiles], MosaicLayout(8)))
    assert not np.array_equal(flipped, mosaic[:, ::-1])  # the whole flip swaps the tiles
    np.testing.assert_array_equal(flip_tiles(mosaic, axis=0), build_mosaic([t[::-1] for t in tiles], MosaicLayout(8)))


def jpeg_of(rgb):
    return cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].tobytes()


def test_the_flip_views_of_prediction_mirror_each_tile():
    rng = np.random.default_rng(1)
    jpegs = [jpeg_of(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)) for _ in range(4)]
    views, decoded = mosaic_views(jpegs + [b"not a picture"], MosaicLayout(32), 32, 32, multi_view=2)
    assert decoded == [True] * 4 + [False] and views.shape == (3, 3, 32, 32)
    original, hflip, vflip = (view.transpose(1, 2, 0) for view in views)
    np.testing.assert_array_equal(hflip, flip_tiles(original))
    np.testing.assert_array_equal(vflip, flip_tiles(original, axis=0))
    assert np.abs(hflip.astype(int) - original[:, ::-1]).mean() > 20  # not the whole mosaic's flip
    # the top-left tile is the first picture, mirrored (through the JPEGs)
    first = decode_rgb(jpegs[0])
    assert np.abs(hflip[:16, :16].astype(int) - first[:, ::-1]).mean() < 12
    assert np.abs(hflip[:16, :16].astype(int) - first).mean() > 30


# ---- the records -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def colour_bson(tmp_path_factory):
    """Products of 1-4 solid-colour pictures (their class: the first picture's colour), one of them undecodable
    in a product, and a product of no decodable picture."""
    folder = tmp_path_factory.mktemp("mosaic_records")
    docs = []
    for n in range(12):
        count = 1 + n % 4
        pictures = [jpeg_of(solid(COLOURS[(n + k) % 4], 32)) for k in range(count)]
        docs.append(product(n, pictures, 1000 + n % 4))
    docs.append(product(20, [jpeg_of(solid(COLOURS[1], 32)), b"\xff\xd8 broken \xff\xd9"], 1001))
    docs.append(product(21, [b"\xff\xd8 broken \xff\xd9"], 1002))
    csv_path = write_category_csv(folder / "categories.csv", [1000 + c for c in range(4)])
    return {"bson": write_bson(folder / "train.bson", docs), "csv": csv_path, "docs": docs, "dir": folder}


def to_mosaics(colour_bson, name, *extra):
    rec = str(colour_bson["dir"] / f"{name}.rec")
    assert bson2rec.main(["--bson", colour_bson["bson"], "--out-rec", rec, "--category-csv", colour_bson["csv"],
                          "--mosaic", "--force", *extra]) == 0
    return rec


@pytest.mark.parametrize("fill", ["repeat", "blank"])
def test_bson2rec_writes_one_mosaic_per_product_with_its_layout(colour_bson, fill):
    rec = to_mosaics(colour_bson, f"mosaics_{fill}", "--mosaic-size", "64", "--mosaic-fill", fill, "--no-shuffle")
    records = read_records(rec)
    assert [int(header.id) for header, _ in records] == list(range(12)) + [20]  # product 21: nothing decodes
    for (header, jpeg), doc in zip(records[:12], colour_bson["docs"]):
        count = len(doc["imgs"])
        assert (header.label, header.id2) == (doc["_id"] % 4, count)
        mosaic = decode_rgb(jpeg)
        assert mosaic.shape == (64, 64, 3)
        expected = [COLOURS[(doc["_id"] + s) % 4] if s is not None else [255] * 3 for s in tile_sources(count, fill)]
        np.testing.assert_allclose(tile_colours(mosaic), expected, atol=6)
    assert (records[-1][0].label, records[-1][0].id2) == (1, 1)  # the broken picture left out of its mosaic
    info = read_rec_info(rec)
    assert (info.records, info.mosaic_size, info.mosaic_fill, info.label_kind, info.num_classes) == \
        (13, 64, fill, "class_id", 4)
    with open(rec + ".json") as fh:
        assert '"mosaic_size": 64' in fh.read()


def test_a_picture_rec_json_is_unchanged(colour_bson):
    rec = str(colour_bson["dir"] / "pictures.rec")
    assert bson2rec.main(["--bson", colour_bson["bson"], "--out-rec", rec, "--category-csv", colour_bson["csv"],
                          "--skip-corrupt", "--force"]) == 0
    with open(rec + ".json") as fh:
        assert not [key for key in json.load(fh) if key.startswith("mosaic")]
    assert read_rec_info(rec).mosaic_layout is None


@pytest.mark.parametrize("fields, reason", [
    ({"mosaic_size": 64}, "mosaic_size and mosaic_fill go together"),
    ({"mosaic_size": 64, "mosaic_fill": "mirror"}, "mosaic fill 'mirror': expected one of repeat, blank"),
])
def test_a_rec_json_of_a_broken_layout_is_refused_in_one_line(colour_bson, fields, reason):
    rec = to_mosaics(colour_bson, "broken_layout")
    with open(rec + ".json") as fh:
        record = {k: v for k, v in json.load(fh).items() if not k.startswith("mosaic")}
    with open(rec + ".json", "w") as fh:
        json.dump({**record, **fields}, fh)
    refused_in_one_line(f"broken_layout.rec.json: not the label description data.bson2rec writes ({reason})",
                        read_rec_info, rec)


@pytest.mark.parametrize("flags, message", [
    (["--mosaic", "--level-labels"], "--mosaic with --level-labels"),
    (["--mosaic", "--unique-md5"], "--mosaic with --unique-md5: that selection keeps or drops single pictures"),
    (["--mosaic", "--under-sampling", "2"], "--mosaic with --under-sampling"),
    (["--mosaic-fill", "blank"], "--mosaic-fill: only with --mosaic"),
    (["--mosaic", "--mosaic-size", "99"], "--mosaic-size 99: mosaic size 99: expected an even number of pixels"),
])
def test_bad_mosaic_flags_are_refused_in_one_line(colour_bson, flags, message):
    out = str(colour_bson["dir"] / "refused.rec")
    refused_in_one_line(message, bson2rec.main, ["--bson", colour_bson["bson"], "--out-rec", out, "--category-csv",
                                                 colour_bson["csv"], *flags])
    assert not os.path.exists(out)


def refused_in_one_line(message, main, argv):
    """main(argv) raises the UserError run_cli prints as one line, holding `message`."""
    with pytest.raises(UserError) as refusal:
        main(argv)
    assert message in str(refusal.value) and "\n" not in str(refusal.value), str(refusal.value)


def test_prediction_builds_the_pixels_of_the_training_record(colour_bson):
    """The pixel contract: a mosaic network sees at prediction what ImageRecordIter fed it in training."""
    rec = to_mosaics(colour_bson, "contract", "--mosaic-size", "64", "--no-shuffle")
    args = train_model.build_parser().parse_args(["--data-train", rec, "--data-val", rec, "--image-shape", "3,64,64",
                                                  "--batch-size", "4", "--data-nthreads", "1"])
    from train.data import get_iterators
    _, val = get_iterators(args)
    trained = np.concatenate([b.data[0].asnumpy()[:b.data[0].shape[0] - b.pad] for b in val])
    for n, doc in enumerate(colour_bson["docs"][:12]):
        views, _ = mosaic_views([bytes(i["picture"]) for i in doc["imgs"]], MosaicLayout(64), 64, 64, multi_view=0)
        assert np.abs(views[0].astype(np.float32) - trained[n]).max() <= 1, doc["_id"]


def test_create_dataset_a_mosaic_writes_dataset_a_products_as_mosaics(demo_dir, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    result = run("data/create_dataset_A_mosaic.sh", DATA_DIR=data_dir, expect=2)
    assert "train_train.bson not found: run data/create_dataset_A.sh first" in result.stderr
    for name in ("train.bson", "category_names.csv"):
        shutil.copy2(demo_dir / name, data_dir / name)
    run("data/create_dataset_A.sh", DATA_DIR=data_dir, expect=0)
    run("data/create_dataset_A_mosaic.sh", DATA_DIR=data_dir, MOSAIC_SIZE="96", MOSAIC_FILL="blank", expect=0)
    for part in ("train", "valid"):
        pictures = read_records(str(data_dir / "dataset_A" / f"{part}.rec"))
        mosaics = read_records(str(data_dir / "dataset_A_mosaic" / f"{part}.rec"))
        per_product = {}
        for header, _ in pictures:
            per_product.setdefault(int(header.id), []).append(header.label)
        assert sorted(int(h.id) for h, _ in mosaics) == sorted(per_product)  # each product once
        assert all(h.label == per_product[int(h.id)][0] and h.id2 == len(per_product[int(h.id)]) for h, _ in mosaics)
        assert decode_rgb(mosaics[0][1]).shape == (96, 96, 3)
        info = read_rec_info(str(data_dir / "dataset_A_mosaic" / f"{part}.rec"))
        assert (info.mosaic_size, info.mosaic_fill, info.shuffled) == (96, "blank", True)


# ---- training --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mosaic_training(tmp_path_factory, tiny_symbol):
    """A tiny network trained 2 epochs on mosaics of 32x32 colour products of 1-3 pictures."""
    folder = tmp_path_factory.mktemp("mosaic_training")
    docs = [product(d["_id"], [bytes(d["imgs"][0]["picture"])] * (1 + d["_id"] % 3), d["category_id"])
            for d in colour_products(4, 16, seed=2)]
    csv_path = write_category_csv(folder / "category_names.csv", [1000000000 + c for c in range(4)])
    bson_path = write_bson(folder / "train.bson", docs)
    recs = {}
    for name, extra in (("mosaic", ["--mosaic", "--mosaic-size", "32"]), ("pictures", [])):
        recs[name] = str(folder / f"{name}.rec")
        assert bson2rec.main(["--bson", bson_path, "--out-rec", recs[name], "--category-csv", csv_path, *extra]) == 0
    prefix = str(folder / "model" / "mos")
    argv = training_argv(recs["mosaic"], recs["mosaic"], prefix, tiny_symbol)
    assert train_model.main(argv) == 0
    return {"recs": recs, "prefix": prefix, "bson": bson_path, "csv": csv_path, "symbol": tiny_symbol, "dir": folder}


def training_argv(train, val, prefix, symbol, *extra):
    return ["--symbol", symbol, "--feature-layer", "flatten0", "--data-train", train, "--data-val", val,
            "--image-shape", "3,32,32", "--batch-size", "8", "--num-epochs", "2", "--lr", "0.01",
            "--model-prefix", prefix, "--disp-batches", "100", "--data-nthreads", "1", "--top-k", "0", *extra]


def test_training_on_mosaics_records_their_layout_for_prediction(mosaic_training, tmp_path):
    settings = read_input_settings(input_settings_path(mosaic_training["prefix"]))
    assert (settings.mosaic_size, settings.mosaic_fill, settings.image_shape) == (32, "repeat", (3, 32, 32))
    # predicted from its checkpoint alone: the layout comes from PREFIX-input.json
    output = tmp_path / "out.csv"
    assert predict.main(["--bson", mosaic_training["bson"], "--csv", mosaic_training["csv"],
                         "--symbol", mosaic_training["prefix"] + "-symbol.json",
                         "--params", mosaic_training["prefix"] + "-0002.params", "--num-procs", "1",
                         "--batch-size", "8", "--output", str(output)]) == 0
    ids, _ = read_submission(str(output))
    assert len(ids) == 64


@pytest.mark.parametrize("case, message", [
    ("val_pictures", "each record is a picture, but the training .rec"),
    ("crop", "--image-shape 3,16,16 with --resize 0 would crop tiles"),
    ("resume_pictures", "its checkpoints were trained on product mosaics 32,repeat, this run's"),
])
def test_mismatched_inputs_are_refused_in_one_line(mosaic_training, tmp_path, case, message):
    recs, symbol = mosaic_training["recs"], mosaic_training["symbol"]
    if case == "val_pictures":
        argv = training_argv(recs["mosaic"], recs["pictures"], str(tmp_path / "m"), symbol)
    elif case == "crop":
        argv = training_argv(recs["mosaic"], recs["mosaic"], str(tmp_path / "m"), symbol)
        argv[argv.index("3,32,32")] = "3,16,16"
    else:
        argv = training_argv(recs["pictures"], recs["pictures"], mosaic_training["prefix"], symbol,
                             "--load-epoch", "2")
        argv[argv.index("--num-epochs") + 1] = "3"
    refused_in_one_line(message, train_model.main, argv)


# ---- prediction --------------------------------------------------------------------------------------

LAYOUT = MosaicLayout(SIZE, "repeat")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """40 test products of 1-4 pictures, some known to the dictionary, some repeated within and across products; a
    network of pictures (P) and one of product mosaics (M) at SIZE x SIZE, flat so that numpy recomputes them."""
    tmp = tmp_path_factory.mktemp("mosaic_predict")
    rng = np.random.default_rng(5)
    categories = [1000 + c for c in range(6)]
    known = [picture(rng) for _ in range(4)]
    shared = [picture(rng) for _ in range(4)]
    train = [product(i, [p], categories[i]) for i, p in enumerate(known)]
    docs = []
    for n in range(40):
        pictures = [known[int(rng.integers(4))] if rng.random() < 0.25 else
                    shared[int(rng.integers(4))] if rng.random() < 0.4 else picture(rng) for _ in range(1 + n % 4)]
        if n % 9 == 0:
            pictures.append(pictures[0])
        docs.append(product(300 + n, pictures, categories[int(rng.integers(6))]))
    paths = {"test": write_bson(tmp / "test.bson", docs), "csv": write_category_csv(tmp / "categories.csv", categories),
             "dict": str(tmp / "md5.npz"), "dir": tmp, "docs": docs}
    assert bson_md5_dict.main(["--bson", write_bson(tmp / "train.bson", train), "--out", paths["dict"]]) == 0
    (p_weight, p_bias, *p_files), (m_weight, m_bias, *m_files) = random_models(tmp, 6, seed=8)[:2]
    write_input_settings(input_settings_path(m_files[0][:-len("-symbol.json")]),
                         InputSettings(image_shape=(3, SIZE, SIZE), num_classes=6, mosaic_size=SIZE,
                                       mosaic_fill="repeat"))
    paths["P"], paths["M"] = p_files, m_files
    paths["M_weights"] = (m_weight, m_bias)
    return paths


def predict_argv(runs, output, models, *extra, md5="none"):
    return ["--bson", runs["test"], "--csv", runs["csv"], "--symbol", *(runs[m][0] for m in models),
            "--params", *(runs[m][1] for m in models), "--data-shape", f"3,{SIZE},{SIZE}", "--batch-size", "5",
            "--num-procs", "2", "--multi-view", "1", "--ensembles", *map(str, range(1, len(models) + 1)),
            "--md5-dict", runs["dict"], "--md5-dict-type", md5, "--output", str(output), "--force", *extra]


def mosaic_probability(runs, doc):
    """The mosaic network's product probability, recomputed: the mean over its views (flip TTA) of the softmax."""
    weight, bias = runs["M_weights"]
    views, _ = mosaic_views([bytes(i["picture"]) for i in doc["imgs"]], LAYOUT, SIZE, SIZE, multi_view=1)
    logits = views.reshape(len(views), -1).astype(np.float64) @ weight.T + bias
    probs = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (probs / probs.sum(axis=1, keepdims=True)).mean(axis=0)


def outputs_of(path):
    path = str(path)
    return {tag: open(path.replace(".csv", tag + ".csv")).read()
            for tag in ("", ".e1.m0", ".e1.m1") + ((".e2.m0", ".e2.m1") if os.path.exists(
                path.replace(".csv", ".e2.m0.csv")) else ())}


def test_a_mosaic_model_alone_predicts_the_argmax_of_its_product_probability(runs):
    output = runs["dir"] / "alone.csv"
    assert predict.main(predict_argv(runs, output, ["M"], "--save-probs", str(runs["dir"] / "alone_probs"))) == 0
    expected = [1000 + int(np.argmax(mosaic_probability(runs, doc))) for doc in runs["docs"]]
    for tag in (".e1.m0", ".e1.m1"):  # its probability at every picture: m0 and m1 both give its argmax
        assert read_submission(str(output).replace(".csv", tag + ".csv"))[1].tolist() == expected
    store = Store(str(runs["dir"] / "alone_probs"))
    rows = store.model_rows(0, sum(len(doc["imgs"]) for doc in runs["docs"]))[0]
    at = 0
    for doc in runs["docs"]:
        for _ in doc["imgs"]:  # every picture holds its own product's mosaic probability
            np.testing.assert_allclose(rows[at], mosaic_probability(runs, doc), rtol=2e-3, atol=1e-6)
            at += 1


def test_beside_a_picture_model_its_outputs_are_unchanged_and_the_mosaic_counts_as_one_model(runs, monkeypatch):
    alone, pair = runs["dir"] / "p.csv", runs["dir"] / "pm.csv"
    assert predict.main(predict_argv(runs, alone, ["P"], "--save-probs", str(runs["dir"] / "p_probs"))) == 0
    assert predict.main(predict_argv(runs, pair, ["P", "M"], "--save-probs", str(runs["dir"] / "pm_probs"))) == 0
    _, scores = scored_run(monkeypatch, predict_argv(runs, runs["dir"] / "scored.csv", ["P", "M"]))
    by_tag = outputs_of(pair)
    assert outputs_of(alone)[".e1.m0"] == by_tag[".e1.m0"] and outputs_of(alone)[".e1.m1"] == by_tag[".e1.m1"]
    p_store, pm_store = Store(str(runs["dir"] / "p_probs")), Store(str(runs["dir"] / "pm_probs"))
    num_images = sum(len(doc["imgs"]) for doc in runs["docs"])
    np.testing.assert_array_equal(p_store.model_rows(0, num_images)[0], pm_store.model_rows(0, num_images)[0])
    # e2 per picture: (P(picture) + M(product)) / 2; m1 sums it over the pictures: the mosaic's mass equals P's
    p_rows = p_store.model_rows(0, num_images)[0]
    at = 0
    for row, doc in enumerate(runs["docs"]):
        count = len(doc["imgs"])
        pictures = (p_rows[at:at + count] + mosaic_probability(runs, doc)) / 2
        for reduction in PRODUCT_REDUCTIONS:
            np.testing.assert_allclose(scores[row][(2, reduction)], product_scores(pictures, reduction),
                                       rtol=5e-3, atol=1e-9)
        at += count


def test_the_md5_plan_skips_and_reuses_pictures_but_each_product_gets_its_own_mosaic(runs, monkeypatch):
    aware, aware_scores = scored_run(monkeypatch, predict_argv(runs, runs["dir"] / "aware.csv", ["P", "M"],
                                                               md5="unique"))
    every, every_scores = scored_run(monkeypatch, predict_argv(runs, runs["dir"] / "every.csv", ["P", "M"],
                                                               "--forward-all", md5="unique"))
    a = aware.predictor
    assert a.images_overridden >= 5 and a.images_reused >= 5  # the data exercises both
    assert a.images_forwarded < every.predictor.images_forwarded
    np.testing.assert_array_equal(a.class_ids, every.predictor.class_ids)
    for row, by_key in every_scores.items():
        for key, reference in by_key.items():
            np.testing.assert_allclose(aware_scores[row][key], reference, rtol=1e-5, atol=1e-9,
                                       err_msg=f"product {row}, {key}")
    assert a.live_repeats == 0 and not a.waiting and not a.mosaic_queue


def test_the_store_of_a_mixed_run_gives_the_same_outputs_through_predict_ensemble(runs):
    stored = runs["dir"] / "stored.csv"
    store = str(runs["dir"] / "mixed_probs")
    assert predict.main(predict_argv(runs, stored, ["P", "M"], "--save-probs", store, md5="unique")) == 0
    again = runs["dir"] / "from_store.csv"
    assert ensemble.main(["--probs", store, "--csv", runs["csv"], "--md5-dict", runs["dict"], "--md5-dict-type",
                          "unique", "--ensembles", "1", "2", "--output", str(again)]) == 0
    assert outputs_of(again) == outputs_of(stored)


@pytest.mark.parametrize("extra, message", [
    (["--multi-view", "3"], "--multi-view 3: model8_1-0001.params takes product mosaics"),
    (["--save-features"], "--save-features: model8_1-0001.params takes product mosaics"),
    (["--resize", "24"], "model8_1-0001.params's input: product mosaics of 12x12 resized to 24 would be cropped to "
                         "12x12, cutting tiles"),
])
def test_a_mosaic_model_refuses_what_would_cut_its_tiles_in_one_line(runs, extra, message):
    argv = predict_argv(runs, runs["dir"] / "refused.csv", ["M"], "--save-probs", str(runs["dir"] / "refused_probs"))
    refused_in_one_line(message, predict.main, argv + extra)


def test_the_workers_views_of_a_picture_model_are_unchanged():
    rng = np.random.default_rng(2)
    jpegs = [jpeg_of(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)) for _ in range(3)]
    views, valid = product_views(jpegs, SIZE, SIZE, 1)
    assert valid == [True] * 3 and views.shape == (6, 3, SIZE, SIZE)
    np.testing.assert_array_equal(views[1], views[0][:, :, ::-1])  # a picture's flip is the whole flip


def test_b03_is_m07s_recipe_on_mosaics(tmp_path):
    code, b03, output = dry_run("train/beyond/B03_mosaic.sh", tmp_path)
    assert code == 0, output
    code, m07, _ = dry_run("train/M07.sh", tmp_path)
    assert code == 0 and len(b03) == len(m07) == 1
    b03_flags, m07_flags = b03[0][1], m07[0][1]
    for part in ("train", "valid"):
        flag = "--data-train" if part == "train" else "--data-val"
        assert b03_flags.pop(flag) == f"{tmp_path}/data/dataset_A_mosaic/{part}.rec"
        assert m07_flags.pop(flag) == f"{tmp_path}/data/dataset_A/{part}.rec"
    assert (b03_flags.pop("--model-prefix"), m07_flags.pop("--model-prefix")) == \
        (f"{tmp_path}/models/B03/B03", f"{tmp_path}/models/M07/M07")
    assert (b03_flags.pop("--image-shape"), m07_flags.pop("--image-shape")) == ("3,360,360", "3,180,180")
    assert (b03_flags.pop("--batch-size"), m07_flags.pop("--batch-size")) == ("128", "512")
    assert b03_flags == m07_flags
    assert (f"# missing: {tmp_path}/data/dataset_A_mosaic/train.rec not found: run "
            "data/create_dataset_A_mosaic.sh first") in output


def test_encode_jpeg_is_deterministic():
    mosaic = build_mosaic([solid(c, 16) for c in COLOURS], MosaicLayout(32))
    assert encode_jpeg(mosaic) == encode_jpeg(mosaic.copy())
