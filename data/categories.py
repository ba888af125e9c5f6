"""Kaggle's `category_names.csv`: category_id <-> class_id, and the level-1/level-2 groups.

`class_id` is the 0-based row order of the file (header skipped), the label every
`.rec` file and every model output uses. Level-1 and level-2 ids are 0-based in
order of first appearance in the file.

A level-1 sub-class id is a category's 0-based rank among the categories of its
level-1 group, in file order: the labels of the original's level-1 sub-class
models (`bson2rec --cate-type 1`, `predict --cate-level 1`).

What a label means travels with the files: a `.rec`'s `X.rec.json` (data.recordio) and a
checkpoint's `PREFIX-input.json` (train.checkpoint) name the label kind (LABEL_KINDS) and the
digest of the table the labels index (`Categories.digest`), so that training and prediction
can refuse labels of another kind or of another category CSV before any work.
"""
import csv
import hashlib
import json
import os

import numpy as np

from cli.files import check_input_file
from cli.runner import UserError

HEADER = ["category_id", "category_level1", "category_level2", "category_level3"]

# What a record's label (and a model's output index) is; the value is the original's number for it
# (bson2rec --cate-type, predict --cate-level). A later kind adds an entry here and in
# Categories.num_classes_of.
LABEL_KINDS = {"class_id": 3, "level1_sub_class": 1}
# The kinds of the level heads' label columns (not the original's: rwightman's hierarchical heads; data.bson2rec
# --level-labels, train.train_model --level-heads): the id of a category's category_level2 name and of its
# category_level1 name, in the order of first appearance (level2_column_ids, level1_ids). They label extra columns
# beside a class id, never a model's only output, so they have no --cate-level number.
LEVEL_LABEL_KINDS = ("level2_id", "level1_id")


def short_digest(digest):
    """A category digest as messages show it: enough hex digits to tell two tables apart."""
    return digest[:len("sha256:") + 12] if digest else "unknown"


def label_kind_of_level(level):
    """The label kind of a --cate-type / --cate-level number."""
    return next(kind for kind, number in LABEL_KINDS.items() if number == level)


def default_category_csv():
    return os.path.join(os.environ.get("DATA_DIR", "data_dir"), "category_names.csv")


class Categories:
    """The category table. `class_of(category_id)` and `category_of(class_id)` map both ways."""

    def __init__(self, category_ids, level1_names, level2_names, level3_names, path="<memory>"):
        self.path = path
        self.category_ids = np.asarray(category_ids, dtype=np.int64)
        self.level3_names = list(level3_names)
        self._class_by_category = {int(c): i for i, c in enumerate(self.category_ids)}
        self.level1_names, self.level1_ids = _first_appearance_ids(level1_names)
        self.level2_names, self.level2_ids = _first_appearance_ids(list(zip(level1_names, level2_names)))
        # The distinct category_level2 names, rwightman's level-2 classes: 483 in Kaggle's table, where three names
        # (SECURITE, ONGLERIE, PROTECTION - ENTRETIEN) sit under two level-1 names each, which level2_ids, of
        # (level-1, level-2) pairs, tells apart (486).
        self.level2_column_names, self.level2_column_ids = _first_appearance_ids(list(level2_names))
        self.level1_sub_class_ids = _rank_within_groups(self.level1_ids)
        # Of the parsed table, not of the file's bytes: line endings, a BOM or quoting change no label.
        table = json.dumps([[int(c) for c in self.category_ids], list(level1_names), list(level2_names),
                            self.level3_names], ensure_ascii=False)
        self.digest = "sha256:" + hashlib.sha256(table.encode("utf-8")).hexdigest()

    def num_classes_of(self, label_kind):
        """Output width of a model (or a level head) whose labels are `label_kind` (a key of LABEL_KINDS, or one of
        LEVEL_LABEL_KINDS)."""
        if label_kind in LEVEL_LABEL_KINDS:
            return len(self.level2_column_names) if label_kind == "level2_id" else len(self.level1_names)
        return len(self) if label_kind == "class_id" else self.num_level1_sub_classes

    def group_ids_of(self, label_kind):
        """The level group of each class (indexed by class_id) for a kind of LEVEL_LABEL_KINDS."""
        return {"level2_id": self.level2_column_ids, "level1_id": self.level1_ids}[label_kind]

    @property
    def num_level1_sub_classes(self):
        """Output width of a level-1 sub-class model: the largest level-1 group."""
        return int(self.level1_sub_class_ids.max()) + 1

    def level1_sub_class_of(self, class_id):
        return int(self.level1_sub_class_ids[class_id])

    @classmethod
    def load(cls, path):
        try:
            check_input_file(path, "category CSV")
        except UserError as exc:
            raise UserError(f"{exc} (set --category-csv or DATA_DIR)") from None
        try:
            with open(path, newline="", encoding="utf-8") as fh:
                rows = _read_rows(path, csv.reader(fh))
        except UnicodeDecodeError as exc:
            raise UserError(f"{path}: byte {exc.start}: not UTF-8 text; a category CSV is Kaggle's "
                            "category_names.csv") from None
        except csv.Error as exc:  # NUL bytes: a binary file
            raise UserError(f"{path}: not a CSV text file ({exc}); a category CSV is Kaggle's "
                            "category_names.csv") from None
        if not rows:
            raise UserError(f"{path}: no categories")
        ids, level1, level2, level3 = zip(*rows)
        return cls(ids, level1, level2, level3, path=path)

    def __len__(self):
        return len(self.category_ids)

    def __contains__(self, category_id):
        return int(category_id) in self._class_by_category

    def class_of(self, category_id, product_id=None, source=None):
        """class_id of a category_id; an unknown one is an error naming the product."""
        try:
            return self._class_by_category[int(category_id)]
        except KeyError:
            where = f"{source}: " if source else ""
            who = f"product _id {product_id}: " if product_id is not None else ""
            raise UserError(f"{where}{who}category_id {category_id} is not in {self.path}") from None

    def classes_of(self, category_ids):
        """Vectorised class_of; -1 where unknown."""
        return np.array([self._class_by_category.get(int(c), -1) for c in category_ids], dtype=np.int64)

    def category_of(self, class_id):
        return int(self.category_ids[class_id])


def _read_rows(path, reader):
    """(category_id, level1, level2, level3) of each row, after checking the header, fields and ids."""
    header = next(reader, None)
    if header is None or [h.strip().lstrip("\ufeff") for h in header] != HEADER:
        raise UserError(f"{path}: line 1: header must be {','.join(HEADER)}, got {header}")
    rows, seen = [], {}
    for row in reader:
        line = reader.line_num
        if not row:
            continue
        if len(row) != 4:
            raise UserError(f"{path}: line {line}: expected 4 fields, got {len(row)}")
        try:
            category_id = int(row[0])
        except ValueError:
            raise UserError(f"{path}: line {line}: category_id {row[0]!r} is not an integer") from None
        if category_id in seen:
            raise UserError(f"{path}: line {line}: duplicate category_id {category_id} "
                            f"(first at line {seen[category_id]})")
        seen[category_id] = line
        rows.append((category_id, row[1], row[2], row[3]))
    return rows


def _first_appearance_ids(keys):
    names, ids, table = [], [], {}
    for key in keys:
        if key not in table:
            table[key] = len(names)
            names.append(key)
        ids.append(table[key])
    return names, np.array(ids, dtype=np.int64)


def _rank_within_groups(group_ids):
    """For each row, how many earlier rows share its group id (0 for the first of each group)."""
    seen = {}
    ranks = np.empty(len(group_ids), dtype=np.int64)
    for row, group in enumerate(group_ids.tolist()):
        ranks[row] = seen.get(group, 0)
        seen[group] = ranks[row] + 1
    return ranks
