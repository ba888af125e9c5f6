"""Small random networks for the prediction tests that recompute predict.predict's outputs in numpy:
a picture of SIZE x SIZE flattened -> fully connected -> softmax, simple enough to forward by hand."""
import cv2
import mxnet as mx
import numpy as np

NUM_CATEGORIES = 6
SIZE = 12  # pictures and network input are SIZE x SIZE
NUM_MODELS = 3


def save_flat_model(prefix, weight, bias):
    """A checkpoint like training writes: flatten (C, H, W order) -> fc -> SoftmaxOutput."""
    fc = mx.sym.FullyConnected(mx.sym.flatten(mx.sym.Variable("data")), num_hidden=len(bias), name="fc")
    symbol = mx.sym.SoftmaxOutput(fc, name="softmax")
    mx.model.save_checkpoint(prefix, 1, symbol, {"fc_weight": mx.nd.array(weight), "fc_bias": mx.nd.array(bias)}, {})
    return f"{prefix}-symbol.json", f"{prefix}-0001.params"


def random_models(directory, num_classes, seed):
    """NUM_MODELS flat models of random weights: [(weight, bias, symbol path, params path)]."""
    rng = np.random.default_rng(seed)
    models = []
    for m in range(NUM_MODELS):
        weight = rng.normal(0, 1.5e-3, (num_classes, 3 * SIZE * SIZE))
        bias = -128 * weight.sum(axis=1) + rng.normal(0, 0.3, num_classes)  # logits of the pixels' deviations
        models.append((weight, bias, *save_flat_model(str(directory / f"model{seed}_{m}"), weight, bias)))
    return models


def picture(rng):
    """A JPEG of random pixels at the models' input size."""
    ok, jpeg = cv2.imencode(".jpg", rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))
    assert ok
    return jpeg.tobytes()
