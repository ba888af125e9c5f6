"""predict/run_validate.sh and predict/run_predict.sh on a tiny setup (two colour models as M14 and M13)."""
import mxnet as mx
import pytest

from data import bson_md5_dict
from predict.submission import read_submission
from tests.helpers import colour_products, run, write_bson, write_category_csv
from tests.predict_helpers import FIRST_CATEGORY, NUM_CLASSES, colour_centroid_model


def test_validate_and_predict_scripts(tmp_path):
    data_dir, model_dir = tmp_path / "data", tmp_path / "models"
    (data_dir / "dataset_A").mkdir(parents=True)
    docs = colour_products(NUM_CLASSES, 6, seed=0, first_category=FIRST_CATEGORY)
    write_bson(data_dir / "dataset_A" / "train_train.bson", docs[:24])
    write_bson(data_dir / "dataset_A" / "train_valid.bson", docs[24:])
    write_bson(data_dir / "train.bson", docs)
    test_docs = [{k: v for k, v in d.items() if k != "category_id"} for d in docs[24:]]
    write_bson(data_dir / "test.bson", test_docs)
    write_category_csv(data_dir / "category_names.csv", [FIRST_CATEGORY + c for c in range(NUM_CLASSES)])
    bson_md5_dict.main(["--bson", str(data_dir / "dataset_A" / "train_train.bson"),
                        "--out", str(data_dir / "dataset_A" / "md5_dict_train_train.npz")])
    bson_md5_dict.main(["--bson", str(data_dir / "train.bson"), "--out", str(data_dir / "md5_dict_train.npz")])
    for name in ("M14", "M13"):
        (model_dir / name).mkdir(parents=True)
        colour_centroid_model(str(model_dir / name / name))  # writes NAME-symbol.json and NAME-0001.params
    env = dict(DATA_DIR=str(data_dir), MODEL_DIR=str(model_dir), GPUS="", MODELS="M14:1 M13:1",
               ENSEMBLES="1", IMAGE_SHAPE="3,32,32", BATCH_SIZE="16", NUM_PROCS="1")

    # run from elsewhere with relative folders: they are the caller's, not the repository's
    relative = dict(env, DATA_DIR="data", MODEL_DIR="models", OUT_DIR="validation")
    validate = run("predict/run_validate.sh", cwd=tmp_path, **relative, timeout=300)
    assert validate.returncode == 0, validate.stderr[-2000:]
    scores = [line for line in validate.stdout.splitlines() if line.startswith(("all models, m", "m1 + product"))]
    assert len(scores) == 3 and all(float(line.split()[-2]) >= 0.95 for line in scores)
    assert (tmp_path / "validation" / "per_category.csv").exists()
    # the original's MD5 experiment from the probability store: every type, both means, no second forward pass
    sweep = validate.stdout.split("--md5-dict-type ")[1:]
    assert [part.split(",")[0] for part in sweep] == ["unique", "majority", "l1", "l2", "softmax", "none"]
    assert all(sum(line.startswith(("e2.m0", "e2.m1")) for line in part.splitlines()) == 2 for part in sweep)
    analysis = run("predict/run_analyze.sh", cwd=tmp_path, **relative, timeout=120)
    assert analysis.returncode == 0, analysis.stderr[-2000:]
    assert (tmp_path / "validation" / "analysis" / "level1_accuracy.csv").exists()

    done = run("predict/run_predict.sh", **dict(env, OUT_DIR=str(tmp_path / "subs")), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    final = tmp_path / "subs" / "submission_final.csv.gz"
    assert f"OK: {len(test_docs)} products" in done.stdout and f"submission: {final}" in done.stdout
    ids, categories = read_submission(str(final))
    truth = {d["_id"]: d["category_id"] for d in docs}
    assert sorted(ids.tolist()) == sorted(d["_id"] for d in test_docs)
    assert all(truth[i] == c for i, c in zip(ids.tolist(), categories.tolist()))  # all in the dictionary too
    # the file post-processed is the sum over pictures of all (2) models, added to ENSEMBLES=1
    assert f"rows of {tmp_path / 'subs' / 'submission.e2.m1.csv.gz'}" in done.stderr
    for tag in ("e1.m0", "e1.m1", "e2.m0", "e2.m1"):
        assert (tmp_path / "subs" / f"submission.{tag}.csv.gz").exists()

    # a missing checkpoint is named
    missing = run("predict/run_predict.sh", **dict(env, MODELS="M14:1 M14:3", OUT_DIR=str(tmp_path / "other")),
                  timeout=60)
    assert missing.returncode == 2 and "M14-0003.params not found" in missing.stderr


@pytest.mark.skipif(mx.context.num_gpus() > 0, reason="this MXNet build has GPUs")
def test_the_default_gpus_on_a_cpu_build_are_one_line(tmp_path):
    """GPUS unset (0,...,7) on MXNet's CPU build: one line at start-up saying GPUS= for the CPU."""
    data_dir, model_dir = tmp_path / "data", tmp_path / "models"
    data_dir.mkdir()
    write_bson(data_dir / "test.bson", [])
    write_category_csv(data_dir / "category_names.csv", [FIRST_CATEGORY])
    (data_dir / "md5_dict_train.npz").write_bytes(b"")
    (model_dir / "M14").mkdir(parents=True)
    colour_centroid_model(str(model_dir / "M14" / "M14"))
    env = dict(GPUS=None, DATA_DIR=str(data_dir), MODEL_DIR=str(model_dir), MODELS="M14:1", ENSEMBLES="1",
               OUT_DIR=str(tmp_path / "out"))
    done = run("predict/run_predict.sh", **env, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --gpus 0,1,2,3,4,5,6,7: ") and "GPUS=" in lines[0], lines
    assert not any((tmp_path / "out").glob("*.csv*"))
