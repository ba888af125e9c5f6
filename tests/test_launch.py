"""Distributed training on MXNet's parameter-server kvstore, all on 127.0.0.1 (train.launch)."""
import os
import signal
import subprocess
import sys
import time
import types

import numpy as np
import pytest

from data import bson2rec
from train import launch, train_model
from train.data import get_iterators
from tests.helpers import (REPO_ROOT, alive, children_of, colour_products, write_bson, write_category_csv,
                           write_colour_rec)

NUM_CLASSES = 4


@pytest.fixture(scope="module")
def colour_rec(tmp_path_factory):
    return write_colour_rec(tmp_path_factory.mktemp("dist"), NUM_CLASSES, 24)


def worker_command(out_dir, rec, epochs):
    return [sys.executable, "-m", "tests.dist_worker", str(out_dir), "--symbol", "densenet-41",
            "--data-train", rec, "--image-shape", "3,32,32", "--num-classes", str(NUM_CLASSES),
            "--batch-size", "16", "--num-epochs", str(epochs), "--optimizer", "nadam", "--lr", "0.001",
            "--kv-store", "dist_sync", "--data-nthreads", "1", "--disp-batches", "1000"]


def run_launcher(args, **kwargs):
    return subprocess.Popen([sys.executable, "-m", "train.launch", *args], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def test_two_workers_end_with_the_servers_parameters(colour_rec, tmp_path):
    process = run_launcher(["-n", "2", "-s", "1", "--launcher", "local", "--log-dir", str(tmp_path / "logs"), "--",
                            *worker_command(tmp_path, colour_rec, epochs=2)])
    _, stderr = process.communicate(timeout=240)  # ends by itself
    assert process.returncode == 0, stderr[-3000:]
    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in (0, 1)]
    assert all(int(r["num_workers"]) == 2 for r in ranks)
    names = sorted(k[len("mine/"):] for k in ranks[0].files if k.startswith("mine/"))
    assert "fc_weight" in names and len(names) > 10
    for name in names:
        np.testing.assert_array_equal(ranks[0][f"mine/{name}"], ranks[1][f"mine/{name}"])
        for r in ranks:
            np.testing.assert_array_equal(r[f"mine/{name}"], r[f"server/{name}"])
    # and training moved them: the classifier is no longer its initial value on both
    assert np.abs(ranks[0]["mine/fc_bias"]).sum() > 0
    logs = sorted(os.listdir(tmp_path / "logs"))
    assert logs == ["scheduler.log", "server-0.log", "worker-0.log", "worker-1.log"]


def test_a_killed_worker_stops_the_whole_run(colour_rec, tmp_path):
    process = run_launcher(["-n", "2", "-s", "1", "--launcher", "local", "--log-dir", str(tmp_path / "logs"), "--",
                            *worker_command(tmp_path, colour_rec, epochs=500)])
    deadline = time.monotonic() + 120
    workers = []
    while len(workers) < 2 and time.monotonic() < deadline:
        workers = [pid for pid in children_of(process.pid) if b"tests.dist_worker" in _cmdline(pid)]
        time.sleep(0.2)
    assert len(workers) == 2
    everyone = children_of(process.pid)
    time.sleep(3)  # let training start
    os.kill(workers[1], signal.SIGKILL)
    killed_at = time.monotonic()
    _, stderr = process.communicate(timeout=60)
    assert time.monotonic() - killed_at < 15
    assert process.returncode == 2
    assert "killed by SIGKILL" in stderr and "worker" in stderr
    time.sleep(0.5)
    assert not any(alive(pid) for pid in everyone)


def _cmdline(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read()
    except OSError:
        return b""


def test_each_worker_reads_its_own_part(colour_rec):
    args = train_model.build_parser().parse_args(
        ["--symbol", "densenet-41", "--data-train", colour_rec, "--image-shape", "3,32,32", "--batch-size", "8",
         "--random-mirror", "0"])
    seen = []
    for rank in (0, 1):
        train, _ = get_iterators(args, types.SimpleNamespace(num_workers=2, rank=rank))
        labels = [tuple(b.label[0].asnumpy().tolist()) for b in train]
        seen.append(len(labels))
    assert seen == [6, 6]  # 96 images: 48 per worker, 6 batches of 8


def test_workers_run_equal_batches_every_epoch(tmp_path):
    """857 images in 2 parts of 429 and 428: ImageRecordIter alone gives the two workers 14, 13, 14,
    13, 14 and 14, 13, 14, 13, 13 batches in epochs 1-5, and under dist_sync the worker with the
    extra batch waits forever for the other's push. Each must run exactly ceil(857 / 2 / 32) = 14."""
    csv_path = write_category_csv(tmp_path / "c.csv", [1000000000 + c for c in range(NUM_CLASSES)])
    bson_path = write_bson(tmp_path / "t.bson", colour_products(NUM_CLASSES, 215, size=8)[:857])
    rec = str(tmp_path / "t.rec")
    bson2rec.main(["--bson", bson_path, "--out-rec", rec, "--category-csv", csv_path])
    args = train_model.build_parser().parse_args(
        ["--symbol", "densenet-41", "--data-train", rec, "--image-shape", "3,8,8", "--batch-size", "32",
         "--data-nthreads", "1"])
    for rank in (0, 1):
        train, _ = get_iterators(args, types.SimpleNamespace(num_workers=2, rank=rank))
        counts = []
        for _ in range(5):
            train.reset()
            counts.append(sum(1 for _ in train))
        assert counts == [14] * 5


def test_hostfile_and_ssh_command(tmp_path):
    hostfile = tmp_path / "hosts"
    hostfile.write_text("# cluster\nnode1\nnode2:2222\n\n")
    assert launch.read_hostfile(str(hostfile)) == [("node1", None), ("node2", 2222)]
    hostfile.write_text("node1:ssh\n")
    with pytest.raises(Exception, match="line 1"):
        launch.read_hostfile(str(hostfile))
    env = launch.dmlc_env("worker", "10.0.0.1", 9091, 2, 4, "node2")
    command = launch.ssh_command("node2", 2222, env, ["python", "-m", "train.train_model", "--lr", "1e-4"], "/w d")
    assert command[:2] == ["ssh", "-tt"] and command[-2] == "node2" and "-p" in command
    remote = command[-1]
    assert remote.startswith("cd '/w d' && env ")
    for key, value in (("DMLC_ROLE", "worker"), ("DMLC_PS_ROOT_URI", "10.0.0.1"), ("DMLC_PS_ROOT_PORT", "9091"),
                       ("DMLC_NUM_SERVER", "2"), ("DMLC_NUM_WORKER", "4"), ("DMLC_NODE_HOST", "node2")):
        assert f"{key}={value}" in remote
    assert remote.endswith("python -m train.train_model --lr 1e-4")


def test_a_hung_run_is_stopped(tmp_path):
    """Workers alive but silent (as in a ps-lite hang) for longer than --stall-timeout."""
    start = time.monotonic()
    process = run_launcher(["-n", "2", "-s", "1", "--launcher", "local", "--log-dir", str(tmp_path / "logs"),
                            "--stall-timeout", "3", "--", sys.executable, "-c", "import time; time.sleep(120)"])
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 2 and "no worker wrote to its log for 3 s" in stderr
    assert time.monotonic() - start < 30


def test_launcher_refuses_bad_arguments(tmp_path):
    with pytest.raises(Exception, match="no worker command"):
        launch.main(["-n", "2", "--log-dir", str(tmp_path)])
    with pytest.raises(Exception, match="needs -H"):
        launch.main(["-n", "2", "--launcher", "ssh", "--", "true"])


def test_servers_load_optimizers_but_refuse_other_pickles(tmp_path):
    import pickle

    from train import ps_node
    from train.fit import make_optimizer

    args = train_model.build_parser().parse_args(["--symbol", "densenet-41", "--lr", "0.01"])
    optimizer = make_optimizer(args, 10, 0, 2)
    loaded = ps_node.load_optimizer(pickle.dumps(optimizer, 0))  # as MXNet's kvstore sends it
    assert type(loaded) is type(optimizer) and loaded.lr_scheduler(25) == optimizer.lr_scheduler(25)

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    for protocol in (0, 2, 5):
        with pytest.raises(pickle.UnpicklingError, match="refused"):
            ps_node.load_optimizer(pickle.dumps(Exploit(), protocol))
    assert not (tmp_path / "pwned").exists()
