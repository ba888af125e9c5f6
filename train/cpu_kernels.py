"""Which CPU kernels a training run uses: MXNet's oneDNN (MKLDNN) ones or its native ones.

MXNet 1.9.1's CPU build runs oneDNN by default, yet oneDNN trains grouped-convolution
networks (ResNeXt) slower: the grouped convolution leaves a blocked memory layout and the
BatchNorm after it falls back to a slow reference kernel. Which side wins depends on the
network, the input size, the batch and the CPU, so `--cpu-kernels auto` measures instead of
guessing: two short probes, each its own process with MXNET_MKLDNN_ENABLED=1 or 0, time a few
forward+backward batches of the run's own network at its input shape and batch. The verdict
is cached in a JSON file, keyed by network, shape, batch, MXNet version and CPU, so the next
stage or model of the same kind does not probe again.

MXNet reads MXNET_MKLDNN_ENABLED once per process, when it runs its first operator (measured:
setting it after `import mxnet` but before any operator takes effect), so training sets it
before it loads or builds any array. A MXNET_MKLDNN_ENABLED the user set always wins.

    python -m train.cpu_kernels --symbol-file net-symbol.json --data-shape 3,160,160 --batch-size 8

is one probe: it prints one JSON line with this process's images/s.
"""
import argparse
import datetime
import hashlib
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

from cli.files import atomic_outputs
from cli.runner import UserError, run_cli

log = logging.getLogger(__name__)

ENV = "MXNET_MKLDNN_ENABLED"
QUIET_FALLBACK_ENV = "MXNET_STORAGE_FALLBACK_LOG_VERBOSE"  # off: native kernels warn once per operator
SETTINGS = {"onednn": "1", "native": "0"}
NAMES = {"onednn": "oneDNN", "native": "native"}
WARMUP_BATCHES = 1
PROBE_BATCHES = 3  # timed batches of each probe (median)
# A run shorter than this many times the probes' batches keeps MXNet's default: the probes
# would cost more than 5% of it.
PROBE_SHARE = 20
CACHE_FORMAT = "cdiscount-cpu-kernels-1"
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def default_cache():
    cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache_home, "cdiscount", "cpu_kernels.json")


def add_cpu_kernel_args(parser):
    group = parser.add_argument_group("CPU kernels", "oneDNN or MXNet's native kernels on the CPU build")
    group.add_argument("--cpu-kernels", choices=("auto", "onednn", "native"), default="auto",
                       help="auto: the faster for this network, input shape and batch, by a probe of "
                            f"{WARMUP_BATCHES}+{PROBE_BATCHES} forward+backward batches with each (cached); "
                            f"a MXNET_MKLDNN_ENABLED in the environment wins; GPU runs do not probe")
    group.add_argument("--cpu-kernels-cache", default=default_cache(), help="JSON file of the probes' verdicts")
    return group


def kernels_of_env(value):
    """The kernels a MXNET_MKLDNN_ENABLED value selects (MXNet parses it as a boolean)."""
    return "native" if value.strip().lower() in ("0", "false") else "onednn"


def training_batches(args):
    """Batches this run trains (one worker's count), or 0 when it trains none."""
    if args.test_io:
        return 0
    from train.data import benchmark_batches, updates_per_epoch
    per_epoch = benchmark_batches(args) if args.benchmark else updates_per_epoch(args, None)
    return per_epoch * max(0, args.num_epochs - args.load_epoch)


def on_gpus(gpus_text):
    from train.devices import cpu_ids, gpu_ids
    return cpu_ids(gpus_text) is None and bool(gpu_ids(gpus_text))


def cpu_model():
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def cache_key(network_json, data_shape, batch_size):
    import mxnet as mx
    digest = hashlib.sha256(network_json.encode()).hexdigest()[:16]
    shape = "x".join(str(n) for n in data_shape)
    return f"network {digest}|{shape}|batch {batch_size}|mxnet {mx.__version__}|{cpu_model()}|{os.cpu_count()} cores"


def read_cache(path):
    """{key: verdict} of the cache file; empty (with a warning) when it is unreadable."""
    if not os.path.exists(path):
        return {}
    try:
        with open(path) as fh:
            record = json.load(fh)
        if record.get("format") != CACHE_FORMAT or not isinstance(record.get("verdicts"), dict):
            raise ValueError(f"not a {CACHE_FORMAT} file")
        return record["verdicts"]
    except (OSError, ValueError, AttributeError) as exc:
        log.warning("%s: ignored (%s); the probe runs again and rewrites it", path, exc)
        return {}


def write_cache(path, verdicts):
    """Failing to cache is a warning: the run goes on with the verdict it has."""
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with atomic_outputs(path) as (temp,):
            with open(temp, "w") as fh:
                json.dump({"format": CACHE_FORMAT, "verdicts": verdicts}, fh, indent=1)
                fh.write("\n")
    except (OSError, UserError) as exc:
        log.warning("%s: probe verdict not cached (%s)", path, exc)


def probe_env(kernels):
    env = dict(os.environ, **{ENV: SETTINGS[kernels]})
    env.setdefault(QUIET_FALLBACK_ENV, "0")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [REPO_ROOT, env.get("PYTHONPATH")]))
    return env


def probe_once(symbol_file, data_shape, batch_size, kernels, batches=PROBE_BATCHES):
    """Images/s of forward+backward in a process of its own running `kernels`."""
    command = [sys.executable, "-m", "train.cpu_kernels", "--symbol-file", symbol_file,
               "--data-shape", ",".join(str(n) for n in data_shape), "--batch-size", str(batch_size),
               "--batches", str(batches)]
    done = subprocess.run(command, env=probe_env(kernels), capture_output=True, text=True, cwd=REPO_ROOT)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise RuntimeError(f"the {NAMES[kernels]} probe failed: {reason}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if result[ENV] != SETTINGS[kernels]:
        raise RuntimeError(f"the {NAMES[kernels]} probe ran with {ENV}={result[ENV]}")
    return result["images_per_second"]


def measure_both(network_json, data_shape, batch_size, batches=PROBE_BATCHES):
    """{"onednn": images/s, "native": images/s} of the network, one probe process each."""
    with tempfile.TemporaryDirectory(prefix="cpu-kernels-") as folder:
        symbol_file = os.path.join(folder, "probe-symbol.json")
        with open(symbol_file, "w") as fh:
            fh.write(network_json)
        return {kernels: probe_once(symbol_file, data_shape, batch_size, kernels, batches) for kernels in SETTINGS}


def faster(speeds):
    return "native" if speeds["native"] > speeds["onednn"] else "onednn"


def describe(speeds):
    winner = faster(speeds)
    loser = "onednn" if winner == "native" else "native"
    return (f"{NAMES[winner]} {speeds[winner]:.2f} img/s vs {NAMES[loser]} {speeds[loser]:.2f} img/s "
            f"({speeds[winner] / speeds[loser]:.2f}x)")


def probed_choice(args, network, data_shape):
    """(kernels, why) from the cache or a probe; MXNet's default when the probe fails."""
    network_json = network.tojson()
    key = cache_key(network_json, data_shape, args.batch_size)
    what = f"{args.symbol} at {'x'.join(map(str, data_shape))}, batch {args.batch_size}"
    verdicts = read_cache(args.cpu_kernels_cache)
    entry = verdicts.get(key)
    if isinstance(entry, dict) and isinstance(entry.get("speeds"), dict) and set(entry["speeds"]) == set(SETTINGS):
        return faster(entry["speeds"]), (f"{describe(entry['speeds'])} for {what} (probed "
                                         f"{entry.get('measured', '?')}, cached in {args.cpu_kernels_cache})")
    log.info("CPU kernels: probing oneDNN and native kernels on %s (%d+%d batches each)", what, WARMUP_BATCHES,
             PROBE_BATCHES)
    started = time.perf_counter()
    try:
        speeds = measure_both(network_json, data_shape, args.batch_size)
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        log.warning("CPU kernels: probe failed (%s); keeping oneDNN, MXNet's default", exc)
        return "onednn", "probe failed"
    measured = datetime.datetime.now().isoformat(timespec="seconds")
    verdicts[key] = {"network": args.symbol, "speeds": speeds, "measured": measured}
    write_cache(args.cpu_kernels_cache, verdicts)
    return faster(speeds), f"{describe(speeds)} for {what} (probe took {time.perf_counter() - started:.0f} s)"


def choose(args, network, data_shape):
    """(kernels or None, why): None leaves the process as it is (GPU runs, a user's setting)."""
    user_setting = os.environ.get(ENV, "").strip()
    if user_setting:
        kernels = kernels_of_env(user_setting)
        if args.cpu_kernels not in ("auto", kernels):
            log.warning("CPU kernels: %s=%s in the environment wins over --cpu-kernels %s", ENV, user_setting,
                        args.cpu_kernels)
        return None, f"{NAMES[kernels]}: {ENV}={user_setting} set in the environment"
    if on_gpus(args.gpus):
        return None, "GPU run"
    if args.cpu_kernels != "auto":
        return args.cpu_kernels, f"--cpu-kernels {args.cpu_kernels}"
    batches = training_batches(args)
    probe_batches = 2 * (WARMUP_BATCHES + PROBE_BATCHES)
    if batches < PROBE_SHARE * probe_batches:
        return "onednn", (f"MXNet's default: the run's {batches} batches are fewer than "
                          f"{PROBE_SHARE * probe_batches}, too few for the probe to pay")
    return probed_choice(args, network, data_shape)


def use_faster_kernels(args, network, data_shape):
    """Set MXNET_MKLDNN_ENABLED for this training process (before its first MXNet operator); log why."""
    kernels, why = choose(args, network, data_shape)
    if kernels is None:
        if why != "GPU run":
            log.info("CPU kernels: %s", why)
        return None
    os.environ[ENV] = SETTINGS[kernels]
    if kernels == "native":
        os.environ.setdefault(QUIET_FALLBACK_ENV, "0")
    log.info("CPU kernels: %s (%s=%s): %s", NAMES[kernels], ENV, SETTINGS[kernels], why)
    return kernels


def shape_text(text):
    try:
        shape = tuple(int(n) for n in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        raise UserError(f"--data-shape {text}: expected channels,height,width such as 3,160,160")
    return shape


def time_batches(network, data_shape, batch_size, batches=PROBE_BATCHES):
    """Median seconds of forward+backward of a network (ending in SoftmaxOutput 'softmax') after
    the warm-up batches, in this process, with the kernels it runs."""
    import mxnet as mx
    module = mx.mod.Module(network, context=mx.cpu())
    module.bind(data_shapes=[("data", (batch_size,) + data_shape)], label_shapes=[("softmax_label", (batch_size,))])
    module.init_params(mx.init.Xavier())
    batch = mx.io.DataBatch([mx.nd.random.uniform(0, 255, (batch_size,) + data_shape)],
                            [mx.nd.zeros((batch_size,))])
    times = []
    for _ in range(WARMUP_BATCHES + batches):
        start = time.perf_counter()
        module.forward_backward(batch)
        mx.nd.waitall()
        times.append(time.perf_counter() - start)
    return statistics.median(times[WARMUP_BATCHES:])


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m train.cpu_kernels", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--symbol-file", required=True, help="the network (*-symbol.json, ends in SoftmaxOutput)")
    parser.add_argument("--data-shape", type=shape_text, required=True, help="channels,height,width")
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--batches", type=int, default=PROBE_BATCHES, help="timed batches after the warm-up")
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.batches < 1:
        raise UserError("--batch-size and --batches must be at least 1")
    import mxnet as mx
    seconds = time_batches(mx.sym.load(args.symbol_file), args.data_shape, args.batch_size, args.batches)
    print(json.dumps({"images_per_second": args.batch_size / seconds, ENV: os.environ.get(ENV, ""),
                      "batches": args.batches}))
    return 0


if __name__ == "__main__":
    run_cli(main)
