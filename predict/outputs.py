"""What a prediction prints and writes besides the class ids, shared by predict.predict and
predict.ensemble (which must run without MXNet): the MD5 override of a run, the accuracy table
of every output, the per-category summary, the forward-pass counts and the CSVs themselves."""
import csv
import logging
import sys

import numpy as np

from cli.files import atomic_outputs
from cli.runner import UserError
from data.md5_dict import BUILD_COMMAND, Md5Dictionary
from predict import probability
from predict.predictor import Md5Override, labels_of
from predict.submission import write_submission

log = logging.getLogger(__name__)


def add_reduction_flags(group, ensembles=True):
    """The flags that choose the outputs from the image probabilities, the same for every command that
    writes a submission (`ensembles` False: one fused model, no first-k outputs)."""
    if ensembles:
        group.add_argument("--ensembles", type=int, nargs="*", default=[],
                           help="extra outputs of the first k models, e.g. 8 11 14")
    group.add_argument("--md5-dict", default=None, help=f"training MD5 dictionary .npz ({BUILD_COMMAND})")
    group.add_argument("--md5-dict-type", default="unique", choices=probability.MD5_DICT_TYPES,
                       help="how a known image MD5 sets its probability (unique: one-hot if single-category)")
    group.add_argument("--product-unique-md5", action="store_true", help="count repeated pictures of a product once")


def load_md5_override(md5_dict, md5_dict_type, categories, num_classes, cate_level):
    """The MD5 override of --md5-dict and --md5-dict-type for a model of `cate_level`; None without one."""
    if not md5_dict or md5_dict_type == "none":
        return None
    dictionary = Md5Dictionary.load(md5_dict, tables=("image",))  # the overrides are per picture
    if md5_dict_type == "majority" and not dictionary.first_seen_order:
        raise UserError(f"{md5_dict}: an older dictionary (format version 1) whose categories are sorted by id; "
                        "majority gives a tie to the category seen first in training: rebuild it with "
                        f"{BUILD_COMMAND} --force")
    log.info("MD5 dictionary %s: %d images (%s)", md5_dict, len(dictionary.images), md5_dict_type)
    return Md5Override(dictionary, categories, md5_dict_type, num_classes, cate_level)


def accuracy_table(variants, class_ids, labels):
    """One row per output: the main output (OUTPUT itself) first, then OUTPUT's .eK.mJ variants."""
    lines = [f"{'output':<8} {'models':>6} {'pictures':<8} {'accuracy':>9}"]
    for number, (variant, predicted) in enumerate(zip(variants, class_ids)):
        # the main output is computed like e{all}.m0, which --ensembles may list too: name it apart
        label = "main" if number == 0 else variant.tag
        lines.append(f"{label:<8} {variant.num_models:>6} {variant.reduction:<8} "
                     f"{float((predicted == labels).mean()):>9.5f}")
    return "\n".join(lines)


def category_summary_rows(predicted, labels):
    """Per label: (label, products, correct, most-confused label or None, its products), by label."""
    pairs, counts = np.unique(np.stack([labels, predicted], axis=1), axis=0, return_counts=True)
    rows = {}
    for (label, guess), count in zip(pairs.tolist(), counts.tolist()):
        row = rows.setdefault(label, [label, 0, 0, None, 0])
        row[1] += count
        if guess == label:
            row[2] = count
        elif count > row[4]:
            row[3], row[4] = guess, count
    return [rows[label] for label in sorted(rows)]


def write_category_summary(path, categories, predicted, labels, cate_level=3):
    """Per category (per sub-class id with --cate-level 1): products, correct, accuracy, the one it
    is most often mistaken for. `path` "-": to stdout."""
    level3 = cate_level == 3
    header = (["category_id", "class_id"] if level3 else ["sub_class_id"]) + [
        "products", "correct", "accuracy", "most_confused_" + ("category_id" if level3 else "sub_class_id"),
        "most_confused_products"] + (["name"] if level3 else [])
    lines = []
    for label, total, correct, confused, confused_count in category_summary_rows(predicted, labels):
        if level3:
            confused = "" if confused is None else categories.category_of(confused)
            lines.append([categories.category_of(label), label, total, correct, f"{correct / total:.4f}", confused,
                          confused_count, categories.level3_names[label]])
        else:
            lines.append([label, total, correct, f"{correct / total:.4f}", "" if confused is None else confused,
                          confused_count])
    if path == "-":
        csv.writer(sys.stdout).writerows([header] + lines)
        return
    with atomic_outputs(path) as (tmp,), open(tmp, "w", newline="") as fh:
        csv.writer(fh).writerows([header] + lines)


def report_accuracy(category_ids, categories, variants, class_ids, cate_level, print_summary, source):
    """On labelled products (`category_ids`; None: unlabelled): the accuracy table of every output, and
    the per-category summary of --print-summary (a path, or "-" for stdout)."""
    if not class_ids.shape[1]:
        return
    if category_ids is None:
        if print_summary:
            log.warning("--print-summary needs category_id in the BSON; %s has none", source)
        return
    labels = labels_of(categories, category_ids, cate_level)
    print(accuracy_table(variants, class_ids, labels))
    if print_summary:
        write_category_summary(print_summary, categories, class_ids[0], labels, cate_level)
        log.info("per-category summary: %s", "stdout" if print_summary == "-" else print_summary)


def write_outputs(paths, product_ids, class_ids, categories, cate_level):
    """One submission CSV per output: level 3, the category ids; level 1, the sub-class ids themselves,
    as the original."""
    for path, classes in zip(paths, class_ids):
        write_submission(path, product_ids, categories.category_ids[classes] if cate_level == 3 else classes)


def forward_counts(forwarded, total, answered, repeats):
    """The line that says how many pictures went through the networks."""
    return f"forwarded {forwarded} of {total} images ({answered} answered by the MD5 dictionary, {repeats} repeats)"
