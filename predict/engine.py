"""MXNet's engine settings for prediction, which MXNet reads once, when it loads: `use_prediction_engine()` runs
before the first `import mxnet` of predict.models, and a value already in the environment wins.

MXNet runs one CPU operator at a time by default (MXNET_CPU_WORKER_NTHREADS=1), so on a CPU the models of an
ensemble take turns, and the predictor's conversion of the next batch waits for the previous batch's passes.
With two at a time the passes of two models overlap: on 2 cores, 2 densenet-41 networks forward 2.0x as many
views per second, and the pipeline runs 1.08x as fast end to end, with the same outputs to the byte
(docs/benchmarks.md). GPU passes are not CPU operators: a GPU run only gains the overlapped conversion.
"""
import os

ENGINE_THREADS_VAR = "MXNET_CPU_WORKER_NTHREADS"
CPU_ENGINE_THREADS = 2


def use_prediction_engine():
    """Set MXNet's CPU operator threads, unless the environment sets them (call before MXNet is imported)."""
    os.environ.setdefault(ENGINE_THREADS_VAR, str(CPU_ENGINE_THREADS))
