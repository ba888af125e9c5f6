"""Prediction runs for the tests: the colour-patch model of the colour_run and long_run fixtures
(tests/conftest.py) and predict.predict's command line on them; stand-in models for the Predictor."""
import subprocess
import sys
import types

import mxnet as mx
import numpy as np

from predict import predict
from predict.predictor import Predictor, image_ensembles
from predict.probability import PRODUCT_REDUCTIONS, product_scores
from tests.helpers import REPO_ROOT
from train.checkpoint import InputSettings

NUM_CLASSES = 6
FIRST_CATEGORY = 1000000000


def save_model(prefix, weight, bias, data_shape):
    """A checkpoint like training writes: global average colour -> fc -> SoftmaxOutput."""
    data = mx.sym.Variable("data")
    pooled = mx.sym.Pooling(data, global_pool=True, pool_type="avg", kernel=(1, 1), name="pool")
    fc = mx.sym.FullyConnected(mx.sym.flatten(pooled), num_hidden=len(bias), name="fc")
    symbol = mx.sym.SoftmaxOutput(fc, name="softmax", smooth_alpha=0.1)
    args = {"fc_weight": mx.nd.array(weight), "fc_bias": mx.nd.array(bias)}
    mx.model.save_checkpoint(prefix, 1, symbol, args, {})
    return f"{prefix}-symbol.json", f"{prefix}-0001.params"


def colour_centroid_model(prefix, seed=0):
    """The nearest-colour classifier of colour_products' pictures, in RGB as the network sees them:
    logits = 2 c.x - |c|^2 (scaled), so only a correct decode and channel order score well."""
    colours_bgr = np.random.default_rng(seed).integers(0, 256, (NUM_CLASSES, 3))  # as colour_products draws
    centroids = colours_bgr[:, ::-1].astype(np.float64)  # OpenCV wrote BGR; the network gets RGB
    scale = 0.05
    return save_model(prefix, 2 * scale * centroids, -scale * (centroids ** 2).sum(axis=1), None)


def predict_args(run, output, *extra):
    """predict.predict's arguments for a colour_run (or long_run) writing `output`."""
    return ["--bson", run["bson"], "--csv", run["csv"], "--symbol", run["symbol"], "--params", run["params"],
            "--data-shape", "3,32,32", "--batch-size", "8", "--num-procs", "2", "--output", str(output), *extra]


def start_cli(run, output, extra=(), **popen):
    """predict.predict on a long_run as a command, started, not waited for: to be interrupted."""
    command = [sys.executable, "-m", "predict.predict", "--bson", run["bson"], "--csv", run["csv"],
               "--symbol", run["symbol"], "--params", run["params"], "--data-shape", "3,8,8",
               "--batch-size", "4", "--num-procs", "2", "--output", str(output), *extra]
    return subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            **popen)


def scored_run(monkeypatch, arguments):
    """predict.run, recording every product's scores for each (k, reduction) as it finishes."""
    scores = {}
    finish = Predictor._finish

    def recording(self, pending):
        finish(self, pending)
        overrides = self.md5_override(pending.prepared.digests) if self.md5_override is not None else {}
        image_probs = image_ensembles(pending.means, pending.prepared.valid, overrides, self.ensemble_sizes)
        scores[pending.row] = {(k, r): product_scores(probs, r) for k, probs in image_probs.items()
                               for r in PRODUCT_REDUCTIONS}

    monkeypatch.setattr(Predictor, "_finish", recording)
    result = predict.run(predict.build_parser().parse_args(arguments))
    monkeypatch.setattr(Predictor, "_finish", finish)
    return result, scores


# ---- the predictor with stand-in models -----------------------------------------------
class TableModel:
    """Stands in for a network: each view's first pixel value selects a row of `table`."""

    def __init__(self, table):
        self.table = np.asarray(table, dtype=np.float32)
        self.input = InputSettings(image_shape=(3, 1, 1))
        self.normalise = np.asarray  # the pixel value is the row

    def forward(self, batch):
        rows = self.table[batch[:, 0, 0, 0].astype(int)]
        return types.SimpleNamespace(asnumpy=lambda: rows)


def prepared(product, pixel_values, digests=None, valid=None, num_views=1):
    """A prepared product whose views are 1x1 pictures holding `pixel_values`."""
    views = np.array(pixel_values, dtype=np.uint8).reshape(-1, 1, 1, 1).repeat(3, axis=1)
    num_images = len(valid) if valid is not None else len(pixel_values) // num_views
    return types.SimpleNamespace(product=product, num_images=num_images, num_views=num_views,
                                 valid=valid or [True] * num_images, views=[views], num_rows=len(views),
                                 digests=digests or [bytes([product, i]) * 8 for i in range(num_images)])
