"""train/run_model.sh through a model script, on one machine and under train/launch_dist.sh (local)."""
import csv
import os
import subprocess
import sys

import pytest

from data import bson2rec
from tests.conftest import REPO_ROOT
from tests.helpers import colour_products, write_bson, write_category_csv

TINY_MODEL_SCRIPT = """#!/usr/bin/env bash
# A model script like train/Mxx.sh, scaled down for the tests.
set -euo pipefail
cd {repo}
MODEL_NAME=Mtiny
SYMBOL=densenet-41
DATASET=dataset_A
NUM_EPOCHS=2
BATCH_SIZE=16
IMAGE_SHAPE=3,32,32
NUM_CLASSES=4
DATA_NTHREADS=1
LR=0.001
LR_STEP_EPOCHS=1
TOP_K=2
GPUS=""
export MODEL_NAME SYMBOL DATASET NUM_EPOCHS BATCH_SIZE IMAGE_SHAPE NUM_CLASSES DATA_NTHREADS LR LR_STEP_EPOCHS TOP_K GPUS
train/run_model.sh
"""


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
    script = root / "Mtiny.sh"
    script.write_text(TINY_MODEL_SCRIPT.format(repo=REPO_ROOT))
    script.chmod(0o755)
    env = dict(os.environ, DATA_DIR=str(data_dir), PRETRAINED_DIR=str(root / "pretrained"),
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    return {"root": root, "script": str(script), "env": env}


def test_model_script_trains_and_checkpoints(setup, tmp_path):
    env = dict(setup["env"], MODEL_DIR=str(tmp_path / "models"))
    result = subprocess.run([setup["script"]], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    prefix = tmp_path / "models" / "Mtiny" / "Mtiny"
    for suffix in ("-symbol.json", "-0001.params", "-0002.params", "-metrics.csv", "-curve.png", "-train.log"):
        assert os.path.exists(f"{prefix}{suffix}")


def test_model_script_under_the_distributed_launcher(setup, tmp_path):
    env = dict(setup["env"], MODEL_DIR=str(tmp_path / "models"), LAUNCHER="local", NUM_WORKERS="2",
               NUM_SERVERS="1")
    result = subprocess.run([os.path.join(REPO_ROOT, "train", "launch_dist.sh"), setup["script"]], env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    model_dir = tmp_path / "models" / "Mtiny"
    assert (model_dir / "Mtiny-0002.params").exists()  # written by rank 0
    logs = sorted(os.listdir(model_dir / "launch_logs"))
    assert logs == ["scheduler.log", "server-0.log", "worker-0.log", "worker-1.log"]
    worker_logs = "".join((model_dir / "launch_logs" / f"worker-{i}.log").read_text() for i in (0, 1))
    assert "kvstore dist_sync: worker 0 of 2" in worker_logs and "kvstore dist_sync: worker 1 of 2" in worker_logs
    with open(model_dir / "Mtiny-metrics.csv") as fh:
        rows = list(csv.DictReader(fh))  # from rank 0 only
    assert [float(r["lr"]) for r in rows] == pytest.approx([0.001, 0.0002])  # the schedule, as on one machine


def test_missing_pretrained_checkpoint_is_named(setup, tmp_path):
    env = dict(setup["env"], MODEL_DIR=str(tmp_path / "models"), GPUS="")
    result = subprocess.run([os.path.join(REPO_ROOT, "train", "M06.sh")], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert "dpn92-0000.params not found" in result.stderr and "https://github.com/cypw/DPNs" in result.stderr
