"""The prediction commands' mistakes a user makes: each is refused before any work, in one line
(`error: ...`, exit 2, no traceback), and no output is written or destroyed."""
import argparse
import logging
import os

import mxnet as mx
import pytest

from cli.runner import UserError
from predict import (analyze, check_submission, md5_predict, merge_shards, postprocess_product, predict,
                     score_submission, submission)
from predict.submission import read_submission, write_submission
from tests.helpers import run
from tests.predict_helpers import predict_args


def one_line_error(main, argv, capsys=None):
    """Run `main`; returns the `error: ...` line run_cli prints for it (exit 2): a UserError of one line,
    not another exception (a traceback)."""
    with pytest.raises(UserError) as refused:
        main(argv)
    message = str(refused.value)
    assert "\n" not in message and "Traceback" not in message, message
    return f"error: {message}"


# ---- 1. outputs checked with the inputs, at start-up -------------------------------------------
def test_predict_refuses_an_output_that_is_its_input_even_with_force(colour_run, no_heavy_work, capsys):
    bson = colour_run["bson"]
    before = open(bson, "rb").read()
    line = one_line_error(predict.main, predict_args(colour_run, bson, "--force"), capsys)
    assert f"{bson}: output is also an input" in line
    linked = colour_run["dir"] / "linked.csv"  # the same file by another name
    os.link(colour_run["params"], linked)
    line = one_line_error(predict.main, predict_args(colour_run, linked, "--force"), capsys)
    assert "output is also an input" in line and str(linked) in line
    # an ensemble variant's name counts too: it must not be the category CSV
    variant_clash = colour_run["dir"] / "cats.csv"
    os.symlink(colour_run["csv"], colour_run["dir"] / "cats.e1.m0.csv")
    line = one_line_error(predict.main, predict_args(colour_run, variant_clash, "--ensembles", "1", "--force"),
                          capsys)
    assert "cats.e1.m0.csv: output is also an input" in line
    assert open(bson, "rb").read() == before


def test_predict_checks_its_output_folder_before_loading_anything(colour_run, no_heavy_work, capsys):
    output = colour_run["dir"] / "missing" / "sub.csv"
    line = one_line_error(predict.main, predict_args(colour_run, output), capsys)
    assert f"{output}: output folder" in line and "does not exist" in line


def test_md5_predict_refuses_its_input_as_output(colour_run, no_heavy_work, capsys):
    bson = colour_run["bson"]
    line = one_line_error(md5_predict.main, ["--train-bson", bson, "--bson", bson, "--output", bson, "--force"],
                          capsys)
    assert "output is also an input" in line
    line = one_line_error(md5_predict.main, ["--train-bson", bson, "--bson", bson, "--output",
                                             str(colour_run["dir"] / "no" / "o.csv")], capsys)
    assert "does not exist" in line


def test_merge_and_postprocess_refuse_an_input_as_output(tmp_path, capsys):
    src, md5, bson = (str(tmp_path / n) for n in ("sub.csv", "md5.csv", "test.bson"))
    write_submission(src, [1, 2], [10, 20])
    write_submission(md5, [2], [5])
    open(bson, "wb").close()
    before = open(src).read()
    line = one_line_error(postprocess_product.main, ["--src", src, "--md5", md5, "--output", src, "--force"],
                          capsys)
    assert f"{src}: output is also an input" in line
    line = one_line_error(merge_shards.main, [src, "--bson", bson, "--output", src, "--force"], capsys)
    assert f"{src}: output is also an input" in line
    assert open(src).read() == before


def test_a_write_error_names_the_users_output_not_the_temporary_file(tmp_path, monkeypatch):
    output = str(tmp_path / "sub.csv")

    def denied(temp_path, final_path):
        raise PermissionError(13, "Permission denied", temp_path)

    monkeypatch.setattr(submission, "_open_for_write", denied)
    with pytest.raises(OSError) as failed:
        write_submission(output, [1], [2])
    assert failed.value.filename == output and not os.listdir(tmp_path)


# ---- 2. GPUs ------------------------------------------------------------------------------------
@pytest.mark.skipif(mx.context.num_gpus() > 0, reason="this MXNet build has GPUs")
def test_gpus_on_a_cpu_build_and_bad_ids_are_one_line(colour_run, no_heavy_work, capsys):
    out = colour_run["dir"] / "sub.csv"
    line = one_line_error(predict.main, predict_args(colour_run, out, "--gpus", "0,1,2,3,4,5,6,7"), capsys)
    assert "--gpus 0,1,2,3,4,5,6,7" in line and "GPUS=" in line
    line = one_line_error(predict.main, predict_args(colour_run, out, "--gpus", "abc"), capsys)
    assert "--gpus abc" in line
    assert not out.exists()


# ---- 3. one line for each mistake -----------------------------------------------------------------
def test_predict_mistakes_are_one_line(colour_run, capsys):
    folder, csv = colour_run["dir"], colour_run["csv"]
    out = folder / "sub.csv"
    cases = [
        (["--cut", "-5"], "--cut -5: must be at least 0"),
        (["--params", csv], f"{csv}: not a readable MXNet .params file"),  # a text file as .params
        (["--md5-dict", csv], f"{csv}: not an MD5 dictionary"),            # a CSV as the dictionary
        (["--params", str(folder)], f"{folder}: --params is a directory"),
        (["--bson", str(folder)], f"{folder}: --bson BSON is a directory"),
        (["--category-csv", str(folder)], f"{folder}: --category-csv category is a directory"),
        (["--category-csv", str(folder / "nothing.csv")], "nothing.csv: --category-csv category file not found"),
        (["--shard", "3/3"], "--shard 3/3: need 0 <= i < n"),
    ]
    for extra, expected in cases:
        line = one_line_error(predict.main, predict_args(colour_run, out, *extra), capsys)
        assert expected in line, (extra, line)
    assert not out.exists()


def test_the_other_commands_name_a_directory_as_such(colour_run, tmp_path, capsys):
    folder, bson = str(tmp_path), colour_run["bson"]
    write_submission(str(tmp_path / "sub.csv"), [1], [2])
    sub = str(tmp_path / "sub.csv")
    commands = [
        (md5_predict.main, ["--train-bson", bson, "--bson", folder, "--output", str(tmp_path / "o.csv")]),
        (postprocess_product.main, ["--src", folder, "--md5", sub, "--output", str(tmp_path / "o.csv")]),
        (merge_shards.main, [folder, "--bson", bson, "--output", str(tmp_path / "o.csv")]),
        (check_submission.main, [folder, "--bson", bson, "--category-csv", colour_run["csv"]]),
        (score_submission.main, ["--truth", sub, folder]),
        (analyze.main, ["--predict-csv", sub, "--bson", folder, "--category-csv", colour_run["csv"]]),
    ]
    for main, argv in commands:
        line = one_line_error(main, argv, capsys)
        assert f"{folder}: " in line and "is a directory" in line, (main.__module__, line)


def test_one_name_per_concept_with_the_originals_spellings_kept():
    """--category-csv, --bson, --image-shape, --output across the commands; the old spellings still parse."""
    args = predict.build_parser().parse_args(["--bson", "b", "--category-csv", "c", "--image-shape", "3,8,8",
                                              "--symbol", "s", "--params", "p", "--output", "o"])
    old = predict.build_parser().parse_args(["--bson", "b", "--csv", "c", "--data-shape", "3,8,8",
                                             "--symbol", "s", "--params", "p", "--output", "o"])
    assert (args.category_csv, args.image_shape) == (old.category_csv, old.image_shape) == ("c", "3,8,8")
    assert md5_predict.build_parser().parse_args(["--md5-dict", "d", "--test-bson", "b", "--output", "o"]).bson == "b"
    post = postprocess_product.build_parser()
    assert post.parse_args(["--src", "s", "--md5", "m", "--dst", "o"]).output == "o"
    assert post.parse_args(["--src", "s", "--md5", "m", "--output", "o"]).output == "o"
    assert check_submission.build_parser().parse_args(["x", "--bson", "b", "--category-csv", "c"]).category_csv == "c"
    assert score_submission.build_parser().parse_args(["--truth-bson", "b", "x"]).bson == "b"
    assert analyze.build_parser().parse_args(["--predict-csv", "p", "--bson", "b", "--csv", "c"]).category_csv == "c"


@pytest.mark.parametrize("module", [predict, score_submission, analyze])  # those with defaults beyond None, off
def test_help_shows_every_default(module):
    parser = module.build_parser()
    text = " ".join(parser.format_help().split())
    for action in parser._actions:
        if action.help and not any(action.default is nothing for nothing in (None, False, argparse.SUPPRESS)):
            shown = action.default if not isinstance(action.default, list) else action.default or "[]"
            assert f"(default: {shown})" in text, action.dest


def test_the_command_line_says_it_in_one_line():
    """The real entry point: no traceback, exit 2."""
    result = run(["python", "-m", "predict.predict", "--bson", "b", "--symbol", "s", "--params", "p", "--output",
                  "o.csv", "--gpus", "abc"], timeout=120)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "error: --gpus abc: expected comma-separated GPU ids such as 0,1 (empty: the CPU)"]


# ---- 4. nothing to do ---------------------------------------------------------------------------------
def test_an_empty_bson_or_shard_warns_and_writes_header_only_outputs(colour_run, caplog):
    caplog.set_level(logging.INFO)
    empty = colour_run["dir"] / "empty.bson"
    empty.write_bytes(b"")
    out = colour_run["dir"] / "empty.csv"
    assert predict.main(predict_args({**colour_run, "bson": str(empty)}, out, "--ensembles", "1")) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"
                and "no label kind nor category digest" not in r.getMessage()]  # the model has no PREFIX-input.json
    assert len(warnings) == 1 and "nothing to predict" in warnings[0] and "empty.bson has no products" in warnings[0]
    assert f"wrote {out} (0 rows)" in caplog.text
    for path in (out, colour_run["dir"] / "empty.e1.m0.csv"):
        assert len(read_submission(str(path))[0]) == 0
    caplog.clear()
    shard_out = colour_run["dir"] / "shard.csv"  # 48 products in 49 shards: shard 0 is empty
    assert predict.main(predict_args(colour_run, shard_out, "--shard", "0/49")) == 0
    assert "no products in --shard 0/49" in caplog.text and f"wrote {shard_out} (0 rows)" in caplog.text


def test_md5_predict_on_an_empty_bson_says_what_it_wrote(colour_run, tmp_path, caplog):
    empty = tmp_path / "empty.bson"
    empty.write_bytes(b"")
    out = tmp_path / "overrides.csv"
    assert md5_predict.main(["--train-bson", colour_run["bson"], "--bson", str(empty), "--output", str(out)]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "no products" in warnings[0] and str(out) in warnings[0]
    assert len(read_submission(str(out))[0]) == 0


# ---- 5. polish --------------------------------------------------------------------------------------------
def test_postprocess_refuses_a_submission_with_duplicate_rows(tmp_path, capsys):
    src, md5, dst = (str(tmp_path / n) for n in ("sub.csv", "md5.csv", "final.csv"))
    write_submission(src, [1, 2, 2, 3], [10, 20, 21, 30])
    write_submission(md5, [3], [5])
    line = one_line_error(postprocess_product.main, ["--src", src, "--md5", md5, "--output", dst], capsys)
    assert f"{src}: 1 product listed more than once: _id 2" in line
    assert not os.path.exists(dst)


def test_check_submission_counts_in_words(tmp_path, colour_run, caplog):
    caplog.set_level(logging.INFO)
    sub = tmp_path / "sub.csv"
    docs = colour_run["docs"]
    categories = [d["category_id"] for d in docs[:-1]] + [7]  # one category_id not in the CSV
    write_submission(str(sub), [d["_id"] for d in docs], categories)
    assert check_submission.main([str(sub), "--bson", colour_run["bson"], "--category-csv", colour_run["csv"]]) == 1
    assert f"{len(docs)} rows, 1 problem" in caplog.text and "1 problems" not in caplog.text
