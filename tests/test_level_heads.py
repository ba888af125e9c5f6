"""Hierarchical heads (not the original's: rwightman's level-2 and level-1 heads beside the class head).

data.bson2rec --level-labels writes a label vector per record (class id, level-2 group, level-1 group) and says
so in X.rec.json; train.train_model --level-heads trains a head per column with --head-weights as loss weights,
logs each head's accuracy and records the heads in PREFIX-input.json; predict.predict reads the class head, or
with --combine-levels multiplies in the level heads' probabilities; HEAD_WEIGHTS in a model script's header and
train/beyond/B02_hierarchical_heads.sh (M07 + the heads) on data/create_dataset_A_levels.sh's records.

The categories here: 6 classes in 3 level-2 groups and 2 level-1 groups, colour pictures of each class."""
import csv
import json
import os
import shutil

import mxnet as mx
import numpy as np
import pytest

from cli.runner import UserError
from data import bson2rec, hash_labelled_rec
from data.categories import Categories
from data.recordio import (RecInfo, pack_label_vector_header, read_labels, read_rec_info, rec_info_path,
                           record_labels, record_offsets, write_rec_info)
from predict import predict
from predict.models import Model
from tests.helpers import colour_products, product, read_records, run, write_bson, write_category_csv
from tests.train_helpers import RESUME_RTOL, dry_run, max_relative_difference
from train import checkpoint, train_model
from train.data import get_iterators, resolve_labels
from train.finetune import select_params
from train.metrics_log import COLUMNS

FIRST = 1000000000
# (level 1, level 2) of each class: level-2 groups {0, 1}, {2}, {3, 4, 5}; level-1 groups {0, 1, 2}, {3, 4, 5}
GROUPS = [("MAISON", "CUISINE"), ("MAISON", "CUISINE"), ("MAISON", "JARDIN"), ("SPORT", "VELO"), ("SPORT", "VELO"),
          ("SPORT", "VELO")]
LEVEL2 = [0, 0, 1, 2, 2, 2]
LEVEL1 = [0, 0, 0, 1, 1, 1]
NUM_CLASSES = len(GROUPS)


@pytest.fixture(scope="module")
def recs(tmp_path_factory):
    """The same labelled BSON of 6 colour classes (16 products each) as a .rec of label vectors and one of class ids."""
    folder = tmp_path_factory.mktemp("levels")
    csv_path = write_category_csv(folder / "category_names.csv", [FIRST + c for c in range(NUM_CLASSES)], GROUPS)
    bson_path = write_bson(folder / "train.bson", colour_products(NUM_CLASSES, 16, first_category=FIRST))
    paths = {"csv": csv_path, "bson": bson_path, "folder": folder}
    for name, extra in (("levels", ["--level-labels"]), ("one", [])):
        paths[name] = str(folder / f"{name}.rec")
        bson2rec.main(["--bson", bson_path, "--out-rec", paths[name], "--category-csv", csv_path, *extra])
    return paths


def tiny_argv(recs, prefix, rec="levels", epochs=1, extra=()):
    """tiny_symbol under the heads, on a .rec of `recs` at 16x16, batches of 20 (the last one of 96 records short)."""
    return ["--symbol", recs["tiny"], "--feature-layer", "flatten0", "--data-train", recs[rec], "--data-val", recs[rec],
            "--image-shape", "3,16,16", "--batch-size", "20", "--num-epochs", str(epochs), "--lr", "0.01",
            "--optimizer", "adam", "--data-nthreads", "1", "--disp-batches", "100", "--model-prefix", prefix,
            *(["--level-heads"] if rec == "levels" else []), *extra]


@pytest.fixture(scope="module")
def trained(recs, tiny_symbol, tmp_path_factory):
    """A network with level heads (2 epochs) and one of the class head alone (1 epoch), both on the colour classes."""
    folder = tmp_path_factory.mktemp("trained")
    recs = dict(recs, tiny=tiny_symbol)
    heads, single = str(folder / "heads"), str(folder / "single")
    train_model.main(tiny_argv(recs, heads, epochs=2))
    train_model.main(tiny_argv(recs, single, rec="one"))
    return dict(recs, heads=heads, single=single)


# ---- the records --------------------------------------------------------------------------------

def test_a_label_vector_is_packed_as_mxnet_packs_a_label_array():
    header = mx.recordio.IRHeader(0, np.array([4, 2, 1], dtype=np.float32), 123456, 2)
    assert pack_label_vector_header([4, 2, 1], 123456, 2) + b"jpeg" == mx.recordio.pack(header, b"jpeg")


def test_level_labels_write_the_class_and_its_groups_beside_the_same_records(recs):
    levels, one = read_records(recs["levels"]), read_records(recs["one"])
    assert len(levels) == len(one) == 96
    for (vector_header, vector_jpeg), (header, jpeg) in zip(levels, one):
        assert vector_jpeg == jpeg and (vector_header.id, vector_header.id2) == (header.id, header.id2)  # same order
        assert vector_header.flag == 3 and header.flag == 0
        assert vector_header.label.tolist() == [header.label, LEVEL2[int(header.label)], LEVEL1[int(header.label)]]
    info = read_rec_info(recs["levels"])
    assert (info.label_kind, info.num_classes, info.label_width) == ("class_id", NUM_CLASSES, 3)
    assert info.column_kinds == ("class_id", "level2_id", "level1_id") and info.column_classes == (6, 3, 2)
    assert "(categories" in info.describe() and "level2_id of 3, level1_id of 2" in info.describe()
    # a .rec of one label per record: its X.rec.json as before label vectors, its labels the class column
    with open(rec_info_path(recs["one"])) as fh:
        assert list(json.load(fh)) == ["format", "label_kind", "num_classes", "categories_digest", "records",
                                       "category_csv", "shuffled"]
    assert read_rec_info(recs["one"]).label_width == 1
    assert read_labels(recs["levels"]).tolist() == read_labels(recs["one"]).tolist()
    vectors = record_labels(recs["levels"], record_offsets(recs["levels"]), label_width=3)
    assert vectors[:, 1].tolist() == [LEVEL2[int(c)] for c in vectors[:, 0]]
    with pytest.raises(UserError, match=r"one\.rec: the record at byte 0 holds 1 label, not 3 as its one\.rec\.json"):
        record_labels(recs["one"], record_offsets(recs["one"]), label_width=3)


def test_the_categories_level_groups_of_kaggles_table(category_csv):
    categories = Categories.load(category_csv)
    assert (categories.num_classes_of("level2_id"), categories.num_classes_of("level1_id")) == (483, 49)
    assert categories.group_ids_of("level2_id").max() == 482 and len(categories.group_ids_of("level1_id")) == 5270
    assert len(categories.level2_names) == 486  # (level-1, level-2) pairs: three level-2 names under two level-1s


def test_an_older_rec_info_reads_as_one_label_and_a_broken_one_is_refused(tmp_path):
    rec = str(tmp_path / "x.rec")
    older = {"format": "cdiscount-rec-info/1", "label_kind": "class_id", "num_classes": 5, "categories_digest": None,
             "records": 3}
    with open(rec_info_path(rec), "w") as fh:
        json.dump(older, fh)
    assert read_rec_info(rec) == RecInfo("class_id", 5, None, 3)
    for broken, what in ((dict(label_width=3, column_kinds=["class_id", "level2_id"], column_classes=[5, 2]),
                          "expected 3 column_kinds"),
                         (dict(label_width=2, column_kinds=["level2_id", "class_id"], column_classes=[2, 5]),
                          "the first label column"),
                         (dict(column_kinds=["class_id"]), "without a label_width above 1")):
        with open(rec_info_path(rec), "w") as fh:
            json.dump({**older, **broken}, fh)
        with pytest.raises(UserError, match=f"x.rec.json: not the label description data.bson2rec writes .*{what}"):
            read_rec_info(rec)
    write_rec_info(rec_info_path(rec), RecInfo("class_id", 5, None, 3, label_width=2, column_kinds=("class_id", "level1_id"),
                                               column_classes=(5, 2)))
    assert read_rec_info(rec).column_classes == (5, 2)


@pytest.mark.parametrize("command", [bson2rec, hash_labelled_rec])
def test_level_labels_beside_level1_sub_classes_are_refused_before_any_work(command, recs, tmp_path, monkeypatch):
    monkeypatch.setattr(command.BsonIndex, "open", lambda *a, **k: pytest.fail("indexed before the check"))
    argv = ["--bson", recs["bson"], "--out-rec", str(tmp_path / "x.rec"), "--category-csv", recs["csv"],
            "--cate-type", "1", "--level-labels"] + (["--md5-dict", recs["bson"]] if command is hash_labelled_rec else [])
    with pytest.raises(UserError, match="--level-labels with --cate-type 1: the level labels go beside class ids"):
        command.main(argv)


def test_level_labels_of_an_unlabelled_bson_are_refused(recs, tmp_path):
    test_bson = write_bson(tmp_path / "test.bson", [product(1, [read_records(recs["one"])[0][1]])])
    with pytest.raises(UserError, match="test.bson: its products have no category_id, so --level-labels"):
        bson2rec.main(["--bson", test_bson, "--out-rec", str(tmp_path / "t.rec"), "--category-csv", recs["csv"],
                       "--level-labels"])
    assert not os.path.exists(tmp_path / "t.rec")


# ---- training -----------------------------------------------------------------------------------

def parse(recs, *flags, rec="levels"):
    return train_model.build_parser().parse_args(["--symbol", "densenet-41", "--data-train", recs[rec],
                                                  "--image-shape", "3,8,8", "--batch-size", "20", *flags])


@pytest.mark.parametrize("rec, flags, message", [
    ("one", ["--level-heads"], r"--level-heads: .*one\.rec holds one label per record .*data\.bson2rec --level-labels"),
    ("levels", [], r"levels\.rec: its records hold label vectors \(class_id, level2_id, level1_id; .*give --level-heads"),
    ("one", ["--head-weights", "0.8,0.1,0.1"], "--head-weights 0.8,0.1,0.1: only with --level-heads"),
    ("levels", ["--level-heads", "--head-weights", "0.9,0.1"],
     r"--head-weights 0.9,0.1: .*levels\.rec gives 3 heads \(the class and level2_id, level1_id\); give one weight each"),
    ("levels", ["--level-heads", "--head-weights", "0.8,x,0.1"], "--head-weights 0.8,x,0.1: expected comma-separated"),
    ("levels", ["--level-heads", "--head-weights", "0,0.5,0.5"], "the class head's first and above 0"),
    ("levels", ["--level-heads", "--data-val", "one"], r"one\.rec: class_id labels of 6 classes \(categories .*, but the "
                                                       r"training \.rec .*levels\.rec holds class_id labels of 6 classes, "
                                                       "level2_id of 3, .*make both with --level-labels, or both "
                                                       "without"),
])
def test_heads_and_records_that_disagree_are_refused_in_one_line(recs, tmp_path, rec, flags, message, monkeypatch):
    monkeypatch.setattr(train_model, "fit", lambda *a, **k: pytest.fail("trained despite the mistake"))
    flags = [recs["one"] if flag == "one" else flag for flag in flags]
    with pytest.raises(UserError, match=message):
        train_model.main(["--symbol", "densenet-41", "--data-train", recs[rec], "--image-shape", "3,8,8",
                          "--model-prefix", str(tmp_path / "m"), *flags])


def test_the_iterator_splits_each_label_vector_into_a_label_per_head(recs):
    args = parse(recs, "--level-heads", "--data-val", recs["levels"])
    resolve_labels(args)
    assert (args.level_head_kinds, args.level_head_classes) == (("level2_id", "level1_id"), (3, 2))
    train, val = get_iterators(args)
    names = ["softmax_label", "softmax_level2_label", "softmax_level1_label"]
    assert [desc.name for desc in train.provide_label] == names == [desc.name for desc in val.provide_label]
    seen = 0
    for batch in train:
        classes, level2, level1 = (label.asnumpy().astype(int) for label in batch.label)
        assert level2.tolist() == [LEVEL2[c] for c in classes] and level1.tolist() == [LEVEL1[c] for c in classes]
        seen += len(classes)
    assert seen == 100  # 5 batches of 20, the last wrapping around
    last = list(val)[-1]  # 96 records: the last batch has 16 and 4 padding places, -1 in every head's label
    assert [label.asnumpy()[16:].tolist() for label in last.label] == [[-1] * 4] * 3 and last.pad == 4


def test_training_with_level_heads_weights_their_losses_and_records_them(trained):
    symbol = checkpoint.load_symbol(f"{trained['heads']}-symbol.json")
    assert symbol.list_outputs() == ["softmax_output", "softmax_level2_output", "softmax_level1_output"]
    scales = {node["name"]: node["attrs"].get("grad_scale") for node in json.loads(symbol.tojson())["nodes"]
              if node["op"] == "SoftmaxOutput"}
    assert scales == {"softmax": "0.8", "softmax_level2": "0.1", "softmax_level1": "0.1"}  # rwightman's default
    arg_shapes = dict(zip(symbol.list_arguments(), symbol.infer_shape(data=(1, 3, 16, 16))[0]))
    assert (arg_shapes["fc_weight"], arg_shapes["fc_level2_weight"], arg_shapes["fc_level1_weight"]) == \
        ((6, 8), (3, 8), (2, 8))
    settings = checkpoint.read_input_settings(f"{trained['heads']}-input.json")
    assert (settings.level_head_kinds, settings.level_head_classes, settings.feature_layer) == \
        (("level2_id", "level1_id"), (3, 2), "flatten0")
    with open(f"{trained['heads']}-metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    heads = ["train_level2_accuracy", "train_level1_accuracy", "val_level2_accuracy", "val_level1_accuracy"]
    assert list(rows[0]) == COLUMNS + heads and len(rows) == 2
    assert all(0 <= float(row[column]) <= 1 for row in rows for column in heads)
    # the class head alone: its files as before level heads
    with open(f"{trained['single']}-metrics.csv") as fh:
        assert next(csv.reader(fh)) == COLUMNS
    with open(f"{trained['single']}-input.json") as fh:
        assert "level_head_kinds" not in json.load(fh)
    single = json.loads(checkpoint.load_symbol(f"{trained['single']}-symbol.json").tojson())
    assert not any("grad_scale" in node.get("attrs", {}) for node in single["nodes"])


def test_a_head_of_loss_weight_zero_learns_nothing(recs, tiny_symbol, tmp_path):
    prefix = str(tmp_path / "zero")
    train_model.main(tiny_argv(dict(recs, tiny=tiny_symbol), prefix, epochs=2, extra=["--head-weights", "1,0,0.5"]))
    first, second = (checkpoint.load_params(f"{prefix}-{epoch:04d}.params")[0] for epoch in (1, 2))
    assert np.array_equal(first["fc_level2_weight"].asnumpy(), second["fc_level2_weight"].asnumpy())
    for name in ("fc_weight", "fc_level1_weight"):
        assert not np.array_equal(first[name].asnumpy(), second[name].asnumpy())


def test_fine_tuning_a_single_head_checkpoint_keeps_its_classifier_and_adds_the_heads(trained, tmp_path):
    params = f"{trained['single']}-0001.params"
    args = parse(trained, "--level-heads", "--symbol", trained["tiny"], "--feature-layer", "flatten0")
    resolve_labels(args)
    network = train_model.build_network(args)
    loaded, loaded_aux = checkpoint.load_params(params)
    kept, _, missing = select_params(network, (1, 3, 16, 16), loaded, loaded_aux)
    assert np.array_equal(kept["fc_weight"].asnumpy(), loaded["fc_weight"].asnumpy())
    assert sorted(missing) == ["fc_level1_bias", "fc_level1_weight", "fc_level2_bias", "fc_level2_weight"]
    prefix = str(tmp_path / "tuned")
    train_model.main(tiny_argv(trained, prefix, extra=["--params", params]))
    assert checkpoint.read_input_settings(f"{prefix}-input.json").level_head_kinds == ("level2_id", "level1_id")


def test_a_resume_continues_the_heads_exactly_and_refuses_other_heads(trained, tmp_path):
    whole, parts = str(tmp_path / "whole"), str(tmp_path / "parts")
    train_model.main(tiny_argv(trained, whole, epochs=2))
    train_model.main(tiny_argv(trained, parts, epochs=1))
    train_model.main(tiny_argv(trained, parts, epochs=2, extra=["--load-epoch", "1"]))
    assert max_relative_difference(f"{whole}-0002.params", f"{parts}-0002.params") <= RESUME_RTOL
    with pytest.raises(UserError, match=r"single-input.json: its checkpoints were trained with the class head alone, "
                                        "this run has the level heads level2_id, level1_id"):
        train_model.main(tiny_argv(trained, trained["single"], epochs=2, extra=["--load-epoch", "1"]))


# ---- prediction ---------------------------------------------------------------------------------

def softmax(logits):
    exp = np.exp(logits - logits.max(axis=1, keepdims=True))
    return exp / exp.sum(axis=1, keepdims=True)


def test_prediction_reads_the_class_head_or_combines_the_levels(trained):
    symbol, params = f"{trained['heads']}-symbol.json", f"{trained['heads']}-0002.params"
    batch = np.random.default_rng(0).integers(0, 256, (4, 3, 16, 16)).astype(np.uint8)
    logits_of = checkpoint.load_symbol(symbol).get_internals()
    network = mx.sym.Group([logits_of[f"{name}_output"] for name in ("fc", "fc_level2", "fc_level1")])
    module = mx.mod.Module(network, label_names=None, context=mx.cpu())
    module.bind(data_shapes=[("data", batch.shape)], for_training=False)
    module.set_params(*checkpoint.load_params(params), allow_extra=True)
    module.forward(mx.io.DataBatch([mx.nd.array(batch)]), is_train=False)
    classes, level2, level1 = (softmax(output.asnumpy()) for output in module.get_outputs())
    categories = Categories.load(trained["csv"])
    plain = Model(symbol, params, 4, None, [mx.cpu()], NUM_CLASSES).forward(mx.nd.array(batch)).asnumpy()
    combined = Model(symbol, params, 4, None, [mx.cpu()], NUM_CLASSES,
                     combine_levels=categories).forward(mx.nd.array(batch)).asnumpy()
    np.testing.assert_allclose(plain, classes, rtol=1e-5, atol=1e-7)
    product_of_levels = classes * level2[:, LEVEL2] * level1[:, LEVEL1]
    np.testing.assert_allclose(combined, product_of_levels / product_of_levels.sum(axis=1, keepdims=True),
                               rtol=1e-4, atol=1e-7)
    assert not np.allclose(combined, plain)


def test_an_ensemble_mixes_checkpoints_of_level_heads_and_of_one_head(trained, tmp_path):
    bson_path = write_bson(tmp_path / "valid.bson", colour_products(NUM_CLASSES, 3, seed=5, first_category=FIRST))
    outputs = {}
    for name, extra in (("class_heads", []), ("combined", ["--combine-levels"])):
        output = str(tmp_path / f"{name}.csv")
        predict.main(["--bson", bson_path, "--category-csv", trained["csv"],
                      "--symbol", f"{trained['single']}-symbol.json", f"{trained['heads']}-symbol.json",
                      "--params", f"{trained['single']}-0001.params", f"{trained['heads']}-0002.params",
                      "--output", output, "--ensembles", "1", "2", "--num-procs", "1", "--batch-size", "8", *extra])
        outputs[name] = {tag: open(os.path.join(tmp_path, f"{name}{tag}.csv")).read() for tag in ("", ".e1.m0", ".e2.m0")}
        assert len(outputs[name][""].splitlines()) == 1 + 3 * NUM_CLASSES
    # the single-head model alone (e1) is the same either way; the pair differs only through the other's levels
    assert outputs["class_heads"][".e1.m0"] == outputs["combined"][".e1.m0"]


# ---- the model script ---------------------------------------------------------------------------

def test_b02_is_m07_plus_the_heads_on_dataset_a_with_level_labels(tmp_path):
    code, b02, output = dry_run("train/beyond/B02_hierarchical_heads.sh", tmp_path)
    assert code == 0, output
    code, m07, _ = dry_run("train/M07.sh", tmp_path)
    assert code == 0 and len(b02) == len(m07) == 1
    b02_flags, m07_flags = b02[0][1], m07[0][1]
    assert (b02_flags.pop("--level-heads"), b02_flags.pop("--head-weights")) == (True, "0.8,0.1,0.1")
    for part in ("train", "valid"):
        flag = "--data-train" if part == "train" else "--data-val"
        assert b02_flags.pop(flag) == f"{tmp_path}/data/dataset_A_levels/{part}.rec"
        assert m07_flags.pop(flag) == f"{tmp_path}/data/dataset_A/{part}.rec"
    assert b02_flags.pop("--model-prefix") == f"{tmp_path}/models/B02/B02"
    assert m07_flags.pop("--model-prefix") == f"{tmp_path}/models/M07/M07"
    assert b02_flags == m07_flags  # M07's recipe and starting weights
    assert (f"# missing: {tmp_path}/data/dataset_A_levels/train.rec not found: run "
            "data/create_dataset_A_levels.sh first") in output


def test_create_dataset_a_levels_writes_dataset_a_with_label_vectors(demo_dir, tmp_path):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    result = run("data/create_dataset_A_levels.sh", DATA_DIR=data_dir, expect=2)
    assert "train_train.bson not found: run data/create_dataset_A.sh first" in result.stderr
    for name in ("train.bson", "category_names.csv"):
        shutil.copy2(demo_dir / name, data_dir / name)
    run("data/create_dataset_A.sh", DATA_DIR=data_dir, expect=0)
    run("data/create_dataset_A_levels.sh", DATA_DIR=data_dir, expect=0)
    categories = Categories.load(str(data_dir / "category_names.csv"))
    for part in ("train", "valid"):
        plain = read_records(str(data_dir / "dataset_A" / f"{part}.rec"))
        vectors = read_records(str(data_dir / "dataset_A_levels" / f"{part}.rec"))
        assert [(h.id, h.id2, jpeg) for h, jpeg in vectors] == [(h.id, h.id2, jpeg) for h, jpeg in plain]
        classes = np.array([h.label for h, _ in plain], dtype=int)
        expected = np.stack([classes, categories.group_ids_of("level2_id")[classes], categories.level1_ids[classes]],
                            axis=1)
        assert np.array_equal(np.array([h.label for h, _ in vectors]), expected)
        assert read_rec_info(str(data_dir / "dataset_A_levels" / f"{part}.rec")).label_width == 3

