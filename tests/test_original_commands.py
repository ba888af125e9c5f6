"""The original solution's documented prediction command lines, with `python3 -u X.py` replaced by
`python -m predict.X` and its paths by ours, parse and run; its flags that mean something else
here stop with one line that says what to use."""
import os
import pickle

import numpy as np
import pytest

from data import bson_md5_dict
from cli.runner import UserError
from data.md5_dict import Md5Dictionary
from predict import md5_predict, postprocess_product, predict
from predict.submission import read_submission
from tests.helpers import colour_products, write_bson, write_category_csv
from tests.predict_helpers import FIRST_CATEGORY, NUM_CLASSES, colour_centroid_model

MODELS = ["M14/dpn107-0020", "M13/se-resnext-101-64x4d-seed1-0013", "M12/dpn131-seed1-0017",
          "M11/se-resnext-101-64x4d-0015", "M10/resnext-101-0019", "M09/resnext-101-64x4d-seed1-0015",
          "M08/dpn131-0018", "M07/resnext-101-64x4d-0015", "M06/dpn92-0011", "M05/dpn98-0020",
          "M04/densenet-161-0020", "M03/dpn92-unique-02-0013", "M02/dpn92-unique-01-0013",
          "M01/resnext-101-unique-0023"]


def final_predict_command(root):
    """predict/final_submission/run_predict.sh, first command, after `python3 -u .../predict.py`."""
    return (["--zmq-port", "18400", "--bson", f"{root}/data/test.bson", "--csv", f"{root}/data/category_names.csv",
             "--params", *(f"{root}/train/{m}.params" for m in MODELS),
             "--symbol", *(f"{root}/train/{m.rsplit('-', 1)[0]}-symbol.json" for m in MODELS),
             "--batch-size", "512", "--data-shape", "3,180,180", "--gpus", "0,1,2,3,4,5,6,7", "--num-procs", "24",
             "--md5-dict-pkl", f"{root}/data/train_md5_dict.pkl", "--md5-dict-type", "unique", "--md5-mode", "0",
             "--multi-view", "1", "--ensembles", "8", "11", "14", "--output", "output_ensemble14_20171211.csv"])


def test_the_final_predict_command_parses_and_refuses_only_the_pickle(tmp_path):
    command = final_predict_command(tmp_path)
    with pytest.raises(UserError, match=r"--md5-dict-pkl .*train_md5_dict.pkl: .*pickle.*--md5-dict.*"
                                        r"python -m data.bson_md5_dict --bson TRAIN.bson --out DICT.npz"):
        predict.build_parser().parse_args(command)
    at = command.index("--md5-dict-pkl")
    command[at:at + 2] = ["--md5-dict", f"{tmp_path}/data/md5_dict_train.npz"]
    args = predict.build_parser().parse_args(command)
    assert args.ensembles == [8, 11, 14] and len(args.params) == len(args.symbol) == 14
    assert (args.zmq_port, args.md5_mode, args.num_procs, args.multi_view, args.batch_size) == (18400, 0, 24, 1, 512)
    assert args.params[0].endswith("M14/dpn107-0020.params")
    assert args.symbol[-1].endswith("M01/resnext-101-unique-symbol.json")


@pytest.fixture
def tiny(tmp_path):
    """A labelled and an unlabelled BSON of colour patches, the category CSV, two colour models, and
    the MD5 dictionary; the original's paths laid out under `root`."""
    root = tmp_path / "root"
    (root / "data").mkdir(parents=True)
    docs = colour_products(NUM_CLASSES, 4, seed=0, first_category=FIRST_CATEGORY)
    write_bson(root / "data" / "train.bson", docs)
    write_bson(root / "data" / "test.bson", [{k: v for k, v in d.items() if k != "category_id"} for d in docs])
    write_category_csv(root / "data" / "category_names.csv", [FIRST_CATEGORY + c for c in range(NUM_CLASSES)])
    bson_md5_dict.main(["--bson", str(root / "data" / "train.bson"), "--out", str(root / "data" / "md5.npz")])
    models = [colour_centroid_model(str(tmp_path / f"model{i}")) for i in range(2)]
    return {"root": root, "docs": docs, "models": models}


def _flags(tiny, bson, output, *extra):
    root = tiny["root"]
    return ["--zmq-port", "18300", "--bson", str(root / "data" / bson),
            "--csv", str(root / "data" / "category_names.csv"),
            "--params", *(m[1] for m in tiny["models"]), "--symbol", *(m[0] for m in tiny["models"]),
            "--batch-size", "16", "--data-shape", "3,32,32", "--gpus", "", "--num-procs", "1", "--output", output,
            *extra]


def test_the_original_validation_flags_run(tiny, capsys):
    # predict/run_validate.sh's flags: --resize 0, --cate-level 3, --mean-max-pooling 0, --output "" (write
    # nothing), and the bare --print-summary of the final predict.py; --md5-dict for its pickle
    flags = _flags(tiny, "train.bson", "", "--resize", "0", "--cate-level", "3", "--md5-dict",
                   str(tiny["root"] / "data" / "md5.npz"), "--md5-dict-type", "unique", "--multi-view", "1",
                   "--mean-max-pooling", "0", "--md5-mode", "0", "--ensembles", "1", "2", "--print-summary")
    before = sorted(os.listdir(tiny["root"] / "data"))
    assert predict.main(flags) == 0
    out = capsys.readouterr().out
    assert sorted(os.listdir(tiny["root"] / "data")) == before  # nothing written
    assert "e2.m0" in out and "e1.m1" in out
    assert "category_id,class_id,products,correct,accuracy" in out  # the summary, on stdout
    with pytest.raises(UserError, match="--multi-view-mean geometric: .*--ensembles N.*m1 \\(sum\\)"):
        predict.main(flags + ["--multi-view-mean", "geometric"])
    with pytest.raises(UserError, match="--mean-max-pooling 1: .*not implemented"):
        predict.main(flags + ["--mean-max-pooling", "1"])


def test_the_final_md5_and_postprocess_commands_run(tiny, tmp_path):
    root = tiny["root"]
    output = str(tmp_path / "output_ensemble14_20171211.csv")
    assert predict.main(_flags(tiny, "test.bson", output, "--md5-dict-type", "unique", "--md5-mode", "0",
                               "--multi-view", "1", "--ensembles", "1", "2")) == 0
    # md5_predict.py's command: --md5-dict-pkl was never read by the original; here it is never opened
    pickle_path = tmp_path / "train_md5_dict.pkl"
    pickle_path.write_bytes(pickle.dumps(_Exploit(tmp_path / "pwned_marker")))
    assert md5_predict.main(["--train-bson", str(root / "data" / "train.bson"), "--test-bson",
                             str(root / "data" / "test.bson"), "--md5-dict-pkl", str(pickle_path),
                             "--output", str(tmp_path / "md5_output.txt")]) == 0
    assert not (tmp_path / "pwned_marker").exists()
    with pytest.raises(UserError, match="--md5-dict-pkl .*pickle.*--md5-dict"):  # nothing else to read
        md5_predict.main(["--test-bson", str(root / "data" / "test.bson"), "--md5-dict-pkl", str(pickle_path),
                          "--output", str(tmp_path / "other.txt")])
    # postprocess_product.py's command, on the file the solution submitted
    assert postprocess_product.main(["--src", str(tmp_path / "output_ensemble14_20171211.e2.m1.csv"),
                                     "--dst", str(tmp_path / "output_ensemble14_20171211.e2.m1.md5.csv"),
                                     "--md5", str(tmp_path / "md5_output.txt")]) == 0
    _, categories = read_submission(str(tmp_path / "output_ensemble14_20171211.e2.m1.md5.csv"))
    assert np.array_equal(categories, [d["category_id"] for d in tiny["docs"]])  # every product hash known


class _Exploit:
    """Unpickling it would create `marker`."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_majority_refuses_a_version_1_dictionary(tiny, tmp_path):
    dictionary = Md5Dictionary.load(str(tiny["root"] / "data" / "md5.npz"))
    dictionary.meta["version"] = 1
    dictionary.save(str(tmp_path / "old.npz"))
    flags = _flags(tiny, "test.bson", str(tmp_path / "sub.csv"), "--md5-dict", str(tmp_path / "old.npz"))
    with pytest.raises(UserError, match=r"old.npz: an older dictionary \(format version 1\).*rebuild"):
        predict.main(flags + ["--md5-dict-type", "majority"])
    assert predict.main(flags + ["--md5-dict-type", "unique"]) == 0  # other types do not depend on the order
