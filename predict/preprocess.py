"""Turning a product's JPEGs into network input: decode, RGB, size, test-time views.

Matches the training input (ImageRecordIter without random crop): decode to RGB,
optionally resize the shorter edge to `resize`, then take the centre
`height x width`. The network sees raw 0-255 values; mean and scale are applied by
the predictor, as ImageRecordIter applied them in training.
"""
import cv2
import numpy as np

MULTI_VIEWS = {0: ("original",), 1: ("original", "hflip"), 2: ("original", "hflip", "vflip"),
               3: ("original", "hflip", "vflip", "centre_crop")}
CENTRE_CROP_FRACTION = 0.875  # the crop view keeps the middle 87.5% and scales it back up

cv2.setNumThreads(1)  # one decode per worker process; the workers are the parallelism


def decode_rgb(jpeg):
    """HxWx3 uint8 RGB, or None when the bytes are not a decodable picture."""
    bgr = cv2.imdecode(np.frombuffer(jpeg, dtype=np.uint8), cv2.IMREAD_COLOR)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def fit_to_input(rgb, height, width, resize=0):
    """Resize the shorter edge to `resize` (when given, or when the picture is smaller than the
    input), then crop the centre height x width."""
    h, w = rgb.shape[:2]
    target = resize or (max(height, width) if min(h, w) < max(height, width) else 0)
    if target and min(h, w) != target:
        scale = target / min(h, w)
        rgb = cv2.resize(rgb, (max(width, round(w * scale)), max(height, round(h * scale))),
                         interpolation=cv2.INTER_LINEAR)
        h, w = rgb.shape[:2]
    top, left = (h - height) // 2, (w - width) // 2
    return rgb[top:top + height, left:left + width]


def make_views(rgb, multi_view):
    """The test-time views of one fitted HxWx3 picture, as a (views, 3, H, W) uint8 array."""
    names = MULTI_VIEWS[multi_view]
    h, w = rgb.shape[:2]
    views = []
    for name in names:
        if name == "original":
            view = rgb
        elif name == "hflip":
            view = rgb[:, ::-1]
        elif name == "vflip":
            view = rgb[::-1]
        else:
            ch, cw = round(h * CENTRE_CROP_FRACTION), round(w * CENTRE_CROP_FRACTION)
            top, left = (h - ch) // 2, (w - cw) // 2
            view = cv2.resize(rgb[top:top + ch, left:left + cw], (w, h), interpolation=cv2.INTER_LINEAR)
        views.append(view.transpose(2, 0, 1))
    return np.ascontiguousarray(np.stack(views))


def product_views(jpegs, height, width, multi_view, resize=0):
    """(views of the decodable pictures stacked image by image, valid flag per picture)."""
    stacks, valid = [], []
    for jpeg in jpegs:
        rgb = decode_rgb(jpeg)
        valid.append(rgb is not None)
        if rgb is not None:
            stacks.append(make_views(fit_to_input(rgb, height, width, resize), multi_view))
    if not stacks:
        return np.zeros((0, 3, height, width), dtype=np.uint8), valid
    return np.concatenate(stacks), valid  # each picture's views consecutive
