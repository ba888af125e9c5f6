"""What learned fusion fits on: one pass over probability stores (predict.prob_store) gives, per product,
each model's log product over its usable pictures restricted to a few candidate classes, its class,
and what the fixed reductions answer (each model alone, the original's m0 and m1 of all models).

Candidates: the `candidates` classes of highest summed log product over the models, with every fixed
reduction's answer among them, so that a learned fusion can always answer what they answer. A
product whose class is not a candidate is counted wrong for every learned method, and not fitted on.
"""
import dataclasses
import logging

import numpy as np
from tqdm import tqdm

from predict.predictor import Variant, image_ensembles, labels_of, product_classes
from predict.ensemble import iter_products, store_model_names

log = logging.getLogger(__name__)



@dataclasses.dataclass
class FusionTable:
    product_ids: np.ndarray      # (P,)
    labels: np.ndarray           # (P,) class ids; -1: unlabelled or not in the category CSV
    usable: np.ndarray           # (P,) decoded pictures
    candidates: np.ndarray       # (P, N) class ids, best first by the summed log products
    candidate_logs: np.ndarray   # (P, M, N) each model's log product over the usable pictures
    truth_position: np.ndarray   # (P,) where the label is among the candidates; -1: not there
    fixed: dict                  # name -> (P,) the class a fixed reduction answers
    model_names: list
    num_classes: int

    @property
    def labelled(self):
        return np.flatnonzero(self.labels >= 0)


def model_log_products(model_probs, decoded):
    """(models, pictures, C) -> (models, C): each model's log of the product over decoded pictures."""
    usable = model_probs[:, np.flatnonzero(decoded)]
    return np.log(np.maximum(usable, np.finfo(np.float32).tiny)).sum(axis=1)


def product_candidates(log_products, must_have, count):
    """The `count` best classes by summed log products, with the classes of `must_have` among them."""
    total = log_products.sum(axis=0)
    best = np.argsort(-total, kind="stable")[:count]
    missing = [c for c in dict.fromkeys(must_have) if c not in set(best.tolist())]
    if missing:
        best = np.concatenate([best[:count - len(missing)], missing])
    return best


def build_table(stores, categories, cate_level, candidates=32):
    """A FusionTable of every product of `stores` (checked to agree, as predict.ensemble does)."""
    first = stores[0]
    model_names = store_model_names(stores)
    num_models, num_classes = len(model_names), first.meta["num_classes"]
    candidates = min(candidates, num_classes)
    num_images = first.concatenated("num_images").astype(np.int64)
    category_ids = first.concatenated("category_id")
    labels = np.where(category_ids >= 0, labels_of(categories, category_ids, cate_level), -1)
    num_products = len(num_images)
    variants = [Variant(num_models, "product"), Variant(num_models, "sum")]  # the original's m0, m1
    table = FusionTable(product_ids=first.concatenated("product_id"), labels=labels,
                        usable=np.zeros(num_products, dtype=np.int64),
                        candidates=np.zeros((num_products, candidates), dtype=np.int32),
                        candidate_logs=np.zeros((num_products, num_models, candidates), dtype=np.float32),
                        truth_position=np.full(num_products, -1, dtype=np.int64),
                        fixed={name: np.zeros(num_products, dtype=np.int64)
                               for name in model_names + ["m0", "m1"]},
                        model_names=model_names, num_classes=num_classes)
    for row, means, decoded, _ in tqdm(iter_products(stores), total=num_products, unit="product",
                                       desc="fusion table"):
        table.usable[row] = int(decoded.sum())
        if table.usable[row] == 0:
            continue  # nothing to go on: every method answers class 0, as predict.predict does
        log_products = model_log_products(means, decoded)
        fixed = product_classes(image_ensembles(means, decoded, {}, [num_models]), variants)
        singles = np.argmax(log_products, axis=1)
        for name, answer in zip(model_names + ["m0", "m1"], list(singles) + fixed):
            table.fixed[name][row] = answer
        best = product_candidates(log_products, fixed + singles.tolist(), candidates)
        table.candidates[row] = best
        table.candidate_logs[row] = log_products[:, best]
        where = np.flatnonzero(best == labels[row])
        table.truth_position[row] = where[0] if len(where) else -1
    return table
