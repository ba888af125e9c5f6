"""The prediction pipeline with real processes: end to end, shards, real Kaggle pictures, failures."""
import glob
import hashlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

from data import bson_md5_dict
from data.bson_index import BsonIndex
from predict import check_submission, merge_shards, predict
from predict.pipeline import Pipeline, PipelineError, remove_stale_socket_folders, socket_folder_prefix
from predict.submission import read_submission
from train.checkpoint import InputSettings, input_settings_path, load_params, write_input_settings
from tests.helpers import alive, wait_for_children
from tests.predict_helpers import NUM_CLASSES, colour_centroid_model, predict_args, save_model, start_cli


@pytest.mark.smoke  # run on every Python the README promises (.ci/run)
def test_predicts_every_product_once_and_correctly(colour_run, capsys):
    output = colour_run["dir"] / "sub.csv.gz"
    assert predict.main(predict_args(colour_run, output, "--ensembles", "1")) == 0
    ids, categories = read_submission(str(output))
    truth = {d["_id"]: d["category_id"] for d in colour_run["docs"]}
    assert sorted(ids.tolist()) == sorted(truth) and len(ids) == len(set(ids.tolist()))
    assert ids.tolist() == [d["_id"] for d in colour_run["docs"]]  # BSON order
    accuracy = np.mean([truth[i] == c for i, c in zip(ids.tolist(), categories.tolist())])
    assert accuracy >= 0.95
    table = capsys.readouterr().out.splitlines()  # the accuracy of each output on this labelled BSON
    assert [line.split()[0] for line in table[1:]] == ["main", "e1.m0", "e1.m1"]  # no label twice
    assert all(float(line.split()[-1]) >= 0.95 for line in table[1:])
    for tag in ("e1.m0", "e1.m1"):
        assert os.path.exists(colour_run["dir"] / f"sub.{tag}.csv.gz")


def test_wrong_channel_order_is_visible(colour_run):
    """The colour model only works on RGB input: feeding it BGR (by a mean trick) drops accuracy."""
    output = colour_run["dir"] / "sub.csv"
    predict.main(predict_args(colour_run, output, "--multi-view", "0", "--rgb-mean", "0,0,0"))
    _, good = read_submission(str(output))
    swapped = colour_run["dir"] / "bgr"
    colours_bgr = np.random.default_rng(0).integers(0, 256, (NUM_CLASSES, 3)).astype(np.float64)
    symbol, params = save_model(str(swapped), 0.1 * colours_bgr, -0.05 * (colours_bgr ** 2).sum(axis=1), None)
    predict.main(predict_args({**colour_run, "symbol": symbol, "params": params}, output, "--force"))
    _, bad = read_submission(str(output))
    truth = np.array([d["category_id"] for d in colour_run["docs"]])
    assert (good == truth).mean() > (bad == truth).mean()


def test_shards_merge_into_the_full_run(colour_run):
    """Sharded prediction (as on several machines), merged, equals the unsharded run row for row,
    for the main output and every ensemble output."""
    out = colour_run["dir"]
    extra = ["--multi-view", "0", "--ensembles", "1"]
    predict.main(predict_args(colour_run, out / "full.csv", *extra))
    for i in range(3):
        predict.main(predict_args(colour_run, out / f"shard{i}.csv", *extra, "--shard", f"{i}/3"))
    assert merge_shards.main(["--bson", colour_run["bson"], "--output", str(out / "merged.csv"), "--variants",
                              *(str(out / f"shard{i}.csv") for i in (2, 0, 1))]) == 0
    for name in ("merged.csv", "merged.e1.m0.csv", "merged.e1.m1.csv"):
        full = name.replace("merged", "full")
        assert (out / name).read_text() == (out / full).read_text()
    # a variant missing beside one shard is named
    os.remove(out / "shard1.e1.m1.csv")
    with pytest.raises(Exception, match="e1.m1 is missing beside .*shard1.csv"):
        merge_shards.main(["--bson", colour_run["bson"], "--output", str(out / "again.csv"), "--variants",
                           *(str(out / f"shard{i}.csv") for i in range(3))])
    assert not (out / "again.csv").exists()


def test_cut_and_existing_output(colour_run):
    output = colour_run["dir"] / "cut.csv"
    predict.main(predict_args(colour_run, output, "--cut", "5"))
    ids, _ = read_submission(str(output))
    assert ids.tolist() == [d["_id"] for d in colour_run["docs"][:5]]
    with pytest.raises(Exception, match="exists"):
        predict.main(predict_args(colour_run, output))


def test_real_kaggle_pictures_with_the_md5_dictionary(example_bson, category_csv, tmp_path):
    """Kaggle's 82 real products: a random network over 5270 classes, then every picture found in the
    dictionary built from the same file, so `unique` overrides make every product right."""
    rng = np.random.default_rng(0)
    symbol, params = save_model(str(tmp_path / "random"), rng.normal(0, 0.01, (5270, 3)), np.zeros(5270), None)
    md5_dict = str(tmp_path / "md5.npz")
    assert bson_md5_dict.main(["--bson", example_bson, "--out", md5_dict]) == 0
    base = ["--bson", example_bson, "--csv", category_csv, "--symbol", symbol, "--params", params,
            "--data-shape", "3,180,180", "--batch-size", "16", "--num-procs", "2"]
    predict.main(base + ["--output", str(tmp_path / "plain.csv")])
    predict.main(base + ["--md5-dict", md5_dict, "--md5-dict-type", "unique", "--output", str(tmp_path / "md5.csv"),
                         "--print-summary", str(tmp_path / "summary.csv")])
    index = BsonIndex.open(example_bson)
    truth = index.products["category_id"]
    ids, plain = read_submission(str(tmp_path / "plain.csv"))
    _, with_md5 = read_submission(str(tmp_path / "md5.csv"))
    assert ids.tolist() == index.products["product_id"].tolist()
    assert (with_md5 == truth).mean() > (plain == truth).mean()
    assert (with_md5 == truth).mean() >= 0.95  # a few pictures are shared across categories
    assert check_submission.main(["--bson", example_bson, "--csv", category_csv, str(tmp_path / "md5.csv")]) == 0
    summary = (tmp_path / "summary.csv").read_text().splitlines()
    assert summary[0].startswith("category_id,class_id,products,correct,accuracy,most_confused")
    assert sum(int(line.split(",")[2]) for line in summary[1:]) == 82


# ---- failures --------------------------------------------------------------------------------
@pytest.mark.parametrize("victim", ["worker 2", "reader"])
def test_a_killed_process_ends_the_run_with_a_message(long_run, victim):
    with Pipeline(long_run["bson"], 0, 40000, 2, [((3, 8, 8), 0)], 1) as pipeline:
        pids = [p.pid for p in pipeline.processes.values()]
        pipeline.receive()
        os.kill(pipeline.processes[victim].pid, signal.SIGKILL)
        start = time.monotonic()
        with pytest.raises(PipelineError, match=rf"{victim} \(pid \d+\) killed by SIGKILL"):
            while time.monotonic() - start < 20:
                pipeline.receive()
        assert time.monotonic() - start < 5
    assert not any(alive(pid) for pid in pids)


def test_a_reader_error_is_reported(long_run):
    index_size = os.path.getsize(long_run["bson"])
    with open(long_run["bson"], "r+b") as fh:  # the file shrinks after it was indexed
        fh.truncate(index_size // 2 + 7)  # mid-document
    os.utime(long_run["bson"], (1, 1))
    os.utime(long_run["bson"], None)
    with pytest.raises(PipelineError, match="reader"):
        with Pipeline(long_run["bson"], 0, 40000, 1, [((3, 8, 8), 0)], 0) as pipeline:
            start = time.monotonic()
            while time.monotonic() - start < 20:
                pipeline.receive()


def test_two_runs_at_once_do_not_collide(colour_run):
    count = len(colour_run["docs"])
    with Pipeline(colour_run["bson"], 0, count, 1, [((3, 32, 32), 0)], 0) as first, \
            Pipeline(colour_run["bson"], 0, count, 1, [((3, 32, 32), 0)], 0, transport="tcp") as second:
        got = {id(first): [], id(second): []}
        deadline = time.monotonic() + 30
        while (len(got[id(first)]) < count or len(got[id(second)]) < count) and time.monotonic() < deadline:
            for pipeline in (first, second):
                got[id(pipeline)] += [p.product for p in pipeline.receive()]
    assert sorted(got[id(first)]) == list(range(count)) == sorted(got[id(second)])


def test_each_picture_is_hashed_once_a_run(colour_run, monkeypatch):
    """A run hands the pipeline the first pass's digests, the pictures' MD5s, and the workers pass them
    on instead of hashing again: digests planted in their place come back to the predictor unchanged."""
    count = len(colour_run["docs"])
    index = BsonIndex.open(colour_run["bson"], progress=False)
    pictures = [picture for _, product_pictures in index.iter_product_images(0, count) for picture in product_pictures]
    handed = []

    class RecordingPipeline(Pipeline):
        def __init__(self, *args, digests=None, **kwargs):
            handed.append(digests)
            super().__init__(*args, digests=digests, **kwargs)

    monkeypatch.setattr(predict, "Pipeline", RecordingPipeline)
    predict.main(predict_args(colour_run, colour_run["dir"] / "sub.csv"))
    assert len(handed) == 1 and handed[0].tobytes() == b"".join(hashlib.md5(p).digest() for p in pictures)
    planted = np.array([bytes([i % 250 + 1]) * 16 for i in range(len(pictures))], dtype="S16")
    got = {}
    with Pipeline(colour_run["bson"], 0, count, 2, [((3, 32, 32), 0)], 0, digests=planted) as pipeline:
        deadline = time.monotonic() + 30
        while len(got) < count and time.monotonic() < deadline:
            got.update((prepared.product, prepared.digests) for prepared in pipeline.receive())
    first_images = index.first_images_in(0, count).tolist() + [len(pictures)]
    assert {product: got[product] for product in range(count)} == {
        product: [bytes(planted[i]) for i in range(first_images[product], first_images[product + 1])]
        for product in range(count)}


def test_ctrl_c_stops_every_process(long_run):
    # A shell's background jobs start with SIGINT ignored, and Python keeps it so: restore the
    # terminal's default so that the test behaves the same in any runner.
    process = start_cli(long_run, long_run["dir"] / "sub.csv", start_new_session=True,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    children = wait_for_children(process.pid, 3)  # reader + 2 workers
    time.sleep(0.5)
    os.killpg(process.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
    _, stderr = process.communicate(timeout=20)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr
    time.sleep(0.2)
    assert not any(alive(pid) for pid in children)
    assert not os.path.exists(long_run["dir"] / "sub.csv")


def test_a_killed_parent_leaves_no_orphans(long_run):
    process = start_cli(long_run, long_run["dir"] / "sub.csv")
    children = wait_for_children(process.pid, 3)
    process.kill()
    process.communicate()
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in children)
    # its private socket folder, which a SIGKILLed run cannot remove, goes at the next run's start
    left = glob.glob(os.path.join(tempfile.gettempdir(), socket_folder_prefix(process.pid) + "*"))
    assert len(left) == 1
    remove_stale_socket_folders(tempfile.gettempdir())
    assert not os.path.exists(left[0])


def test_only_socket_folders_of_gone_runs_are_removed(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    stale, running = tmp_path / f"{socket_folder_prefix(gone)}abc", tmp_path / f"{socket_folder_prefix()}def"
    other = tmp_path / "cdiscount-predict-notapid"
    for folder in (stale, running, other):
        folder.mkdir()
        (folder / "forward_mask.npy").write_bytes(b"x")
    remove_stale_socket_folders(str(tmp_path))
    assert not stale.exists() and running.exists() and other.exists()
    # a folder whose control socket still accepts connections is in use, whatever its PID says
    listened = tmp_path / f"{socket_folder_prefix(gone)}ghi"
    listened.mkdir()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(listened / "control"))
        server.listen(1)
        remove_stale_socket_folders(str(tmp_path))
        assert listened.exists()
    remove_stale_socket_folders(str(tmp_path))
    assert not listened.exists()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")  # the drop it is about
def test_a_ctrl_c_dropped_inside_a_destructor_still_stops_the_run():
    """Python prints and drops a KeyboardInterrupt raised while a __del__ runs (MXNet frees its NDArrays
    there): seen once in CI as a Ctrl-C that did not stop a prediction. The pipeline remembers it."""
    from predict.pipeline import Pipeline
    pipeline = Pipeline("unused.bson", 0, 1, 1, [((3, 8, 8), 0)], 0)

    class Freed:
        def __del__(self):
            pipeline._on_sigint(signal.SIGINT, None)

    Freed()  # its __del__ runs at once; the KeyboardInterrupt it raises is dropped
    with pytest.raises(KeyboardInterrupt):
        pipeline.check_processes()


def scaled_colour_model(prefix, image_shape, rgb_scale):
    """The colour classifier for input scaled by `rgb_scale`, with the input settings training
    would have written beside it (PREFIX-input.json)."""
    symbol, params = colour_centroid_model(prefix)
    arg_params, _ = load_params(params)
    weight = arg_params["fc_weight"].asnumpy()  # 2 s c and -s |c|^2 for the centroids c
    save_model(prefix, weight, arg_params["fc_bias"].asnumpy() * rgb_scale, None)
    write_input_settings(input_settings_path(prefix), InputSettings(image_shape=image_shape, rgb_scale=rgb_scale))
    return symbol, params


def accuracy(run, output):
    ids, categories = read_submission(str(output))
    truth = {d["_id"]: d["category_id"] for d in run["docs"]}
    return float(np.mean([truth[i] == c for i, c in zip(ids.tolist(), categories.tolist())]))


def test_each_model_predicts_at_its_checkpoints_input(colour_run, caplog):
    # model B was trained at 16x16 on pictures scaled by 1/255: its PREFIX-input.json says so, and
    # it is right only when fed that; model A (32x32, raw RGB) beside it keeps its own input
    a_symbol, a_params = scaled_colour_model(str(colour_run["dir"] / "a"), (3, 32, 32), 1.0)
    b_symbol, b_params = scaled_colour_model(str(colour_run["dir"] / "b"), (3, 16, 16), 1 / 255)
    common = ["--bson", colour_run["bson"], "--csv", colour_run["csv"], "--batch-size", "8", "--num-procs", "1"]
    out = colour_run["dir"]
    assert predict.main([*common, "--symbol", b_symbol, "--params", b_params, "--output", str(out / "b.csv")]) == 0
    assert accuracy(colour_run, out / "b.csv") == 1.0
    assert predict.main([*common, "--symbol", b_symbol, "--params", b_params, "--rgb-scale", "1",
                         "--output", str(out / "b_raw.csv")]) == 0  # the flag overrides: B fed raw RGB
    assert accuracy(colour_run, out / "b_raw.csv") < 1.0
    caplog.clear()
    with caplog.at_level("INFO"):
        assert predict.main([*common, "--symbol", a_symbol, b_symbol, "--params", a_params, b_params,
                             "--ensembles", "1", "--output", str(out / "ab.csv")]) == 0
    assert "views at 32x32 (resize 0); 16x16 (resize 0)" in caplog.text
    assert accuracy(colour_run, out / "ab.csv") == accuracy(colour_run, out / "ab.e1.m0.csv") == 1.0
