"""train.gpu_support: which GPUs an MXNet build runs on, read from libmxnet.so and a fake nvidia-smi.

The fat-binary reader is checked three ways: on ELF files written here, on nvcc's output where the
CUDA compiler is installed, and on the CPU wheel's libmxnet.so (no GPU code). The generation logic
is driven through `main` with a fake `nvidia-smi` per generation, Pascal to Blackwell.
"""
import locale
import os
import platform
import re
import shutil
import struct
import subprocess
import sys
import zipfile

import pytest

from cli.runner import UserError
from tests.elf_builders import fatbin, write_elf
from tests.helpers import REPO_ROOT
from train import gpu_support
from train.gpu_support import (FATBIN_PTX, FATBIN_SASS, WHEEL_CODE, CudaCode, MxnetInstall,
                               code_for, cuda_code_of, generation_of, generation_table, needed_libraries)

pytestmark = pytest.mark.smoke  # standard library only: the part a GPU machine's own python3 runs


# ---- ELF files with a .nv_fatbin section, written by hand --------------------------------------
def test_reads_machine_code_and_ptx_of_several_fat_binaries(tmp_path):
    first = fatbin([(FATBIN_SASS, 80, b"x" * 40), (FATBIN_SASS, 86, b"y" * 24)])
    second = fatbin([(FATBIN_SASS, 70, b"z" * 8), (FATBIN_PTX, 90, b"ptx" * 5)], header_size=80)
    padding = b"\0" * (-len(first) % 8 + 8)   # fat binaries start 8-aligned, sometimes after zeros
    library = write_elf(tmp_path / "libfake.so", {".text": b"\x90" * 13, ".nv_fatbin": first + padding + second})
    code = cuda_code_of(library)
    assert code.sass == {(8, 0), (8, 6), (7, 0)}
    assert code.ptx == {(9, 0)}
    assert code.describe() == "machine code for sm_70, sm_80, sm_86 and compute_90 PTX"


def test_a_library_without_fat_binaries_has_no_gpu_code(tmp_path):
    library = write_elf(tmp_path / "libcpu.so", {".text": b"\x90" * 32})
    assert cuda_code_of(library).empty
    assert cuda_code_of(library).describe() == "no GPU code"


def test_the_cpu_wheels_libmxnet_has_no_gpu_code():
    import mxnet
    library = os.path.join(os.path.dirname(mxnet.__file__), "libmxnet.so")
    assert cuda_code_of(library).empty
    assert "libc.so.6" in needed_libraries(library)
    assert not any(name.startswith("libnvrtc") for name in needed_libraries(library))


def test_not_an_elf_file_is_refused(tmp_path):
    (tmp_path / "libmxnet.so").write_text("not a library")
    with pytest.raises(ValueError, match="not a 64-bit little-endian ELF"):
        cuda_code_of(str(tmp_path / "libmxnet.so"))


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs the CUDA compiler")
def test_agrees_with_nvcc_on_what_it_compiled(tmp_path):
    source = tmp_path / "kernel.cu"
    source.write_text("__global__ void add(float *x) { x[threadIdx.x] += 1.0f; }\n"
                      "void launch(float *x) { add<<<1, 32>>>(x); }\n")
    library = tmp_path / "libkernel.so"
    subprocess.run(["nvcc", "-shared", "-Xcompiler", "-fPIC", "-o", str(library), str(source),
                    "-gencode", "arch=compute_80,code=sm_80", "-gencode", "arch=compute_89,code=sm_89",
                    "-gencode", "arch=compute_90,code=compute_90"], check=True, capture_output=True)
    assert cuda_code_of(str(library)) == CudaCode(sass=frozenset({(8, 0), (8, 9)}), ptx=frozenset({(9, 0)}))


@pytest.mark.skipif(not os.environ.get("MXNET_CUDA_LIBRARY"), reason="set MXNET_CUDA_LIBRARY to an "
                    "mxnet-cu11x 1.9.1 wheel's libmxnet.so (about 900 MB) to check WHEEL_CODE against it")
def test_wheel_code_is_what_the_cuda_wheel_carries():
    library = os.environ["MXNET_CUDA_LIBRARY"]
    assert cuda_code_of(library) == WHEEL_CODE
    assert "libnvrtc.so.11.2" in needed_libraries(library)


def test_needed_libraries_come_from_the_dynamic_section(tmp_path):
    dynstr = b"\0libnvrtc.so.11.2\0libcudart.so.11.0\0"
    dynamic = struct.pack("<qQ", 1, 1) + struct.pack("<qQ", 14, 0) + struct.pack("<qQ", 1, 18) + b"\0" * 16
    library = write_elf(tmp_path / "libneeds.so", {".dynstr": dynstr, ".dynamic": dynamic})
    assert needed_libraries(library) == ["libnvrtc.so.11.2", "libcudart.so.11.0"]
    assert gpu_support.nvrtc_of(library) == "libnvrtc.so.11.2"


# ---- which code runs on which GPU --------------------------------------------------------------
@pytest.mark.parametrize("capability, code, expected", [
    ((6, 1), WHEEL_CODE, "sm_60 machine code"),
    ((7, 5), WHEEL_CODE, "sm_70 machine code"),         # Turing runs Volta's code
    ((8, 9), WHEEL_CODE, "sm_86 machine code"),         # Ada runs Ampere's 8.6 code
    ((9, 0), WHEEL_CODE, None),                         # Hopper: another major, no PTX
    ((10, 0), WHEEL_CODE, None),
    ((3, 7), WHEEL_CODE, None),
    ((8, 6), CudaCode(sass=frozenset({(8, 9)})), None),  # code for a later minor does not run
    ((10, 0), CudaCode(sass=frozenset({(9, 0)}), ptx=frozenset({(9, 0)})), "compute_90 PTX"),
    ((8, 9), CudaCode(ptx=frozenset({(9, 0)})), None),  # PTX of a later architecture does not run
])
def test_code_for_follows_nvidias_compatibility_rules(capability, code, expected):
    how = code_for(capability, code)
    if expected is None:
        assert how is None
    else:
        assert how.startswith(expected)


def test_each_generation_is_named_and_later_parts_fall_in_their_family():
    assert generation_of((8, 9)).name == "Ada"
    assert generation_of((9, 0)).name == "Hopper"
    assert generation_of((12, 0)).name == "Blackwell"
    assert generation_of((11, 0)).name == "Blackwell"   # an unknown later part: no code of 1.9.1 either
    assert generation_of((5, 2)) is None
    assert [g.name for g in gpu_support.GENERATIONS] == ["Pascal", "Volta", "Turing", "Ampere", "Ada", "Hopper",
                                                         "Blackwell"]


# ---- main with a fake nvidia-smi -----------------------------------------------------------------
def fake_nvidia_smi(tmp_path, monkeypatch, listing, old_driver=False):
    """An nvidia-smi on PATH printing `listing` (lines "index, name, cap, driver") for --query-gpu."""
    folder = tmp_path / "bin"
    folder.mkdir(exist_ok=True)
    script = folder / "nvidia-smi"
    rows = "\n".join(listing)
    if old_driver:  # before R510: compute_cap is no field it knows
        without_cap = "\n".join(", ".join(row.split(", ")[:2] + row.split(", ")[3:]) for row in listing)
        script.write_text("#!/bin/sh\ncase \"$1\" in *compute_cap*) echo 'Field \"compute_cap\" is not a valid "
                          f"field to query.'; exit 2;; esac\ncat <<'EOF'\n{without_cap}\nEOF\n")
    else:
        script.write_text(f"#!/bin/sh\ncat <<'EOF'\n{rows}\nEOF\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")


ACCEPTED = [("NVIDIA TITAN Xp", "6.1", "Pascal", "sm_60"), ("Tesla V100-SXM2-16GB", "7.0", "Volta", "sm_70"),
            ("Tesla T4", "7.5", "Turing", "sm_70"), ("NVIDIA A100-SXM4-80GB", "8.0", "Ampere", "sm_80"),
            ("NVIDIA GeForce RTX 3090", "8.6", "Ampere", "sm_86"), ("NVIDIA L4", "8.9", "Ada", "sm_86")]


@pytest.mark.parametrize("name, cap, generation, code", ACCEPTED)
def test_the_wheel_is_accepted_from_pascal_to_ada(tmp_path, monkeypatch, capsys, name, cap, generation, code):
    fake_nvidia_smi(tmp_path, monkeypatch, [f"0, {name}, {cap}, 550.54.15", f"1, {name}, {cap}, 550.54.15"])
    assert gpu_support.main(["--mxnet", "wheel"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "2 GPU(s) listed by nvidia-smi"
    assert lines[1].startswith(f"GPU 0 ({name}): compute capability {cap} ({generation}), driver 550.54.15: "
                               f"runs {code} machine code")
    assert ("TF32 on" in lines[1]) == (cap >= "8.0")


@pytest.mark.parametrize("name, cap, generation", [("NVIDIA H100 80GB HBM3", "9.0", "Hopper"),
                                                   ("NVIDIA H200", "9.0", "Hopper"),
                                                   ("NVIDIA B200", "10.0", "Blackwell"),
                                                   ("NVIDIA GeForce RTX 5090", "12.0", "Blackwell")])
def test_the_wheel_is_refused_on_hopper_and_blackwell_with_the_way_out(tmp_path, monkeypatch, name, cap, generation):
    fake_nvidia_smi(tmp_path, monkeypatch, [f"0, {name}, {cap}, 560.35.03"])
    with pytest.raises(UserError) as error:
        gpu_support.main(["--mxnet", "wheel"])
    message = str(error.value)
    assert message.startswith(f"GPU 0 ({name}) is compute capability {cap} ({generation}): the mxnet-cu117 1.9.1 "
                              "wheel carries machine code for sm_50, sm_60, sm_70, sm_80, sm_86 and no PTX")
    assert "MXNET_FROM_SYSTEM=1" in message and "9.0+PTX" in message and "\n" not in message


def test_a_kepler_gpu_is_refused_and_gpus_selects(tmp_path, monkeypatch, capsys):
    fake_nvidia_smi(tmp_path, monkeypatch, ["0, Tesla K80, 3.7, 470.1", "1, Tesla T4, 7.5, 470.1"])
    with pytest.raises(UserError, match=r"GPU 0 \(Tesla K80\) is compute capability 3.7: .* 5.0 and later"):
        gpu_support.main(["--mxnet", "wheel"])
    assert gpu_support.main(["--mxnet", "wheel", "--gpus", "1"]) == 0
    assert "GPU 1 (Tesla T4)" in capsys.readouterr().out
    with pytest.raises(UserError, match=r"GPUS=2: nvidia-smi lists no GPU 2 \(it lists 0, 1\)"):
        gpu_support.main(["--mxnet", "wheel", "--gpus", "2"])


def test_an_old_driver_without_compute_cap_is_left_to_the_convolution(tmp_path, monkeypatch, capsys):
    fake_nvidia_smi(tmp_path, monkeypatch, ["0, Tesla P100-PCIE-16GB, 6.0, 470.82"], old_driver=True)
    assert gpu_support.main(["--mxnet", "wheel"]) == 0
    assert "driver does not report its compute capability" in capsys.readouterr().out


def test_a_failing_nvidia_smi_is_quoted(tmp_path, monkeypatch):
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "nvidia-smi").write_text("#!/bin/sh\necho \"NVIDIA-SMI has failed because it couldn't communicate "
                                       "with the NVIDIA driver.\"\nexit 9\n")
    (folder / "nvidia-smi").chmod(0o755)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(UserError, match="^nvidia-smi fails: NVIDIA-SMI has failed because it couldn't"):
        gpu_support.main(["--mxnet", "wheel"])


def test_without_nvidia_smi_the_cpu_build_is_fine(monkeypatch, capsys):
    monkeypatch.setattr(gpu_support, "list_gpus", lambda: None)
    assert gpu_support.main([]) == 0
    out = capsys.readouterr().out
    assert "no nvidia-smi on PATH" in out and "MXNet 1.9.1 at " in out and "no GPU code" in out


# ---- the MXNet that is installed ----------------------------------------------------------------
def installed(tmp_path, monkeypatch, version="1.9.1", code=None, in_venv=False):
    library = None
    if code is not None:
        sections = {".nv_fatbin": fatbin([(FATBIN_SASS, a * 10 + b, b"s") for a, b in sorted(code.sass)] +
                                         [(FATBIN_PTX, a * 10 + b, b"p") for a, b in sorted(code.ptx)])}
        library = write_elf(tmp_path / "libmxnet.so", sections)
    install = MxnetInstall(str(tmp_path), version, library, in_venv)
    monkeypatch.setattr(gpu_support, "find_mxnet", lambda: install)
    return install


def test_a_build_with_sm_90_code_runs_on_hopper(tmp_path, monkeypatch, capsys):
    fake_nvidia_smi(tmp_path, monkeypatch, ["0, NVIDIA H100 80GB HBM3, 9.0, 550.54.15"])
    installed(tmp_path, monkeypatch, code=CudaCode(sass=frozenset({(8, 0), (9, 0)}), ptx=frozenset({(9, 0)})))
    assert gpu_support.main(["--system"]) == 0
    out = capsys.readouterr().out
    assert "machine code for sm_80, sm_90 and compute_90 PTX" in out
    assert "GPU 0 (NVIDIA H100 80GB HBM3): compute capability 9.0 (Hopper), driver 550.54.15: runs sm_90" in out


def test_blackwell_runs_a_builds_compute_90_ptx(tmp_path, monkeypatch, capsys):
    fake_nvidia_smi(tmp_path, monkeypatch, ["0, NVIDIA B200, 10.0, 570.86"])
    installed(tmp_path, monkeypatch, code=CudaCode(sass=frozenset({(9, 0)}), ptx=frozenset({(9, 0)})))
    assert gpu_support.main([]) == 0
    assert "runs compute_90 PTX, compiled by the driver at the first start" in capsys.readouterr().out


def test_the_cpu_build_on_a_gpu_machine_is_refused(tmp_path, monkeypatch):
    fake_nvidia_smi(tmp_path, monkeypatch, ["0, NVIDIA H100 80GB HBM3, 9.0, 550.54.15"])
    installed(tmp_path, monkeypatch, code=CudaCode())
    with pytest.raises(UserError, match=r"has no GPU code \(MXNet's CPU build\) and this machine has 1 GPU"):
        gpu_support.main(["--system"])


@pytest.mark.parametrize("version", ["1.8.0", "2.0.0", "1.10.0"])
def test_another_mxnet_version_is_refused(tmp_path, monkeypatch, version):
    installed(tmp_path, monkeypatch, version=version)
    monkeypatch.setattr(gpu_support, "list_gpus", lambda: None)
    with pytest.raises(UserError, match=f"is MXNet {version}; this suite needs 1.9.x"):
        gpu_support.main([])


def test_container_mode_refuses_the_venvs_own_mxnet(tmp_path, monkeypatch):
    installed(tmp_path, monkeypatch, in_venv=True)
    monkeypatch.setattr(gpu_support, "list_gpus", lambda: None)
    with pytest.raises(UserError, match="MXNET_FROM_SYSTEM=1 but .* is this venv's own mxnet"):
        gpu_support.main(["--system"])


def test_container_mode_without_any_mxnet_names_the_python(monkeypatch):
    monkeypatch.setattr(gpu_support, "find_mxnet", lambda: None)
    monkeypatch.setattr(gpu_support, "list_gpus", lambda: None)
    with pytest.raises(UserError, match="no mxnet package in the system's site-packages .*set PYTHON_BIN"):
        gpu_support.main(["--system"])


def test_import_check_refuses_the_cpu_build_where_there_are_gpus():
    with pytest.raises(UserError, match=r"MXNet's CPU build \(mx.runtime.Features: CUDA off\) on a machine with 2"):
        gpu_support.import_check(["gpu0", "gpu1"])
    assert gpu_support.import_check([]).startswith("MXNet 1.9.1 imports from ")


# ---- runtime fusion: the NVRTC probe -------------------------------------------------------------
def test_fusion_is_turned_off_when_the_nvrtc_rejects_the_architecture(tmp_path, monkeypatch, capsys):
    fake_nvidia_smi(tmp_path, monkeypatch, ["0, NVIDIA L4, 8.9, 550.54.15", "1, NVIDIA A10, 8.6, 550.54.15"])
    installed(tmp_path, monkeypatch, code=WHEEL_CODE)
    rejected = {(8, 9)}
    probed = []

    def fake_probe(capability, library):
        probed.append((capability, library))
        return "nvrtc: error: invalid value for --gpu-architecture (-arch)" if capability in rejected else None
    monkeypatch.setattr(gpu_support, "nvrtc_compiles", fake_probe)
    assert gpu_support.main(["--nvrtc", "--nvrtc-library", "libnvrtc.so.11.2"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert probed == [((8, 6), "libnvrtc.so.11.2"), ((8, 9), "libnvrtc.so.11.2")]
    assert "fusion: libnvrtc.so.11.2 compiles compute_86" in out
    assert any(line.startswith("fusion: libnvrtc.so.11.2 cannot compile compute_89") and "MXNET_USE_FUSION=0" in line
               for line in out)
    assert out[-1] == "FUSION=0"
    rejected.clear()
    assert gpu_support.main(["--nvrtc", "--nvrtc-library", "libnvrtc.so.11.2"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "FUSION=1"


def nvrtc_from_pypi(version, folder):
    """libnvrtc.so.11.2 of NVIDIA's nvidia-cuda-nvrtc-cu11 package at `version` (about 22 MB, pip's cache)."""
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
                    "--only-binary=:all:", "--platform", "manylinux2014_x86_64", "-d", str(folder),
                    f"nvidia-cuda-nvrtc-cu11=={version}"], check=True, capture_output=True)
    wheel = next(folder.glob(f"nvidia_cuda_nvrtc_cu11-{version}*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(folder / version)
    return str(folder / version / "nvidia" / "cuda_nvrtc" / "lib" / "libnvrtc.so.11.2")


def pinned(package):
    with open(os.path.join(REPO_ROOT, "requirements-gpu.txt")) as requirements:
        return re.search(rf"^{package}==(\S+)", requirements.read(), re.M).group(1)


@pytest.mark.slow
@pytest.mark.skipif(platform.machine() != "x86_64", reason="NVIDIA's NVRTC packages here are for x86_64")
def test_the_pinned_nvrtc_compiles_for_ada_and_hopper_and_an_older_one_does_not(tmp_path):
    """Why requirements-gpu.txt pins NVRTC 11.8: MXNet's fusion compiles for the GPU's own architecture,
    and NVRTC learned compute_89 and compute_90 in 11.8. Compiling needs no GPU."""
    ours = nvrtc_from_pypi(pinned("nvidia-cuda-nvrtc-cu11"), tmp_path)
    encoding = locale.getpreferredencoding(False)
    for capability in ((6, 0), (8, 6), (8, 9), (9, 0)):
        assert gpu_support.nvrtc_compiles(capability, ours) is None, capability
    assert locale.getpreferredencoding(False) == encoding  # NVRTC's own C locale does not stay
    older = nvrtc_from_pypi("11.7.99", tmp_path)
    assert gpu_support.nvrtc_compiles((8, 6), older) is None
    assert "invalid value for --gpu-architecture" in gpu_support.nvrtc_compiles((8, 9), older)


# ---- the README's table ------------------------------------------------------------------------
def test_the_readme_shows_the_generation_table_as_the_check_knows_it():
    with open(os.path.join(REPO_ROOT, "README.md"), encoding="utf-8") as readme:
        assert generation_table() in readme.read()
