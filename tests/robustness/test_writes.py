"""Nothing is written outside the outputs the user named, the BSON's documented index cache and a
temporary folder that is removed at the end."""
import os

from data.bson_index import BsonIndex
from tests.helpers import run


def tree(folder):
    return sorted(os.path.relpath(os.path.join(d, f), folder) for d, _, files in os.walk(folder) for f in files)


def test_prediction_writes_only_its_outputs(colour_run, tmp_path):
    BsonIndex.open(colour_run["bson"], progress=False)  # the documented cache beside the BSON, made first
    inputs_before = tree(colour_run["dir"])  # before isolated/ exists
    isolated = tmp_path / "isolated"  # colour_run lives in tmp_path itself
    home, scratch, cwd, out = (isolated / n for n in ("home", "tmp", "cwd", "out"))
    for folder in (home, scratch, cwd, out):
        folder.mkdir(parents=True)
    env = dict(HOME=str(home), TMPDIR=str(scratch), MXNET_HOME=str(home / ".mxnet"))
    output = out / "sub.csv"
    result = run(["python", "-m", "predict.predict", "--bson", colour_run["bson"], "--csv", colour_run["csv"],
                  "--symbol", colour_run["symbol"], "--params", colour_run["params"], "--data-shape", "3,32,32",
                  "--num-procs", "2", "--ensembles", "1", "--output", str(output)], cwd=cwd, **env, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert tree(out) == ["sub.csv", "sub.e1.m0.csv", "sub.e1.m1.csv"]
    assert tree(cwd) == [] and tree(home) == [] and os.listdir(scratch) == []  # the socket folder is gone
    assert [p for p in tree(colour_run["dir"]) if not p.startswith("isolated")] == inputs_before
