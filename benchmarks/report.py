"""Shared output of the benchmarks: the tables on stdout, and as markdown for the docs."""
from cli.statistics import wilson_interval


def print_tables(tables, markdown_path=None):
    """Print markdown `tables` (strings) separated by blank lines; also write them to `markdown_path`."""
    text = "\n\n".join(tables)
    print()
    print(text)
    if markdown_path:
        with open(markdown_path, "w") as fh:
            fh.write(text + "\n")


def format_accuracy(correct, total):
    """'0.9123 (0.9034-0.9205)': an accuracy with its 95% Wilson interval."""
    low, high = wilson_interval(correct, total)
    return f"{correct / max(total, 1):.4f} ({low:.4f}-{high:.4f})"
