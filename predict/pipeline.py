"""The coordinating side of the prediction pipeline: start the reader and the workers, receive
prepared products, watch the processes, and stop every one of them on any exit.

    reader --PUSH/PULL--> K workers --PUSH/PULL--> this process (the models)
          \\______________ control (PUSH/PULL) ______________/

Sockets are `ipc://` files in a private temporary folder (two runs never share one) or
`tcp://127.0.0.1` on ports the kernel picks; nothing listens beyond this machine. Each
queue is bounded by ZeroMQ high-water marks, so the reader runs only a little ahead.
"""
import io
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
import zmq

from cli.processes import describe_exit, process_alive
from cli.reporting import plural
from cli.runner import UserError
from data.md5_dict import KEY_DTYPE
from predict import messages

log = logging.getLogger(__name__)

TRANSPORTS = ("ipc", "tcp")
_STOP_SECONDS = 5  # a stopped child gets this long before SIGKILL
_IPC_PATH_MAX = 100  # sockaddr_un holds 107 bytes
SOCKET_FOLDER_PREFIX = "cdiscount-predict-"


def socket_folder_prefix(pid=None):
    """The private socket folder's name starts with its run's PID, so that a later run can tell the
    folder of a killed run (a SIGKILLed parent cannot remove its own) from one still in use."""
    return f"{SOCKET_FOLDER_PREFIX}{pid or os.getpid()}-"


def remove_stale_socket_folders(root):
    """Remove this user's socket folders in `root` whose run is gone."""
    try:
        names = [name for name in os.listdir(root) if name.startswith(SOCKET_FOLDER_PREFIX)]
    except OSError:
        return
    for name in names:
        pid, _, _ = name[len(SOCKET_FOLDER_PREFIX):].partition("-")
        path = os.path.join(root, name)
        try:
            owned = os.stat(path).st_uid == os.getuid()
        except OSError:
            continue
        if owned and pid.isdigit() and not process_alive(int(pid)) and not _listening(os.path.join(path, "control")):
            shutil.rmtree(path, ignore_errors=True)
            log.info("removed %s, left by a killed prediction", path)


def _listening(socket_path):
    """Whether a process accepts connections on this ipc socket (a run in another PID namespace
    sharing /tmp would look gone by its PID alone)."""
    if not os.path.exists(socket_path):
        return False
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(socket_path)
        except OSError:
            return False
    return True


class PipelineError(UserError):
    """A process of the pipeline failed; the message says which and why."""


class Pipeline:
    """Context manager; call `receive()` until every product of [start, stop) has arrived once.
    `inputs`: the (image shape C,H,W, resize[, mosaic layout]) of each model input the workers prepare views for
    (predict.predictor.input_groups)."""

    def __init__(self, bson_path, start, stop, num_workers, inputs, multi_view,
                 transport="ipc", skip_corrupt=False, queue=16, poll_ms=200, forward_mask=None, digests=None):
        if transport not in TRANSPORTS:
            raise UserError(f"--transport {transport}: expected one of {TRANSPORTS}")
        if num_workers < 1:
            raise UserError("--num-procs must be at least 1")
        self.bson_path, self.start, self.stop = bson_path, start, stop
        self.num_workers, self.inputs, self.multi_view = num_workers, list(inputs), multi_view
        self.transport, self.skip_corrupt, self.queue, self.poll_ms = transport, skip_corrupt, queue, poll_ms
        self.forward_mask = forward_mask  # per picture of [start, stop): False = the workers skip it
        self.digests = digests  # per picture of [start, stop): its MD5 (S16), None: the workers hash them
        self.processes = {}  # name -> Popen
        self._context = self._tmp = self._views = self._control = None
        self.interrupted = False
        self._previous_sigint = None

    # ---- set-up and tear-down -------------------------------------------------
    def _endpoint(self, name):
        if self.transport == "ipc":
            return f"ipc://{os.path.join(self._tmp, name)}"
        return "tcp://127.0.0.1:*"

    def _spawn(self, name, role, *extra):
        command = [sys.executable, "-m", "predict.pipeline_worker", role, "--control", self._control_endpoint,
                   "--parent-pid", str(os.getpid()), "--name", name, "--queue", str(self.queue), *extra]
        self.processes[name] = subprocess.Popen(command, stdin=subprocess.DEVNULL)

    def _on_sigint(self, *_):
        # Remembered as well as raised: a KeyboardInterrupt raised while Python runs a __del__
        # (MXNet frees NDArrays there) is printed and dropped; check_processes raises it again.
        self.interrupted = True
        raise KeyboardInterrupt

    def __enter__(self):
        try:
            if threading.current_thread() is threading.main_thread():
                self._previous_sigint = signal.signal(signal.SIGINT, self._on_sigint)
            self._open()
        except BaseException:
            self.close()
            raise
        return self

    def _open(self):
        for root in {tempfile.gettempdir(), "/tmp"}:
            remove_stale_socket_folders(root)
        self._tmp = tempfile.mkdtemp(prefix=socket_folder_prefix())
        if self.transport == "ipc" and len(os.path.join(self._tmp, "products")) > _IPC_PATH_MAX:
            # a socket path must fit sockaddr_un (107 bytes): a long TMPDIR falls back to /tmp
            os.rmdir(self._tmp)
            self._tmp = tempfile.mkdtemp(prefix=socket_folder_prefix(), dir="/tmp")
            if len(os.path.join(self._tmp, "products")) > _IPC_PATH_MAX:
                raise UserError(f"{self._tmp}: too long for ipc:// sockets; use --transport tcp")
        os.chmod(self._tmp, 0o700)  # ipc sockets are files: only this user reaches them
        self._context = zmq.Context()
        self._control = self._context.socket(zmq.PULL)
        self._control.bind(self._endpoint("control"))
        self._control_endpoint = self._control.getsockopt_string(zmq.LAST_ENDPOINT)
        self._views = self._context.socket(zmq.PULL)
        self._views.setsockopt(zmq.RCVHWM, self.queue)
        self._views.bind(self._endpoint("views"))
        views_endpoint = self._views.getsockopt_string(zmq.LAST_ENDPOINT)
        # Per-picture arrays go to the reader as plain .npy files in the private folder: what to skip, and
        # the MD5s the first pass computed, which travel with the pictures so that no worker hashes again.
        array_args = []
        for flag, values, dtype in (("--forward-mask", self.forward_mask, bool),
                                    ("--digests", self.digests, KEY_DTYPE)):
            if values is not None:
                array_args += [flag, self._save_array(f"{flag[2:].replace('-', '_')}.npy", values, dtype)]
        self._spawn("reader", "reader", "--bson", self.bson_path, "--start", str(self.start), "--stop",
                    str(self.stop), "--bind", self._endpoint("products"),
                    *(["--skip-corrupt"] if self.skip_corrupt else []), *array_args)
        products_endpoint = self._wait_ready("reader")
        input_args = [f"--input={','.join(map(str, key[0]))}:{key[1]}" + (f":{key[2]}" if len(key) > 2 else "")
                      for key in self.inputs]
        for k in range(1, self.num_workers + 1):
            self._spawn(f"worker {k}", "worker", "--products", products_endpoint, "--views", views_endpoint,
                        "--multi-view", str(self.multi_view), *input_args)
        log.info("pipeline: reader + %s over %s, views at %s", plural(self.num_workers, "worker"), self.transport,
                 "; ".join(f"{'x'.join(map(str, key[0][1:]))} (resize {key[1]}"
                           + (f", mosaic {key[2]})" if len(key) > 2 else ")") for key in self.inputs))

    def _save_array(self, name, values, dtype):
        """Write an array for the reader into the private folder; returns its path. Written through Python's
        file object: np.save to a path leaves a truncated file, silently, when the disk is full."""
        path = os.path.join(self._tmp, name)
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(values, dtype=dtype), allow_pickle=False)
        try:
            with open(path, "wb") as fh:
                fh.write(buffer.getbuffer())
        except OSError as exc:
            raise PipelineError(f"{path}: {exc.strerror or exc}") from None
        return path

    def _wait_ready(self, name, timeout=60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._control.poll(self.poll_ms):
                frames = self._control.recv_multipart()
                self._raise_if_failed(frames)
                if frames[0] == messages.READY:
                    return frames[2].decode()
            self.check_processes()
        raise PipelineError(f"{name} did not start within {timeout:.0f} s")

    def __exit__(self, *exc):
        self.close()

    def close(self):
        """Stop every child (SIGTERM, then SIGKILL), close the sockets, remove the socket folder."""
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        deadline = time.monotonic() + _STOP_SECONDS
        for process in self.processes.values():
            try:
                process.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if self._context is not None:
            self._context.destroy(linger=0)
            self._context = None
        if self._tmp:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
        if self._previous_sigint is not None:
            signal.signal(signal.SIGINT, self._previous_sigint)
            self._previous_sigint = None

    # ---- running ------------------------------------------------------------------
    def _raise_if_failed(self, frames):
        if frames[0] == messages.FAILED and len(frames) >= 3:
            name, reason = frames[1].decode(errors="replace"), frames[2].decode(errors="replace")
            raise PipelineError(f"{name} failed: {reason}")

    def check_processes(self):
        """Fail if a child died: any worker at any time, the reader unless it finished cleanly;
        stop on a Ctrl-C that arrived while a KeyboardInterrupt could not be raised."""
        if self.interrupted:
            raise KeyboardInterrupt
        for name, process in self.processes.items():
            returncode = process.poll()
            if returncode is None or (name == "reader" and returncode == 0):
                continue
            if self._control.poll(0):  # its own report says more than the exit status
                self._raise_if_failed(self._control.recv_multipart())
            raise PipelineError(f"{name} (pid {process.pid}) {describe_exit(returncode)}")

    def receive(self, max_messages=64):
        """Prepared products that arrived within one poll interval (possibly none); checks the children."""
        received = []
        if self._control.poll(0):
            self._raise_if_failed(self._control.recv_multipart())
        if self._views.poll(self.poll_ms):
            while len(received) < max_messages:
                try:
                    frames = self._views.recv_multipart(flags=zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                received.append(messages.PreparedProduct([f.buffer for f in frames]))
        self.check_processes()
        return received
