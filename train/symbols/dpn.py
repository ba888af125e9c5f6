"""Dual Path Networks (Chen et al. 2017) in the MXNet Symbol API, configured as cypw/DPNs.

Every block keeps two paths: a residual path of `bw` channels (added to) and a densely
connected path (appended to: `inc` new channels per block). Pre-activation throughout
(BatchNorm, ReLU, then convolution).

Names follow the naming scheme of cypw/DPNs' symbol code, so its published `.params` load by
name. No published symbol JSON of its checkpoints could be found; instead its symbol code was
built with MXNet 1.9.1 and every parameter up to `flatten` of DPN-68/92/98/107/131 matched ours
in name and shape (tests/data/cypw_dpn_param_shapes.json keeps the lists of DPN-92, as in
`dpn92-5k`, and DPN-107, as in `dpn107-extra`). A BN-ReLU-conv called N has BatchNorm `N__bn__bn`, ReLU `N__ac__relu` and convolution
`N__conv`. The stem is `conv1_x_1__conv` + BN-ReLU `conv1_x_1__relu-sp__{bn,relu}` + `pool1`.
Block I of stage S is `convS_x__I`, with `_c1x1-w(s/K)` (the projection that opens a stage,
K its stride), `_c1x1-a`, `_c3x3-b`, `_c1x1-c` and the outputs `_sum` and `_cat` (`_cat-input`
joins the two paths at a block's input). At the end, `conv5_x_x_cat-final` and the BN-ReLU
`conv5_x_x__relu-sp__{bn,relu}`, the average pool `pool5`, the feature layer `flatten` and `fc6`.

One change from cypw: `pool5` is a global average pool. The published 7x7 pool with stride 1
is not global: at 160 or 180 px input the last map is 5x5 or 6x6 and the 7x7 kernel fails.
At 224 px both give the same result. The published weights expect RGB minus (124, 117, 104),
times 0.0167.
"""
import collections

import mxnet as mx

from train.symbols.common import fresh_names

DPNConfig = collections.namedtuple(
    "DPNConfig",
    "stem_filters stem_kernel k_r groups blocks_per_stage increments first_stage_width")

# k_r: width of the grouped 3x3 in the first stage (doubles per stage); increments: channels
# each block adds to the dense path, per stage; first_stage_width: the residual path's width in
# stage 2 (doubles per stage): 64 for the small DPN-68, 256 for the others.
CONFIGS = {
    26: DPNConfig(16, 3, 32, 8, (2, 2, 2, 2), (8, 16, 16, 32), 64),  # demo-sized: 3 * 8 blocks + stem + fc
    68: DPNConfig(10, 3, 128, 32, (3, 4, 12, 3), (16, 32, 32, 64), 64),
    92: DPNConfig(64, 7, 96, 32, (3, 4, 20, 3), (16, 32, 24, 128), 256),
    98: DPNConfig(96, 7, 160, 40, (3, 6, 20, 3), (16, 32, 32, 128), 256),
    107: DPNConfig(128, 7, 200, 50, (4, 8, 20, 3), (20, 64, 64, 128), 256),
    131: DPNConfig(128, 7, 160, 40, (4, 8, 28, 3), (16, 32, 32, 128), 256),
}
FEATURE_LAYER = "flatten"
PUBLISHED_HEAD = ("fc6", "dropout")  # names of the classifier and its Dropout in cypw's graphs
BN_EPS = 1e-3  # MXNet's default, which cypw's graphs used
BN_MOMENTUM = 0.9


def bn_relu(data, name):
    bn = mx.sym.BatchNorm(data, fix_gamma=False, eps=BN_EPS, momentum=BN_MOMENTUM, name=f"{name}__bn")
    return mx.sym.Activation(bn, act_type="relu", name=f"{name}__relu")


def bn_relu_conv(data, num_filter, kernel, name, stride=1, num_group=1):
    bn = mx.sym.BatchNorm(data, fix_gamma=False, eps=BN_EPS, momentum=BN_MOMENTUM, name=f"{name}__bn__bn")
    net = mx.sym.Activation(bn, act_type="relu", name=f"{name}__ac__relu")
    pad = (kernel - 1) // 2
    return mx.sym.Convolution(net, num_filter=num_filter, kernel=(kernel, kernel), stride=(stride, stride),
                              pad=(pad, pad), num_group=num_group, no_bias=True, name=f"{name}__conv")


def split_channels(data, first, total, name):
    """(channels [0, first), channels [first, total)) of `data`."""
    return (mx.sym.slice_axis(data, axis=1, begin=0, end=first, name=f"{name}-split1"),
            mx.sym.slice_axis(data, axis=1, begin=first, end=total, name=f"{name}-split2"))


def dual_path_block(paths, num_inner, width, inc, groups, name, stride=1, project=False):
    """One block. `paths` is (residual, dense), or a single tensor before the first block.
    Returns the new (residual, dense): residual + `width` channels, dense with `inc` more."""
    if isinstance(paths, tuple):
        data = mx.sym.Concat(*paths, dim=1, name=f"{name}_cat-input")
    else:
        data = paths
    if project:  # a new stage: project the input onto both paths
        proj_name = f"{name}_c1x1-w(s/{stride})"
        proj = bn_relu_conv(data, width + 2 * inc, 1, proj_name, stride=stride)
        residual, dense = split_channels(proj, width, width + 2 * inc, proj_name)
    else:
        residual, dense = paths
    net = bn_relu_conv(data, num_inner, 1, f"{name}_c1x1-a")
    net = bn_relu_conv(net, num_inner, 3, f"{name}_c3x3-b", stride=stride, num_group=groups)
    net = bn_relu_conv(net, width + inc, 1, f"{name}_c1x1-c")
    new_residual, new_dense = split_channels(net, width, width + inc, f"{name}_c1x1-c")
    return (mx.sym.ElementWiseSum(residual, new_residual, name=f"{name}_sum"),
            mx.sym.Concat(dense, new_dense, dim=1, name=f"{name}_cat"))


def features(data, config):
    """Stem, stages conv2..conv5, final BN-ReLU, global pool `pool5` and `flatten`."""
    pad = (config.stem_kernel - 1) // 2
    net = mx.sym.Convolution(data, num_filter=config.stem_filters, kernel=(config.stem_kernel,) * 2,
                             stride=(2, 2), pad=(pad, pad), no_bias=True, name="conv1_x_1__conv")
    net = bn_relu(net, "conv1_x_1__relu-sp")
    paths = mx.sym.Pooling(net, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="max", name="pool1")
    for index, (num_blocks, inc) in enumerate(zip(config.blocks_per_stage, config.increments)):
        stage = index + 2  # stages are numbered conv2..conv5, as in ResNet
        width = config.first_stage_width * 2 ** index
        num_inner = config.k_r * 2 ** index
        for block in range(1, num_blocks + 1):
            first = block == 1
            stride = 2 if first and stage > 2 else 1
            paths = dual_path_block(paths, num_inner, width, inc, config.groups, f"conv{stage}_x__{block}",
                                    stride=stride, project=first)
    net = mx.sym.Concat(*paths, dim=1, name="conv5_x_x_cat-final")
    net = bn_relu(net, "conv5_x_x__relu-sp")
    net = mx.sym.Pooling(net, global_pool=True, kernel=(7, 7), pool_type="avg", name="pool5")
    return mx.sym.Flatten(net, name=FEATURE_LAYER)


def build(num_layers=92):
    """(features, their layer name) of DPN-`num_layers` up to `flatten`: no classifier
    (train.finetune.attach_classifier)."""
    if num_layers not in CONFIGS:
        raise ValueError(f"DPN num_layers {num_layers}: expected one of {sorted(CONFIGS)}")
    with fresh_names():
        net = features(mx.sym.var("data"), CONFIGS[num_layers])
    return net, FEATURE_LAYER
