"""train/run_model.sh for real, through scripts like train/Mxx.sh: stages on one machine, and under
train/launch_dist.sh (local)."""
import csv
import os

import pytest

from data import bson2rec
from tests.helpers import colour_products, run, write_bson, write_category_csv
from tests.train_helpers import model_script


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
    env = dict(DATA_DIR=str(data_dir), PRETRAINED_DIR=str(root / "pretrained"), NUM_CLASSES="4", DATA_NTHREADS="1",
               TOP_K="2")
    for name in ("STAGES", "LOAD_EPOCH", "DRY_RUN", "GPUS", "FORCE"):
        env[name] = None
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
    result = run(script, **env, timeout=300)
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
    # a recorded stage begins with a fresh optimizer, as the original's restarts (never NADAM's saved state)
    assert "--fresh-optimizer: a recorded stage begins; a fresh sgd optimizer" in log


@pytest.mark.slow  # the launcher itself stays in the fast suite (tests/test_launch.py)
def test_model_script_under_the_distributed_launcher(setup, tmp_path):
    script = model_script(tmp_path / "Mtiny.sh", ["START_EPOCH=0 END_EPOCH=2"])
    env = dict(setup["env"], MODEL_DIR=str(tmp_path / "models"), LAUNCHER="local", NUM_WORKERS="2",
               NUM_SERVERS="1")
    result = run(["train/launch_dist.sh", script], **env, timeout=300)
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
    result = run("train/M06.sh", **env, timeout=60)
    assert result.returncode == 2 and result.stdout == ""
    assert "error: " in result.stderr and "dpn92-5k-0000.params not found" in result.stderr
    assert "https://github.com/cypw/DPNs" in result.stderr
    assert not (tmp_path / "models").exists()


def test_a_fresh_run_onto_a_finished_one_is_refused_unless_force(setup, tmp_path):
    script = model_script(tmp_path / "Mtiny.sh", ["START_EPOCH=0 END_EPOCH=1", "START_EPOCH=1 END_EPOCH=2"],
                          default_stages="1 2")
    model_dir = tmp_path / "models" / "Mtiny"
    model_dir.mkdir(parents=True)
    (model_dir / "Mtiny-0002.params").write_bytes(b"finished")
    env = dict(setup["env"], MODEL_DIR=str(tmp_path / "models"))
    result = run(script, **env, timeout=60)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith(f"error: {model_dir}/Mtiny: an earlier run's checkpoints are there; "
                                    "resume with LOAD_EPOCH=N")
    assert "FORCE=1" in result.stderr and (model_dir / "Mtiny-0002.params").read_bytes() == b"finished"
    dry = run(script, **dict(env, DRY_RUN="1"), timeout=60)
    assert "# refused: " in dry.stdout and "--force" not in dry.stdout
    # a later stage resumes its own run: no refusal, and FORCE=1 gives only the fresh stage --force
    resumed = run(script, **dict(env, DRY_RUN="1", LOAD_EPOCH="1"), timeout=60)
    assert resumed.returncode == 0 and "# refused" not in resumed.stdout
    forced = run(script, **dict(env, DRY_RUN="1", FORCE="1"), timeout=60)
    commands = [line for line in forced.stdout.splitlines() if line.startswith("python")]
    assert "# refused" not in forced.stdout and ["--force" in c.split() for c in commands] == [True, False]


def test_gpus_on_the_cpu_build_stop_the_script_in_one_line(setup, tmp_path):
    script = model_script(tmp_path / "Mtiny.sh", ["START_EPOCH=0 END_EPOCH=1"], GPUS="0,1,2,3,4,5,6,7")
    env = dict(setup["env"], MODEL_DIR=str(tmp_path / "models"))
    result = run(script, **env, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        line for line in result.stderr.strip().splitlines() if line.startswith("error: --gpus 0,1,2,3,4,5,6,7: ")]
    assert len(result.stderr.strip().splitlines()) == 1 and "GPUS=" in result.stderr
    assert not (tmp_path / "models" / "Mtiny" / "Mtiny-symbol.json").exists()


def dry_run_command(setup, tmp_path, **env_changes):
    script = model_script(tmp_path / "Mtiny.sh", ["START_EPOCH=0 END_EPOCH=1"])
    env = dict(setup["env"], MODEL_DIR=str(tmp_path / "models"), DRY_RUN="1", **env_changes)
    for name in ("DATA_NTHREADS", "DISP_BATCHES", "KV_STORE"):
        if name not in env_changes:
            env[name] = None
    result = run(script, **env, timeout=60)
    assert result.returncode == 0, result.stderr
    return next(line for line in result.stdout.splitlines() if "train.train_model" in line)


def test_machine_settings_reach_training_only_when_set(setup, tmp_path):
    # one place for each default: train.train_model's argparse, not a second copy in run_model.sh
    unset = dry_run_command(setup, tmp_path)
    assert "--data-nthreads" not in unset and "--disp-batches" not in unset and "--kv-store" not in unset
    chosen = dry_run_command(setup, tmp_path, DATA_NTHREADS="3", DISP_BATCHES="7", KV_STORE="local")
    assert "--data-nthreads 3" in chosen and "--disp-batches 7" in chosen and "--kv-store local" in chosen
