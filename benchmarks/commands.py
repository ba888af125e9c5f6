"""Running the project's commands from a benchmark, as a user would: each in its own process, each step once."""
import os
import subprocess
import sys
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def python_module(module, *args, log_path=None):
    """Run `python -m module args` from the repository root and return its seconds; its output is appended
    to `log_path` when given, and shown if it fails (then the benchmark stops)."""
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", module, *args], cwd=REPO_ROOT, capture_output=True, text=True)
    if log_path:
        with open(log_path, "a") as fh:
            fh.write(f"$ python -m {module} {' '.join(args)}\n{done.stdout}{done.stderr}\n")
    if done.returncode != 0:
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
        raise SystemExit(f"python -m {module} failed ({done.returncode})")
    return time.monotonic() - started


def once(path, make):
    """Run `make()` unless `path` exists (the step's last output, written under a temporary name and renamed by the
    command, so that it exists only once the step is complete)."""
    if not os.path.exists(path):
        make()
    return path
