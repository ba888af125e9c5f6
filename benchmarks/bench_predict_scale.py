"""Prediction at Kaggle's test counts: 1,768,182 products, 3,095,080 pictures, 5,270 classes.

The other prediction benchmarks run a few thousand pictures, where the hashing pre-pass, the repeat
cache, the per-process memory and the probability store never meet the real test set's size. This one
generates, once, a test BSON (no category_id) with Kaggle's test counts and caches it beside
benchmarks.bench_scale's training BSON of the same scale (which it generates if missing), built from
the same tiny distinct JPEGs:

  pictures per product: train.bson's proportions rescaled to the test's totals (Kaggle publishes the
    test's totals, not its split by picture count: benchmarks.kaggle_counts.kaggle_test_picture_counts);
  42.4% of the pictures are byte copies of a picture of the training BSON, so the MD5 dictionary built
    from it (data.bson_md5_dict, made once) answers them; 37.2% of the rest (21.4% of all) repeat an
    earlier test picture, drawn uniformly among the earlier new ones, so that most repeats are far from
    their first occurrence; the rest are new (benchmarks.kaggle_counts has the sources of both shares).

Then it runs `predict.predict` over the whole file as a user would (its own process) with --models
randomly initialised networks of 5,270 classes at a small input (densenet-41 at 32x32: the pipeline is
measured, not the networks), the MD5 dictionary, flip TTA and --save-probs, and `predict.ensemble` on the
store. Each process and its children are polled every 0.5 s (/proc: VmHWM, RssAnon, RssFile, CPU time):
per process (predictor, reader, each worker; ensemble) its wall time, CPU time and peak memory. It reports
the forward passes made against the unique pictures, the store's size, and the pure forward rate of the
same networks (benchmarks.bench_predict.forward_speed, in a child, before and after the run) for the
end-to-end / forward ratio.

With the repeats' means in memory (predict.predict --reuse-cache-mb, up to b91d087) the cache is sized as
the default 1 GB holds at 14 models (1024 MB x models / 14, times --scale so that it holds the same share
of a smaller file), so the passes per model are those of the original's ensemble; with them on disk
(--repeat-spill-gb, after b91d087) predict.predict's defaults are used. Every figure is then extrapolated to Kaggle's counts (from the two largest --scale values when
two are given) and to 14 models, and to 8 GPUs from the original's logged training speeds; the formulas
are in extrapolation_rows and docs/benchmarks.md.

Run from the repository root:  python -m benchmarks.bench_predict_scale [--scale 0.01 0.25] [--markdown OUT]
"""
import argparse
import dataclasses
import json
import logging
import os
import re
import shutil
import statistics
import subprocess
import sys
import time

import numpy as np
from tqdm import tqdm

from benchmarks.bench_scale import (DEFAULT_WORK_DIR, PREDICT_NETWORK, PREDICT_SIZE, REPO_ROOT, ensure_bson,
                                    in_child, picture_counts, scaled_counts, write_documents)
from benchmarks.kaggle_counts import ANSWERED_SHARE, REPEAT_SHARE, kaggle_test_picture_counts
from benchmarks.report import print_tables
from cli.reporting import Timer
from predict.engine import CPU_ENGINE_THREADS, ENGINE_THREADS_VAR

log = logging.getLogger("bench_predict_scale")

ORIGINAL_MODELS = 14
DEFAULT_CACHE_MB = 1024  # predict.predict --reuse-cache-mb's default
FIRST_NEW_NUMBER = 1 << 40  # picture counters of the test's own pictures: never a training picture's number
VIEWS = 2  # flip TTA (--multi-view 1)
BATCH_SIZE = 128  # predict.predict's default
POLL_SECONDS = 0.5
# The original's training speed per model on 8 GPUs (images/s), as docs/real-data.md reads its logs; its logs
# record no prediction speed, so a forward pass is taken as a third of a training step (docs/real-data.md).
ORIGINAL_TRAINING_RATES = {"M01": 589, "M02": 273, "M03": 273, "M04": 552, "M05": 380, "M06": 533, "M07": 338,
                           "M08": 276, "M09": 338, "M10": 635, "M11": 278, "M12": 273, "M13": 269, "M14": 246}
FORWARD_PER_TRAINING_STEP = 3
MXNET_DEFAULT_THREADS = 1  # MXNET_CPU_WORKER_NTHREADS unset: the reference of the runs before predict.engine
MEMORY_TARGET_GB = 1.5  # issue 23: every prediction process, at Kaggle's test counts, whatever the number of models
ANSWERED, REPEAT, NEW = 0, 1, 2  # kinds of test picture


# ---- the test set ------------------------------------------------------------------------------------------
def test_picture_numbers(num_pictures, train_pictures, seed):
    """(picture counter of each test picture in file order, its kind): ANSWERED a training picture's number
    (uniform over the training BSON: same bytes, so the dictionary answers it), REPEAT an earlier NEW
    picture's number (uniform over the new pictures before it), NEW a number of its own."""
    rng = np.random.default_rng(seed + 2)
    draw = rng.random(num_pictures)
    kinds = np.where(draw < ANSWERED_SHARE, ANSWERED, np.where(draw < ANSWERED_SHARE + REPEAT_SHARE, REPEAT, NEW))
    unanswered = np.flatnonzero(kinds != ANSWERED)
    if len(unanswered):
        kinds[unanswered[0]] = NEW  # the first unanswered picture has nothing to repeat
    kinds = kinds.astype(np.int8)
    new = kinds == NEW
    new_before = np.cumsum(new) - new
    numbers = np.empty(num_pictures, dtype=np.uint64)
    numbers[new] = FIRST_NEW_NUMBER + np.arange(int(new.sum()), dtype=np.uint64)
    repeat = np.flatnonzero(kinds == REPEAT)
    source = (rng.random(len(repeat)) * new_before[repeat]).astype(np.uint64)
    numbers[repeat] = FIRST_NEW_NUMBER + source
    answered = kinds == ANSWERED
    numbers[answered] = rng.integers(0, train_pictures, int(answered.sum())).astype(np.uint64)
    return numbers, kinds


def describe_test_set(counts, numbers, kinds):
    """The generated test set's figures (what the benchmark checks the run against)."""
    unique = np.unique(numbers)
    repeat = np.flatnonzero(kinds == REPEAT)
    first_of = {}
    if len(repeat):  # distance in pictures from a repeat to its picture's first occurrence
        order = np.argsort(numbers, kind="stable")
        first_position = np.empty(len(numbers), dtype=np.int64)
        sorted_numbers = numbers[order]
        starts = np.flatnonzero(np.r_[True, sorted_numbers[1:] != sorted_numbers[:-1]])
        first_position[order] = np.repeat(order[starts], np.diff(np.r_[starts, len(numbers)]))
        distance = repeat - first_position[repeat]
        first_of = {"repeat_distance_median": int(np.median(distance)),
                    "repeat_distance_p10": int(np.percentile(distance, 10))}
    return {"products": int(len(counts)), "pictures": int(len(numbers)),
            "products_by_pictures": {str(k): int((counts == k).sum()) for k in (1, 2, 3, 4)},
            "answered": int((kinds == ANSWERED).sum()), "repeats": int(len(repeat)),
            "new": int((kinds == NEW).sum()), "unique_pictures": int(len(unique)),
            "unique_unanswered": int(len(np.unique(numbers[kinds != ANSWERED]))), **first_of}


def generate_test(bson_path, scale, picture_bytes, train_pictures, seed):
    """Write the test BSON of this scale and its description (BSON.json); run in a child process."""
    counts = picture_counts(scale, seed, kaggle_test_picture_counts())
    numbers, kinds = test_picture_numbers(int(counts.sum()), train_pictures, seed)
    product_ids = np.cumsum(np.random.default_rng(seed + 3).integers(1, 4, len(counts)))
    write_documents(bson_path, counts, product_ids, None, numbers, picture_bytes)
    with open(bson_path + ".json.tmp", "w") as fh:
        json.dump(describe_test_set(counts, numbers, kinds), fh, indent=1)
    os.replace(bson_path + ".json.tmp", bson_path + ".json")


def ensure_test_set(work_dir, scale, train_scale, picture_bytes, seed):
    """The training BSON of `train_scale` (benchmarks.bench_scale's, cached), its MD5 dictionary, and the test
    BSON of `scale` with its description; each made once. Returns their paths and the description."""
    train_bson, csv_path = ensure_bson(work_dir, train_scale, picture_bytes, None)
    md5_dict = os.path.join(work_dir, f"md5_dict_train_{train_scale:g}_{picture_bytes}b.npz")
    if not os.path.exists(md5_dict):
        log.info("building the MD5 dictionary of %s", train_bson)
        subprocess.run([sys.executable, "-m", "data.bson_md5_dict", "--bson", train_bson, "--out", md5_dict],
                       check=True, cwd=REPO_ROOT)
    out_dir = os.path.join(work_dir, f"predict_scale_{scale:g}_train_{train_scale:g}_{picture_bytes}b_seed{seed}")
    os.makedirs(out_dir, exist_ok=True)
    test_bson = os.path.join(out_dir, "test.bson")
    if not os.path.exists(test_bson + ".json"):
        train_pictures = sum(k * n for k, n in scaled_counts(train_scale).items())
        log.info("generating %s", test_bson)
        in_child(f"generate_test({test_bson!r}, {scale!r}, {picture_bytes!r}, {train_pictures!r}, {seed!r})",
                 "benchmarks.bench_predict_scale")
    with open(test_bson + ".json") as fh:
        return {"train_bson": train_bson, "csv": csv_path, "md5_dict": md5_dict, "test_bson": test_bson,
                "out_dir": out_dir}, json.load(fh)


def make_models(work_dir, num_models, num_classes):
    """Randomly initialised checkpoints (bench_predict's), made in a child: this process never loads MXNet."""
    names = [f"model{m}-{PREDICT_NETWORK}-{PREDICT_SIZE}-{num_classes}" for m in range(num_models)]
    prefixes = [os.path.join(work_dir, name) for name in names]
    for name, prefix in zip(names, prefixes):
        if not os.path.exists(f"{prefix}-0001.params"):
            in_child(f"make_checkpoint({work_dir!r}, {PREDICT_NETWORK!r}, {PREDICT_SIZE}, {num_classes}, {name!r})",
                     "benchmarks.bench_predict")
    return [(f"{prefix}-symbol.json", f"{prefix}-0001.params") for prefix in prefixes]


# ---- watching processes ----------------------------------------------------------------------------------
@dataclasses.dataclass
class ProcessFigures:
    name: str
    first_seen: float
    last_seen: float = 0.0
    cpu_s: float = 0.0
    main_cpu_s: float = 0.0  # of its main thread alone (predict.predict's: the Python; MXNet's threads are the rest)
    peak_rss: int = 0   # VmHWM, bytes
    peak_anon: int = 0  # the largest RssAnon polled
    peak_file: int = 0  # the largest RssFile polled (mapped files: the store's memory maps)

    @property
    def wall_s(self):
        return self.last_seen - self.first_seen


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def read_stat(pid, thread=None):
    """(parent pid, CPU seconds) of a process, or of its `thread` (a thread id; the main thread's is the pid),
    or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat" if thread is None else f"/proc/{pid}/task/{thread}/stat") as fh:
            fields = fh.read().rpartition(")")[2].split()
    except OSError:
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def read_memory(pid):
    """{VmHWM, RssAnon, RssFile: bytes} of a process ({} once it is gone)."""
    memory = {}
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key in ("VmHWM", "RssAnon", "RssFile"):
                    memory[key] = int(value.split()[0]) * 1024
    except OSError:
        return {}
    return memory


def process_name(pid, root_name):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            argv = fh.read().decode(errors="replace").split("\0")
    except OSError:
        return None
    if "predict.pipeline_worker" in argv and "--name" in argv:
        return argv[argv.index("--name") + 1]
    return os.path.basename(argv[0]) if argv and argv[0] else None


def descendants(root):
    """The pids under `root` (not itself), from every process's parent pid."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = read_stat(int(entry))
            if stat is not None:
                children.setdefault(stat[0], []).append(int(entry))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def engine_env(threads):
    """The environment with MXNet's CPU operator threads set (MXNET_CPU_WORKER_NTHREADS, predict.engine)."""
    return dict(os.environ, **{ENGINE_THREADS_VAR: str(threads)})


def watch(argv, root_name, log_path, env=None):
    """Run `argv` from the repository root, its output to `log_path`; poll it and its children every
    POLL_SECONDS. Returns (wall seconds, [ProcessFigures], the peak RSS wait4 reports for the root)."""
    figures = {}
    started = time.monotonic()
    with open(log_path, "ab") as log_file:
        log_file.write(f"$ {' '.join(argv)}\n".encode())
        log_file.flush()
        process = subprocess.Popen(argv, cwd=REPO_ROOT, stdout=log_file, stderr=subprocess.STDOUT, env=env)
        while True:
            now = time.monotonic()
            for pid in [process.pid] + descendants(process.pid):
                stat, memory = read_stat(pid), read_memory(pid)
                if stat is None or not memory:
                    continue
                key = (pid, root_name if pid == process.pid else process_name(pid, root_name))
                item = figures.setdefault(key, ProcessFigures(key[1] or str(pid), now))
                item.last_seen, item.cpu_s = now, stat[1]
                main = read_stat(pid, thread=pid)
                item.main_cpu_s = main[1] if main is not None else item.main_cpu_s
                item.peak_rss = max(item.peak_rss, memory.get("VmHWM", 0))
                item.peak_anon = max(item.peak_anon, memory.get("RssAnon", 0))
                item.peak_file = max(item.peak_file, memory.get("RssFile", 0))
            done_pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if done_pid:
                process.returncode = os.waitstatus_to_exitcode(status)
                break
            time.sleep(POLL_SECONDS)
    wall = time.monotonic() - started
    if process.returncode != 0:
        with open(log_path, errors="replace") as fh:
            tail = fh.read()[-3000:]
        raise SystemExit(f"{' '.join(argv)} failed:\n{tail}")
    root = next(item for (pid, _), item in figures.items() if pid == process.pid)
    root.last_seen = started + wall
    root.peak_rss = max(root.peak_rss, usage.ru_maxrss * 1024)
    return wall, sorted(figures.values(), key=lambda item: item.first_seen)


# ---- the runs ------------------------------------------------------------------------------------------------
def has_memory_cache():
    """Whether predict.predict keeps repeated pictures' means in memory (--reuse-cache-mb, up to b91d087) rather
    than on disk (--repeat-spill-gb, after it): read from its --help, in a child (MXNet stays out of here)."""
    done = subprocess.run([sys.executable, "-m", "predict.predict", "--help"], cwd=REPO_ROOT, capture_output=True,
                          text=True, check=True)
    return "--repeat-spill-gb" not in done.stdout


def cache_mb(scale, num_models):
    """--reuse-cache-mb that holds as many pictures as the default 1 GB at 14 models, for this share of the
    file (at least 1 MB)."""
    return max(1, round(DEFAULT_CACHE_MB * num_models / ORIGINAL_MODELS * scale))


def cache_entries(megabytes, num_models, num_classes):
    """Pictures a cache of `megabytes` holds (predict.predict's own count, without --save-features)."""
    return megabytes * 2 ** 20 // (4 * num_models * num_classes)


def predict_argv(paths, models, store, output, reuse_cache_mb, num_workers):
    return [sys.executable, "-m", "predict.predict", "--bson", paths["test_bson"], "--csv", paths["csv"],
            "--symbol", *(s for s, _ in models), "--params", *(p for _, p in models),
            "--image-shape", f"3,{PREDICT_SIZE},{PREDICT_SIZE}", "--resize", str(PREDICT_SIZE),
            "--batch-size", str(BATCH_SIZE), "--num-procs", str(num_workers), "--multi-view", "1",
            "--ensembles", *map(str, range(1, len(models) + 1)), "--md5-dict", paths["md5_dict"],
            "--md5-dict-type", "unique", "--save-probs", store,
            *(["--reuse-cache-mb", str(reuse_cache_mb)] if reuse_cache_mb else []), "--output", output, "--force"]


def ensemble_argv(paths, num_models, store, output):
    return [sys.executable, "-m", "predict.ensemble", "--probs", store, "--csv", paths["csv"],
            "--md5-dict", paths["md5_dict"], "--md5-dict-type", "unique",
            "--ensembles", *map(str, range(1, num_models + 1)), "--output", output, "--force"]


def clock_seconds(text):
    """Seconds of tqdm's [H:]MM:SS."""
    seconds = 0
    for part in text.split(":"):
        seconds = 60 * seconds + int(part)
    return seconds


def parse_predict_log(text):
    """The figures predict.predict logs: run seconds, forward share, forwarded/answered/reused pictures, the
    repeats the cache could not hold, and the hashing pass's seconds (its progress bar's last reading)."""
    found = {}
    run = re.search(r"predicted (\d+) products, (\d+) images .* in ([\d.]+) s: [\d.]+ images/s, forward (\d+)%", text)
    counts = re.search(r"forwarded (\d+) of (\d+) images \((\d+) answered by the MD5 dictionary, (\d+) repeats\)",
                       text)
    if not run or not counts:
        raise SystemExit("predict.predict's log lacks its summary lines (its wording changed?)")
    found.update(products=int(run[1]), pictures=int(run[2]), run_s=float(run[3]), forward_share=int(run[4]) / 100,
                 forwarded=int(counts[1]), answered=int(counts[3]), reused=int(counts[4]))
    not_fitting = re.search(r"(\d+) of (\d+) repeated pictures do not fit", text)
    repeated = re.search(r"(\d+) pictures? repeated: at most (\d+) live at once", text)  # the on-disk spill's
    found["repeated_groups"] = int(not_fitting[2]) if not_fitting else int(repeated[1]) if repeated else None
    found["groups_not_cached"] = int(not_fitting[1]) if not_fitting else 0
    found["spill_peak_rows"] = int(repeated[2]) if repeated else None
    # its progress bar's last reading: "... 100%|...| N/N [MM:SS<00:00, R img/s]"; N / R is finer than MM:SS
    hashing = re.findall(r"md5 of the run's pictures: 100%[^\r\n]*?(\d+)/\d+ \[([\d:]+)<[^,\]]*, ([\d.e+]+)img/s",
                         text)
    if hashing:
        total, clock, rate = hashing[-1]
        found["hash_s"] = int(total) / float(rate) if float(rate) > 0 else clock_seconds(clock)
    else:
        found["hash_s"] = None
    return found


def forward_rates(models, num_classes, batches, repeats):
    """Views/s of each model alone (bench_predict.forward_speed, batch BATCH_SIZE), `repeats` times each, measured
    in a child (MXNet stays out of this process)."""
    calls = ", ".join(f"forward_speed({s!r}, {p!r}, {PREDICT_SIZE}, {BATCH_SIZE}, {batches}, {num_classes})"
                      for s, p in models)
    code = ("import json, logging; logging.disable(logging.WARNING); from benchmarks.bench_predict import "
            f"forward_speed; print(json.dumps([[{calls}] for _ in range({repeats})]))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def forward_rate_together(models, num_classes, batches, repeats, engine_threads=MXNET_DEFAULT_THREADS):
    """Views/s through all the models at once, their passes overlapped as in a run
    (bench_predict.forward_speed_together, batch BATCH_SIZE), `repeats` times, in a child whose MXNet runs
    `engine_threads` CPU operators at once."""
    call = f"forward_speed_together({[tuple(m) for m in models]!r}, {PREDICT_SIZE}, {BATCH_SIZE}, {batches}, {num_classes})"
    code = ("import json, logging; logging.disable(logging.WARNING); from benchmarks.bench_predict import "
            f"forward_speed_together; print(json.dumps([{call} for _ in range({repeats})]))")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True,
                          env=engine_env(engine_threads))
    return json.loads(done.stdout.strip().splitlines()[-1])


def ensemble_views_per_s(rates):
    """Views/s through every model of the ensemble: each view goes through each model in turn."""
    return 1 / sum(1 / r for r in rates)


def folder_bytes(path):
    return sum(os.path.getsize(os.path.join(root, name)) for root, _, names in os.walk(path) for name in names)


def run_scale(args, scale):
    """Generate (once) and measure one scale; returns its figures."""
    train_scale = args.train_scale or scale
    paths, test_set = ensure_test_set(args.work_dir, scale, train_scale, args.picture_bytes, args.seed)
    with open(paths["csv"], encoding="utf-8") as fh:
        num_classes = sum(1 for _ in fh) - 1
    models = make_models(args.work_dir, args.models, num_classes)
    reuse_mb = cache_mb(scale, args.models) if has_memory_cache() else None  # None: on disk, predict's default
    run_dir = os.path.join(paths["out_dir"], f"run_{args.models}models")
    shutil.rmtree(run_dir, ignore_errors=True)
    os.makedirs(run_dir)
    store = os.path.join(run_dir, "probs")
    log_path = os.path.join(paths["out_dir"], f"log_{args.models}models.txt")  # kept: the commands' own output
    if os.path.exists(log_path):
        os.remove(log_path)
    log.info("scale %g: %s products, %s pictures; %d models, cache %s MB; log %s", scale,
             f"{test_set['products']:,}", f"{test_set['pictures']:,}", args.models, reuse_mb, log_path)

    def references():  # the same networks alone, and together with the run's and with MXNet's default threads
        return (forward_rates(models, num_classes, args.forward_batches, args.repeats),
                forward_rate_together(models, num_classes, args.forward_batches, args.repeats, CPU_ENGINE_THREADS),
                forward_rate_together(models, num_classes, args.forward_batches, args.repeats))

    rates, together, together_default = references()
    load_before = os.getloadavg()[0]
    wall, processes = watch(predict_argv(paths, models, store, os.path.join(run_dir, "predict.csv"), reuse_mb,
                                         args.workers), "predictor (predict.predict)", log_path,
                            engine_env(CPU_ENGINE_THREADS))
    load_after = os.getloadavg()[0]
    # measured after the run as well: a busy neighbour then weighs on both sides alike
    after = references()
    rates, together, together_default = rates + after[0], together + after[1], together_default + after[2]
    with open(log_path, errors="replace") as fh:
        logged = parse_predict_log(fh.read())
    store_bytes = folder_bytes(store)
    ensemble_wall, ensemble_processes = watch(ensemble_argv(paths, args.models, store,
                                                            os.path.join(run_dir, "ensemble.csv")),
                                              "predict.ensemble", log_path)
    per_model = [statistics.median(r[m] for r in rates) for m in range(args.models)]
    figures = {"scale": scale, "train_scale": train_scale, "md5_dict_bytes": os.path.getsize(paths["md5_dict"]),
               "models": args.models, "classes": num_classes, "workers": args.workers,
               "reuse_cache_mb": reuse_mb,
               "cache_entries": cache_entries(reuse_mb, args.models, num_classes) if reuse_mb else None,
               "test_set": test_set, "test_bson_bytes": os.path.getsize(paths["test_bson"]),
               "predict_wall_s": wall, "processes": [dataclasses.asdict(p) | {"wall_s": p.wall_s} for p in processes],
               "ensemble_wall_s": ensemble_wall,
               "ensemble": dataclasses.asdict(ensemble_processes[0]) | {"wall_s": ensemble_processes[0].wall_s},
               "store_bytes": store_bytes, "forward_views_per_s": per_model,
               "forward_together_views_per_s": statistics.median(together), "engine_threads": CPU_ENGINE_THREADS,
               "forward_together_default_views_per_s": statistics.median(together_default),
               "forward_samples": len(rates), "load_average": [load_before, load_after],
               "agreement": output_agreement(run_dir), **logged}
    if not args.keep_outputs:
        shutil.rmtree(run_dir)
    return figures


# ---- the tables --------------------------------------------------------------------------------------------
def gb(n):
    return f"{n / 1e9:.2f} GB"


def derived(f):
    """Figures computed from one run's measurements."""
    # the models' passes overlapped as a run overlaps them; older figures have only each model alone
    ensemble_rate = f.get("forward_together_views_per_s") or ensemble_views_per_s(f["forward_views_per_s"])
    needed = f["test_set"]["unique_pictures"]  # --save-probs: every distinct picture needs its model means
    return {"passes_per_model": f["forwarded"] * VIEWS, "needed_per_model": needed * VIEWS,
            "ensemble_rate": ensemble_rate,
            "end_to_end_rate": f["pictures"] * VIEWS / f["run_s"],  # bench_predict's measure
            "forward_made_s": f["forwarded"] * VIEWS / ensemble_rate,
            "forward_needed_s": needed * VIEWS / ensemble_rate}


def test_set_table(f):
    t = f["test_set"]
    by = ", ".join(f"{k}: {n:,}" for k, n in t["products_by_pictures"].items())
    return "\n".join([
        f"Test BSON at scale {f['scale']:g}: {t['products']:,} products ({by} by pictures), {t['pictures']:,} "
        f"pictures, {f['test_bson_bytes'] / 1e9:.2f} GB; {t['answered']:,} answered by the dictionary of the "
        f"training BSON at scale {f['train_scale']:g} ({f['md5_dict_bytes'] / 1e9:.2f} GB) "
        f"({t['answered'] / t['pictures']:.1%}), {t['repeats']:,} repeats of an earlier test picture "
        f"({t['repeats'] / t['pictures']:.1%}; median distance to the first occurrence "
        f"{t.get('repeat_distance_median', 0):,} pictures, 10th percentile {t.get('repeat_distance_p10', 0):,}), "
        f"{t['unique_pictures']:,} distinct pictures ({t['unique_unanswered']:,} of them unanswered). "
        f"{f['models']} x {PREDICT_NETWORK} at {PREDICT_SIZE}x{PREDICT_SIZE}, {f['classes']:,} classes, flip TTA, "
        f"batch {BATCH_SIZE} views, {f['workers']} worker(s), --save-probs (top 50), {cache_text(f)}. "
        f"Polled every {POLL_SECONDS} s."])


def cache_text(f):
    if not f["reuse_cache_mb"]:
        peak = f.get("spill_peak_rows")
        return ("repeated pictures' means on disk (predict.predict's defaults" +
                ("" if peak is None else f"; at most {peak:,} live at once") + ")")
    return (f"--reuse-cache-mb {f['reuse_cache_mb']} ({f['cache_entries']:,} pictures: the default 1 GB's "
            f"{cache_entries(DEFAULT_CACHE_MB, ORIGINAL_MODELS, f['classes']):,} at {ORIGINAL_MODELS} models"
            f"{'' if f['scale'] == 1 else ', times the scale'})")


def process_table(f):
    d = derived(f)
    per_k = 1000 / f["pictures"]  # CPU per 1,000 pictures: unlike wall time, a busy neighbour leaves it alone
    lines = ["| process | wall | CPU | CPU per 1,000 pictures | peak RSS | peak anonymous | "
             "peak file-backed (memory maps) |", "|---|---:|---:|---:|---:|---:|---:|"]
    e = f["ensemble"]
    for p in f["processes"] + [dict(e, name="predict.ensemble on the store")]:
        lines.append(f"| {p['name']} | {p['wall_s']:.1f} s | {p['cpu_s']:.1f} s | {p['cpu_s'] * per_k:.2f} s | "
                     f"{gb(p['peak_rss'])} | {gb(p['peak_anon'])} | {gb(p['peak_file'])} |")
    hash_s = "n/a" if f["hash_s"] is None else f"{f['hash_s']:.1f} s"
    main = f["processes"][0].get("main_cpu_s")
    if main:
        lines.append(f"| of the predictor: its main thread (reduction, store, messages; MXNet's threads are the rest) "
                     f"| | {main:.1f} s | {main * per_k:.2f} s | | | |")
    lines += [f"| of the predictor: the hashing pre-pass | {hash_s} | | | | | |",
              f"| of the predictor: first product to last (`predict.run`'s seconds) | {f['run_s']:.1f} s | | | | | |"]
    if "load_average" in f:
        lines.append(f"| load average (1 min) at the prediction's start / end, {os.cpu_count()} cores | "
                     f"{f['load_average'][0]:.1f} / {f['load_average'][1]:.1f} | | | | | |")
    groups = f["repeated_groups"]
    cached = "all" if groups is None else f"{groups - f['groups_not_cached']:,} of {groups:,}"
    lines += ["", "| forward passes (per model: pictures x 2 views) | count |", "|---|---:|",
              f"| pictures in the test set | {f['pictures'] * VIEWS:,} |",
              f"| distinct pictures (each needs its means once) | {d['needed_per_model']:,} |",
              f"| made | {d['passes_per_model']:,} "
              f"({d['passes_per_model'] / d['needed_per_model']:.2f}x the distinct) |",
              f"| repeats reused from the cache / repeated pictures the cache took | {f['reused']:,} / {cached} |",
              "", f"Store: {gb(f['store_bytes'])} on disk. Forward rate of the {f['models']} networks together "
              + ("(their passes overlapped as in a run: bench_predict.forward_speed_together, median of "
                 f"{f['forward_samples']} before and after"
                 + (f", MXNet running {f['engine_threads']} CPU operators at once as the run did"
                    if f.get("engine_threads") else "") + "): "
                 if f.get("forward_together_views_per_s") else
                 f"(each alone, in turn: bench_predict's measure, median of {f['forward_samples']} before and "
                 "after): ") +
              f"{d['ensemble_rate']:,.0f} views/s; end to end {d['end_to_end_rate']:,.0f} views/s of the test set "
              f"(pictures x views / run seconds). The passes made would take {d['forward_made_s']:.1f} s of pure "
              f"forward, the distinct pictures' {d['forward_needed_s']:.1f} s: end to end / forward = "
              f"{d['forward_made_s'] / f['run_s']:.2f} of the passes made, {d['forward_needed_s'] / f['run_s']:.2f} "
              f"of the distinct pictures' (target >= 0.9). The predictor logged {f['forward_share']:.0%} of its run "
              f"in forward passes."]
    if f.get("forward_together_default_views_per_s"):
        default_rate = f["forward_together_default_views_per_s"]
        lines[-1] += (f" With MXNet's default of one CPU operator at a time (the reference of the runs before "
                      f"predict.engine) the networks forward {default_rate:,.0f} views/s "
                      f"(with {f['engine_threads']}: {d['ensemble_rate'] / default_rate:.2f}x as many): end to end "
                      f"is {f['forwarded'] * VIEWS / default_rate / f['run_s']:.2f} of that rate.")
    if f.get("agreement"):
        lines += ["", "| output | products the store's ensemble gives the direct run's category |", "|---|---:|"]
        lines += [f"| {tag} | {same:,} of {total:,} ({same / total:.2%}) |" for tag, (same, total) in f["agreement"].items()]
    return "\n".join(lines)


def output_agreement(run_dir):
    """{output: [products with the same category, products]} of the direct run's outputs (predict*.csv) against
    predict.ensemble's from the store (ensemble*.csv), product by product."""
    from predict.submission import read_submission
    found = {}
    for name in sorted(os.listdir(run_dir)):
        if not (name.startswith("predict") and name.endswith(".csv")):
            continue
        direct_ids, direct = read_submission(os.path.join(run_dir, name))
        store_ids, from_store = read_submission(os.path.join(run_dir, "ensemble" + name[len("predict"):]))
        if not np.array_equal(direct_ids, store_ids):
            raise ValueError(f"{name}: the two runs list other products")
        same = int((direct == from_store).sum())
        found[name[len("predict"):-len(".csv")].lstrip(".") or "main (all models, m0)"] = [same, len(direct)]
    return found


def to_full(small, large, key_of):
    """A figure at Kaggle's counts: linear in the pictures through the two runs (one run: proportional)."""
    y_large = key_of(large)
    if small is None:
        return y_large / large["scale"]
    y_small = key_of(small)
    slope = (y_large - y_small) / (large["scale"] - small["scale"])
    return y_large + slope * (1 - large["scale"])


def extrapolation_rows(large, small=None, target_models=ORIGINAL_MODELS):
    """(figure, measured, at Kaggle's counts, at Kaggle's counts and `target_models` models, formula) rows.

    Counts: times, passes and the store grow linearly with the pictures; memory linearly between two scales
    (one scale: memory is not extrapolated in counts). Models (m measured, M target): passes, the store and
    the run after its hashing pass grow as M/m (an upper bound: the reader's and workers' work does not grow
    with models); the predictor's anonymous memory grows by the cache's budget (1 GB at M models against the
    run's) and its file-backed memory (the store's maps) as M/m, where the repeats' means were in memory (the
    later code remaps the store, so neither grows); the reader and workers do not depend on the
    number of models (one shared input); the ensemble's time grows as M/m."""
    m, M, s = large["models"], target_models, large["scale"]
    memory_cache = bool(large["reuse_cache_mb"])  # False: the repeats' means are on disk, whatever M
    grow = M / m
    memory = (lambda key: to_full(small, large, key)) if small is not None else (lambda key: key(large))
    rows = []
    d = derived(large)
    rows.append(("forward passes per model (pictures x views)", d["passes_per_model"],
                 d["passes_per_model"] / s, d["passes_per_model"] / s,
                 "/ scale (the run's cache holds as many pictures as the default 1 GB at 14 models)" if memory_cache
                 else "/ scale (the repeats' means on disk: the same at any M)"))
    full_passes = d["passes_per_model"] / s
    rows.append(("forward passes, all models", d["passes_per_model"] * m, full_passes * m, full_passes * M,
                 "x models"))
    hash_s = large["hash_s"] or 0
    rest_s = large["run_s"] - hash_s  # the run after its hashing pass
    rows.append(("hashing pre-pass (s)", hash_s, hash_s / s, hash_s / s, "/ scale"))
    rows.append(("predictor, first product to last (s)", large["run_s"], large["run_s"] / s,
                 (hash_s + rest_s * grow) / s, "/ scale; after the hashing pass x M/m"))
    rows.append(("store (GB)", large["store_bytes"] / 1e9, large["store_bytes"] / s / 1e9,
                 large["store_bytes"] / s * grow / 1e9, "/ scale x M/m"))
    rows.append(("predict.ensemble (s)", large["ensemble"]["wall_s"], large["ensemble"]["wall_s"] / s,
                 large["ensemble"]["wall_s"] / s * grow, "/ scale x M/m"))
    if not memory_cache and large.get("spill_peak_rows"):
        # a row holds each model's float32 image means (predict.repeat_spill); the rows live at once grow with
        # the pictures, the row with the models
        row_bytes = 4 * large["classes"]
        rows.append(("repeated pictures' file at its peak, on disk (GB)", large["spill_peak_rows"] * row_bytes * m / 1e9,
                     large["spill_peak_rows"] / s * row_bytes * m / 1e9,
                     large["spill_peak_rows"] / s * row_bytes * M / 1e9,
                     f"rows live at once / scale x models x {large['classes']:,} classes x 4 B"))
    # the run's cache budget in the memory figures: grown with the pictures when they are extrapolated
    cache_bytes_run = (large["reuse_cache_mb"] or 0) * 2 ** 20 / (s if small is not None else 1)
    names = list(dict.fromkeys(p["name"] for p in large["processes"])) + ["predict.ensemble"]
    for name in names:
        def figure(f, key, name=name):
            if name == "predict.ensemble":
                return f["ensemble"][key]
            return max(p[key] for p in f["processes"] if p["name"] == name)
        anon, file_backed = memory(lambda f: figure(f, "peak_anon")), memory(lambda f: figure(f, "peak_file"))
        peak = memory(lambda f: figure(f, "peak_rss"))
        if name.startswith("predictor") or name == "predict.ensemble":
            # anonymous: the predictor's grows by the repeat cache's budget (the ensemble's dense chunks are 64 MB
            # whatever M); file-backed: the pages of the store's memory maps, which grow with the store
            in_memory = memory_cache and name.startswith("predictor")
            anon_at_models = anon + (DEFAULT_CACHE_MB * 2 ** 20 - cache_bytes_run if in_memory else 0)
            # the code that keeps the repeats' means on disk also maps the store's files again every
            # prob_store.REMAP_BYTES (64 MB) and readers only while they read: its mapped pages do not grow
            file_grow = grow if memory_cache else 1
            at_models = anon_at_models + file_backed * file_grow
            rows.append((f"{name} peak RSS (GB)", figure(large, "peak_rss") / 1e9, peak / 1e9, at_models / 1e9,
                         "anonymous + file-backed, below"))
            rows.append((f"{name}: anonymous (GB)", figure(large, "peak_anon") / 1e9, anon / 1e9,
                         anon_at_models / 1e9, "+ (1 GB - the run's cache)" if in_memory else "unchanged by models"))
            rows.append((f"{name}: file-backed, the store's maps (GB)", figure(large, "peak_file") / 1e9,
                         file_backed / 1e9, file_backed * file_grow / 1e9,
                         "x M/m" if memory_cache else "unchanged by models (remapped every 64 MB)"))
        else:
            rows.append((f"{name} peak RSS (GB)", figure(large, "peak_rss") / 1e9, peak / 1e9, peak / 1e9,
                         "unchanged by models (one input shared by all)"))
    return rows


def gpu_rows(large):
    """The 14 models' forward passes on the original's 8 GPUs, from its logged training speeds."""
    full_passes = derived(large)["passes_per_model"] / large["scale"]
    forward_hours = sum(full_passes / (FORWARD_PER_TRAINING_STEP * rate) for rate in ORIGINAL_TRAINING_RATES.values())
    needed = large["test_set"]["unique_pictures"] * VIEWS / large["scale"]
    needed_hours = sum(needed / (FORWARD_PER_TRAINING_STEP * rate) for rate in ORIGINAL_TRAINING_RATES.values())
    return forward_hours / 3600, needed_hours / 3600


def main_thread_budget(large, target_models=ORIGINAL_MODELS):
    """(ms of the 14 models' forward passes per test picture on the original's 8 GPUs (gpu_rows, as made), ms of
    the predictor's main thread per test picture at 14 models: the measured figure x 14 / m, as most of its work
    is per model), or None without the main thread's figure (runs before it was measured)."""
    main = large["processes"][0].get("main_cpu_s")
    if not main:
        return None
    pictures = large["pictures"] / large["scale"]
    return gpu_rows(large)[0] * 3600e3 / pictures, main * 1e3 / large["pictures"] * target_models / large["models"]


def extrapolation_table(large, small=None):
    label = f"scale {large['scale']:g}" + ("" if small is None else f" (slope from scale {small['scale']:g})")
    lines = [f"| figure | measured ({label}, {large['models']} models) | Kaggle's counts, {large['models']} models | "
             f"Kaggle's counts, {ORIGINAL_MODELS} models | formula |", "|---|---:|---:|---:|---|"]
    rows = extrapolation_rows(large, small)
    for name, measured, full, target, formula in rows:
        cells = [f"{v:,.2f}" if isinstance(v, float) and v < 100 else f"{v:,.0f}" if v is not None else ""
                 for v in (measured, full, target)]
        lines.append(f"| {name} | {' | '.join(cells)} | {formula} |")
    made, needed = gpu_rows(large)
    memory = [(name, target) for name, _, _, target, _ in rows if name.endswith("peak RSS (GB)")]
    name, largest = max(memory, key=lambda item: item[1])
    d = derived(large)
    ratio_made, ratio_needed = d["forward_made_s"] / large["run_s"], d["forward_needed_s"] / large["run_s"]
    lines += ["", f"- Memory: every prediction process <= {MEMORY_TARGET_GB} GB at Kaggle's counts and "
                  f"{ORIGINAL_MODELS} models: {'PASS' if largest <= MEMORY_TARGET_GB else 'FAIL'} (largest: "
                  f"{name.replace(' peak RSS (GB)', '')}, "
                  f"{largest:.2f} GB).",
              f"- Throughput: end to end >= 0.9 of the pure forward rate (scale {large['scale']:g}): "
              f"{ratio_made:.2f} of the passes made ({'PASS' if ratio_made >= 0.9 else 'FAIL'}), "
              f"{ratio_needed:.2f} of the distinct pictures' ({'PASS' if ratio_needed >= 0.9 else 'FAIL'})."]
    lines += ["", f"On the original's 8 GPUs (its logs record no prediction speed: a forward pass taken as a third "
                  f"of each model's logged training step), the {ORIGINAL_MODELS} models' passes take {made:.1f} h as "
                  f"made, {needed:.1f} h if every distinct picture were forwarded once."]
    budget = main_thread_budget(large)
    if budget is not None:
        gpu_ms, main_ms = budget
        lines[-1] += (f" That is {gpu_ms:.1f} ms per test picture, against {main_ms:.2f} ms of the predictor's main "
                      f"thread at {ORIGINAL_MODELS} models (measured per picture x {ORIGINAL_MODELS}/{large['models']}): "
                      + ("the pipeline keeps up with the GPUs." if main_ms < gpu_ms else
                         "the predictor's main thread would be slower than the GPUs."))
    return "\n".join(lines)


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_predict_scale", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, nargs="+", default=[1.0],
                        help="fractions of Kaggle's test counts, run in order (0.01: about 2 minutes); with two or "
                             "more, memory is extrapolated to full counts through the two largest")
    parser.add_argument("--train-scale", type=float, default=None,
                        help="scale of the training BSON whose MD5 dictionary answers the test pictures (default: "
                             "each --scale; 1: the dictionary of Kaggle's size, 12.4M MD5s, whatever the test's scale)")
    parser.add_argument("--models", type=int, default=2,
                        help="networks in the ensemble, each densenet-41 at 32x32 of 5,270 classes")
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1),
                        help="predict.predict --num-procs")
    parser.add_argument("--work-dir", default=DEFAULT_WORK_DIR,
                        help="where the BSONs are generated and cached (benchmarks.bench_scale's)")
    parser.add_argument("--picture-bytes", type=int, default=770, help="bytes per generated JPEG (bench_scale's)")
    parser.add_argument("--seed", type=int, default=0, help="of the test set")
    parser.add_argument("--repeats", type=int, default=3, help="forward-rate measurements before and after the run")
    parser.add_argument("--forward-batches", type=int, default=30, help="batches per forward-rate measurement")
    parser.add_argument("--keep-outputs", action="store_true",
                        help="keep the CSVs and the store (the commands' log stays beside the test BSON)")
    parser.add_argument("--json", default=None, help="also write every figure to this file")
    parser.add_argument("--markdown", default=None, help="also write the tables to this file")
    parser.add_argument("--tables-from", default=None, metavar="JSON",
                        help="run nothing: print the tables of an earlier run's --json")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if not all(0 < s <= 1 for s in args.scale + [args.train_scale or 1]):
        raise SystemExit(f"--scale {args.scale}, --train-scale {args.train_scale}: each must be in (0, 1]")
    if args.models < 1:
        raise SystemExit("--models: at least 1")
    timer = Timer()
    if args.tables_from:  # the tables of an earlier run, from its --json
        with open(args.tables_from) as fh:
            runs = json.load(fh)
    else:
        runs = [run_scale(args, scale) for scale in tqdm(args.scale, desc="scales", unit="scale")]
    if args.json and not args.tables_from:
        with open(args.json, "w") as fh:
            json.dump(runs, fh, indent=1)
    tables = []
    for figures in runs:
        tables += [test_set_table(figures), process_table(figures)]
    ordered = sorted(runs, key=lambda f: f["scale"])
    tables.append(extrapolation_table(ordered[-1], ordered[-2] if len(ordered) >= 2 else None))
    print_tables(tables, args.markdown)
    log.info("done in %.0f s", timer.seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
