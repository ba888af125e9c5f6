"""Kaggle submission files: `_id,category_id`, one row per test product (gzip when the name ends in .gz).

Shared by every command that writes or reads one: prediction, shard merging, MD5
overrides, post-processing and the checker.
"""
import gzip
import os
import re

import numpy as np

from cli.files import atomic_outputs, check_input_file
from cli.reporting import plural
from cli.runner import UserError

HEADER = "_id,category_id"
_ROW = re.compile(r"(\d+),(\d+)", re.ASCII)  # plain non-negative integers: no signs, spaces or underscores
_WRITE_CHUNK = 1 << 16  # rows formatted per write: bounded memory for 1.8M rows
_SHOW = 5  # ids quoted in a problem line


def _open_for_write(temp_path, final_path):
    """Text handle on the temporary name; gzip is chosen from the final name."""
    if final_path.endswith(".gz"):
        raw = open(temp_path, "wb")
        # mtime=0 and no file name inside: the same rows give the same bytes.
        return gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0), raw
    return open(temp_path, "wb"), None


def write_submission(path, product_ids, category_ids):
    """Write `_id,category_id` rows in the given order, atomically (temporary name, then rename).

    The caller checks an existing `path` against --force (cli.files.check_outputs).
    """
    product_ids = np.asarray(product_ids, dtype=np.int64)
    category_ids = np.asarray(category_ids, dtype=np.int64)
    if product_ids.shape != category_ids.shape or product_ids.ndim != 1:
        raise ValueError(f"{len(product_ids)} product ids but {len(category_ids)} category ids")
    with atomic_outputs(path) as (tmp,):
        fh, raw = _open_for_write(tmp, path)
        try:
            fh.write((HEADER + "\n").encode())
            for start in range(0, len(product_ids), _WRITE_CHUNK):
                ids = product_ids[start:start + _WRITE_CHUNK].tolist()
                cats = category_ids[start:start + _WRITE_CHUNK].tolist()
                fh.write("".join(f"{p},{c}\n" for p, c in zip(ids, cats)).encode())
        finally:
            fh.close()
            if raw is not None:
                raw.close()


def read_text(path):
    """A CSV's text: gzip by content, UTF-8 (a BOM allowed); one-line errors."""
    check_input_file(path, "CSV")
    with open(path, "rb") as fh:
        data = fh.read()
    if data[:2] == b"\x1f\x8b":  # gzip by content, whatever the name
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise UserError(f"{path}: unreadable gzip data ({exc})") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path}: not UTF-8 text (byte {exc.start})") from None


def read_submission(path):
    """(product_ids, category_ids) as int64 arrays in file order. Blank lines are ignored;
    a wrong header or a malformed row is a UserError naming the file and line."""
    lines = read_text(path).splitlines()
    if not lines or lines[0].strip() != HEADER:
        got = repr(lines[0][:80]) if lines else "an empty file"
        raise UserError(f"{path}: line 1: header must be {HEADER}, got {got}")
    product_ids, category_ids = [], []
    match = _ROW.fullmatch
    for number, line in enumerate(lines[1:], start=2):
        row = match(line.strip())
        if row is None:
            if not line.strip():
                continue
            raise UserError(f"{path}: line {number}: expected two non-negative integers _id,category_id, "
                            f"got {line[:80]!r}")
        product_ids.append(int(row.group(1)))
        category_ids.append(int(row.group(2)))
    return np.array(product_ids, dtype=np.int64), np.array(category_ids, dtype=np.int64)


def first_ids(values):
    """'1, 2, 3, 4, 5, ...' of the first few values."""
    shown = ", ".join(str(int(v)) for v in values[:_SHOW])
    return shown + (", ..." if len(values) > _SHOW else "")


def positions_of(known_ids, query_ids):
    """Position of each query id in `known_ids`, -1 where absent (vectorised)."""
    known_ids = np.asarray(known_ids, dtype=np.int64)
    query = np.asarray(query_ids, dtype=np.int64)
    if len(known_ids) == 0:
        return np.full(len(query), -1, dtype=np.int64)
    order = np.argsort(known_ids, kind="stable")
    at = np.minimum(np.searchsorted(known_ids[order], query), len(order) - 1)
    return np.where(known_ids[order][at] == query, order[at], -1).astype(np.int64)


def positions_in_bson(index, product_ids):
    """Position of each product id in the BSON index (file order), -1 where absent."""
    return positions_of(index.products["product_id"], product_ids)


def duplicated_ids(product_ids):
    """Ids that occur more than once, in order of their first repeat."""
    product_ids = np.asarray(product_ids, dtype=np.int64)
    _, first = np.unique(product_ids, return_index=True)
    repeat = np.ones(len(product_ids), dtype=bool)
    repeat[first] = False
    repeated = product_ids[repeat]
    _, keep = np.unique(repeated, return_index=True)
    return repeated[np.sort(keep)]


def submission_problems(product_ids, category_ids, index, categories):
    """One line per problem of a submission against the test BSON `index` (data.bson_index.BsonIndex)
    and `categories` (data.categories.Categories); an empty list when it is valid."""
    product_ids = np.asarray(product_ids, dtype=np.int64)
    category_ids = np.asarray(category_ids, dtype=np.int64)
    bson_name = os.path.basename(index.path)
    problems = []
    if len(product_ids) != len(index):
        problems.append(f"{plural(len(product_ids), 'row')}, expected {len(index)} (the products of {bson_name})")
    positions = positions_in_bson(index, product_ids)
    seen = np.zeros(len(index), dtype=bool)
    seen[positions[positions >= 0]] = True
    missing = index.products["product_id"][~seen]
    if len(missing):
        problems.append(f"{plural(len(missing), 'product')} of {bson_name} "
                        f"{'has' if len(missing) == 1 else 'have'} no row: _id {first_ids(missing)}")
    repeated = duplicated_ids(product_ids)
    if len(repeated):
        problems.append(f"{plural(len(repeated), 'product id')} {'has' if len(repeated) == 1 else 'have'} "
                        f"more than one row: _id {first_ids(repeated)}")
    unknown_ids = product_ids[positions < 0]
    if len(unknown_ids):
        problems.append(f"{plural(len(unknown_ids), 'row')} {'has' if len(unknown_ids) == 1 else 'have'} "
                        f"an _id not in {bson_name}: _id {first_ids(unknown_ids)}")
    unknown_category = ~np.isin(category_ids, categories.category_ids)
    if unknown_category.any():
        pairs = ", ".join(f"_id {p} -> {c}" for p, c in zip(product_ids[unknown_category][:_SHOW].tolist(),
                                                            category_ids[unknown_category][:_SHOW].tolist()))
        more = ", ..." if unknown_category.sum() > _SHOW else ""
        number = int(unknown_category.sum())
        problems.append(f"{plural(number, 'row')} {'has' if number == 1 else 'have'} a category_id not in "
                        f"{os.path.basename(categories.path)}: {pairs}{more}")
    return problems


_EXTENSIONS = (".csv.gz", ".csv", ".gz")
_VARIANT_TAG = re.compile(r"e\d+\.m\d")


def variant_path(output, tag):
    """OUTPUT with an ensemble tag before its extension: sub.csv, e8.m0 -> sub.e8.m0.csv."""
    for ext in _EXTENSIONS:
        if output.endswith(ext):
            return f"{output[:-len(ext)]}.{tag}{ext}"
    return f"{output}.{tag}"


def variant_tags_beside(path):
    """The ensemble tags (e.g. e8.m0) of the variant files written beside submission `path`."""
    directory = os.path.dirname(path) or "."
    base = os.path.basename(path)
    for ext in _EXTENSIONS:
        if base.endswith(ext):
            stem, suffix = base[:-len(ext)], ext
            break
    else:
        stem, suffix = base, ""
    pattern = re.compile(re.escape(stem + ".") + r"(e\d+\.m\d)" + re.escape(suffix) + "$")
    return sorted({m.group(1) for m in map(pattern.match, os.listdir(directory)) if m})
