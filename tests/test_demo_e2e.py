"""run_demo.sh end to end on a small demo (slow: RUN_SLOW=1 ./run_tests.sh)."""
import csv
import gzip
import json

import pytest

from tests.helpers import run


@pytest.mark.slow
def test_run_demo_end_to_end(tmp_path):
    demo_dir = tmp_path / "demo"
    env = dict(DEMO_DIR=str(demo_dir), NUM_CATEGORIES="10", NUM_TRAIN_PRODUCTS="600", NUM_TEST_PRODUCTS="50",
               EPOCHS_1="2", EPOCHS_2="1", FINETUNE_EPOCHS="1")
    result = run("run_demo.sh", **env, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "chance:" in result.stdout
    for name in ("D01", "D02", "D03"):  # trained by train/demo/D0x.sh, the model scripts' format
        with open(demo_dir / "models" / name / f"{name}-metrics.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert rows and 0.0 <= float(rows[-1]["val_accuracy"]) <= 1.0
    # The fine-tune started from D01's weights: its first epoch trains far better than D01's first.
    with open(demo_dir / "models" / "D01" / "D01-metrics.csv", newline="") as fh:
        first_of_model1 = float(next(csv.DictReader(fh))["train_accuracy"])
    with open(demo_dir / "models" / "D03" / "D03-metrics.csv", newline="") as fh:
        first_of_finetune = float(next(csv.DictReader(fh))["train_accuracy"])
    assert first_of_finetune > first_of_model1
    # Prediction: every technique scored, and a valid submission at the end.
    assert "OK: 50 products" in result.stdout
    scores = {line[:31].strip(): float(line.split()[-2]) for line in result.stdout.splitlines()
              if line.startswith(("D01 alone", "ensemble of 3", "+ "))}
    assert len(scores) == 6 and all(0.0 <= v <= 1.0 for v in scores.values())
    assert scores["+ product-hash post-processing"] > 1 / 10  # far above chance over 10 categories
    submission = demo_dir / "submissions" / "final" / "submission_final.csv.gz"  # predict/run_predict.sh's
    assert result.stdout.rstrip().endswith(f"submission: {submission}")
    assert len(gzip.decompress(submission.read_bytes()).decode().splitlines()) == 51
    # Re-running over its own folder works (the demo owns it).
    again = run("run_demo.sh", **dict(env, EPOCHS_1="1", EPOCHS_2="1"), timeout=1800)
    assert again.returncode == 0, again.stderr[-3000:]


@pytest.mark.slow
def test_run_demo_with_beyond_b03_trains_and_predicts_a_mosaic_model(tmp_path):
    demo_dir = tmp_path / "demo"
    env = dict(DEMO_DIR=str(demo_dir), NUM_CATEGORIES="10", NUM_TRAIN_PRODUCTS="600", NUM_TEST_PRODUCTS="50",
               EPOCHS_1="1", EPOCHS_2="1", FINETUNE_EPOCHS="1", EPOCHS_4="1", BEYOND="B03")
    result = run("run_demo.sh", **env, timeout=1800)
    assert result.returncode == 0, result.stderr[-3000:]
    with open(demo_dir / "models" / "D04" / "D04-input.json") as fh:
        settings = json.load(fh)
    assert (settings["mosaic_size"], settings["mosaic_fill"], settings["image_shape"]) == (128, "repeat", [3, 128, 128])
    scores = {line[:60].strip(): float(line.split()[-2]) for line in result.stdout.splitlines()
              if line.startswith(("not the original's: D04", "  ensemble of 4", "  + product-hash"))}
    assert len(scores) == 3 and all(0.0 <= v <= 1.0 for v in scores.values()), scores
    submission = demo_dir / "submissions" / "mosaic" / "submission_final.csv.gz"
    assert len(gzip.decompress(submission.read_bytes()).decode().splitlines()) == 51


def test_run_demo_refuses_a_folder_it_did_not_make(tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    result = run("run_demo.sh", DEMO_DIR=str(tmp_path))
    assert result.returncode == 2 and "was not made by run_demo.sh" in result.stderr
    assert (tmp_path / "precious.txt").read_text() == "keep me"


def test_run_demo_refuses_a_beyond_script_it_has_no_demo_of_in_one_line(tmp_path):
    result = run("run_demo.sh", DEMO_DIR=str(tmp_path / "demo"), BEYOND="B02")
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: BEYOND=B02: the demo runs B03 (product mosaics, train/demo/D04_mosaic.sh) "
                                     "or nothing beyond the original")
    assert not (tmp_path / "demo").exists()  # refused before any work
