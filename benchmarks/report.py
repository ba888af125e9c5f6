"""Shared output of the benchmarks: the tables on stdout, and as markdown for the docs; accuracy intervals."""
import math


def print_tables(tables, markdown_path=None):
    """Print markdown `tables` (strings) separated by blank lines; also write them to `markdown_path`."""
    text = "\n\n".join(tables)
    print()
    print(text)
    if markdown_path:
        with open(markdown_path, "w") as fh:
            fh.write(text + "\n")


def wilson_interval(correct, total, z=1.96):
    """95% Wilson score interval of an accuracy of `correct` out of `total` (honest near 0 and 1)."""
    if total <= 0:
        return (0.0, 1.0)
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return (max(0.0, centre - half), min(1.0, centre + half))


def format_accuracy(correct, total):
    """'0.9123 (0.9034-0.9205)': an accuracy with its 95% Wilson interval."""
    low, high = wilson_interval(correct, total)
    return f"{correct / max(total, 1):.4f} ({low:.4f}-{high:.4f})"
