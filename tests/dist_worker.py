"""A distributed-training worker for tests/test_launch.py: trains with train.fit.fit on the kvstore
the launcher set up, then saves its parameters and the parameter server's copy of them.

    python -m tests.dist_worker OUT_DIR train_model arguments...
"""
import os
import sys

import mxnet as mx
import numpy as np

from train import train_model
from train.fit import fit


def main(argv):
    out_dir, train_argv = argv[0], argv[1:]
    args = train_model.build_parser().parse_args(train_argv)
    return train_model.exit_hard_on_error(lambda args: train_and_save(args, out_dir), args)


def train_and_save(args, out_dir):
    result = fit(args, train_model.build_network(args))
    kv, module = result.kvstore, result.module
    arg_params, _ = module.get_params()
    mine, server = {}, {}
    for name, value in arg_params.items():
        pulled = mx.nd.zeros(value.shape, dtype=value.dtype)
        kv.pull(name, out=pulled)  # with dist_sync the servers hold the weights
        mine[name], server[name] = value.asnumpy(), pulled.asnumpy()
    np.savez(os.path.join(out_dir, f"rank{kv.rank}.npz"), **{f"mine/{k}": v for k, v in mine.items()},
             **{f"server/{k}": v for k, v in server.items()},
             num_workers=np.array(kv.num_workers))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
