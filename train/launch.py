"""Start a distributed MXNet training: the scheduler, the parameter servers and the workers.

    python -m train.launch -n 2 -s 2 -H hosts --launcher ssh -- \\
        python -m train.train_model ... --kv-store dist_sync

The flags are those of MXNet's own `tools/launch.py` (not shipped in the pip package). Each
process gets the environment MXNet's parameter server (ps-lite) reads: DMLC_ROLE
(scheduler/server/worker), DMLC_PS_ROOT_URI and DMLC_PS_ROOT_PORT (where the scheduler
listens), DMLC_NUM_SERVER, DMLC_NUM_WORKER, DMLC_NODE_HOST. The scheduler runs on this
machine; with `--launcher ssh` servers and workers go round-robin over the hosts file (one
host per line, `host` or `host:ssh_port`); with `--launcher local` everything runs here on
127.0.0.1. Each process logs to LOG_DIR/<role>-<i>.log.

The launcher watches every process: when all workers have exited cleanly the servers and the
scheduler are given a moment to exit and then stopped; when any process fails or is killed,
every other one is stopped and the launcher exits non-zero naming it.
"""
import argparse
import logging
import os
import shlex
import signal
import socket
import subprocess
import sys
import time

from cli.processes import describe_exit, set_parent_death_signal
from cli.runner import HelpFormatter, UserError, run_cli

log = logging.getLogger(__name__)

LAUNCHERS = ("local", "ssh")
SHUTDOWN_SECONDS = 30  # servers and scheduler exit by themselves once the workers are done
_STOP_SECONDS = 5
# Environment worth forwarding to remote processes (ssh does not carry it).
FORWARDED_ENV_PREFIXES = ("MXNET_", "OMP_", "DMLC_", "PS_", "CUDA_", "NCCL_", "LD_LIBRARY_PATH", "PATH",
                          "PYTHONPATH", "VIRTUAL_ENV", "DATA_DIR", "MODEL_DIR", "PRETRAINED_DIR")


def free_port(host="127.0.0.1"):
    """A TCP port free right now on `host` (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def read_hostfile(path):
    """[(host, ssh_port or None)] from a file of `host` or `host:port` lines (# comments)."""
    if not os.path.isfile(path):
        raise UserError(f"{path}: hosts file not found")
    hosts = []
    with open(path) as fh:
        for number, line in enumerate(fh, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            host, _, port = line.partition(":")
            if not host or (port and not port.isdigit()):
                raise UserError(f"{path}: line {number}: expected host or host:port, got {line!r}")
            hosts.append((host, int(port) if port else None))
    if not hosts:
        raise UserError(f"{path}: no hosts")
    return hosts


def own_address(towards):
    """This machine's address as seen on the route to `towards` (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect((towards, 9))
            return sock.getsockname()[0]
        except OSError:
            return socket.gethostbyname(socket.gethostname())


def dmlc_env(role, root_uri, root_port, num_servers, num_workers, node_host, interface=None):
    env = {"DMLC_ROLE": role, "DMLC_PS_ROOT_URI": root_uri, "DMLC_PS_ROOT_PORT": str(root_port),
           "DMLC_NUM_SERVER": str(num_servers), "DMLC_NUM_WORKER": str(num_workers),
           "DMLC_NODE_HOST": node_host}
    if interface:
        env["DMLC_INTERFACE"] = interface
    return env


# The scheduler and the servers: MXNet's own, with a safe optimizer loader (train/ps_node.py).
PS_COMMAND = [sys.executable, "-m", "train.ps_node"]


def ssh_command(host, ssh_port, env, command, cwd):
    """The ssh invocation that runs `command` on `host` in `cwd` with `env`."""
    exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(env.items()))
    remote = f"cd {shlex.quote(cwd)} && env {exports} {' '.join(shlex.quote(c) for c in command)}"
    # -tt: the remote processes get SIGHUP when the session closes, so stopping ssh stops them
    ssh = ["ssh", "-tt", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=accept-new", "-o", "LogLevel=ERROR"]
    if ssh_port:
        ssh += ["-p", str(ssh_port)]
    return ssh + [host, remote]


class Launch:
    """The processes of one distributed run; `wait()` returns 0 or raises UserError."""

    def __init__(self, log_dir):
        self.log_dir = log_dir
        self.processes = []  # (name, Popen, log path)

    def start(self, name, command, env):
        path = os.path.join(self.log_dir, f"{name.replace(' ', '-')}.log")
        with open(path, "ab") as log_file:
            process = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL, stdout=log_file,
                                       stderr=subprocess.STDOUT, start_new_session=True,
                                       preexec_fn=set_parent_death_signal)
        self.processes.append((name, process, path))
        log.info("%s: pid %d, log %s", name, process.pid, path)
        return process

    def stop_all(self):
        """SIGTERM every process group still running (ssh and what it started), then SIGKILL."""
        for _, process, _ in self.processes:
            if process.poll() is None:
                _signal_group(process, signal.SIGTERM)
        deadline = time.monotonic() + _STOP_SECONDS
        for _, process, _ in self.processes:
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal_group(process, signal.SIGKILL)
                process.wait()
        for _, process, _ in self.processes:  # descendants left in a group whose leader is gone
            _signal_group(process, signal.SIGKILL)

    def wait(self, poll_seconds=0.2, stall_seconds=0):
        workers = [(n, p, f) for n, p, f in self.processes if n.startswith("worker")]
        workers_done_at = None
        last_output, last_size = time.monotonic(), -1
        while True:
            if stall_seconds:  # a hang (e.g. in ps-lite) shows as logs that stop growing
                size = sum(_size(f) for _, _, f in workers)
                if size != last_size:
                    last_output, last_size = time.monotonic(), size
                elif time.monotonic() - last_output > stall_seconds:
                    raise UserError(f"no worker wrote to its log for {stall_seconds:.0f} s: stopping the run "
                                    f"as hung (--stall-timeout); logs in {self.log_dir}")
            for name, process, path in self.processes:
                code = process.poll()
                if code is not None and code != 0:
                    raise UserError(f"{name} (pid {process.pid}) {describe_exit(code)}; see {path}: "
                                    f"{_last_line(path)}")
            if workers_done_at is None and all(p.poll() == 0 for _, p, _ in workers):
                workers_done_at = time.monotonic()
                log.info("all %d workers finished", len(workers))
            if workers_done_at is not None:
                if all(p.poll() is not None for _, p, _ in self.processes):
                    return 0
                if time.monotonic() - workers_done_at > SHUTDOWN_SECONDS:
                    log.warning("servers/scheduler still running %d s after the workers finished; stopping them",
                                SHUTDOWN_SECONDS)
                    return 0
            time.sleep(poll_seconds)


def _signal_group(process, sig):
    try:
        os.killpg(process.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _size(path):
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _last_line(path):
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, os.path.getsize(path) - 4096))
            lines = [line for line in fh.read().decode(errors="replace").splitlines() if line.strip()]
        return lines[-1].strip() if lines else "(empty log)"
    except OSError:
        return "(no log)"


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m train.launch", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("-n", "--num-workers", type=int, required=True, help="worker processes")
    parser.add_argument("-s", "--num-servers", type=int, default=None, help="server processes (default: -n)")
    parser.add_argument("-H", "--hostfile", default=None, help="hosts for --launcher ssh, one per line")
    parser.add_argument("--launcher", default="local", choices=LAUNCHERS, help="where the processes run")
    parser.add_argument("--port", type=int, default=0, help="scheduler port (default: a free one)")
    parser.add_argument("--scheduler-host", default=None,
                        help="this machine's address the others reach (ssh; default: found from the route)")
    parser.add_argument("--interface", default=None, help="DMLC_INTERFACE, e.g. eth0 (local: lo)")
    parser.add_argument("--log-dir", default="launch_logs", help="one log file per process here")
    parser.add_argument("--stall-timeout", type=float, default=3600,
                        help="stop the run when no worker log grows for this many seconds (0: never); "
                             "keep it above the time between two log lines (--disp-batches)")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the worker command")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise UserError("no worker command: put it after --, e.g. -- python -m train.train_model ...")
    if args.num_workers < 1:
        raise UserError("-n must be at least 1")
    num_servers = args.num_servers if args.num_servers is not None else args.num_workers
    if num_servers < 1:
        raise UserError("-s must be at least 1")
    if args.launcher == "ssh":
        if not args.hostfile:
            raise UserError("--launcher ssh needs -H HOSTFILE")
        hosts = read_hostfile(args.hostfile)
        root_uri = args.scheduler_host or own_address(hosts[0][0])
        interface = args.interface
    else:
        hosts, root_uri, interface = [("127.0.0.1", None)], "127.0.0.1", args.interface or "lo"
    port = args.port or free_port("127.0.0.1" if args.launcher == "local" else "")
    os.makedirs(args.log_dir, exist_ok=True)
    log.info("scheduler %s:%d, %d servers, %d workers, %s launcher", root_uri, port, num_servers,
             args.num_workers, args.launcher)

    launch = Launch(args.log_dir)
    cwd = os.getcwd()

    def start(name, role, index, cmd):
        host, ssh_port = hosts[index % len(hosts)] if role != "scheduler" else (root_uri, None)
        env = dmlc_env(role, root_uri, port, num_servers, args.num_workers, host, interface)
        if args.launcher == "local" or role == "scheduler":
            launch.start(name, cmd, dict(os.environ, **env))
        else:
            forwarded = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV_PREFIXES)}
            launch.start(name, ssh_command(host, ssh_port, dict(forwarded, **env), cmd, cwd), dict(os.environ))

    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    for sig in previous:  # a stopped launcher stops its processes too
        signal.signal(sig, _interrupt)
    try:
        start("scheduler", "scheduler", 0, PS_COMMAND)
        for i in range(num_servers):
            start(f"server {i}", "server", i, PS_COMMAND)
        for i in range(args.num_workers):
            start(f"worker {i}", "worker", i, command)
        code = launch.wait(stall_seconds=args.stall_timeout)
        log.info("distributed run finished; logs in %s", args.log_dir)
        return code
    finally:
        launch.stop_all()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    run_cli(main)
