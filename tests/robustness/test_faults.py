"""Faults in the data stage: a full disk (a size-limited process, RLIMIT_FSIZE) and SIGKILL mid-run.
Each command must fail with one clear line, leave nothing under its final output names, and a
re-run must produce exactly what an uninterrupted run produces."""
import os
import subprocess
import sys
import time

import pytest

from tests.helpers import REPO_ROOT, demo_dataset, limited_writes, run, shared_file


def commands(bson, csv, out):
    return {
        "split": (["data.split_train_bson", "--input-bson", bson, "--val-ratio", "0.05", "--random-seed", "1",
                   "--save-train-bson", f"{out}/train.bson", "--save-val-bson", f"{out}/val.bson"],
                  [f"{out}/train.bson", f"{out}/val.bson"]),
        "bson2rec": (["data.bson2rec", "--bson", bson, "--out-rec", f"{out}/all.rec", "--category-csv", csv],
                     [f"{out}/all.rec", f"{out}/all.idx"]),
        "md5 dict": (["data.bson_md5_dict", "--bson", bson, "--out", f"{out}/md5.npz"], [f"{out}/md5.npz"]),
    }


def start(module_args, preexec=None, **kwargs):
    return subprocess.Popen([sys.executable, "-m", *module_args], cwd=REPO_ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=preexec, **kwargs)


@pytest.mark.parametrize("name", ["split", "bson2rec", "md5 dict"])
def test_a_full_disk_fails_clearly_and_leaves_no_output(tmp_path, name, category_csv):
    bson = str(tmp_path / "train_example.bson")
    with open(shared_file("train_example.bson"), "rb") as src, open(bson, "wb") as dst:
        dst.write(src.read())
    run(["python", "-c", f"from data.bson_index import BsonIndex; BsonIndex.open({bson!r})"],
        expect=0)  # the index cache exists beforehand
    out = tmp_path / "out"
    out.mkdir()
    args, outputs = commands(bson, category_csv, out)[name]
    process = start(args, preexec=limited_writes(1_000 if name == "md5 dict" else 20_000))
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 2, stderr[-2000:]
    last = stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {outputs[0]}") and "File too large" in last, last
    assert not any(os.path.exists(p) for p in outputs)
    assert os.listdir(out) == []  # no temporary file left either
    again = start(args)
    _, stderr = again.communicate(timeout=120)
    assert again.returncode == 0, stderr[-2000:]
    assert all(os.path.exists(p) for p in outputs)


@pytest.fixture(scope="module")
def big_demo(tmp_path_factory):
    return demo_dataset(tmp_path_factory.mktemp("faults"), num_categories=20, num_train_products=3000,
                        num_test_products=10)


@pytest.mark.parametrize("name", ["split", "bson2rec", "md5 dict"])
def test_sigkill_then_rerun_gives_the_uninterrupted_output(big_demo, tmp_path, name):
    bson, csv = str(big_demo / "train.bson"), str(big_demo / "category_names.csv")
    reference, interrupted = tmp_path / "reference", tmp_path / "interrupted"
    reference.mkdir()
    interrupted.mkdir()
    args, outputs = commands(bson, csv, reference)[name]
    started = time.monotonic()
    assert start(args).wait(timeout=300) == 0
    uninterrupted = time.monotonic() - started
    args, outputs_again = commands(bson, csv, interrupted)[name]
    process = start(args)
    kill_at = time.monotonic() + 0.6 * uninterrupted
    while not any(".tmp-" in f for f in os.listdir(interrupted)) and process.poll() is None \
            and time.monotonic() < kill_at:
        time.sleep(0.002)  # kill it while it writes its outputs, or in the middle of its work
    assert process.poll() is None, "finished before it could be killed"
    process.kill()
    process.communicate()
    assert not any(os.path.exists(p) for p in outputs_again)  # nothing under a final name
    rerun = start(args)
    _, stderr = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, stderr[-2000:]
    for done, redone in zip(outputs, outputs_again):
        with open(done, "rb") as a, open(redone, "rb") as b:
            assert a.read() == b.read(), f"{redone} differs from an uninterrupted run"


def test_a_rerun_removes_what_a_killed_run_left(tmp_path):
    """Temporary files of a killed run (its process gone) are removed by the next write of that output;
    those of a run still going are left alone."""
    from cli.files import atomic_outputs

    output = tmp_path / "out.csv"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = tmp_path / f".out.csv.tmp-{int(dead.stdout)}"
    stale.write_text("partial")
    running = tmp_path / f".out.csv.tmp-{os.getppid()}"  # a live process: perhaps a concurrent run
    running.write_text("in progress")
    with atomic_outputs(str(output)) as (tmp,):
        with open(tmp, "w") as fh:
            fh.write("done")
    assert output.read_text() == "done" and not stale.exists() and running.exists()


def test_an_index_cache_that_cannot_be_written_costs_only_a_warning(tmp_path):
    """The BSON index cache is optional: a full disk while writing it is one warning line, and the
    command goes on (np.savez used to leave its archive to the garbage collector, which printed
    'seek of closed file' after the command's own last line)."""
    bson = tmp_path / "train.bson"
    bson.write_bytes(open(shared_file("train_example.bson"), "rb").read())
    code = "from data.bson_index import BsonIndex; print(len(BsonIndex.open(%r)))" % str(bson)
    process = run(["python", "-c", code], timeout=120, preexec_fn=limited_writes(300))
    assert process.returncode == 0, process.stderr[-2000:]
    assert process.stdout.strip() == "82"
    assert "could not write index cache" in process.stderr and "File too large" in process.stderr
    assert "seek of closed file" not in process.stderr and "Exception ignored" not in process.stderr
    assert [p for p in os.listdir(tmp_path) if p != "train.bson"] == []
