"""The learning-rate schedule, in a module of its own: with a distributed kvstore MXNet sends the
optimizer (with this scheduler) to the parameter servers, which must import it while MXNet itself
is still being imported there, so it may depend only on `mxnet.lr_scheduler`."""
from mxnet.lr_scheduler import LRScheduler


def lr_at_epoch(base_lr, factor, steps, epoch):
    """Learning rate of 0-based `epoch`: multiplied by `factor` once per step epoch already finished."""
    return base_lr * factor ** sum(1 for s in steps if epoch >= s)


class EpochStepScheduler(LRScheduler):
    """lr as a function of the epoch, read from the optimizer's global update count."""

    def __init__(self, base_lr, factor, steps, updates_per_epoch):
        super().__init__(base_lr=base_lr)
        self.factor = factor
        self.steps = list(steps)
        self.updates_per_epoch = updates_per_epoch

    def __call__(self, num_update):
        epoch = max(0, num_update - 1) // self.updates_per_epoch
        return lr_at_epoch(self.base_lr, self.factor, self.steps, epoch)
