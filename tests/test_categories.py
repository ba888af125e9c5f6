import csv

import pytest

from data.categories import Categories
from cli.runner import UserError


def test_real_category_file(category_csv):
    categories = Categories.load(category_csv)
    assert len(categories) == 5270
    with open(category_csv, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))[1:]
    assert categories.class_of(int(rows[0][0])) == 0
    assert categories.class_of(int(rows[-1][0])) == 5269
    assert categories.category_of(1234) == int(rows[1234][0])
    # Level ids: 0-based in order of first appearance; same name -> same id.
    assert categories.level1_ids[0] == 0
    level1 = {}
    for row, level1_id in zip(rows, categories.level1_ids):
        assert level1.setdefault(row[1], level1_id) == level1_id
    assert len(categories.level1_names) == len({r[1] for r in rows})
    assert len(categories.level2_names) == len({(r[1], r[2]) for r in rows})


def test_unknown_category_names_the_product(category_csv):
    categories = Categories.load(category_csv)
    with pytest.raises(UserError, match="x.bson: product _id 42: category_id 7 is not in"):
        categories.class_of(7, product_id=42, source="x.bson")


@pytest.mark.parametrize("content, message", [
    ("id,a,b,c\n1,x,y,z\n", "line 1: header must be"),
    ("category_id,category_level1,category_level2,category_level3\n1,x,y,z\n1,x,y,w\n",
     "line 3: duplicate category_id 1"),
    ("category_id,category_level1,category_level2,category_level3\n1,x,y\n", "line 2: expected 4 fields"),
    ("category_id,category_level1,category_level2,category_level3\nabc,x,y,z\n", "line 2: category_id 'abc'"),
    ("category_id,category_level1,category_level2,category_level3\n", "no categories"),
])
def test_bad_category_files(tmp_path, content, message):
    path = tmp_path / "c.csv"
    path.write_text(content)
    with pytest.raises(UserError, match=message):
        Categories.load(str(path))


def test_level1_sub_class_ids_count_within_each_level1_group(category_csv):
    """The original's cate1_sub_class_id: a category's rank among its level-1 group's categories, in file order."""
    categories = Categories.load(category_csv)
    with open(category_csv, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))[1:]
    counters = {}
    for class_id, row in enumerate(rows):
        expected = counters.get(row[1], 0)
        counters[row[1]] = expected + 1
        assert categories.level1_sub_class_of(class_id) == expected
    assert categories.num_level1_sub_classes == max(counters.values())
