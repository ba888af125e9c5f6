"""Training and prediction feed a network the same pixels: a picture decoded and resized by MXNet's
ImageRecordIter as train.data builds it, and by predict.preprocess under the checkpoint's
PREFIX-input.json, is the same array within one grey level (OpenCV's cubic kernel differs by one
between MXNet's build and opencv-python; area, bilinear and the JPEG decoder agree exactly)."""
import os
import re

import cv2
import numpy as np
import pytest

from data import bson2rec
from data.make_demo_data import generate_demo_dataset
from predict.preprocess import Resize, decode_rgb, fit_to_input, product_views
from tests.helpers import REPO_ROOT, product, read_records, write_bson, write_category_csv
from tests.predict_helpers import predict_args
from train import train_model
from train.checkpoint import input_settings_path, read_input_settings, write_input_settings
from train.data import get_iterators, input_settings

DEMO_SCRIPTS = [os.path.join(REPO_ROOT, "train", "demo", name) for name in ("D01.sh", "D02.sh", "D03.sh")]


def script_settings(path):
    """(image shape, resize, inter_method) a model script's header sets."""
    with open(path) as fh:
        found = dict(re.findall(r"^(IMAGE_SHAPE|RESIZE|INTER_METHOD)=(\S+)", fh.read(), re.MULTILINE))
    return found["IMAGE_SHAPE"], int(found["RESIZE"]), int(found["INTER_METHOD"])


def to_rec(folder, bson_path, csv_path):
    """The BSON's pictures as data.bson2rec writes them, in file order; returns (.rec, JPEG of each record)."""
    rec = os.path.join(folder, os.path.basename(bson_path)[:-5] + ".rec")
    bson2rec.main(["--bson", bson_path, "--out-rec", rec, "--category-csv", csv_path, "--no-shuffle"])
    return rec, [payload for _, payload in read_records(rec)]


@pytest.fixture(scope="module")
def demo_pictures(tmp_path_factory):
    """Pictures of the demo dataset (180x180, as Kaggle's) in a .rec."""
    folder = str(tmp_path_factory.mktemp("demo_pixels"))
    generate_demo_dataset(folder, seed=3, progress=False, num_categories=4, num_train_products=12,
                          num_test_products=1)
    return to_rec(folder, os.path.join(folder, "train.bson"), os.path.join(folder, "category_names.csv"))


def textured(rng, height, width):
    """A picture with edges and noise, where interpolations differ."""
    coarse = rng.integers(0, 256, (height // 8 + 1, width // 8 + 1, 3)).astype(np.uint8)
    picture = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_NEAREST).astype(np.int64)
    return np.clip(picture + rng.integers(-30, 30, picture.shape), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def catalog_pictures(tmp_path_factory):
    """Pictures of other sizes and shapes, as a catalog of your own may hold (data.catalog_to_bson)."""
    folder = str(tmp_path_factory.mktemp("catalog_pixels"))
    rng = np.random.default_rng(0)
    sizes = [(160, 240), (260, 150), (181, 97), (64, 64), (50, 60), (300, 300)]
    docs = [product(n, [cv2.imencode(".jpg", textured(rng, h, w))[1].tobytes()], 1000 + n % 2)
            for n, (h, w) in enumerate(sizes)]
    csv_path = write_category_csv(os.path.join(folder, "categories.csv"), [1000, 1001])
    return to_rec(folder, write_bson(os.path.join(folder, "catalog.bson"), docs), csv_path)


def training_pixels(rec, image_shape, resize, inter_method):
    """Every record of `rec` as train.data's iterator feeds it (the validation one: no random crop nor
    flip, which training adds on top), and the settings its checkpoints record."""
    args = train_model.build_parser().parse_args(
        ["--data-train", rec, "--data-val", rec, "--image-shape", image_shape, "--resize", str(resize),
         "--inter-method", str(inter_method), "--batch-size", "4", "--data-nthreads", "1"])
    _, val = get_iterators(args)
    arrays = [batch.data[0].asnumpy()[:batch.data[0].shape[0] - batch.pad] for batch in val]
    return np.concatenate(arrays), input_settings(args)


def prediction_pixels(jpegs, settings, folder):
    """The pictures as prediction feeds a checkpoint with these settings: its PREFIX-input.json
    written and read back, each picture's first view (the worker's path, predict.preprocess)."""
    path = input_settings_path(os.path.join(folder, "model"))
    write_input_settings(path, settings)
    recorded = read_input_settings(path)
    resize = Resize.parse(str(Resize.of(recorded)))  # as the workers are told it
    _, height, width = recorded.image_shape
    return np.stack([product_views([jpeg], height, width, 0, resize)[0][0] for jpeg in jpegs]).astype(np.float32)


def grey_levels_apart(a, b):
    assert a.shape == b.shape
    return float(np.abs(a.astype(np.float32) - b.astype(np.float32)).max())


@pytest.mark.parametrize("script", DEMO_SCRIPTS, ids=os.path.basename)
def test_the_demos_checkpoints_see_the_pixels_they_were_trained_on(script, demo_pictures, catalog_pictures,
                                                                    tmp_path):
    image_shape, resize, inter_method = script_settings(script)
    assert resize and resize < 180  # the demo shrinks Kaggle-sized pictures: where the two paths used to differ
    for rec, jpegs in (demo_pictures, catalog_pictures):
        trained, settings = training_pixels(rec, image_shape, resize, inter_method)
        assert len(trained) == len(jpegs)
        predicted = prediction_pixels(jpegs, settings, str(tmp_path))
        assert grey_levels_apart(trained, predicted) <= 1.0, rec
    # the original predictor's --resize, a cubic squash, is not what these networks were trained on
    squashed = np.stack([fit_to_input(decode_rgb(jpeg), *trained.shape[2:], resize=resize).transpose(2, 0, 1)
                         for jpeg in demo_pictures[1]])
    assert grey_levels_apart(training_pixels(demo_pictures[0], image_shape, resize, inter_method)[0], squashed) > 8


@pytest.mark.parametrize("inter_method", [1, 2, 3, 9])
def test_each_interpolation_and_shape_is_honoured(inter_method, catalog_pictures, tmp_path):
    rec, jpegs = catalog_pictures
    for image_shape, resize in (("3,64,64", 64), ("3,64,64", 80), ("3,48,64", 72)):
        trained, settings = training_pixels(rec, image_shape, resize, inter_method)
        assert grey_levels_apart(trained, prediction_pixels(jpegs, settings, str(tmp_path))) <= 1.0


def test_the_m_scripts_pictures_are_left_as_they_are_by_both_paths(demo_pictures, tmp_path):
    """RESIZE=0 (M01-M14 but M04) and M04's RESIZE=180 on 180x180 pictures: training, prediction and
    the original predictor (its --resize squash) all give the picture as decoded."""
    rec, jpegs = demo_pictures
    decoded = np.stack([decode_rgb(jpeg).transpose(2, 0, 1) for jpeg in jpegs]).astype(np.float32)
    for resize, inter_method in ((0, 1), (180, 9)):
        trained, settings = training_pixels(rec, "3,180,180", resize, inter_method)
        assert grey_levels_apart(trained, decoded) == 0
        assert grey_levels_apart(prediction_pixels(jpegs, settings, str(tmp_path)), decoded) == 0
    original = np.stack([fit_to_input(decode_rgb(jpeg), 180, 180, resize=180).transpose(2, 0, 1) for jpeg in jpegs])
    assert grey_levels_apart(original, decoded) == 0


def test_the_resize_the_workers_are_told_round_trips():
    for resize in (Resize(), Resize(64), Resize(64, "squash", 2), Resize(200, "shorter_edge", 3)):
        assert Resize.parse(str(resize)) == resize
    assert str(Resize()) == "0" and Resize.of(0) == Resize() == Resize(0, "squash", 2).of(Resize(0, "squash", 2))
    assert Resize.of(64) == Resize(64, "squash", cv2.INTER_CUBIC)  # an int is the original's --resize
    with pytest.raises(ValueError, match="resize_mode 'stretch'"):
        Resize(64, "stretch")


def test_the_resize_flag_is_the_original_predictors_squash_and_the_checkpoints_is_trainings(colour_run):
    import mxnet as mx

    from predict import predict
    from predict.models import Model
    from predict.predictor import input_groups
    from train.checkpoint import InputSettings

    def model(*extra):
        args = predict.build_parser().parse_args(predict_args(colour_run, colour_run["dir"] / "o.csv", *extra))
        overrides = predict.check_arguments(args)[0]
        return Model(colour_run["symbol"], colour_run["params"], 2, overrides.pop("image_shape"), [mx.cpu()], None,
                     overrides=overrides)

    prefix = colour_run["symbol"][:-len("-symbol.json")]
    write_input_settings(input_settings_path(prefix), InputSettings(image_shape=(3, 32, 32), resize=40, inter_method=3))
    trained, flagged = model(), model("--resize", "48")
    assert input_groups([trained, flagged])[0] == [((3, 32, 32), Resize(40, "shorter_edge", cv2.INTER_AREA)),
                                                   ((3, 32, 32), Resize(48, "squash", cv2.INTER_CUBIC))]
