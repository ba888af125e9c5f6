"""Which gluoncv2 zoo network `python -m train.import_weights` makes each published ImageNet checkpoint from.

The one copy of that table: train.import_weights lists it in its --help, and the stage planner
(train/stages.py) names the import command when a model script's starting weights are missing.
Standard library only, so that the planner's dry runs need no MXNet.
"""
import os

# The published checkpoint's prefix, as the model scripts expect it in PRETRAINED_DIR -> the zoo network.
ZOO_NETWORKS = {
    "resnext-101": "resnext101_32x4d",         # M01, M10
    "resnext-101-64x4d": "resnext101_64x4d",   # M07, M09 (M11 and M13 continue from them)
    "se-resnext-101-64x4d": "seresnext101_64x4d",  # no model script starts from it
    "densenet-161": "densenet161",             # M04
    "dpn98": "dpn98",                          # M05
    "dpn131": "dpn131",                        # M08, M12
}
SYMBOL_SUFFIX = "-symbol.json"


def zoo_network(symbol_path):
    """The zoo network of a published checkpoint's symbol file (PREFIX-symbol.json), or None."""
    name = os.path.basename(symbol_path)
    if not name.endswith(SYMBOL_SUFFIX):
        return None
    return ZOO_NETWORKS.get(name[:-len(SYMBOL_SUFFIX)])


def import_command(symbol_path):
    """The train.import_weights command that writes the checkpoint of `symbol_path`, or None."""
    network = zoo_network(symbol_path)
    if network is None:
        return None
    prefix = symbol_path[:-len(SYMBOL_SUFFIX)]
    return f"python -m train.import_weights --zoo gluoncv2 --model {network} --out {prefix}"


def table_text():
    """The table as lines for a --help."""
    width = max(map(len, ZOO_NETWORKS))
    return "\n".join(f"  {published:<{width}}  <- {network}" for published, network in ZOO_NETWORKS.items())
