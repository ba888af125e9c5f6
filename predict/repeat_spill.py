"""Where a repeated picture's image means wait for its later occurrences: fixed-size rows in a
file on disk, read and written with pread/pwrite.

A picture that occurs several times in a run is forwarded once (predict.forward_plan); its
per-model image means (float32, so a repeat's scores are the first occurrence's to the bit) and,
when the store keeps features, each model's views of its features, are written to a free row at
its first occurrence and read at each later one. The row is freed after its last use and taken
by the next repeated picture, so the file grows to the most pictures live at once, not to every
repeated picture. The process's memory does not grow with models x classes: the rows go through
the page cache (which the kernel reclaims), not through a memory map counted in the process's
resident set.

The file is unlinked as soon as it is open: nothing is left on disk when the run ends, however
it ends (a SIGKILL included).
"""
import heapq
import os
import tempfile

import numpy as np

from cli.runner import UserError

SPILL_PREFIX = ".repeat-spill-"


def row_bytes(num_models, num_classes, num_views=1, feature_dims=None):
    """The bytes of one repeated picture's row: its float32 image means (models x classes) and,
    with features, each model's views x D float32 features."""
    return 4 * num_models * num_classes + 4 * num_views * sum(feature_dims or ())


def free_bytes(folder):
    """Free space (bytes) for an unprivileged writer in `folder`."""
    stats = os.statvfs(folder)
    return stats.f_bavail * stats.f_frsize


class RepeatSpill:
    """Rows of (models, classes) float32 means [+ per model (views, D) float32 features] on disk.
    `store(means, features)` -> a row number; `load(row)` -> (means, features); `release(row)`."""

    def __init__(self, folder, num_models, num_classes, num_views=1, feature_dims=None):
        self.folder = folder or tempfile.gettempdir()
        self.means_shape = (num_models, num_classes)
        self.feature_shapes = [(num_views, int(dim)) for dim in feature_dims or ()]
        self.row_bytes = row_bytes(num_models, num_classes, num_views, feature_dims)
        self.fd = None
        self.free_rows = []  # a heap: the lowest free row is reused first, so the file stays short
        self.rows = 0  # rows the file has (the most live at once)
        self.live = 0
        self.bytes_written = self.bytes_read = 0

    def _open(self):
        try:
            fd, path = tempfile.mkstemp(prefix=SPILL_PREFIX, suffix=".tmp", dir=self.folder)
        except OSError as exc:
            raise UserError(f"{self.folder}: cannot write the repeated pictures' file there "
                            f"({exc.strerror or exc}; --repeat-spill-dir)") from None
        os.unlink(path)  # the open descriptor keeps it until the run ends
        self.fd = fd

    def store(self, means, features=None):
        """Write a row; returns its number."""
        if self.fd is None:
            self._open()
        if self.free_rows:
            row = heapq.heappop(self.free_rows)
        else:
            row, self.rows = self.rows, self.rows + 1
        parts = [np.ascontiguousarray(means, dtype=np.float32).reshape(-1)]
        parts += [np.ascontiguousarray(f, dtype=np.float32).reshape(-1) for f in features or ()]
        data = np.concatenate(parts) if len(parts) > 1 else parts[0]
        if data.nbytes != self.row_bytes:
            raise ValueError(f"internal: a spill row of {data.nbytes} bytes, expected {self.row_bytes}")
        self._pwrite(memoryview(data).cast("B"), row * self.row_bytes)
        self.live += 1
        self.bytes_written += self.row_bytes
        return row

    def _pwrite(self, view, offset):
        try:
            while len(view):  # pwrite may write less than asked
                written = os.pwrite(self.fd, view, offset)
                view, offset = view[written:], offset + written
        except OSError as exc:
            raise UserError(f"{self.folder}: writing the repeated pictures' file: {exc.strerror or exc} "
                            "(--repeat-spill-dir elsewhere, or --repeat-spill-gb smaller)") from None

    def load(self, row):
        """(means (models, classes), [per model (views, D)] or None) of a row."""
        data = np.empty(self.row_bytes // 4, dtype=np.float32)
        view, offset = memoryview(data).cast("B"), row * self.row_bytes
        while len(view):
            read = os.preadv(self.fd, [view], offset)
            if read == 0:
                raise ValueError(f"internal: spill row {row} past the end of the file")
            view, offset = view[read:], offset + read
        self.bytes_read += self.row_bytes
        at = self.means_shape[0] * self.means_shape[1]
        means = data[:at].reshape(self.means_shape)
        if not self.feature_shapes:
            return means, None
        features = []
        for shape in self.feature_shapes:
            features.append(data[at:at + shape[0] * shape[1]].reshape(shape))
            at += shape[0] * shape[1]
        return means, features

    def release(self, row):
        heapq.heappush(self.free_rows, row)
        self.live -= 1

    @property
    def file_bytes(self):
        return self.rows * self.row_bytes

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
