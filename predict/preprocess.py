"""Turning a product's JPEGs into network input: decode, RGB, size, test-time views.

The pixels a network sees at prediction are the pixels it saw in training: a checkpoint's
resize (PREFIX-input.json's `resize`, `inter_method`, `resize_mode` shorter_edge) is done as
MXNet's ImageRecordIter did it in training (train.data): the shorter edge to `resize`, the
other edge scaled and floored, with `inter_method` in MXNet's numbering (9: cubic when both
edges grow, area when both shrink, else bilinear; 10, random per picture in training, gets
9's choice), then the centre crop. tests/test_pixel_contract.py holds the two paths within
one grey level.

The prediction flag `--resize R` keeps the original predictor's behaviour (resize_mode
squash): the picture squashed to RxR with cubic interpolation (the aspect ratio not kept),
then the centre crop. For the M-scripts' checkpoints on Kaggle's 180x180 pictures both ways
leave the picture as it is.

Otherwise as the original's predict.py: decode to RGB; the views of `--multi-view` are
the picture (0), + its horizontal flip (1), + its vertical flip (2), + the picture
without a 5-pixel border resized back to the input size (3, OpenCV's default bilinear
interpolation, as the original called cv2.resize without one). The original fed the
picture whole, so it had to be the input size already (Kaggle's are 180x180); here a
larger one is centre-cropped to `height x width` and a smaller one (only without
--resize) first scaled up, shorter edge to the input size. The network sees raw 0-255
values; mean and scale are applied by the predictor, as ImageRecordIter applied them in
training.

A network of product mosaics (PREFIX-input.json's mosaic_size and mosaic_fill; not the original's) gets one
picture per product instead: its pictures tiled by data.mosaic as data.bson2rec --mosaic tiled them for training,
encoded as that JPEG and decoded, then resized and cropped as above (mosaic_views). Its flip views mirror each
tile in place (data.mosaic.flip_tiles), not the whole mosaic.
"""
import dataclasses

import cv2
import numpy as np

from data.mosaic import build_mosaic, decoded_pictures, encode_jpeg, flip_tiles

MULTI_VIEWS = {0: ("original",), 1: ("original", "hflip"), 2: ("original", "hflip", "vflip"),
               3: ("original", "hflip", "vflip", "border_crop")}
BORDER_PIXELS = 5  # the border_crop view drops this many pixels on each side, then scales back up

RESIZE_MODES = ("shorter_edge", "squash")  # train.checkpoint.InputSettings.resize_mode
AUTO_INTERPOLATION, RANDOM_INTERPOLATION = 9, 10  # MXNet's inter_method numbers beyond OpenCV's 0-4

cv2.setNumThreads(1)  # one decode per worker process; the workers are the parallelism


@dataclasses.dataclass(frozen=True)
class Resize:
    """How a picture is resized before the centre crop to the input (size 0: not resized)."""
    size: int = 0
    mode: str = "shorter_edge"  # RESIZE_MODES
    inter_method: int = AUTO_INTERPOLATION  # MXNet's numbering: 0-4 OpenCV's, 9 auto, 10 random

    def __post_init__(self):
        if self.mode not in RESIZE_MODES:
            raise ValueError(f"resize_mode {self.mode!r}: expected one of {', '.join(RESIZE_MODES)}")
        if self.inter_method not in (0, 1, 2, 3, 4, AUTO_INTERPOLATION, RANDOM_INTERPOLATION):
            raise ValueError(f"inter_method {self.inter_method}: expected 0-4, 9 or 10")

    @classmethod
    def of(cls, value):
        """The Resize of a checkpoint's InputSettings, an int (the original's --resize: squash, cubic) or a
        Resize; every size 0 is the same Resize(), so that models differing only there share their views."""
        if isinstance(value, cls):
            resize = value
        elif isinstance(value, int):
            resize = cls(value, "squash", cv2.INTER_CUBIC)
        else:
            resize = cls(value.resize, value.resize_mode, value.inter_method)
        return resize if resize.size else cls()

    def __str__(self):
        """The form the pipeline's workers are given (`parse` reads it) and the log shows."""
        return f"{self.size},{self.mode},{self.inter_method}" if self.size else "0"

    @classmethod
    def parse(cls, text):
        size, *rest = text.split(",")
        return cls.of(cls(int(size), rest[0], int(rest[1])) if rest else int(size))

    def new_size(self, height, width):
        """(height, width) after the resize: ImageRecordIter's integer arithmetic for the shorter edge."""
        if self.mode == "squash":
            return self.size, self.size
        if height > width:
            return self.size * height // width, self.size
        return self.size, self.size * width // height

    def interpolation(self, old, new):
        """OpenCV's interpolation for (height, width) `old` -> `new`, as MXNet chooses it (auto: cubic to
        enlarge both edges, area to shrink both, else bilinear)."""
        if self.inter_method not in (AUTO_INTERPOLATION, RANDOM_INTERPOLATION):
            return self.inter_method
        if new[0] > old[0] and new[1] > old[1]:
            return cv2.INTER_CUBIC
        if new[0] < old[0] and new[1] < old[1]:
            return cv2.INTER_AREA
        return cv2.INTER_LINEAR


def decode_rgb(jpeg):
    """HxWx3 uint8 RGB, or None when the bytes are not a decodable picture."""
    bgr = cv2.imdecode(np.frombuffer(jpeg, dtype=np.uint8), cv2.IMREAD_COLOR)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def fit_to_input(rgb, height, width, resize=0):
    """Resize as `resize` says (a Resize, or an int: the original's --resize, squashed to RxR with cubic
    interpolation), else scale a picture smaller than the input up (shorter edge, bilinear); then crop
    the centre height x width."""
    resize = Resize.of(resize)
    if resize.size:
        if resize.size < max(height, width):
            raise ValueError(f"resize {resize.size} is smaller than the input {height}x{width}")
        old = rgb.shape[:2]
        new = resize.new_size(*old)
        rgb = cv2.resize(rgb, (new[1], new[0]), interpolation=resize.interpolation(old, new))
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
    """(views of the decodable pictures stacked image by image, valid flag per picture); `resize` as
    fit_to_input's."""
    stacks, valid = [], []
    for jpeg in jpegs:
        rgb = decode_rgb(jpeg)
        valid.append(rgb is not None)
        if rgb is not None:
            stacks.append(make_views(fit_to_input(rgb, height, width, resize), multi_view))
    if not stacks:
        return np.zeros((0, 3, height, width), dtype=np.uint8), valid
    return np.concatenate(stacks), valid  # each picture's views consecutive


MOSAIC_FLIP_AXES = {"original": None, "hflip": 1, "vflip": 0}  # the views of a mosaic; border_crop has none


def mosaic_views(jpegs, layout, height, width, multi_view, resize=0):
    """(the views of the product's mosaic (data.mosaic.MosaicLayout `layout`) as a (views, 3, H, W) uint8 array, none
    when no picture decodes; whether each picture decoded). The mosaic goes through the records' JPEG encoding, then
    each view (each tile flipped in place for hflip and vflip) is fitted to the input as fit_to_input fits a
    picture."""
    rgbs, decoded = decoded_pictures(jpegs, decode_rgb)
    if not rgbs:
        return np.zeros((0, 3, height, width), dtype=np.uint8), decoded
    names = MULTI_VIEWS[multi_view]
    if any(name not in MOSAIC_FLIP_AXES for name in names):
        raise ValueError(f"--multi-view {multi_view}: a mosaic has the views {', '.join(MOSAIC_FLIP_AXES)} only")
    mosaic = decode_rgb(encode_jpeg(build_mosaic(rgbs, layout)))  # the pixels of the training record
    views = []
    for name in names:
        axis = MOSAIC_FLIP_AXES[name]
        view = mosaic if axis is None else flip_tiles(mosaic, axis)
        views.append(fit_to_input(view, height, width, resize).transpose(2, 0, 1))
    return np.ascontiguousarray(np.stack(views)), decoded
