"""Per-epoch metrics of a training run: a CSV row per epoch and a training-curve PNG at the end.

Module.fit reports training metrics through batch callbacks, then checkpoints
(epoch_end_callback), then scores the validation set (eval_end_callback); the
recorder joins them into one row per epoch. A network with level heads (train.train_model --level-heads) adds
each head's training and validation accuracy as the last columns (train_NAME_accuracy, val_NAME_accuracy).
"""
import csv
import logging
import os
import time

from cli.files import atomic_outputs

log = logging.getLogger(__name__)

MOST_EPOCH_TICKS = 20  # a tick per epoch up to this many epochs
COLUMNS = ["epoch", "lr", "train_accuracy", "train_top_k_accuracy", "train_cross_entropy",
           "val_accuracy", "val_top_k_accuracy", "val_cross_entropy", "images_per_sec", "seconds"]


def head_columns(head_names):
    """The columns the level heads `head_names` (train.finetune.LEVEL_HEAD_NAMES' values) add after COLUMNS."""
    return [f"{part}_{name}_accuracy" for part in ("train", "val") for name in head_names]


def _metric_values(eval_metric):
    """{'accuracy': .., 'top_k_accuracy': .., 'cross_entropy': ..} from a composite metric."""
    values = {}
    for name, value in eval_metric.get_name_value():
        key = "top_k_accuracy" if name.startswith("top_k_accuracy") else name.replace("-", "_")
        values[key] = value
    return values


class EpochRecorder:
    def __init__(self, prefix, batch_size, scheduler, begin_epoch=0, has_validation=True, head_names=()):
        self.has_validation = has_validation
        self.head_names = list(head_names)
        self.columns = COLUMNS + head_columns(self.head_names)
        self.csv_path = f"{prefix}-metrics.csv" if prefix else None
        self.png_path = f"{prefix}-curve.png" if prefix else None
        self.batch_size = batch_size
        self.scheduler = scheduler  # train.lr_schedule.EpochStepScheduler
        self.rows = []
        self._pending = None
        self._epoch_start = None
        self._batches = 0
        self._train = {}
        if self.csv_path and begin_epoch and os.path.exists(self.csv_path):
            self.rows = [r for r in _read_rows(self.csv_path) if int(r["epoch"]) <= begin_epoch]
            missing = sorted(set(range(1, begin_epoch + 1)) - {int(r["epoch"]) for r in self.rows})
            if missing:  # MXNet saves a checkpoint before validating it: a run stopped in between
                log.warning("%s has no row for epoch %s (the run stopped before recording it); the curve "
                            "will have a gap there", self.csv_path, ", ".join(map(str, missing)))

    def batch_end(self, param):
        if param.nbatch == 0 or self._epoch_start is None:
            self._epoch_start, self._batches = time.perf_counter(), 0
        self._batches = param.nbatch  # batches since the timer started at the end of the first one
        if param.eval_metric is not None:
            self._train = _metric_values(param.eval_metric)

    def epoch_end(self, epoch, symbol=None, arg_params=None, aux_params=None):
        seconds = time.perf_counter() - (self._epoch_start or time.perf_counter())
        row = {"epoch": epoch + 1, "lr": self._lr_of(epoch),
               "images_per_sec": self._batches * self.batch_size / seconds if seconds > 0 else 0.0,
               "seconds": seconds}
        for key, value in self._train.items():
            row[f"train_{key}"] = value
        self._pending = row
        self._epoch_start = None
        if not self.has_validation:  # else eval_end completes the row
            self._commit()

    def _lr_of(self, epoch):
        """The epoch's learning rate from the schedule itself: with a distributed kvstore the
        updates (and their count) happen on the servers, not in this process's optimizer."""
        return self.scheduler.lr_of_epoch(epoch)

    def eval_end(self, param):
        if self._pending is None:
            return
        for key, value in _metric_values(param.eval_metric).items():
            self._pending[f"val_{key}"] = value
        self._commit()

    def _commit(self):
        row = self._pending
        self._pending = None
        self.rows.append(row)
        log.info("epoch %d (MXNet's Epoch[%d]): lr %g, train acc %.4f, val acc %s, %.1f images/s%s",
                 row["epoch"], row["epoch"] - 1, row["lr"],
                 row.get("train_accuracy", float("nan")),
                 f"{row['val_accuracy']:.4f}" if "val_accuracy" in row else "-", row["images_per_sec"],
                 "".join(f"; {name} head: train acc {row.get(f'train_{name}_accuracy', float('nan')):.4f}, val acc "
                         + (f"{row[f'val_{name}_accuracy']:.4f}" if f"val_{name}_accuracy" in row else "-")
                         for name in self.head_names))
        if self.csv_path:
            _write_rows(self.csv_path, self.rows, self.columns)

    def finish(self):
        """Flush a row still waiting for validation (none given) and draw the curve."""
        if self._pending is not None:
            self._commit()
        if self.png_path and self.rows:
            plot_curves(self.rows, self.png_path)


def _write_rows(path, rows, columns=COLUMNS):
    with atomic_outputs(path) as (tmp,), open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in columns})


def _read_rows(path):
    with open(path, newline="") as fh:
        return [{k: v for k, v in row.items() if v != ""} for row in csv.DictReader(fh)]


def plot_curves(rows, png_path):
    import matplotlib.pyplot as plt

    fig = curve_figure(rows)
    with atomic_outputs(png_path, keep_suffix=True) as (tmp,):  # savefig picks the format by extension
        fig.savefig(tmp, dpi=90)
    plt.close(fig)


def curve_figure(rows):
    """Accuracy, and cross-entropy with the learning rate, per epoch (numbered from 1, as the
    checkpoints): a tick per epoch, or whole epochs only on a long run."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = [int(r["epoch"]) for r in rows]

    def series(key):
        return [float(r[key]) if key in r and r[key] != "" else float("nan") for r in rows]

    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(11, 4))
    ax_acc.plot(epochs, series("train_accuracy"), "o-", label="train top-1")
    ax_acc.plot(epochs, series("val_accuracy"), "o-", label="val top-1")
    ax_acc.plot(epochs, series("val_top_k_accuracy"), "o--", label="val top-k")
    ax_acc.set_xlabel("epoch (checkpoint number)")
    ax_acc.set_ylabel("accuracy")
    ax_acc.grid(alpha=0.3)
    ax_acc.legend()
    ax_loss.plot(epochs, series("train_cross_entropy"), "o-", label="train")
    ax_loss.plot(epochs, series("val_cross_entropy"), "o-", label="val")
    ax_loss.set_xlabel("epoch (checkpoint number)")
    ax_loss.set_ylabel("cross-entropy")
    ax_loss.grid(alpha=0.3)
    ax_loss.legend()
    lr_axis = ax_loss.twinx()
    lr_axis.step(epochs, series("lr"), where="mid", color="grey", alpha=0.5)
    lr_axis.set_ylabel("learning rate", color="grey")
    lr_axis.set_yscale("log")
    for ax in (ax_acc, ax_loss):
        ax.set_xlim(epochs[0] - 0.5, epochs[-1] + 0.5)  # one epoch: a point in the middle, not at an edge
        if len(epochs) <= MOST_EPOCH_TICKS:
            ax.set_xticks(epochs)
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    return fig
