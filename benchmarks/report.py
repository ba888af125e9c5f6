"""Shared output of the benchmarks: the tables on stdout, and as markdown for the README."""


def print_tables(tables, markdown_path=None):
    """Print markdown `tables` (strings) separated by blank lines; also write them to `markdown_path`."""
    text = "\n\n".join(tables)
    print()
    print(text)
    if markdown_path:
        with open(markdown_path, "w") as fh:
            fh.write(text + "\n")
