"""Faults in training and prediction: SIGKILL of training mid-epoch then --load-epoch; a killed
prediction re-runs to completion; a full disk while writing the submission."""
import csv
import os
import signal
import subprocess
import sys
import time

import mxnet as mx
import pytest

from tests.helpers import REPO_ROOT, limited_writes, run, wait_for_children
from tests.predict_helpers import start_cli
from tests.train_helpers import train_argv


def read_rows(prefix):
    with open(f"{prefix}-metrics.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow  # 14 s; exact resume stays in the fast suite (test_train, test_resume)
def test_training_killed_mid_epoch_resumes_on_schedule(colour_rec, resnet18, tmp_path):
    symbol, params = resnet18
    prefix = str(tmp_path / "m" / "m")
    argv = train_argv(colour_rec, prefix, symbol, params, epochs=3)
    process = subprocess.Popen([sys.executable, "-m", "train.train_model", *argv], cwd=REPO_ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    # epoch 1 done: its checkpoint and (after its validation) its metrics row; then into epoch 2
    while not (os.path.exists(f"{prefix}-0001.params") and os.path.exists(f"{prefix}-metrics.csv")) \
            and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    assert process.poll() is None, "training ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert not os.path.exists(f"{prefix}-0003.params")
    done = sorted(f for f in os.listdir(tmp_path / "m") if f.endswith(".params"))
    for name in done:  # checkpoints appear whole or not at all
        assert mx.nd.load(str(tmp_path / "m" / name))
    last = max(int(f[-11:-7]) for f in done)
    resumed = run(["python", "-m", "train.train_model", *argv, "--load-epoch", str(last)], timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    rows = read_rows(prefix)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert [float(r["lr"]) for r in rows] == pytest.approx([0.001, 0.001, 0.0001])  # as if never stopped
    assert os.path.exists(f"{prefix}-0003.params")


@pytest.mark.slow  # 8 s; killed processes and orphans stay covered fast (test_predict_pipeline)
def test_a_killed_prediction_reruns_to_completion(long_run):
    output = long_run["dir"] / "sub.csv"
    process = start_cli(long_run, output, extra=["--cut", "3000"])
    children = wait_for_children(process.pid, 3)
    process.kill()
    process.communicate()
    assert not output.exists() and children
    again = start_cli(long_run, output, extra=["--cut", "3000"])
    _, stderr = again.communicate(timeout=120)
    assert again.returncode == 0, stderr[-2000:]
    assert len(output.read_text().splitlines()) == 3001


def full_disk_prediction(colour_run, *extra):
    """A prediction whose every file write stops at 300 bytes; returns (process, output)."""
    output = colour_run["dir"] / "sub.csv"
    command = ["python", "-m", "predict.predict", "--bson", colour_run["bson"], "--csv", colour_run["csv"],
               "--symbol", colour_run["symbol"], "--params", colour_run["params"], "--data-shape", "3,32,32",
               "--num-procs", "1", "--output", str(output), *extra]
    process = run(command, timeout=120, preexec_fn=limited_writes(300))
    assert [p for p in os.listdir(colour_run["dir"]) if p.startswith(("sub", ".sub"))] == []
    return process, output


def test_a_full_disk_while_writing_the_submission(colour_run):
    # --forward-all: no first pass, so no per-picture MD5s to write (16 bytes each, past the limit) before it
    process, output = full_disk_prediction(colour_run, "--forward-all")
    assert process.returncode == 2
    last = process.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {output}") and "File too large" in last, last


def test_a_full_disk_while_handing_the_reader_its_arrays(colour_run):
    """The run's MD5s go to the reader as a file in the private socket folder: a failed write names that
    file, not a truncated array in the reader."""
    process, _ = full_disk_prediction(colour_run)
    assert process.returncode == 2
    last = process.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and "digests.npy: File too large" in last, last
