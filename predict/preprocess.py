"""Turning a product's JPEGs into network input: decode, RGB, size, test-time views.

As the original's predict.py: decode to RGB; `--resize R` squashes the picture to RxR
with cubic interpolation (the aspect ratio is not kept); the views of `--multi-view`
are the picture (0), + its horizontal flip (1), + its vertical flip (2), + the picture
without a 5-pixel border resized back to the input size (3, OpenCV's default bilinear
interpolation, as the original called cv2.resize without one). The original fed the
picture whole, so it had to be the input size already (Kaggle's are 180x180); here a
larger one is centre-cropped to `height x width` and a smaller one (only without
--resize) first scaled up, shorter edge to the input size. The network sees raw 0-255
values; mean and scale are applied by the predictor, as ImageRecordIter applied them in
training.
"""
import cv2
import numpy as np

MULTI_VIEWS = {0: ("original",), 1: ("original", "hflip"), 2: ("original", "hflip", "vflip"),
               3: ("original", "hflip", "vflip", "border_crop")}
BORDER_PIXELS = 5  # the border_crop view drops this many pixels on each side, then scales back up

cv2.setNumThreads(1)  # one decode per worker process; the workers are the parallelism


def decode_rgb(jpeg):
    """HxWx3 uint8 RGB, or None when the bytes are not a decodable picture."""
    bgr = cv2.imdecode(np.frombuffer(jpeg, dtype=np.uint8), cv2.IMREAD_COLOR)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def fit_to_input(rgb, height, width, resize=0):
    """Squash to `resize` x `resize` (cubic) when given, else scale a picture smaller than the input
    up (shorter edge); then crop the centre height x width."""
    if resize:
        if resize < max(height, width):
            raise ValueError(f"resize {resize} is smaller than the input {height}x{width}")
        rgb = cv2.resize(rgb, (resize, resize), interpolation=cv2.INTER_CUBIC)
    h, w = rgb.shape[:2]
    if min(h, w) < max(height, width):
        scale = max(height, width) / min(h, w)
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
            if min(h, w) <= 2 * BORDER_PIXELS:
                raise ValueError(f"a {h}x{w} picture has nothing inside its {BORDER_PIXELS}-pixel border")
            inner = rgb[BORDER_PIXELS:h - BORDER_PIXELS, BORDER_PIXELS:w - BORDER_PIXELS]
            view = cv2.resize(inner, (w, h), interpolation=cv2.INTER_LINEAR)
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
