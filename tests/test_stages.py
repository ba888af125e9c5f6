"""train/stages.py, the stage planner behind train/run_model.sh.

The dry runs of every model script (train/M01.sh..M14.sh, train/demo/D01.sh..D03.sh, the experiment
scripts) and of hand-made headers are compared byte for byte with tests/data/stage_plans/*.txt, which
were written by the bash planner before the move to Python (regenerate them only on purpose:
`python -m tests.test_stages --write`). The rest test the planner in-process.
"""
import os
import shlex
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT
from tests.test_recipes import EXPERIMENTS, model_script

FIXTURES = os.path.join(REPO_ROOT, "tests", "data", "stage_plans")
SCRIPTS = ([f"train/M{n:02d}.sh" for n in range(1, 15)] + [f"train/demo/D0{n}.sh" for n in range(1, 4)]
           + [f"train/experiments/{name}/run.sh" for name in sorted(EXPERIMENTS)])

# Everything a header or the planner reads from the environment: each case starts without them.
PLANNER_VARIABLES = ("STAGES", "LOAD_EPOCH", "DRY_RUN", "FORCE", "GPUS", "BN_GROUPS", "VARIANTS", "NUM_WORKERS",
                     "NUM_SERVERS", "LAUNCHER", "HOSTFILE", "KV_STORE", "DTYPE", "DATA_NTHREADS", "NUM_CLASSES",
                     "RGB_MEAN", "RGB_SCALE", "TOP_K", "DISP_BATCHES", "SEED", "EPOCHS_1", "EPOCHS_2",
                     "FINETUNE_EPOCHS", "DATA_DIR", "MODEL_DIR", "PRETRAINED_DIR", "MXNET_CUDNN_AUTOTUNE_DEFAULT")
MACHINE_SETTINGS = dict(KV_STORE="dist_sync", DTYPE="float16", DATA_NTHREADS="3", NUM_CLASSES="5270",
                        RGB_MEAN="1,2,3", RGB_SCALE="0.5", TOP_K="3", DISP_BATCHES="7", SEED="1")

# Every starting input of the model scripts, made as empty files for the cases with inputs.
INPUT_FILES = ([f"data/dataset_{d}/{part}.rec" for d in "ABC" for part in ("train", "valid")]
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
    env = {k: v for k, v in os.environ.items()
           if k not in PLANNER_VARIABLES and not k.startswith(("STAGE_", "VARIANT_"))}
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env["PATH"]
    return env


def run_case(script, folder, changes, holds):
    """The normalised record of one case: its environment, stdout, stderr and exit code."""
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
    if not os.path.isabs(script):
        script = os.path.join(REPO_ROOT, script)
    result = subprocess.run([script], env=env, capture_output=True, text=True, timeout=60)
    out = (result.stdout + "--- stderr\n" + result.stderr + f"--- exit {result.returncode}\n")
    return out.replace(root, "$TMP").replace(REPO_ROOT, "$REPO")


def render(script, tmp_root, cases=CASES):
    """Every case of `script`, in one text."""
    blocks = []
    for i, (label, changes, holds) in enumerate(cases):
        shown = " ".join(f"{k}={shlex.quote(v)}" for k, v in changes.items())
        header = f"=== {label}: {shown or '(no settings)'}; on disk: {', '.join(holds) or 'nothing'}\n"
        blocks.append(header + run_case(script, os.path.join(str(tmp_root), f"case{i:02d}"), changes, holds))
    return "".join(blocks)


def fixture_path(script):
    parts = script[:-3].split("/")[1:]  # train/demo/D01.sh -> demo_D01, train/experiments/x/run.sh -> x
    name = parts[1] if parts[0] == "experiments" else "_".join(parts)
    return os.path.join(FIXTURES, f"{name}.txt")


# Hand-made headers (tests.test_recipes.model_script): the planner's corners, then the header checks.
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


def render_headers(tmp_root):
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
            output = run_case(script, os.path.join(folder, f"case{j}"), changes, holds)
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


@pytest.mark.parametrize("script", SCRIPTS)
def test_dry_runs_of_the_model_scripts_are_unchanged(script, tmp_path):
    with open(fixture_path(script)) as fh:
        expected = fh.read()
    assert render(script, tmp_path) == expected


def test_dry_runs_of_hand_made_headers_are_unchanged(tmp_path):
    with open(HEADERS_FIXTURE) as fh:
        expected = fh.read()
    assert render_headers(tmp_path) == expected


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
