"""Wire format between the prediction processes: ZeroMQ multipart messages of raw bytes.

A message is a small JSON header frame followed by raw byte frames (JPEGs, numpy
buffers). Nothing is ever unpickled: a receiver reads JSON and builds arrays with
`np.frombuffer` after checking the declared shape against the bytes it got.
"""
import json

import numpy as np


class MessageError(Exception):
    """A message that does not follow the format."""


def encode_header(**fields):
    return json.dumps(fields, separators=(",", ":")).encode()


def decode_header(frame, required=()):
    try:
        header = json.loads(bytes(frame).decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MessageError(f"unreadable header ({exc})") from None
    if not isinstance(header, dict):
        raise MessageError("header is not a JSON object")
    missing = [name for name in required if name not in header]
    if missing:
        raise MessageError(f"header lacks {', '.join(missing)}")
    return header


def array_from_frame(frame, shape, dtype):
    """A read-only numpy view of a frame, after checking that its size matches `shape`."""
    dtype = np.dtype(dtype)
    shape = tuple(int(n) for n in shape)
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    buffer = memoryview(frame)
    if buffer.nbytes != expected:
        raise MessageError(f"array frame of {buffer.nbytes} bytes, expected {expected} for {shape} {dtype}")
    return np.frombuffer(buffer, dtype=dtype).reshape(shape)


# Control messages from the reader and the workers to the coordinating process.
READY = b"ready"    # [READY, role, endpoint]: the reader's bound endpoint, for the workers
FAILED = b"failed"  # [FAILED, role, one-line reason]
