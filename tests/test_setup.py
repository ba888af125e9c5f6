"""Set-up: scripts/ensure_venv.sh picks a Python the pins install on, or stops in one line.

Fake interpreters (shell scripts printing a version) on a PATH without the machine's own Pythons,
so nothing is installed.
"""
import os
import re
import subprocess

import pytest

from tests.helpers import REPO_ROOT

ENSURE_VENV = os.path.join(REPO_ROOT, "scripts", "ensure_venv.sh")


@pytest.fixture(scope="module")
def tools_dir(tmp_path_factory):
    """The machine's commands without any Python, pip or pydoc."""
    folder = tmp_path_factory.mktemp("tools")
    for bin_dir in ("/usr/local/bin", "/usr/bin", "/bin"):
        if not os.path.isdir(bin_dir):
            continue
        for name in os.listdir(bin_dir):
            if name.startswith(("python", "pydoc", "pip")) or (folder / name).exists():
                continue
            os.symlink(os.path.join(bin_dir, name), folder / name)
    return folder


def fake_pythons(folder, versions):
    """versions: {"python3.11": "3.11.9", ...}: scripts that print `Python VERSION` whatever asked."""
    folder.mkdir(exist_ok=True)
    for name, version in versions.items():
        script = folder / name
        script.write_text(f"#!/bin/sh\necho 'Python {version}'\n")
        script.chmod(0o755)
    return folder


def run_bash(snippet, tmp_path, tools_dir, versions, **env):
    pythons = fake_pythons(tmp_path / "pythons", versions)
    environment = {"PATH": f"{pythons}{os.pathsep}{tools_dir}", "HOME": str(tmp_path),
                   "VENV_DIR": str(tmp_path / "venv"), **env}
    return subprocess.run(["/bin/bash", "-c", f"source {ENSURE_VENV}; {snippet}"], env=environment,
                          capture_output=True, text=True, cwd=tmp_path)


def test_prefers_python311_over_a_newer_python3(tmp_path, tools_dir):
    done = run_bash("find_python", tmp_path, tools_dir, {"python3": "3.12.3", "python3.11": "3.11.9"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "pythons" / "python3.11")


def test_takes_python3_when_it_is_311_before_a_python310(tmp_path, tools_dir):
    done = run_bash("find_python", tmp_path, tools_dir, {"python3": "3.11.2", "python3.10": "3.10.12"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "pythons" / "python3")


def test_takes_python310_when_there_is_no_311(tmp_path, tools_dir):
    """NVIDIA's MXNet containers have Python 3.10; the pins install on it."""
    done = run_bash("find_python", tmp_path, tools_dir, {"python3": "3.12.3", "python3.10": "3.10.12"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "pythons" / "python3.10")


def test_no_supported_python_one_line_and_nothing_created(tmp_path, tools_dir):
    done = run_bash("ensure_venv", tmp_path, tools_dir, {"python3": "3.12.3", "python3.9": "3.9.18"})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: no Python 3.11 or 3.10 found (python3 is 3.12)")
    assert "apt-get install python3.11" in lines[0] and "PYTHON_BIN" in lines[0] and "python3.10" in lines[0]
    assert not (tmp_path / "venv").exists()


def test_run_tests_sh_stops_in_one_line(tmp_path, tools_dir):
    """The entry point a new user runs: no pip message, no venv left behind."""
    pythons = fake_pythons(tmp_path / "pythons", {"python3": "3.12.3"})
    done = subprocess.run([os.path.join(REPO_ROOT, "run_tests.sh")], capture_output=True, text=True,
                          env={"PATH": f"{pythons}{os.pathsep}{tools_dir}", "HOME": str(tmp_path),
                               "VENV_DIR": str(tmp_path / "venv")})
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith("error: no Python 3.11 or 3.10 found")
    assert not (tmp_path / "venv").exists()


def test_python_bin_of_another_version_is_refused(tmp_path, tools_dir):
    done = run_bash("find_python", tmp_path, tools_dir, {"python3.11": "3.11.9", "python3.12": "3.12.3"},
                    PYTHON_BIN="python3.12")
    assert done.returncode == 2
    assert done.stderr.startswith("error: no Python 3.11 or 3.10 found (python3.12 is 3.12)")


def test_container_mode_takes_the_systems_python3_only(tmp_path, tools_dir):
    """MXNET_FROM_SYSTEM=1: the venv must see the site-packages of the Python that has MXNet."""
    done = run_bash("find_python", tmp_path, tools_dir, {"python3.11": "3.11.9", "python3": "3.10.12"},
                    MXNET_FROM_SYSTEM="1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(tmp_path / "pythons" / "python3")
    done = run_bash("echo $REQUIREMENTS", tmp_path, tools_dir, {}, MXNET_FROM_SYSTEM="1")
    assert done.stdout.strip() == "requirements-without-mxnet.txt"


def test_venv_of_another_python_is_recreated(tmp_path, tools_dir):
    """A .venv left by an older script on Python 3.12 is removed, not pip-installed into."""
    old_bin = tmp_path / "venv" / "bin"
    fake_pythons(old_bin.parent, {})
    fake_pythons(old_bin, {"python": "3.12.3"})
    done = run_bash("ensure_venv", tmp_path, tools_dir, {"python3": "3.12.3"})
    assert "is not Python 3.11 or 3.10: recreating it" in done.stdout
    assert done.returncode == 2 and done.stderr.startswith("error: no Python 3.11 or 3.10 found")
    assert not (tmp_path / "venv").exists()


@pytest.mark.parametrize("stamped, system", [("requirements-gpu.txt", "0"), ("requirements-without-mxnet.txt", "1"),
                                             ("requirements.txt", "0")])
def test_a_venv_keeps_its_build_when_none_is_asked_for(tmp_path, tools_dir, stamped, system):
    """A GPU or container venv is not replaced by the CPU build because a variable was forgotten."""
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / ".requirements.stamp").write_text(f"{stamped} 0123\n")
    done = run_bash("echo $REQUIREMENTS $MXNET_FROM_SYSTEM", tmp_path, tools_dir, {})
    assert done.stdout.split() == [stamped, system], done.stderr
    asked = run_bash("echo $REQUIREMENTS $MXNET_FROM_SYSTEM", tmp_path, tools_dir, {}, MXNET_FROM_SYSTEM="0")
    assert asked.stdout.split() == ["requirements.txt", "0"]


@pytest.mark.parametrize("env, reason", [
    ({"PYTHON_BIN": "python3.10"}, "is Python 3.11, PYTHON_BIN 3.10"),
    ({"MXNET_FROM_SYSTEM": "1"}, "was made for requirements.txt, not requirements-without-mxnet.txt"),
    ({"REQUIREMENTS": "requirements-gpu.txt"}, "was made for requirements.txt, not requirements-gpu.txt"),
])
def test_a_venv_of_another_python_or_build_is_named_for_recreation(tmp_path, tools_dir, env, reason):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    fake_pythons(venv / "bin", {"python": "3.11.9"})
    (venv / ".requirements.stamp").write_text("requirements.txt 0123\n")
    (venv / "pyvenv.cfg").write_text("include-system-site-packages = false\n")
    done = run_bash("venv_outdated", tmp_path, tools_dir, {"python3.10": "3.10.12"}, **env)
    assert done.stdout.strip() == f"{venv} {reason}", done.stderr
    kept = run_bash("venv_outdated", tmp_path, tools_dir, {"python3.10": "3.10.12"})
    assert kept.stdout.strip() == ""


def default_folders():
    """Every folder default of the shell scripts: FOO_DIR="${FOO_DIR:-folder}" or dir_from_env FOO_DIR folder."""
    folders = set()
    for root, dirs, files in os.walk(REPO_ROOT):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if name.endswith(".sh"):
                with open(os.path.join(root, name)) as script:
                    text = script.read()
                folders.update(re.findall(r'_DIR="\$\{[A-Z_]+_DIR:-([A-Za-z_][\w.-]*)\}', text))
                folders.update(re.findall(r'dir_from_env [A-Z_]+_DIR ([A-Za-z_][\w.-]*)\)', text))
    return sorted(folders)


def test_default_folders_are_ignored_by_git():
    folders = default_folders()
    assert {"data_dir", "models", "pretrained", "submissions", "validation", "demo_data"} <= set(folders)
    paths = [f"{folder}/some_output" for folder in folders] + [".venv/bin/python"]
    checked = subprocess.run(["git", "check-ignore", "--no-index", *paths], cwd=REPO_ROOT,
                             capture_output=True, text=True)
    assert sorted(checked.stdout.split()) == sorted(paths)


def test_relative_venv_dir_is_taken_from_the_callers_folder(tmp_path, tools_dir):
    """run_tests.sh from another folder with VENV_DIR=rel: the venv would go to that folder's rel/."""
    pythons = fake_pythons(tmp_path / "pythons", {"python3.11": "3.11.9"})
    (tmp_path / "elsewhere").mkdir()
    done = subprocess.run(["/bin/bash", "-c", f"CALLER_DIR=$PWD; cd {REPO_ROOT}; source {ENSURE_VENV}; echo $VENV_DIR"],
                          env={"PATH": f"{pythons}{os.pathsep}{tools_dir}", "VENV_DIR": "rel_venv"},
                          capture_output=True, text=True, cwd=tmp_path / "elsewhere")
    assert done.stdout.strip() == str(tmp_path / "elsewhere" / "rel_venv"), done.stderr


# Variables a script reads that the user does not set: the calling script sets them (dataset and
# model settings, experiment headers) or the shell does.
INTERNAL_VARIABLES = {
    "BSON2REC_OPTIONS", "DATASET_DIR", "RANDOM_SEED", "SHUFFLE_SEED", "SPLIT_DIR", "VAL_RATIO",  # create_dataset_*.sh
    "EXTRA_PREDICT_ARGS",                                                                      # run_validate.sh
    "PRETRAINED_SOURCE", "NUM_EPOCHS", "VARIANT_1",                                            # model headers
    "MARKERS", "SCRIPT_ARG", "CALLER_DIR", "NAME", "LD_LIBRARY_PATH",                          # the scripts' own
}


def variables_read_by_scripts():
    """VAR of ${VAR:-...}, ${VAR-...}, ${VAR:?...} and dir_from_env VAR in the tracked shell scripts."""
    listed = subprocess.run(["git", "ls-files", "*.sh"], cwd=REPO_ROOT, capture_output=True, text=True)
    found = {}
    for path in listed.stdout.split():
        with open(os.path.join(REPO_ROOT, path)) as script:
            text = script.read()
        names = re.findall(r"\$\{([A-Z][A-Z0-9_]*)(?::?[-?+])", text) + re.findall(r"dir_from_env ([A-Z][A-Z0-9_]*)", text)
        for name in names:
            found.setdefault(name, path)
    from train.stages import RUN_ENVIRONMENT  # train/run_model.sh's planner, in Python
    for name in RUN_ENVIRONMENT:
        found.setdefault(name, "train/stages.py")
    return found


def documentation():
    """The README and every page of docs/, as one text."""
    pages = [os.path.join(REPO_ROOT, "README.md")] + sorted(
        os.path.join(REPO_ROOT, "docs", name) for name in os.listdir(os.path.join(REPO_ROOT, "docs"))
        if name.endswith(".md"))
    texts = []
    for page in pages:
        with open(page, encoding="utf-8") as handle:
            texts.append(handle.read())
    return "\n".join(texts)


def test_the_docs_list_every_variable_the_scripts_read():
    text = documentation()
    found = variables_read_by_scripts()
    assert {"DATA_DIR", "FORCE", "SKIP_CORRUPT", "LOAD_EPOCH", "STAGES", "PYTHON_BIN"} <= set(found)
    undocumented = {name: path for name, path in found.items()
                    if name not in INTERNAL_VARIABLES and f"`{name}`" not in text}
    assert not undocumented, f"variables neither the README nor docs/ names (in backticks): {undocumented}"


def test_activate_puts_the_venv_and_its_cuda_libraries_first(tmp_path, tools_dir):
    venv = tmp_path / "venv"
    fake_pythons(venv, {})
    fake_pythons(venv / "bin", {"python": "3.11.9"})
    cuda = venv / "lib" / "python3.11" / "site-packages" / "nvidia" / "cudnn" / "lib"
    cuda.mkdir(parents=True)
    done = subprocess.run(["/bin/bash", "-c", f"source {REPO_ROOT}/scripts/activate.sh; echo $PATH; echo $LD_LIBRARY_PATH"],
                          env={"PATH": str(tools_dir), "VENV_DIR": str(venv)}, capture_output=True, text=True)
    lines = done.stdout.splitlines()
    assert lines[0] == f"using {venv} (Python 3.11.9)", done.stderr
    assert lines[1].split(os.pathsep)[0] == str(venv / "bin")
    assert lines[2] == str(cuda)


def test_activate_without_a_venv_says_so_and_leaves_the_shell_running(tmp_path, tools_dir):
    done = subprocess.run(["/bin/bash", "-c", f"source {REPO_ROOT}/scripts/activate.sh; echo still here"],
                          env={"PATH": str(tools_dir), "VENV_DIR": str(tmp_path / "none")},
                          capture_output=True, text=True)
    assert done.stderr.startswith(f"error: {tmp_path / 'none'} not found: make it with ./run_tests.sh")
    assert done.stdout.strip() == "still here"
