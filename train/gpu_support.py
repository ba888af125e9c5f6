"""Which GPUs the MXNet of this environment can run on, and what to do when it cannot.

A machine that cannot run the suite is told in one line before anything heavy happens, not after
an install and a CUDA error 209 ("no kernel image is available") at the first convolution:
- the GPUs and their compute capabilities come from `nvidia-smi`;
- the GPU code MXNet carries is read from libmxnet.so's `.nv_fatbin` section, without CUDA:
  machine code (SASS) for sm_XY runs on GPUs of major X and minor >= Y (sm_86 on Ada's 8.9), PTX
  for compute_XY is compiled by the driver for any GPU of capability >= X.Y, nothing else runs;
- the MXNet version comes from mxnet/libinfo.py, without importing MXNet (the import needs
  numpy < 1.24, which a container's own numpy may not be).
`--import` then imports MXNet and asks `mx.runtime.Features()` for CUDA, once the venv is complete.
`--nvrtc` compiles a kernel the way MXNet's runtime fusion does, with the NVRTC that libmxnet.so
loads: NVRTC older than 11.8 rejects Ada's and Hopper's architectures.

Only the standard library is imported at module level: this runs under whatever python3 a GPU
machine has, before the project's venv exists (scripts/gpu_check.sh, scripts/ensure_venv.sh).

    python -m train.gpu_support                  # the GPUs here and the MXNet this Python finds
    python -m train.gpu_support --mxnet wheel    # against the official mxnet-cu117 wheel, before installing it
    python -m train.gpu_support --table          # the generation table of the README
"""
import argparse
import ctypes
import importlib.util
import mmap
import os
import re
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass, field
from typing import FrozenSet, List, Optional, Tuple

from cli.runner import HelpFormatter, UserError, run_cli

Capability = Tuple[int, int]

DOCS = "docs/gpus.md"
CONTAINER = "nvcr.io/nvidia/mxnet:24.06-py3"
CONTAINER_HINT = (f"use NVIDIA's MXNet container ({CONTAINER}: MXNet 1.9.1, CUDA 12.4, Python 3.10) with "
                  f"MXNET_FROM_SYSTEM=1, or build MXNet 1.9.1 with CUDA 11.8, cuDNN 8.9 and "
                  f"MXNET_CUDA_ARCH=\"8.0;8.6;8.9;9.0+PTX\" ({DOCS})")
TF32_OFF = "NVIDIA_TF32_OVERRIDE=0"
FUSION_OFF = "MXNET_USE_FUSION=0"


# ---- GPU generations --------------------------------------------------------------------------
@dataclass(frozen=True)
class Generation:
    name: str
    capabilities: Tuple[Capability, ...]
    examples: str
    install: str           # the install path that works
    check: str             # what scripts/gpu_check.sh checks for it, beyond the convolution and training steps
    tf32: bool             # float32 GEMMs and convolutions default to TF32 on it
    fusion: str            # MXNet's runtime fusion (NVRTC) on it


WHEEL = "pip wheel: `REQUIREMENTS=requirements-gpu.txt` (mxnet-cu117)"
GENERATIONS = (
    Generation("Pascal", ((6, 0), (6, 1), (6, 2)), "P100, GTX 1080, Titan Xp (the original's GPUs)", WHEEL,
               "libmxnet.so has sm_60 code", False, "works (NVRTC 11.x knows compute_6x)"),
    Generation("Volta", ((7, 0), (7, 2)), "V100", WHEEL, "libmxnet.so has sm_70 code", False, "works"),
    Generation("Turing", ((7, 5),), "T4, RTX 2080", WHEEL, "libmxnet.so has sm_70 code (runs on 7.5)", False,
               "works"),
    Generation("Ampere", ((8, 0), (8, 6), (8, 7)), "A100, A10, A40, RTX 3090", WHEEL,
               "libmxnet.so has sm_80 / sm_86 code", True, "works"),
    Generation("Ada", ((8, 9),), "L4, L40S, RTX 4090",
               "pip wheel + NVRTC 11.8: requirements-gpu.txt brings nvidia-cuda-nvrtc-cu11==11.8.89",
               "libmxnet.so has sm_86 code (runs on 8.9); NVRTC compiles compute_89", True,
               f"works with requirements-gpu.txt's NVRTC 11.8.89 (NVRTC before 11.8, e.g. 11.7.99, rejects "
               f"compute_89); gpu_check sets {FUSION_OFF} when its probe fails"),
    Generation("Hopper", ((9, 0),), "H100, H200, GH200",
               f"NVIDIA's container {CONTAINER} with MXNET_FROM_SYSTEM=1, or a source build "
               "(CUDA 11.8, cuDNN 8.9, MXNET_CUDA_ARCH=\"8.0;8.6;8.9;9.0+PTX\")",
               "libmxnet.so has sm_90 code or compute_90 PTX (the wheels have neither)", True,
               "works with NVRTC >= 11.8 (the container's is 12.4)"),
    Generation("Blackwell", ((10, 0), (10, 3), (12, 0), (12, 1)), "B200, GB200, RTX 5090, RTX PRO 6000",
               "no tested path: a build holding compute_90 PTX (the source build above; the check reads "
               "whether the container's has it), JIT-compiled by the driver at the first start",
               "libmxnet.so has PTX <= the GPU's capability", True,
               f"needs NVRTC >= 12.8 for compute_100/120 (the container's 12.4 has not): {FUSION_OFF}"),
)
OLDER = "Maxwell (5.x) runs the wheel's sm_50 code; Kepler (3.x) and older run nothing of MXNet 1.9.1's wheels"


def parse_capability(text) -> Optional[Capability]:
    """'8.9' -> (8, 9); None for what is no capability ('[N/A]', 'unknown')."""
    found = re.fullmatch(r"\s*(\d+)\.(\d+)\s*", text or "")
    return (int(found.group(1)), int(found.group(2))) if found else None


def generation_of(capability: Capability) -> Optional[Generation]:
    for generation in GENERATIONS:
        if capability in generation.capabilities:
            return generation
    majors = {major: generation for generation in GENERATIONS for major, _ in generation.capabilities}
    if capability[0] >= 10:
        return GENERATIONS[-1]  # a later Blackwell part: the same story
    return majors.get(capability[0]) if capability[0] >= 6 else None


def capability_text(capability: Capability) -> str:
    return f"{capability[0]}.{capability[1]}"


# ---- GPUs from nvidia-smi ---------------------------------------------------------------------
@dataclass(frozen=True)
class Gpu:
    index: int
    name: str
    capability: Optional[Capability]   # None when the driver cannot report it (before R510)
    driver: str


def list_gpus(command="nvidia-smi") -> Optional[List[Gpu]]:
    """The GPUs nvidia-smi lists; None without nvidia-smi (no NVIDIA driver); UserError when it fails."""
    if shutil.which(command) is None:
        return None
    done = _query(command, "index,name,compute_cap,driver_version")
    if done.returncode != 0 and "compute_cap" in done.stdout + done.stderr:   # drivers before 510
        done = _query(command, "index,name,driver_version")
        rows = [row[:2] + ["unknown"] + row[2:] for row in _rows(done)]
    else:
        rows = _rows(done)
    if done.returncode != 0:
        message = next((line for line in (done.stdout + done.stderr).splitlines() if line.strip()), "no output")
        raise UserError(f"nvidia-smi fails: {message.strip()}")
    gpus = []
    for row in rows:
        if len(row) < 4 or not row[0].isdigit():
            raise UserError(f"nvidia-smi printed a line this check cannot read: {', '.join(row)}")
        gpus.append(Gpu(int(row[0]), row[1], parse_capability(row[2]), row[3]))
    return gpus


def _query(command, fields):
    return subprocess.run([command, f"--query-gpu={fields}", "--format=csv,noheader"], capture_output=True,
                          text=True)


def _rows(done):
    return [[cell.strip() for cell in line.split(",")] for line in done.stdout.splitlines() if line.strip()]


def select_gpus(gpus: List[Gpu], gpus_text: str) -> List[Gpu]:
    """The GPUs of '0,2' (all when empty); UserError for an id nvidia-smi does not list."""
    wanted = [item.strip() for item in (gpus_text or "").split(",") if item.strip()]
    if not wanted:
        return gpus
    by_index = {str(gpu.index): gpu for gpu in gpus}
    missing = [item for item in wanted if item not in by_index]
    if missing:
        raise UserError(f"GPUS={gpus_text}: nvidia-smi lists no GPU {', '.join(missing)} "
                        f"(it lists {', '.join(by_index) or 'none'})")
    return [by_index[item] for item in wanted]


# ---- the GPU code inside libmxnet.so ----------------------------------------------------------
FATBIN_MAGIC = 0xBA55ED50     # the header of each fat binary in the .nv_fatbin section
FATBIN_PTX, FATBIN_SASS = 1, 2
# An entry header: kind (u16), version (u16), header size (u32), payload size (u64), then at byte 28
# the architecture as a number (86 for sm_86). Checked against cuobjdump on nvcc's output.
ENTRY_ARCH_OFFSET = 28


@dataclass(frozen=True)
class CudaCode:
    sass: FrozenSet[Capability] = field(default_factory=frozenset)
    ptx: FrozenSet[Capability] = field(default_factory=frozenset)

    @property
    def empty(self):
        return not self.sass and not self.ptx

    def describe(self):
        if self.empty:
            return "no GPU code"
        sass = ", ".join(f"sm_{a}{b}" for a, b in sorted(self.sass)) or "none"
        ptx = ", ".join(f"compute_{a}{b}" for a, b in sorted(self.ptx)) or "no"
        return f"machine code for {sass} and {ptx} PTX"


# The official mxnet-cu112..cu117 1.9.1 wheels (read off mxnet-cu117's libmxnet.so by cuda_code_of;
# the same as cuobjdump lists, ../shared/reference/gpu_2026.md)
WHEEL_CODE = CudaCode(sass=frozenset({(5, 0), (6, 0), (7, 0), (8, 0), (8, 6)}), ptx=frozenset())


def _arch(number) -> Capability:
    return (number // 10, number % 10)


def elf_sections(data) -> dict:
    """{section name: (file offset, size)} of a 64-bit little-endian ELF file's bytes (an mmap)."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF file")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    if shnum == 0 and shoff:  # 0xff00 sections or more: the count is in section 0's size
        shnum, = struct.unpack_from("<Q", data, shoff + 32)
    headers = []
    for i in range(shnum):
        base = shoff + i * shentsize
        name, = struct.unpack_from("<I", data, base)
        offset, size = struct.unpack_from("<QQ", data, base + 24)
        headers.append((name, offset, size))
    names_offset = headers[shstrndx][1] if shnum else 0
    sections = {}
    for name, offset, size in headers:
        end = data.find(b"\0", names_offset + name)
        sections[bytes(data[names_offset + name:end]).decode("latin-1")] = (offset, size)
    return sections


def fatbin_entries(data, offset, size):
    """(kind, arch number) of every entry of the fat binaries in data[offset:offset + size]."""
    position, end = offset, offset + size
    entries = []
    while position + 16 <= end:
        magic, _version, header_size, fat_size = struct.unpack_from("<IHHQ", data, position)
        if magic != FATBIN_MAGIC:  # padding between fat binaries: the next one starts 8-aligned
            position = (position + 8) & ~7
            continue
        entry, last = position + header_size, position + header_size + fat_size
        while entry + ENTRY_ARCH_OFFSET + 4 <= last:
            kind, _, entry_header, payload = struct.unpack_from("<HHIQ", data, entry)
            arch, = struct.unpack_from("<I", data, entry + ENTRY_ARCH_OFFSET)
            entries.append((kind, arch))
            if entry_header == 0:
                break
            entry += entry_header + payload
        position = last
    return entries


def cuda_code_of(library) -> CudaCode:
    """The SASS and PTX architectures of a shared library (no .nv_fatbin: no GPU code)."""
    with open(library, "rb") as handle:
        if os.fstat(handle.fileno()).st_size == 0:
            raise ValueError("empty file")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            sections = elf_sections(data)
            if ".nv_fatbin" not in sections:
                return CudaCode()
            entries = fatbin_entries(data, *sections[".nv_fatbin"])
    return CudaCode(sass=frozenset(_arch(a) for kind, a in entries if kind == FATBIN_SASS),
                    ptx=frozenset(_arch(a) for kind, a in entries if kind == FATBIN_PTX))


def needed_libraries(library) -> List[str]:
    """The DT_NEEDED entries of a shared library (libnvrtc.so.11.2, libcudart.so.11.0, ...)."""
    with open(library, "rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        sections = elf_sections(data)
        if ".dynamic" not in sections or ".dynstr" not in sections:
            return []
        (dyn_offset, dyn_size), (str_offset, _) = sections[".dynamic"], sections[".dynstr"]
        needed = []
        for base in range(dyn_offset, dyn_offset + dyn_size, 16):
            tag, value = struct.unpack_from("<qQ", data, base)
            if tag == 0:
                break
            if tag == 1:  # DT_NEEDED
                end = data.find(b"\0", str_offset + value)
                needed.append(bytes(data[str_offset + value:end]).decode("latin-1"))
        return needed


def code_for(capability: Capability, code: CudaCode) -> Optional[str]:
    """How `code` runs on a GPU of `capability`, or None when nothing of it does."""
    major, minor = capability
    sass = [arch for arch in code.sass if arch[0] == major and arch[1] <= minor]
    if sass:
        best = max(sass)
        return f"sm_{best[0]}{best[1]} machine code"
    ptx = [arch for arch in code.ptx if arch <= capability]
    if ptx:
        best = max(ptx)
        return (f"compute_{best[0]}{best[1]} PTX, compiled by the driver at the first start (minutes; kept in "
                f"~/.nv/ComputeCache, raise CUDA_CACHE_MAXSIZE to 4 GB so that it stays)")
    return None


# ---- the MXNet this Python finds --------------------------------------------------------------
@dataclass(frozen=True)
class MxnetInstall:
    package: str              # the mxnet package folder
    version: str
    library: Optional[str]    # libmxnet.so, when found
    in_venv: bool             # inside this venv's own site-packages (not the system's)


def find_mxnet() -> Optional[MxnetInstall]:
    """The mxnet package `import mxnet` would take, without importing it; None when there is none."""
    spec = importlib.util.find_spec("mxnet")
    if spec is None or not spec.submodule_search_locations:
        return None
    package = os.path.realpath(list(spec.submodule_search_locations)[0])
    version = "unknown"
    try:
        with open(os.path.join(package, "libinfo.py")) as handle:
            found = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", handle.read(), re.M)
        version = found.group(1) if found else version
    except OSError:
        pass
    in_venv = sys.prefix != sys.base_prefix and package.startswith(os.path.realpath(sys.prefix) + os.sep)
    return MxnetInstall(package, version, _find_library(package), in_venv)


def _find_library(package):
    """libmxnet.so where mxnet/libinfo.py looks for it (the package, MXNET_LIBRARY_PATH, ../../lib)."""
    candidates = [os.environ.get("MXNET_LIBRARY_PATH", ""), os.path.join(package, "libmxnet.so"),
                  os.path.join(package, "..", "..", "lib", "libmxnet.so"),
                  os.path.join(package, "..", "..", "build", "libmxnet.so"), "/usr/local/lib/libmxnet.so"]
    return next((os.path.realpath(path) for path in candidates if path and os.path.isfile(path)), None)


def check_version(install: MxnetInstall):
    if not re.match(r"1\.9(\.|$)", install.version):
        raise UserError(f"{install.package} is MXNet {install.version}; this suite needs 1.9.x (the 1.9.1 API, "
                        f"and 2.x has no mx.mod.Module): install mxnet==1.9.1, or use {CONTAINER}")


# ---- NVRTC, as MXNet's runtime fusion uses it -------------------------------------------------
PROBE_KERNEL = b'extern "C" __global__ void probe(float *x) { x[threadIdx.x] *= 2.0f; }'


def nvrtc_compiles(capability: Capability, library: str) -> Optional[str]:
    """None when `library` (an NVRTC) compiles a kernel for compute_XY with MXNet's fusion options;
    else why not, in a few words."""
    try:
        nvrtc = ctypes.CDLL(library)
    except OSError as exc:
        return f"{library} does not load ({exc})"
    # NVRTC switches the calling thread to its own C locale (uselocale), after which Python's
    # default text encoding is ASCII: measured with 11.8.89. Give the thread its locale back.
    libc = ctypes.CDLL(None)
    libc.uselocale.restype, libc.uselocale.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
    thread_locale = libc.uselocale(None)
    try:
        return _compile_probe(nvrtc, capability)
    finally:
        libc.uselocale(thread_locale)


def _compile_probe(nvrtc, capability):
    program = ctypes.c_void_p()
    if nvrtc.nvrtcCreateProgram(ctypes.byref(program), PROBE_KERNEL, b"probe.cu", 0, None, None) != 0:
        return "nvrtcCreateProgram fails"
    options = [f"--gpu-architecture=compute_{capability[0]}{capability[1]}".encode(), b"--std=c++11",
               b"-default-device"]
    result = nvrtc.nvrtcCompileProgram(program, len(options), (ctypes.c_char_p * len(options))(*options))
    log = ""
    if result != 0:
        size = ctypes.c_size_t()
        nvrtc.nvrtcGetProgramLogSize(program, ctypes.byref(size))
        text = ctypes.create_string_buffer(size.value)
        nvrtc.nvrtcGetProgramLog(program, text)
        log = text.value.decode(errors="replace").strip().splitlines()
        log = log[0] if log else f"error {result}"
    nvrtc.nvrtcDestroyProgram(ctypes.byref(program))
    return log or None


def nvrtc_of(library) -> Optional[str]:
    """The NVRTC a libmxnet.so links to (its soname; the loader finds it on LD_LIBRARY_PATH)."""
    return next((name for name in needed_libraries(library) if name.startswith("libnvrtc")), None)


# ---- the verdict ------------------------------------------------------------------------------
def check_gpus(gpus: List[Gpu], code: CudaCode, code_source: str) -> List[str]:
    """One line per GPU on how the code runs on it; UserError naming the first GPU it cannot run on."""
    lines = []
    for gpu in gpus:
        label = f"GPU {gpu.index} ({gpu.name})"
        if gpu.capability is None:
            lines.append(f"{label}: the driver does not report its compute capability; the convolution of "
                         f"gpu_check.sh's step 3 tests it")
            continue
        generation = generation_of(gpu.capability)
        named = f"compute capability {capability_text(gpu.capability)}" + (
            f" ({generation.name})" if generation else "")
        how = code_for(gpu.capability, code)
        if how is None:
            raise UserError(f"{label} is {named}: {code_source} carries {code.describe()}, so none of its kernels "
                            f"runs on it; {_remedy(gpu.capability)}")
        extras = []
        if generation and generation.tf32:
            state = "off" if os.environ.get("NVIDIA_TF32_OVERRIDE") == "0" else "on"
            extras.append(f"TF32 {state} (the original's true float32: {TF32_OFF})")
        lines.append(f"{label}: {named}, driver {gpu.driver}: runs {how}" +
                     (f"; {'; '.join(extras)}" if extras else ""))
    return lines


def _remedy(capability: Capability):
    if capability < (5, 0):
        return "MXNet 1.9.1 supports compute capability 5.0 and later: use a newer GPU"
    if capability >= (9, 0):
        return CONTAINER_HINT
    return f"build MXNet 1.9.1 for it from source ({DOCS})"


def fusion_lines(gpus: List[Gpu], nvrtc: str) -> Tuple[List[str], bool]:
    """(lines, whether MXNet's runtime fusion must be turned off) from an NVRTC probe per capability."""
    lines, turn_off = [], False
    for capability in sorted({gpu.capability for gpu in gpus if gpu.capability}):
        problem = nvrtc_compiles(capability, nvrtc)
        arch = f"compute_{capability[0]}{capability[1]}"
        if problem:
            turn_off = True
            lines.append(f"fusion: {nvrtc} cannot compile {arch} ({problem}): set {FUSION_OFF}, or bring "
                         f"NVRTC >= 11.8 (requirements-gpu.txt's nvidia-cuda-nvrtc-cu11==11.8.89)")
        else:
            lines.append(f"fusion: {nvrtc} compiles {arch}")
    return lines, turn_off


def import_check(gpus):
    """After the install: MXNet imports, is 1.9.x and, on a machine with GPUs, was built with CUDA."""
    try:
        import mxnet as mx
    except Exception as exc:  # noqa: BLE001 - any import failure is the user's install to fix
        message = str(exc).strip().splitlines()
        raise UserError(f"MXNet does not import: {type(exc).__name__}: {message[-1] if message else ''}") from None
    features = mx.runtime.Features()
    cuda = features.is_enabled("CUDA")
    where = os.path.dirname(mx.__file__)
    if gpus and not cuda:
        raise UserError(f"{where} is MXNet's CPU build (mx.runtime.Features: CUDA off) on a machine with "
                        f"{len(gpus)} GPU(s): use a CUDA build ({CONTAINER} with MXNET_FROM_SYSTEM=1, or "
                        "REQUIREMENTS=requirements-gpu.txt)")
    enabled = ", ".join(f"{name} {'yes' if features.is_enabled(name) else 'no'}" for name in ("CUDA", "CUDNN", "NCCL"))
    return f"MXNet {mx.__version__} imports from {where}: {enabled}"


# ---- the table of the README ------------------------------------------------------------------
def generation_table() -> str:
    rows = ["| generation | compute capability | e.g. | install path | what gpu_check.sh checks | TF32 by default "
            "| runtime fusion (NVRTC) |", "|---|---|---|---|---|---|---|"]
    for generation in GENERATIONS:
        capabilities = ", ".join(capability_text(c) for c in generation.capabilities)
        tf32 = f"yes: `{TF32_OFF}` for the original's float32" if generation.tf32 else "no (true float32)"
        rows.append(f"| {generation.name} | {capabilities} | {generation.examples} | {generation.install} | "
                    f"{generation.check} | {tf32} | {generation.fusion} |")
    return "\n".join(rows) + f"\n\n{OLDER}."


# ---- command line ----------------------------------------------------------------------------
def parse_args(argv):
    parser = argparse.ArgumentParser(prog="python -m train.gpu_support", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--gpus", default="", help="GPU ids to check, e.g. 0,1 (empty: every GPU nvidia-smi lists)")
    parser.add_argument("--mxnet", choices=["installed", "wheel"], default="installed",
                        help="installed: the MXNet this Python finds; wheel: the official mxnet-cu117 1.9.1 "
                             "wheel's code, before it is installed")
    parser.add_argument("--system", action="store_true",
                        help="container mode (MXNET_FROM_SYSTEM=1): the MXNet must come from the system's "
                             "site-packages, not from this venv's own")
    parser.add_argument("--import", dest="import_mxnet", action="store_true",
                        help="also import MXNet and check mx.runtime.Features (after the install)")
    parser.add_argument("--nvrtc", action="store_true",
                        help="compile a kernel for each GPU's architecture with the NVRTC libmxnet.so links to, "
                             "as MXNet's runtime fusion does; print FUSION=0 when it fails")
    parser.add_argument("--nvrtc-library", default=None,
                        help="the NVRTC to probe (default: the soname libmxnet.so links to)")
    parser.add_argument("--table", action="store_true", help="print the GPU generation table and stop")
    return parser.parse_args(argv)


def installed_code(args, gpus):
    """(code, description of where it was read) of the MXNet this Python finds; lines to print."""
    install = find_mxnet()
    if install is None:
        where = "the system's site-packages" if args.system else "this Python"
        raise UserError(f"no mxnet package in {where} ({sys.executable})" +
                        (f": MXNET_FROM_SYSTEM=1 is for a Python that already has MXNet 1.9.x, such as "
                         f"{CONTAINER}'s python3; set PYTHON_BIN to it" if args.system else
                         ": install it (./run_tests.sh makes the venv)"))
    if args.system and install.in_venv:
        raise UserError(f"MXNET_FROM_SYSTEM=1 but {install.package} is this venv's own mxnet, not the system's: "
                        f"delete {sys.prefix} and run again")
    check_version(install)
    lines = [f"MXNet {install.version} at {install.package}" + (" (the system's)" if args.system else "")]
    if install.library is None:
        lines.append("libmxnet.so not found beside it: its GPU code cannot be read; step 3 of gpu_check.sh tests it")
        return None, install, lines
    try:
        code = cuda_code_of(install.library)
    except (OSError, ValueError) as exc:
        raise UserError(f"{install.library}: cannot read it ({exc})") from None
    lines.append(f"{install.library}: {code.describe()}")
    if gpus and code.empty:
        raise UserError(f"{install.library} has no GPU code (MXNet's CPU build) and this machine has "
                        f"{len(gpus)} GPU(s): " + (CONTAINER_HINT if args.system else
                                                   "install the CUDA build (REQUIREMENTS=requirements-gpu.txt)"))
    return code, install, lines


def main(argv=None):
    args = parse_args(argv)
    if args.table:
        print(generation_table())
        return 0
    all_gpus = list_gpus()
    gpus = select_gpus(all_gpus, args.gpus) if all_gpus is not None else []
    lines = [f"{len(gpus)} GPU(s) listed by nvidia-smi" if all_gpus is not None else
             "no nvidia-smi on PATH: no NVIDIA driver, no GPU to check"]
    install = None
    if args.mxnet == "wheel":
        code, source = WHEEL_CODE, "the mxnet-cu117 1.9.1 wheel"
    else:
        code, install, found = installed_code(args, gpus)
        lines += found
        source = install.library or install.package
    if code is not None:
        lines += check_gpus(gpus, code, source)
    if args.import_mxnet:
        lines.append(import_check(gpus))
    turn_fusion_off = False
    if args.nvrtc and gpus:
        nvrtc = args.nvrtc_library or (install and install.library and nvrtc_of(install.library))
        if nvrtc:
            fusion, turn_fusion_off = fusion_lines(gpus, nvrtc)
            lines += fusion
        else:
            lines.append("fusion: libmxnet.so links to no NVRTC: nothing to probe")
    for line in lines:
        print(line)
    if args.nvrtc:
        print(f"FUSION={0 if turn_fusion_off else 1}")
    return 0


if __name__ == "__main__":
    run_cli(main)
