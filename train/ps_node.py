"""A scheduler or parameter-server process of a distributed run (started by train.launch).

MXNet starts these roles by itself on `import mxnet` when DMLC_ROLE says so; this module does
the same with two differences:
- the optimizer the workers send is unpickled with an allow-list (MXNet's optimizers and
  learning-rate schedules, and this project's schedule), never as arbitrary objects: the
  servers' port is reachable from the cluster;
- anything going wrong ends the process with a one-line error and a non-zero status instead
  of leaving it alive without an optimizer (MXNet prints the exception and carries on), so
  the launcher sees it and stops the run.
"""
import argparse
import io
import os
import pickle
import sys

ROLES = ("scheduler", "server")
ALLOWED_MODULES = ("mxnet.optimizer", "mxnet.lr_scheduler", "train.lr_schedule")
ALLOWED_BUILTINS = {"object", "set", "frozenset", "dict", "list", "tuple", "slice", "complex", "float", "int"}
# MXNet pickles with protocol 0: objects come back through copyreg._reconstructor(cls, base, state),
# whose cls and base are themselves looked up here.
ALLOWED_RECONSTRUCTORS = {("copy_reg", "_reconstructor"), ("copyreg", "_reconstructor")}


class OptimizerUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module in ("builtins", "__builtin__") and name in ALLOWED_BUILTINS) or \
                (module, name) in ALLOWED_RECONSTRUCTORS:
            return super().find_class(module, name)
        if module.startswith(ALLOWED_MODULES):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refused to load {module}.{name}: not an optimizer or schedule")


def load_optimizer(body):
    return OptimizerUnpickler(io.BytesIO(body)).load()


def fail(message):
    print(f"error: {os.environ.get('DMLC_ROLE', '?')}: {message}", file=sys.stderr, flush=True)
    os._exit(1)  # ps-lite's threads would keep a normal exit waiting forever


def run_server():
    role = os.environ["DMLC_ROLE"]
    os.environ["DMLC_ROLE"] = "worker"  # import MXNet without it starting the server by itself
    import mxnet as mx
    from mxnet.kvstore.kvstore_server import KVStoreServer

    os.environ["DMLC_ROLE"] = role

    class Server(KVStoreServer):
        def _controller(self):
            def controller(command, body, _):
                try:
                    if command != 0:
                        raise ValueError(f"unknown command {command}")
                    self.kvstore.set_optimizer(load_optimizer(body))
                except BaseException as exc:  # noqa: B902 - a C callback: report and end the process
                    fail(f"{type(exc).__name__}: {exc}")
            return controller

    Server(mx.kvstore.create("dist")).run()


def build_parser():
    return argparse.ArgumentParser(
        prog="python -m train.ps_node", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Takes no arguments: its role and the scheduler's address come from the DMLC_* environment "
               "variables that train.launch sets (DMLC_ROLE scheduler or server).")


def main(argv=None):
    build_parser().parse_args(argv)  # --help: usage, exit 0, before MXNet is imported
    role = os.environ.get("DMLC_ROLE")
    if role not in ROLES:
        fail(f"DMLC_ROLE must be one of {ROLES}; this module is started by train.launch")
    try:
        if role == "scheduler":
            import mxnet  # noqa: F401 - MXNet runs the scheduler on import and exits when the run ends
        else:
            run_server()
    except SystemExit as exc:  # MXNet's own role code ends with sys.exit() when the run is over
        os._exit(0 if exc.code in (None, 0) else 1)
    except BaseException as exc:  # noqa: B902
        fail(f"{type(exc).__name__}: {exc}")
    os._exit(0)


if __name__ == "__main__":
    main()
