"""train/run_model.sh for real, through scripts like train/Mxx.sh: stages on one machine, and under
train/launch_dist.sh (local)."""
import csv
import os
import subprocess
import sys

import pytest

from data import bson2rec
from tests.conftest import REPO_ROOT
from tests.helpers import colour_products, write_bson, write_category_csv
from tests.test_recipes import model_script


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("scripts")
    data_dir = root / "data"
    (data_dir / "dataset_A").mkdir(parents=True)
    csv_path = write_category_csv(data_dir / "category_names.csv", [1000000000 + c for c in range(4)])
    bson_path = write_bson(root / "colours.bson", colour_products(4, 24, size=32))
    for part in ("train", "valid"):
        bson2rec.main(["--bson", bson_path, "--out-rec", str(data_dir / "dataset_A" / f"{part}.rec"),
                       "--category-csv", csv_path])
    env = dict(os.environ, DATA_DIR=str(data_dir), PRETRAINED_DIR=str(root / "pretrained"),
               NUM_CLASSES="4", DATA_NTHREADS="1", TOP_K="2",
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    for name in ("STAGES", "LOAD_EPOCH", "DRY_RUN", "GPUS"):
        env.pop(name, None)
    return {"root": root, "env": env}


def metrics(prefix):
    with open(f"{prefix}-metrics.csv") as fh:
        return list(csv.DictReader(fh))


def test_stages_train_resume_and_change_the_optimizer(setup, tmp_path):
    # stage 2 resumes stage 1's checkpoint with another optimizer and learning rate
    script = model_script(tmp_path / "Mtiny.sh", ["START_EPOCH=0 END_EPOCH=1",
                                                  "START_EPOCH=1 END_EPOCH=2 OPTIMIZER=sgd LR=0.01"],
                          default_stages="1 2", LR_STEP_EPOCHS="5")
    env = dict(setup["env"], MODEL_DIR=str(tmp_path / "models"))
    result = subprocess.run([script], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    prefix = tmp_path / "models" / "Mtiny" / "Mtiny"
    for suffix in ("-symbol.json", "-0001.params", "-0002.params", "-metrics.csv", "-curve.png", "-train.log"):
        assert os.path.exists(f"{prefix}{suffix}")
    rows = metrics(prefix)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert [float(r["lr"]) for r in rows] == pytest.approx([0.001, 0.01])  # each stage's own settings
    log = (tmp_path / "models" / "Mtiny" / "Mtiny-train.log").read_text()
    assert "# Mtiny stage 1: epoch 1 from the starting weights" in log
    assert "# Mtiny stage 2: epoch 2 from checkpoint 1" in log
    assert "this stage uses sgd" in log  # the saved NADAM state is not given to SGD: a fresh optimizer


def test_model_script_under_the_distributed_launcher(setup, tmp_path):
    script = model_script(tmp_path / "Mtiny.sh", ["START_EPOCH=0 END_EPOCH=2"])
    env = dict(setup["env"], MODEL_DIR=str(tmp_path / "models"), LAUNCHER="local", NUM_WORKERS="2",
               NUM_SERVERS="1")
    result = subprocess.run([os.path.join(REPO_ROOT, "train", "launch_dist.sh"), script], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    model_dir = tmp_path / "models" / "Mtiny"
    assert (model_dir / "Mtiny-0002.params").exists()  # written by rank 0
    logs = sorted(os.listdir(model_dir / "launch_logs"))
    assert logs == ["scheduler.log", "server-0.log", "worker-0.log", "worker-1.log"]
    worker_logs = "".join((model_dir / "launch_logs" / f"worker-{i}.log").read_text() for i in (0, 1))
    assert "kvstore dist_sync: worker 0 of 2" in worker_logs and "kvstore dist_sync: worker 1 of 2" in worker_logs
    rows = metrics(model_dir / "Mtiny")  # from rank 0 only
    assert [float(r["lr"]) for r in rows] == pytest.approx([0.001, 0.0002])  # the schedule, as on one machine


def test_missing_inputs_stop_before_any_training(setup, tmp_path):
    env = dict(setup["env"], MODEL_DIR=str(tmp_path / "models"), GPUS="")
    result = subprocess.run([os.path.join(REPO_ROOT, "train", "M06.sh")], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2 and result.stdout == ""
    assert "error: " in result.stderr and "dpn92-5k-0000.params not found" in result.stderr
    assert "https://github.com/cypw/DPNs" in result.stderr
    assert not (tmp_path / "models").exists()
