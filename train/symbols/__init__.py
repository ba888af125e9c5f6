"""The networks of the solution, by name: `build_features("dpn-92")`, `get_symbol("dpn-92", num_classes=5270)`.

Names: `resnext-D` (32x4d, the MXNet model zoo's `resnext-D`), `resnext-D-64x4d`,
`se-resnext-D[-GxWd]`, `dpn-D`, `densenet-D`. A family's builder returns the features and
the name of their layer (where fine-tuning cuts: `FEATURE_LAYERS`); the head comes from
train.finetune.attach_classifier, the only head builder. `get_symbol` gives it the names of
the published graph's classifier (fc1, fc6), so the published weights load by name.
"""
from cli.runner import UserError
from train.finetune import attach_classifier
from train.symbols import densenet, dpn, resnext

_MODULES = {
    "resnext": resnext,
    "se-resnext": resnext,
    "dpn": dpn,
    "densenet": densenet,
}
FEATURE_LAYERS = {family_name: module.FEATURE_LAYER for family_name, module in _MODULES.items()}


def _resnext(depth, groups=32, width=4, se=False):
    family = "se-resnext" if se else "resnext"
    return family, dict(num_layers=depth, num_group=groups, bottleneck_width=width, use_se=se)


# name -> (family, the builder's architecture arguments)
_REGISTRY = {
    # demo-sized (fast on a CPU): ResNeXt 32x4d with one / two units per stage
    "resnext-14": _resnext(14),
    "resnext-26": _resnext(26),
    "resnext-50": _resnext(50),
    "resnext-101": _resnext(101),
    "resnext-152": _resnext(152),
    "resnext-50-64x4d": _resnext(50, groups=64),
    "resnext-101-64x4d": _resnext(101, groups=64),
    "se-resnext-50": _resnext(50, se=True),
    "se-resnext-101": _resnext(101, se=True),
    "se-resnext-152": _resnext(152, se=True),
    # the layout of SENet.mxnet's published se-resnext-imagenet-50 graph
    "se-resnext-50-64x2d": _resnext(50, groups=64, width=2, se=True),
    "se-resnext-101-64x4d": _resnext(101, groups=64, se=True),
    # demo-sized (fast on a CPU): a narrow DPN with two blocks per stage
    "dpn-26": ("dpn", dict(num_layers=26)),
    "dpn-68": ("dpn", dict(num_layers=68)),
    "dpn-92": ("dpn", dict(num_layers=92)),
    "dpn-98": ("dpn", dict(num_layers=98)),
    "dpn-107": ("dpn", dict(num_layers=107)),
    "dpn-131": ("dpn", dict(num_layers=131)),
    # demo-sized (fast on a CPU): a narrow DenseNet with 3, 4, 8, 3 layers per block
    "densenet-41": ("densenet", dict(num_layers=41)),
    "densenet-121": ("densenet", dict(num_layers=121)),
    "densenet-161": ("densenet", dict(num_layers=161)),
    "densenet-169": ("densenet", dict(num_layers=169)),
    "densenet-201": ("densenet", dict(num_layers=201)),
}


def list_symbols():
    return list(_REGISTRY)


def _lookup(name):
    if name not in _REGISTRY:
        raise UserError(f"unknown network {name!r}; known: {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def family(name):
    """The family of network `name`: resnext, se-resnext, dpn or densenet."""
    return _lookup(name)[0]


def resnext_name(num_layers, num_groups=32, squeeze_excitation=False):
    """Our name of the original's `--symbol resnext --num-layers N --num-conv-groups G
    [--use-squeeze-excitation]` (its bottleneck is 4 channels wide per group for 32 and 64 groups)."""
    name = f"{'se-' if squeeze_excitation else ''}resnext-{num_layers}{'-64x4d' if num_groups == 64 else ''}"
    if num_groups not in (32, 64) or name not in _REGISTRY:
        built = ", ".join(n for n, (family_name, arch) in _REGISTRY.items()
                          if family_name.endswith("resnext") and arch["bottleneck_width"] == 4)
        raise UserError(f"resnext with {num_layers} layers, {num_groups} groups"
                        f"{' and squeeze-excitation' if squeeze_excitation else ''} is not built here; built: {built}")
    return name


def se_ratio_of(excitation_ratio):
    """The reduction (16) of the original's --excitation-ratio (1/16): SE width = channels / reduction."""
    reduction = round(1 / excitation_ratio) if excitation_ratio > 0 else 0
    if reduction < 1 or abs(reduction * excitation_ratio - 1) > 1e-6 or 256 % reduction:
        raise UserError(f"--excitation-ratio {excitation_ratio}: expected 1/N with N dividing 256, "
                        "such as 0.0625 (1/16)")
    return reduction


def build_features(name, se_ratio=None):
    """(features, their layer name) of network `name`; `se_ratio`: another SE reduction than 16
    (the original's --excitation-ratio) for an SE-ResNeXt."""
    family_name, architecture = _lookup(name)
    if se_ratio is not None:
        if family_name != "se-resnext":
            raise UserError(f"{name}: has no squeeze-excitation layers to set a ratio for")
        architecture = dict(architecture, se_ratio=se_ratio)
    return _MODULES[family_name].build(**architecture)


def get_symbol(name, num_classes, dropout_ratio=0.0, smooth_alpha=0.0, float16=False):
    """Network `name` with a `num_classes` classifier named as in its published graph."""
    features, _ = build_features(name)
    fc_name, dropout_name = _MODULES[family(name)].PUBLISHED_HEAD
    return attach_classifier(features, num_classes, dropout_ratio, smooth_alpha, float16, fc_name=fc_name,
                             dropout_name=dropout_name)
