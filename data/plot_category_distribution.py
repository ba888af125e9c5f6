"""Draw the category distribution of a labelled BSON (products per category, most frequent first).

Reads only the BSON's offset index, so it takes seconds even on the 58 GB train.bson.
"""
import argparse
import logging

import numpy as np

from data.bson_index import BsonIndex
from data.common import UserError, atomic_outputs, check_input_file, check_outputs, run_cli

log = logging.getLogger(__name__)


def category_counts(index):
    """(category_ids, product counts, image counts), most products first."""
    if not index.has_labels:
        raise UserError(f"{index.path}: products without category_id; the plot needs a labelled BSON")
    categories, inverse = np.unique(index.products["category_id"], return_inverse=True)
    products = np.bincount(inverse)
    images = np.bincount(inverse, weights=index.products["num_imgs"]).astype(np.int64)
    order = np.argsort(-products, kind="stable")
    return categories[order], products[order], images[order]


def draw(category_ids, product_counts, image_counts, out_path, title):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_bar, ax_cum) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [2, 1]})
    ranks = np.arange(1, len(product_counts) + 1)
    ax_bar.bar(ranks, product_counts, width=1.0, color="#3b75af", label="products")
    ax_bar.plot(ranks, image_counts, ".", color="#e1812c", ms=3, label="images")
    ax_bar.set_yscale("log")
    ax_bar.set_xlabel("category rank (most frequent first)")
    ax_bar.set_ylabel("count (log scale)")
    ax_bar.set_title(title)
    ax_bar.legend()
    median = float(np.median(product_counts))
    ax_bar.axhline(median, color="grey", ls="--", lw=0.8)
    ax_bar.text(len(ranks) * 0.98, median * 1.1, f"median {median:g}", ha="right", color="grey")
    share = np.cumsum(product_counts) / product_counts.sum()
    ax_cum.plot(ranks / len(ranks) * 100, share * 100, color="#3b75af")
    ax_cum.set_xlabel("% of categories (most frequent first)")
    ax_cum.set_ylabel("% of products")
    ax_cum.grid(alpha=0.3)
    top = max(1, len(ranks) // 10)
    ax_cum.set_title(f"top 10% of categories hold {share[top - 1] * 100:.0f}% of products")
    fig.tight_layout()
    fig.savefig(out_path, dpi=100, format="png")
    plt.close(fig)


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m data.plot_category_distribution", description=__doc__)
    parser.add_argument("--bson", required=True, help="labelled BSON (train.bson)")
    parser.add_argument("--out", required=True, help="output PNG")
    parser.add_argument("--title", default=None, help="plot title (default: from the file name and counts)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    check_input_file(args.bson, "BSON")
    check_outputs([args.out], args.force)
    index = BsonIndex.open(args.bson)
    category_ids, product_counts, image_counts = category_counts(index)
    title = args.title or (f"{len(index):,} products, {index.num_images:,} images, "
                           f"{len(category_ids):,} categories")
    with atomic_outputs(args.out) as (tmp,):
        draw(category_ids, product_counts, image_counts, tmp, title)
    log.info("in: %d products in %d categories (max %d, median %g, min %d per category); out: %s",
             len(index), len(category_ids), product_counts[0], np.median(product_counts), product_counts[-1],
             args.out)
    return 0


if __name__ == "__main__":
    run_cli(main)
