"""Wire format between the prediction processes: ZeroMQ multipart messages of raw bytes.

A message is a small JSON header frame followed by raw byte frames (JPEGs, numpy
buffers). Nothing is ever unpickled: a receiver reads JSON and builds arrays with
`np.frombuffer` after checking the declared shape against the bytes it got.

The two data messages are defined here, each by its encoder and its decoder:
- pictures, reader -> worker: [header {product, _id, skip, digests}, jpeg, jpeg, ..., and when
  `digests` is true the pictures' MD5 digests (16 bytes per picture) from the run's first pass];
- a prepared product, worker -> predictor: [header {product, num_images, num_views, valid,
  shapes[, mosaic_inputs]}, views uint8 (N,3,H,W) for each model input, MD5 digests (16 bytes per picture)].
  The views of an input of `mosaic_inputs` (a network of product mosaics; the key is left out without one) are
  the product's mosaic's: num_views of them, or none when no picture decodes.
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


def encode_pictures(product, product_id, skip, pictures, digests=None):
    """Frames of one product's pictures; `skip`: positions the workers leave out; `digests`: the
    pictures' MD5s, 16 bytes each, concatenated (None: not computed, the worker hashes them)."""
    header = encode_header(product=product, _id=product_id, skip=skip, digests=digests is not None)
    return [header, *pictures] + ([digests] if digests is not None else [])


def decode_pictures(frames):
    """(product, positions to skip, pictures, their digests or None) of `encode_pictures`' frames."""
    header = decode_header(frames[0], required=("product",))
    product = int(header["product"])
    if not header.get("digests"):
        return product, set(header.get("skip", [])), frames[1:], None
    pictures = frames[1:-1]
    return product, set(header.get("skip", [])), pictures, split_digests(frames[-1], len(pictures), product)


def split_digests(frame, num_images, product):
    """The 16-byte digests of a frame holding one per picture of the product."""
    frame = bytes(frame)
    if len(frame) != 16 * num_images:
        raise MessageError(f"product {product}: {len(frame)} bytes of digests for {num_images} pictures")
    return [frame[i:i + 16] for i in range(0, len(frame), 16)]


def encode_product(product, num_views, valid, views_by_input, digests, mosaic_inputs=()):
    """Frames of a prepared product: the views of its valid pictures at each model input (of its mosaic at the
    inputs `mosaic_inputs`), the MD5 digest of every picture."""
    mosaic = {"mosaic_inputs": list(mosaic_inputs)} if mosaic_inputs else {}
    header = encode_header(product=product, num_images=len(valid), num_views=num_views, valid=list(valid),
                           shapes=[list(views.shape) for views in views_by_input], **mosaic)
    return [header, *views_by_input, b"".join(digests)]


class PreparedProduct:
    """One product as a worker prepared it (decoded from `encode_product`'s frames): `views[i]`
    holds the views of the valid pictures at model input i, `num_rows` views each; at a mosaic input (of
    `mosaic_inputs`), the views of the product's mosaic, `mosaic_rows` of them."""

    __slots__ = ("product", "num_images", "num_views", "valid", "views", "digests", "mosaic_inputs")

    def __init__(self, frames):
        header = decode_header(frames[0], required=("product", "num_images", "num_views", "valid", "shapes"))
        self.product = int(header["product"])
        self.num_images = int(header["num_images"])
        self.num_views = int(header["num_views"])
        self.valid = [bool(v) for v in header["valid"]]
        shapes = header["shapes"]
        if not shapes or len(frames) != len(shapes) + 2:
            raise MessageError(f"product {self.product}: {len(frames)} frames for {len(shapes)} model inputs")
        self.views = [array_from_frame(frame, shape, np.uint8) for frame, shape in zip(frames[1:-1], shapes)]
        if len(self.valid) != self.num_images:
            raise MessageError(f"product {self.product}: flags do not match its images")
        self.mosaic_inputs = [int(i) for i in header.get("mosaic_inputs", [])]
        if any(not 0 <= i < len(shapes) for i in self.mosaic_inputs) or \
                len({len(self.views[i]) for i in self.mosaic_inputs} | {0, self.num_views}) > 2:
            raise MessageError(f"product {self.product}: mosaic inputs {self.mosaic_inputs} of {len(shapes)} do not "
                               f"each hold 0 or {self.num_views} views")
        expected = sum(self.valid) * self.num_views
        if any(len(views) != expected for i, views in enumerate(self.views) if i not in self.mosaic_inputs):
            raise MessageError(f"product {self.product}: {[len(v) for v in self.views]} views for "
                               f"{sum(self.valid)} pictures x {self.num_views}")
        self.digests = split_digests(frames[-1], self.num_images, self.product)

    @property
    def num_rows(self):
        """Views per picture input: the valid pictures times the views of each (0 without a picture input)."""
        return next((len(views) for i, views in enumerate(self.views) if i not in self.mosaic_inputs), 0)

    @property
    def mosaic_rows(self):
        """Views of the product's mosaic per mosaic input: num_views, or 0 (no picture decoded, or no mosaic input)."""
        return len(self.views[self.mosaic_inputs[0]]) if self.mosaic_inputs else 0
