"""Data-stage benchmark: our commands vs naive baselines vs `cp`, on one generated BSON.

For `data.split_train_bson`, `data.bson2rec` (shuffled) and `data.bson_md5_dict`,
measures wall time, bytes read (`rchar` of /proc/<pid>/io) and peak memory (max RSS)
of our command, of a naive baseline (`benchmarks.naive_data_stage`) and of `cp` of
the same input (the physical limit: GNU cp copies with copy_file_range, in the
kernel, with no interpreter to start). The input is a demo `train.bson` of at least
300 MB generated once into the work dir by `data.make_demo_data` and reused.

Every measurement runs with the page cache warm (the input is read just before),
on fresh outputs, and is repeated; the table gives medians. The offset index of
the BSON is cached beside it, so the first-run cost is reported on its own rows:
building the index, and split with a cold index (build + split).

Run from the repository root:  python -m benchmarks.bench_data_stage
"""
import argparse
import dataclasses
import os
import re
import statistics
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MB = 1e6
MIN_INPUT_BYTES = 300 * MB


@dataclasses.dataclass
class Measurement:
    wall_s: float
    rchar: int      # bytes the process read through read()-like calls (/proc/<pid>/io)
    max_rss: int    # peak resident memory, bytes


@dataclasses.dataclass
class Case:
    command: str          # what is measured, e.g. "split"
    variant: str          # "ours", "naive", "cp" or "-"
    argv: list
    stale: list           # files removed before each run: outputs (and the index cache for cold runs)
    baseline: str = None  # command of the naive case that "ours" is compared with
    runs: list = dataclasses.field(default_factory=list)

    @property
    def slug(self):
        return re.sub(r"\W+", "_", f"{self.command} {self.variant}").strip("_")

    def median(self):
        return Measurement(*(statistics.median(getattr(m, f.name) for m in self.runs)
                             for f in dataclasses.fields(Measurement)))


def measure(argv, log_path):
    """Run `argv` from the repo root; wall time, rchar and max RSS of the child process.

    The child is waited for with WNOWAIT so that it stays a zombie while its
    /proc/<pid>/io (which still holds the totals of all its threads) is read; wait4
    then reaps it and gives ru_maxrss. Linux folds the peak RSS of the spawning
    process (at the child's exec) into the child's ru_maxrss, so this process keeps
    small: about 10 MB, the floor of every peak RSS measured here.
    """
    with open(log_path, "wb") as log:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
        os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
        wall_s = time.perf_counter() - start
        with open(f"/proc/{proc.pid}/io") as io:
            rchar = int(next(line for line in io if line.startswith("rchar:")).split()[1])
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        with open(log_path, errors="replace") as log:
            tail = log.read()[-2000:]
        sys.exit(f"{' '.join(argv)} failed with exit code {proc.returncode}:\n{tail}")
    return Measurement(wall_s, rchar, usage.ru_maxrss * 1024)


def warm_page_cache(path):
    """Read `path` once through a small reused buffer (not to raise this process's peak RSS)."""
    buffer = bytearray(1 << 20)
    with open(path, "rb", buffering=0) as fh:
        while fh.readinto(buffer):
            pass


def remove(paths):
    for path in paths:
        if os.path.exists(path):
            os.remove(path)


def ensure_dataset(work_dir, num_products, num_categories, seed):
    """train.bson and category_names.csv in `work_dir`, generated on first use."""
    bson_path = os.path.join(work_dir, "train.bson")
    csv_path = os.path.join(work_dir, "category_names.csv")
    if os.path.exists(bson_path) and os.path.exists(csv_path):
        print(f"reusing {bson_path} (delete it to regenerate with other --products)")
    else:
        # In a child process (data.make_demo_data's CLI over generate_demo_dataset): this process
        # must stay small, because every child it spawns inherits its peak RSS (see `measure`).
        print(f"generating {num_products} products into {work_dir} (once) ...", flush=True)
        subprocess.run([sys.executable, "-m", "data.make_demo_data", "--out-dir", work_dir,
                        "--num-categories", str(num_categories), "--num-train-products", str(num_products),
                        "--num-test-products", "100", "--seed", str(seed), "--force"], cwd=REPO_ROOT, check=True)
    size = os.path.getsize(bson_path)
    if size < MIN_INPUT_BYTES:
        print(f"warning: {bson_path} is {size / MB:.0f} MB, below {MIN_INPUT_BYTES / MB:.0f} MB; "
              "delete it and pass more --products")
    return bson_path, csv_path


def build_cases(bson_path, csv_path, work_dir):
    py = [sys.executable, "-m"]
    out = lambda name: os.path.join(work_dir, name)  # noqa: E731
    index_cache = bson_path + ".index.npz"
    split_out = [out("ours_train.bson"), out("ours_val.bson")]
    naive_split_out = [out("naive_train.bson"), out("naive_val.bson")]
    split_args = ["--input-bson", bson_path, "--val-ratio", "0.05", "--random-seed", "12648430"]
    rec_args = ["--bson", bson_path, "--category-csv", csv_path, "--shuffle-seed", "12648430"]
    split_cmd = py + ["data.split_train_bson", *split_args, "--save-train-bson", split_out[0],
                      "--save-val-bson", split_out[1], "--force"]
    return [
        Case("cp of the input", "cp", ["cp", bson_path, out("cp_copy.bson")], [out("cp_copy.bson")]),
        Case("python imports (numpy, bson, mxnet)", "-",
             [sys.executable, "-c", "import numpy, tqdm, bson, mxnet"], []),
        Case("index build (first run only)", "ours",
             [sys.executable, "-c", f"from data.bson_index import BsonIndex; BsonIndex.open({bson_path!r})"],
             [index_cache]),
        Case("split, cold index (build + split)", "ours", split_cmd, split_out + [index_cache], "split"),
        Case("split", "ours", split_cmd, split_out, "split"),
        Case("split", "naive", py + ["benchmarks.naive_data_stage", "split", *split_args,
                                     "--save-train-bson", naive_split_out[0], "--save-val-bson",
                                     naive_split_out[1]], naive_split_out),
        Case("bson2rec", "ours", py + ["data.bson2rec", *rec_args, "--out-rec", out("ours.rec"), "--force"],
             [out("ours.rec"), out("ours.idx")], "bson2rec"),
        Case("bson2rec", "naive", py + ["benchmarks.naive_data_stage", "bson2rec", *rec_args,
                                        "--out-rec", out("naive.rec")], [out("naive.rec"), out("naive.idx")]),
        Case("md5 dict", "ours", py + ["data.bson_md5_dict", "--bson", bson_path, "--out", out("ours_md5.npz"),
                                       "--force"], [out("ours_md5.npz")], "md5 dict"),
        Case("md5 dict", "naive", py + ["benchmarks.naive_data_stage", "md5", "--bson", bson_path,
                                        "--out", out("naive_md5.json")], [out("naive_md5.json")]),
    ]


def find(cases, command, variant):
    return next(c.median() for c in cases if c.command == command and c.variant == variant)


def format_table(cases, input_size):
    """Markdown table of the medians, with ratios to the input size, the naive baseline and cp."""
    cp = find(cases, "cp of the input", "cp")
    lines = ["| command | variant | wall s | rchar MB | rchar / input | peak RSS MB | wall / naive | wall / cp |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for case in cases:
        m = case.median()
        vs_naive = f"{m.wall_s / find(cases, case.baseline, 'naive').wall_s:.2f}x" if case.baseline else ""
        vs_cp = f"{m.wall_s / cp.wall_s:.2f}x" if case.variant != "-" else ""
        lines.append(f"| {case.command} | {case.variant} | {m.wall_s:.2f} | {m.rchar / MB:.1f} | "
                     f"{m.rchar / input_size:.3f} | {m.max_rss / MB:.0f} | {vs_naive} | {vs_cp} |")
    return "\n".join(lines)


def evaluate_targets(cases, input_size):
    """[(target, measured, passed)] for the data stage's performance targets."""
    cp = find(cases, "cp of the input", "cp")
    targets = []
    for command in ("split", "split, cold index (build + split)"):
        ratio = find(cases, command, "ours").rchar / input_size
        targets.append((f"{command}: rchar <= 1.1x input", f"{ratio:.3f}x", ratio <= 1.1))
    rss = find(cases, "bson2rec", "ours").max_rss / MB
    targets.append(("bson2rec (shuffled): peak RSS < 500 MB", f"{rss:.0f} MB", rss < 500))
    for case in (c for c in cases if c.baseline):
        ours, naive = case.median(), find(cases, case.baseline, "naive")
        targets.append((f"{case.command}: wall <= naive", f"{ours.wall_s:.2f} s vs {naive.wall_s:.2f} s",
                        ours.wall_s <= naive.wall_s))
        targets.append((f"{case.command}: wall <= 2x cp", f"{ours.wall_s / cp.wall_s:.2f}x cp",
                        ours.wall_s <= 2 * cp.wall_s))
    return targets


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_data_stage", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", default="/tmp/cdiscount_bench",
                        help="where the input is generated (once) and outputs are written")
    parser.add_argument("--products", type=int, default=26000,
                        help="products of the generated train.bson (26000: about 340 MB)")
    parser.add_argument("--categories", type=int, default=500, help="categories of the generated data")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data generator")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each measurement (medians reported)")
    parser.add_argument("--markdown", default=None, metavar="OUT.md", help="also write the results as markdown")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    work_dir = os.path.abspath(args.work_dir)
    bson_path, csv_path = ensure_dataset(work_dir, args.products, args.categories, args.seed)
    input_size = os.path.getsize(bson_path)
    log_dir = os.path.join(work_dir, "logs")
    os.makedirs(log_dir, exist_ok=True)
    cases = build_cases(bson_path, csv_path, work_dir)

    for repeat in range(args.repeats):
        for case in cases:
            remove(case.stale)
            warm_page_cache(bson_path)
            case.runs.append(measure(case.argv, os.path.join(log_dir, f"{case.slug}.log")))
            m = case.runs[-1]
            print(f"[{repeat + 1}/{args.repeats}] {case.command} ({case.variant}): {m.wall_s:.2f} s, "
                  f"rchar {m.rchar / MB:.0f} MB, peak RSS {m.max_rss / MB:.0f} MB", flush=True)

    report = [f"Input: `{os.path.basename(bson_path)}`, {input_size / MB:.1f} MB, page cache warm; "
              f"medians of {args.repeats} runs on {os.cpu_count()} CPUs. rchar counts every read() of the "
              "process, including the interpreter's imports (see the `python imports` row); peak RSS has a "
              "floor of about 10 MB, the benchmark process's own (`cp` row).",
              "", format_table(cases, input_size), "", "Targets:", ""]
    report += [f"- {'PASS' if ok else 'FAIL'}  {name} ({value})" for name, value, ok in
               evaluate_targets(cases, input_size)]
    text = "\n".join(report) + "\n"
    print("\n" + text)
    if args.markdown:
        with open(args.markdown, "w") as fh:
            fh.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
