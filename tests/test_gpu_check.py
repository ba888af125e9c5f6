"""scripts/gpu_check.sh: its step 1 with fake nvidia-smi programs (no install, nothing written), and
the whole script on CPU contexts (slow)."""
import os
import shutil
import subprocess
import sys

import pytest

from tests.elf_builders import fatbin, write_elf
from tests.helpers import REPO_ROOT
from train.gpu_support import FATBIN_PTX, FATBIN_SASS

GPU_CHECK = os.path.join(REPO_ROOT, "scripts", "gpu_check.sh")


def fake_nvidia_smi(folder, rows=None, failure=None):
    """An nvidia-smi printing `rows` ("index, name, cap, driver") for any query of the GPU list, or the
    index column alone for --query-gpu=index; or printing `failure` and exiting 9."""
    folder.mkdir(exist_ok=True)
    script = folder / "nvidia-smi"
    if failure:
        script.write_text(f"#!/bin/sh\necho \"{failure}\"\nexit 9\n")
    else:
        listing = "\n".join(rows)
        indexes = "\n".join(row.split(",")[0] for row in rows)
        script.write_text(f"#!/bin/sh\ncase \"$1\" in --query-gpu=index) cat <<'EOF'\n{indexes}\nEOF\n;;\n"
                          f"*) cat <<'EOF'\n{listing}\nEOF\n;; esac\n")
    script.chmod(0o755)


def run_gpu_check(tmp_path, rows=None, failure=None, venv=None, **env):
    """The script with only /usr/bin and /bin on PATH (their python3 runs step 1), plus a fake nvidia-smi."""
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir(exist_ok=True)
    if rows is not None or failure is not None:
        fake_nvidia_smi(fake_bin, rows, failure)
    path = f"{fake_bin}:/usr/bin:/bin"
    assert rows is not None or failure is not None or shutil.which("nvidia-smi", path=path) is None
    venv_dir, check_dir = venv or tmp_path / "venv", tmp_path / "check"
    result = subprocess.run(["bash", GPU_CHECK], capture_output=True, text=True, timeout=60,
                            env={"PATH": path, "HOME": str(tmp_path), "VENV_DIR": str(venv_dir),
                                 "CHECK_DIR": str(check_dir), **env})
    assert venv is not None or not venv_dir.exists()  # step 1 comes before any install or output
    assert not check_dir.exists()
    return result


def test_on_hopper_the_wheel_is_refused_in_one_line_with_the_way_out(tmp_path):
    result = run_gpu_check(tmp_path, ["0, NVIDIA H100 80GB HBM3, 9.0, 550.54.15", "1, NVIDIA H100 80GB HBM3, 9.0, 550.54.15"])
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: GPU 0 (NVIDIA H100 80GB HBM3) is compute capability 9.0 (Hopper): "
                               "the mxnet-cu117 1.9.1 wheel carries machine code for sm_50, sm_60, sm_70, sm_80, "
                               "sm_86 and no PTX")
    assert "MXNET_FROM_SYSTEM=1" in lines[0] and "nvcr.io/nvidia/mxnet:24.06-py3" in lines[0]
    assert 'MXNET_CUDA_ARCH="8.0;8.6;8.9;9.0+PTX"' in lines[0]


def test_without_nvidia_smi_says_so(tmp_path):
    result = run_gpu_check(tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [result.stderr.strip()] and "error: no nvidia-smi on PATH" in result.stderr


def test_a_failing_driver_is_quoted(tmp_path):
    result = run_gpu_check(tmp_path, failure="NVIDIA-SMI has failed because it couldn't communicate with the "
                                             "NVIDIA driver.")
    assert result.returncode == 2
    assert result.stderr.strip() == ("error: nvidia-smi fails: NVIDIA-SMI has failed because it couldn't "
                                     "communicate with the NVIDIA driver.")


@pytest.mark.parametrize("gpus, listed", [("", "0 1 2 3"), ("2", "2")])
def test_pascal_to_ada_pass_step_one(tmp_path, gpus, listed):
    rows = ["0, Tesla P100-PCIE-16GB, 6.0, 535.1", "1, NVIDIA A100-SXM4-40GB, 8.0, 535.1",
            "2, NVIDIA GeForce RTX 4090, 8.9, 535.1", "3, Tesla T4, 7.5, 535.1"]
    result = run_gpu_check(tmp_path, rows, DETECT_ONLY="1", GPUS=gpus)
    assert result.returncode == 0, result.stderr
    assert [line.split(" (")[0] for line in result.stdout.splitlines() if line.startswith("GPU ")] == \
        [f"GPU {i}" for i in listed.split()]
    assert f"DETECT_ONLY=1: GPUs {listed.replace(' ', ',')} can run it" in result.stdout


def test_a_kepler_gpu_it_is_given_is_refused(tmp_path):
    result = run_gpu_check(tmp_path, ["0, Tesla K80, 3.7, 470.1", "1, Tesla T4, 7.5, 470.1"], GPUS="0")
    assert result.returncode == 2
    assert result.stderr.startswith("error: GPU 0 (Tesla K80) is compute capability 3.7: ")


def own_build_venv(tmp_path, sass, ptx, name="venv"):
    """A venv (or a system, by `name`) whose python finds an MXNet 1.9.1 whose libmxnet.so holds this
    code (a source build)."""
    package = tmp_path / "build" / "mxnet"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "libinfo.py").write_text('__version__ = "1.9.1"\n')
    write_elf(package / "libmxnet.so", {".nv_fatbin": fatbin([(FATBIN_SASS, arch, b"s") for arch in sass] +
                                                             [(FATBIN_PTX, arch, b"p") for arch in ptx])})
    venv = tmp_path / name
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text(f"#!/bin/sh\nPYTHONPATH={package.parent} exec {sys.executable} \"$@\"\n")
    (venv / "bin" / "python").chmod(0o755)
    return venv


def test_on_hopper_an_own_build_with_sm_90_goes_on(tmp_path):
    venv = own_build_venv(tmp_path, sass=[80, 86, 90], ptx=[90])
    result = run_gpu_check(tmp_path, ["0, NVIDIA H200, 9.0, 550.54.15"], venv=venv, DETECT_ONLY="1",
                           SKIP_INSTALL="1")
    assert result.returncode == 0, result.stderr
    assert "machine code for sm_80, sm_86, sm_90 and compute_90 PTX" in result.stdout
    assert "GPU 0 (NVIDIA H200): compute capability 9.0 (Hopper), driver 550.54.15: runs sm_90 machine code" \
        in result.stdout


def test_on_hopper_an_own_build_for_ampere_only_is_refused(tmp_path):
    venv = own_build_venv(tmp_path, sass=[80, 86], ptx=[])
    result = run_gpu_check(tmp_path, ["0, NVIDIA H200, 9.0, 550.54.15"], venv=venv, DETECT_ONLY="1",
                           SKIP_INSTALL="1")
    assert result.returncode == 2
    assert "carries machine code for sm_80, sm_86 and no PTX" in result.stderr


@pytest.mark.slow
def test_runs_through_on_cpu_contexts(tmp_path):
    """The whole script, with CPU contexts standing in for GPUs and a small network (about 60 s)."""
    check_dir = tmp_path / "check"
    env = dict(os.environ, GPUS="cpu:0,cpu:1", SKIP_INSTALL="1", VENV_DIR=sys.prefix, CHECK_DIR=str(check_dir),
               DTYPES="float32", NETWORK="resnext-14", IMAGE_SIZE="64", STEPS="10", BATCH_PER_GPU="8",
               CHECK_BN_GROUPS="4", NUM_PRODUCTS="50")
    result = subprocess.run(["bash", GPU_CHECK], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "MXNet 1.9.1 imports from " in result.stdout
    rows = [line.split() for line in result.stdout.splitlines() if line.startswith("float32 ")]
    assert [row[1:-1] for row in rows] == [["cpu:0", "8"], ["cpu:0,cpu:1", "16"], ["cpu:0", "x4", "BN", "8"]]
    assert all(float(row[-1]) > 0 for row in rows)  # images/s of each run
    assert "predicted 50 products on GPUs cpu:0,cpu:1" in result.stdout
    assert "16 pictures (32 views): largest probability difference cpu(0), cpu(1) vs cpu" in result.stdout
    assert "GPU check passed" in result.stdout and (check_dir / "predictions.csv.gz").exists()


def test_container_mode_reads_the_systems_build_in_step_one(tmp_path):
    """MXNET_FROM_SYSTEM=1: step 1 runs the system's python3 (PYTHON_BIN) on its own MXNet, no venv yet."""
    system = own_build_venv(tmp_path, sass=[80, 86, 90], ptx=[90], name="system")
    result = run_gpu_check(tmp_path, ["0, NVIDIA H100 80GB HBM3, 9.0, 550.54.15"], DETECT_ONLY="1",
                           MXNET_FROM_SYSTEM="1", PYTHON_BIN=str(system / "bin" / "python"))
    assert result.returncode == 0, result.stderr
    assert "MXNet 1.9.1 at " in result.stdout and "(the system's)" in result.stdout
    assert "runs sm_90 machine code" in result.stdout
