"""Join the shard submissions of one test BSON (from predicting `--shard i/n` product ranges) into one file.

Every product of the BSON must appear in exactly one shard: a product in no
shard, in two shards (or twice in one), or a row whose _id the BSON lacks stops
the merge with the ids and shard files concerned. Rows are written in BSON file
order, whatever the order of the shards and of their rows.
"""
import argparse
import logging
import os

import numpy as np

from data.bson_index import BsonIndex
from cli.files import check_input_file, check_outputs
from cli.reporting import Timer, plural
from cli.runner import HelpFormatter, UserError, run_cli
from predict.submission import (duplicated_ids, positions_in_bson, read_submission, variant_path,
                                variant_tags_beside, write_submission)

log = logging.getLogger(__name__)
_SHOW = 5  # ids named per problem


def read_shards(paths):
    """(product_ids, category_ids, shard number of each row) of all shard files, concatenated."""
    ids, cats, sources = [], [], []
    for number, path in enumerate(paths):
        shard_ids, shard_cats = read_submission(path)
        log.info("%s: %d rows", path, len(shard_ids))
        ids.append(shard_ids)
        cats.append(shard_cats)
        sources.append(np.full(len(shard_ids), number, dtype=np.int64))
    return np.concatenate(ids), np.concatenate(cats), np.concatenate(sources)


def merge_problems(index, product_ids, sources, positions, paths):
    """One line per way the shards fail to cover the BSON exactly once; empty when they do."""
    names = [os.path.basename(p) for p in paths]
    bson_name = os.path.basename(index.path)
    problems = []
    unknown = np.flatnonzero(positions < 0)
    if len(unknown):
        shown = ", ".join(f"{product_ids[r]} ({names[sources[r]]})" for r in unknown[:_SHOW])
        problems.append(f"{plural(len(unknown), 'row')} {'has' if len(unknown) == 1 else 'have'} an _id not in "
                        f"{bson_name}: _id {shown}"
                        + (", ..." if len(unknown) > _SHOW else ""))
    repeated = duplicated_ids(product_ids)
    if len(repeated):
        shown = ", ".join(f"{pid} (in {' and '.join(names[s] for s in sources[product_ids == pid])})"
                          for pid in repeated[:_SHOW].tolist())
        problems.append(f"{plural(len(repeated), 'product')} {'appears' if len(repeated) == 1 else 'appear'} "
                        f"more than once: _id {shown}"
                        + (", ..." if len(repeated) > _SHOW else ""))
    owner = np.full(len(index), -1, dtype=np.int64)  # shard number holding each BSON position
    owner[positions[positions >= 0]] = sources[positions >= 0]
    missing = np.flatnonzero(owner < 0)
    if len(missing):
        bson_ids = index.products["product_id"]
        # Locate the first gap by the shards around it: usually a shard file left off the command line.
        gap_start = int(missing[0])
        gap_stop = gap_start
        while gap_stop + 1 < len(owner) and owner[gap_stop + 1] < 0:
            gap_stop += 1
        before = f"after the rows of {names[owner[gap_start - 1]]}" if gap_start > 0 else "at the start of the BSON"
        after = (f"before those of {names[owner[gap_stop + 1]]}" if gap_stop + 1 < len(owner)
                 else "up to the end of the BSON")
        problems.append(f"{plural(len(missing), 'product')} of {bson_name} {'is' if len(missing) == 1 else 'are'} "
                        "in no shard: _id "
                        + ", ".join(str(i) for i in bson_ids[missing[:_SHOW]].tolist())
                        + (", ..." if len(missing) > _SHOW else "")
                        + f" (first gap: BSON products {gap_start}-{gap_stop}, {before}, {after})")
    return problems


def shared_variant_tags(shards):
    """The ensemble tags every shard has; a tag only some shards have is an error naming them."""
    tags = [set(variant_tags_beside(path)) for path in shards]
    for tag in sorted(set().union(*tags)):
        lacking = [path for path, have in zip(shards, tags) if tag not in have]
        if lacking:
            raise UserError(f"ensemble output {tag} is missing beside {', '.join(lacking)}")
    return sorted(tags[0])


def merged_rows(index, shards):
    """(product_ids, category_ids) of the shards in BSON order, after proving they cover it exactly once."""
    product_ids, category_ids, sources = read_shards(shards)
    positions = positions_in_bson(index, product_ids)
    problems = merge_problems(index, product_ids, sources, positions, shards)
    if problems:
        raise UserError("shards do not cover the BSON exactly once: " + "; ".join(problems))
    order = np.argsort(positions)  # a permutation: each BSON position occurs exactly once
    return product_ids[order], category_ids[order]


def build_parser():
    parser = argparse.ArgumentParser(prog="python -m predict.merge_shards", description=__doc__,
                                     formatter_class=HelpFormatter)
    parser.add_argument("shards", nargs="+", metavar="SHARD", help="shard submissions (_id,category_id)")
    parser.add_argument("--bson", required=True, help="the test BSON the shards were predicted from")
    parser.add_argument("--output", required=True, help="merged submission (.csv, or .csv.gz for gzip)")
    parser.add_argument("--skip-corrupt", action="store_true",
                        help="skip unreadable BSON documents (reported) instead of stopping")
    parser.add_argument("--variants", action="store_true",
                        help="also merge every ensemble output (SHARD.e{k}.m{j}) found beside all the shards "
                             "into OUTPUT.e{k}.m{j}")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output")
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    check_input_file(args.bson, "--bson BSON")
    seen = {}
    for path in args.shards:
        check_input_file(path, "shard")
        real = os.path.realpath(path)
        if real in seen:
            raise UserError(f"{path}: shard file given twice (also as {seen[real]})")
        seen[real] = path
    jobs = [(args.output, args.shards)]
    if args.variants:
        tags = shared_variant_tags(args.shards)
        jobs += [(variant_path(args.output, tag), [variant_path(s, tag) for s in args.shards]) for tag in tags]
    check_outputs([output for output, _ in jobs], args.force,
                  inputs=[args.bson] + [shard for _, shards in jobs for shard in shards])
    timer = Timer()
    index = BsonIndex.open(args.bson, skip_corrupt=args.skip_corrupt)
    merged = [merged_rows(index, shards) for _, shards in jobs]  # every file checked before any is written
    for (output, shards), (product_ids, category_ids) in zip(jobs, merged):
        write_submission(output, product_ids, category_ids)
        log.info("out: %s, %s in BSON order from %s", output, plural(len(product_ids), "row"),
                 plural(len(shards), "shard file"))
    log.info("merged %s of %s; %.1f s", plural(len(jobs), "output"), plural(len(args.shards), "shard"),
             timer.seconds)
    return 0


if __name__ == "__main__":
    run_cli(main)
