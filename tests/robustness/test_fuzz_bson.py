"""Seeded fuzzing of the BSON reader and index: random files, and random flips, truncations,
insertions and length-prefix edits of Kaggle's real sample file. Every outcome must be a clean index or the
documented error (BsonFormatError, a one-line UserError naming the file and byte offset)."""
import logging
import os
import shutil
import struct
import time

import numpy as np
import pytest

from data.bson_index import BsonFormatError, BsonIndex
from tests.helpers import shared_file

SECONDS = float(os.environ.get("FUZZ_SECONDS", "3"))  # bounded: CI runs it on every push (FUZZ_SECONDS=600 for a long hunt)


def mutate(data, rng):
    data = bytearray(data)
    kind = rng.integers(7)
    if kind == 6:  # not BSON at all: random bytes, sometimes starting with a plausible length
        noise = rng.integers(0, 256, rng.integers(1, 4096), dtype=np.uint8).tobytes()
        if rng.integers(2):
            noise = struct.pack("<i", len(noise)) + noise[4:]
        return noise
    if kind == 0:  # flip a few bytes
        for at in rng.integers(0, len(data), rng.integers(1, 8)):
            data[at] = rng.integers(256)
    elif kind == 1:  # truncate
        del data[rng.integers(1, len(data)):]
    elif kind == 2:  # insert garbage
        at = rng.integers(len(data))
        data[at:at] = rng.integers(0, 256, rng.integers(1, 64), dtype=np.uint8).tobytes()
    elif kind == 3:  # rewrite a document length prefix (zero, negative, huge, off by a little)
        offset = _document_offsets(data, rng)
        value = int(rng.choice([0, -1, 4, 5, 2 ** 31 - 1, len(data) * 2, struct.unpack_from("<i", data, offset)[0]
                                + int(rng.integers(-9, 10))]))
        struct.pack_into("<i", data, offset, value)
    elif kind == 4:  # rewrite an element length inside a document (strings, binaries, sub-documents)
        at = rng.integers(0, len(data) - 4)
        struct.pack_into("<i", data, at, int(rng.integers(-5, 1 << 20)))
    else:  # delete a range
        at = rng.integers(len(data))
        del data[at:at + rng.integers(1, 200)]
    return bytes(data)


def _document_offsets(data, rng):
    offsets, at = [], 0
    while at + 4 <= len(data) and len(offsets) < 200:
        offsets.append(at)
        length = struct.unpack_from("<i", data, at)[0]
        if length <= 4:
            break
        at += length
    return int(rng.choice(offsets))


@pytest.mark.parametrize("skip_corrupt", [False, True])
def test_mutated_bson_files_fail_only_with_the_documented_error(tmp_path, skip_corrupt, caplog):
    caplog.set_level(logging.ERROR, logger="data.bson_index")  # thousands of skip warnings otherwise
    original = open(shared_file("train_example.bson"), "rb").read()
    rng = np.random.default_rng(20261129 + skip_corrupt)
    path = tmp_path / "mutant.bson"
    deadline = time.monotonic() + SECONDS
    runs = outcomes_ok = outcomes_error = runs_with_skips = 0
    while time.monotonic() < deadline:
        mutant = mutate(original, rng)
        path.write_bytes(mutant)
        runs += 1
        try:
            index = BsonIndex.build(str(path), skip_corrupt=skip_corrupt, progress=False)
            for _, pictures in index.iter_product_images():  # reading what was indexed works too
                assert all(isinstance(p, bytes) for p in pictures)
            index.close()
            outcomes_ok += 1
            runs_with_skips += bool(index.skipped)
        except BsonFormatError as exc:
            message = str(exc)
            assert str(path) in message and "byte offset" in message and "\n" not in message, message
            outcomes_error += 1
    assert runs > 50
    if skip_corrupt:  # damage is skipped and reported, never raised
        assert outcomes_error == 0 and runs_with_skips > 0
    else:
        assert outcomes_error > 0
    shutil.rmtree(tmp_path, ignore_errors=True)
