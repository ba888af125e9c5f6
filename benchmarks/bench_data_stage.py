"""Data-stage benchmark: our commands vs naive baselines vs `cp`, on one generated BSON.

For `data.split_train_bson`, `data.bson2rec` (shuffled) and `data.bson_md5_dict`,
measures wall time, bytes read (`rchar` of /proc/<pid>/io) and peak memory (max RSS)
of our command, of a naive baseline (`benchmarks.naive_data_stage`) and of `cp` of
the same input (GNU cp copies with copy_file_range, in the kernel, with no interpreter
to start). The input is a demo `train.bson` of at least 300 MB (about 710 MB by
default) generated once into the work dir by `data.make_demo_data` and reused.

By default every measurement runs with the page cache warm (all dirty data written
back with sync, then the input and its first half read just before), on fresh outputs,
and is repeated; the table gives medians. The offset index of the BSON is cached
beside it, so the first-run cost is reported on its own
rows: building the index, and split with a cold index (build + split).

With --cold, the page cache is cold instead, as it is for the real 58 GB train.bson,
which never fits in memory: before every run (of cp, ours and naive alike) all
dirty data is written back (sync) and every file of the work dir (the input, its
index cache, category_names.csv and any existing outputs) is dropped from the page
cache with posix_fadvise(POSIX_FADV_DONTNEED), which needs no root. That the drop
worked is checked with mincore(2) before every run and, once at the start, by
timing a read of the input warm and after the drop. A "cp + sync of the copy" row
is added: cp leaves its copy in the page cache, while our commands fsync theirs.

"Within 2x of the physical limit" is judged on the marginal cost, as the data stage's
closing note argued: a command's wall time on the input (2N products) minus its time on
the input's first half (N products), so that interpreter start-up, imports and the
fixed costs drop out. It is set against the same difference for what cannot be
avoided: reading the input (`read the input` row: one process reading the file through a
1 MB buffer) for split and bson2rec, and MD5 of every picture on every core (`md5 on every
core` row: os.cpu_count() processes, each hashing its share of the file in pieces of the
input's mean picture size) for the MD5 dictionary. Each command passes when its marginal
cost is at most 2x that of its floor. For reference the table also sets them against a
copy with fsync (`copy + fsync` row), since split and bson2rec write and fsync an output
about the input's size. The first half is written once beside the input
(`train_half.bson`: the first N documents) and its index is built before the runs.

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


READ_PROGRAM = """
import sys
buffer = bytearray(1 << 20)
with open(sys.argv[1], "rb", buffering=0) as fh:
    while fh.readinto(buffer):
        pass
"""

COPY_PROGRAM = """
import os, sys
buffer = bytearray(1 << 20)
with open(sys.argv[1], "rb", buffering=0) as source, open(sys.argv[2], "wb", buffering=0) as target:
    while got := source.readinto(buffer):
        target.write(memoryview(buffer)[:got])
    os.fsync(target.fileno())
"""

# MD5 of every byte of the file in pieces of the mean picture size, its shares hashed in
# parallel by one forked process per core: the least the MD5 dictionary has to compute.
MD5_PROGRAM = """
import hashlib, os, sys
path, piece, workers = sys.argv[1], int(sys.argv[2]), os.cpu_count()
size = os.path.getsize(path)

def hash_share(share):
    start, end = size * share // workers, size * (share + 1) // workers
    buffer = memoryview(bytearray(piece * 256))
    with open(path, "rb", buffering=0) as fh:
        fh.seek(start)
        while start < end:
            got = fh.readinto(buffer[:min(len(buffer), end - start)])
            start += got
            for at in range(0, got, piece):
                hashlib.md5(buffer[at:min(at + piece, got)]).digest()

children = []
for share in range(workers):
    pid = os.fork()
    if pid == 0:
        hash_share(share)
        os._exit(0)
    children.append(pid)
assert all(os.waitpid(pid, 0)[1] == 0 for pid in children)
"""

COUNT_PICTURES = "import sys; from data.bson_index import BsonIndex; print(BsonIndex.open(sys.argv[1]).num_images)"


def document_ends(path):
    """Byte offset after each document of a BSON (the int32 length prefixes only are read)."""
    ends, offset, size = [], 0, os.path.getsize(path)
    with open(path, "rb") as fh:
        while offset < size:
            fh.seek(offset)
            offset += int.from_bytes(fh.read(4), "little")
            ends.append(offset)
    return ends


def ensure_half_input(bson_path):
    """train_half.bson beside the input: its first half of the documents (written once)."""
    half_path = os.path.join(os.path.dirname(bson_path), "train_half.bson")
    if not os.path.exists(half_path) or os.path.getmtime(half_path) < os.path.getmtime(bson_path):
        ends = document_ends(bson_path)
        length = ends[len(ends) // 2 - 1]
        with open(bson_path, "rb") as source, open(half_path + ".tmp", "wb") as target:
            while target.tell() < length:
                target.write(source.read(min(1 << 20, length - target.tell())))
        os.replace(half_path + ".tmp", half_path)
    return half_path


def mean_picture_bytes(bson_path):
    """Input bytes per picture, from the input's offset index (in a child: this process must stay small,
    see `measure`; the cases that time an index build remove its cache first)."""
    done = subprocess.run([sys.executable, "-c", COUNT_PICTURES, bson_path], capture_output=True, text=True,
                          check=True, cwd=REPO_ROOT)
    return max(1, os.path.getsize(bson_path) // int(done.stdout.split()[-1]))


def build_cases(bson_path, csv_path, work_dir, cold=False, half_path=None, picture_bytes=None):
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
        *(marginal_cases(half_path, csv_path, work_dir, picture_bytes) if half_path else []),
    ]


def marginal_cases(half_path, csv_path, work_dir, picture_bytes):
    """Our commands on the first half of the input (N products; the others run on 2N), and the
    floors (reading, MD5 on every core) on both."""
    py = [sys.executable, "-m"]
    out = lambda name: os.path.join(work_dir, name)  # noqa: E731
    split_out = [out("half_train.bson"), out("half_val.bson")]
    full_path = os.path.join(os.path.dirname(half_path), "train.bson")
    cases = [
        Case("split", "ours on N", py + ["data.split_train_bson", "--input-bson", half_path, "--val-ratio", "0.05",
                                         "--random-seed", "12648430", "--save-train-bson", split_out[0],
                                         "--save-val-bson", split_out[1], "--force"], split_out),
        Case("bson2rec", "ours on N", py + ["data.bson2rec", "--bson", half_path, "--category-csv", csv_path,
                                            "--shuffle-seed", "12648430", "--out-rec", out("half.rec"), "--force"],
             [out("half.rec"), out("half.idx")]),
        Case("md5 dict", "ours on N", py + ["data.bson_md5_dict", "--bson", half_path, "--out",
                                            out("half_md5.npz"), "--force"], [out("half_md5.npz")]),
    ]
    for size, path in (("", full_path), (" on N", half_path)):
        cases.append(Case("read the input", "floor" + size, [sys.executable, "-c", READ_PROGRAM, path], []))
        cases.append(Case("copy + fsync", "floor" + size, [sys.executable, "-c", COPY_PROGRAM, path,
                                                          out("floor_copy.bson")], [out("floor_copy.bson")]))
        cases.append(Case("md5 on every core", "floor" + size,
                          [sys.executable, "-c", MD5_PROGRAM, path, str(picture_bytes)], []))
    return cases


def find_case(cases, command, variant):
    return next(c for c in cases if c.command == command and c.variant == variant)


def find(cases, command, variant):
    return find_case(cases, command, variant).median()


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


MARGINAL_FLOORS = [("split", "read the input"), ("bson2rec", "read the input"), ("md5 dict", "md5 on every core")]


def marginal(cases, command, variant):
    """Median over the repeats of (wall on 2N - wall on N), each pair from the same repeat."""
    on_2n, on_n = find_case(cases, command, variant), find_case(cases, command, f"{variant} on N")
    return statistics.median(full.wall_s - half.wall_s for full, half in zip(on_2n.runs, on_n.runs))


def marginal_rows(cases):
    """[(command, floor, our marginal s, the floor's marginal s)]."""
    return [(command, floor, marginal(cases, command, "ours"), marginal(cases, floor, "floor"))
            for command, floor in MARGINAL_FLOORS]


def format_marginal_table(cases, half_size, input_size):
    lines = [f"Marginal cost: wall time on the input (2N, {input_size / MB:.0f} MB) minus wall time on its first "
             f"half (N, {half_size / MB:.0f} MB), medians of the per-repeat differences:", "",
             "| command | wall on N s | wall on 2N s | marginal s | cannot be avoided | its marginal s "
             "| marginal / unavoidable | within 2x | for reference: marginal / copy + fsync's |",
             "|---|---:|---:|---:|---|---:|---:|---|---:|"]
    copy = marginal(cases, "copy + fsync", "floor")
    for command, floor, ours, least in marginal_rows(cases):
        on_n, on_2n = find(cases, command, "ours on N"), find(cases, command, "ours")
        ratio = f"{ours / least:.2f}x" if least > 0 else "n/a"
        within = ("n/a" if least <= 0 else "yes" if ours <= 2 * least else "no") + \
            (" (negative: noise)" if ours < 0 else "")
        lines.append(f"| {command} | {on_n.wall_s:.2f} | {on_2n.wall_s:.2f} | {ours:.3f} | {floor} | {least:.3f} "
                     f"| {ratio} | {within} | {ours / copy:.2f}x |")
    return "\n".join(lines) + (f"\n\nCopy + fsync (read the input, write it, fsync the copy: what split and "
                                f"bson2rec also do with their outputs) costs {copy:.3f} s at the margin.")


def evaluate_targets(cases, input_size):
    """[(target, measured, passed)] for the data stage's performance targets."""
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
    for command, floor, ours, least in marginal_rows(cases):
        targets.append((f"{command}: marginal cost <= 2x that of {floor}",
                        f"{ours:.3f} s vs {least:.3f} s" + (f", {ours / least:.2f}x" if least > 0 else ""),
                        least > 0 and ours <= 2 * least))
    return targets


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_data_stage", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", default="/tmp/cdiscount_bench",
                        help="where the input is generated (once) and outputs are written")
    parser.add_argument("--products", type=int, default=52000,
                        help="products of the generated train.bson (52000: about 710 MB; the marginal rows "
                             "run on its first half too)")
    parser.add_argument("--categories", type=int, default=500, help="categories of the generated data")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data generator")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each measurement (medians reported)")
    parser.add_argument("--markdown", default=None, metavar="OUT.md", help="also write the results as markdown")
    parser.add_argument("--cold", action="store_true",
                        help="page cache cold: sync and drop the input, its index and all outputs from the page "
                             "cache before every run (posix_fadvise DONTNEED), instead of reading the input first")
    return parser


def run_cases(args, cases, bson_path, half_path, work_dir, log_dir):
    """Every case `args.repeats` times, warm or cold; returns (eviction check text, eviction verified)."""
    work_files = lambda: [os.path.join(work_dir, n) for n in sorted(os.listdir(work_dir))]  # noqa: E731
    verified, check = check_eviction(bson_path, work_files()) if args.cold else (True, "")
    if args.cold:
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
            else:  # the dirty pages of earlier runs' outputs written back first, not during this run
                os.sync()
                warm_page_cache(bson_path)
                warm_page_cache(half_path)
            case.runs.append(measure(case.argv, os.path.join(log_dir, f"{case.slug}.log")))
            m = case.runs[-1]
            print(f"[{repeat + 1}/{args.repeats}] {case.command} ({case.variant}): {m.wall_s:.2f} s, "
                  f"rchar {m.rchar / MB:.0f} MB, peak RSS {m.max_rss / MB:.0f} MB", flush=True)
    if not args.cold:
        return "page cache warm", ""
    at_start = ("unknown (mincore unavailable)" if resident_max is None
                else f"at most {100 * resident_max:.1f}% of the input was resident (mincore)")
    verified = verified and resident_max is not None and resident_max < 0.01
    return "page cache COLD", (
        "Before every run: `sync`, then the input, its index cache, category_names.csv and every "
        "output dropped from the page cache (posix_fadvise DONTNEED); Python's own modules stay "
        f"cached. At the start of a run {at_start}. Eviction check of the input: {check}. "
        + ("Eviction verified. " if verified else "WARNING: eviction NOT verified; these runs may not be cold. "))


def main(argv=None):
    args = build_parser().parse_args(argv)
    work_dir = os.path.abspath(args.work_dir)
    bson_path, csv_path = ensure_dataset(work_dir, args.products, args.categories, args.seed)
    input_size = os.path.getsize(bson_path)
    log_dir = os.path.join(work_dir, "logs")
    os.makedirs(log_dir, exist_ok=True)
    half_path = ensure_half_input(bson_path)
    subprocess.run([sys.executable, "-c", f"from data.bson_index import BsonIndex; BsonIndex.open({half_path!r})"],
                   cwd=REPO_ROOT, check=True)  # its index cache, as the input's "split" rows have theirs
    picture_bytes = mean_picture_bytes(bson_path)
    cases = build_cases(bson_path, csv_path, work_dir, cold=args.cold, half_path=half_path,
                        picture_bytes=picture_bytes)
    cache, details = run_cases(args, cases, bson_path, half_path, work_dir, log_dir)
    report = [f"Input: `{os.path.basename(bson_path)}`, {input_size / MB:.1f} MB, {cache}; "
              f"medians of {args.repeats} runs on {os.cpu_count()} CPUs. {details}rchar counts every read() of the "
              "process, including the interpreter's imports (see the `python imports` row); peak RSS has a "
              "floor of about 10 MB, the benchmark process's own (`cp` row).",
              "", format_table(cases, input_size), "",
              format_marginal_table(cases, os.path.getsize(half_path), input_size),
              "", f"The MD5 floor hashes pieces of {picture_bytes:,} bytes, the input's size per picture.",
              "", "Targets:", ""]
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
