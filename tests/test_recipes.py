"""The training recipes: train/M01.sh ... M14.sh and the experiment scripts, dry-run, against the original's runs
(tests/training_records.py: RECORDS and EXPERIMENTS, written by hand from the original's training logs).
"""
import os
import shlex

import pytest

from tests.helpers import REPO_ROOT, run
from tests.train_helpers import dry_run, flags_of, model_script
from tests.training_records import DATASET_OF, EXPERIMENTS, RECORDS, RESNET34, Model

# What a default run trains, stage by stage (record number, from checkpoint, to checkpoint): the runs the
# submitted checkpoint descends from, each stopped where the next resumes.
DEFAULT_RUNS = {
    "M01": [(1, 0, 11), (2, 11, 15), (3, 15, 17), (4, 17, 18), (5, 18, 23)],
    "M02": [(1, 0, 13)], "M03": [(1, 0, 13)],
    "M04": [(1, 0, 14), (2, 14, 20)],
    "M05": [(1, 0, 15)],
    "M06": [(1, 0, 9), (2, 9, 11)],
    "M07": [(1, 0, 15)],
    "M08": [(1, 0, 15), (3, 15, 18)],
    "M09": [(1, 0, 15)],
    "M10": [(1, 0, 4), (2, 4, 8), (3, 8, 11), (5, 11, 15), (6, 15, 16), (7, 16, 20)],
    "M11": [(1, 0, 4), (2, 4, 10), (3, 10, 15)],
    "M12": [(1, 0, 13), (2, 13, 17)],
    "M13": [(1, 0, 11), (2, 11, 13)],
    "M14": [(1, 0, 15), (2, 15, 17), (3, 17, 20)],
}
# STAGES=all where it differs: the runs past the submitted epoch, the branch, and nothing for the runs
# stopped within their first epoch (M08 runs 2 and 4).
ALL_RUNS = dict(DEFAULT_RUNS, **{
    "M01": DEFAULT_RUNS["M01"] + [(6, 23, 25)],
    "M08": [(1, 0, 15), (3, 15, 18), (5, 18, 25)],
    "M10": [(1, 0, 4), (2, 4, 8), (3, 8, 12), (4, 12, 16), (5, 11, 15), (6, 15, 16), (7, 16, 20)],
    "M11": [(1, 0, 4), (2, 4, 10), (3, 10, 15), (4, 15, 17), (5, 15, 20)],
})
# The checkpoint the original's final prediction used (predict/final_submission/run_predict.sh), except
# M05: it names epoch 20, but M05's record ends at 15, the epoch whose accuracy the write-up reports.
SUBMITTED = {"M01": 23, "M02": 13, "M03": 13, "M04": 20, "M05": 15, "M06": 11, "M07": 15, "M08": 18, "M09": 15,
             "M10": 19, "M11": 15, "M12": 17, "M13": 13, "M14": 20}


def check_settings(flags, expected):
    """Every setting of a command against the record's run."""
    assert flags["--optimizer"] == expected.optimizer
    assert float(flags["--lr"]) == pytest.approx(expected.lr)
    assert float(flags["--lr-factor"]) == pytest.approx(expected.lr_factor)
    assert flags["--lr-step-epochs"] == expected.steps
    assert int(flags["--batch-size"]) == expected.batch
    assert float(flags["--smooth-alpha"]) == pytest.approx(expected.smooth)
    assert float(flags["--dropout-ratio"]) == pytest.approx(expected.dropout)
    hsl = tuple(int(flags[f"--max-random-{c}"]) for c in "hsl")
    assert hsl == expected.hsl
    assert (int(flags["--random-crop"]), int(flags["--random-mirror"])) == (expected.crop, expected.mirror)
    assert flags["--image-shape"] == expected.shape
    assert int(flags["--resize"]) == expected.resize
    assert int(flags["--inter-method"]) == expected.inter
    assert float(flags["--wd"]) == pytest.approx(expected.wd)
    assert float(flags["--mom"]) == pytest.approx(0.9)
    dataset = DATASET_OF[expected.data]
    assert flags["--data-train"].endswith(f"/{dataset}/train.rec")
    assert flags["--data-val"].endswith(f"/{dataset}/valid.rec")


def check_network(flags, model, load_epoch, model_dir, weights=None):
    if model.symbol == "resnext":
        assert flags["--symbol"] == "resnext"
    else:
        assert os.path.basename(flags["--symbol"]) == model.symbol
    for i, word in enumerate(model.network_args):
        if word.startswith("--"):
            following = model.network_args[i + 1] if i + 1 < len(model.network_args) else None
            assert flags[word] == (True if following is None or following.startswith("--") else following)
    if model.feature_layer:
        assert flags["--feature-layer"] == model.feature_layer
    else:
        assert "--feature-layer" not in flags
    if load_epoch and weights:  # the weights of another checkpoint, numbered from load_epoch
        assert flags["--params"] == flags["--model-prefix"] + f"-{weights:04d}.params"
    elif load_epoch:  # a resumed stage loads its own checkpoint
        assert "--params" not in flags
    elif model.params.startswith("M"):  # another model's checkpoint
        assert flags["--params"] == os.path.join(model_dir, model.params[:3], model.params)
    else:
        assert os.path.basename(flags["--params"]) == model.params


def check_run(name, commands, expected_stages, model_dir):
    model = RECORDS[name]
    assert [(f["--load-epoch"], f["--num-epochs"]) for _, f in commands] == \
        [(str(load), str(end)) for _, load, end in expected_stages]
    for (comments, flags), (stage, load, _) in zip(commands, expected_stages):
        assert comments[-1].startswith(f"# {name} stage {stage}:")
        check_settings(flags, model.runs[stage - 1])
        run_record = model.runs[stage - 1]
        check_network(flags, model, load, model_dir, run_record.weights if load == run_record.load else None)
        assert flags.get("--initializer", "msra") == run_record.init
        # a new optimizer where a recorded run starts, as every logged restart; a resume inside a run restores it
        assert ("--fresh-optimizer" in flags) == (0 < load == run_record.load)
        assert flags["--model-prefix"] == os.path.join(model_dir, name, name)


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_default_run_trains_the_stages_of_the_submitted_checkpoint(name, tmp_path):
    code, commands, output = dry_run(f"train/{name}.sh", tmp_path)
    assert code == 0, output
    check_run(name, commands, DEFAULT_RUNS[name], str(tmp_path / "models"))
    assert any(load < SUBMITTED[name] <= end for _, load, end in DEFAULT_RUNS[name])
    assert not (tmp_path / "models").exists() and not (tmp_path / "data").exists()  # a dry run writes nothing


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_all_stages_follow_every_record(name, tmp_path):
    code, commands, output = dry_run(f"train/{name}.sh", tmp_path, STAGES="all")
    assert code == 0, output
    check_run(name, commands, ALL_RUNS[name], str(tmp_path / "models"))
    # each record's own end (a run stops early only where the next one resumes inside it)
    for stage, load, end in ALL_RUNS[name]:
        recorded = RECORDS[name].runs[stage - 1]
        assert recorded.load == load and end <= recorded.end


@pytest.mark.parametrize("experiment", sorted(EXPERIMENTS))
def test_experiments_follow_their_records(experiment, tmp_path):
    code, commands, output = dry_run(f"train/experiments/{experiment}/run.sh", tmp_path)
    assert code == 0, output
    variants = EXPERIMENTS[experiment]
    assert len(commands) == len(variants)
    model_dir = str(tmp_path / "models" / "experiments" / experiment)
    for (_, flags), (variant, expected) in zip(commands, variants.items()):
        assert flags["--model-prefix"] == os.path.join(model_dir, variant, variant)
        assert (flags["--load-epoch"], flags["--num-epochs"]) == ("0", str(expected.end))
        check_settings(flags, expected)
        assert flags.get("--initializer", "msra") == expected.init
        check_network(flags, Model(*RESNET34, []), 0, model_dir)


def test_variants_selects_experiment_runs(tmp_path):
    code, commands, _ = dry_run("train/experiments/augmentation/run.sh", tmp_path, VARIANTS="flip_224")
    assert code == 0 and [f["--image-shape"] for _, f in commands] == ["3,224,224"]
    code, _, output = dry_run("train/experiments/augmentation/run.sh", tmp_path, VARIANTS="flip_256")
    assert code == 2 and "no variant 'flip_256'" in output


def test_dry_run_lists_what_is_missing(tmp_path):
    code, commands, output = dry_run("train/M01.sh", tmp_path)
    assert code == 0 and len(commands) == 5
    missing = [line for line in output.splitlines() if line.startswith("# missing: ")]
    url = "http://data.mxnet.io/models/imagenet/resnext/101-layers/"
    hint = (f"download them from {url}, or make them from the gluoncv2 zoo: python -m train.import_weights "
            f"--zoo gluoncv2 --model resnext101_32x4d --out {tmp_path}/pretrained/resnext-101")
    assert missing == [
        f"# missing: {tmp_path}/pretrained/resnext-101-symbol.json not found: the network of the starting weights; "
        f"{hint}",
        f"# missing: {tmp_path}/data/dataset_refined/train.rec not found: run data/create_dataset_refined.sh first",
        f"# missing: {tmp_path}/data/dataset_refined/valid.rec not found: run data/create_dataset_refined.sh first",
        f"# missing: {tmp_path}/pretrained/resnext-101-0000.params not found: the starting weights; {hint}",
    ]
    code, _, output = dry_run("train/M14.sh", tmp_path)
    assert code == 0 and "download them from https://github.com/cypw/DPNs (the gluoncv2 zoo has no weights" in output
    code, _, output = dry_run("train/M11.sh", tmp_path)
    assert code == 0
    assert f"# missing: {tmp_path}/models/M07/M07-0015.params not found: the starting weights; run train/M07.sh" \
        in output


def test_nothing_missing_once_the_inputs_exist(tmp_path):
    for path in ("data/dataset_A/train.rec", "data/dataset_A/valid.rec", "pretrained/dpn131-symbol.json",
                 "pretrained/dpn131-0000.params"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_bytes(b"")
    code, commands, output = dry_run("train/M08.sh", tmp_path)
    assert code == 0 and len(commands) == 2 and "# missing" not in output


def test_load_epoch_resumes_the_stage_that_contains_it(tmp_path):
    code, commands, output = dry_run("train/M10.sh", tmp_path, LOAD_EPOCH="13")
    assert code == 0, output
    check_run("M10", commands, [(5, 13, 15), (6, 15, 16), (7, 16, 20)], str(tmp_path / "models"))
    assert f"# missing: {tmp_path}/models/M10/M10-0013.params not found" in output
    assert "# M10 stage 3: skipped (before LOAD_EPOCH=13: not run)" in output
    code, commands, _ = dry_run("train/M10.sh", tmp_path, LOAD_EPOCH="7")
    check_run("M10", commands, [(2, 7, 8), (3, 8, 11), (5, 11, 15), (6, 15, 16), (7, 16, 20)],
              str(tmp_path / "models"))
    code, commands, _ = dry_run("train/M10.sh", tmp_path, LOAD_EPOCH="13", STAGES="all")
    check_run("M10", commands, [(4, 13, 16), (5, 11, 15), (6, 15, 16), (7, 16, 20)], str(tmp_path / "models"))


@pytest.mark.parametrize("env, message", [
    ({"LOAD_EPOCH": "20"}, "error: LOAD_EPOCH=20: no stage to run trains past checkpoint 20"),
    ({"LOAD_EPOCH": "x"}, "error: LOAD_EPOCH=x: expected a checkpoint number"),
    ({"STAGES": "1 9"}, "error: STAGES: no stage '9' in M10 (stages 1-7, all or default)"),
])
def test_bad_stage_selection_is_an_error(env, message, tmp_path):
    code, commands, output = dry_run("train/M10.sh", tmp_path, **env)
    assert code == 2 and commands == [] and message in output


def test_stages_that_skip_a_checkpoint_name_it(tmp_path):
    code, commands, output = dry_run("train/M10.sh", tmp_path, STAGES="1 5")
    assert code == 0 and [f["--load-epoch"] for _, f in commands] == ["0", "11"]
    assert f"# missing: {tmp_path}/models/M10/M10-0011.params not found: stage 5 resumes from it" in output


def test_a_stage_setting_that_does_not_exist_is_named(tmp_path):
    script = model_script(tmp_path / "Mtiny.sh", ["START_EPOCH=0 END_EPOCH=1", "START_EPOCH=1 END_EPOCH=2 LR_STEPS=3"])
    code, commands, output = dry_run(script, tmp_path)
    assert code == 2 and commands == []
    assert "error: STAGE_2: LR_STEPS is not a setting a stage can change" in output


def test_a_setting_the_header_leaves_out_is_named(tmp_path):
    script = model_script(tmp_path / "Mtiny.sh", ["START_EPOCH=0 END_EPOCH=1"], WD=None)
    code, _, output = dry_run(script, tmp_path)
    assert code == 2 and "error: WD is not set: the model script's header must set it" in output


def test_stage_changes_apply_to_that_stage_only(tmp_path):
    script = model_script(tmp_path / "Mtiny.sh", ["START_EPOCH=0 END_EPOCH=1",
                                                  "START_EPOCH=1 END_EPOCH=2 OPTIMIZER=sgd LR=0.01",
                                                  "START_EPOCH=2 END_EPOCH=3"], default_stages="1 2 3")
    code, commands, output = dry_run(script, tmp_path)
    assert code == 0, output
    assert [(f["--optimizer"], f["--lr"]) for _, f in commands] == [("nadam", "0.001"), ("sgd", "0.01"),
                                                                    ("nadam", "0.001")]


@pytest.mark.parametrize("script", ["predict/run_predict.sh", "predict/run_validate.sh"])
def test_prediction_scripts_use_the_submitted_checkpoints_in_the_original_order(script):
    """The final run's name:epoch list: M14 first ... M01 last (so --ensembles 8 11 14 are the write-up's),
    each at the epoch the original submitted (M05: the last one its record covers)."""
    with open(os.path.join(REPO_ROOT, script)) as fh:
        line = next(text for text in fh if text.startswith("MODELS="))
    default = line.split("${MODELS:-", 1)[1].split("}", 1)[0]
    models = default.split()
    assert models == [f"M{n:02d}:{SUBMITTED[f'M{n:02d}']}" for n in range(14, 0, -1)]


def test_relative_folders_are_taken_from_where_the_script_was_started(tmp_path):
    caller = tmp_path / "work"
    caller.mkdir()
    env = dict(DRY_RUN="1", DATA_DIR="d", MODEL_DIR="m", PRETRAINED_DIR="p")
    for name in ("STAGES", "LOAD_EPOCH", "VARIANTS", "GPUS", "FORCE"):
        env[name] = None
    for script in ("train/M11.sh", "train/experiments/dropout/run.sh"):
        result = run(script, cwd=caller, **env, timeout=60)
        assert result.returncode == 0, result.stderr
        flags = flags_of(shlex.split(next(line for line in result.stdout.splitlines()
                                          if line.startswith("python")))[3:])
        assert flags["--data-train"] == f"{caller}/d/dataset_A/train.rec"
        assert flags["--model-prefix"].startswith(f"{caller}/m/")
        assert flags["--params"].startswith((f"{caller}/m/M07/", f"{caller}/p/"))
