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
    if not md5_answers(len(labels), kind):
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


def md5_answers(num_labels, kind):
    """Whether an MD5 seen in training with `num_labels` known classes gets the dictionary's probability."""
    if kind not in MD5_DICT_TYPES:
        raise ValueError(f"unknown MD5 dictionary type {kind!r}; expected one of {MD5_DICT_TYPES}")
    return kind != "none" and num_labels > 0 and not (kind == "unique" and num_labels > 1)


def top_k(probs, k, kept=None):
    """(n, C) probabilities -> what the probability store keeps of each row, the largest first:
    class ids (n, k); float16 natural logs of their probabilities (n, k); the remaining mass (n,)
    float32; and the mean log of the other classes' positive probabilities (n,) float16, -inf when
    every other class is zero (float32 underflow).

    `kept` (n, F) class ids, -1 for none (F < k): classes each row keeps whatever their probability, the
    largest others filling the rest. The store keeps there the classes the MD5 dictionary names for a
    product's pictures: where overrides disagree, or meet a class the network gave 0, the product's category
    is decided by exactly those probabilities, which the tail's mean cannot stand for.

    Logs, not the probabilities: in the same two bytes a probability keeps a relative precision of
    0.05% near 1, 0.4% near 1e-4 and 1.5% near 1e-20, where a float16 probability is zero (it flushes
    everything under 6e-8), yet the product over pictures (m0) is decided there whenever confident
    pictures disagree."""
    k = min(k, probs.shape[1])
    priority = probs
    if kept is not None and (kept >= 0).any():
        rows, columns = np.nonzero(kept >= 0)
        priority = probs.copy()
        priority[rows, kept[rows, columns]] = 2.0  # above any probability
    ids = largest_ids(priority, k)
    values = np.take_along_axis(probs, ids, axis=1)
    order = np.argsort(-values, axis=1, kind="stable")
    ids, values = np.take_along_axis(ids, order, axis=1), np.take_along_axis(values, order, axis=1)
    with np.errstate(divide="ignore"):
        logs = np.log(values.astype(np.float64)).astype(np.float16)
    rest = probs.sum(axis=1, dtype=np.float64) - values.sum(axis=1, dtype=np.float64)
    positive = probs > 0
    # float32 logs summed in float64: the mean is stored in float16, and a float64 log of every class was a
    # quarter of the store's time
    log_or_zero = np.log(probs, out=np.zeros(probs.shape, np.float32), where=positive)
    tail_count = positive.sum(axis=1) - np.take_along_axis(positive, ids, axis=1).sum(axis=1)
    tail_logs = (log_or_zero.sum(axis=1, dtype=np.float64)
                 - np.take_along_axis(log_or_zero, ids, axis=1).sum(axis=1, dtype=np.float64))
    tail_log_mean = np.where(tail_count > 0, tail_logs / np.maximum(tail_count, 1), -np.inf)
    return ids, logs, np.maximum(rest, 0).astype(np.float32), tail_log_mean.astype(np.float16)


SAMPLE_STRIDE = 8  # largest_ids: every 8th class estimates each row's threshold


def largest_ids(values, k):
    """(n, C) -> (n, k) the column ids of each row's k largest values, in no order (among equal values at the
    k-th, any of them), as np.argpartition's but about 3 times faster at C = 5,270, k = 50, where it was most of
    the probability store's time: every SAMPLE_STRIDE-th class of a row sets a threshold that about 1.5 k of its
    values pass, and only those are partitioned. A row where fewer than k or more than 8 k pass (many equal
    values) is partitioned whole."""
    n, c = values.shape
    if c <= 4 * k or n == 0:
        return np.argpartition(values, c - k, axis=1)[:, c - k:]
    sample = np.sort(values[:, ::SAMPLE_STRIDE], axis=1)  # numpy sorts faster than it partitions
    threshold = sample[:, -min(sample.shape[1], -(-3 * k // (2 * SAMPLE_STRIDE)))]
    passed = values >= threshold[:, None]
    counts = np.count_nonzero(passed, axis=1)
    ids = np.empty((n, k), dtype=np.intp)
    whole = np.flatnonzero((counts < k) | (counts > 8 * k))
    if len(whole):
        ids[whole] = np.argpartition(values[whole], c - k, axis=1)[:, c - k:]
        passed[whole] = False
        counts[whole] = 0
    rows = np.flatnonzero(counts)
    if len(rows):
        flat = np.flatnonzero(passed)  # row by row
        row_of = flat // c
        starts = np.cumsum(counts) - counts
        at = np.arange(len(flat)) - starts[row_of]  # each candidate's place among its row's
        width = int(counts.max())
        candidates = np.full((n, width), -1, dtype=np.intp)
        candidate_values = np.full((n, width), -np.inf, dtype=np.float64)
        candidates[row_of, at] = flat - row_of * c
        candidate_values[row_of, at] = values.reshape(-1)[flat]
        picked = np.argpartition(candidate_values[rows], width - k, axis=1)[:, width - k:]
        ids[rows] = np.take_along_axis(candidates[rows], picked, axis=1)
    return ids


def from_top_k(ids, logs, tail_log_mean, num_classes):
    """The (..., C) float32 probabilities of `top_k`'s output: the kept values in place, and each other
    class at the geometric mean of their positive probabilities. The geometric, not the arithmetic, mean
    (the remaining mass spread evenly): a class outside an image's top K is typically far below the
    few that hold most of that mass, and the product over pictures (m0) adds their logs. Never below
    the smallest positive float32 where there is any, so m0 meets a zero only where the network gave
    one (every other class zero)."""
    tail = np.exp(tail_log_mean.astype(np.float32))
    tail = np.where(np.isfinite(tail_log_mean), np.maximum(tail, np.finfo(np.float32).tiny), 0.0)
    dense = np.empty((*ids.shape[:-1], num_classes), dtype=np.float32)
    dense[...] = tail[..., None]
    np.put_along_axis(dense, ids.astype(np.int64), np.exp(logs.astype(np.float32)), axis=-1)
    return dense


def first_occurrences(digests):
    """Positions of the first image of each distinct MD5 in a product (for --product-unique-md5)."""
    seen, keep = set(), []
    for position, digest in enumerate(digests):
        if digest not in seen:
            seen.add(digest)
            keep.append(position)
    return keep
