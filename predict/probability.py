"""Probability arithmetic of the prediction stage: views, images, products, models, MD5 overrides.

Shapes: an image's probabilities are a (num_classes,) row; a product's images are
rows of a (num_images, num_classes) array; a product's per-model results are rows
of a (num_models, num_classes) array.
"""
import numpy as np

PRODUCT_MEANS = ("arithmetic", "geometric")  # m0, m1 in the output names, as the original
MD5_DICT_TYPES = ("unique", "majority", "l1", "l2", "softmax", "none")
_LOG_FLOOR = 1e-12  # a one-hot override has zeros; the geometric mean treats them as this


def view_mean(view_probs, num_views):
    """(num_images * num_views, C) with each image's views consecutive -> (num_images, C) arithmetic mean."""
    return view_probs.reshape(-1, num_views, view_probs.shape[-1]).mean(axis=1)


def product_mean(image_probs, kind="arithmetic"):
    """(num_images, C) -> (C,): the arithmetic mean, or the normalised geometric mean, over the images."""
    if kind == "arithmetic":
        return image_probs.mean(axis=0)
    if kind == "geometric":
        log_mean = np.log(np.maximum(image_probs, _LOG_FLOOR)).mean(axis=0)
        geometric = np.exp(log_mean - log_mean.max())  # shifted: exp never underflows to all zeros
        return geometric / geometric.sum()
    raise ValueError(f"unknown product mean {kind!r}; expected one of {PRODUCT_MEANS}")


def md5_override(class_ids, counts, num_classes, kind):
    """The probability an image gets from the training dictionary, or None to keep the model's.

    `class_ids`, `counts`: the categories (as class ids) its MD5 was seen with in training
    and how often. unique: one-hot where the MD5 has a single category (the solution's
    choice); majority: one-hot of the most frequent category (ties: the first listed);
    l1: counts / sum; l2: counts / Euclidean norm; softmax: softmax over the counts of the
    categories seen (zero elsewhere); none: never override.
    """
    if kind == "none" or len(class_ids) == 0:
        return None
    if kind == "unique" and len(class_ids) > 1:
        return None
    probs = np.zeros(num_classes, dtype=np.float32)
    counts = np.asarray(counts, dtype=np.float64)
    if kind in ("unique", "majority"):
        probs[class_ids[int(np.argmax(counts))]] = 1.0
    elif kind == "l1":
        probs[class_ids] = counts / counts.sum()
    elif kind == "l2":
        probs[class_ids] = counts / np.sqrt((counts ** 2).sum())
    elif kind == "softmax":
        exp = np.exp(counts - counts.max())
        probs[class_ids] = exp / exp.sum()
    else:
        raise ValueError(f"unknown MD5 dictionary type {kind!r}; expected one of {MD5_DICT_TYPES}")
    return probs


def first_occurrences(digests):
    """Positions of the first image of each distinct MD5 in a product (for --product-unique-md5)."""
    seen, keep = set(), []
    for position, digest in enumerate(digests):
        if digest not in seen:
            seen.add(digest)
            keep.append(position)
    return keep
