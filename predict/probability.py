"""Probability arithmetic of the prediction stage, with the original solution's formulas.

For each picture: each model's views are averaged, then the first k models are averaged.
For each product: its pictures' probabilities are multiplied (m0) or summed (m1), and
the argmax is its class (the first class on a tie, as numpy's argmax). The original's
main output was m0 of all models; its submission was m1 of all 14, then post-processed.

Shapes: an image's probabilities are a (num_classes,) row; a product's images are
rows of a (num_images, num_classes) array; per-model arrays put the models first.
"""
import numpy as np

PRODUCT_REDUCTIONS = ("product", "sum")  # m0, m1 in the output names, as the original
MD5_DICT_TYPES = ("unique", "majority", "l1", "l2", "softmax", "none")


def view_mean(view_probs, num_views):
    """(..., num_images * num_views, C) with each image's views consecutive -> (..., num_images, C) mean."""
    return view_probs.reshape(*view_probs.shape[:-2], -1, num_views, view_probs.shape[-1]).mean(axis=-2)


def ensemble_means(model_probs, sizes):
    """(num_models, num_images, C) -> {k: (num_images, C) mean of the first k models} for each k of `sizes`."""
    means, total, summed = {}, np.zeros(model_probs.shape[1:], dtype=np.float64), 0
    for k in sorted(set(sizes)):
        total = total + model_probs[summed:k].sum(axis=0, dtype=np.float64)
        summed = k
        means[k] = total / k
    return means


def product_scores(image_probs, reduction):
    """(num_images, C) -> (C,) scores whose argmax is the product's class.

    product (m0): the log of the product of the pictures' probabilities, summed as logs so that
    it cannot underflow. A zero probability (a one-hot MD5 override) is log 0 = -inf, so that
    class loses as a zero factor did in the original's float product; when every class has a zero
    (two pictures overridden to different classes) all scores are -inf and the argmax is class 0,
    the argmax of the original's all-zero product. Nothing is +inf or NaN.
    sum (m1): the sum of the pictures' probabilities.
    """
    if reduction == "product":
        with np.errstate(divide="ignore"):
            return np.log(image_probs).sum(axis=0)
    if reduction == "sum":
        return image_probs.sum(axis=0)
    raise ValueError(f"unknown product reduction {reduction!r}; expected one of {PRODUCT_REDUCTIONS}")


def md5_override(labels, counts, num_classes, kind):
    """The probability an image gets from the training dictionary, or None to keep the model's.

    `labels`, `counts`: the output classes of the categories its MD5 was seen with in training
    and how often, in the order first seen. As the original: unique: one-hot where the MD5 has a
    single category; majority: one-hot of the most frequent category (a tie: the one seen first);
    l1: counts / their sum; l2: counts / their Euclidean norm; softmax: softmax over the whole
    class vector holding the counts (zeros elsewhere, so unseen classes keep some mass);
    none: never override. A class that two categories share (level-1 sub-classes) holds the
    count of the one listed last, as the original's assignment left it.
    """
    if kind not in MD5_DICT_TYPES:
        raise ValueError(f"unknown MD5 dictionary type {kind!r}; expected one of {MD5_DICT_TYPES}")
    if kind == "none" or len(labels) == 0 or (kind == "unique" and len(labels) > 1):
        return None
    counts = np.asarray(counts, dtype=np.float64)
    probs = np.zeros(num_classes, dtype=np.float64)
    if kind in ("unique", "majority"):
        probs[labels[int(np.argmax(counts))]] = 1.0  # argmax: the first of equal counts
        return probs
    for label, count in zip(labels, counts):  # in order: a repeated label keeps the last count
        probs[label] = count
    if kind == "l1":
        return probs / counts.sum()
    if kind == "l2":
        return probs / np.sqrt((counts ** 2).sum())
    exp = np.exp(probs - probs.max())
    return exp / exp.sum()


def first_occurrences(digests):
    """Positions of the first image of each distinct MD5 in a product (for --product-unique-md5)."""
    seen, keep = set(), []
    for position, digest in enumerate(digests):
        if digest not in seen:
            seen.add(digest)
            keep.append(position)
    return keep
