"""Pieces every network builder shares: the input, the classifier head, argument checks."""
import mxnet as mx

# Every network here halves the resolution five times; a smaller input leaves no pixels.
MIN_IMAGE_SIZE = 32
DTYPES = ("float32", "float16")


def parse_image_shape(image_shape):
    """(channels, height, width) from "3,224,224" or a tuple; refuses shapes the networks cannot take."""
    if isinstance(image_shape, str):
        try:
            shape = tuple(int(x) for x in image_shape.split(","))
        except ValueError:
            raise ValueError(f"image_shape {image_shape!r}: expected 'channels,height,width'") from None
    else:
        shape = tuple(int(x) for x in image_shape)
    if len(shape) != 3 or shape[0] < 1:
        raise ValueError(f"image_shape {image_shape!r}: expected 'channels,height,width'")
    if min(shape[1:]) < MIN_IMAGE_SIZE:
        raise ValueError(f"image_shape {image_shape!r}: height and width must be at least {MIN_IMAGE_SIZE}")
    return shape


def input_data(dtype="float32"):
    """The `data` variable, cast to float16 for mixed-precision training when asked."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r}: expected one of {', '.join(DTYPES)}")
    data = mx.sym.var("data")
    if dtype == "float16":
        data = mx.sym.Cast(data, dtype="float16", name="data_float16")
    return data


def classifier(features, num_classes, fc_name, dtype="float32", dropout_ratio=0.0, dropout_name="dropout",
               smooth_alpha=0.0):
    """[Dropout] -> FullyConnected(num_classes) -> SoftmaxOutput("softmax") on top of `features`."""
    if int(num_classes) != num_classes or num_classes < 1:
        raise ValueError(f"num_classes {num_classes!r}: must be a positive integer")
    if not 0.0 <= dropout_ratio < 1.0:
        raise ValueError(f"dropout_ratio {dropout_ratio}: must be in [0, 1)")
    if not 0.0 <= smooth_alpha < 1.0:
        raise ValueError(f"smooth_alpha {smooth_alpha}: must be in [0, 1)")
    net = features
    if dtype == "float16":
        net = mx.sym.Cast(net, dtype="float32", name="features_float32")  # classifier and loss in float32
    if dropout_ratio > 0:
        net = mx.sym.Dropout(net, p=dropout_ratio, name=dropout_name)
    net = mx.sym.FullyConnected(net, num_hidden=int(num_classes), name=fc_name)  # flattens (N, C, 1, 1) itself
    return mx.sym.SoftmaxOutput(net, smooth_alpha=smooth_alpha, name="softmax")


def fresh_names():
    """A name scope whose automatic names (`_plus0`, `reshape0`, ...) start from 0 again, so a
    network built twice in one process gets the same node names as the published graphs."""
    return mx.name.NameManager()
