"""Plan and run the training stages of a model script: train/M01.sh ... M14.sh, train/demo/D01.sh ...
D03.sh, the experiment scripts (through train/experiments/run_variants.sh). Their last line,
`exec train/run_model.sh`, runs this with the header's settings in the environment; one
`python -m train.train_model` per stage.

The header exports (set -a) every recipe setting (DATASET OPTIMIZER LR LR_FACTOR LR_STEP_EPOCHS MOM
WD BATCH_SIZE SMOOTH_ALPHA DROPOUT_RATIO IMAGE_SHAPE RESIZE INTER_METHOD RANDOM_CROP RANDOM_MIRROR
MAX_RANDOM_H MAX_RANDOM_S MAX_RANDOM_L), DATA_DIR MODEL_DIR MODEL_NAME SYMBOL, GPUS NETWORK_ARGS PARAMS
FEATURE_LAYER PRETRAINED_SOURCE (these may be empty), optionally INITIALIZER (xavier for the
records of the original's older fine-tune.py; left out: train.train_model's default, msra) and
EXTRA_RECS (not the original's: more training .rec files under DATA_DIR, passed to every stage as
--data-train-extra, e.g. train/beyond/B01_hash_labelled.sh's dataset_A/test_hash_labelled.rec) and
HEAD_WEIGHTS (not the original's: the loss weights of the class head and the level heads, passed to every stage
as --level-heads --head-weights, e.g. train/beyond/B02_hierarchical_heads.sh's 0.8,0.1,0.1), the
stages STAGE_1, STAGE_2, ... in the order the original ran them, each
"START_EPOCH=a END_EPOCH=b [WEIGHTS_EPOCH=w] [SETTING=value ...]" (the checkpoint it resumes from,
0 for the starting weights PARAMS; its last checkpoint; another checkpoint whose weights it starts
from, numbered as START_EPOCH; the recipe settings it changes), and
DEFAULT_STAGES. A stage stops early where the next stage of the run resumes from a checkpoint inside
it (as the original did when it went back to an earlier epoch). A stage that starts where it was
recorded to start, from a checkpoint, gets --fresh-optimizer: each of the original's logged restarts
built a new optimizer; a LOAD_EPOCH inside a stage resumes the saved optimizer state instead, so an
interrupted stage continues as if uninterrupted.

From the environment:
  STAGES="1 3" | all | default   stages to run, in this order (default: DEFAULT_STAGES)
  LOAD_EPOCH=N                   resume from checkpoint N: start at the first stage to run that
                                 trains past epoch N, from checkpoint N; the later stages follow
  DRY_RUN=1                      print each stage's command and what is missing (# lines); run nothing
  FORCE=1                        a run from the starting weights trains over an earlier run's
                                 checkpoints in MODEL_DIR/MODEL_NAME (refused without; LOAD_EPOCH=N
                                 resumes instead)
  NUM_WORKERS, NUM_SERVERS, LAUNCHER, HOSTFILE, KV_STORE   set by train/launch_dist.sh: each stage runs
                                 on NUM_WORKERS machines through train.launch; BATCH_SIZE is then per machine
  BN_GROUPS                      (the M-scripts' headers set it to their record's GPU count) passed as
                                 --bn-groups when not empty: the batch is split between that many
                                 executors, several on a GPU when there are fewer GPUs, so each
                                 BatchNorm normalises over as many pictures as the record's did
  KV_STORE DTYPE DATA_NTHREADS RGB_MEAN RGB_SCALE TOP_K DISP_BATCHES SEED
                                 machine settings, passed to train.train_model only when set, so that
                                 its argparse defaults are the one place for their defaults
"""
import argparse
import glob
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Optional

from cli.processes import set_parent_death_signal
from cli.runner import HelpFormatter, UserError, run_cli
from train.published_weights import import_command

# Recipe settings a stage may change; the header sets each (its value for every stage that does not
# change it).
STAGE_SETTINGS = ("DATASET", "OPTIMIZER", "LR", "LR_FACTOR", "LR_STEP_EPOCHS", "MOM", "WD", "BATCH_SIZE",
                  "SMOOTH_ALPHA", "DROPOUT_RATIO", "IMAGE_SHAPE", "RESIZE", "INTER_METHOD", "RANDOM_CROP",
                  "RANDOM_MIRROR", "MAX_RANDOM_H", "MAX_RANDOM_S", "MAX_RANDOM_L")
EPOCH_KEYS = ("START_EPOCH", "END_EPOCH", "WEIGHTS_EPOCH")
# Header settings that may be empty: GPUS (CPU), NETWORK_ARGS, PARAMS (from scratch), FEATURE_LAYER
# (the network's own), PRETRAINED_SOURCE.
MAY_BE_EMPTY = ("GPUS", "NETWORK_ARGS", "PARAMS", "FEATURE_LAYER", "PRETRAINED_SOURCE")
# Header settings that may be left out (empty or unset: train.train_model's default, or none).
OPTIONAL = ("INITIALIZER", "EXTRA_RECS", "HEAD_WEIGHTS", "BEYOND_THE_ORIGINAL")
BEYOND_SETTINGS = ("EXTRA_RECS", "HEAD_WEIGHTS")  # not the original's: taken only with BEYOND_THE_ORIGINAL=1
# The script that writes an EXTRA_RECS file of this name, for the message when it is missing.
EXTRA_REC_SCRIPTS = {"test_hash_labelled.rec": "data/create_hash_labelled_rec.sh"}
NOT_EMPTY = ("DATA_DIR", "MODEL_DIR", "MODEL_NAME", "SYMBOL", "DEFAULT_STAGES", "STAGE_1") + STAGE_SETTINGS
MACHINE_FLAGS = (("KV_STORE", "--kv-store"), ("DTYPE", "--dtype"), ("DATA_NTHREADS", "--data-nthreads"),
                 ("RGB_MEAN", "--rgb-mean"), ("RGB_SCALE", "--rgb-scale"),
                 ("TOP_K", "--top-k"), ("DISP_BATCHES", "--disp-batches"), ("SEED", "--seed"))
# What the run reads from the environment beside the header (the README and docs/ name each).
RUN_ENVIRONMENT = ("STAGES", "LOAD_EPOCH", "DRY_RUN", "FORCE", "BN_GROUPS", "NUM_WORKERS", "NUM_SERVERS", "LAUNCHER",
                   "HOSTFILE", "MXNET_CUDNN_AUTOTUNE_DEFAULT") + tuple(name for name, _ in MACHINE_FLAGS)
# The flag of each recipe setting, in the command's order.
RECIPE_FLAGS = tuple((name, "--" + name.lower().replace("_", "-")) for name in STAGE_SETTINGS if name != "DATASET")

SETTING_WORD = re.compile(r"[A-Z_0-9]+=[^=]+")
NUMBER = re.compile(r"[0-9]+")
BLANKS = re.compile(r"[ \t\n]+")  # the shell's word separators in the header's strings
SHELL_SAFE = re.compile(r"[A-Za-z0-9_./:,=+@%-]+")  # words printed without quotes


@dataclass(frozen=True)
class Stage:
    """STAGE_n of the header: checkpoints `start` -> `end`, the settings it changes."""
    number: int
    start: int
    end: int
    weights_epoch: Optional[int] = None  # WEIGHTS_EPOCH: another checkpoint's weights, numbered as `start`
    changes: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Header:
    """The model script's settings (the environment it exported) and its stages."""
    values: dict
    stages: tuple

    def __getitem__(self, name):
        return self.values[name]

    @property
    def prefix(self):
        return f"{self['MODEL_DIR']}/{self['MODEL_NAME']}/{self['MODEL_NAME']}"

    def checkpoint(self, epoch):
        return f"{self.prefix}-{epoch:04d}.params"

    def setting(self, stage, name):
        """The value of a recipe setting in `stage`: its change, or the header's."""
        return stage.changes.get(name, self.values[name])

    @property
    def extra_recs(self):
        """The EXTRA_RECS files, each under DATA_DIR unless absolute."""
        return [rec if os.path.isabs(rec) else f"{self['DATA_DIR']}/{rec}" for rec in words_of(self["EXTRA_RECS"])]


@dataclass
class PlannedStage:
    """A selected stage as this run trains it: checkpoint `load` -> `end` (equal: nothing to train)."""
    stage: Stage
    load: int
    end: int
    note: str = ""  # why it differs from the stage as recorded

    @property
    def trains(self):
        return self.end > self.load

    @property
    def starts_fresh_optimizer(self):
        """Whether it resumes where the stage was recorded to start: a new optimizer there, as every
        logged restart of the original (a LOAD_EPOCH inside the stage restores the saved state)."""
        return 0 < self.load == self.stage.start

    @property
    def weights(self):
        """The checkpoint whose weights it starts from: WEIGHTS_EPOCH when it starts where the stage
        starts (the original resumed M08's NADAM runs from epoch 15's weights numbered as 18); a
        LOAD_EPOCH inside the stage resumes that checkpoint's own weights."""
        if self.stage.weights_epoch is not None and self.load == self.stage.start:
            return self.stage.weights_epoch
        return self.load


# ---- the header -----------------------------------------------------------------------------------
def words_of(text):
    """The words of a header string, split where the shell splits them."""
    text = text.strip(" \t\n")
    return BLANKS.split(text) if text else []


def check_header(env):
    """The header's settings; a missing one is an error."""
    for name in MAY_BE_EMPTY:
        if name not in env:
            raise UserError(f"{name} is not set: the model script's header must set it (it may be empty)")
    for name in NOT_EMPTY:
        if not env.get(name):
            raise UserError(f"{name} is not set: the model script's header must set it")
    values = {name: env[name] for name in MAY_BE_EMPTY + NOT_EMPTY}
    values.update((name, env.get(name, "")) for name in OPTIONAL)
    # The header is exported from the environment, so an exported EXTRA_RECS or HEAD_WEIGHTS would reach
    # the original's scripts too: only a script that declares itself not the original's takes them.
    beyond = [name for name in BEYOND_SETTINGS if values[name]]
    if beyond and values["BEYOND_THE_ORIGINAL"] != "1":
        raise UserError(f"{beyond[0]} is set, but {values['MODEL_NAME']} is not one of train/beyond/'s scripts "
                        "(their headers set BEYOND_THE_ORIGINAL=1): unset it, or run the train/beyond/ script")
    return values


def parse_load_epoch(text):
    """LOAD_EPOCH: a checkpoint number (unset or empty: 0, the stages as planned)."""
    text = text or "0"
    if not NUMBER.fullmatch(text):
        raise UserError(f"LOAD_EPOCH={text}: expected a checkpoint number")
    return int(text)


def parse_stage(number, text):
    """STAGE_n's words, checked: KEY=VALUE, KEY a recipe setting or START/END/WEIGHTS_EPOCH."""
    name = f"STAGE_{number}"
    values = {}
    for word in words_of(text):
        if not SETTING_WORD.fullmatch(word):
            raise UserError(f"{name}: '{word}' is not SETTING=value")
        key, value = word.split("=", 1)
        if key not in EPOCH_KEYS + STAGE_SETTINGS:
            raise UserError(f"{name}: {key} is not a setting a stage can change ({' '.join(STAGE_SETTINGS)})")
        if key in values:  # one value a stage: a second one would be ambiguous
            raise UserError(f"{name}: {key} is given twice")
        values[key] = value
    start, end = values.pop("START_EPOCH", ""), values.pop("END_EPOCH", "")
    if not (NUMBER.fullmatch(start) and NUMBER.fullmatch(end)):
        raise UserError(f"{name}: needs START_EPOCH=a END_EPOCH=b")
    if int(end) < int(start):
        raise UserError(f"{name}: END_EPOCH {end} is before START_EPOCH {start}")
    weights = values.pop("WEIGHTS_EPOCH", None)
    if weights is not None and not NUMBER.fullmatch(weights):
        raise UserError(f"{name}: WEIGHTS_EPOCH={weights}: expected a checkpoint number")
    return Stage(number, int(start), int(end), None if weights is None else int(weights), values)


def parse_stages(env):
    """STAGE_1, STAGE_2, ... up to the first one not set; all checked now, so that a typo fails before
    any training."""
    stages, number = [], 1
    while f"STAGE_{number}" in env:
        stages.append(parse_stage(number, env[f"STAGE_{number}"]))
        number += 1
    return tuple(stages)


def read_header(env):
    """The header of the environment, checked (the LOAD_EPOCH too, before the stages, as always)."""
    values = check_header(env)
    load_epoch = parse_load_epoch(env.get("LOAD_EPOCH"))
    return Header(values, parse_stages(env)), load_epoch


# ---- the plan -------------------------------------------------------------------------------------
def select_stages(header, spec):
    """The stages STAGES names ("1 3", "1,3", all, default or empty: DEFAULT_STAGES), in its order."""
    count = len(header.stages)
    spec = spec or "default"
    if spec == "default":
        spec = header["DEFAULT_STAGES"]
    elif spec == "all":
        spec = " ".join(str(n) for n in range(1, count + 1))
    selected = []
    for word in words_of(spec.replace(",", " ")):
        if not (NUMBER.fullmatch(word) and 1 <= int(word) <= count):
            raise UserError(f"STAGES: no stage '{word}' in {header['MODEL_NAME']} (stages 1-{count}, all or default)")
        selected.append(header.stages[int(word) - 1])
    if not selected:
        raise UserError("STAGES: no stage named")
    return selected


def make_plan(selected, load_epoch=0):
    """The run: each selected stage, stopped where the next one resumes inside it; from LOAD_EPOCH."""
    plan = []
    for i, stage in enumerate(selected):
        planned = PlannedStage(stage, stage.start, stage.end)
        if stage.end == stage.start:
            planned.note = "the record has no complete epoch: nothing to train"
        elif i + 1 < len(selected) and stage.start < selected[i + 1].start < stage.end:
            following = selected[i + 1]
            planned.note = (f"recorded to {stage.end}; stops at {following.start}, "
                            f"where stage {following.number} resumes")
            planned.end = following.start
        plan.append(planned)
    if load_epoch > 0:
        resume_from(plan, load_epoch)
    return plan


def resume_from(plan, epoch):
    """Start at the first stage that trains past checkpoint `epoch`, from it; the stages before it are
    not run."""
    ranges = ""
    for planned in plan:
        if planned.load <= epoch < planned.end:
            planned.load, planned.note = epoch, f"LOAD_EPOCH={epoch}"
            return
        ranges += f" {planned.stage.number}:{planned.load}-{planned.end}"
        planned.end, planned.note = planned.load, f"before LOAD_EPOCH={epoch}: not run"
    raise UserError(f"LOAD_EPOCH={epoch}: no stage to run trains past checkpoint {epoch} (stage:from-to{ranges})")


# ---- what the run needs ---------------------------------------------------------------------------
def weights_hint(header):
    """Where the starting weights come from: a URL (and the zoo import where the zoo has them), or the
    script that makes them."""
    source = header["PRETRAINED_SOURCE"]
    if not source.startswith("http"):
        return source or "see PARAMS in the model script"
    command = import_command(header["SYMBOL"])
    if command is None:
        return f"download them from {source} (the gluoncv2 zoo has no weights for this network)"
    return f"download them from {source}, or make them from the gluoncv2 zoo: {command}"


def missing_inputs(header, plan, is_file=os.path.isfile):
    """What the run needs that is neither on disk nor written by an earlier stage of the run, one
    message each."""
    missing, seen = [], set()
    symbol = header["SYMBOL"]
    if symbol.endswith(".json") and not is_file(symbol):
        missing.append(f"{symbol} not found: the network of the starting weights; {weights_hint(header)}")
    for i, planned in enumerate(plan):
        if not planned.trains:
            continue
        dataset = header.setting(planned.stage, "DATASET")
        for part in ("train", "valid"):
            if (dataset, part) in seen:
                continue
            seen.add((dataset, part))
            rec = f"{header['DATA_DIR']}/{dataset}/{part}.rec"
            if not is_file(rec):
                missing.append(f"{rec} not found: run data/create_{dataset}.sh first")
        for rec in header.extra_recs:
            if rec not in seen and not is_file(rec):
                script = EXTRA_REC_SCRIPTS.get(os.path.basename(rec))
                missing.append(f"{rec} not found: " + (f"run {script} first" if script else
                                                       "an extra training .rec of the header's EXTRA_RECS"))
            seen.add(rec)
        if planned.load == 0:
            params = header["PARAMS"]
            if params and not is_file(params):
                missing.append(f"{params} not found: the starting weights; {weights_hint(header)}")
            continue
        weights = planned.weights
        made_by_the_run = any(before.load < weights <= before.end for before in plan[:i])
        if not made_by_the_run and not is_file(header.checkpoint(weights)):
            missing.append(f"{header.checkpoint(weights)} not found: stage {planned.stage.number} resumes from it; "
                           "run the stages before it (STAGES, LOAD_EPOCH)")
    return missing


def earlier_run(header, plan, force):
    """The refusal, or None: a run whose first stage starts from the starting weights onto an earlier
    run's checkpoints would train over a finished model (FORCE=1 allows it; LOAD_EPOCH resumes)."""
    first = next((planned for planned in plan if planned.trains), None)
    if force or first is None or first.load != 0:
        return None
    prefix = header.prefix
    if glob.glob(glob.escape(prefix) + "-[0-9][0-9][0-9][0-9].params") or os.path.exists(f"{prefix}-metrics.csv"):
        return (f"{prefix}: an earlier run's checkpoints are there; resume with LOAD_EPOCH=N, set MODEL_DIR "
                "elsewhere, or FORCE=1 to train over them")
    return None


# ---- the commands ---------------------------------------------------------------------------------
def launch_words(header, env):
    """Under train/launch_dist.sh (NUM_WORKERS set): train.launch runs the command on every worker."""
    workers = env.get("NUM_WORKERS")
    if not workers:
        return []
    words = ["python", "-m", "train.launch", "-n", workers, "-s", env.get("NUM_SERVERS") or workers,
             "--launcher", env.get("LAUNCHER") or "ssh"]
    if env.get("HOSTFILE"):
        words += ["-H", env["HOSTFILE"]]
    return words + ["--log-dir", f"{os.path.dirname(header.prefix)}/launch_logs", "--"]


def stage_command(header, planned, env, force=False):
    """The command of a planned stage: the header's settings with the stage's changes."""
    stage, load = planned.stage, planned.load
    command = launch_words(header, env) + ["python", "-m", "train.train_model", "--symbol", header["SYMBOL"]]
    command += words_of(header["NETWORK_ARGS"])
    if load == 0 and header["PARAMS"]:
        command += ["--params", header["PARAMS"]]
    if planned.weights != load:
        command += ["--params", header.checkpoint(planned.weights)]
    if header["FEATURE_LAYER"]:
        command += ["--feature-layer", header["FEATURE_LAYER"]]
    if header["INITIALIZER"]:
        command += ["--initializer", header["INITIALIZER"]]
    if header["HEAD_WEIGHTS"]:
        command += ["--level-heads", "--head-weights", header["HEAD_WEIGHTS"]]
    if force and load == 0:
        command.append("--force")
    command += ["--gpus", header["GPUS"]]
    if env.get("BN_GROUPS"):
        command += ["--bn-groups", env["BN_GROUPS"]]
    dataset = header.setting(stage, "DATASET")
    command += ["--data-train", f"{header['DATA_DIR']}/{dataset}/train.rec",
                "--data-val", f"{header['DATA_DIR']}/{dataset}/valid.rec"]
    if header.extra_recs:
        command += ["--data-train-extra", *header.extra_recs]
    command += ["--model-prefix", header.prefix, "--load-epoch", str(load), "--num-epochs", str(planned.end)]
    if planned.starts_fresh_optimizer:
        command.append("--fresh-optimizer")
    for name, flag in RECIPE_FLAGS:
        command += [flag, header.setting(stage, name)]
    for name, flag in MACHINE_FLAGS:  # only those set: train.train_model's defaults otherwise
        if env.get(name):
            command += [flag, env[name]]
    return command


def shell_words(words):
    """The words as one line a shell reads back, quoted only where needed."""
    return " ".join(word if SHELL_SAFE.fullmatch(word) else "'" + word.replace("'", "'\\''") + "'"
                    for word in words)


def stage_line(header, planned):
    """A comment line saying what a planned stage does."""
    if not planned.trains:
        what = "skipped"
    else:
        load, end = planned.load, planned.end
        what = f"epoch {end}" if end == load + 1 else f"epochs {load + 1}-{end}"
        if load == 0:
            what += " from the starting weights"
        elif planned.weights != load:
            what += f" from checkpoint {planned.weights}'s weights, numbered from {load}"
        else:
            what += f" from checkpoint {load}"
    note = f" ({planned.note})" if planned.note else ""
    return f"# {header['MODEL_NAME']} stage {planned.stage.number}: {what}{note}"


def prefixed(prefix, messages):
    return [prefix + line for message in messages for line in message.split("\n")]


def dry_run_lines(header, plan, env, force, missing, refused):
    """What DRY_RUN=1 prints: what is missing or refused, then each stage's line and command."""
    lines = prefixed("# missing: ", missing) + prefixed("# refused: ", [refused] if refused else [])
    for planned in plan:
        lines.append(stage_line(header, planned))
        if planned.trains:
            lines.append(shell_words(stage_command(header, planned, env, force)))
    return lines


# ---- running --------------------------------------------------------------------------------------
def run_logged(command, log_path, env):
    """Run `command` with its output (stderr too) on stdout and appended to `log_path`, as `tee -a`;
    the shell's exit status of the command."""
    if command[0] == "python":  # the Python running this, which is the one `python` names here
        command = [sys.executable] + command[1:]
    with open(log_path, "ab") as log, \
            subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                             preexec_fn=set_parent_death_signal) as child:
        for chunk in iter(lambda: os.read(child.stdout.fileno(), 1 << 16), b""):
            sys.stdout.buffer.write(chunk)
            sys.stdout.flush()
            log.write(chunk)
            log.flush()
    return child.returncode if child.returncode >= 0 else 128 - child.returncode


def log_line(line, log_path):
    print(line, flush=True)
    with open(log_path, "a") as log:
        log.write(line + "\n")


def run_stages(header, plan, env, force):
    """Train each planned stage in turn; a failed stage ends the run with its exit status."""
    if header["GPUS"]:
        if subprocess.run([sys.executable, "-m", "train.devices", "--gpus", header["GPUS"]]).returncode != 0:
            return 2
    os.makedirs(os.path.dirname(header.prefix), exist_ok=True)
    child_env = dict(env)
    child_env["MXNET_CUDNN_AUTOTUNE_DEFAULT"] = env.get("MXNET_CUDNN_AUTOTUNE_DEFAULT") or "0"  # autotune can hang
    log_path = f"{header.prefix}-train.log"
    for planned in plan:
        log_line(stage_line(header, planned), log_path)
        if not planned.trains:
            continue
        command = stage_command(header, planned, env, force)
        log_line(shell_words(command), log_path)
        status = run_logged(command, log_path, child_env)
        if status != 0:
            return status
    return 0


def build_parser():
    return argparse.ArgumentParser(prog="python -m train.stages (train/run_model.sh)", description=__doc__,
                                   formatter_class=HelpFormatter)


def main(argv=None, env=None):
    build_parser().parse_args(argv)
    env = os.environ if env is None else env
    header, load_epoch = read_header(env)
    plan = make_plan(select_stages(header, env.get("STAGES")), load_epoch)
    force = env.get("FORCE") == "1"
    missing, refused = missing_inputs(header, plan), earlier_run(header, plan, force)
    if env.get("DRY_RUN") == "1":
        for line in dry_run_lines(header, plan, env, force, missing, refused):
            print(line)
        return 0
    if missing or refused:  # every problem at once, before any work
        for line in prefixed("error: ", missing + ([refused] if refused else [])):
            print(line, file=sys.stderr)
        return 2
    return run_stages(header, plan, env, force)


if __name__ == "__main__":
    run_cli(main)
