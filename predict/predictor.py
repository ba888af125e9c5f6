"""Batches prepared products through every model and turns each finished product into class ids.

Views of many products are packed into fixed-size batches; every model runs on each batch.
When all views of a product have been through the models, its probabilities are reduced as
the original solution's predict.py did (predict.probability): views -> each model's image
mean; the first k models -> the image's mean for each requested k; an image whose MD5 is in
the training dictionary gets the dictionary's probability instead; the images -> the
product by their product (m0) and their sum (m1). Only the resulting class ids are kept, so
memory does not grow with the test set.

With a ForwardPlan (predict.forward_plan) the workers do not even decode the pictures the
dictionary answers or that repeat an earlier picture of the run: a repeat takes the image
mean computed for the first occurrence, held in a row of a file on disk (predict.repeat_spill)
only from that occurrence to its last use. `product_classes` is the one reduction from image means to classes; the
probability store's ensembles (predict.ensemble) call it too.

With a store that keeps features (--save-features), each model's penultimate features of every view
are kept per picture beside its image means, reused for repeats through the same rows.

A network of product mosaics (not the original's: its input settings' mosaic layout) sees each product once,
through the views of its mosaic, batched apart from the pictures' views (the `_mosaic` methods). Its view mean,
the product's probability, becomes that model's image mean of every usable picture of the product when the
product is finished (`_apply_mosaic`), after the repeats have taken their first occurrences' means: the
product's own mosaic, never the one of the product a repeated picture was first seen in. The mean over the
models, the MD5 override, m0/m1 and the probability store then take it as any model's: one model among k at
every picture (docs/beyond.md).
"""
import collections
import time

import numpy as np

from predict import probability
from predict.preprocess import Resize
from predict.repeat_spill import RepeatSpill

CATE_LEVELS = (3, 1)  # 3: a class per category; 1: the class index within the category's level-1 group


class Variant:
    """One output of a run: the first `num_models` models, one product reduction (m0 product, m1 sum)."""

    def __init__(self, num_models, reduction):
        self.num_models = num_models
        self.reduction = reduction
        self.tag = f"e{num_models}.m{probability.PRODUCT_REDUCTIONS.index(reduction)}"

    def __repr__(self):
        return f"{self.tag} ({self.num_models} models, {self.reduction} over the pictures)"


def make_variants(num_models, ensembles):
    """The main output (all models, m0) first, then m0 and m1 for each k of --ensembles, as the original."""
    variants = [Variant(num_models, "product")]
    for k in ensembles:
        for reduction in probability.PRODUCT_REDUCTIONS:
            variants.append(Variant(k, reduction))
    return variants


def labels_of(categories, category_ids, cate_level=3):
    """The output class of each category id for a model of `cate_level`; -1 where not in the CSV."""
    class_ids = categories.classes_of(category_ids)
    if cate_level == 3:
        return class_ids
    if cate_level == 1:
        return np.where(class_ids >= 0, categories.level1_sub_class_ids[class_ids], -1)
    raise ValueError(f"--cate-level {cate_level}: expected one of {CATE_LEVELS}")


def input_groups(models):
    """(inputs, input of each model): the distinct (image shape, predict.preprocess.Resize) the models take,
    in first-use order, for which the workers prepare views, and the index into them of each model's. The input of
    a network of product mosaics has its data.mosaic.MosaicLayout third (is_mosaic_input)."""
    inputs, of_model = [], []
    for model in models:
        layout = model.input.mosaic_layout
        key = (tuple(model.input.image_shape), Resize.of(model.input)) + ((layout,) if layout is not None else ())
        if key not in inputs:
            inputs.append(key)
        of_model.append(inputs.index(key))
    return inputs, of_model


def is_mosaic_input(key):
    """Whether an input of input_groups is a network of product mosaics' (its key holds a layout)."""
    return len(key) > 2


class Md5Override:
    """Per-image probabilities from the training MD5 dictionary, over the model's output classes."""

    def __init__(self, dictionary, categories, kind, num_classes, cate_level=3):
        self.table = dictionary.images
        self.categories = categories
        self.kind = kind
        self.num_classes = num_classes
        self.cate_level = cate_level

    def answered(self, digests, found=None):
        """Whether the dictionary sets each image's probability (bool array), without building the vectors;
        each dictionary entry is judged once however often its MD5 occurs. `found`: the table's
        `find(digests)`, when already known."""
        answered = np.zeros(len(digests), dtype=bool)
        if self.kind == "none" or not len(digests):
            return answered
        found = self.table.find(digests) if found is None else found
        entries, where = np.unique(found[found >= 0], return_inverse=True)
        judged = np.zeros(len(entries), dtype=bool)
        for e, position in enumerate(entries.tolist()):
            known = labels_of(self.categories, list(self.table.entry(position)), self.cate_level) >= 0
            judged[e] = probability.md5_answers(int(known.sum()), self.kind)
        answered[found >= 0] = judged[where]
        return answered

    def lookup(self, digests, found=None, named=False):
        """(overrides, named classes) of one product's pictures, each dictionary entry read once: overrides
        {image position: override probability}; with `named`, the classes the dictionary names for any of the
        pictures, whatever the override kind (the probability store serves them all), each entry's most counted
        first, in picture order, without repeats (else None). `found`: the table's `find(digests)`, when
        already known (the forward plan's)."""
        overrides, named_classes = {}, [] if named else None
        if not len(digests) or (self.kind == "none" and not named):
            return overrides, None if named_classes is None else np.zeros(0, np.int64)
        positions = self.table.find(digests) if found is None else found
        for position, at in enumerate(positions.tolist()):
            if at < 0:
                continue
            entry = self.table.entry(at)  # {category_id: count}, first seen first
            overridden = not (self.kind == "none" or (self.kind == "unique" and len(entry) > 1))
            if not (overridden or named):
                continue
            labels = labels_of(self.categories, list(entry), self.cate_level)
            known = labels >= 0  # a category missing from the CSV cannot be predicted
            counts = np.asarray(list(entry.values()))
            if named:
                most_first = np.argsort(-counts, kind="stable")  # first seen first among equal counts
                named_classes.extend(labels[most_first][known[most_first]].tolist())
            if not overridden:
                continue
            vector = probability.md5_override(labels[known], counts[known], self.num_classes, self.kind)
            if vector is not None:
                overrides[position] = vector
        return overrides, None if named_classes is None else np.asarray(list(dict.fromkeys(named_classes)), np.int64)

    def named_classes(self, digests, found=None):
        """The classes the dictionary names for any of a product's pictures (`lookup`'s)."""
        return self.lookup(digests, found, named=True)[1]

    def __call__(self, digests, found=None):
        """{image position: override probability} for the images of one product (`lookup`'s)."""
        return self.lookup(digests, found)[0]


def image_ensembles(model_probs, decoded, overrides, ensemble_sizes, digests=None):
    """{k: (pictures, C) probabilities of a product's pictures from the first k models}, MD5 overrides in
    place, in picture order, or None without any usable picture. `model_probs` (models, images, C):
    each model's image mean (rows of undecoded pictures are ignored); `overrides` {position: vector};
    `digests`: given, a repeated picture of the product counts once (--product-unique-md5)."""
    positions = sorted(set(np.flatnonzero(decoded).tolist()) | set(overrides))
    if digests is not None:
        keep = set(probability.first_occurrences(digests))
        positions = [p for p in positions if p in keep]
    if not positions:
        return None
    image_probs = probability.ensemble_means(model_probs[:, positions], ensemble_sizes)
    for i, position in enumerate(positions):
        if position in overrides:
            for probs in image_probs.values():
                probs[i] = overrides[position]
    return image_probs


def product_classes(image_probs, variants):
    """The class of each variant from `image_ensembles`' output (class 0 without any usable picture)."""
    classes = {}  # (k, reduction) -> class: the main output is also e{all}.m0
    for variant in variants:
        key = (variant.num_models, variant.reduction)
        if key not in classes:
            classes[key] = 0 if image_probs is None else int(
                np.argmax(probability.product_scores(image_probs[key[0]], key[1])))
    return [classes[(v.num_models, v.reduction)] for v in variants]


def take_batch(queue, batch_size, inputs, rows_name):
    """One batch from the front of `queue` ([pending product, its first row not yet batched] items, each product's
    row count its prepared product's `rows_name`): ({input index of `inputs`: (batch_size, 3, H, W) views, the last
    batch padded to the bound shape}, slots (pending, first row, rows taken), rows taken)."""
    parts, slots, rows = [], [], 0  # parts[j]: a product's views at each of `inputs`
    while queue and rows < batch_size:
        item = queue[0]
        pending, first = item
        total = getattr(pending.prepared, rows_name)
        take = min(total - first, batch_size - rows)
        parts.append([pending.prepared.views[i][first:first + take] for i in inputs])
        slots.append((pending, first, take))
        rows += take
        item[1] += take
        if item[1] == total:
            queue.popleft()
    batches = [np.concatenate(views) if len(views) > 1 else views[0] for views in zip(*parts)]
    if rows < batch_size:  # the last batch: pad to the bound shape
        batches = [np.concatenate([batch, np.zeros((batch_size - rows, *batch.shape[1:]), np.uint8)])
                   for batch in batches]
    return dict(zip(inputs, batches)), slots, rows


class _Pending:
    __slots__ = ("prepared", "probs", "done", "means", "missing", "row", "first_image", "feature_rows", "features",
                 "views_complete", "mosaic_view_probs", "mosaic_left", "mosaic_probs")

    def __init__(self, prepared, num_models, num_classes, row, first_image, feature_dims=None):
        self.prepared = prepared
        self.probs = np.zeros((num_models, prepared.num_rows, num_classes), dtype=np.float32)
        self.done = 0
        self.means = np.zeros((num_models, prepared.num_images, num_classes), dtype=np.float32)
        self.missing = 0  # repeats whose first occurrence is not computed yet
        self.row, self.first_image = row, first_image
        self.views_complete = False  # every view of the product's own pictures through the models
        # of the mosaic models: the mosaic's view rows as computed, how many are still to come, their view mean
        self.mosaic_view_probs, self.mosaic_left, self.mosaic_probs = None, 0, None
        # per model: the features of each view row as computed, then (views, images, D) per picture
        self.feature_rows = self.features = None
        if feature_dims is not None:
            self.feature_rows = [np.zeros((prepared.num_rows, dim), np.float32) for dim in feature_dims]
            self.features = [np.zeros((prepared.num_views, prepared.num_images, dim), np.float32)
                             for dim in feature_dims]


class Predictor:
    """Feed `add(prepared_product)`, then `flush()`; read `class_ids[variant_index][position]`.

    `plan` (a ForwardPlan, None: forward every picture) says which pictures the workers skipped;
    `store` (a prob_store.StoreWriter or None) receives every image's model means, and its features
    when the store keeps them (the models then bound with theirs: predict.models.Model `features`);
    `spill_dir`: the folder of the repeated pictures' file (None: the system's temporary folder).
    `close()` removes that file."""

    def __init__(self, models, batch_size, num_classes, variants, first_product, num_products,
                 md5_override=None, product_unique_md5=False, plan=None, store=None, spill_dir=None):
        self.models, self.batch_size = models, batch_size
        inputs, self.input_of_model = input_groups(models)  # which of a product's view sets each model takes
        # the models of single pictures run on the pictures' batches, those of product mosaics on the mosaics'
        self.picture_inputs = [i for i, key in enumerate(inputs) if not is_mosaic_input(key)]
        self.picture_models = [m for m, i in enumerate(self.input_of_model) if i in self.picture_inputs]
        self.mosaic_models = [m for m, i in enumerate(self.input_of_model) if i not in self.picture_inputs]
        self.num_classes, self.variants = num_classes, variants
        self.first_product = first_product  # products [first, first + num) of the BSON are rows [0, num)
        self.md5_override = md5_override
        self.product_unique_md5 = product_unique_md5
        self.plan, self.store = plan, store
        self.feature_dims = store.feature_dims if store is not None else None  # None: no features kept
        self.class_ids = np.full((len(variants), num_products), -1, dtype=np.int64)
        self.seen = np.zeros(num_products, dtype=bool)
        self.queue = collections.deque()  # (pending, first view row not yet batched)
        self.queued_rows = 0
        self.in_flight = None  # (outputs being computed, their features or None, their slots)
        self.ensemble_sizes = sorted({v.num_models for v in variants})
        # per admitted group of the plan: its source computed yet, whether its picture decoded (an
        # undecodable one gets no row), its row of the spill (-1: none, or freed), the uses left
        self.spill = self.published = self.group_decoded = self.row_of = self.uses_left = None
        if plan is not None and len(plan.uses):
            self.spill = RepeatSpill(spill_dir, len(models), num_classes,
                                     store.feature_views if self.feature_dims is not None else 1, self.feature_dims)
            self.row_of = np.full(len(plan.uses), -1, dtype=np.int64)
            self.uses_left = plan.uses.copy()
            self.group_decoded = np.zeros(len(plan.uses), dtype=bool)
            self.published = np.zeros(len(plan.uses), dtype=bool)
        self.waiting = collections.defaultdict(list)  # group -> [(pending, position)] until it is computed
        self.mosaic_queue = collections.deque()  # (pending, first mosaic view row not yet batched)
        self.mosaic_queued_rows = 0
        self.completed = 0
        self.images = 0
        self.images_forwarded = 0
        self.images_overridden = 0
        self.images_reused = 0
        self.products_without_picture = 0
        self.forward_seconds = 0.0

    def add(self, prepared):
        row = prepared.product - self.first_product
        if not 0 <= row < len(self.seen) or self.seen[row]:
            raise ValueError(f"product {prepared.product} unexpected or received twice")
        self.seen[row] = True
        first_image = self.plan.first_image[row] if self.plan is not None else -1
        pending = _Pending(prepared, len(self.models), self.num_classes, row, first_image, self.feature_dims)
        self.images += prepared.num_images
        self.images_forwarded += sum(prepared.valid)
        if self.plan is not None:
            self._borrow_repeats(pending)
        if self.mosaic_models:  # before _views_done, which finishes a product only once its mosaic is through
            self._queue_mosaic(pending)
        if prepared.num_rows == 0:
            self._views_done(pending)
            return
        self.queue.append([pending, 0])
        self.queued_rows += prepared.num_rows
        while self.queued_rows >= self.batch_size:
            self._run_batch()

    def flush(self):
        while self.queued_rows:
            self._run_batch()
        if self.in_flight is not None:
            previous, self.in_flight = self.in_flight, None
            self._scatter(*previous)
        while self.mosaic_queued_rows:
            self._run_mosaic_batch()
        if self.waiting:
            raise ValueError(f"internal: {len(self.waiting)} repeated pictures never computed")

    def close(self):
        """Remove the repeated pictures' file (it is unlinked already: this frees its space now)."""
        if self.spill is not None:
            self.spill.close()

    @property
    def live_repeats(self):
        """Repeated pictures whose means are still held (0 once every repeat has had its use)."""
        return 0 if self.spill is None else self.spill.live

    # ---- repeats: computed once, reused ---------------------------------------------------------
    def _borrow_repeats(self, pending):
        """Take (or wait for) the image means of the pictures the plan left to an earlier occurrence."""
        prepared = pending.prepared
        for position in self.plan.repeats_in(pending.first_image, prepared.num_images).tolist():
            group = int(self.plan.group[pending.first_image + position])
            if self.published[group]:
                self._take(pending, position, group)
            else:
                pending.missing += 1
                self.waiting[group].append((pending, position))

    def _take(self, pending, position, group):
        decoded = bool(self.group_decoded[group])
        if decoded:
            means, features = self.spill.load(int(self.row_of[group]))
            pending.means[:, position] = means
            if features is not None:
                for model_features, loaded in zip(pending.features, features):
                    model_features[:, position] = loaded
        pending.prepared.valid[position] = decoded
        self.images_reused += 1
        self.uses_left[group] -= 1
        if self.uses_left[group] == 0 and decoded:  # its last use: free its row
            self.spill.release(int(self.row_of[group]))
            self.row_of[group] = -1

    def _publish(self, pending):
        """Offer the image means of this product's first occurrences to the repeats that need them."""
        prepared = pending.prepared
        for position in self.plan.sources_in(pending.first_image, prepared.num_images).tolist():
            group = int(self.plan.group[pending.first_image + position])
            self.published[group] = True
            if prepared.valid[position]:
                self.group_decoded[group] = True
                features = None
                if pending.features is not None:
                    features = [model_features[:, position] for model_features in pending.features]
                self.row_of[group] = self.spill.store(pending.means[:, position], features)
            for waiter, waiter_position in self.waiting.pop(group, []):
                self._take(waiter, waiter_position, group)
                waiter.missing -= 1
                if waiter.missing == 0 and waiter.done == waiter.prepared.num_rows and waiter is not pending \
                        and waiter.mosaic_left == 0:
                    self._finish(waiter)

    # ---- batches --------------------------------------------------------------------------------
    def _run_batch(self):
        batches, slots, rows = take_batch(self.queue, self.batch_size, self.picture_inputs, "num_rows")
        self.queued_rows -= rows
        # Double buffering: start this batch's forward passes (MXNet runs them asynchronously),
        # then reduce the previous batch's products while they compute.
        start = time.perf_counter()
        inputs, outputs = {}, []  # models of one input and normalisation share its conversion
        features = [] if self.feature_dims is not None else None
        for m in self.picture_models:
            model, input_index = self.models[m], self.input_of_model[m]
            key = (input_index, model.input.rgb_mean, model.input.rgb_scale)
            if key not in inputs:
                inputs[key] = model.normalise(batches[input_index])
            if features is None:
                outputs.append(model.forward(inputs[key]))
            else:
                probs, model_features = model.forward_features(inputs[key])
                outputs.append(probs)
                features.append(model_features)
        self.forward_seconds += time.perf_counter() - start
        previous, self.in_flight = self.in_flight, (outputs, features, slots)
        if previous is not None:
            self._scatter(*previous)

    def _scatter(self, outputs, features, slots):
        start = time.perf_counter()
        outputs = [output.asnumpy() for output in outputs]  # waits for the forward passes
        if features is not None:
            rows = sum(take for _, _, take in slots)  # the rest is the last batch's padding
            features = [model_features.asnumpy()[:rows].astype(np.float32, copy=False)
                        for model_features in features]
            for m, model_features in enumerate(features):  # before any of them is stored (the uint8 scale)
                self.store.observe_features(m, model_features)
        self.forward_seconds += time.perf_counter() - start
        at = 0
        for pending, first, take in slots:
            for m, output in zip(self.picture_models, outputs):
                pending.probs[m, first:first + take] = output[at:at + take]
            if features is not None:
                for rows_of_model, model_features in zip(pending.feature_rows, features):
                    rows_of_model[first:first + take] = model_features[at:at + take]
            at += take
            pending.done += take
            if pending.done == pending.prepared.num_rows:
                self._views_done(pending)

    def _views_done(self, pending):
        """Every view of the product's own pictures is through the models: their image means."""
        prepared = pending.prepared
        decoded = [i for i, ok in enumerate(prepared.valid) if ok and (self.plan is None or
                                                                      self.plan.forwarded(pending.first_image, i))]
        if decoded and self.picture_models:  # (mosaic models alone: no picture views; _apply_mosaic fills them)
            pending.means[:, decoded] = probability.view_mean(pending.probs, prepared.num_views)
            if pending.features is not None:  # view rows are picture by picture: (pictures, views, D)
                for features, rows in zip(pending.features, pending.feature_rows):
                    features[:, decoded] = rows.reshape(len(decoded), prepared.num_views, -1).transpose(1, 0, 2)
        pending.probs = pending.feature_rows = None
        pending.views_complete = True
        if self.plan is not None:
            self._publish(pending)
        if pending.missing == 0 and pending.mosaic_left == 0:
            self._finish(pending)

    # ---- product mosaics: one per product, through the mosaic models ---------------------------------
    def _queue_mosaic(self, pending):
        """Queue the views of the product's mosaic (none when no picture decoded) for the mosaic models."""
        rows = pending.prepared.mosaic_rows
        pending.mosaic_left = rows
        if not rows:
            return
        pending.mosaic_view_probs = np.zeros((len(self.mosaic_models), rows, self.num_classes), dtype=np.float32)
        self.mosaic_queue.append([pending, 0])
        self.mosaic_queued_rows += rows
        while self.mosaic_queued_rows >= self.batch_size:
            self._run_mosaic_batch()

    def _run_mosaic_batch(self):
        """One batch of mosaic views through every mosaic model, waited for (mosaics are a product's, not a
        picture's: a few per batch of pictures)."""
        inputs = sorted({self.input_of_model[m] for m in self.mosaic_models})
        batches, slots, rows = take_batch(self.mosaic_queue, self.batch_size, inputs, "mosaic_rows")
        self.mosaic_queued_rows -= rows
        start = time.perf_counter()
        outputs = [self.models[m].forward(self.models[m].normalise(batches[self.input_of_model[m]])).asnumpy()
                   for m in self.mosaic_models]
        self.forward_seconds += time.perf_counter() - start
        at = 0
        for pending, first, take in slots:
            for j, output in enumerate(outputs):
                pending.mosaic_view_probs[j, first:first + take] = output[at:at + take]
            at += take
            pending.mosaic_left -= take
            if pending.mosaic_left == 0:
                pending.mosaic_probs = probability.view_mean(pending.mosaic_view_probs, pending.prepared.num_views)[:, 0]
                pending.mosaic_view_probs = None
                if pending.views_complete and pending.missing == 0:
                    self._finish(pending)

    def _apply_mosaic(self, pending):
        """Each usable picture of the product gets the product's mosaic probability as each mosaic model's image
        mean, in place of what the repeat cache or the pictures' batches left there."""
        usable = np.flatnonzero(pending.prepared.valid)
        if not len(usable):
            return
        if pending.mosaic_probs is None:
            raise ValueError(f"internal: product {pending.prepared.product} has usable pictures but no mosaic")
        pending.means[np.ix_(self.mosaic_models, usable)] = pending.mosaic_probs[:, None, :]

    def _finish(self, pending):
        prepared = pending.prepared
        if self.mosaic_models:
            self._apply_mosaic(pending)
        overrides, named = {}, None
        if self.md5_override is not None:
            found = None if self.plan is None or self.plan.found is None else \
                self.plan.found[pending.first_image:pending.first_image + prepared.num_images]
            # the store keeps the classes the dictionary names, read in the same pass as the overrides
            overrides, named = self.md5_override.lookup(prepared.digests, found, named=self.store is not None)
        self.images_overridden += len(overrides)
        if self.store is not None:
            self.store.write(pending.row, pending.means, prepared.valid, prepared.digests, pending.features, named)
        digests = prepared.digests if self.product_unique_md5 else None
        image_probs = image_ensembles(pending.means, prepared.valid, overrides, self.ensemble_sizes, digests)
        if image_probs is None:  # no usable picture and no dictionary entry: nothing to go on
            self.products_without_picture += 1
        self.class_ids[:, pending.row] = product_classes(image_probs, self.variants)
        self.completed += 1
