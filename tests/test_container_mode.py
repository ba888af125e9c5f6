"""Container mode (MXNET_FROM_SYSTEM=1) with a stand-in for NVIDIA's MXNet container.

The stand-in "system" Python is this machine's interpreter given a prefix of its own: a copy of the
executable beside links to the standard library, and an empty site-packages into which the MXNet
under test is put. A venv made from it with --system-site-packages sees that MXNet as a container's
venv sees the container's. Fake nvidia-smi programs stand in for the GPUs.
"""
import os
import shutil
import subprocess
import sys
import sysconfig

import pytest

from tests.helpers import REPO_ROOT

ENSURE_VENV = os.path.join(REPO_ROOT, "scripts", "ensure_venv.sh")


def make_system_python(prefix, base_python=None, without=()):
    """A Python whose sys.prefix is `prefix` and whose site-packages is empty: the stand-in system
    (`without`: standard-library modules it lacks, as Debian's python3 lacks ensurepip)."""
    base_python = base_python or sys.executable
    info = subprocess.run([base_python, "-c", "import sys, sysconfig; print(sys.version_info[0], "
                           "sys.version_info[1]); print(sysconfig.get_path('stdlib')); print(sys._base_executable)"],
                          capture_output=True, text=True, check=True).stdout.split("\n")
    major_minor, stdlib, executable = info[0].replace(" ", "."), info[1], os.path.realpath(info[2])
    lib = prefix / "lib" / f"python{major_minor}"
    (lib / "site-packages").mkdir(parents=True)
    (prefix / "bin").mkdir()
    for name in os.listdir(stdlib):
        if name != "site-packages" and name not in without:
            os.symlink(os.path.join(stdlib, name), lib / name)
    python = prefix / "bin" / f"python{major_minor}"
    shutil.copy2(executable, python)  # a copy, not a link: Python finds its prefix from its own location
    (prefix / "bin" / "python3").symlink_to(python.name)
    return python, lib / "site-packages"


def run_ensure_venv(tmp_path, python, nvidia_smi=None, **env):
    """ensure_venv in container mode with only the stand-in's python3 (and maybe a fake nvidia-smi)."""
    tools = tmp_path / "tools"
    tools.mkdir(exist_ok=True)
    if nvidia_smi:
        (tools / "nvidia-smi").write_text(f"#!/bin/sh\ncat <<'EOF'\n{nvidia_smi}\nEOF\n")
        (tools / "nvidia-smi").chmod(0o755)
    path = os.pathsep.join([str(tools), str(python.parent), "/usr/bin", "/bin"])
    environment = {"PATH": path, "HOME": str(tmp_path), "VENV_DIR": str(tmp_path / "venv"),
                   "MXNET_FROM_SYSTEM": "1", "PIP_CACHE_DIR": os.path.expanduser("~/.cache/pip"), **env}
    return subprocess.run(["/bin/bash", "-c", f"source {ENSURE_VENV}; ensure_venv; python -c 'import mxnet, "
                           "numpy; print(mxnet.__file__); print(numpy.__version__)'"],
                          env=environment, capture_output=True, text=True, cwd=tmp_path)


def check_system(python):
    """The container-mode check ensure_venv makes before installing, run by the stand-in itself (the
    venv it would make sees the same site-packages; making one costs seconds of ensurepip)."""
    return subprocess.run([str(python), "-m", "train.gpu_support", "--system"], capture_output=True, text=True,
                          cwd=REPO_ROOT, env={"PATH": "/usr/bin:/bin"})


def this_venvs_site_packages():
    return sysconfig.get_path("purelib")


@pytest.fixture
def system_with_cpu_mxnet(tmp_path):
    """The stand-in system whose site-packages holds this venv's packages (the CPU mxnet wheel among
    them, in a prefix of its own) through a .pth file: nothing is left for pip to install."""
    python, site_packages = make_system_python(tmp_path / "system")
    (site_packages / "standin.pth").write_text(this_venvs_site_packages() + "\n")
    return python


def test_the_systems_mxnet_is_used_and_checked(tmp_path, system_with_cpu_mxnet):
    done = run_ensure_venv(tmp_path, system_with_cpu_mxnet)
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert "[venv] creating" in done.stdout and "and its site-packages" in done.stdout
    assert any(line.startswith("MXNet 1.9.1 at ") and line.endswith("(the system's)") for line in out)
    assert any(line.startswith("MXNet 1.9.1 imports from ") for line in out)
    mxnet_file = out[-2]
    assert not mxnet_file.startswith(str(tmp_path / "venv"))          # not the venv's own
    assert mxnet_file.startswith(this_venvs_site_packages())           # the stand-in's prefix
    assert out[-1] == "1.23.5"
    with open(tmp_path / "venv" / "pyvenv.cfg") as config:
        assert "include-system-site-packages = true" in config.read()
    stamp = (tmp_path / "venv" / ".requirements.stamp").read_text()
    assert stamp.startswith("requirements-without-mxnet.txt ")
    assert not list((tmp_path / "venv").glob("lib/python*/site-packages/mxnet"))
    again = run_ensure_venv(tmp_path, system_with_cpu_mxnet)            # kept: nothing is installed again
    assert again.returncode == 0 and "[venv]" not in again.stdout


@pytest.mark.slow  # a whole venv (7 s); the refusal without any pip stays fast
def test_a_python_without_ensurepip_uses_the_systems_pip(tmp_path):
    """Ubuntu's python3 without python3.10-venv, as in NVIDIA's containers: the venv is made without pip
    and the system's pip, seen through its site-packages, installs into it."""
    python, site_packages = make_system_python(tmp_path / "system", without=("ensurepip",))
    (site_packages / "standin.pth").write_text(this_venvs_site_packages() + "\n")
    done = run_ensure_venv(tmp_path, python)
    assert done.returncode == 0, done.stderr
    assert "and its site-packages, the system's pip" in done.stdout
    assert not list((tmp_path / "venv").glob("lib/python*/site-packages/pip"))
    assert done.stdout.splitlines()[-1] == "1.23.5"


def test_a_python_without_ensurepip_or_pip_is_told_the_package(tmp_path):
    python, _ = make_system_python(tmp_path / "system", without=("ensurepip",))
    done = run_ensure_venv(tmp_path, python)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"error: {python.parent / 'python3'} cannot make a venv: it has no ensurepip "
                                   f"(Debian/Ubuntu: apt-get install python{python.name[6:]}-venv, then re-run)")
    assert not (tmp_path / "venv").exists()


@pytest.mark.slow  # a whole venv (7 s); train.gpu_support's refusal itself is tested fast (test_gpu_support)
def test_the_cpu_build_on_a_hopper_machine_stops_before_the_install(tmp_path, system_with_cpu_mxnet):
    done = run_ensure_venv(tmp_path, system_with_cpu_mxnet, nvidia_smi="0, NVIDIA H100 80GB HBM3, 9.0, 550.54.15")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()], done.stderr
    assert done.stderr.startswith("error: ") and "has no GPU code (MXNet's CPU build) and this machine has 1 GPU" \
        in done.stderr and "nvcr.io/nvidia/mxnet:24.06-py3" in done.stderr
    assert "[venv] installing" not in done.stdout
    assert not (tmp_path / "venv" / ".requirements.stamp").exists()


def test_another_mxnet_version_in_the_system_is_refused(tmp_path):
    python, site_packages = make_system_python(tmp_path / "system")
    (site_packages / "mxnet").mkdir()
    (site_packages / "mxnet" / "__init__.py").write_text("")
    (site_packages / "mxnet" / "libinfo.py").write_text('__version__ = "1.8.0"\n')
    done = check_system(python)
    assert done.returncode == 2
    assert done.stderr.strip() == (f"error: {os.path.realpath(site_packages / 'mxnet')} is MXNet 1.8.0; this suite "
                                   "needs 1.9.x (the 1.9.1 API, and 2.x has no mx.mod.Module): install mxnet==1.9.1, "
                                   "or use nvcr.io/nvidia/mxnet:24.06-py3")


def test_a_system_without_mxnet_is_told_what_python_to_use(tmp_path):
    python, _ = make_system_python(tmp_path / "system")
    done = check_system(python)
    assert done.returncode == 2
    assert done.stderr.startswith("error: no mxnet package in the system's site-packages (")
    assert "set PYTHON_BIN" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def python310():
    """This machine's Python 3.10 (NVIDIA's containers' version), or None."""
    candidates = [shutil.which("python3.10"), *sorted(
        os.path.join(root, name, "bin", "python3.10") for root in [os.path.expanduser("~/.pyenv/versions")]
        if os.path.isdir(root) for name in os.listdir(root) if name.startswith("3.10"))]
    for candidate in candidates:
        if candidate and subprocess.run([candidate, "--version"], capture_output=True).returncode == 0:
            return candidate
    return None


@pytest.mark.smoke  # run on every Python the README promises (.ci/run)
@pytest.mark.slow
@pytest.mark.skipif(python310() is None, reason="needs a Python 3.10")
def test_a_python310_system_with_the_cpu_wheel_and_a_newer_numpy(tmp_path):
    """The container's shape: Python 3.10, MXNet and its own (newer) numpy in the system's site-packages.
    The venv installs requirements-without-mxnet.txt, whose numpy 1.23.5 wins over the system's."""
    python, site_packages = make_system_python(tmp_path / "system", python310())
    installed = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                                "--only-binary=:all:", "--python-version", "3.10", "--target", str(site_packages),
                                "mxnet==1.9.1", "numpy==1.26.4"], capture_output=True, text=True)
    assert installed.returncode == 0, installed.stderr
    done = run_ensure_venv(tmp_path, python)
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert out[-2].startswith(str(site_packages))   # the system's mxnet ...
    assert out[-1] == "1.23.5"                       # ... over the venv's pinned numpy
    assert "[venv] installing requirements-without-mxnet.txt" in done.stdout
