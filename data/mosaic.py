"""Product mosaics (not the original's: bestfitting's multi-image models, 1st place): a product's 1-4 pictures
tiled into one picture, so that a network sees the whole product at once.

The one home of the tiling: data.bson2rec --mosaic writes these mosaics as records, and prediction
(predict.preprocess.mosaic_views) builds the same mosaic of each test product with the same functions, so
that a mosaic network sees at prediction the pixels it was trained on.

Layout (MosaicLayout): a 2x2 grid of tiles of size/2 x size/2 (360: Kaggle's 180x180 pictures at their own
size); tile k (row-major: top-left, top-right, bottom-left, bottom-right) holds picture k. A picture of another
size is resized to the tile (INTER_AREA when it shrinks, bilinear otherwise; the aspect ratio is not kept: Kaggle's
pictures are square). Only the first 4 decodable pictures are used (Kaggle's products have at most 4).
The slots of a product with fewer pictures (`fill`):
  repeat  the pictures again in order (1: p0 p0 / p0 p0; 2: p0 p1 / p0 p1; 3: p0 p1 / p2 p0): every tile shows
          the product, so a one-picture product is its picture four times and nothing in the input depends on a
          fill value the pictures never show (the default);
  blank   white tiles (Cdiscount's pictures are on white): the picture count stays visible to the network.
The mosaic is stored and fed as a JPEG of quality JPEG_QUALITY (encode_jpeg); prediction encodes its mosaics
the same way before decoding them, so that both sides see the same compression.

Flip TTA of a mosaic (flip_tiles) mirrors each tile in place, as if each picture had been flipped before the
tiling: the whole mosaic's flip would also swap the tiles left and right. Training's random mirror
(ImageRecordIter) does flip the whole mosaic, a tile swap the network learns to ignore.
"""
import dataclasses

import cv2
import numpy as np

GRID = 2  # tiles per side
MAX_PICTURES = GRID * GRID
FILL_RULES = ("repeat", "blank")
DEFAULT_SIZE = 360  # 2 x Kaggle's 180
DEFAULT_FILL = "repeat"
BLANK_VALUE = 255  # white, the pictures' own background
JPEG_QUALITY = 95  # OpenCV's default; the records' and prediction's


@dataclasses.dataclass(frozen=True)
class MosaicLayout:
    """A mosaic of size x size pixels, GRID x GRID tiles, empty slots filled as `fill` says."""
    size: int = DEFAULT_SIZE
    fill: str = DEFAULT_FILL

    def __post_init__(self):
        if not isinstance(self.size, int) or self.size < GRID or self.size % GRID:
            raise ValueError(f"mosaic size {self.size!r}: expected an even number of pixels")
        if self.fill not in FILL_RULES:
            raise ValueError(f"mosaic fill {self.fill!r}: expected one of {', '.join(FILL_RULES)}")

    @property
    def tile(self):
        return self.size // GRID

    def __str__(self):
        """The form the prediction workers are given (`parse` reads it back)."""
        return f"{self.size},{self.fill}"

    @classmethod
    def parse(cls, text):
        size, fill = text.split(",")
        return cls(int(size), fill)


def layout_of(size, fill):
    """The MosaicLayout of a file's `mosaic_size` and `mosaic_fill` fields (X.rec.json, PREFIX-input.json); None for a
    file of pictures, which has neither; ValueError for one without the other or a bad layout."""
    if size is None and fill is None:
        return None
    if size is None or fill is None:
        raise ValueError("mosaic_size and mosaic_fill go together")
    return MosaicLayout(size, fill)


def tile_sources(num_pictures, fill):
    """The picture in each tile, row-major, for a product of `num_pictures` (>= 1): its index, or None (blank)."""
    if num_pictures < 1:
        raise ValueError("a mosaic needs at least one picture")
    used = min(num_pictures, MAX_PICTURES)
    if fill == "repeat":
        return [k % used for k in range(MAX_PICTURES)]
    return [k if k < used else None for k in range(MAX_PICTURES)]


def fit_tile(rgb, tile):
    """A picture at tile x tile (unchanged when it is that size already)."""
    height, width = rgb.shape[:2]
    if (height, width) == (tile, tile):
        return rgb
    shrinks = height > tile and width > tile
    return cv2.resize(rgb, (tile, tile), interpolation=cv2.INTER_AREA if shrinks else cv2.INTER_LINEAR)


def build_mosaic(rgbs, layout):
    """The size x size x 3 uint8 mosaic of a product's decoded RGB pictures (HxWx3 uint8, at least one)."""
    tile = layout.tile
    tiles = [fit_tile(rgb, tile) for rgb in rgbs[:MAX_PICTURES]]
    mosaic = np.full((layout.size, layout.size, 3), BLANK_VALUE, dtype=np.uint8)
    for k, source in enumerate(tile_sources(len(rgbs), layout.fill)):
        if source is not None:
            row, column = divmod(k, GRID)
            mosaic[row * tile:(row + 1) * tile, column * tile:(column + 1) * tile] = tiles[source]
    return mosaic


def flip_tiles(mosaic, axis=1):
    """Each tile of an HxWxC mosaic mirrored in place (axis 1: left-right, 0: up-down); H and W divisible by GRID."""
    height, width = mosaic.shape[:2]
    if height % GRID or width % GRID:
        raise ValueError(f"a {height}x{width} mosaic does not split into {GRID}x{GRID} tiles")
    tiles = mosaic.reshape(GRID, height // GRID, GRID, width // GRID, *mosaic.shape[2:])
    return np.ascontiguousarray(np.flip(tiles, axis=1 + 2 * axis).reshape(mosaic.shape))


def encode_jpeg(rgb):
    """JPEG bytes of an RGB picture at JPEG_QUALITY (OpenCV writes BGR)."""
    ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("OpenCV could not encode the mosaic")
    return buffer.tobytes()


def decoded_pictures(jpegs, decode):
    """(the pictures a mosaic of the product uses: its first MAX_PICTURES decodable ones, in order, as RGB; whether
    each of its pictures decoded). `decode`: bytes -> HxWx3 RGB or None (predict.preprocess.decode_rgb)."""
    rgbs = [decode(jpeg) for jpeg in jpegs]
    return [rgb for rgb in rgbs if rgb is not None][:MAX_PICTURES], [rgb is not None for rgb in rgbs]
