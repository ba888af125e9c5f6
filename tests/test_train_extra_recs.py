"""train.train_model --data-train-extra (not the original's): the training .rec plus extra .rec files every
epoch, each read in full by its own seeded iterator, their batches interleaved in a seeded order; the
labels checked against the training .rec's; EXTRA_RECS in a model script's header (train.stages) and
train/beyond/B01_hash_labelled.sh, M07's recipe plus the hash-labelled test pictures.

The position .rec files hold records whose labels are their file's base plus their position, so the
labels read show which file and record each batch came from."""
import json
import os
import types

import cv2
import numpy as np
import pytest

from cli.runner import UserError
from data import bson2rec
from data.recordio import IndexedRecordWriter, pack_header
from tests.helpers import colour_products, write_bson, write_category_csv
from tests.train_helpers import (RESUME_RTOL, TINY_SETTINGS, dry_run, max_relative_difference, read_state_json,
                                 resume_argv)
from train import stages, train_model
from train.data import check_data, get_iterators, resolve_labels, updates_per_epoch

BATCH = 16
# (label base, records): 13 + 5 + 3 batches of 16
POSITION_FILES = {"main": (0, 200), "extra_a": (1000, 70), "extra_b": (2000, 45)}


@pytest.fixture(scope="module")
def position_recs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("extra_order")
    ok, jpeg = cv2.imencode(".jpg", np.full((8, 8, 3), 90, np.uint8))
    assert ok
    paths = {}
    for name, (base, count) in POSITION_FILES.items():
        paths[name] = str(folder / f"{name}.rec")
        with IndexedRecordWriter(paths[name], str(folder / f"{name}.idx")) as writer:
            for position in range(count):
                writer.write(position, pack_header(float(base + position), position) + jpeg.tobytes())
    return paths


def parse(recs, *flags, extras=("extra_a", "extra_b")):
    extra = ["--data-train-extra", *[recs[name] for name in extras]] if extras else []
    return train_model.build_parser().parse_args(
        ["--symbol", "densenet-41", "--data-train", recs["main"], *extra, "--image-shape", "3,8,8",
         "--batch-size", str(BATCH), "--data-nthreads", "2", "--random-mirror", "1", *flags])


def read_epoch(train):
    """(labels of each batch, the images) of one epoch."""
    batches = [(batch.label[0].asnumpy().astype(np.int64), batch.data[0].asnumpy()) for batch in train]
    train.reset()
    return [labels for labels, _ in batches], np.concatenate([data for _, data in batches])


def file_of(labels):
    """The file a batch came from (its labels' base); a batch of two files fails."""
    bases = set((labels // 1000).tolist())
    assert len(bases) == 1, labels
    return bases.pop()


def test_every_file_is_read_in_full_each_epoch_one_file_a_batch(position_recs):
    args = parse(position_recs)
    assert updates_per_epoch(args, None) == 13 + 5 + 3
    batches, _ = read_epoch(get_iterators(args)[0])
    assert len(batches) == 21
    files = [file_of(labels) for labels in batches]
    assert [files.count(f) for f in (0, 1, 2)] == [13, 5, 3]
    assert files != sorted(files)  # interleaved, not one file after another
    read = set(np.concatenate(batches).tolist())
    for base, count in POSITION_FILES.values():
        assert set(range(base, base + count)) <= read


def test_the_training_rec_keeps_its_own_order(position_recs):
    """The --data-train file's iterator is seeded as when it is read alone: its batches come in the same order."""
    alone, _ = read_epoch(get_iterators(parse(position_recs, extras=()))[0])
    interleaved, _ = read_epoch(get_iterators(parse(position_recs))[0])
    assert [list(b) for b in interleaved if file_of(b) == 0] == [list(b) for b in alone]


def test_a_resumed_epoch_reads_what_the_uninterrupted_epoch_read(position_recs):
    args = parse(position_recs, "--max-random-l", "20")
    train = get_iterators(args)[0]
    uninterrupted = [read_epoch(train) for _ in range(3)]
    orders = [[file_of(b) for b in batches] for batches, _ in uninterrupted]
    assert orders[1] != orders[2]  # each epoch its own interleaving
    resumed_batches, resumed_images = read_epoch(get_iterators(args, begin_epoch=2)[0])
    assert [list(b) for b in resumed_batches] == [list(b) for b in uninterrupted[2][0]]
    assert np.array_equal(resumed_images, uninterrupted[2][1])  # the same flips and colour jitter
    other_seed, _ = read_epoch(get_iterators(parse(position_recs, "--seed", "1"), begin_epoch=2)[0])
    assert [list(b) for b in other_seed] != [list(b) for b in uninterrupted[2][0]]


@pytest.mark.parametrize("order", ["chunks", "global"])
def test_two_workers_read_every_file_between_them_in_as_many_batches(position_recs, order):
    args = parse(position_recs, "--data-order", order)
    kvs = [types.SimpleNamespace(num_workers=2, rank=rank) for rank in (0, 1)]
    epochs = [read_epoch(get_iterators(args, kv)[0])[0] for kv in kvs]
    per_worker = 7 + 3 + 2  # ceil(100 / 16), ceil(35 / 16), ceil(22.5 / 16)
    assert [len(batches) for batches in epochs] == [per_worker] * 2 == [updates_per_epoch(args, kv) for kv in kvs]
    assert [file_of(b) for b in epochs[0]] == [file_of(b) for b in epochs[1]]  # the same files in turn
    read = set(np.concatenate(epochs[0] + epochs[1]).tolist())
    for base, count in POSITION_FILES.values():
        assert set(range(base, base + count)) <= read


# ---- labels and refusals -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def colour_recs(tmp_path_factory):
    """A training .rec of 4 colour classes (96 pictures), an extra one of the same categories (40 pictures),
    one of other categories, one unlabelled, one without its X.rec.json."""
    folder = tmp_path_factory.mktemp("colour_extras")
    csv_path = write_category_csv(folder / "categories.csv", [1000000000 + c for c in range(4)])
    other_csv = write_category_csv(folder / "other.csv", [2000000000 + c for c in range(4)])
    recs = {}

    def convert(name, docs, csv_file):
        recs[name] = str(folder / f"{name}.rec")
        bson2rec.main(["--bson", write_bson(folder / f"{name}.bson", docs), "--out-rec", recs[name],
                       "--category-csv", csv_file])

    convert("train", colour_products(4, 24, size=16, seed=0), csv_path)
    convert("extra", colour_products(4, 10, size=16, seed=1), csv_path)
    convert("other", colour_products(4, 10, size=16, seed=2, first_category=2000000000), other_csv)
    convert("unlabelled", [{"_id": d["_id"], "imgs": d["imgs"]} for d in colour_products(4, 10, size=16, seed=3)],
            csv_path)
    convert("bare", colour_products(4, 10, size=16, seed=4), csv_path)
    os.remove(recs["bare"] + ".json")
    recs["file_order"] = str(folder / "file_order.rec")
    bson2rec.main(["--bson", str(folder / "extra.bson"), "--out-rec", recs["file_order"], "--category-csv", csv_path,
                   "--no-shuffle"])
    return recs


def training_args(recs, *extras, flags=()):
    return train_model.build_parser().parse_args(
        ["--symbol", "densenet-41", "--data-train", recs["train"], "--data-train-extra",
         *[recs[name] for name in extras], "--image-shape", "3,16,16", "--batch-size", "20", *flags])


def test_extra_labels_must_be_the_training_recs(colour_recs):
    args = training_args(colour_recs, "extra")
    check_start(args)
    assert (args.num_classes, args.label_kind) == (4, "class_id")
    for name, message in [
        ("other", r"other.rec: class_id labels of 4 classes \(categories sha256:[0-9a-f]+\), but the training .rec "
                  r".*train.rec holds class_id labels of 4 classes \(categories sha256:[0-9a-f]+\); make both with one "
                  r"category CSV and --cate-type"),
        ("unlabelled", r"unlabelled.rec: its records are unlabelled"),
        ("bare", r"bare.rec: --data-train-extra needs the bare.rec.json beside it"),
        ("file_order", r"file_order.rec: its records are in the BSON's file order .*give --data-order global")]:
        with pytest.raises(UserError, match=message):
            resolve_labels(training_args(colour_recs, "extra", name))
    resolve_labels(training_args(colour_recs, "file_order", flags=["--data-order", "global"]))


def check_start(args):
    """What train_model checks before any work: the labels, then the data."""
    resolve_labels(args)
    check_data(args)


def test_an_extra_rec_is_refused_where_it_cannot_be_read_as_training_data(colour_recs):
    with pytest.raises(UserError, match="--num-examples 40 with --data-train-extra"):
        check_start(training_args(colour_recs, "extra", flags=["--num-examples", "40"]))
    with pytest.raises(UserError, match="extra.rec: 40 records, fewer than --batch-size 64"):
        check_start(training_args(colour_recs, "extra", flags=["--batch-size", "64"]))
    with pytest.raises(UserError, match=r"--data-train-extra: only beside --data-train \(--benchmark 1's"):
        resolve_labels(training_args(colour_recs, "extra", flags=["--benchmark", "1"]))


def test_a_refusal_comes_before_any_work(colour_recs, tmp_path):
    prefix = str(tmp_path / "m" / "m")
    with pytest.raises(UserError, match="other.rec: class_id labels"):
        train_model.main(["--symbol", "densenet-41", "--data-train", colour_recs["train"], "--data-train-extra",
                          colour_recs["other"], "--model-prefix", prefix, "--image-shape", "3,16,16"])
    assert not os.path.exists(tmp_path / "m")


def test_training_with_an_extra_rec_resumes_exactly(colour_recs, tiny_symbol, tmp_path):
    """1 epoch + --load-epoch 1 ends where 2 epochs end; an update per batch of both files; the extra file
    recorded in PREFIX-args.json."""
    extra = ["--data-train-extra", colour_recs["extra"]]
    whole, split = str(tmp_path / "whole" / "m"), str(tmp_path / "split" / "m")
    train_model.main(resume_argv(colour_recs["train"], tiny_symbol, whole, "nadam", 2, extra))
    train_model.main(resume_argv(colour_recs["train"], tiny_symbol, split, "nadam", 1, extra))
    train_model.main(resume_argv(colour_recs["train"], tiny_symbol, split, "nadam", 2, ["--load-epoch", "1", *extra]))
    assert max_relative_difference(f"{whole}-0002.params", f"{split}-0002.params") <= RESUME_RTOL
    assert read_state_json(split, 2)["num_update"] == read_state_json(whole, 2)["num_update"] == 2 * (5 + 2)
    with open(f"{split}-args.json") as fh:
        runs = json.load(fh)["runs"]
    assert [run["arguments"]["data_train_extra"] for run in runs] == [[colour_recs["extra"]]] * 2
    alone = str(tmp_path / "alone" / "m")
    train_model.main(resume_argv(colour_recs["train"], tiny_symbol, alone, "nadam", 1))
    assert read_state_json(alone, 1)["num_update"] == 5
    assert max_relative_difference(f"{alone}-0001.params", f"{whole}-0001.params") > 1e-3  # the extra file counts


# ---- EXTRA_RECS in a model script ----------------------------------------------------------------
def header_env(**settings):
    env = dict(TINY_SETTINGS, DATA_DIR="/d", MODEL_DIR="/m", MODEL_NAME="Mx", SYMBOL="densenet-41", NETWORK_ARGS="",
               PARAMS="", FEATURE_LAYER="", PRETRAINED_SOURCE="", GPUS="", DEFAULT_STAGES="1",
               STAGE_1="START_EPOCH=0 END_EPOCH=1")
    env.update(settings)
    return env


def command_and_missing(env, on_disk=()):
    header, load_epoch = stages.read_header(env)
    plan = stages.make_plan(stages.select_stages(header, None), load_epoch)
    command = stages.stage_command(header, plan[0], env)
    return command, stages.missing_inputs(header, plan, is_file=lambda path: path in on_disk)


def test_extra_recs_go_to_every_stage_under_data_dir():
    command, missing = command_and_missing(header_env(EXTRA_RECS=" dataset_A/test_hash_labelled.rec\t/abs/x.rec ", BEYOND_THE_ORIGINAL="1"))
    at = command.index("--data-train-extra")
    assert command[at - 4:at + 4] == ["--data-train", "/d/dataset_A/train.rec", "--data-val", "/d/dataset_A/valid.rec",
                                      "--data-train-extra", "/d/dataset_A/test_hash_labelled.rec", "/abs/x.rec",
                                      "--model-prefix"]
    assert missing[2:4] == ["/d/dataset_A/test_hash_labelled.rec not found: run data/create_hash_labelled_rec.sh first",
                            "/abs/x.rec not found: an extra training .rec of the header's EXTRA_RECS"]
    _, missing = command_and_missing(header_env(EXTRA_RECS="/abs/x.rec", BEYOND_THE_ORIGINAL="1"), on_disk={"/abs/x.rec"})
    assert not any("x.rec" in message for message in missing)
    for unset in (header_env(), header_env(EXTRA_RECS="")):
        assert "--data-train-extra" not in command_and_missing(unset)[0]


def test_b01_is_m07_plus_the_hash_labelled_test_pictures(tmp_path):
    code, b01, output = dry_run("train/beyond/B01_hash_labelled.sh", tmp_path)
    assert code == 0, output
    code, m07, _ = dry_run("train/M07.sh", tmp_path)
    assert code == 0 and len(b01) == len(m07) == 1
    b01_flags, m07_flags = b01[0][1], m07[0][1]
    assert b01_flags.pop("--data-train-extra") == f"{tmp_path}/data/dataset_A/test_hash_labelled.rec"
    assert b01_flags.pop("--model-prefix") == f"{tmp_path}/models/B01/B01"
    assert m07_flags.pop("--model-prefix") == f"{tmp_path}/models/M07/M07"
    assert b01_flags == m07_flags  # M07's recipe, data and starting weights
    assert (f"# missing: {tmp_path}/data/dataset_A/test_hash_labelled.rec not found: run "
            "data/create_hash_labelled_rec.sh first") in output
