"""Learned fusion weights (not the original's): non-negative per-model weights and a temperature, fitted
by cross-entropy on labelled products, in place of the original's equal-weight mean.

The fused log-probability of picture i is, up to its normaliser,
    sum over models m of a[g, h(c), m] * log p_m,i(c)
with a >= 0: a weighted geometric pooling whose total weight is an inverse temperature. g is the
product's count group (its usable pictures, 1, 2, 3, 4+, with --per-count; else one group), h(c)
the class group (the --frequent-classes most frequent classes and the rest; else one group): the
weighting by picture count is outrunner's, the frequent/rare split NighTurs'. Over a product the
pictures multiply (m0), so its class scores are sum_m a[g, h(c), m] * L_m(c) with L_m(c) =
sum_i log p_m,i(c), and the pictures' normalisers, constant over classes, drop out of the softmax.
Fitting sees each product's candidate classes only (predict.fusion_table), where the fit's softmax
puts almost all of its mass.
"""
import dataclasses
import logging

import numpy as np

log = logging.getLogger(__name__)

COUNT_GROUPS = 4  # 1, 2, 3, 4 or more usable pictures


def count_groups(usable_pictures, per_count):
    """The count group of each product (0-based), one group without `per_count`."""
    if not per_count:
        return np.zeros(len(usable_pictures), dtype=np.int64)
    return np.clip(np.asarray(usable_pictures, dtype=np.int64), 1, COUNT_GROUPS) - 1


def class_groups(labels, num_classes, frequent):
    """Group 0 for the `frequent` most frequent classes among `labels`, 1 for the others (all 0 when
    `frequent` is 0). Ties go to the lower class id, so that the grouping is reproducible."""
    groups = np.zeros(num_classes, dtype=np.int64)
    if frequent:
        counts = np.bincount(labels[labels >= 0], minlength=num_classes)
        order = np.lexsort((np.arange(num_classes), -counts))
        groups[order[frequent:]] = 1
    return groups


def per_candidate(a, groups, class_of):
    """(n, M, N) weights of each product's candidates: a[its count group, the candidate's class group, m]."""
    return np.transpose(a[groups[:, None], class_of], (0, 2, 1))


@dataclasses.dataclass
class WeightFusion:
    """a[count group, class group, model] = exp(theta); `class_group` per class id."""
    theta: np.ndarray
    class_group: np.ndarray
    per_count: bool

    @classmethod
    def initial(cls, num_models, class_group, per_count):
        groups = COUNT_GROUPS if per_count else 1
        # the equal-weight geometric mean of the models: each weight 1/M, temperature 1
        theta = np.full((groups, int(class_group.max()) + 1, num_models), -np.log(num_models))
        return cls(theta=theta, class_group=class_group, per_count=per_count)

    @property
    def weights(self):
        return np.exp(self.theta)

    def product_scores(self, table, rows):
        """(rows, candidates) class scores of products `rows` of a FusionTable."""
        groups = count_groups(table.usable[rows], self.per_count)
        per_class = per_candidate(self.weights, groups, self.class_group[table.candidates[rows]])
        return (per_class * table.candidate_logs[rows]).sum(axis=1)

    def fit(self, table, rows, iterations=300, learning_rate=0.05):
        """Adam on the mean cross-entropy of products `rows` whose class is among their candidates."""
        rows = rows[table.truth_position[rows] >= 0]
        if not len(rows):
            raise ValueError("no labelled product with its class among the candidates to fit on")
        logs, truth = table.candidate_logs[rows], table.truth_position[rows]
        groups = count_groups(table.usable[rows], self.per_count)
        class_of = self.class_group[table.candidates[rows]]  # (n, N)
        moment, second = np.zeros_like(self.theta), np.zeros_like(self.theta)
        loss = None
        for step in range(1, iterations + 1):
            a = np.exp(self.theta)
            per_class = per_candidate(a, groups, class_of)
            scores = (per_class * logs).sum(axis=1)
            scores -= scores.max(axis=1, keepdims=True)
            probs = np.exp(scores)
            total = probs.sum(axis=1, keepdims=True)
            loss = float(np.mean(np.log(total[:, 0]) - scores[np.arange(len(rows)), truth]))
            error = probs / total
            error[np.arange(len(rows)), truth] -= 1
            error /= len(rows)
            gradient = np.zeros_like(self.theta)
            for g in np.unique(groups):
                mine = groups == g
                for h in range(self.theta.shape[1]):
                    # d loss / d a[g, h, m] = sum over products of g and classes of h of error * L_m
                    masked = np.where(class_of[mine] == h, error[mine], 0.0)
                    gradient[g, h] = np.einsum("nc,nmc->m", masked, logs[mine])
            gradient *= a  # through a = exp(theta)
            moment = 0.9 * moment + 0.1 * gradient
            second = 0.999 * second + 0.001 * gradient ** 2
            self.theta = self.theta - learning_rate * (moment / (1 - 0.9 ** step)) / (
                np.sqrt(second / (1 - 0.999 ** step)) + 1e-8)
        return loss

    def image_probs(self, model_probs, usable):
        """(models, pictures, C) probabilities of one product's pictures (`usable` of them decoded) ->
        (pictures, C) fused ones."""
        group = int(count_groups([usable], self.per_count)[0])
        a = self.weights[group][self.class_group].T  # (M, C)
        logs = np.log(np.maximum(model_probs, np.finfo(np.float32).tiny))
        fused = np.einsum("mc,mic->ic", a, logs)
        fused -= fused.max(axis=1, keepdims=True)
        fused = np.exp(fused)
        return fused / fused.sum(axis=1, keepdims=True)

    def describe(self, model_names):
        """One line per (count group, class group): the normalised weights and the temperature."""
        lines = []
        for g in range(self.theta.shape[0]):
            for h in range(self.theta.shape[1]):
                a = np.exp(self.theta[g, h])
                where = [f"{g + 1}{'+' if g + 1 == COUNT_GROUPS else ''} pictures" if self.per_count else "",
                         ("frequent" if h == 0 else "rare") + " classes" if self.theta.shape[1] > 1 else ""]
                label = ", ".join(w for w in where if w) or "all products"
                weights = ", ".join(f"{name} {w:.3f}" for name, w in zip(model_names, a / a.sum()))
                lines.append(f"{label}: {weights}; temperature {1 / a.sum():.3f}")
        return lines

    def to_json(self):
        return {"theta": self.theta.tolist(), "class_group": self.class_group.tolist(), "per_count": self.per_count}

    @classmethod
    def from_json(cls, record):
        return cls(theta=np.asarray(record["theta"], dtype=np.float64),
                   class_group=np.asarray(record["class_group"], dtype=np.int64), per_count=bool(record["per_count"]))
