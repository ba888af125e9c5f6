"""Security: the sockets a running prediction holds listen only on loopback or private ipc:// files."""
import os
import signal
import stat
import time

import pytest

from tests.helpers import wait_for_children
from tests.predict_helpers import start_cli


def socket_inodes(pids):
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                try:
                    target = os.readlink(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(int(target[8:-1]))
        except OSError:
            continue
    return inodes


def listening_tcp(inodes):
    """[(address hex, port)] of LISTEN sockets among `inodes`, IPv4 and IPv6."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            next(fh)
            for line in fh:
                fields = line.split()
                address, port = fields[1].split(":")
                if fields[3] == "0A" and int(fields[9]) in inodes:
                    found.append((address, int(port, 16)))
    return found


def unix_paths(inodes):
    paths = []
    with open("/proc/net/unix") as fh:
        next(fh)
        for line in fh:
            fields = line.split()
            if len(fields) >= 8 and int(fields[6]) in inodes:
                paths.append(fields[7])
    return paths


@pytest.mark.parametrize("transport", ["tcp", "ipc"])
def test_prediction_listens_only_on_loopback_or_private_files(long_run, transport):
    process = start_cli(long_run, long_run["dir"] / "sub.csv", extra=["--transport", transport])
    try:
        children = wait_for_children(process.pid, 3)
        time.sleep(1.0)
        inodes = socket_inodes([process.pid, *children])
        tcp = listening_tcp(inodes)
        if transport == "tcp":
            assert len(tcp) >= 2  # the predictor's views and control sockets, the reader's products socket
            assert all(address == "0100007F" for address, _ in tcp), tcp  # 127.0.0.1 only
        else:
            assert tcp == []
            paths = [p for p in unix_paths(inodes) if not p.startswith("@")]
            assert paths, "no ipc socket files found"
            folders = {os.path.dirname(p) for p in paths}
            for folder in folders:
                mode = stat.S_IMODE(os.stat(folder).st_mode)
                assert mode == 0o700 and os.path.basename(folder).startswith("cdiscount-predict-"), (folder, oct(mode))
    finally:
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=30)
