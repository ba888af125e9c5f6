"""Training's start-up checks: each mistake is one `error:` line and exit 2, before any heavy work."""
import pytest

from data.common import UserError
from train import devices


def test_gpus_text_that_is_no_list_of_ids_is_one_line():
    with pytest.raises(UserError, match=r"--gpus abc: expected comma-separated GPU ids"):
        devices.contexts("abc")
    with pytest.raises(UserError, match="listed twice"):
        devices.contexts("0,0")


def test_empty_gpus_is_the_cpu():
    import mxnet as mx
    assert devices.contexts("") == [mx.cpu()]
    assert devices.contexts(" ") == [mx.cpu()]


def test_gpus_on_a_build_without_gpus_says_what_to_do(monkeypatch):
    monkeypatch.setattr(devices, "visible_gpus", lambda: 0)
    with pytest.raises(UserError) as err:
        devices.contexts("0,1,2,3,4,5,6,7")
    message = str(err.value)
    assert "no GPU" in message and "GPUS=" in message and "requirements-gpu.txt" in message


def test_fewer_gpus_than_asked_names_how_many(monkeypatch):
    import mxnet as mx
    monkeypatch.setattr(devices, "visible_gpus", lambda: 2)
    with pytest.raises(UserError, match=r"only 2 GPU\(s\) visible"):
        devices.contexts("0,1,2")
    assert devices.contexts("0,1") == [mx.gpu(0), mx.gpu(1)]


def test_this_cpu_build_sees_no_gpu():
    assert devices.visible_gpus() == 0


def test_train_model_on_the_cpu_build_with_gpus_fails_in_one_line(tmp_path):
    import subprocess
    import sys
    result = subprocess.run([sys.executable, "-m", "train.train_model", "--symbol", "resnet-18",
                             "--data-train", str(tmp_path / "none.rec"), "--model-prefix", str(tmp_path / "m"),
                             "--gpus", "0,1,2,3,4,5,6,7"], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error: --gpus 0,1,2,3,4,5,6,7: this MXNet build")
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
