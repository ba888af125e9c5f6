"""Every data command refuses a mistake before its work, in one line, and says what it wrote when
there was nothing to do (issue 11)."""
import errno
import hashlib
import logging
import os

import pytest

from data import bson2rec, bson_md5_dict, dataset_summary, make_demo_data, plot_category_distribution
from data import split_train_bson
from data.bson_index import BsonIndex
from cli.files import atomic_outputs
from cli.runner import UserError, run_cli
from tests.helpers import make_jpeg, product, run, write_bson, write_category_csv

CATEGORY = 1000012345


@pytest.fixture
def small_bson(tmp_path):
    """Ten labelled products of one picture each."""
    return write_bson(tmp_path / "small.bson", [product(i, [make_jpeg(i)], CATEGORY) for i in range(1, 11)])


@pytest.fixture
def small_csv(tmp_path):
    return write_category_csv(tmp_path / "categories.csv", [CATEGORY])


def run_main(main, argv, capsys):
    """Run a command as its `python -m` would: (exit code, stderr)."""
    root = logging.getLogger()
    try:
        with pytest.raises(SystemExit) as stop:
            run_cli(main, [str(a) for a in argv])
    finally:  # run_cli's log handler writes to this test's captured stderr: no later test may use it
        for handler in [h for h in root.handlers if getattr(h, "_cdiscount", False)]:
            root.removeHandler(handler)
    return stop.value.code, capsys.readouterr().err


def refused(main, argv, capsys, message):
    code, err = run_main(main, argv, capsys)
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err
    return lines[0]


def digest(path):
    with open(path, "rb") as fh:
        return hashlib.md5(fh.read()).hexdigest()


def index_cache_built(bson_path):
    return os.path.exists(BsonIndex.cache_path(str(bson_path)))


# ---- 1. outputs and inputs checked before any work ------------------------------------------------
def command_lines(bson, csv, tmp_path, out_dir):
    """Each data command writing into `out_dir`."""
    return {
        "split": (split_train_bson.main, ["--bson", bson, "--save-train-bson", out_dir / "t.bson",
                                          "--save-val-bson", out_dir / "v.bson"]),
        "bson2rec": (bson2rec.main, ["--bson", bson, "--out-rec", out_dir / "x.rec", "--category-csv", csv]),
        "md5_dict": (bson_md5_dict.main, ["--bson", bson, "--out", out_dir / "d.npz"]),
        "plot": (plot_category_distribution.main, ["--bson", bson, "--out", out_dir / "p.png"]),
    }


@pytest.mark.parametrize("command", ["split", "bson2rec", "md5_dict", "plot"])
def test_a_missing_output_folder_fails_before_indexing(small_bson, small_csv, tmp_path, capsys, command):
    main, argv = command_lines(small_bson, small_csv, tmp_path, tmp_path / "missing")[command]
    refused(main, argv, capsys, "does not exist")
    assert not index_cache_built(small_bson)  # the BSON was not even indexed
    assert not (tmp_path / "missing").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
@pytest.mark.parametrize("command", ["split", "bson2rec", "md5_dict", "plot"])
def test_a_read_only_output_folder_fails_before_indexing(small_bson, small_csv, tmp_path, capsys, command):
    folder = tmp_path / "read_only"
    folder.mkdir()
    folder.chmod(0o555)
    main, argv = command_lines(small_bson, small_csv, tmp_path, folder)[command]
    refused(main, argv, capsys, "is not writable")
    assert not index_cache_built(small_bson)


def test_split_refuses_one_path_for_train_and_val(small_bson, tmp_path, capsys):
    same = tmp_path / "same.bson"
    refused(split_train_bson.main, ["--bson", small_bson, "--save-train-bson", same, "--save-val-bson", same,
                                    "--force"], capsys, "names the same file as output")
    assert not same.exists()


@pytest.mark.parametrize("link", ["same path", "symlink", "hard link"])
def test_split_refuses_to_write_over_its_input_even_with_force(small_bson, tmp_path, capsys, link):
    before = digest(small_bson)
    target = tmp_path / "alias.bson"
    if link == "same path":
        target = small_bson
    elif link == "symlink":
        target.symlink_to(small_bson)
    else:
        os.link(small_bson, target)
    refused(split_train_bson.main, ["--bson", small_bson, "--save-train-bson", target,
                                    "--save-val-bson", tmp_path / "v.bson", "--force"], capsys, "output is also an input")
    assert digest(small_bson) == before
    assert not (tmp_path / "v.bson").exists()


def test_each_command_refuses_an_output_that_is_its_input(small_bson, small_csv, tmp_path, capsys):
    for main, argv_of in ((bson2rec.main, lambda p: ["--bson", p, "--out-rec", p, "--category-csv", small_csv]),
                          (bson_md5_dict.main, lambda p: ["--bson", p, "--out", p]),
                          (plot_category_distribution.main, lambda p: ["--bson", p, "--out", p])):
        alias = tmp_path / "alias.rec"  # a name each output check accepts (.rec, an image of unknown format)
        os.link(small_bson, alias)
        refused(main, [*argv_of(alias), "--force"], capsys, "output is also an input")
        assert digest(alias) == digest(small_bson)
        alias.unlink()


def test_bson2rec_refuses_its_idx_over_the_category_csv(small_bson, tmp_path, capsys):
    csv = write_category_csv(tmp_path / "x.idx", [CATEGORY])
    refused(bson2rec.main, ["--bson", small_bson, "--out-rec", tmp_path / "x.rec", "--category-csv", csv, "--force"],
            capsys, "output is also an input")
    assert not (tmp_path / "x.rec").exists()


# ---- 2. errors name the user's output, never the temporary file -----------------------------------
def test_a_failed_write_names_the_output_not_its_temporary_file(small_bson, tmp_path, capsys, monkeypatch):
    real_open = os.open

    def disk_full(path, *args, **kwargs):
        if ".tmp-" in str(path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", disk_full)
    line = refused(split_train_bson.main, ["--bson", small_bson, "--save-train-bson", tmp_path / "t.bson",
                                           "--save-val-bson", tmp_path / "v.bson"], capsys, "No space left")
    assert str(tmp_path / "t.bson") in line and ".tmp-" not in line
    assert sorted(os.listdir(tmp_path)) == ["small.bson", "small.bson.index.npz"]


def test_md5_dictionary_write_error_names_the_output(small_bson, tmp_path, capsys, monkeypatch):
    def refuse(self, path):
        raise OSError(errno.EACCES, os.strerror(errno.EACCES), path)

    monkeypatch.setattr(bson_md5_dict.Md5Dictionary, "save", refuse)
    line = refused(bson_md5_dict.main, ["--bson", small_bson, "--out", tmp_path / "d.npz"], capsys,
                   "Permission denied")
    assert line.startswith(f"error: {tmp_path / 'd.npz'}:") and ".tmp-" not in line


def test_an_error_message_inside_atomic_outputs_names_the_final_file(tmp_path):
    final = str(tmp_path / "out.rec")
    with pytest.raises(UserError) as error:
        with atomic_outputs(final) as (tmp,):
            raise UserError(f"{tmp}: record 3 too large")
    assert str(error.value) == f"{final}: record 3 too large"


# ---- 4. one line for bad inputs; nothing to do is a warning that says what was written -------------
@pytest.mark.parametrize("content", [b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe binary", "catégorie".encode("latin-1")])
def test_a_binary_or_non_utf8_category_csv_is_one_line(small_bson, tmp_path, capsys, content):
    csv = tmp_path / "categories.csv"
    csv.write_bytes(b"category_id,category_level1,category_level2,category_level3\n" + content)
    refused(bson2rec.main, ["--bson", small_bson, "--out-rec", tmp_path / "x.rec", "--category-csv", csv], capsys,
            "not UTF-8 text")
    assert not (tmp_path / "x.rec").exists()


def test_a_directory_given_for_a_file_says_so(small_bson, small_csv, tmp_path, capsys):
    out = ["--out-rec", tmp_path / "x.rec"]
    refused(bson2rec.main, ["--bson", tmp_path, *out], capsys, "BSON is a directory")
    refused(bson2rec.main, ["--bson", small_bson, *out, "--category-csv", tmp_path], capsys,
            "category CSV is a directory")
    refused(bson2rec.main, ["--bson", small_bson, *out, "--category-csv", small_csv, "--md5-dict", tmp_path], capsys,
            "MD5 dictionary is a directory")
    refused(bson_md5_dict.main, ["--bson", tmp_path, "--out", tmp_path / "d.npz"], capsys, "BSON is a directory")
    refused(split_train_bson.main, ["--bson", tmp_path, "--save-train-bson", tmp_path / "t.bson",
                                    "--save-val-bson", tmp_path / "v.bson"], capsys, "BSON is a directory")


def test_a_csv_given_as_md5_dictionary(small_bson, small_csv, tmp_path, capsys):
    refused(bson2rec.main, ["--bson", small_bson, "--out-rec", tmp_path / "x.rec", "--category-csv", small_csv,
                            "--md5-dict", small_csv], capsys, "not an MD5 dictionary (not an .npz archive)")
    assert not index_cache_built(small_bson)  # refused before the BSON was read


def test_an_empty_bson_writes_empty_outputs_with_a_warning(tmp_path, small_csv, capsys, caplog):
    empty = tmp_path / "empty.bson"
    empty.write_bytes(b"")
    commands = [
        (split_train_bson.main, ["--bson", empty, "--save-train-bson", tmp_path / "t.bson",
                                 "--save-val-bson", tmp_path / "v.bson"], "wrote two empty files"),
        (bson2rec.main, ["--bson", empty, "--out-rec", tmp_path / "x.rec", "--category-csv", small_csv],
         "holds no images: wrote an empty"),
        (bson_md5_dict.main, ["--bson", empty, "--out", tmp_path / "d.npz"], "wrote an empty dictionary"),
    ]
    for main, argv, message in commands:
        caplog.clear()
        code, _ = run_main(main, argv, capsys)
        assert code == 0
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert len(warnings) == 1 and message in warnings[0], warnings
    assert all(os.path.getsize(tmp_path / name) == 0 for name in ("t.bson", "v.bson", "x.rec", "x.idx"))
    assert bson_md5_dict.Md5Dictionary.load(str(tmp_path / "d.npz")).meta["total_images"] == 0
    refused(plot_category_distribution.main, ["--bson", empty, "--out", tmp_path / "p.png"], capsys,
            "holds no products; nothing to plot")


def test_val_ratio_zero_warns_and_says_what_it_wrote(small_bson, tmp_path, capsys, caplog):
    code, _ = run_main(split_train_bson.main, ["--bson", small_bson, "--val-ratio", "0", "--save-train-bson",
                                               tmp_path / "t.bson", "--save-val-bson", tmp_path / "v.bson"], capsys)
    assert code == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert warnings == [f"--val-ratio 0 leaves no validation product: wrote all 10 products to "
                        f"{tmp_path / 't.bson'} and an empty {tmp_path / 'v.bson'}"]
    assert os.path.getsize(tmp_path / "v.bson") == 0
    assert os.path.getsize(tmp_path / "t.bson") == os.path.getsize(small_bson)


def test_val_ratio_out_of_range_is_refused_before_indexing(small_bson, tmp_path, capsys):
    refused(split_train_bson.main, ["--bson", small_bson, "--val-ratio", "1", "--save-train-bson",
                                    tmp_path / "t.bson", "--save-val-bson", tmp_path / "v.bson"], capsys,
            "--val-ratio 1.0: must be in [0, 1)")
    assert not index_cache_built(small_bson)


def test_bad_inputs_end_in_one_line_from_the_command_line(tmp_path):
    """The same through `python -m`: exit 2, one line on stderr, no traceback."""
    csv = tmp_path / "c.csv"
    csv.write_bytes(b"\xff\xfe\x00\x01" * 20)
    bson_path = write_bson(tmp_path / "s.bson", [product(1, [make_jpeg(1)], CATEGORY)])
    result = run(["python", "-m", "data.bson2rec", "--bson", bson_path, "--out-rec", str(tmp_path / "x.rec"),
                  "--category-csv", str(csv)])
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (f"error: {csv}: byte 0: not UTF-8 text; a category CSV is "
                                                      "Kaggle's category_names.csv")
    assert "Traceback" not in result.stderr and not (tmp_path / "x.rec").exists()


# ---- 5. polish ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, magic", [("p.jpg", b"\xff\xd8"), ("p.JPEG", b"\xff\xd8"), ("p.png", b"\x89PNG"),
                                         ("p.pdf", b"%PDF"), ("p.svg", b"<?xml")])
def test_plot_writes_the_format_of_its_extension(small_bson, tmp_path, capsys, name, magic):
    code, err = run_main(plot_category_distribution.main, ["--bson", small_bson, "--out", tmp_path / name], capsys)
    assert code == 0, err
    assert (tmp_path / name).read_bytes().startswith(magic)


def test_plot_refuses_an_unknown_extension_before_indexing(small_bson, tmp_path, capsys):
    refused(plot_category_distribution.main, ["--bson", small_bson, "--out", tmp_path / "p.gif"], capsys,
            "unknown image format .gif; name the output .png, .jpg, .pdf or .svg")
    assert not index_cache_built(small_bson) and not (tmp_path / "p.gif").exists()


@pytest.mark.parametrize("flags", [["--shuffle-seed", "3"], ["--random-seed", "3"], ["--shuffle-size", "100"]])
def test_no_shuffle_with_a_shuffle_setting_is_refused(small_bson, small_csv, tmp_path, capsys, flags):
    refused(bson2rec.main, ["--bson", small_bson, "--out-rec", tmp_path / "x.rec", "--category-csv", small_csv,
                            "--no-shuffle", *flags], capsys, "--no-shuffle with --shuffle-")
    assert not (tmp_path / "x.rec").exists()


def test_no_shuffle_alone_and_a_seed_alone_still_work(small_bson, small_csv, tmp_path, capsys):
    for name, flags in (("a.rec", ["--no-shuffle"]), ("b.rec", ["--shuffle-seed", "3", "--shuffle-size", "4"])):
        code, err = run_main(bson2rec.main, ["--bson", small_bson, "--out-rec", tmp_path / name,
                                             "--category-csv", small_csv, *flags], capsys)
        assert code == 0, err


def test_dataset_summary_of_an_empty_folder_says_it_found_nothing(tmp_path, capsys):
    assert dataset_summary.main(["--data-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"nothing found in {tmp_path}: looked for *.bson, *.rec (with its .idx) and md5_dict*.npz, "
        "in it and its subfolders"]


def test_split_takes_bson_and_the_original_input_bson(small_bson, tmp_path, capsys):
    for flag in ("--bson", "--input-bson"):
        code, err = run_main(split_train_bson.main, [flag, small_bson, "--save-train-bson", tmp_path / f"t{flag}.bson",
                                                     "--save-val-bson", tmp_path / f"v{flag}.bson"], capsys)
        assert code == 0, err


@pytest.mark.parametrize("build_parser, defaults", [
    (split_train_bson.build_parser, ["(default: 0.05)", "(default: 12648430)"]),
    (bson2rec.build_parser, ["(default: 3)", "(default: 12648430 = 0xC0FFEE)", "(default: 0, all records",
                             "(default: $DATA_DIR/category_names.csv"]),
    (make_demo_data.build_parser, ["(default: 40)", "(default: 4000)", "(default: 90)"]),
    (plot_category_distribution.build_parser, ["(default: from the file name"]),
    (bson_md5_dict.build_parser, []),
])
def test_help_shows_every_default(build_parser, defaults):
    parser = build_parser()
    text = " ".join(parser.format_help().split())
    for expected in defaults:
        assert expected in text
    assert "(default: None)" not in text and "(default: False)" not in text
    for action in parser._actions:  # every option with a value default says it
        if action.default not in (None, False, "==SUPPRESS==") and action.option_strings:
            assert f"(default: {action.default}" in text, action.option_strings


def test_a_file_given_for_a_folder_says_so(small_bson, tmp_path, capsys):
    refused(dataset_summary.main, ["--data-dir", small_bson], capsys, "is a file, not a folder")
    refused(make_demo_data.main, ["--out-dir", small_bson], capsys, "--out-dir is a file, not a folder")


def test_demo_data_creates_its_missing_out_dir(tmp_path, capsys):
    code, err = run_main(make_demo_data.main, ["--out-dir", tmp_path / "new" / "demo", "--num-categories", "2",
                                               "--num-train-products", "10", "--num-test-products", "1",
                                               "--image-size", "32"], capsys)
    assert code == 0, err
    assert sorted(os.listdir(tmp_path / "new" / "demo")) == sorted(make_demo_data.OUTPUT_NAMES)
