"""train/stages.py, the stage planner behind train/run_model.sh.

The dry runs of every model script (train/M01.sh..M14.sh, train/demo/D01.sh..D03.sh, the experiment
scripts) and of hand-made headers are compared byte for byte with tests/data/stage_plans/*.txt, which
were written by the bash planner before the move to Python (regenerate them only on purpose:
`python -m tests.test_stages --write`). The rest test the planner in-process.
"""
import contextlib
import functools
import io
import os
import re
import shlex
import sys
from unittest import mock

import pytest

from cli import runner
from cli.runner import UserError
from tests.helpers import REPO_ROOT, run
from tests.train_helpers import TINY_SETTINGS, flags_of, model_script
from tests.training_records import EXPERIMENTS
from train import stages

FIXTURES = os.path.join(REPO_ROOT, "tests", "data", "stage_plans")
SCRIPTS = ([f"train/M{n:02d}.sh" for n in range(1, 15)] + [f"train/demo/D0{n}.sh" for n in range(1, 4)]
           + [f"train/experiments/{name}/run.sh" for name in sorted(EXPERIMENTS)]
           + ["train/beyond/B01_hash_labelled.sh"]  # not the original's: M07's recipe plus EXTRA_RECS
           + ["train/beyond/B02_hierarchical_heads.sh"]  # not the original's: M07's recipe plus HEAD_WEIGHTS
           + ["train/beyond/B03_mosaic.sh"]  # not the original's: M07's recipe on product mosaics
           + ["train/demo/D04_mosaic.sh"])  # not the original's: the demo-sized B03 (BEYOND=B03 ./run_demo.sh)

# Everything a header or the planner reads from the environment: each case starts without them.
PLANNER_VARIABLES = ("STAGES", "LOAD_EPOCH", "DRY_RUN", "FORCE", "GPUS", "BN_GROUPS", "VARIANTS", "NUM_WORKERS",
                     "NUM_SERVERS", "LAUNCHER", "HOSTFILE", "KV_STORE", "DTYPE", "DATA_NTHREADS",
                     "RGB_MEAN", "RGB_SCALE", "TOP_K", "DISP_BATCHES", "SEED", "EPOCHS_1", "EPOCHS_2",
                     "FINETUNE_EPOCHS", "DATA_DIR", "MODEL_DIR", "PRETRAINED_DIR", "MXNET_CUDNN_AUTOTUNE_DEFAULT")
MACHINE_SETTINGS = dict(KV_STORE="dist_sync", DTYPE="float16", DATA_NTHREADS="3",
                        RGB_MEAN="1,2,3", RGB_SCALE="0.5", TOP_K="3", DISP_BATCHES="7", SEED="1")

# Every starting input of the model scripts, made as empty files for the cases with inputs.
INPUT_FILES = ([f"data/dataset_{d}/{part}.rec" for d in ("A", "B", "C", "refined", "c5270")
                for part in ("train", "valid")]
               + [f"pretrained/{net}-{suffix}" for net in ("resnext-101", "resnext-101-64x4d", "dpn92-5k",
                                                            "densenet-161", "dpn98", "dpn131", "dpn107-extra",
                                                            "resnet-34")
                  for suffix in ("symbol.json", "0000.params")]
               + ["models/M07/M07-0015.params", "models/M09/M09-0015.params", "models/D01/D01-symbol.json",
                  "models/D01/D01-0003.params"])

# (label, environment, what the folders hold: "inputs" and/or "checkpoints"); DRY_RUN=1 unless the
# environment says DRY_RUN=0, which only cases without inputs use (they stop before any work).
CASES = [
    ("default, nothing on disk", {}, ()),
    ("default, inputs there", {}, ("inputs",)),
    ("GPUS=0", {"GPUS": "0"}, ("inputs",)),
    ("GPUS empty", {"GPUS": ""}, ("inputs",)),
    ("STAGES=all", {"STAGES": "all"}, ("inputs",)),
    ("STAGES=all, nothing on disk", {"STAGES": "all"}, ()),
    ("STAGES=default", {"STAGES": "default"}, ("inputs",)),
    ("STAGES in another order, with a comma", {"STAGES": "2,1"}, ("inputs",)),
    ("STAGES empty", {"STAGES": ""}, ("inputs",)),
    ("STAGES blank", {"STAGES": " "}, ("inputs",)),
    ("STAGES unknown", {"STAGES": "1 9"}, ("inputs",)),
    ("STAGES zero", {"STAGES": "0"}, ("inputs",)),
    ("STAGES not a number", {"STAGES": "one"}, ("inputs",)),
    ("LOAD_EPOCH=1", {"LOAD_EPOCH": "1"}, ("inputs",)),
    ("LOAD_EPOCH=1, checkpoints there", {"LOAD_EPOCH": "1"}, ("inputs", "checkpoints")),
    ("LOAD_EPOCH=4", {"LOAD_EPOCH": "4"}, ("inputs",)),
    ("LOAD_EPOCH=11", {"LOAD_EPOCH": "11"}, ("inputs",)),
    ("LOAD_EPOCH=15", {"LOAD_EPOCH": "15"}, ("inputs",)),
    ("LOAD_EPOCH=13 STAGES=all", {"LOAD_EPOCH": "13", "STAGES": "all"}, ("inputs",)),
    ("LOAD_EPOCH=15 STAGES=all", {"LOAD_EPOCH": "15", "STAGES": "all"}, ("inputs",)),
    ("LOAD_EPOCH=0", {"LOAD_EPOCH": "0"}, ("inputs",)),
    ("LOAD_EPOCH empty", {"LOAD_EPOCH": ""}, ("inputs",)),
    ("LOAD_EPOCH past the end", {"LOAD_EPOCH": "99"}, ("inputs",)),
    ("LOAD_EPOCH not a number", {"LOAD_EPOCH": "x"}, ("inputs",)),
    ("LOAD_EPOCH negative", {"LOAD_EPOCH": "-1"}, ("inputs",)),
    ("an earlier run's checkpoints", {}, ("inputs", "checkpoints")),
    ("FORCE=1", {"FORCE": "1"}, ("inputs",)),
    ("FORCE=1, checkpoints there", {"FORCE": "1"}, ("inputs", "checkpoints")),
    ("FORCE=yes (not 1)", {"FORCE": "yes"}, ("inputs", "checkpoints")),
    ("NUM_WORKERS=2", {"NUM_WORKERS": "2"}, ("inputs",)),
    ("distributed, every setting", {"NUM_WORKERS": "3", "NUM_SERVERS": "1", "LAUNCHER": "local",
                                    "HOSTFILE": "/etc/my hosts", "KV_STORE": "dist_device_sync"}, ("inputs",)),
    ("machine settings", MACHINE_SETTINGS, ("inputs",)),
    ("BN_GROUPS empty", {"BN_GROUPS": "", "GPUS": "0,1"}, ("inputs",)),
    ("BN_GROUPS=4", {"BN_GROUPS": "4"}, ("inputs",)),
    ("folders that need quoting", {"QUOTED": "1"}, ()),
    ("a real run, nothing on disk", {"DRY_RUN": "0"}, ()),
    ("a real run, checkpoints but no inputs", {"DRY_RUN": "0"}, ("checkpoints",)),
]


def checkpoint_files(script):
    """An earlier run's files of each model the script trains: a checkpoint, or only a metrics CSV."""
    name = os.path.basename(script)[:-3]
    if name == "run":
        experiment = script.split("/")[2]
        return [f"models/experiments/{experiment}/{v}/{v}-metrics.csv" for v in EXPERIMENTS[experiment]]
    return [f"models/{name}/{name}-0001.params"]


def clean_environment():
    """Every variable a header or the planner reads, unset (None, as run() takes it)."""
    return {k: None for k in os.environ if k in PLANNER_VARIABLES or k.startswith(("STAGE_", "VARIANT_"))}


# Stands in for the `python` that train/run_model.sh execs: it records the planner's argv, folder and
# environment, and the test runs train.stages with them in-process (a Python start per case made the dry-run
# tests the suite's slowest file). Every shell step, the model script's header, run_model.sh and
# run_variants.sh, still runs for real; the slow tests run the real `python` too.
RECORDING_PYTHON = """#!/bin/sh
i=0
while [ -e "$PLANNER_CALLS/$i.env" ]; do i=$((i + 1)); done
printf '%s\\0' "$@" > "$PLANNER_CALLS/$i.argv"
printf '%s' "$PWD" > "$PLANNER_CALLS/$i.cwd"
env -0 > "$PLANNER_CALLS/$i.env"
"""


def read_nul_separated(path):
    with open(path) as fh:
        return fh.read().split("\0")[:-1]


def planner_in_process(argv, env, cwd):
    """stdout, stderr and exit code of `python -m train.stages ARGV` run by run_cli in this process."""
    out, err = io.StringIO(), io.StringIO()
    previous = os.getcwd()
    os.chdir(cwd)

    def no_training(*args):
        raise AssertionError("a dry-run case reached the training")

    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                mock.patch.object(runner, "setup_logging", lambda *a, **k: None), \
                mock.patch.object(stages, "run_stages", no_training):
            try:
                runner.run_cli(functools.partial(stages.main, env=env), argv)
            except SystemExit as exit_:
                code = exit_.code
    finally:
        os.chdir(previous)
    return out.getvalue(), err.getvalue(), code


def run_recorded(script, env, calls):
    """The script run with RECORDING_PYTHON as `python`, then each planner call it made replayed in turn
    (as the real run, a failed call ends it): stdout, stderr, exit code."""
    os.makedirs(calls)
    with open(os.path.join(calls, "python"), "w") as fh:
        fh.write(RECORDING_PYTHON)
    os.chmod(os.path.join(calls, "python"), 0o755)
    path = os.pathsep.join([calls, os.path.dirname(sys.executable), os.environ.get("PATH", "")])
    result = run(script, **env, PATH=path, PLANNER_CALLS=calls, timeout=60)
    stdout, stderr, code = result.stdout, result.stderr, result.returncode
    call = 0
    while code == 0 and os.path.exists(os.path.join(calls, f"{call}.env")):
        argv = read_nul_separated(os.path.join(calls, f"{call}.argv"))
        assert argv[:2] == ["-m", "train.stages"], argv  # the scripts start no other Python
        planner_env = dict(item.split("=", 1) for item in read_nul_separated(os.path.join(calls, f"{call}.env")))
        del planner_env["PLANNER_CALLS"]
        planner_env["PATH"] = path.split(os.pathsep, 1)[1]  # as the real `python` would see it
        with open(os.path.join(calls, f"{call}.cwd")) as fh:
            out, err, code = planner_in_process(argv[2:], planner_env, fh.read())
        stdout, stderr, call = stdout + out, stderr + err, call + 1
    return stdout, stderr, code


def run_case(script, folder, changes, holds, in_process=False):
    """The normalised record of one case: its environment, stdout, stderr and exit code; with `in_process`,
    the planner runs in this process (run_recorded)."""
    changes, root = dict(changes), folder
    if changes.pop("QUOTED", None):
        folder = os.path.join(folder, "my dir's")
    os.makedirs(folder, exist_ok=True)
    files = (INPUT_FILES if "inputs" in holds else []) + (checkpoint_files(script) if "checkpoints" in holds else [])
    for path in files:
        os.makedirs(os.path.dirname(os.path.join(folder, path)), exist_ok=True)
        open(os.path.join(folder, path), "wb").close()
    env = dict(clean_environment(), DRY_RUN="1", DATA_DIR=os.path.join(folder, "data"),
               MODEL_DIR=os.path.join(folder, "models"), PRETRAINED_DIR=os.path.join(folder, "pretrained"))
    env.update(changes)
    if in_process:
        stdout, stderr, code = run_recorded(script, env, root.rstrip("/") + ".calls")
    else:
        result = run(script, **env, timeout=60)
        stdout, stderr, code = result.stdout, result.stderr, result.returncode
    out = stdout + "--- stderr\n" + stderr + f"--- exit {code}\n"
    return out.replace(root, "$TMP").replace(REPO_ROOT, "$REPO")


def render(script, tmp_root, cases=CASES, in_process=False):
    """Every case of `script`, in one text."""
    blocks = []
    for i, (label, changes, holds) in enumerate(cases):
        shown = " ".join(f"{k}={shlex.quote(v)}" for k, v in changes.items())
        header = f"=== {label}: {shown or '(no settings)'}; on disk: {', '.join(holds) or 'nothing'}\n"
        folder = os.path.join(str(tmp_root), f"case{i:02d}")
        blocks.append(header + run_case(script, folder, changes, holds, in_process))
    return "".join(blocks)


def fixture_path(script):
    parts = script[:-3].split("/")[1:]  # train/demo/D01.sh -> demo_D01, train/experiments/x/run.sh -> x
    name = parts[1] if parts[0] == "experiments" else "_".join(parts)
    return os.path.join(FIXTURES, f"{name}.txt")


# Hand-made headers (tests.train_helpers.model_script): the planner's corners, then the header checks.
# (label, stages, DEFAULT_STAGES, header settings (None: left out), environment of its one case or None for
# every HEADER_CASES case)
HEADERS = [
    ("two stages", ["START_EPOCH=0 END_EPOCH=2", "START_EPOCH=2 END_EPOCH=4 OPTIMIZER=sgd LR=0.01"], "1 2", {}, None),
    ("a stage stops where the next resumes", ["START_EPOCH=0 END_EPOCH=5", "START_EPOCH=3 END_EPOCH=6"], "1 2", {},
     None),
    ("a stage with nothing to train", ["START_EPOCH=0 END_EPOCH=2", "START_EPOCH=2 END_EPOCH=2",
                                       "START_EPOCH=2 END_EPOCH=3"], "1 2 3", {}, None),
    ("WEIGHTS_EPOCH", ["START_EPOCH=0 END_EPOCH=3", "START_EPOCH=4 END_EPOCH=6 WEIGHTS_EPOCH=2"], "1 2", {}, None),
    ("one epoch", ["START_EPOCH=0 END_EPOCH=1", "START_EPOCH=1 END_EPOCH=2"], "1 2", {}, None),
    ("stage 3 left out: stage 4 is not a stage", ["START_EPOCH=0 END_EPOCH=1", "START_EPOCH=1 END_EPOCH=2"], "1 2",
     {"STAGE_4": "START_EPOCH=2 END_EPOCH=3"}, None),
    ("network flags and a feature layer", ["START_EPOCH=0 END_EPOCH=1"], "1",
     {"NETWORK_ARGS": "--num-layers 101  --use-squeeze-excitation", "FEATURE_LAYER": "flatten0",
      "PARAMS": "/nowhere/w-0000.params", "SYMBOL": "/nowhere/net-symbol.json"}, None),
    ("a json symbol from elsewhere, no source", ["START_EPOCH=0 END_EPOCH=1"], "1",
     {"SYMBOL": "/nowhere/dpn92-symbol.json", "PARAMS": "/nowhere/dpn92-0000.params"}, None),
    ("a zoo network", ["START_EPOCH=0 END_EPOCH=1"], "1",
     {"SYMBOL": "/nowhere/densenet-161-symbol.json", "PARAMS": "/nowhere/densenet-161-0000.params",
      "PRETRAINED_SOURCE": "http://example.org/densenet/"}, None),
    ("not a zoo network", ["START_EPOCH=0 END_EPOCH=1"], "1",
     {"SYMBOL": "/nowhere/dpn92-5k-symbol.json", "PARAMS": "/nowhere/dpn92-5k-0000.params",
      "PRETRAINED_SOURCE": "https://github.com/cypw/DPNs"}, None),
    ("values that need quoting", ["START_EPOCH=0 END_EPOCH=1 LR_STEP_EPOCHS=a'b"], "1",
     {"GPUS": "0, 1", "OPTIMIZER": "my opt", "NETWORK_ARGS": "--x=a\\tb"}, None),
    ("a setting a stage cannot change", ["START_EPOCH=0 END_EPOCH=1", "START_EPOCH=1 END_EPOCH=2 LR_STEPS=3"],
     "1 2", {}, {}),
    ("a word that is not SETTING=value", ["START_EPOCH=0 END_EPOCH=1 LR"], "1", {}, {}),
    ("two equals signs", ["START_EPOCH=0 END_EPOCH=1 LR=0.1=2"], "1", {}, {}),
    ("a lower-case setting", ["START_EPOCH=0 END_EPOCH=1 lr=0.1"], "1", {}, {}),
    ("an empty value", ["START_EPOCH=0 END_EPOCH=1 LR="], "1", {}, {}),
    ("no START_EPOCH", ["END_EPOCH=1"], "1", {}, {}),
    ("an epoch that is not a number", ["START_EPOCH=0 END_EPOCH=x"], "1", {}, {}),
    ("END_EPOCH before START_EPOCH", ["START_EPOCH=3 END_EPOCH=1"], "1", {}, {}),
    ("a bad second stage fails before any", ["START_EPOCH=0 END_EPOCH=1", "START_EPOCH=1"], "1", {}, {}),
    ("DEFAULT_STAGES names no stage", ["START_EPOCH=0 END_EPOCH=1"], "1 5", {}, {}),
    ("WD left out", ["START_EPOCH=0 END_EPOCH=1"], "1", {"WD": None}, {}),
    ("WD empty", ["START_EPOCH=0 END_EPOCH=1"], "1", {"WD": ""}, {}),
    ("PRETRAINED_SOURCE left out", ["START_EPOCH=0 END_EPOCH=1"], "1", {"PRETRAINED_SOURCE": None}, {}),
    ("GPUS left out", ["START_EPOCH=0 END_EPOCH=1"], "1", {"GPUS": None}, {}),
    ("MODEL_DIR empty", ["START_EPOCH=0 END_EPOCH=1"], "1", {}, {"MODEL_DIR": ""}),
    ("STAGE_1 empty", [""], "1", {}, {}),
    ("DEFAULT_STAGES empty", ["START_EPOCH=0 END_EPOCH=1"], "", {}, {}),
    ("STAGE_1 blank", ["   "], "1", {}, {}),
]
HEADER_CASES = [
    ("default", {}, ()),
    ("STAGES=all LOAD_EPOCH=1", {"STAGES": "all", "LOAD_EPOCH": "1"}, ()),
    ("LOAD_EPOCH=4", {"LOAD_EPOCH": "4"}, ()),
    ("an earlier run's checkpoints", {}, ("checkpoints",)),
    ("FORCE=1, checkpoints there", {"FORCE": "1"}, ("checkpoints",)),
    ("NUM_WORKERS=2 and machine settings", dict(MACHINE_SETTINGS, NUM_WORKERS="2"), ()),
    ("a real run, nothing on disk", {"DRY_RUN": "0"}, ()),
]


def render_headers(tmp_root, in_process=False):
    blocks = []
    for i, (label, stages, default_stages, settings, only_env) in enumerate(HEADERS):
        folder = os.path.join(str(tmp_root), f"header{i:02d}")
        os.makedirs(folder)
        header = {k: v for k, v in settings.items() if not k.startswith("STAGE_")}
        script = model_script(_Path(folder, "Mtiny.sh"), stages, default_stages=default_stages, **header)
        later = "".join(f"{k}={shlex.quote(v)}\n" for k, v in settings.items() if k.startswith("STAGE_"))
        with open(script) as fh:
            text = fh.read()
        with open(script, "w") as fh:  # a stage after a gap: after the others
            fh.write(text.replace("set +a\n", later + "set +a\n"))
        blocks.append(f"##### {label}\n")
        cases = HEADER_CASES if only_env is None else [("the error", only_env, ())]
        for j, (case_label, changes, holds) in enumerate(cases):
            shown = " ".join(f"{k}={shlex.quote(v)}" for k, v in changes.items())
            blocks.append(f"=== {case_label}: {shown or '(no settings)'}; on disk: {', '.join(holds) or 'nothing'}\n")
            output = run_case(script, os.path.join(folder, f"case{j}"), changes, holds, in_process)
            blocks.append(output.replace(folder, "$SCRIPT_DIR"))
    return "".join(blocks)


class _Path(str):
    """The str path model_script writes to (it calls write_text and chmod on it)."""

    def __new__(cls, *parts):
        return super().__new__(cls, os.path.join(*parts))

    def write_text(self, text):
        with open(self, "w") as fh:
            fh.write(text)

    def chmod(self, mode):
        os.chmod(self, mode)


HEADERS_FIXTURE = os.path.join(FIXTURES, "headers.txt")


def blocks_of(text):
    """{case header line: its block} of a rendered or fixture text."""
    parts = re.split(r"^(?==== )", text, flags=re.M)
    return {part.split("\n", 1)[0]: part for part in parts if part}


# The cases the fast suite runs for every script with the planner in-process (the slow suite runs all of
# them end to end).
FAST_CASES = [case for case in CASES if case[0] in {
    "default, nothing on disk", "default, inputs there", "GPUS=0", "STAGES=all", "LOAD_EPOCH=13 STAGES=all",
    "an earlier run's checkpoints", "machine settings", "BN_GROUPS empty", "a real run, nothing on disk"}]


@pytest.mark.parametrize("script", SCRIPTS)
def test_dry_runs_of_the_model_scripts_in_the_main_cases_are_unchanged(script, tmp_path):
    with open(fixture_path(script)) as fh:
        expected = blocks_of(fh.read())
    got = blocks_of(render(script, tmp_path, FAST_CASES, in_process=True))
    assert len(got) == len(FAST_CASES)
    assert got == {header: expected[header] for header in got}


def test_dry_runs_of_hand_made_headers_are_unchanged(tmp_path):
    with open(HEADERS_FIXTURE) as fh:
        expected = fh.read()
    assert render_headers(tmp_path, in_process=True) == expected


# End to end, with the real `python` (each case starts bash twice and Python once): a few cases of a few
# scripts in the fast suite, every case of every script in the slow one.
END_TO_END_CASES = [case for case in CASES if case[0] in {
    "default, inputs there", "LOAD_EPOCH=13 STAGES=all", "a real run, checkpoints but no inputs"}]


@pytest.mark.parametrize("script", ["train/M07.sh", "train/demo/D01.sh", "train/experiments/dropout/run.sh"])
def test_dry_runs_end_to_end_in_the_main_cases_are_unchanged(script, tmp_path):
    with open(fixture_path(script)) as fh:
        expected = blocks_of(fh.read())
    got = blocks_of(render(script, tmp_path, END_TO_END_CASES))
    assert len(got) == len(END_TO_END_CASES)
    assert got == {header: expected[header] for header in got}


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_dry_runs_end_to_end_are_unchanged(script, tmp_path):
    with open(fixture_path(script)) as fh:
        expected = fh.read()
    assert render(script, tmp_path) == expected


@pytest.mark.slow
def test_dry_runs_of_hand_made_headers_end_to_end_are_unchanged(tmp_path):
    with open(HEADERS_FIXTURE) as fh:
        expected = fh.read()
    assert render_headers(tmp_path) == expected


# ---- the planner in-process ---------------------------------------------------------------------------
def header_env(*stages, default_stages="1", **settings):
    """The environment a small model script's header exports."""
    env = dict(TINY_SETTINGS, DATA_DIR="/d", MODEL_DIR="/m", MODEL_NAME="Mx", SYMBOL="densenet-41",
               NETWORK_ARGS="", PARAMS="", FEATURE_LAYER="", PRETRAINED_SOURCE="", GPUS="",
               DEFAULT_STAGES=default_stages)
    env.update({f"STAGE_{i}": text for i, text in enumerate(stages, 1)})
    env.update(settings)
    return {k: v for k, v in env.items() if v is not None}


def plan_of(env):
    header, load_epoch = stages.read_header(env)
    return header, stages.make_plan(stages.select_stages(header, env.get("STAGES")), load_epoch)


def test_a_stage_is_parsed_with_its_changes_in_order():
    stage = stages.parse_stage(4, "START_EPOCH=18 END_EPOCH=25 WEIGHTS_EPOCH=15 OPTIMIZER=nadam\n     LR=0.0001")
    assert stage == stages.Stage(4, 18, 25, 15, {"OPTIMIZER": "nadam", "LR": "0.0001"})
    assert list(stage.changes) == ["OPTIMIZER", "LR"]
    assert stages.parse_stage(1, "\tSTART_EPOCH=0  END_EPOCH=0 ").weights_epoch is None


@pytest.mark.parametrize("text, message", [
    ("START_EPOCH=0 END_EPOCH=1 LR", "STAGE_2: 'LR' is not SETTING=value"),
    ("START_EPOCH=0 END_EPOCH=1 LR=1=2", "STAGE_2: 'LR=1=2' is not SETTING=value"),
    ("START_EPOCH=0 END_EPOCH=1 lr=1", "STAGE_2: 'lr=1' is not SETTING=value"),
    ("START_EPOCH=0 END_EPOCH=1 GPUS=0", "STAGE_2: GPUS is not a setting a stage can change (DATASET OPTIMIZER"),
    ("START_EPOCH=0 END_EPOCH=1 LR=1 LR=2", "STAGE_2: LR is given twice"),
    ("END_EPOCH=1", "STAGE_2: needs START_EPOCH=a END_EPOCH=b"),
    ("START_EPOCH=1 END_EPOCH=+2", "STAGE_2: needs START_EPOCH=a END_EPOCH=b"),
    ("", "STAGE_2: needs START_EPOCH=a END_EPOCH=b"),
    ("START_EPOCH=3 END_EPOCH=2", "STAGE_2: END_EPOCH 2 is before START_EPOCH 3"),
    ("START_EPOCH=3 END_EPOCH=4 WEIGHTS_EPOCH=x", "STAGE_2: WEIGHTS_EPOCH=x: expected a checkpoint number"),
])
def test_a_bad_stage_is_named(text, message):
    with pytest.raises(UserError) as error:
        stages.parse_stage(2, text)
    assert str(error.value).startswith(message)


def test_the_header_is_checked_and_every_stage_read():
    assert stages.read_header(header_env("START_EPOCH=0 END_EPOCH=1", PARAMS=""))[0]["PARAMS"] == ""  # may be empty
    for name, value, message in [("PARAMS", None, "PARAMS is not set: the model script's header must set it (it may "
                                                  "be empty)"),
                                 ("LR", "", "LR is not set: the model script's header must set it"),
                                 ("STAGE_1", None, "STAGE_1 is not set")]:
        with pytest.raises(UserError, match=re.escape(message)):
            stages.read_header(header_env("START_EPOCH=0 END_EPOCH=1", **{name: value}))
    env = header_env("START_EPOCH=0 END_EPOCH=1", "START_EPOCH=1 END_EPOCH=2", STAGE_4="START_EPOCH=2 END_EPOCH=3")
    assert [s.number for s in stages.read_header(env)[0].stages] == [1, 2]  # up to the first gap
    with pytest.raises(UserError, match="STAGE_2: needs"):  # a later stage fails before anything runs
        stages.read_header(header_env("START_EPOCH=0 END_EPOCH=1", "START_EPOCH=1"))


@pytest.mark.parametrize("text, epoch", [(None, 0), ("", 0), ("0", 0), ("13", 13)])
def test_load_epoch_is_a_checkpoint_number(text, epoch):
    assert stages.parse_load_epoch(text) == epoch


@pytest.mark.parametrize("text", ["x", "-1", "1.5", " 3"])
def test_a_load_epoch_that_is_no_number_is_refused(text):
    with pytest.raises(UserError, match=re.escape(f"LOAD_EPOCH={text}: expected a checkpoint number")):
        stages.parse_load_epoch(text)


THREE = ("START_EPOCH=0 END_EPOCH=2", "START_EPOCH=2 END_EPOCH=4", "START_EPOCH=4 END_EPOCH=6")


@pytest.mark.parametrize("spec, numbers", [(None, [1, 3]), ("", [1, 3]), ("default", [1, 3]), ("all", [1, 2, 3]),
                                           ("3 1", [3, 1]), ("2,3", [2, 3]), (" 2\t", [2])])
def test_stages_are_selected_in_the_order_named(spec, numbers):
    header, _ = stages.read_header(header_env(*THREE, default_stages="1 3"))
    assert [s.number for s in stages.select_stages(header, spec)] == numbers


@pytest.mark.parametrize("spec, message", [("4", "STAGES: no stage '4' in Mx (stages 1-3, all or default)"),
                                           ("0", "no stage '0'"), ("one", "no stage 'one'"), ("-1", "no stage '-1'"),
                                           (" ", "STAGES: no stage named")])
def test_an_unknown_stage_is_named(spec, message):
    header, _ = stages.read_header(header_env(*THREE))
    with pytest.raises(UserError, match=re.escape(message)):
        stages.select_stages(header, spec)


def spans(plan):
    return [(p.stage.number, p.load, p.end, p.note) for p in plan]


def test_a_stage_stops_where_the_next_resumes_inside_it():
    _, plan = plan_of(header_env("START_EPOCH=0 END_EPOCH=5", "START_EPOCH=3 END_EPOCH=6", "START_EPOCH=6 END_EPOCH=6",
                                 default_stages="1 2 3"))
    assert spans(plan) == [(1, 0, 3, "recorded to 5; stops at 3, where stage 2 resumes"), (2, 3, 6, ""),
                           (3, 6, 6, "the record has no complete epoch: nothing to train")]
    assert [p.trains for p in plan] == [True, True, False]
    _, alone = plan_of(header_env("START_EPOCH=0 END_EPOCH=5", "START_EPOCH=3 END_EPOCH=6", STAGES="1"))
    assert spans(alone) == [(1, 0, 5, "")]  # no next stage in the run: the whole record


def test_load_epoch_starts_at_the_stage_that_trains_past_it():
    _, plan = plan_of(header_env(*THREE, default_stages="1 2 3", LOAD_EPOCH="3"))
    assert spans(plan) == [(1, 0, 0, "before LOAD_EPOCH=3: not run"), (2, 3, 4, "LOAD_EPOCH=3"), (3, 4, 6, "")]
    _, boundary = plan_of(header_env(*THREE, default_stages="1 2 3", LOAD_EPOCH="4"))
    assert spans(boundary)[1:] == [(2, 2, 2, "before LOAD_EPOCH=4: not run"), (3, 4, 6, "LOAD_EPOCH=4")]
    with pytest.raises(UserError) as error:
        plan_of(header_env(*THREE, default_stages="1 3", LOAD_EPOCH="6"))
    assert str(error.value) == "LOAD_EPOCH=6: no stage to run trains past checkpoint 6 (stage:from-to 1:0-2 3:4-6)"


def test_weights_epoch_applies_where_the_stage_starts_only():
    stage = stages.Stage(2, 18, 25, 15)
    assert stages.PlannedStage(stage, 18, 25).weights == 15
    assert stages.PlannedStage(stage, 20, 25).weights == 20  # LOAD_EPOCH inside: that checkpoint's own weights
    assert stages.PlannedStage(stages.Stage(2, 18, 25), 18, 25).weights == 18


def test_missing_inputs_name_what_no_earlier_stage_writes():
    env = header_env("START_EPOCH=0 END_EPOCH=2", "START_EPOCH=2 END_EPOCH=4 DATASET=dataset_B",
                     "START_EPOCH=1 END_EPOCH=3 WEIGHTS_EPOCH=4", "START_EPOCH=5 END_EPOCH=6", default_stages="1 2 3 4",
                     SYMBOL="/p/dpn98-symbol.json", PARAMS="/p/dpn98-0000.params", PRETRAINED_SOURCE="http://x/")
    header, plan = plan_of(env)
    hint = ("download them from http://x/, or make them from the gluoncv2 zoo: python -m train.import_weights "
            "--zoo gluoncv2 --model dpn98 --out /p/dpn98")
    assert stages.missing_inputs(header, plan, is_file=lambda path: False) == [
        f"/p/dpn98-symbol.json not found: the network of the starting weights; {hint}",
        "/d/dataset_A/train.rec not found: run data/create_dataset_A.sh first",
        "/d/dataset_A/valid.rec not found: run data/create_dataset_A.sh first",
        f"/p/dpn98-0000.params not found: the starting weights; {hint}",
        # stage 2 resumes checkpoint 2 of stage 1, stage 3 epoch 4's weights of stage 2: made by the run
        "/d/dataset_B/train.rec not found: run data/create_dataset_B.sh first",
        "/d/dataset_B/valid.rec not found: run data/create_dataset_B.sh first",
        "/m/Mx/Mx-0005.params not found: stage 4 resumes from it; run the stages before it (STAGES, LOAD_EPOCH)",
    ]
    on_disk = {"/p/dpn98-symbol.json", "/p/dpn98-0000.params", "/m/Mx/Mx-0005.params"} | {
        f"/d/dataset_{d}/{part}.rec" for d in "AB" for part in ("train", "valid")}
    assert stages.missing_inputs(header, plan, is_file=on_disk.__contains__) == []


def test_a_resumed_run_needs_its_checkpoint_not_the_starting_weights():
    header, plan = plan_of(header_env(*THREE, default_stages="1 2 3", LOAD_EPOCH="3", PARAMS="/p/w.params"))
    assert stages.missing_inputs(header, plan, is_file=lambda path: path.endswith(".rec")) == [
        "/m/Mx/Mx-0003.params not found: stage 2 resumes from it; run the stages before it (STAGES, LOAD_EPOCH)"]


@pytest.mark.parametrize("source, symbol, hint", [
    ("http://a/", "/p/resnext-101-symbol.json", "download them from http://a/, or make them from the gluoncv2 zoo: "
                                                "python -m train.import_weights --zoo gluoncv2 --model "
                                                "resnext101_32x4d --out /p/resnext-101"),
    ("https://github.com/cypw/DPNs", "/p/dpn92-5k-symbol.json",
     "download them from https://github.com/cypw/DPNs (the gluoncv2 zoo has no weights for this network)"),
    ("run train/M07.sh first", "resnext", "run train/M07.sh first"),
    ("", "resnext", "see PARAMS in the model script"),
])
def test_the_weights_hint_says_where_the_weights_come_from(source, symbol, hint):
    header, _ = stages.read_header(header_env("START_EPOCH=0 END_EPOCH=1", PRETRAINED_SOURCE=source, SYMBOL=symbol))
    assert stages.weights_hint(header) == hint


def test_a_fresh_run_onto_an_earlier_one_is_refused_unless_forced(tmp_path):
    model_dir = tmp_path / "a [b]"  # glob characters in the folder are the folder's own
    env = header_env("START_EPOCH=0 END_EPOCH=2", "START_EPOCH=2 END_EPOCH=4", default_stages="1 2",
                     MODEL_DIR=str(model_dir))
    header, plan = plan_of(env)
    assert stages.earlier_run(header, plan, force=False) is None
    (model_dir / "Mx").mkdir(parents=True)
    for name in ("Mx-symbol.json", "Mx-12.params", "Mx-train.log"):  # no checkpoint yet
        (model_dir / "Mx" / name).write_text("")
    assert stages.earlier_run(header, plan, force=False) is None
    for earlier in ("Mx-0004.params", "Mx-metrics.csv"):
        (model_dir / "Mx" / earlier).write_text("")
        refusal = stages.earlier_run(header, plan, force=False)
        assert refusal.startswith(f"{model_dir}/Mx/Mx: an earlier run's checkpoints are there; resume with LOAD_EPOCH")
        assert stages.earlier_run(header, plan, force=True) is None
        (model_dir / "Mx" / earlier).unlink()
    (model_dir / "Mx" / "Mx-0002.params").write_text("")
    _, resumed = plan_of(dict(env, LOAD_EPOCH="2"))
    assert stages.earlier_run(header, resumed, force=False) is None  # it continues its own run


def test_the_command_carries_the_stage_settings_and_only_the_set_machine_settings():
    env = header_env("START_EPOCH=0 END_EPOCH=2", "START_EPOCH=2 END_EPOCH=3 OPTIMIZER=sgd DATASET=dataset_B",
                     default_stages="1 2", NETWORK_ARGS=" --num-layers 101\t--x ", PARAMS="/p/w.params",
                     FEATURE_LAYER="flatten0", GPUS="0,1", BN_GROUPS="8", DATA_NTHREADS="3", TOP_K="")
    header, plan = plan_of(env)
    first, second = (stages.stage_command(header, p, env, force=True) for p in plan)
    assert first[:12] == ["python", "-m", "train.train_model", "--symbol", "densenet-41", "--num-layers", "101", "--x",
                          "--params", "/p/w.params", "--feature-layer", "flatten0"]
    assert "--force" in first and "--force" not in second and "--params" not in second
    flags = flags_of(second[3:])
    assert flags["--gpus"] == "0,1" and flags["--bn-groups"] == "8" and flags["--optimizer"] == "sgd"
    assert flags["--data-train"] == "/d/dataset_B/train.rec" and flags["--lr"] == "0.001"
    assert (flags["--load-epoch"], flags["--num-epochs"]) == ("2", "3")
    assert second[-2:] == ["--data-nthreads", "3"] and "--top-k" not in second  # empty: train_model's default
    assert "--bn-groups" not in stages.stage_command(header, plan[0], dict(env, BN_GROUPS=""))


def test_the_weights_of_another_checkpoint_are_its_params():
    env = header_env("START_EPOCH=0 END_EPOCH=15", "START_EPOCH=18 END_EPOCH=25 WEIGHTS_EPOCH=15", STAGES="2")
    header, plan = plan_of(env)
    command = stages.stage_command(header, plan[0], env)
    assert command[command.index("--params") + 1] == "/m/Mx/Mx-0015.params"
    assert stages.stage_line(header, plan[0]) == \
        "# Mx stage 2: epochs 19-25 from checkpoint 15's weights, numbered from 18"


def test_a_recorded_stage_start_gets_a_fresh_optimizer_and_a_resume_inside_a_stage_does_not():
    env = header_env("START_EPOCH=0 END_EPOCH=2", "START_EPOCH=2 END_EPOCH=4", default_stages="1 2")
    for load_epoch, fresh in (("", [False, True]), ("2", [True]), ("3", [False]), ("1", [False, True])):
        header, plan = plan_of(dict(env, LOAD_EPOCH=load_epoch))
        commands = [stages.stage_command(header, p, env) for p in plan if p.trains]
        assert ["--fresh-optimizer" in c for c in commands] == fresh, load_epoch


def test_the_initializer_is_passed_only_when_the_header_sets_it():
    env = header_env("START_EPOCH=0 END_EPOCH=1")
    header, plan = plan_of(env)
    assert "--initializer" not in stages.stage_command(header, plan[0], env)
    header, plan = plan_of(dict(env, INITIALIZER="xavier"))
    flags = flags_of(stages.stage_command(header, plan[0], env)[3:])
    assert flags["--initializer"] == "xavier"


def test_under_the_distributed_launcher_train_launch_runs_the_command():
    env = header_env("START_EPOCH=0 END_EPOCH=1", NUM_WORKERS="4")
    header, plan = plan_of(env)
    assert stages.stage_command(header, plan[0], env)[:13] == [
        "python", "-m", "train.launch", "-n", "4", "-s", "4", "--launcher", "ssh", "--log-dir", "/m/Mx/launch_logs",
        "--", "python"]
    env.update(NUM_SERVERS="1", LAUNCHER="local", HOSTFILE="/h")
    assert stages.stage_command(header, plan[0], env)[3:13] == ["-n", "4", "-s", "1", "--launcher", "local", "-H", "/h",
                                                                "--log-dir", "/m/Mx/launch_logs"]


@pytest.mark.parametrize("words, line", [
    (["python", "-m", "a.b", "--x", "0,1", "/a/b-c_d.e:f=g+h@i%j"], "python -m a.b --x 0,1 /a/b-c_d.e:f=g+h@i%j"),
    (["--gpus", ""], "--gpus ''"),
    (["/my dir's/x", "a\\tb", "$HOME"], "'/my dir'\\''s/x' 'a\\tb' '$HOME'"),
])
def test_shell_words_quote_only_where_needed(words, line):
    assert stages.shell_words(words) == line
    assert shlex.split(line) == words


@pytest.mark.parametrize("load, end, weights_epoch, note, line", [
    (0, 1, None, "", "# Mx stage 1: epoch 1 from the starting weights"),
    (2, 5, None, "LOAD_EPOCH=2", "# Mx stage 1: epochs 3-5 from checkpoint 2 (LOAD_EPOCH=2)"),
    (3, 3, None, "before LOAD_EPOCH=4: not run", "# Mx stage 1: skipped (before LOAD_EPOCH=4: not run)"),
])
def test_the_stage_line_says_what_the_stage_does(load, end, weights_epoch, note, line):
    header, _ = stages.read_header(header_env("START_EPOCH=0 END_EPOCH=1"))
    planned = stages.PlannedStage(stages.Stage(1, load, end, weights_epoch), load, end, note)
    assert stages.stage_line(header, planned) == line


def test_a_dry_run_prints_the_plan_and_runs_nothing(tmp_path, capsys):
    env = header_env("START_EPOCH=0 END_EPOCH=1", "START_EPOCH=1 END_EPOCH=2", default_stages="1 2",
                     MODEL_DIR=str(tmp_path / "models"), DATA_DIR=str(tmp_path), DRY_RUN="1")
    assert stages.main([], env) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"# missing: {tmp_path}/dataset_A/train.rec not found: run data/create_dataset_A.sh first"
    assert out[2:] == ["# Mx stage 1: epoch 1 from the starting weights", out[3],
                       "# Mx stage 2: epoch 2 from checkpoint 1", out[5]]
    assert shlex.split(out[3])[:3] == ["python", "-m", "train.train_model"] and "--load-epoch 1" in out[5]
    assert not (tmp_path / "models").exists()


def test_a_real_run_stops_on_every_problem_before_any_work(tmp_path, capsys):
    model_dir = tmp_path / "models"
    (model_dir / "Mx").mkdir(parents=True)
    (model_dir / "Mx" / "Mx-0001.params").write_text("")
    env = header_env("START_EPOCH=0 END_EPOCH=1", MODEL_DIR=str(model_dir), DATA_DIR=str(tmp_path), GPUS="0")
    assert stages.main([], env) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.splitlines() == [
        f"error: {tmp_path}/dataset_A/train.rec not found: run data/create_dataset_A.sh first",
        f"error: {tmp_path}/dataset_A/valid.rec not found: run data/create_dataset_A.sh first",
        f"error: {model_dir}/Mx/Mx: an earlier run's checkpoints are there; resume with LOAD_EPOCH=N, set MODEL_DIR "
        "elsewhere, or FORCE=1 to train over them"]
    assert sorted(os.listdir(model_dir / "Mx")) == ["Mx-0001.params"]


def test_a_header_error_is_one_line_from_the_command(tmp_path):
    env = dict(clean_environment(), **header_env("START_EPOCH=0 END_EPOCH=1", WD=None))
    result = run(["python", "-m", "train.stages"], **env, timeout=60)
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "error: WD is not set: the model script's header must set it\n"


def test_help_describes_the_settings(capsys):
    with pytest.raises(SystemExit) as exit_:
        stages.main(["--help"], {})
    assert exit_.value.code == 0 and "LOAD_EPOCH=N" in capsys.readouterr().out


def test_a_stage_output_goes_to_the_terminal_and_the_log(tmp_path, capsys):
    log = tmp_path / "m-train.log"
    log.write_text("earlier\n")
    code = ["python", "-c", "import sys; print('out'); print('err', file=sys.stderr, flush=True); sys.exit(3)"]
    assert stages.run_logged(code, str(log), dict(os.environ)) == 3  # the stage's own exit status
    assert log.read_text().splitlines()[0] == "earlier" and sorted(log.read_text().splitlines()[1:]) == ["err", "out"]
    assert sorted(capsys.readouterr().out.splitlines()) == ["err", "out"]
    killed = [sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"]
    assert stages.run_logged(killed, str(log), dict(os.environ)) == 128 + 15  # as a shell reports a signal


def test_the_stages_run_in_turn_and_a_failed_stage_ends_the_run(tmp_path, monkeypatch, capsys):
    env = header_env("START_EPOCH=0 END_EPOCH=1", "START_EPOCH=1 END_EPOCH=2", "START_EPOCH=2 END_EPOCH=3",
                     default_stages="1 2 3", MODEL_DIR=str(tmp_path / "models"))
    header, plan = plan_of(env)
    ran = []

    def fake_run(command, log_path, child_env):
        ran.append((command[command.index("--load-epoch") + 1], child_env["MXNET_CUDNN_AUTOTUNE_DEFAULT"]))
        return 1 if len(ran) == 2 else 0

    monkeypatch.setattr(stages, "run_logged", fake_run)
    assert stages.run_stages(header, plan, env, force=False) == 1
    assert ran == [("0", "0"), ("1", "0")]  # stage 3 not started
    log = (tmp_path / "models" / "Mx" / "Mx-train.log").read_text().splitlines()
    assert log[0] == "# Mx stage 1: epoch 1 from the starting weights"
    assert log[1].startswith("python -m train.train_model")
    assert len(log) == 4 and capsys.readouterr().out.splitlines() == log


def test_every_variable_the_planner_reads_is_listed():
    with open(stages.__file__) as fh:
        read = set(re.findall(r"env(?:\.get\(|\[)\"([A-Z_0-9]+)\"", fh.read()))
    assert "LOAD_EPOCH" in read and "HOSTFILE" in read
    assert read <= set(stages.RUN_ENVIRONMENT)  # (the header's are read through check_header)


def test_the_zoo_table_has_one_home_and_fits_the_importer():
    from train import import_weights, published_weights
    assert all(network.startswith(import_weights.FAMILIES) for network in published_weights.ZOO_NETWORKS.values())
    assert published_weights.zoo_network("/p/dpn131-symbol.json") == "dpn131"
    assert published_weights.zoo_network("/p/dpn92-5k-symbol.json") is None
    assert published_weights.zoo_network("/p/dpn131-0000.params") is None
    assert "resnext101_32x4d" in import_weights.build_parser().format_help()
    with open(os.path.join(REPO_ROOT, "train", "run_model.sh")) as fh:
        wrapper = fh.read()
    assert "resnext101" not in wrapper and "set -euo pipefail" in wrapper.splitlines()[:10]
    assert wrapper.rstrip().endswith('exec python -m train.stages "$@"')


def write_fixtures():
    """Rewrite tests/data/stage_plans/ from the planner as it is now."""
    import tempfile
    os.makedirs(FIXTURES, exist_ok=True)
    for script in SCRIPTS:
        with tempfile.TemporaryDirectory() as tmp:
            text = render(script, tmp)
        with open(fixture_path(script), "w") as fh:
            fh.write(text)
    with tempfile.TemporaryDirectory() as tmp:
        text = render_headers(tmp)
    with open(HEADERS_FIXTURE, "w") as fh:
        fh.write(text)


if __name__ == "__main__" and sys.argv[1:] == ["--write"]:
    write_fixtures()


def test_settings_not_the_originals_reach_only_the_scripts_that_declare_them():
    """The header is exported, so an exported HEAD_WEIGHTS or EXTRA_RECS would reach M07 too: refused."""
    done = run("train/M07.sh", HEAD_WEIGHTS="0.8,0.1,0.1", DRY_RUN="1", DATA_DIR="/nonexistent")
    assert done.returncode == 2
    assert "HEAD_WEIGHTS is set, but M07 is not one of train/beyond/'s scripts" in done.stderr
    beyond = run("train/beyond/B02_hierarchical_heads.sh", DRY_RUN="1", DATA_DIR="/nonexistent")
    assert beyond.returncode == 0 and "--level-heads --head-weights 0.8,0.1,0.1" in beyond.stdout
