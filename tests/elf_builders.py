"""Shared libraries written by hand for the tests of train.gpu_support and scripts/gpu_check.sh: an
ELF file with chosen sections, and fat binaries (the .nv_fatbin section's format) of chosen code."""
import struct

from train.gpu_support import FATBIN_MAGIC


def fatbin(entries, header_size=64):
    """One fat binary: a container header, then (kind, arch, payload bytes) entries."""
    body = b""
    for kind, arch, payload in entries:
        header = struct.pack("<HHIQ", kind, 0x101, header_size, len(payload))
        header += struct.pack("<III", 0, 0, 0x10008) + struct.pack("<I", arch)
        body += header.ljust(header_size, b"\0") + payload
    return struct.pack("<IHHQ", FATBIN_MAGIC, 1, 16, len(body)) + body


def write_elf(path, sections):
    """A 64-bit little-endian ELF holding `sections` ({name: bytes}) and a section-name table."""
    names = b"\0" + b"".join(name.encode() + b"\0" for name in sections) + b".shstrtab\0"
    contents = list(sections.values()) + [names]
    offset, blobs, headers = 64, b"", [b"\0" * 64]
    name_offset = 1
    for name, data in zip(list(sections) + [".shstrtab"], contents):
        headers.append(struct.pack("<IIQQQQIIQQ", name_offset, 1, 0, 0, offset + len(blobs), len(data), 0, 0, 8, 0))
        name_offset += len(name) + 1
        blobs += data + b"\0" * (-len(data) % 8)
    shoff = offset + len(blobs)
    elf_header = struct.pack("<16sHHIQQQIHHHHHH", b"\x7fELF\x02\x01\x01" + b"\0" * 9, 3, 62, 1, 0, 0, shoff, 0,
                             64, 0, 0, 64, len(headers), len(headers) - 1)
    path.write_bytes(elf_header + blobs + b"".join(headers))
    return str(path)
