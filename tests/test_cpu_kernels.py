"""--cpu-kernels: the training process runs the kernels chosen for it; auto probes once per kind of run."""
import json
import logging
import os

import mxnet as mx
import pytest

from tests.helpers import run
from train import cpu_kernels, train_model
from train.cpu_kernels import ENV

LONG_RUN = ["--benchmark", "1", "--num-examples", "16000", "--num-epochs", "1"]  # 1,000 batches: probed


@pytest.fixture
def clean_env(monkeypatch):
    """No MXNET_MKLDNN_ENABLED of the caller's; anything the code under test sets is undone afterwards."""
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.delenv(cpu_kernels.QUIET_FALLBACK_ENV, raising=False)


def tiny_network():
    data = mx.sym.Convolution(mx.sym.var("data"), num_filter=8, kernel=(3, 3), name="conv1")
    data = mx.sym.Convolution(data, num_filter=8, kernel=(3, 3), num_group=2, name="conv2")  # grouped
    pooled = mx.sym.Pooling(mx.sym.BatchNorm(data, name="bn2"), global_pool=True, kernel=(1, 1), pool_type="avg",
                            name="pool")
    net = mx.sym.FullyConnected(mx.sym.Flatten(pooled, name="flatten"), num_hidden=4, name="fc")
    return mx.sym.SoftmaxOutput(net, name="softmax")


def parse(tmp_path, *extra):
    return train_model.build_parser().parse_args(
        ["--symbol", "resnext-14", "--image-shape", "3,16,16", "--batch-size", "16",
         "--cpu-kernels-cache", str(tmp_path / "cache.json"), *extra])


class FakeProbe:
    """measure_both without processes: fixed speeds, calls counted."""

    def __init__(self, onednn=3.0, native=4.5):
        self.speeds, self.calls = {"onednn": onednn, "native": native}, []

    def __call__(self, network_json, data_shape, batch_size, batches=cpu_kernels.PROBE_BATCHES):
        self.calls.append((data_shape, batch_size))
        return dict(self.speeds)


def failing_probe(*args, **kwargs):
    raise AssertionError("no probe expected")


def oneDNN_convolutions(kernels, tmp_path):
    """oneDNN's verbose log of convolutions run by a short training run started as a command."""
    done = run(
        ["python", "-m", "train.train_model", "--symbol", "resnext-14", "--benchmark", "1", "--num-examples",
         "32", "--batch-size", "16", "--image-shape", "3,32,32", "--num-classes", "4", "--num-epochs", "1",
         "--top-k", "0", "--cpu-kernels", kernels, "--cpu-kernels-cache", str(tmp_path / "cache.json")],
        DNNL_VERBOSE="1", **{ENV: None}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"CPU kernels: {cpu_kernels.NAMES[kernels]} ({ENV}={cpu_kernels.SETTINGS[kernels]})" in done.stderr
    return [line for line in done.stdout.splitlines() if line.startswith("dnnl_verbose,exec,cpu,convolution")]


@pytest.mark.slow  # two trainings with oneDNN's verbose log (9 s); the choice and the probes stay fast
def test_the_chosen_kernels_run_in_the_training_process(tmp_path):
    assert oneDNN_convolutions("onednn", tmp_path)  # MXNet's default: convolutions through oneDNN
    assert oneDNN_convolutions("native", tmp_path) == []


def test_each_probe_process_runs_its_setting(clean_env, tmp_path):
    speeds = cpu_kernels.measure_both(tiny_network().tojson(), (3, 16, 16), 4, batches=1)
    assert set(speeds) == {"onednn", "native"} and min(speeds.values()) > 0
    assert ENV not in os.environ  # the probes' setting stays in their processes


def test_auto_takes_the_faster_and_caches_the_verdict(clean_env, monkeypatch, tmp_path, caplog):
    probe = FakeProbe(onednn=3.0, native=4.5)
    monkeypatch.setattr(cpu_kernels, "measure_both", probe)
    args = parse(tmp_path, *LONG_RUN)
    with caplog.at_level(logging.INFO):
        assert cpu_kernels.use_faster_kernels(args, tiny_network(), (3, 16, 16)) == "native"
    assert os.environ[ENV] == "0"
    assert "native 4.50 img/s vs oneDNN 3.00 img/s (1.50x)" in caplog.text
    with open(tmp_path / "cache.json") as fh:
        record = json.load(fh)
    (verdict,) = record["verdicts"].values()
    assert verdict["speeds"] == {"onednn": 3.0, "native": 4.5} and verdict["network"] == "resnext-14"

    monkeypatch.delenv(ENV)
    kernels, why = cpu_kernels.choose(args, tiny_network(), (3, 16, 16))
    assert (kernels, len(probe.calls)) == ("native", 1) and "cached in" in why
    cpu_kernels.choose(parse(tmp_path, *LONG_RUN, "--batch-size", "32"), tiny_network(), (3, 16, 16))
    assert probe.calls == [((3, 16, 16), 16), ((3, 16, 16), 32)]  # another batch: probed again


def test_onednn_when_it_is_faster(clean_env, monkeypatch, tmp_path):
    monkeypatch.setattr(cpu_kernels, "measure_both", FakeProbe(onednn=5.0, native=2.0))
    assert cpu_kernels.use_faster_kernels(parse(tmp_path, *LONG_RUN), tiny_network(), (3, 16, 16)) == "onednn"
    assert os.environ[ENV] == "1"


def test_the_users_setting_wins(clean_env, monkeypatch, tmp_path, caplog):
    monkeypatch.setattr(cpu_kernels, "measure_both", failing_probe)
    monkeypatch.setenv(ENV, "1")
    with caplog.at_level(logging.INFO):
        assert cpu_kernels.use_faster_kernels(parse(tmp_path, "--cpu-kernels", "native"), tiny_network(),
                                              (3, 16, 16)) is None
    assert os.environ[ENV] == "1"
    assert f"{ENV}=1 in the environment wins over --cpu-kernels native" in caplog.text
    monkeypatch.setenv(ENV, "0")
    with caplog.at_level(logging.INFO):
        assert cpu_kernels.use_faster_kernels(parse(tmp_path, *LONG_RUN), tiny_network(), (3, 16, 16)) is None
    assert f"native: {ENV}=0 set in the environment" in caplog.text


def test_gpu_runs_and_short_runs_do_not_probe(clean_env, monkeypatch, tmp_path):
    monkeypatch.setattr(cpu_kernels, "measure_both", failing_probe)
    assert cpu_kernels.choose(parse(tmp_path, *LONG_RUN, "--gpus", "0"), tiny_network(), (3, 16, 16)) == \
        (None, "GPU run")
    kernels, why = cpu_kernels.choose(parse(tmp_path, "--benchmark", "1", "--num-examples", "160", "--num-epochs", "15"),
                                      tiny_network(), (3, 16, 16))
    assert kernels == "onednn" and "150 batches are fewer than 160" in why
    # CPU contexts standing in for GPUs are the CPU: probed
    monkeypatch.setattr(cpu_kernels, "measure_both", FakeProbe())
    assert cpu_kernels.choose(parse(tmp_path, *LONG_RUN, "--gpus", "cpu:0,cpu:1"), tiny_network(),
                              (3, 16, 16))[0] == "native"


def test_a_broken_cache_or_probe_does_not_stop_training(clean_env, monkeypatch, tmp_path, caplog):
    (tmp_path / "cache.json").write_text("not json")
    probe = FakeProbe()
    monkeypatch.setattr(cpu_kernels, "measure_both", probe)
    with caplog.at_level(logging.WARNING):
        assert cpu_kernels.choose(parse(tmp_path, *LONG_RUN), tiny_network(), (3, 16, 16))[0] == "native"
    assert "cache.json: ignored" in caplog.text and len(probe.calls) == 1
    assert json.loads((tmp_path / "cache.json").read_text())["format"] == cpu_kernels.CACHE_FORMAT
    key = cpu_kernels.cache_key(tiny_network().tojson(), (3, 16, 16), 16)
    (tmp_path / "cache.json").write_text(json.dumps({"format": cpu_kernels.CACHE_FORMAT,
                                                     "verdicts": {key: {"speeds": {"onednn": 9.0}}}}))
    assert cpu_kernels.choose(parse(tmp_path, *LONG_RUN), tiny_network(), (3, 16, 16))[0] == "native"
    assert len(probe.calls) == 2  # an entry without both speeds is measured again

    def broken_probe(*args, **kwargs):
        raise RuntimeError("the native probe failed: out of memory")
    monkeypatch.setattr(cpu_kernels, "measure_both", broken_probe)
    with caplog.at_level(logging.WARNING):
        assert cpu_kernels.choose(parse(tmp_path, *LONG_RUN, "--batch-size", "8"), tiny_network(),
                                  (3, 16, 16)) == ("onednn", "probe failed")
    assert "probe failed (the native probe failed: out of memory); keeping oneDNN" in caplog.text


def test_probe_command_checks_its_shape():
    done = run(["python", "-m", "train.cpu_kernels", "--symbol-file", "x.json", "--data-shape", "3,16",
                "--batch-size", "4"])
    assert done.returncode == 2 and "3,16: expected channels,height,width" in done.stderr
