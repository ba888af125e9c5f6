"""A view-gated fusion network (not the original's; the 2nd place's idea, Heng's fuse nets): the feature
vectors of a product's views (its pictures, and their flips as extra views or averaged in) each pass a
squeeze-and-excitation gate, are summed over the views, then an MLP gives the product's classes.

Input: (products, SLOTS, D) features, the models' feature vectors of a view concatenated (D = the sum of
their widths), zero rows where a product has fewer views, and a (products, SLOTS) mask of the real ones.
  gate(x) = sigmoid(W2 relu(W1 x)), W1: D -> D / reduction     (per view, weights shared by the views)
  h = sum over the real views of x * gate(x)
  classes = softmax(W4 dropout(relu(W3 h))), W3: D -> hidden (the head is train.finetune's, the one head)
Trained with Adam on the labelled products, seeded; each epoch's checkpoint is written with its optimizer
state (train.checkpoint, train.optimizer_state: no pickle), so that a run resumes exactly.
"""
import logging
import math

import mxnet as mx
import numpy as np

from cli.runner import UserError
from predict.ensemble import product_pictures
from train.finetune import attach_classifier

log = logging.getLogger(__name__)


def fusion_symbol(slots, width, num_classes, hidden, reduction=16, dropout=0.2):
    """The network over data (batch, slots, width) and mask (batch, slots)."""
    data, mask = mx.sym.Variable("data"), mx.sym.Variable("mask")
    views = mx.sym.reshape(data, shape=(-1, width))
    squeeze = mx.sym.Activation(mx.sym.FullyConnected(views, num_hidden=max(1, width // reduction), name="gate1"),
                                act_type="relu")
    gate = mx.sym.Activation(mx.sym.FullyConnected(squeeze, num_hidden=width, name="gate2"), act_type="sigmoid")
    gated = mx.sym.reshape(views * gate, shape=(-1, slots, width))
    pooled = mx.sym.sum(mx.sym.broadcast_mul(gated, mx.sym.expand_dims(mask, axis=2)), axis=1)
    body = mx.sym.Activation(mx.sym.FullyConnected(pooled, num_hidden=hidden, name="fc1"), act_type="relu")
    return attach_classifier(body, num_classes, dropout_ratio=dropout)  # dropout -> fc -> softmax


def iterator(features, mask, labels, batch_size, shuffle, seed=0):
    """An NDArrayIter over products; shuffled per epoch from numpy's global state (seeded by the caller)."""
    if shuffle:
        np.random.seed(seed)
    return mx.io.NDArrayIter(data={"data": features, "mask": mask}, label={"softmax_label": labels},
                             batch_size=batch_size, shuffle=shuffle, last_batch_handle="pad")


def train(features, mask, labels, num_classes, epochs=10, batch_size=64, hidden=512, learning_rate=1e-3,
          seed=0, held_out=None, epoch_end=None, begin_epoch=0, arg_params=None, aux_params=None, state=None):
    """Fit the network; returns the bound module. `held_out` (features, mask, labels) is scored after each
    epoch and logged, as train.train_model logs its validation accuracy; `epoch_end(epoch, module)` is
    called after each epoch (checkpoints). `arg_params`/`state` resume a run at `begin_epoch`."""
    mx.random.seed(seed)
    slots, width = features.shape[1:]
    symbol = fusion_symbol(slots, width, num_classes, hidden)
    module = mx.mod.Module(symbol, data_names=["data", "mask"], label_names=["softmax_label"], context=mx.cpu())
    train_iter = iterator(features, mask, labels, batch_size, shuffle=True, seed=seed)
    module.bind(data_shapes=train_iter.provide_data, label_shapes=train_iter.provide_label)
    module.init_params(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2),
                       arg_params=arg_params, aux_params=aux_params, allow_missing=arg_params is None)
    module.init_optimizer(optimizer="adam", optimizer_params={"learning_rate": learning_rate,
                                                               "rescale_grad": 1.0 / batch_size})
    if state is not None:
        state(module)
    metric = mx.metric.Accuracy()
    for epoch in range(begin_epoch, epochs):
        # each epoch's order and dropout from (seed, epoch): a resumed run repeats the uninterrupted one
        mx.random.seed(seed * 1000 + epoch)
        train_iter = iterator(features, mask, labels, batch_size, shuffle=True, seed=seed * 1000 + epoch)
        metric.reset()
        for batch in train_iter:
            module.forward_backward(batch)
            module.update()
            module.update_metric(metric, batch.label)
        message = f"fusion net epoch {epoch + 1}: train accuracy {metric.get()[1]:.4f}"
        if held_out is not None and len(held_out[2]):
            predicted = predict(module, *held_out[:2], batch_size=batch_size).argmax(axis=1)
            message += f", validation accuracy {float((predicted == held_out[2]).mean()):.4f}"
        log.info("%s", message)
        if epoch_end is not None:
            epoch_end(epoch + 1, module)
    return module


def predict(module, features, mask, batch_size=256):
    """(products, classes) probabilities of a module, a training one rebound for inference first."""
    if module.for_training:
        module = inference_module(module.symbol, *module.get_params(), *features.shape[1:], batch_size=batch_size)
    out = []
    data_iter = mx.io.NDArrayIter(data={"data": features, "mask": mask}, batch_size=batch_size,
                                  last_batch_handle="pad")
    for batch in data_iter:
        module.forward(batch, is_train=False)
        probs = module.get_outputs()[0].asnumpy()
        out.append(probs[:batch_size - batch.pad])
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def inference_module(symbol, arg_params, aux_params, slots, width, batch_size=256):
    """A module bound for prediction only, from saved parameters: the classifier's softmax, no label."""
    probabilities = mx.sym.softmax(symbol.get_internals()["fc_output"], axis=1)
    module = mx.mod.Module(probabilities, data_names=["data", "mask"], label_names=None, context=mx.cpu())
    module.bind(data_shapes=[("data", (batch_size, slots, width)), ("mask", (batch_size, slots))],
                for_training=False)
    module.set_params(arg_params, aux_params, allow_missing=False, allow_extra=True)
    return module


def epochs_for(products, batch_size, updates=3000):
    """A default epoch count: about `updates` updates, at least 5 epochs and at most 60."""
    return int(min(60, max(5, math.ceil(updates * batch_size / max(products, 1)))))


FLIPS = ("views", "mean")  # a picture's flip as a view of its own, or averaged with the picture
MAX_PICTURES = 4  # Kaggle's products have 1 to 4; the first 4 usable ones of a longer product are kept


def product_views(stores, flips):
    """(features (products, slots, D) float32, mask (products, slots)) of every product of the stores: the
    models' features of each usable view concatenated; slots = 4 pictures x (views per picture or 1)."""
    first = stores[0]
    layouts = [entry for store in stores for entry in store.feature_layout]
    if not layouts or any(not store.feature_layout for store in stores):
        missing = next(store.directory for store in stores if not store.feature_layout)
        raise UserError(f"{missing}: no features in this store: the fusion net needs predict.predict "
                        "--save-probs DIR --save-features")
    views = layouts[0]["views"]
    per_picture = views if flips == "views" else 1
    width = sum(entry["dim"] for entry in layouts)
    image_start, decoded, _ = product_pictures(first)
    num_products, num_images = len(image_start) - 1, int(image_start[-1])
    # each picture's product, and how many usable pictures come before it in its product
    product_of = np.repeat(np.arange(num_products), np.diff(image_start))
    usable_before = np.cumsum(decoded) - decoded
    usable_before = usable_before - usable_before[image_start[product_of]]
    kept = np.flatnonzero(decoded & (usable_before < MAX_PICTURES))
    slots = MAX_PICTURES * per_picture
    features = np.zeros((num_products, slots, width), dtype=np.float32)
    mask = np.zeros((num_products, slots), dtype=np.float32)
    chunk = 4096  # images read at a time
    for lo in range(0, num_images, chunk):
        hi = min(lo + chunk, num_images)
        parts = [store.features(m, lo, hi) for store in stores for m in range(len(store.feature_layout))]
        block = np.concatenate(parts, axis=2)  # (views, images, width)
        if flips == "mean":
            block = block.mean(axis=0, keepdims=True)
        images = kept[(kept >= lo) & (kept < hi)]
        for view in range(per_picture):
            at = usable_before[images] * per_picture + view
            features[product_of[images], at] = block[view, images - lo]
            mask[product_of[images], at] = 1
    return features, mask
