"""Data-stage benchmark: our commands vs naive baselines vs `cp`, on one generated BSON.

For `data.split_train_bson`, `data.bson2rec` (shuffled) and `data.bson_md5_dict`,
measures wall time, bytes read (`rchar` of /proc/<pid>/io) and peak memory (max RSS)
of our command, of a naive baseline (`benchmarks.naive_data_stage`) and of `cp` of
the same input (the physical limit: GNU cp copies with copy_file_range, in the
kernel, with no interpreter to start). The input is a demo `train.bson` of at least
300 MB generated once into the work dir by `data.make_demo_data` and reused.

By default every measurement runs with the page cache warm (the input is read just
before), on fresh outputs, and is repeated; the table gives medians. The offset
index of the BSON is cached beside it, so the first-run cost is reported on its own
rows: building the index, and split with a cold index (build + split).

With --cold, the page cache is cold instead, as it is for the real 58 GB train.bson,
which never fits in memory: before every run (of cp, ours and naive alike) all
dirty data is written back (sync) and every file of the work dir (the input, its
index cache, category_names.csv and any existing outputs) is dropped from the page
cache with posix_fadvise(POSIX_FADV_DONTNEED), which needs no root. That the drop
worked is checked with mincore(2) before every run and, once at the start, by
timing a read of the input warm and after the drop. A "cp + sync of the copy" row
is added: cp leaves its copy in the page cache, while our commands fsync theirs.

Run from the repository root:  python -m benchmarks.bench_data_stage [--cold]
"""
import argparse
import ctypes
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


def evict_page_cache(paths):
    """Write back all dirty data, then drop `paths` from the page cache (no root needed).

    DONTNEED does not drop dirty pages, hence the sync first (it also keeps the
    write-back of the previous run's outputs out of the next measured run).
    """
    os.sync()
    for path in paths:
        if os.path.isfile(path):
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def resident_fraction(path):
    """Fraction of `path`'s pages in the page cache, by mincore(2) over a mapping that is
    never touched (so it reads nothing and adds nothing to this process's RSS); None if
    mincore cannot be used here."""
    size = os.path.getsize(path)
    if size == 0:
        return 0.0
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                              ctypes.c_long]
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p]
    except (OSError, AttributeError):
        return None
    page = os.sysconf("SC_PAGE_SIZE")
    pages = (size + page - 1) // page
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, 1, 1, fd, 0)  # PROT_READ, MAP_SHARED
        if addr is None or addr == ctypes.c_void_p(-1).value:
            return None
        try:
            vec = ctypes.create_string_buffer(pages)
            if libc.mincore(addr, size, vec) != 0:
                return None
            return sum(b & 1 for b in vec.raw[:pages]) / pages
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)


def timed_read(path):
    start = time.perf_counter()
    warm_page_cache(path)
    return time.perf_counter() - start


def check_eviction(path, all_paths):
    """Read `path` warm, drop it, read it again: (verified, description)."""
    warm_page_cache(path)
    warm_before = resident_fraction(path)
    warm_s = timed_read(path)
    evict_page_cache(all_paths)
    after = resident_fraction(path)
    cold_s = timed_read(path)
    size = os.path.getsize(path)
    pct = lambda f: "unknown (mincore unavailable)" if f is None else f"{100 * f:.1f}%"  # noqa: E731
    description = (f"resident after a read {pct(warm_before)}, after the drop {pct(after)} (mincore); "
                   f"reading it took {warm_s:.2f} s warm ({size / MB / warm_s:.0f} MB/s) and {cold_s:.2f} s "
                   f"after the drop ({size / MB / cold_s:.0f} MB/s), {cold_s / warm_s:.1f}x as long")
    if after is not None:
        verified = after < 0.01 and (warm_before is None or warm_before > 0.99)
    else:
        verified = cold_s > 3 * warm_s
    return verified, description


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


def build_cases(bson_path, csv_path, work_dir, cold=False):
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
        *([Case("cp + sync of the copy", "cp",
                ["sh", "-c", 'cp "$0" "$1" && sync "$1"', bson_path, out("cp_copy.bson")],
                [out("cp_copy.bson")])] if cold else []),
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
    parser.add_argument("--cold", action="store_true",
                        help="page cache cold: sync and drop the input, its index and all outputs from the page "
                             "cache before every run (posix_fadvise DONTNEED), instead of reading the input first")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    work_dir = os.path.abspath(args.work_dir)
    bson_path, csv_path = ensure_dataset(work_dir, args.products, args.categories, args.seed)
    input_size = os.path.getsize(bson_path)
    log_dir = os.path.join(work_dir, "logs")
    os.makedirs(log_dir, exist_ok=True)
    cases = build_cases(bson_path, csv_path, work_dir, cold=args.cold)
    work_files = lambda: [os.path.join(work_dir, n) for n in sorted(os.listdir(work_dir))]  # noqa: E731

    if args.cold:
        verified, check = check_eviction(bson_path, work_files())
        print(f"eviction check of {bson_path}: {check}"
              + ("" if verified else "\nWARNING: the page cache was NOT emptied; the runs are not cold"), flush=True)
    resident_max = 0.0
    for repeat in range(args.repeats):
        for case in cases:
            remove(case.stale)
            if args.cold:
                evict_page_cache(work_files())
                fraction = resident_fraction(bson_path)
                resident_max = None if fraction is None or resident_max is None else max(resident_max, fraction)
            else:
                warm_page_cache(bson_path)
            case.runs.append(measure(case.argv, os.path.join(log_dir, f"{case.slug}.log")))
            m = case.runs[-1]
            print(f"[{repeat + 1}/{args.repeats}] {case.command} ({case.variant}): {m.wall_s:.2f} s, "
                  f"rchar {m.rchar / MB:.0f} MB, peak RSS {m.max_rss / MB:.0f} MB", flush=True)

    if args.cold:
        at_start = ("unknown (mincore unavailable)" if resident_max is None
                    else f"at most {100 * resident_max:.1f}% of the input was resident (mincore)")
        verified = verified and resident_max is not None and resident_max < 0.01
        cache = "page cache COLD"
        details = ("Before every run: `sync`, then the input, its index cache, category_names.csv and every "
                   "output dropped from the page cache (posix_fadvise DONTNEED); Python's own modules stay "
                   f"cached. At the start of a run {at_start}. Eviction check of the input: {check}. "
                   + ("Eviction verified. " if verified else
                      "WARNING: eviction NOT verified; these runs may not be cold. "))
    else:
        cache, details = "page cache warm", ""
    report = [f"Input: `{os.path.basename(bson_path)}`, {input_size / MB:.1f} MB, {cache}; "
              f"medians of {args.repeats} runs on {os.cpu_count()} CPUs. {details}rchar counts every read() of the "
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
