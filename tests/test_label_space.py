"""What a label means travels with the files: X.rec.json beside each .rec, the label kind and the
category digest in PREFIX-input.json; labels, class counts and category CSVs that disagree are
refused in one line before any work, and files from before this still work, with one warning."""
import json
import logging
import os
import shutil

import pytest

from cli.runner import UserError
from data import bson2rec
from data.categories import Categories
from data.recordio import RecInfo, idx_path_of, read_rec_info, rec_info_path
from predict import predict
from predict.models import label_level
from tests.helpers import colour_products, write_bson, write_category_csv
from tests.predict_helpers import predict_args
from train import data, train_model
from train.checkpoint import InputSettings, input_settings_path, write_input_settings

FIRST = 1000000000


def convert(folder, name, category_ids, num_classes=4, extra=(), labelled=True):
    """A .rec of colour products of `num_classes` categories, made with a CSV of `category_ids`."""
    csv_path = write_category_csv(os.path.join(folder, f"{name}.csv"), category_ids)
    docs = colour_products(num_classes, 3, size=16, first_category=FIRST)
    if not labelled:
        for doc in docs:
            del doc["category_id"]
    bson_path = write_bson(os.path.join(folder, f"{name}.bson"), docs)
    rec = os.path.join(folder, f"{name}.rec")
    bson2rec.main(["--bson", bson_path, "--out-rec", rec, "--category-csv", csv_path, *extra])
    return rec, csv_path


@pytest.fixture(scope="module")
def recs(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("label_space"))
    ids = [FIRST + c for c in range(4)]
    made = {"folder": folder}
    made["train"], made["csv"] = convert(folder, "train", ids)
    made["valid"], _ = convert(folder, "valid", ids)
    made["other_csv_valid"], made["other_csv"] = convert(folder, "other", ids + [FIRST + 4])  # a 5th category
    made["level1"], _ = convert(folder, "level1", ids, extra=["--cate-type", "1"])
    made["test"], _ = convert(folder, "test", ids, labelled=False)
    return made


# ---- data.bson2rec writes X.rec.json -------------------------------------------------------------

def test_bson2rec_writes_what_the_labels_are_beside_the_rec(recs):
    categories = Categories.load(recs["csv"])
    with open(rec_info_path(recs["train"])) as fh:
        record = json.load(fh)
    assert record == {"format": "cdiscount-rec-info/1", "label_kind": "class_id", "num_classes": 4,
                      "categories_digest": categories.digest, "records": 12,
                      "category_csv": os.path.abspath(recs["csv"]), "shuffled": True}
    assert categories.digest.startswith("sha256:") and len(categories.digest) == len("sha256:") + 64
    level1 = read_rec_info(recs["level1"])  # the helper's CSV has two level-1 groups of two
    assert (level1.label_kind, level1.num_classes) == ("level1_sub_class", 2)
    test = read_rec_info(recs["test"])
    assert test == RecInfo(label_kind=None, num_classes=None, categories_digest=None, records=12, shuffled=True)
    assert not [name for name in os.listdir(recs["folder"]) if ".tmp-" in name]  # renamed into place


def test_rec_json_is_an_output_like_the_idx(recs, tmp_path):
    rec = str(tmp_path / "t.rec")
    shutil.copyfile(rec_info_path(recs["train"]), rec_info_path(rec))  # only the JSON is there
    argv = ["--bson", recs["train"][:-4] + ".bson", "--out-rec", rec, "--category-csv", recs["csv"]]
    with pytest.raises(UserError, match=f"^{rec}.json: output exists; pass --force"):
        bson2rec.main(argv)
    assert not os.path.exists(rec)
    bson2rec.main(argv + ["--force"])
    assert read_rec_info(rec).records == 12


def test_the_digest_is_of_the_table_not_of_the_bytes(tmp_path):
    lf = write_category_csv(tmp_path / "lf.csv", [1, 2, 3])
    text = open(lf, encoding="utf-8").read()
    (tmp_path / "crlf.csv").write_bytes(("\ufeff" + text.replace("\n", "\r\n")).encode("utf-8"))
    (tmp_path / "other.csv").write_text(text.replace("CATEGORY 2", "CATEGORY TWO"), encoding="utf-8")
    digest = Categories.load(lf).digest
    assert Categories.load(str(tmp_path / "crlf.csv")).digest == digest
    assert Categories.load(str(tmp_path / "other.csv")).digest != digest


def test_a_broken_rec_json_is_one_line(recs, tmp_path):
    rec = str(tmp_path / "b.rec")
    with open(rec_info_path(rec), "w") as fh:
        fh.write('{"format": "cdiscount-rec-info/1", "label_kind": "class_id", "num_classes": 0, "records": 1,'
                 ' "categories_digest": null}')
    with pytest.raises(UserError, match=f"^{rec}.json: not the label description data.bson2rec writes "
                                        r"\(num_classes 0: expected a positive count\)$"):
        read_rec_info(rec)


# ---- training takes the class count and label kind from it --------------------------------------

def train_args(recs, *extra, val=None):
    return train_model.build_parser().parse_args(
        ["--symbol", "densenet-41", "--data-train", recs["train"], *(["--data-val", val] if val else []),
         "--model-prefix", os.path.join(recs["folder"], "m", "m"), *extra])


def test_training_takes_num_classes_and_label_kind_from_the_rec(recs):
    args = train_args(recs, val=recs["valid"])
    data.resolve_labels(args)
    assert (args.num_classes, args.label_kind) == (4, "class_id")
    assert args.categories_digest == Categories.load(recs["csv"]).digest
    settings = data.input_settings(args, "flatten0")  # what PREFIX-input.json records
    assert (settings.num_classes, settings.label_kind, settings.categories_digest) == \
        (4, "class_id", args.categories_digest)
    agreeing = train_args(recs, "--num-classes", "4", "--label-kind", "class_id")
    data.resolve_labels(agreeing)
    assert agreeing.num_classes == 4


@pytest.fixture
def no_training(monkeypatch):
    """Building the network or reading the data fails the test: the mistake must be found first."""
    def refuse(*args, **kwargs):
        raise AssertionError("work started before the mistake was found")

    monkeypatch.setattr(train_model, "build_network", refuse)
    monkeypatch.setattr(train_model, "check_data", refuse)


def refused(main, argv):
    with pytest.raises(UserError) as error:
        main(argv)
    message = str(error.value)
    assert "\n" not in message
    return message


def train_argv(recs, *extra):
    return ["--symbol", "densenet-41", "--data-train", recs["train"], "--image-shape", "3,16,16",
            "--model-prefix", os.path.join(recs["folder"], "m", "m"), *extra]


def test_a_num_classes_that_disagrees_with_the_rec_is_one_line_before_work(recs, no_training):
    message = refused(train_model.main, train_argv(recs, "--num-classes", "5270"))
    assert message.startswith(f"--num-classes 5270: {recs['train']} holds class_id labels of 4 classes "
                              "(categories sha256:")
    assert message.endswith(f"({recs['train']}.json); give --num-classes 4, or leave it out")


def test_a_label_kind_that_disagrees_with_the_rec_is_one_line_before_work(recs, no_training):
    message = refused(train_model.main, train_argv(recs, "--label-kind", "level1_sub_class"))
    assert message.startswith(f"--label-kind level1_sub_class: {recs['train']} holds class_id labels")


def test_a_validation_rec_of_another_category_csv_is_one_line_before_work(recs, no_training):
    message = refused(train_model.main, train_argv(recs, "--data-val", recs["other_csv_valid"]))
    assert message.startswith(f"{recs['other_csv_valid']}: class_id labels of 5 classes (categories sha256:")
    assert f"but the training .rec {recs['train']} holds class_id labels of 4 classes" in message
    level1 = refused(train_model.main, train_argv(recs, "--data-val", recs["level1"]))
    assert level1.startswith(f"{recs['level1']}: level1_sub_class labels of 2 classes")


def test_an_unlabelled_rec_is_refused(recs, no_training):
    message = refused(train_model.main, train_argv(recs, "--data-val", recs["test"]))
    assert message.startswith(f"{recs['test']}: its records are unlabelled")


def test_a_resume_on_other_labels_is_refused(recs, tmp_path, no_training):
    prefix = str(tmp_path / "r")
    write_input_settings(input_settings_path(prefix), InputSettings(
        image_shape=(3, 16, 16), num_classes=4, label_kind="class_id", categories_digest="sha256:" + "0" * 64))
    argv = ["--symbol", "densenet-41", "--data-train", recs["train"], "--model-prefix", prefix, "--load-epoch", "1",
            "--num-epochs", "2"]
    message = refused(train_model.main, argv)
    assert message.startswith(f"{prefix}-input.json: its checkpoints were trained with categories_digest "
                              "sha256:0000")


def test_a_rec_without_json_trains_as_before_with_one_warning(recs, tmp_path, caplog):
    older = str(tmp_path / "older.rec")
    shutil.copyfile(recs["train"], older)
    shutil.copyfile(idx_path_of(recs["train"]), idx_path_of(older))
    args = train_model.build_parser().parse_args(["--symbol", "densenet-41", "--data-train", older])
    with caplog.at_level(logging.WARNING):
        data.resolve_labels(args)
    assert (args.num_classes, args.label_kind, args.categories_digest) == (5270, "class_id", None)
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning.startswith(f"{older}: no older.rec.json beside it")
    given = train_model.build_parser().parse_args(["--symbol", "densenet-41", "--data-train", older,
                                                   "--num-classes", "4"])
    data.resolve_labels(given)
    assert given.num_classes == 4


# ---- prediction takes --cate-level from the checkpoint and checks the category CSV ---------------

def with_labels(run, label_kind, csv_path, num_classes=4):
    """The colour model's PREFIX-input.json as training writes it now: its labels' kind and categories."""
    prefix = run["symbol"][:-len("-symbol.json")]
    digest = Categories.load(csv_path).digest
    write_input_settings(input_settings_path(prefix), InputSettings(
        image_shape=(3, 32, 32), num_classes=num_classes, label_kind=label_kind, categories_digest=digest))
    return input_settings_path(prefix)


def test_prediction_takes_the_label_level_from_the_checkpoint(colour_run):
    with_labels(colour_run, "level1_sub_class", colour_run["csv"])
    categories = Categories.load(colour_run["csv"])
    assert label_level([colour_run["symbol"]], categories) == 1
    assert label_level([colour_run["symbol"]], categories, 1) == 1
    with_labels(colour_run, "class_id", colour_run["csv"])
    assert label_level([colour_run["symbol"]], categories) == 3


def test_a_cate_level_that_disagrees_with_the_checkpoint_is_one_line(colour_run, no_heavy_work):
    path = with_labels(colour_run, "class_id", colour_run["csv"])
    message = refused(predict.main, predict_args(colour_run, colour_run["dir"] / "o.csv", "--cate-level", "1"))
    assert message == (f"--cate-level 1: {path} says the network was trained on class_id labels (--cate-level 3); "
                       "leave --cate-level out")


def test_a_category_csv_other_than_the_trainings_is_one_line_naming_both(colour_run, no_heavy_work, tmp_path):
    other_csv = write_category_csv(tmp_path / "other.csv", [FIRST + c for c in range(5)])
    path = with_labels(colour_run, "class_id", other_csv)  # trained on another table
    message = refused(predict.main, predict_args(colour_run, colour_run["dir"] / "o.csv"))
    assert message.startswith(f"{colour_run['csv']}: categories sha256:")
    assert f", but {path} was trained on categories sha256:" in message
    assert message.endswith("give the category CSV the model was trained with")


def test_models_of_different_label_kinds_are_one_line(colour_run, tmp_path):
    first = with_labels(colour_run, "class_id", colour_run["csv"])
    second = str(tmp_path / "second-symbol.json")
    shutil.copyfile(colour_run["symbol"], second)
    write_input_settings(str(tmp_path / "second-input.json"), InputSettings(
        image_shape=(3, 32, 32), label_kind="level1_sub_class",
        categories_digest=Categories.load(colour_run["csv"]).digest))
    with pytest.raises(UserError, match=f"^{first}: class_id labels, but {tmp_path}/second-input.json: "
                                        "level1_sub_class labels; one run predicts one kind$"):
        label_level([colour_run["symbol"], second], Categories.load(colour_run["csv"]))


def test_a_checkpoint_without_the_fields_predicts_as_before_with_one_warning(colour_run, caplog):
    categories = Categories.load(colour_run["csv"])
    with caplog.at_level(logging.WARNING):
        assert label_level([colour_run["symbol"], colour_run["symbol"]], categories) == 3
        assert label_level([colour_run["symbol"]], categories, 1) == 1  # as told
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and "no label kind nor category digest recorded" in warnings[0]
    assert warnings[0].startswith(f"{colour_run['symbol'][:-len('-symbol.json')]}-input.json: ")


def test_ensemble_refuses_stores_of_another_category_csv(colour_run, tmp_path):
    from predict import ensemble

    store = str(tmp_path / "store")
    assert predict.main(predict_args(colour_run, tmp_path / "p.csv", "--save-probs", store, "--num-procs", "1")) == 0
    renamed = tmp_path / "renamed.csv"  # the same ids and count, another table
    renamed.write_text(open(colour_run["csv"], encoding="utf-8").read().replace("CATEGORY 1", "CATEGORY ONE"))
    argv = ["--probs", store, "--output", str(tmp_path / "e.csv")]
    message = refused(ensemble.main, argv + ["--category-csv", str(renamed)])
    assert message.startswith(f"{renamed}: categories sha256:") and f"but {store} was predicted with" in message
    assert ensemble.main(argv + ["--category-csv", colour_run["csv"]]) == 0
