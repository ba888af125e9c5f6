"""predict.predict --save-features: each model's penultimate features of every view, in the probability store.

Two small networks of different widths (a flattened pool; a pool kept 4-d under a Dropout, as DenseNet's
pool5) predict products of dark then bright pictures, with repeated and undecodable pictures. The stored
features must be what MXNet computes at the feature layer for each view of the preprocessed picture, and
a run without the flag must bind and write exactly what it did before."""
import json
import logging
import os
import shutil

import cv2
import mxnet as mx
import numpy as np
import pytest

from cli.runner import UserError
from predict import predict
from predict.models import Model, probability_symbol
from predict.preprocess import decode_rgb, fit_to_input
from predict.prob_store import FeatureEncoder, Store
from tests.helpers import product, write_bson, write_category_csv

NUM_CLASSES = 5
FIRST = 3000
SIZE = 16
BATCH = 8  # views per forward pass: the first batch is the first four pictures' two views
# (prefix, the layer the test reads the features at, their width)
NETWORKS = (("flat", "flatten", 6), ("pooled", "pool", 4))


def save_network(prefix, layer, width, rng):
    """conv 3x3 -> ReLU -> global average pool -> [flatten | Dropout] -> fc -> SoftmaxOutput, random weights."""
    net = mx.sym.Convolution(mx.sym.var("data"), num_filter=width, kernel=(3, 3), pad=(1, 1), name="conv")
    net = mx.sym.Pooling(mx.sym.Activation(net, act_type="relu", name="relu"), global_pool=True, kernel=(1, 1),
                         pool_type="avg", name="pool")
    net = mx.sym.Flatten(net, name="flatten") if layer == "flatten" else mx.sym.Dropout(net, p=0.5, name="drop")
    symbol = mx.sym.SoftmaxOutput(mx.sym.FullyConnected(net, num_hidden=NUM_CLASSES, name="fc"), name="softmax")
    params = {"conv_weight": rng.normal(0, 0.02, (width, 3, 3, 3)), "conv_bias": rng.normal(0, 0.5, width),
              "fc_weight": rng.normal(0, 0.3, (NUM_CLASSES, width)), "fc_bias": np.zeros(NUM_CLASSES)}
    mx.model.save_checkpoint(prefix, 1, symbol, {k: mx.nd.array(v) for k, v in params.items()}, {})
    return f"{prefix}-symbol.json", f"{prefix}-0001.params"


def jpeg(rng, low, high):
    return cv2.imencode(".jpg", rng.integers(low, high, (SIZE, SIZE, 3), dtype=np.uint8))[1].tobytes()


def direct_features(symbol_path, params_path, layer, pictures):
    """(pictures, 2, D): MXNet's output at `layer` for each picture and its horizontal flip, fed as training's
    input (decoded to RGB, fitted to the input, raw 0-255)."""
    fitted = [fit_to_input(decode_rgb(p), SIZE, SIZE) for p in pictures]
    views = np.stack([view.transpose(2, 0, 1) for rgb in fitted for view in (rgb, rgb[:, ::-1])]).astype(np.float32)
    module = mx.mod.Module(mx.sym.load(symbol_path).get_internals()[layer + "_output"], label_names=None)
    module.bind(data_shapes=[("data", views.shape)], for_training=False)
    _, args, aux = mx.model.load_checkpoint(params_path[:-len("-0001.params")], 1)
    module.set_params(args, aux, allow_extra=True)
    module.forward(mx.io.DataBatch([mx.nd.array(views)]), is_train=False)
    return module.get_outputs()[0].asnumpy().reshape(len(pictures), 2, -1)


class Messages(logging.Handler):
    """The messages a run logs (its count of pictures forwarded and reused)."""

    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Runs of both networks with flip TTA: float16 features; uint8 features in two shards (two range folders);
    no features (the bound models kept)."""
    tmp = tmp_path_factory.mktemp("features")
    rng = np.random.default_rng(5)
    dark = [jpeg(rng, 0, 40) for _ in range(6)]
    bright = [jpeg(rng, 150, 256) for _ in range(8)]
    broken = b"\xff\xd8 not a picture"
    dark_products = [product(n, [p], FIRST + n % NUM_CLASSES) for n, p in enumerate(dark)]
    # the first batch of the run and of shard 0/2 is dark, then bright pictures come (uint8: some clipped)
    docs = dark_products[:4] + [
        product(10, bright[0:2], FIRST), product(11, [bright[2], broken], FIRST + 1),
        product(12, [bright[3]], FIRST + 2), product(13, [bright[4], bright[4], bright[5]], FIRST + 3),
        product(14, [bright[6], bright[0]], FIRST + 4),  # bright[0] repeats product 10's first picture
        *dark_products[4:], product(15, [bright[7]], FIRST), product(16, [dark[1]], FIRST + 1)]
    paths = {"bson": write_bson(tmp / "test.bson", docs), "csv": write_category_csv(tmp / "categories.csv", [
        FIRST + c for c in range(NUM_CLASSES)]), "dir": tmp, "docs": docs}
    paths["networks"] = [save_network(str(tmp / prefix), layer, width, rng) for prefix, layer, width in NETWORKS]
    pictures = [bytes(image["picture"]) for doc in docs for image in doc["imgs"]]
    paths["decoded"] = np.array([p != broken for p in pictures])
    paths["expected"] = []  # per network: (images, 2, D), zeros for the undecodable picture
    for (symbol, params), (_, layer, width) in zip(paths["networks"], NETWORKS):
        features = np.zeros((len(pictures), 2, width), np.float32)
        features[paths["decoded"]] = direct_features(symbol, params, layer, [p for p in pictures if p != broken])
        paths["expected"].append(features)
    paths["first_batch"] = [f[:4].reshape(-1) for f in paths["expected"]]  # dark[0..3], two views each

    messages, logger = Messages(), logging.getLogger("predict.predict")
    level = logger.level
    logger.addHandler(messages)
    logger.setLevel(logging.INFO)
    loaded = {}
    real_load_models = predict.load_models
    try:
        for name, extra in (("float16", ["--save-features"]), ("plain", [])):
            messages.lines.clear()
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(predict, "load_models",
                              lambda *a, **k: loaded.setdefault(name, real_load_models(*a, **k)))
                assert predict.main(argv(paths, name, "--save-probs", str(tmp / name), *extra)) == 0
            paths[name + "_log"] = list(messages.lines)
        for shard in ("0/2", "1/2"):
            assert predict.main(argv(paths, "uint8", "--save-probs", str(tmp / "uint8"), "--save-features",
                                     "--save-features-dtype", "uint8", "--shard", shard, "--force")) == 0
    finally:
        logger.removeHandler(messages)
        logger.setLevel(level)
    paths["models"] = loaded
    return paths


def argv(paths, output, *extra):
    return ["--bson", paths["bson"], "--csv", paths["csv"], "--symbol", *(s for s, _ in paths["networks"]),
            "--params", *(p for _, p in paths["networks"]), "--data-shape", f"3,{SIZE},{SIZE}",
            "--batch-size", str(BATCH), "--num-procs", "1", "--multi-view", "1", "--ensembles", "1", "2",
            "--output", str(paths["dir"] / f"{output}.csv"), *extra]


def the_range(folder):
    (name,) = [n for n in os.listdir(folder) if n.startswith("products-")]
    return os.path.join(folder, name)


def meta_of(folder):
    with open(os.path.join(folder, "meta.json")) as fh:
        return json.load(fh)


def test_float16_features_are_the_feature_layer_of_every_view(runs):
    store = Store(str(runs["dir"] / "float16"))
    assert [entry["dim"] for entry in store.feature_layout] == [width for _, _, width in NETWORKS]
    num_images = len(runs["decoded"])
    for m, expected in enumerate(runs["expected"]):
        stored = store.features(m, 0, num_images)
        assert stored.dtype == np.float32 and stored.shape == (2, num_images, expected.shape[-1])
        np.testing.assert_allclose(stored, expected.transpose(1, 0, 2), rtol=1e-3, atol=1e-3)
        # view 1 is the flipped picture's, not the picture's again
        decoded = runs["decoded"]
        assert not np.allclose(stored[0, decoded], stored[1, decoded], rtol=1e-2, atol=1e-2)
        assert not stored[:, ~decoded].any()  # the undecodable picture: zeros
        assert stored[:, decoded].any(axis=-1).all()
        # any slice, as read by a later fusion
        np.testing.assert_array_equal(store.features(m, 7, 12), stored[:, 7:12])


def test_meta_and_arrays_of_the_features(runs):
    folder = the_range(runs["dir"] / "float16")
    meta = meta_of(folder)
    num_images = meta["num_images"]
    assert meta["features"] == [{"model": os.path.basename(params), "dim": width, "views": 2, "dtype": "float16",
                                 "scale": 1.0, "clipped": 0}
                                for (_, params), (_, _, width) in zip(runs["networks"], NETWORKS)]
    for m, (_, _, width) in enumerate(NETWORKS):
        array = np.load(os.path.join(folder, f"features-{m}.npy"), allow_pickle=False)
        assert array.dtype == np.float16 and array.shape == (2, num_images, width)
    assert np.array_equal(np.load(os.path.join(folder, "decoded.npy")), runs["decoded"])
    assert not [n for n in os.listdir(runs["dir"] / "float16") if n.startswith(".")]  # renamed into place


def test_a_repeated_picture_gets_the_features_of_its_first_occurrence(runs):
    assert any("forwarded 14 of 18 images (0 answered by the MD5 dictionary, 3 repeats)" in line
               for line in runs["float16_log"]), runs["float16_log"]
    store = Store(str(runs["dir"] / "float16"))
    md5 = store.concatenated("md5")
    product_of = store.concatenated("image_product")
    pairs = [(i, j) for i in range(len(md5)) for j in range(i + 1, len(md5)) if md5[i] == md5[j]]
    # product 14 repeats product 10's picture, product 13 its own, product 16 product 1's
    assert sorted((int(product_of[i]), int(product_of[j])) for i, j in pairs) == [(1, 16), (10, 14), (13, 13)]
    for m in range(len(NETWORKS)):
        features = store.features(m, 0, len(md5))
        for i, j in pairs:
            assert features[:, j].any() and np.array_equal(features[:, i], features[:, j])


def test_uint8_features_dequantised_within_half_a_step(runs):
    store = Store(str(runs["dir"] / "uint8"))
    assert len(store.ranges) == 2
    for m, expected in enumerate(runs["expected"]):
        values = expected.transpose(1, 0, 2)
        stored = store.features(m, 0, values.shape[1])
        clipped_total = 0
        for part, lo in zip(store.ranges, store.image_bounds[:-1].tolist()):
            entry = part.meta["features"][m]
            assert entry["dtype"] == "uint8" and entry["scale"] > 0
            scale, hi = entry["scale"], lo + part.meta["num_images"]
            levels = np.rint(values[:, lo:hi] / scale)
            fits = levels <= 255
            error = np.abs(stored[:, lo:hi] - values[:, lo:hi])
            assert (error[fits] <= scale / 2 * (1 + 1e-4) + 1e-6).all()
            assert np.allclose(stored[:, lo:hi][~fits], 255 * scale)
            assert entry["clipped"] == int((~fits).sum())
            clipped_total += entry["clipped"]
        first_scale = store.ranges[0].meta["features"][m]["scale"]
        assert first_scale == pytest.approx(np.percentile(runs["first_batch"][m], 99.9) / 200, rel=1e-4)
        assert clipped_total > 0  # the bright pictures after a dark first batch: counted


def test_the_encoder_counts_what_it_clips():
    encoder = FeatureEncoder("uint8")
    encoder.observe(np.zeros((4, 3), np.float32))  # nothing positive: the scale waits
    assert encoder.scale is None
    assert not encoder.encode(np.zeros((2, 3), np.float32)).any() and encoder.clipped == 0
    encoder.observe(np.linspace(0, 2, 1001, dtype=np.float32))
    assert encoder.scale == pytest.approx(np.percentile(np.linspace(0, 2, 1001), 99.9) / 200)
    encoder.observe(np.full(10, 100, np.float32))  # set once
    assert encoder.scale == pytest.approx(np.percentile(np.linspace(0, 2, 1001), 99.9) / 200)
    stored = encoder.encode(np.array([-1, 0, 1, 2.5, 3], np.float32))
    assert stored.tolist() == [0, 0, 100, 250, 255] and encoder.clipped == 2
    half = FeatureEncoder("float16")
    assert half.encode(np.array([1.5, 7e4], np.float32)).tolist() == [1.5, np.inf] and half.clipped == 1


def test_without_save_features_nothing_changes(runs):
    plain_models, feature_models = runs["models"]["plain"], runs["models"]["float16"]
    for model, (symbol, _) in zip(plain_models, runs["networks"]):
        assert model.module.output_names == ["prob_output"] and model.feature_dim is None
        assert model.module.symbol.tojson() == probability_symbol(mx.sym.load(symbol)).tojson()
    for model, (_, _, width) in zip(feature_models, NETWORKS):
        assert len(model.module.output_names) == 2 and model.feature_dim == width
    plain, featured = the_range(runs["dir"] / "plain"), the_range(runs["dir"] / "float16")
    assert sorted(os.listdir(plain)) == sorted(n for n in os.listdir(featured) if not n.startswith("features-"))
    for name in os.listdir(plain):
        if name.endswith(".npy"):
            assert np.array_equal(np.load(os.path.join(plain, name)), np.load(os.path.join(featured, name))), name
    with_features = meta_of(featured)
    del with_features["features"]
    assert meta_of(plain) == with_features
    for tag in ("", ".e1.m0", ".e1.m1", ".e2.m0", ".e2.m1"):
        with open(runs["dir"] / f"plain{tag}.csv", "rb") as plain_csv, \
                open(runs["dir"] / f"float16{tag}.csv", "rb") as featured_csv:
            assert plain_csv.read() == featured_csv.read()


def test_a_store_without_features_opens_and_says_so(runs):
    store = Store(str(runs["dir"] / "plain"))
    assert store.feature_layout == []
    with pytest.raises(UserError, match="no features in this store") as raised:
        store.features(0, 0, 1)
    assert "\n" not in str(raised.value)
    with pytest.raises(UserError, match="no model 2"):
        Store(str(runs["dir"] / "float16")).features(2, 0, 1)


@pytest.mark.parametrize("damage", ["shape", "dtype"])
def test_a_damaged_features_array_is_refused_in_one_line(runs, tmp_path, damage):
    copy = tmp_path / "store"
    shutil.copytree(runs["dir"] / "float16", copy)
    path = os.path.join(the_range(copy), "features-1.npy")
    array = np.load(path)
    np.save(path, array[:, :-1] if damage == "shape" else array.astype(np.float32))
    with pytest.raises(UserError) as raised:
        Store(str(copy))
    message = str(raised.value)
    assert message.startswith(path) and "\n" not in message
    assert ("shape (2, 17, 4), expected (2, 18, 4)" if damage == "shape" else "dtype float32, expected float16") \
        in message


@pytest.mark.parametrize("extra, refused", [
    (["--save-features"], "--save-features: needs --save-probs DIR"),
    (["--save-features-dtype", "uint8", "--save-probs", "x"], "--save-features-dtype uint8: only with --save-features"),
])
def test_save_features_needs_the_store(tmp_path, no_heavy_work, extra, refused):
    argv = ["--bson", str(tmp_path / "t.bson"), "--symbol", "s.json", "--params", "p.params",
            "--output", str(tmp_path / "out.csv"), *extra]
    with pytest.raises(UserError) as raised:
        predict.main(argv)
    assert str(raised.value).startswith(refused) and "\n" not in str(raised.value)


def test_a_network_without_a_classifier_head_is_refused_for_features(tmp_path):
    pooled = mx.sym.Pooling(mx.sym.var("data"), global_pool=True, kernel=(1, 1), pool_type="avg", name="pool")
    symbol = mx.sym.softmax(mx.sym.FullyConnected(pooled, num_hidden=3, name="fc"), name="prob")
    mx.model.save_checkpoint(str(tmp_path / "net"), 1, symbol, {"fc_weight": mx.nd.zeros((3, 3)),
                                                                 "fc_bias": mx.nd.zeros(3)}, {})
    Model(str(tmp_path / "net-symbol.json"), str(tmp_path / "net-0001.params"), 2, (3, 4, 4), [mx.cpu()], 3)
    with pytest.raises(UserError, match="needs a network ending in FullyConnected -> SoftmaxOutput"):
        Model(str(tmp_path / "net-symbol.json"), str(tmp_path / "net-0001.params"), 2, (3, 4, 4), [mx.cpu()], 3,
              features=True)
