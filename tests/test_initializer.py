"""--initializer: the parameters a run does not load (with --params: the new classifier) get the
original's initialiser of the record: Xavier (gaussian, in, 2) for its fine-tune.py runs, MSRAPrelu
(avg, 0.25) for its train_model.py runs (its common/fit.py changed from one to the other)."""
import json

import mxnet as mx
import pytest

from train import fit, train_model
from tests.train_helpers import resume_argv


def initialiser_of(args):
    return json.loads(fit.INITIALIZERS[args.initializer]().dumps())


def test_the_two_initialisers_are_the_originals():
    parse = train_model.build_parser().parse_args
    assert initialiser_of(parse([])) == ["msraprelu", {"factor_type": "avg", "slope": 0.25}]
    assert initialiser_of(parse(["--initializer", "xavier"])) == \
        ["xavier", {"rnd_type": "gaussian", "factor_type": "in", "magnitude": 2}]
    with pytest.raises(SystemExit):
        parse(["--initializer", "uniform"])


@pytest.mark.parametrize("name, kind", [("xavier", "xavier"), ("msra", "msraprelu")])
def test_the_run_initialises_what_it_does_not_load_with_it(colour_rec, tiny_symbol, tmp_path,
                                                           monkeypatch, name, kind):
    used = []
    original_init_params = mx.mod.Module.init_params

    def recording_init_params(module, initializer=None, *args, **kwargs):
        if initializer is not None:  # (Module also calls it without one, to set loaded parameters)
            used.append(json.loads(initializer.dumps())[0])
        return original_init_params(module, initializer, *args, **kwargs)

    monkeypatch.setattr(fit._Module, "init_params", recording_init_params)
    train_model.main(resume_argv(colour_rec, tiny_symbol, str(tmp_path / "m"), "nadam", 1, ["--initializer", name]))
    assert used == [kind]
