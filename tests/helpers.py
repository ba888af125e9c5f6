"""Plain helpers of the tests: the repo and Kaggle's sample files, builders of small hand-made
Kaggle-format BSONs, running the repo's commands, process look-ups in /proc."""
import os
import resource
import signal
import subprocess
import sys
import time

import bson
import cv2
import numpy as np
import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.environ.get("CDISCOUNT_SHARED_DATA", os.path.join(REPO_ROOT, "..", "shared", "data"))


def shared_file(name):
    path = os.path.join(SHARED_DATA, name)
    if not os.path.exists(path):
        pytest.skip(f"{path} not present (set CDISCOUNT_SHARED_DATA)")
    return path


def make_jpeg(seed, size=32):
    """A small real JPEG whose bytes depend on `seed`."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (size, size, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", image)
    assert ok
    return buf.tobytes()


def product(product_id, pictures, category_id=None):
    """A document in Kaggle's key order: _id, imgs, category_id."""
    doc = {"_id": product_id, "imgs": [{"picture": bson.Binary(p)} for p in pictures]}
    if category_id is not None:
        doc["category_id"] = category_id
    return doc


def write_bson(path, docs):
    with open(path, "wb") as fh:
        for doc in docs:
            fh.write(doc if isinstance(doc, bytes) else bson.encode(doc))
    return str(path)


def read_docs(path):
    with open(path, "rb") as fh:
        return list(bson.decode_file_iter(fh))


def read_csv_rows(path):
    """Every row of a CSV file, header included, as lists of strings."""
    import csv
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def read_records(rec_path):
    """(header, payload) of every record of an indexed .rec, in write (key) order."""
    import mxnet as mx

    from data.recordio import idx_path_of

    reader = mx.recordio.MXIndexedRecordIO(idx_path_of(rec_path), rec_path, "r")
    try:
        return [mx.recordio.unpack(reader.read_idx(key)) for key in sorted(reader.keys)]
    finally:
        reader.close()


def mtimes(folder, names):
    """Each file's modification time (ns): a step skipped on a re-run leaves them unchanged."""
    return {name: os.stat(folder / name).st_mtime_ns for name in names}


def write_category_csv(path, category_ids, groups=None):
    """A category_names.csv in Kaggle's format for the given ids; `groups`: the (level-1, level-2) names of each
    (default: LEVEL1 i%2, LEVEL2 i%3)."""
    groups = groups or [(f"LEVEL1 {i % 2}", f"LEVEL2 {i % 3}") for i in range(len(category_ids))]
    with open(path, "w", encoding="utf-8") as fh:
        fh.write("category_id,category_level1,category_level2,category_level3\n")
        for i, (cid, (level1, level2)) in enumerate(zip(category_ids, groups)):
            fh.write(f"{cid},{level1},{level2},CATEGORY {i}\n")
    return str(path)


def colour_products(num_classes, per_class, size=32, seed=0, first_category=1000000000):
    """Products whose single picture is a noisy patch of a class colour: learnable in a few batches."""
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, (num_classes, 3))
    docs = []
    for n in range(num_classes * per_class):
        c = n % num_classes
        image = np.clip(colours[c] + rng.normal(0, 25, (size, size, 3)), 0, 255).astype(np.uint8)
        ok, buf = cv2.imencode(".jpg", image)
        docs.append(product(n, [buf.tobytes()], first_category + c))
    return docs


def demo_dataset(folder, num_categories, num_train_products, num_test_products):
    """data.make_demo_data's dataset (seed 3) in `folder`, returned: Kaggle-like files to run the data stage on."""
    from data.make_demo_data import generate_demo_dataset

    generate_demo_dataset(str(folder), num_categories=num_categories, num_train_products=num_train_products,
                          num_test_products=num_test_products, seed=3, progress=False)
    return folder


def write_colour_rec(folder, num_classes, per_class, size=32):
    """A .rec of `num_classes` colour classes, `per_class` pictures each, converted by data.bson2rec
    (with its category CSV beside it); returns the .rec path."""
    from data import bson2rec

    csv_path = write_category_csv(os.path.join(folder, "category_names.csv"),
                                  [1000000000 + c for c in range(num_classes)])
    bson_path = write_bson(os.path.join(folder, "train.bson"), colour_products(num_classes, per_class, size=size))
    rec = os.path.join(str(folder), "train.rec")
    bson2rec.main(["--bson", bson_path, "--out-rec", rec, "--category-csv", csv_path])
    return rec


# ---- processes -----------------------------------------------------------------------------
def repo_env(changes=None):
    """os.environ with this venv's python first on PATH (the scripts call `python`) and the repo on
    PYTHONPATH, then `changes` (None unsets a variable)."""
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
               PYTHONPATH=os.pathsep.join(filter(None, [REPO_ROOT, os.environ.get("PYTHONPATH")])))
    for name, value in (changes or {}).items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = str(value)
    return env


def run(command, *, cwd=REPO_ROOT, timeout=None, expect=None, preexec_fn=None, **env):
    """Run a command of the repo as a user would and wait for it, output captured as text. Keyword arguments
    are environment variables over repo_env() (None unsets one); `python` is this Python; a repo path
    (data/create_dataset_A.sh) works from any cwd; with `expect`, the exit code is asserted."""
    words = [command] if isinstance(command, str) else [str(word) for word in command]
    if words[0] == "python":
        words[0] = sys.executable
    elif not os.path.isabs(words[0]) and os.path.isfile(os.path.join(REPO_ROOT, words[0])):
        words[0] = os.path.join(REPO_ROOT, words[0])
    result = subprocess.run(words, cwd=cwd, env=repo_env(env), capture_output=True, text=True, timeout=timeout,
                            preexec_fn=preexec_fn)
    if expect is not None:
        assert result.returncode == expect, result.stderr[-3000:]
    return result


def limited_writes(max_bytes):
    """A preexec_fn: the process can write files of at most `max_bytes` (a full disk, per process)."""
    def apply():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))
    return apply


def children_of(pid):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry))
    return found


def alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def wait_for_children(pid, count, timeout=60):
    """The children of `pid` once `count` have started: a run's reader and workers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = children_of(pid)
        if len(children) >= count:
            return children
        time.sleep(0.1)
    raise AssertionError(f"{count} children of {pid} did not appear")
