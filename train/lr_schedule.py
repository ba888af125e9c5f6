"""The learning-rate schedule, in a module of its own: with a distributed kvstore MXNet sends the
optimizer (with this scheduler) to the parameter servers, which must import it while MXNet itself
is still being imported there, so it may depend only on `mxnet.lr_scheduler`."""
from mxnet.lr_scheduler import LRScheduler


def lr_at_epoch(base_lr, factor, steps, epoch):
    """Learning rate of 0-based `epoch`: multiplied by `factor` once per step epoch already finished."""
    return base_lr * factor ** sum(1 for s in steps if epoch >= s)


class EpochStepScheduler(LRScheduler):
    """lr as a function of the epoch, read from the optimizer's update count.

    The count is `begin_update` when epoch `begin_epoch` starts: 0 for a fresh optimizer (a new
    run, or a resume without saved optimizer state, whose count starts at 0 as in the original),
    or the restored count of a resumed optimizer. Either way epoch `begin_epoch` gets its lr."""

    def __init__(self, base_lr, factor, steps, updates_per_epoch, begin_epoch=0, begin_update=0):
        super().__init__(base_lr=base_lr)
        self.factor = factor
        self.steps = list(steps)
        self.updates_per_epoch = updates_per_epoch
        self.begin_epoch = begin_epoch
        self.begin_update = begin_update

    def epoch_of(self, num_update):
        """0-based epoch of the `num_update`-th update (counted from 1)."""
        return self.begin_epoch + max(0, num_update - self.begin_update - 1) // self.updates_per_epoch

    def lr_of_epoch(self, epoch):
        return lr_at_epoch(self.base_lr, self.factor, self.steps, epoch)

    def __call__(self, num_update):
        return self.lr_of_epoch(self.epoch_of(num_update))
