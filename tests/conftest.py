"""Shared fixtures: Kaggle's real sample files from ../shared/data, small hand-made BSONs, and the
colour-patch data and models the training and prediction tests share."""
import shutil

import cv2
import mxnet as mx
import numpy as np
import pytest

from data.bson_index import BsonIndex
from predict import md5_predict, predict
from tests import predict_helpers, train_helpers
from tests.helpers import (colour_products, demo_dataset, product, shared_file, write_bson, write_category_csv,
                           write_colour_rec)
from tests.predict_helpers import FIRST_CATEGORY, colour_centroid_model, save_model
from tests.train_helpers import save_published_params


@pytest.fixture
def category_csv():
    """Kaggle's real category_names.csv (5270 categories)."""
    return shared_file("category_names.csv")


@pytest.fixture
def example_bson(tmp_path):
    """A private copy of Kaggle's train_example.bson (82 products, 110 images)."""
    dst = tmp_path / "train_example.bson"
    shutil.copy(shared_file("train_example.bson"), dst)
    return str(dst)


# ---- training ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def colour_rec(tmp_path_factory):
    """A .rec of 4 colour classes (96 images) converted by data.bson2rec, and its category CSV."""
    return write_colour_rec(tmp_path_factory.mktemp("colours"), train_helpers.NUM_CLASSES, 24)


@pytest.fixture(scope="module")
def resnet18(tmp_path_factory):
    """The published ResNet-18 graph and made-up weights in the published .params format."""
    folder = tmp_path_factory.mktemp("resnet18")
    symbol = shared_file("mxnet_symbols/resnet-18-symbol.json")
    params = str(folder / "resnet-18-0000.params")
    save_published_params(mx.sym.load(symbol), params)
    return symbol, params


@pytest.fixture(scope="module")
def tiny_symbol(tmp_path_factory):
    """Convolution, BatchNorm, global pool: a network that trains in milliseconds on 16x16 images."""
    data = mx.sym.var("data")
    net = mx.sym.Convolution(data, num_filter=8, kernel=(3, 3), pad=(1, 1), name="conv1")
    net = mx.sym.Activation(mx.sym.BatchNorm(net, fix_gamma=False, name="bn1"), act_type="relu", name="relu1")
    net = mx.sym.Pooling(net, global_pool=True, kernel=(1, 1), pool_type="avg", name="pool1")
    net = mx.sym.FullyConnected(mx.sym.Flatten(net, name="flatten0"), num_hidden=10, name="fc1")
    path = str(tmp_path_factory.mktemp("tiny") / "tiny-symbol.json")
    mx.sym.SoftmaxOutput(net, name="softmax").save(path)
    return path


# ---- prediction ----------------------------------------------------------------------------------
@pytest.fixture
def colour_run(tmp_path):
    """A labelled BSON of colour patches, its category CSV, and the matching model."""
    num_classes = predict_helpers.NUM_CLASSES
    docs = colour_products(num_classes, 8, seed=0, first_category=FIRST_CATEGORY)
    # a few products of two or three pictures (the same colour)
    docs = [product(d["_id"], [d["imgs"][0]["picture"]] * (1 + i % 3), d["category_id"])
            for i, d in enumerate(docs)]
    bson_path = write_bson(tmp_path / "val.bson", docs)
    csv_path = write_category_csv(tmp_path / "categories.csv", [FIRST_CATEGORY + c for c in range(num_classes)])
    symbol, params = colour_centroid_model(str(tmp_path / "colour"))
    return {"bson": bson_path, "csv": csv_path, "symbol": symbol, "params": params, "docs": docs,
            "dir": tmp_path}


@pytest.fixture
def long_run(tmp_path):
    """Enough tiny products that a run lasts several seconds."""
    num_classes = predict_helpers.NUM_CLASSES
    jpeg = cv2.imencode(".jpg", np.full((8, 8, 3), 128, np.uint8))[1].tobytes()
    bson_path = write_bson(tmp_path / "long.bson", [product(i, [jpeg], FIRST_CATEGORY) for i in range(40000)])
    csv_path = write_category_csv(tmp_path / "categories.csv", [FIRST_CATEGORY + c for c in range(num_classes)])
    symbol, params = save_model(str(tmp_path / "tiny"), np.zeros((num_classes, 3)), np.zeros(num_classes), None)
    BsonIndex.open(bson_path, progress=False)
    return {"bson": bson_path, "csv": csv_path, "symbol": symbol, "params": params, "dir": tmp_path}


@pytest.fixture
def no_heavy_work(monkeypatch):
    """Loading a model, indexing a BSON or hashing pictures fails the test: the mistake must be found first."""
    def refuse(*args, **kwargs):
        raise AssertionError("heavy work started before the mistake was found")

    monkeypatch.setattr(predict, "load_models", refuse)
    monkeypatch.setattr(predict.BsonIndex, "open", refuse)
    monkeypatch.setattr(md5_predict, "build_dictionary", refuse)


# ---- the data stage ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    """A small demo dataset: 8 categories, 300 training products."""
    return demo_dataset(tmp_path_factory.mktemp("demo"), num_categories=8, num_train_products=300,
                        num_test_products=40)
