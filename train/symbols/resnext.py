"""ResNeXt and SE-ResNeXt (Xie et al. 2017; Hu et al. 2018) in the MXNet Symbol API.

Layer names follow the MXNet model-zoo graph `resnext-101-64x4d-symbol.json`, so the
published `.params` load by name: `bn_data` (fix_gamma, on raw 0-255 RGB input),
`conv0`/`bn0`/`relu0`/`pooling0`, then `stageS_unitU_{conv,bn,relu}{1,2,3}`, the
projection `stageS_unitU_sc` + `stageS_unitU_sc_bn`, the unit output `stageS_unitU_relu`,
and at the end the global average pool `pool1`, the feature layer `flatten0` and `fc1`.
The residual units are post-activation (BatchNorm after each convolution, ReLU after the
addition), with the stride on the grouped 3x3 convolution, as in the published graph.

SE units follow `se-resnext-imagenet-50-0-symbol.json` (SENet.mxnet): the gate acts on
`bn3` before the addition, with layers `_squeeze`, `_flatten`, `_excitation1` (+`_relu`),
`_excitation2` (+`_sigmoid`), and the optional Dropout before the classifier is `dp1`.
That published SE-ResNeXt-50 is a 64x2d network (64 groups, 128 channels in stage 1);
the SENet paper's SE-ResNeXt-50 is 32x4d.
"""
import mxnet as mx

from train.symbols.common import fresh_names

UNITS_PER_STAGE = {
    14: (1, 1, 1, 1),  # demo-sized
    26: (2, 2, 2, 2),  # demo-sized
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}
STAGE_OUTPUTS = (256, 512, 1024, 2048)
BN_EPS = 2e-5
BN_MOMENTUM = 0.9
FEATURE_LAYER = "flatten0"
PUBLISHED_HEAD = ("fc1", "dp1")  # names of the classifier and its Dropout in the published graphs
WORKSPACE = 256  # MB of convolution scratch space, as in the published graph


def batch_norm(data, name, fix_gamma=False):
    return mx.sym.BatchNorm(data, fix_gamma=fix_gamma, eps=BN_EPS, momentum=BN_MOMENTUM, name=name)


def convolution(data, num_filter, kernel, name, stride=1, num_group=1):
    pad = (kernel - 1) // 2
    return mx.sym.Convolution(data, num_filter=num_filter, kernel=(kernel, kernel), stride=(stride, stride),
                              pad=(pad, pad), num_group=num_group, no_bias=True, workspace=WORKSPACE, name=name)


def squeeze_excitation(data, num_channels, se_ratio, name):
    """Scale each channel of `data` by a gate computed from its global average."""
    squeeze = mx.sym.Pooling(data, global_pool=True, kernel=(7, 7), pool_type="avg", name=f"{name}_squeeze")
    squeeze = mx.sym.Flatten(squeeze, name=f"{name}_flatten")
    hidden = mx.sym.FullyConnected(squeeze, num_hidden=num_channels // se_ratio, name=f"{name}_excitation1")
    hidden = mx.sym.Activation(hidden, act_type="relu", name=f"{name}_excitation1_relu")
    gate = mx.sym.FullyConnected(hidden, num_hidden=num_channels, name=f"{name}_excitation2")
    gate = mx.sym.Activation(gate, act_type="sigmoid", name=f"{name}_excitation2_sigmoid")
    gate = mx.sym.Reshape(gate, shape=(-1, num_channels, 1, 1))
    return mx.sym.broadcast_mul(data, gate)


def bottleneck_unit(data, num_out, num_inner, stride, project, num_group, name, se_ratio=None):
    """1x1 reduce -> grouped 3x3 (carries the stride) -> 1x1 expand [-> SE], plus the shortcut."""
    body = convolution(data, num_inner, 1, f"{name}_conv1")
    body = mx.sym.Activation(batch_norm(body, f"{name}_bn1"), act_type="relu", name=f"{name}_relu1")
    body = convolution(body, num_inner, 3, f"{name}_conv2", stride=stride, num_group=num_group)
    body = mx.sym.Activation(batch_norm(body, f"{name}_bn2"), act_type="relu", name=f"{name}_relu2")
    body = batch_norm(convolution(body, num_out, 1, f"{name}_conv3"), f"{name}_bn3")
    if se_ratio:
        body = squeeze_excitation(body, num_out, se_ratio, name)
    shortcut = data
    if project:
        shortcut = batch_norm(convolution(data, num_out, 1, f"{name}_sc", stride=stride), f"{name}_sc_bn")
    return mx.sym.Activation(body + shortcut, act_type="relu", name=f"{name}_relu")


def stem(data):
    """Normalise the raw input, 7x7/2 convolution, 3x3/2 max pool: 1/4 of the input size."""
    net = batch_norm(data, "bn_data", fix_gamma=True)
    net = convolution(net, 64, 7, "conv0", stride=2)
    net = mx.sym.Activation(batch_norm(net, "bn0"), act_type="relu", name="relu0")
    return mx.sym.Pooling(net, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="max", name="pooling0")


def features(data, units, num_group, bottleneck_width, se_ratio=None):
    """Stem and the four stages, ending in the global average pool and `flatten0`."""
    net = stem(data)
    for stage, (num_units, num_out) in enumerate(zip(units, STAGE_OUTPUTS), start=1):
        # the grouped width doubles with every stage, like the output width
        num_inner = num_group * bottleneck_width * 2 ** (stage - 1)
        for unit in range(1, num_units + 1):
            first = unit == 1
            stride = 2 if first and stage > 1 else 1
            net = bottleneck_unit(net, num_out, num_inner, stride, project=first, num_group=num_group,
                                  name=f"stage{stage}_unit{unit}", se_ratio=se_ratio)
    net = mx.sym.Pooling(net, global_pool=True, kernel=(7, 7), pool_type="avg", name="pool1")
    return mx.sym.Flatten(net, name=FEATURE_LAYER)


def build(num_layers=101, num_group=32, bottleneck_width=4, use_se=False, se_ratio=16):
    """(features, their layer name) of ResNeXt-`num_layers` `num_group`x`bottleneck_width`d
    (SE-ResNeXt with `use_se`), up to `flatten0`: no classifier (train.finetune.attach_classifier)."""
    if num_layers not in UNITS_PER_STAGE:
        raise ValueError(f"ResNeXt num_layers {num_layers}: expected one of {sorted(UNITS_PER_STAGE)}")
    if num_group < 1 or bottleneck_width < 1:
        raise ValueError(f"ResNeXt {num_group}x{bottleneck_width}d: groups and width must be positive")
    if use_se and (se_ratio < 1 or STAGE_OUTPUTS[0] % se_ratio):
        raise ValueError(f"se_ratio {se_ratio}: must divide {STAGE_OUTPUTS[0]}")
    with fresh_names():
        net = features(mx.sym.var("data"), UNITS_PER_STAGE[num_layers], num_group, bottleneck_width,
                       se_ratio=se_ratio if use_se else None)
    return net, FEATURE_LAYER
