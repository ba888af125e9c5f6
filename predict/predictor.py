"""Batches prepared products through every model and turns each finished product into class ids.

Views of many products are packed into fixed-size batches; every model runs on each batch.
When all views of a product have been through the models, its probabilities are reduced:
views -> image (mean), MD5 override per image, images -> product (arithmetic and geometric
mean), models -> ensemble (mean of the first k models for each requested k). Only the
resulting class ids are kept, so memory does not grow with the test set.
"""
import collections
import time

import numpy as np

from predict import probability


class Variant:
    """One output of a run: the first `num_models` models, one product mean."""

    def __init__(self, num_models, product_mean):
        self.num_models = num_models
        self.product_mean = product_mean
        self.tag = f"e{num_models}.m{probability.PRODUCT_MEANS.index(product_mean)}"

    def __repr__(self):
        return f"{self.tag} ({self.num_models} models, {self.product_mean} mean)"


def make_variants(num_models, ensembles):
    """The main output (all models, arithmetic) first, then both means for each k of --ensembles."""
    variants = [Variant(num_models, "arithmetic")]
    for k in ensembles:
        for mean in probability.PRODUCT_MEANS:
            variants.append(Variant(k, mean))
    return variants


class Md5Override:
    """Per-image probabilities from the training MD5 dictionary, as class-id vectors."""

    def __init__(self, dictionary, categories, kind, num_classes):
        self.table = dictionary.images
        self.categories = categories
        self.kind = kind
        self.num_classes = num_classes

    def __call__(self, digests):
        """{image position: override probability} for the images of one product."""
        if self.kind == "none" or not digests:
            return {}
        overrides = {}
        for position, found in enumerate(self.table.find(digests).tolist()):
            if found < 0:
                continue
            entry = self.table.entry(found)
            class_ids = self.categories.classes_of(list(entry))
            known = class_ids >= 0  # a category missing from the CSV cannot be predicted
            vector = probability.md5_override(class_ids[known], np.asarray(list(entry.values()))[known],
                                              self.num_classes, self.kind)
            if vector is not None:
                overrides[position] = vector
        return overrides


class _Pending:
    __slots__ = ("prepared", "probs", "done")

    def __init__(self, prepared, num_models, num_classes):
        self.prepared = prepared
        self.probs = np.zeros((num_models, len(prepared.views), num_classes), dtype=np.float32)
        self.done = 0


class Predictor:
    """Feed `add(prepared_product)`, then `flush()`; read `class_ids[variant_index][position]`."""

    def __init__(self, models, normalise, batch_size, num_classes, variants, first_product, num_products,
                 md5_override=None, product_unique_md5=False):
        self.models, self.normalise, self.batch_size = models, normalise, batch_size
        self.num_classes, self.variants = num_classes, variants
        self.first_product = first_product  # products [first, first + num) of the BSON are rows [0, num)
        self.md5_override = md5_override
        self.product_unique_md5 = product_unique_md5
        self.class_ids = np.full((len(variants), num_products), -1, dtype=np.int64)
        self.seen = np.zeros(num_products, dtype=bool)
        self.queue = collections.deque()  # (pending, first view row not yet batched)
        self.queued_rows = 0
        self.in_flight = None  # (outputs being computed, their slots)
        self.means = sorted({v.product_mean for v in variants}, key=probability.PRODUCT_MEANS.index)
        self.completed = 0
        self.images = 0
        self.images_overridden = 0
        self.products_without_picture = 0
        self.forward_seconds = 0.0

    def add(self, prepared):
        row = prepared.product - self.first_product
        if not 0 <= row < len(self.seen) or self.seen[row]:
            raise ValueError(f"product {prepared.product} unexpected or received twice")
        self.seen[row] = True
        pending = _Pending(prepared, len(self.models), self.num_classes)
        self.images += prepared.num_images
        if len(prepared.views) == 0:
            self._finish(pending)
            return
        self.queue.append([pending, 0])
        self.queued_rows += len(prepared.views)
        while self.queued_rows >= self.batch_size:
            self._run_batch()

    def flush(self):
        while self.queued_rows:
            self._run_batch()
        if self.in_flight is not None:
            previous, self.in_flight = self.in_flight, None
            self._scatter(*previous)

    def _run_batch(self):
        parts, slots, rows = [], [], 0
        while self.queue and rows < self.batch_size:
            item = self.queue[0]
            pending, first = item
            take = min(len(pending.prepared.views) - first, self.batch_size - rows)
            parts.append(pending.prepared.views[first:first + take])
            slots.append((pending, first, take))
            rows += take
            item[1] += take
            if item[1] == len(pending.prepared.views):
                self.queue.popleft()
        self.queued_rows -= rows
        batch = np.concatenate(parts) if len(parts) > 1 else parts[0]
        if rows < self.batch_size:  # the last batch: pad to the bound shape
            batch = np.concatenate([batch, np.zeros((self.batch_size - rows, *batch.shape[1:]), np.uint8)])
        # Double buffering: start this batch's forward passes (MXNet runs them asynchronously),
        # then reduce the previous batch's products while they compute.
        start = time.perf_counter()
        data = self.normalise(batch)
        outputs = [model.forward(data) for model in self.models]
        self.forward_seconds += time.perf_counter() - start
        previous, self.in_flight = self.in_flight, (outputs, slots)
        if previous is not None:
            self._scatter(*previous)

    def _scatter(self, outputs, slots):
        start = time.perf_counter()
        outputs = [output.asnumpy() for output in outputs]  # waits for the forward passes
        self.forward_seconds += time.perf_counter() - start
        at = 0
        for pending, first, take in slots:
            for m, output in enumerate(outputs):
                pending.probs[m, first:first + take] = output[at:at + take]
            at += take
            pending.done += take
            if pending.done == len(pending.prepared.views):
                self._finish(pending)

    def _finish(self, pending):
        prepared = pending.prepared
        num_models = len(self.models)
        # image probabilities per model, for the decodable pictures, in picture order
        per_image = {}
        if len(prepared.views):
            image_probs = np.stack([probability.view_mean(pending.probs[m], prepared.num_views)
                                    for m in range(num_models)], axis=1)  # (images, models, C)
            valid_positions = [i for i, ok in enumerate(prepared.valid) if ok]
            per_image = dict(zip(valid_positions, image_probs))
        if self.md5_override is not None:
            for position, vector in self.md5_override(prepared.digests).items():
                per_image[position] = np.broadcast_to(vector, (num_models, self.num_classes))
                self.images_overridden += 1
        positions = sorted(per_image)
        if self.product_unique_md5:
            keep = set(probability.first_occurrences(prepared.digests))
            positions = [p for p in positions if p in keep]
        if positions:
            stacked = np.stack([per_image[p] for p in positions], axis=1)  # (models, images, C)
            product_probs = {mean: np.stack([probability.product_mean(stacked[m], mean) for m in range(num_models)])
                             for mean in self.means}
        else:  # no usable picture and no dictionary entry: nothing to go on
            self.products_without_picture += 1
            uniform = np.full((num_models, self.num_classes), 1.0 / self.num_classes, dtype=np.float32)
            product_probs = {mean: uniform for mean in self.means}
        row = prepared.product - self.first_product
        for v, variant in enumerate(self.variants):
            ensemble_probs = product_probs[variant.product_mean][:variant.num_models].mean(axis=0)
            self.class_ids[v, row] = int(np.argmax(ensemble_probs))
        self.completed += 1
