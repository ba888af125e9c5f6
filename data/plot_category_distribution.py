"""Draw the category distribution of a labelled BSON (products per category, most frequent first).

Reads only the BSON's offset index, so it takes seconds even on the 58 GB train.bson.
The image format follows the output's extension: .png, .jpg (.jpeg), .pdf or .svg.
"""
import argparse
import logging
import os

import numpy as np

from data.bson_index import BsonIndex
from cli.files import atomic_outputs, check_input_file, check_outputs
from cli.runner import HelpFormatter, UserError, run_cli

log = logging.getLogger(__name__)

FORMATS = {".png": "png", ".jpg": "jpg", ".jpeg": "jpg", ".pdf": "pdf", ".svg": "svg"}  # extension -> matplotlib's


def category_counts(index):
    """(category_ids, product counts, image counts), most products first."""
    if len(index) == 0:
        raise UserError(f"{index.path}: holds no products; nothing to plot, nothing written")
    if not index.has_labels:
        raise UserError(f"{index.path}: products without category_id; the plot needs a labelled BSON")
    categories, inverse = np.unique(index.products["category_id"], return_inverse=True)
    products = np.bincount(inverse)
    images = np.bincount(inverse, weights=index.products["num_imgs"]).astype(np.int64)
    order = np.argsort(-products, kind="stable")
    return categories[order], products[order], images[order]


def image_format(out_path):
    """matplotlib's format name for the output's extension; other extensions are refused."""
    extension = os.path.splitext(out_path)[1].lower()
    if extension not in FORMATS:
        raise UserError(f"{out_path}: unknown image format {extension or '(no extension)'}; "
                        f"name the output .png, .jpg, .pdf or .svg")
    return FORMATS[extension]


def draw(product_counts, image_counts, out_path, title, file_format):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with plt.rc_context({"font.size": 12, "axes.titlesize": 13, "legend.fontsize": 11}):
        fig, (ax_bar, ax_cum) = plt.subplots(1, 2, figsize=(13, 5), gridspec_kw={"width_ratios": [2, 1]})
        draw_counts(ax_bar, product_counts, image_counts, title)
        draw_cumulative(ax_cum, product_counts)
        fig.tight_layout()
        fig.savefig(out_path, dpi=100, format=file_format)
        plt.close(fig)


def draw_counts(ax, product_counts, image_counts, title):
    """Products (bars) and images (points) per category, with the median category's product count."""
    ranks = np.arange(1, len(product_counts) + 1)
    ax.bar(ranks, product_counts, width=1.0, color="#3b75af", label="products")
    ax.plot(ranks, image_counts, "o", color="#e1812c", ms=4 if len(ranks) > 200 else 6, label="images")
    ax.set_yscale("log")
    ax.set_xlabel("category rank (most frequent first)")
    ax.set_ylabel("count per category (log scale)")
    ax.set_title(title)
    median = float(np.median(product_counts))
    ax.axhline(median, color="dimgrey", ls="--", lw=1.2,
               label=f"median category: {median:g} product{'' if median == 1 else 's'}\n"
                    "(half the categories have this many or fewer)")
    ax.legend(loc="upper right")


def draw_cumulative(ax, product_counts):
    ranks = np.arange(1, len(product_counts) + 1)
    share = np.cumsum(product_counts) / product_counts.sum()
    ax.plot(ranks / len(ranks) * 100, share * 100, color="#3b75af", lw=2)
    ax.set_xlabel("% of categories (most frequent first)")
    ax.set_ylabel("% of products")
    ax.grid(alpha=0.3)
    top = max(1, len(ranks) // 10)
    ax.set_title(f"top 10% of categories hold {share[top - 1] * 100:.0f}% of products")


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m data.plot_category_distribution", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("--bson", required=True, help="labelled BSON (train.bson)")
    parser.add_argument("--out", required=True, help="output image: .png, .jpg, .pdf or .svg")
    parser.add_argument("--title", default=None, help="plot title (default: from the file name and counts)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    check_input_file(args.bson, "BSON")
    check_outputs([args.out], args.force, inputs=[args.bson])
    file_format = image_format(args.out)
    index = BsonIndex.open(args.bson)
    category_ids, product_counts, image_counts = category_counts(index)
    title = args.title or (f"{len(index):,} products, {index.num_images:,} images, "
                           f"{len(category_ids):,} categories")
    with atomic_outputs(args.out) as (tmp,):
        draw(product_counts, image_counts, tmp, title, file_format)
    log.info("in: %d products in %d categories (max %d, median %g, min %d per category); out: %s",
             len(index), len(category_ids), product_counts[0], np.median(product_counts), product_counts[-1],
             args.out)
    return 0


if __name__ == "__main__":
    run_cli(main)
