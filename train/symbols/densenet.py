"""DenseNet-BC (Huang et al. 2017) in the MXNet Symbol API.

Layer names follow `densenet-161-symbol.json` and `densenet-121-symbol.json`, which were
converted from shicai/DenseNet-Caffe. Caffe's BatchNorm + Scale pairs were merged there into
one MXNet BatchNorm named `<conv>_bn` (fix_gamma=False: the Scale's gamma/beta live in it),
so the names are: `conv1`, `conv1_bn`, `relu1`, `pool1`; in dense block B, layer L:
`convB_L_x1_bn` -> `reluB_L_x1` -> `convB_L_x1` (1x1 bottleneck), `convB_L_x2_bn` ->
`reluB_L_x2` -> `convB_L_x2` (3x3, `growth` channels), `concat_B_L`; transitions
`convB_blk_bn` -> `reluB_blk` -> `convB_blk` -> `poolB` (2x2 average); at the end
`conv5_blk_bn` -> `relu5_blk` -> `pool5`, the global average pool and feature layer.
The pools use Caffe's ceil rounding (`pooling_convention="full"`), as converted.

The published classifier `fc6` is a 1x1 Convolution (weight shape (1000, C, 1, 1)); ours is
a FullyConnected `fc6`, so that one layer's published weights do not load (fine-tuning replaces
it anyway). The published weights expect Caffe's input: BGR minus the mean, times 0.017.
"""
import collections

import mxnet as mx

from train.symbols.common import fresh_names

DenseNetConfig = collections.namedtuple("DenseNetConfig", "growth_rate init_features block_layers")

CONFIGS = {
    41: DenseNetConfig(16, 32, (3, 4, 8, 3)),  # demo-sized: 2 * 18 layers + stem + 3 transitions + fc
    121: DenseNetConfig(32, 64, (6, 12, 24, 16)),
    161: DenseNetConfig(48, 96, (6, 12, 36, 24)),
    169: DenseNetConfig(32, 64, (6, 12, 32, 32)),
    201: DenseNetConfig(32, 64, (6, 12, 48, 32)),
}
BOTTLENECK_FACTOR = 4  # the 1x1 convolution gives 4 * growth_rate channels
COMPRESSION = 0.5  # a transition halves the channels
FEATURE_LAYER = "pool5"
PUBLISHED_HEAD = ("fc6", "dropout")  # names of the classifier and its Dropout in the published graph
BN_EPS = 1e-4  # Caffe's BatchNorm epsilon, kept by the conversion


def bn_relu(data, bn_name, relu_name):
    bn = mx.sym.BatchNorm(data, fix_gamma=False, eps=BN_EPS, name=bn_name)
    return mx.sym.Activation(bn, act_type="relu", name=relu_name)


def convolution(data, num_filter, kernel, name, stride=1):
    pad = (kernel - 1) // 2
    return mx.sym.Convolution(data, num_filter=num_filter, kernel=(kernel, kernel), stride=(stride, stride),
                              pad=(pad, pad), no_bias=True, name=name)


def dense_layer(data, growth_rate, block, layer):
    """BN-ReLU-1x1 conv, BN-ReLU-3x3 conv; the `growth_rate` new channels are appended to the input."""
    tag = f"{block}_{layer}"
    net = bn_relu(data, f"conv{tag}_x1_bn", f"relu{tag}_x1")
    net = convolution(net, BOTTLENECK_FACTOR * growth_rate, 1, f"conv{tag}_x1")
    net = bn_relu(net, f"conv{tag}_x2_bn", f"relu{tag}_x2")
    net = convolution(net, growth_rate, 3, f"conv{tag}_x2")
    return mx.sym.Concat(data, net, dim=1, name=f"concat_{tag}")


def transition(data, num_filter, block):
    """BN-ReLU-1x1 conv to `num_filter` channels, then a 2x2 average pool to half the size."""
    net = bn_relu(data, f"conv{block}_blk_bn", f"relu{block}_blk")
    net = convolution(net, num_filter, 1, f"conv{block}_blk")
    return mx.sym.Pooling(net, kernel=(2, 2), stride=(2, 2), pool_type="avg", pooling_convention="full",
                          name=f"pool{block}")


def features(data, config):
    """Stem, four dense blocks (named 2..5 as in Caffe) with transitions between, global pool `pool5`."""
    net = convolution(data, config.init_features, 7, "conv1", stride=2)
    net = bn_relu(net, "conv1_bn", "relu1")
    net = mx.sym.Pooling(net, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="max", pooling_convention="full",
                         name="pool1")
    channels = config.init_features
    last_block = 1 + len(config.block_layers)
    for block, num_layers in enumerate(config.block_layers, start=2):
        for layer in range(1, num_layers + 1):
            net = dense_layer(net, config.growth_rate, block, layer)
        channels += num_layers * config.growth_rate
        if block < last_block:
            channels = int(channels * COMPRESSION)
            net = transition(net, channels, block)
    net = bn_relu(net, f"conv{last_block}_blk_bn", f"relu{last_block}_blk")
    return mx.sym.Pooling(net, global_pool=True, kernel=(1, 1), pool_type="avg", pooling_convention="full",
                          name=FEATURE_LAYER)


def build(num_layers=161):
    """(features, their layer name) of DenseNet-`num_layers` up to `pool5`: no classifier
    (train.finetune.attach_classifier)."""
    if num_layers not in CONFIGS:
        raise ValueError(f"DenseNet num_layers {num_layers}: expected one of {sorted(CONFIGS)}")
    with fresh_names():
        net = features(mx.sym.var("data"), CONFIGS[num_layers])
    return net, FEATURE_LAYER
