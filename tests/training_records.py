"""The original's training runs as its logs record them, for the tests of the training recipes.

RECORDS and EXPERIMENTS are written by hand from the original's training logs (every start of its
train_model.py, in the files train/Mxx/stderr* and train/experiments/*/ of mwbyeon/kaggle-cdiscount,
extracted in original_training_runs.md), not from the scripts: each row is one start of the original
with the settings its log records. Where a log has no value the row says what the code of the time
did: no label smoothing and no dropout before those flags existed, and the image iterator's own
interpolation (1) before --inter-method existed. A run's end is one past its last validated epoch
(where it was stopped) or where the next run resumed.
"""
from collections import namedtuple

Run = namedtuple("Run", "record load end optimizer lr lr_factor steps batch smooth dropout hsl crop mirror data "
                        "inter wd shape resize weights init")


def run(record, load, end, optimizer, lr, lr_factor, steps, batch, smooth=0.0, dropout=0.0, hsl=(0, 0, 0),
        crop=1, mirror=1, data="A", inter=1, wd=4e-5, shape="3,180,180", resize=0, weights=None, init="msra"):
    """`weights`: the checkpoint whose weights a resumed run loaded (its --params), when not `load`'s.
    `init`: the initialiser of the new classifier: xavier in the runs of the original's fine-tune.py (a
    one-line `Namespace(... pretrained_model=...)` log: its common/fit.py before commit 5177513), msra in
    those of its train_model.py (a log listing one argument a line: from that commit on)."""
    return Run(record, load, end, optimizer, lr, lr_factor, steps, batch, smooth, dropout, hsl, crop, mirror,
               data, inter, wd, shape, resize, weights, init)


# The records' training files and the dataset each script uses (data/create_dataset_refined.sh and
# create_dataset_c5270.sh rebuild the original's refined and cdiscount_c5270 sets; see the scripts' headers).
DATASET_OF = {"refined": "dataset_refined", "c5270": "dataset_c5270", "A": "dataset_A", "B": "dataset_B"}

Model = namedtuple("Model", "symbol params feature_layer network_args runs")
RESNEXT = ("resnext-101-symbol.json", "resnext-101-0000.params", "flatten0", [])
RESNEXT_64 = ("resnext-101-64x4d-symbol.json", "resnext-101-64x4d-0000.params", "flatten0", [])
SE_RESNEXT = ["--num-layers", "101", "--num-conv-groups", "64", "--use-squeeze-excitation"]
HSL20 = (20, 20, 20)

RECORDS = {
    "M01": Model(*RESNEXT, [
        run("stderr 1", 0, 11, "nag", 0.02, 0.2, "8,16,20", 512, data="refined", init="xavier"),
        run("stderr 2", 11, 15, "nag", 0.02, 0.2, "8,11,13,20", 512, data="refined", init="xavier"),
        run("stderr 3", 15, 17, "nag", 0.02, 0.2, "8,20", 512, hsl=(20, 40, 50), data="refined", init="xavier"),
        run("stderr 4", 17, 18, "nag", 0.02, 0.2, "8,17,20", 512, hsl=(20, 40, 50), data="refined", init="xavier"),
        run("stderr 5", 18, 23, "nag", 0.02, 0.2, "8,17,20,23", 512, hsl=(20, 40, 50), data="refined",
            init="xavier"),
        run("stderr 6", 23, 25, "nag", 0.02, 0.2, "8,17,20,23,25", 512, hsl=(20, 40, 50), data="refined",
            init="xavier"),
    ]),
    "M02": Model("dpn92-5k-symbol.json", "dpn92-5k-0000.params", "flatten", [], [
        run("stderr", 0, 13, "adam", 1e-4, 0.2, "6,10,13", 256, data="refined", init="xavier"),
    ]),
    "M03": Model("dpn92-5k-symbol.json", "dpn92-5k-0000.params", "flatten", [], [
        run("stderr", 0, 13, "adam", 5e-5, 0.2, "6,10,13", 256, data="refined", init="xavier"),
    ]),
    "M04": Model("densenet-161-symbol.json", "densenet-161-0000.params", "pool5", [], [
        run("stderr 1", 0, 14, "nadam", 1e-4, 0.2, "10,15,20", 512, smooth=0.1, resize=180, inter=9),
        run("stderr 2", 14, 20, "nadam", 1e-4, 0.2, "10,14,17,20", 512, smooth=0.1, resize=180, inter=9),
    ]),
    "M05": Model("dpn98-symbol.json", "dpn98-0000.params", "flatten", [], [
        run("stderr", 0, 15, "adam", 1e-4, 0.2, "6,10,13,15", 512, hsl=HSL20, init="xavier"),
    ]),
    "M06": Model("dpn92-5k-symbol.json", "dpn92-5k-0000.params", "flatten", [], [
        run("stderr", 0, 9, "adam", 1e-4, 0.2, "8,16,20", 512, data="c5270", init="xavier"),
        run("stderr2", 9, 11, "adam", 1e-4, 0.2, "8,16,20", 512, data="c5270", init="xavier"),
    ]),
    "M07": Model(*RESNEXT_64, [
        run("stderr", 0, 15, "adam", 1e-4, 0.2, "6,10,13,15", 512, hsl=HSL20, init="xavier"),
    ]),
    "M08": Model("dpn131-symbol.json", "dpn131-0000.params", "flatten", [], [
        run("stderr 1", 0, 15, "nag", 0.005, 0.2, "10,13,15", 384, smooth=0.1),
        run("stderr 2", 15, 15, "nag", 0.005, 0.2, "10,13,15,17", 384, smooth=0.1, inter=9),
        run("stderr 3", 15, 18, "nag", 0.005, 0.2, "10,13,16,18", 384, smooth=0.1, inter=9),
        run("stderr 4", 18, 18, "nadam", 1e-4, 0.2, "18,22,25", 384, smooth=0.1, inter=9, weights=15),
        run("stderr 5", 18, 25, "nadam", 1e-4, 0.2, "18,20,22,24,25", 384, smooth=0.1, inter=9, weights=15),
    ]),
    "M09": Model(*RESNEXT_64, [
        run("stderr", 0, 15, "adam", 1e-4, 0.2, "6,10,13,15", 512, hsl=HSL20, data="B", init="xavier"),
    ]),
    "M10": Model(*RESNEXT, [
        run("stderr", 0, 4, "adam", 5e-4, 0.2, "6,10,13", 512, data="c5270", wd=1e-5, init="xavier"),
        run("stderr2", 4, 8, "adam", 5e-4, 0.2, "6,10,13", 512, data="c5270", init="xavier"),
        run("stderr3", 8, 12, "adam", 5e-4, 0.2, "6,8,10", 512, data="c5270", init="xavier"),
        run("stderr4", 12, 16, "adam", 5e-4, 0.2, "6,16,20", 512, hsl=(30, 30, 30), data="c5270", init="xavier"),
        run("stderr5", 11, 15, "adam", 5e-4, 0.2, "8,11,15", 512, hsl=HSL20, data="c5270", init="xavier"),
        run("stderr6", 15, 18, "adam", 5e-4, 0.2, "8,11,20", 512, data="c5270", init="xavier"),
        run("stderr7", 16, 20, "sgd", 0.05, 0.1, "8,18,20", 512, data="c5270", init="xavier"),
    ]),
    "M11": Model("resnext", "M07-0015.params", None, SE_RESNEXT, [
        run("stderr 1", 0, 4, "adam", 5e-5, 0.2, "8,12,15", 512),
        run("stderr 2", 4, 10, "nadam", 1e-4, 0.2, "4,6,8,15", 512, smooth=0.1),
        run("stderr 3", 10, 15, "nadam", 1e-4, 0.2, "4,6,13,15", 512, smooth=0.1, dropout=0.2, hsl=HSL20),
        run("stderr 4", 15, 17, "sgd", 0.001, 0.2, "10,15,20", 512, dropout=0.2, crop=0, mirror=0),
        run("stderr 5", 15, 20, "nadam", 1e-4, 0.2, "10,15,18,20", 512, crop=0, mirror=0, inter=9),
    ]),
    "M12": Model("dpn131-symbol.json", "dpn131-0000.params", "flatten", [], [
        run("stderr 1", 0, 15, "nadam", 1e-4, 0.2, "10,15,20", 384, smooth=0.1, data="B"),
        run("stderr 2", 13, 17, "nadam", 1e-4, 0.2, "10,13,15,20", 384, smooth=0.1, data="B", inter=9),
    ]),
    "M13": Model("resnext", "M09-0015.params", None, SE_RESNEXT, [
        run("stderr 1", 0, 11, "nadam", 1e-4, 0.2, "4,7,9,11", 512, smooth=0.1, dropout=0.2, hsl=HSL20, data="B"),
        run("stderr 2", 11, 13, "nadam", 1e-4, 0.2, "4,7,9,13", 512, smooth=0.1, dropout=0.2, crop=0, mirror=0,
            data="B"),
    ]),
    "M14": Model("dpn107-extra-symbol.json", "dpn107-extra-0000.params", "flatten", [], [
        run("stderr 1", 0, 15, "nadam", 1e-4, 0.2, "10,13,15", 384, smooth=0.1),
        run("stderr 2", 15, 20, "nadam", 1e-4, 0.2, "10,13,20", 384, smooth=0.1, inter=9),
        run("stderr 3", 17, 20, "nadam", 1e-4, 0.2, "10,13,17,20", 384, smooth=0.1, inter=9),
    ]),
}

RESNET34 = ("resnet-34-symbol.json", "resnet-34-0000.params", "flatten0", [])
EXPERIMENTS = {
    "augmentation": {
        "noaug": run("stderr_noaug", 0, 15, "adam", 5e-4, 0.2, "6,10,13,15", 512, mirror=0, init="xavier"),
        "flip": run("stderr_flip", 0, 15, "adam", 5e-4, 0.2, "6,10,13,15", 512, init="xavier"),
        "flip_hsl": run("stderr_flip_hsl", 0, 15, "adam", 5e-4, 0.2, "6,10,13,15", 512, hsl=HSL20, init="xavier"),
        "flip_224": run("stderr_flip_224", 0, 15, "adam", 5e-4, 0.2, "6,10,13,15", 512, shape="3,224,224",
                        resize=224, init="xavier"),
    },
    "dropout": {
        "dropout_0.0": run("dropout_0.0.out", 0, 15, "nadam", 5e-4, 0.2, "8,12,15", 512, dropout=0.0),
        "dropout_0.2": run("dropout_0.2.out", 0, 15, "nadam", 5e-4, 0.2, "8,12,15", 512, dropout=0.2),
    },
    "image_size": {
        f"size_{size}": run(f"stderr_{size}", 0, 17, "sgd", 0.005, 0.2, "8,12,15,17", 512,
                            shape=f"3,{size},{size}", resize=size, inter=1)
        for size in (160, 180, 192, 224)
    },
    "label_smoothing": {
        f"smooth_{alpha}": run(f"stderr_smooth{alpha}.txt", 0, 15, "adam", 5e-4, 0.2, "6,10,13,15", 512,
                               smooth=alpha)
        for alpha in (0.0, 0.1, 0.2)
    },
}
