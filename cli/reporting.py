"""What a command reports: wall time, counts in words, byte sizes."""
import time


class Timer:
    """Wall time of a stage, for the summary lines."""

    def __init__(self):
        self.start = time.perf_counter()

    @property
    def seconds(self):
        return time.perf_counter() - self.start


def plural(count, noun, plural_noun=None):
    """'1 product', '2 products' (`plural_noun` where adding an s is wrong)."""
    return f"{count} {noun if count == 1 else plural_noun or noun + 's'}"


def human_bytes(n):
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return f"{n} B"
