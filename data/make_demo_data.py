"""Generate a seeded demo dataset in Kaggle's exact Cdiscount formats.

Writes `train.bson`, `test.bson`, `category_names.csv` and `test_ground_truth.csv`
to `--out-dir`, so that the whole pipeline (split, .rec conversion, MD5
dictionaries, training, prediction) runs without Kaggle's 58 GB of data.

The statistics imitate the real data: a long-tailed category distribution,
1 to 4 pictures per product (mean about 1.75), 180x180 JPEGs of 2-10 KB, and
repeated pictures: stock photos shared by products of a category, relisted
products, products repeating one of their own pictures and a few pictures shared
across categories (conflicting labels). Some test products share pictures, or
their whole picture set, with train products.

Pictures are synthetic: each category has a style (shape kind, two or three
colours, a stripe texture); each product varies position, size, rotation, colour,
background clutter and noise, and its pictures are different views of one object.
Everything is drawn from one `numpy.random.default_rng(seed)`: the same seed
gives byte-identical files.
"""
import argparse
import csv
import logging
import math
import os
from dataclasses import dataclass, field

import bson
import cv2
import numpy as np
from tqdm import tqdm

from cli.files import atomic_outputs, check_outputs
from cli.reporting import Timer, human_bytes
from cli.runner import HelpFormatter, UserError, run_cli

log = logging.getLogger(__name__)

OUTPUT_NAMES = ("train.bson", "test.bson", "category_names.csv", "test_ground_truth.csv")
CATEGORY_HEADER = ["category_id", "category_level1", "category_level2", "category_level3"]
GROUND_TRUTH_HEADER = ["_id", "category_id"]

# Kaggle's category ids are 10-digit numbers in this range.
FIRST_CATEGORY_ID, LAST_CATEGORY_ID = 1000000000, 1000022000

ZIPF_EXPONENT = 1.1               # long tail: top category ~25x the median one at 40 categories
MIN_TRAIN_PRODUCTS_PER_CATEGORY = 3
IMAGES_PER_PRODUCT_PROBS = (0.55, 0.25, 0.10, 0.10)   # 1..4 pictures, mean 1.75

# Repeated pictures in train (together about a third of all train pictures).
STOCK_PHOTO_PROB = 0.35           # product shows one of its category's stock photos
RELIST_PROB = 0.15                # product re-uses the whole picture set of an earlier product
OWN_REPEAT_PROB = 0.15            # product with 2+ pictures repeats one of them
CONFLICT_IMAGE_FRACTION = 0.005   # pictures taken from a product of another category
STOCK_PHOTOS_PER_CATEGORY = (1, 3)
RESERVOIR_SIZE = 24               # earlier products kept per category for re-use (bounded memory)

# Test products re-using train pictures.
TEST_WHOLE_COPY_FRACTION = 0.05   # exact copy of a train product's picture set
TEST_PARTIAL_SHARE_FRACTION = 0.15  # one picture from train, the rest new

SHAPE_KINDS = ("circle", "square", "triangle", "cross", "ring", "star", "hexagon", "stripes")
PALETTE = np.array([
    (220, 40, 40), (240, 140, 30), (235, 210, 40), (60, 170, 60), (30, 150, 150), (40, 90, 210),
    (30, 40, 110), (130, 60, 170), (235, 110, 170), (130, 80, 40), (35, 35, 35), (150, 150, 150),
], dtype=np.int16)   # RGB; few enough that categories share colours

LEVEL1_NAMES = [
    "MAISON - DECORATION", "JARDIN - EXTERIEUR", "INFORMATIQUE - BUREAU", "SPORT - LOISIRS",
    "ENFANT - JOUETS", "CUISINE - ART DE LA TABLE", "AUTO - ACCESSOIRES", "BEAUTE - BIEN-ETRE",
    "LIBRAIRIE - PAPETERIE", "BRICOLAGE - OUTILLAGE",
]
LEVEL2_NAMES = [
    "ACCESSOIRES", "RANGEMENT", "ENTRETIEN", "ECLAIRAGE", "TEXTILE", "MOBILIER", "PIECES DETACHEES",
    "CONSOMMABLES", "PROTECTION", "EQUIPEMENT", "DECORATION MURALE", "ORGANISATION", "LOISIRS CREATIFS",
    "ARTICLES DE VOYAGE", "PETIT MATERIEL", "SECURITE", "CONNECTIQUE", "JEUX D'EXTERIEUR",
    "SOIN - HYGIENE", "USTENSILES", "VAISSELLE", "OUTILS A MAIN", "ARROSAGE", "CAMPING",
]
LEVEL3_OBJECTS = [
    "LAMPE", "COUSSIN", "BOITE", "PANIER", "TAPIS", "VASE", "CADRE", "HORLOGE", "MIROIR", "BOUGIE",
    "GOURDE", "SAC", "BALLON", "RAQUETTE", "CASQUE", "CLAVIER", "SOURIS", "CABLE", "CHARGEUR", "ETUI",
    "TASSE", "PLATEAU", "TOURNEVIS", "ARROSOIR", "TENTE", "PELUCHE", "PUZZLE", "CAHIER", "STYLO",
    "HOUSSE", "BROSSE", "FLACON", "TABOURET", "ETAGERE", "GANT", "BONNET",
]
LEVEL3_QUALIFIERS = [
    "EN BOIS", "EN METAL", "PLIABLE", "DE VOYAGE", "POUR ENFANT", "ELECTRIQUE", "MURAL", "DECORATIF",
    "ETANCHE", "MAGNETIQUE", "ISOTHERME", "A LED", "CONTENANCE 0,5 L", "MULTIFONCTION",
]


@dataclass
class CategoryStyle:
    """How the pictures of one category look."""
    shape: str
    colours: np.ndarray            # (2 or 3, 3) RGB: stripe colours, then the outline colour
    stripe_period: float           # pixels; 0 = solid fill
    stripe_angle: float            # degrees
    aspect: float                  # y/x stretch of the shape
    upright_angle: float           # usual rotation of the object, degrees
    textures: list = field(default_factory=list)   # RGB tiles (2S x 2S) the object is cut from


@dataclass
class Picture:
    """JPEG bytes with a serial number: equal serials are byte-identical pictures."""
    serial: int
    jpeg: bytes


@dataclass
class Product:
    product_id: int
    category: int                  # row of category_names.csv (class id)
    pictures: list


class NoiseBank:
    """Pre-drawn Gaussian noise fields; a picture takes a random crop (drawing fresh noise is too slow)."""

    SIGMAS = (2.0, 3.0, 4.5)

    def __init__(self, rng, size):
        self.size = size
        self.fields = []
        for sigma in self.SIGMAS:
            noise = rng.normal(0.0, sigma, (2 * size, 2 * size, 3))
            # Split into positive and negative parts so it is added with saturating uint8 arithmetic.
            self.fields.append((np.clip(noise, 0, 255).astype(np.uint8), np.clip(-noise, 0, 255).astype(np.uint8)))

    def apply(self, image, level, x, y):
        plus, minus = self.fields[level]
        s = self.size
        cv2.add(image, plus[y:y + s, x:x + s], dst=image)
        cv2.subtract(image, minus[y:y + s, x:x + s], dst=image)


class PictureMaker:
    """Draws and encodes pictures; hands out serial numbers."""

    def __init__(self, rng, styles, size, jpeg_quality):
        self.rng = rng
        self.styles = styles
        self.size = size
        self.jpeg_quality = jpeg_quality
        self.noise = NoiseBank(rng, size)
        self.count = 0

    def encode(self, rgb):
        self.count += 1
        return Picture(self.count, encode_jpeg(rgb, self.jpeg_quality))

    def product_views(self, category, num_views):
        look = product_look(self.rng, self.styles[category], self.size)
        return [self.encode(draw_image(self.styles[category], view_params(self.rng, look, self.size),
                                       self.size, self.noise))
                for _ in range(num_views)]

    def stock_photo(self, category):
        look = product_look(self.rng, self.styles[category], self.size, stock=True)
        return self.encode(draw_image(self.styles[category], view_params(self.rng, look, self.size, stock=True),
                                      self.size, self.noise))


# ---------------------------------------------------------------- categories

def make_categories(rng, num_categories):
    """Rows of category_names.csv: (category_id, level1, level2, level3), sorted by names like Kaggle's."""
    ids = rng.choice(np.arange(FIRST_CATEGORY_ID, LAST_CATEGORY_ID + 1), num_categories, replace=False)
    num_level1 = int(np.clip(round(num_categories ** (1 / 3)), 1, len(LEVEL1_NAMES)))
    level1 = list(rng.choice(LEVEL1_NAMES, num_level1, replace=False))
    level2_pool = list(rng.permutation(LEVEL2_NAMES))
    level3_used = set()
    rows = []
    group = 0
    while len(rows) < num_categories:
        # A level-2 group of 2-5 categories; every level-1 name gets a group before any gets a second.
        group_level1 = level1[group] if group < num_level1 else rng.choice(level1)
        group += 1
        group_level2 = level2_pool.pop() if level2_pool else f"DIVERS {len(rows)}"
        for _ in range(min(int(rng.integers(2, 6)), num_categories - len(rows))):
            while True:
                name = f"{rng.choice(LEVEL3_OBJECTS)} {rng.choice(LEVEL3_QUALIFIERS)}"
                if name not in level3_used:
                    break
                if len(level3_used) >= len(LEVEL3_OBJECTS) * len(LEVEL3_QUALIFIERS):  # every pair taken
                    name = f"{name} {len(rows)}"
                    break
            level3_used.add(name)
            rows.append((int(ids[len(rows)]), str(group_level1), str(group_level2), name))
    rows.sort(key=lambda row: row[1:])
    return rows


def category_style(rng, index, size):
    """A category's look. Shape kinds cycle so several categories share one and differ by colour/texture."""
    shape = SHAPE_KINDS[index % len(SHAPE_KINDS)]
    colours = PALETTE[rng.choice(len(PALETTE), int(rng.integers(2, 4)), replace=False)]
    period = 0.0 if rng.random() < 0.25 else float(rng.uniform(0.04, 0.16) * size)
    style = CategoryStyle(shape=shape, colours=colours, stripe_period=period,
                          stripe_angle=float(rng.uniform(0, 180)), aspect=float(rng.uniform(0.7, 1.3)),
                          upright_angle=float(rng.uniform(0, 360)))
    # A few texture tiles with slightly different stripe angle/period: products vary around the style.
    style.textures = [stripe_texture(style, size, float(rng.normal(0, 8)), float(rng.uniform(0.85, 1.15)))
                      for _ in range(3)]
    return style


def make_styles(rng, num_categories, size):
    """Styles with distinct (shape, first two colours), so no two categories draw alike."""
    styles, seen = [], set()
    for index in range(num_categories):
        for _ in range(100):
            style = category_style(rng, index, size)
            key = (style.shape, tuple(map(tuple, style.colours[:2].tolist())))
            if key not in seen:
                break
        seen.add(key)
        styles.append(style)
    return styles


def stripe_texture(style, size, angle_jitter, period_scale):
    """An RGB tile (2S x 2S) of stripes alternating the style's first two colours."""
    tile = 2 * size
    first, second = style.colours[0], style.colours[1]
    if style.stripe_period == 0:
        return np.broadcast_to(first.astype(np.uint8), (tile, tile, 3)).copy()
    theta = math.radians(style.stripe_angle + angle_jitter)
    y, x = np.mgrid[0:tile, 0:tile].astype(np.float32)
    phase = (x * math.cos(theta) + y * math.sin(theta)) / (style.stripe_period * period_scale)
    weight = (np.sin(2 * np.pi * phase) > 0).astype(np.float32)[..., None]
    return (first * weight + second * (1 - weight)).astype(np.uint8)


# ---------------------------------------------------------------- drawing

def unit_shape(kind):
    """Polygons of a shape in a unit box, as (vertices, mask value): value 0 cuts a hole."""
    def regular(n, radius=1.0, phase=-math.pi / 2):
        a = phase + np.arange(n) * 2 * math.pi / n
        return np.stack([radius * np.cos(a), radius * np.sin(a)], axis=1)

    if kind == "circle":
        return [(regular(40), 255)]
    if kind == "ring":
        return [(regular(40), 255), (regular(40, 0.55), 0)]
    if kind == "square":
        return [(np.array([(-0.8, -0.8), (0.8, -0.8), (0.8, 0.8), (-0.8, 0.8)]), 255)]
    if kind == "triangle":
        return [(regular(3) * 1.1 + (0, 0.2), 255)]
    if kind == "hexagon":
        return [(regular(6), 255)]
    if kind == "star":
        points = regular(10)
        points[1::2] *= 0.45
        return [(points, 255)]
    if kind == "cross":
        a, b = 0.33, 1.0
        return [(np.array([(-a, -b), (a, -b), (a, -a), (b, -a), (b, a), (a, a), (a, b), (-a, b), (-a, a),
                           (-b, a), (-b, -a), (-a, -a)]), 255)]
    if kind == "stripes":
        return [(np.array([(-1, y), (1, y), (1, y + 0.4), (-1, y + 0.4)]), 255) for y in (-0.95, -0.2, 0.55)]
    raise ValueError(f"unknown shape kind {kind!r}")


UNIT_SHAPES = {kind: unit_shape(kind) for kind in SHAPE_KINDS}
SUBPIXEL_BITS = 4


def shape_polygons(kind, cx, cy, radius, angle, aspect):
    """The shape's polygons placed in the picture, as fixed-point int32 vertices for cv2."""
    theta = math.radians(angle)
    rotation = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    placed = []
    for vertices, value in UNIT_SHAPES[kind]:
        points = (vertices * (radius, radius * aspect)) @ rotation.T + (cx, cy)
        placed.append((np.round(points * (1 << SUBPIXEL_BITS)).astype(np.int32), value))
    return placed


def product_look(rng, style, size, stock=False):
    """What all pictures of one product share: the object, its colour, the background."""
    if stock:  # stock photos: centred on a clean white background; angle and size tell them apart
        return dict(cx=size / 2, cy=size / 2, radius=size * rng.uniform(0.28, 0.36),
                    angle=style.upright_angle + rng.uniform(-30, 30), jitter=(0, 0, 0),
                    background=(250, 250, 250), texture=0, noise_level=0, clutter=0, outline=max(2, size // 45),
                    noisy=False)
    white = rng.random() < 0.6   # most product photos are on white
    background = tuple(int(v) for v in (rng.integers(225, 256, 3) if white else rng.integers(60, 230, 3)))
    return dict(cx=size * rng.uniform(0.35, 0.65), cy=size * rng.uniform(0.35, 0.65),
                radius=size * rng.uniform(0.2, 0.36), angle=style.upright_angle + rng.normal(0, 25),
                jitter=tuple(int(v) for v in rng.normal(0, 14, 3)), background=background,
                texture=int(rng.integers(len(style.textures))), noise_level=int(rng.integers(len(NoiseBank.SIGMAS))),
                clutter=int(rng.integers(0, 5)), outline=int(rng.integers(1, max(2, size // 30))), noisy=True)


def view_params(rng, look, size, stock=False):
    """One photo of the product: the object shifted, scaled and turned a little, new clutter and noise."""
    view = dict(look)
    if not stock:
        view.update(cx=look["cx"] + rng.normal(0, 0.05 * size), cy=look["cy"] + rng.normal(0, 0.05 * size),
                    radius=look["radius"] * rng.uniform(0.85, 1.15), angle=look["angle"] + rng.normal(0, 10))
    view["texture_offset"] = tuple(int(v) for v in rng.integers(0, size, 2))
    view["noise_offset"] = tuple(int(v) for v in rng.integers(0, size, 2))
    view["clutter_items"] = [
        (int(rng.integers(3)), tuple(int(v) for v in rng.integers(0, 256, 3)),
         tuple(int(v) for v in rng.integers(0, size, 4)), int(rng.integers(1, 4)))
        for _ in range(look["clutter"])
    ]
    view["blur"] = bool(not stock and rng.random() < 0.2)
    return view


def draw_clutter(image, items, size):
    """Unrelated things around the object: lines, dots, label-like boxes."""
    for kind, colour, (x0, y0, x1, y1), thickness in items:
        if kind == 0:
            cv2.line(image, (x0, y0), (x1, y1), colour, thickness, cv2.LINE_AA)
        elif kind == 1:
            cv2.circle(image, (x0, y0), 2 + x1 % max(1, size // 12), colour, -1, cv2.LINE_AA)
        else:
            cv2.rectangle(image, (x0, y0), (x0 + 4 + x1 % (size // 4), y0 + 3 + y1 % (size // 10)), colour, -1)


def draw_image(style, view, size, noise_bank):
    """An RGB uint8 picture of one view of a product (no randomness here: all of it is in `view`)."""
    image = np.empty((size, size, 3), np.uint8)
    image[:] = view["background"]
    draw_clutter(image, view["clutter_items"], size)
    polygons = shape_polygons(style.shape, view["cx"], view["cy"], view["radius"], view["angle"], style.aspect)
    mask = np.zeros((size, size), np.uint8)
    for points, value in polygons:
        cv2.fillPoly(mask, [points], value, cv2.LINE_8, SUBPIXEL_BITS)
    tx, ty = view["texture_offset"]
    texture = style.textures[view["texture"]][ty:ty + size, tx:tx + size]
    cv2.copyTo(texture, mask, image)
    cv2.add(image, view["jitter"] + (0,), dst=image, mask=mask)   # this product's colour cast
    outline = tuple(int(v) for v in style.colours[-1])
    for points, _ in polygons:
        cv2.polylines(image, [points], True, outline, view["outline"], cv2.LINE_AA, SUBPIXEL_BITS)
    if view["blur"]:
        cv2.GaussianBlur(image, (3, 3), 0, dst=image)
    if view["noisy"]:   # stock photos stay clean
        noise_bank.apply(image, view["noise_level"], *view["noise_offset"])
    return image


def encode_jpeg(rgb, quality):
    """JPEG bytes of an RGB picture (cv2 encodes BGR, so convert first: decoders then see RGB)."""
    ok, buffer = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("cv2.imencode failed")
    return buffer.tobytes()


# ---------------------------------------------------------------- products

def category_weights(rng, num_categories):
    """Zipf-like popularity over a random order of the categories."""
    ranks = rng.permutation(num_categories)
    weights = 1.0 / (ranks + 1.0) ** ZIPF_EXPONENT
    return weights / weights.sum()


def assign_categories(rng, weights, num_products, min_per_category=0):
    """The category of each product in file order: a floor per category plus Zipf-distributed rest."""
    num_categories = len(weights)
    rest = num_products - min_per_category * num_categories
    counts = min_per_category + rng.multinomial(rest, weights)
    return rng.permutation(np.repeat(np.arange(num_categories), counts))


def product_ids(rng, count):
    """Increasing ids with random gaps, like Kaggle's."""
    gaps = rng.geometric(0.6, count)   # mostly 1, sometimes 2-5
    return np.cumsum(gaps) - gaps[0]


def num_pictures(rng):
    return int(rng.choice(4, p=IMAGES_PER_PRODUCT_PROBS)) + 1


class Reservoir:
    """A uniform sample of earlier products of each category, to copy pictures from."""

    def __init__(self, rng, num_categories, capacity=RESERVOIR_SIZE):
        self.rng = rng
        self.capacity = capacity
        self.products = [[] for _ in range(num_categories)]
        self.seen = np.zeros(num_categories, np.int64)

    def add(self, product):
        kept, c = self.products[product.category], product.category
        self.seen[c] += 1
        if len(kept) < self.capacity:
            kept.append(product)
        else:
            slot = int(self.rng.integers(self.seen[c]))
            if slot < self.capacity:
                kept[slot] = product

    def pick(self, category):
        kept = self.products[category]
        return kept[int(self.rng.integers(len(kept)))] if kept else None

    def pick_other_category(self, category):
        others = [c for c, kept in enumerate(self.products) if kept and c != category]
        return self.pick(int(self.rng.choice(others))) if others else None


def generate_train_products(rng, maker, categories, ids, stock_photos, reservoir, stats):
    """Train products in id order, with stock photos, relistings, own repeats and conflicting pictures."""
    num_products = len(ids)
    mean_pictures = float(np.dot(np.arange(1, 5), IMAGES_PER_PRODUCT_PROBS))
    num_conflicts = max(1, round(CONFLICT_IMAGE_FRACTION * num_products * mean_pictures))
    # Conflicting pictures go to products in the second half, when other categories have products to take from.
    second_half = np.arange(num_products // 2, num_products)
    conflict_at = set(rng.choice(second_half, min(num_conflicts, len(second_half)), replace=False).tolist())
    for position, (product_id, category) in enumerate(zip(ids, categories)):
        category = int(category)
        earlier = reservoir.pick(category) if rng.random() < RELIST_PROB else None
        if earlier is not None:
            pictures = list(earlier.pictures)
            stats["relisted_products"] += 1
        else:
            pictures = maker.product_views(category, num_pictures(rng))
            if rng.random() < STOCK_PHOTO_PROB:
                pictures[0] = stock_photos[category][int(rng.integers(len(stock_photos[category])))]
            if len(pictures) > 1 and rng.random() < OWN_REPEAT_PROB:
                source, target = rng.choice(len(pictures), 2, replace=False)
                pictures[target] = pictures[source]
        if position in conflict_at:
            donor = reservoir.pick_other_category(category)
            if donor is not None:
                pictures[int(rng.integers(len(pictures)))] = donor.pictures[int(rng.integers(len(donor.pictures)))]
                stats["conflicting_pictures"] += 1
        product = Product(int(product_id), category, pictures)
        reservoir.add(product)
        yield product


def generate_test_products(rng, maker, categories, ids, stock_photos, reservoir, stats):
    """Test products in id order: a few exact copies of train products, some sharing one train picture."""
    num_products = len(ids)
    num_copies = max(1, round(TEST_WHOLE_COPY_FRACTION * num_products))
    num_shared = round(TEST_PARTIAL_SHARE_FRACTION * num_products)
    order = rng.permutation(num_products)
    copies = set(order[:num_copies].tolist())
    shared = set(order[num_copies:num_copies + num_shared].tolist())
    for position, (product_id, category) in enumerate(zip(ids, categories)):
        category = int(category)
        source = reservoir.pick(category) if position in copies or position in shared else None
        if position in copies and source is not None:
            pictures = list(source.pictures)
            stats["test_copied_products"] += 1
        else:
            pictures = maker.product_views(category, num_pictures(rng))
            if position in shared:
                if source is None or rng.random() < 0.5:
                    picture = stock_photos[category][int(rng.integers(len(stock_photos[category])))]
                else:
                    picture = source.pictures[int(rng.integers(len(source.pictures)))]
                pictures[int(rng.integers(len(pictures)))] = picture
        yield Product(int(product_id), category, pictures)


# ---------------------------------------------------------------- writing

def bson_document(product, category_id=None):
    """A document in Kaggle's key order: _id, imgs, then category_id (train only)."""
    document = {"_id": product.product_id, "imgs": [{"picture": picture.jpeg} for picture in product.pictures]}
    if category_id is not None:
        document["category_id"] = category_id
    return bson.encode(document)


def write_bson(path, products, category_ids, labelled, progress):
    """Write products as concatenated BSON documents; returns (products, pictures, repeated pictures, bytes)."""
    seen, counts = set(), dict(products=0, pictures=0, repeated=0, bytes=0)
    with open(path, "wb", buffering=8 << 20) as fh:
        for product in products:
            raw = bson_document(product, category_ids[product.category] if labelled else None)
            fh.write(raw)
            counts["products"] += 1
            counts["bytes"] += len(raw)
            for picture in product.pictures:
                counts["pictures"] += 1
                counts["repeated"] += picture.serial in seen
                seen.add(picture.serial)
            progress.update(1)
    return counts, seen


def write_category_csv(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(CATEGORY_HEADER)
        writer.writerows(rows)


def write_ground_truth(path, rows):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(GROUND_TRUTH_HEADER)
        writer.writerows(rows)


def output_paths(out_dir):
    return [os.path.join(out_dir, name) for name in OUTPUT_NAMES]


def check_sizes(num_categories, num_train_products, num_test_products, image_size, jpeg_quality):
    if num_categories < 2:
        raise UserError(f"--num-categories {num_categories}: need at least 2")
    least = MIN_TRAIN_PRODUCTS_PER_CATEGORY * num_categories
    if num_train_products < least:
        raise UserError(f"--num-train-products {num_train_products}: need at least {least} "
                        f"({MIN_TRAIN_PRODUCTS_PER_CATEGORY} per category)")
    if num_test_products < 1:
        raise UserError(f"--num-test-products {num_test_products}: need at least 1")
    if image_size < 32:
        raise UserError(f"--image-size {image_size}: need at least 32")
    if not 1 <= jpeg_quality <= 100:
        raise UserError(f"--jpeg-quality {jpeg_quality}: must be in 1..100")


def generate_demo_dataset(out_dir, num_categories=40, num_train_products=4000, num_test_products=800, seed=0,
                          image_size=180, jpeg_quality=90, force=False, progress=True):
    """Write the four demo files to `out_dir` (created if missing); returns a summary of counts."""
    check_sizes(num_categories, num_train_products, num_test_products, image_size, jpeg_quality)
    paths = output_paths(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise UserError(f"{out_dir}: --out-dir is a file, not a folder")
    os.makedirs(out_dir, exist_ok=True)  # first: check_outputs wants the outputs' folder to exist
    check_outputs(paths, force)
    timer = Timer()
    rng = np.random.default_rng(seed)

    rows = make_categories(rng, num_categories)
    category_ids = [row[0] for row in rows]
    styles = make_styles(rng, num_categories, image_size)
    weights = category_weights(rng, num_categories)
    maker = PictureMaker(rng, styles, image_size, jpeg_quality)
    stock_photos = [[maker.stock_photo(c) for _ in range(int(rng.integers(STOCK_PHOTOS_PER_CATEGORY[0],
                                                                          STOCK_PHOTOS_PER_CATEGORY[1] + 1)))]
                    for c in range(num_categories)]
    # Train and test ids come from one sequence, so they interleave without clashing.
    all_ids = product_ids(rng, num_train_products + num_test_products)
    is_test = np.zeros(len(all_ids), bool)
    is_test[rng.choice(len(all_ids), num_test_products, replace=False)] = True
    train_categories = assign_categories(rng, weights, num_train_products, MIN_TRAIN_PRODUCTS_PER_CATEGORY)
    test_categories = assign_categories(rng, weights, num_test_products)

    stats = dict(relisted_products=0, conflicting_pictures=0, test_copied_products=0, test_sharing_products=0)
    reservoir = Reservoir(rng, num_categories)
    ground_truth = []
    train_path, test_path, csv_path, truth_path = paths
    with atomic_outputs(*paths) as (train_tmp, test_tmp, csv_tmp, truth_tmp), \
            tqdm(total=num_train_products + num_test_products, unit="product", desc="demo data",
                 disable=not progress) as bar:
        train, train_serials = write_bson(train_tmp, generate_train_products(
            rng, maker, train_categories, all_ids[~is_test], stock_photos, reservoir, stats), category_ids, True, bar)

        def test_products():
            for product in generate_test_products(rng, maker, test_categories, all_ids[is_test], stock_photos,
                                                  reservoir, stats):
                ground_truth.append((product.product_id, category_ids[product.category]))
                stats["test_sharing_products"] += any(p.serial in train_serials for p in product.pictures)
                yield product

        test, _ = write_bson(test_tmp, test_products(), category_ids, False, bar)
        write_category_csv(csv_tmp, rows)
        write_ground_truth(truth_tmp, ground_truth)

    summary = dict(
        categories=num_categories,
        train_products=train["products"], train_images=train["pictures"], train_duplicate_images=train["repeated"],
        train_relisted_products=stats["relisted_products"], conflicting_images=stats["conflicting_pictures"],
        test_products=test["products"], test_images=test["pictures"],
        test_products_sharing_train_images=stats["test_sharing_products"],
        test_products_copied_from_train=stats["test_copied_products"],
        bytes={os.path.basename(p): os.path.getsize(p) for p in paths},
        seconds=timer.seconds,
    )
    log_summary(summary, out_dir)
    return summary


def log_summary(summary, out_dir):
    s = summary
    log.info("categories: %d", s["categories"])
    log.info("train: %d products, %d images (%.2f per product), %d repeated images (%.1f%%), "
             "%d relisted products, %d images shared across categories",
             s["train_products"], s["train_images"], s["train_images"] / s["train_products"],
             s["train_duplicate_images"], 100 * s["train_duplicate_images"] / s["train_images"],
             s["train_relisted_products"], s["conflicting_images"])
    log.info("test: %d products, %d images; %d products share images with train, %d are whole copies",
             s["test_products"], s["test_images"], s["test_products_sharing_train_images"],
             s["test_products_copied_from_train"])
    for name, size in s["bytes"].items():
        log.info("wrote %s (%s)", os.path.join(out_dir, name), human_bytes(size))
    log.info("done in %.1f s", s["seconds"])


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m data.make_demo_data", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--out-dir", required=True,
                        help="folder for train.bson, test.bson, category_names.csv, test_ground_truth.csv "
                             "(created if missing)")
    parser.add_argument("--num-categories", type=int, default=40, help="number of categories (Kaggle: 5270)")
    parser.add_argument("--num-train-products", type=int, default=4000,
                        help="products in train.bson (Kaggle: 7,069,896)")
    parser.add_argument("--num-test-products", type=int, default=800, help="products in test.bson (Kaggle: 1,768,182)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives identical files")
    parser.add_argument("--image-size", type=int, default=180, help="picture width and height in pixels (Kaggle: 180)")
    parser.add_argument("--jpeg-quality", type=int, default=90, help="JPEG quality 1-100")
    parser.add_argument("--force", action="store_true", help="overwrite existing outputs")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.seed < 0:
        raise UserError(f"--seed {args.seed}: must be >= 0")
    generate_demo_dataset(args.out_dir, num_categories=args.num_categories,
                          num_train_products=args.num_train_products, num_test_products=args.num_test_products,
                          seed=args.seed, image_size=args.image_size, jpeg_quality=args.jpeg_quality,
                          force=args.force)
    return 0


if __name__ == "__main__":
    run_cli(main)
