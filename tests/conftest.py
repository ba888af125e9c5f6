"""Shared fixtures: Kaggle's real sample files from ../shared/data and small hand-made BSONs."""
import os
import shutil

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.environ.get("CDISCOUNT_SHARED_DATA", os.path.join(REPO_ROOT, "..", "shared", "data"))


def shared_file(name):
    path = os.path.join(SHARED_DATA, name)
    if not os.path.exists(path):
        pytest.skip(f"{path} not present (set CDISCOUNT_SHARED_DATA)")
    return path


@pytest.fixture
def category_csv():
    """Kaggle's real category_names.csv (5270 categories)."""
    return shared_file("category_names.csv")


@pytest.fixture
def example_bson(tmp_path):
    """A private copy of Kaggle's train_example.bson (82 products, 110 images)."""
    dst = tmp_path / "train_example.bson"
    shutil.copy(shared_file("train_example.bson"), dst)
    return str(dst)
