"""Intervals for the accuracies the commands and the benchmarks report."""
import math


def wilson_interval(correct, total, z=1.96):
    """95% Wilson score interval of an accuracy of `correct` out of `total` (honest near 0 and 1)."""
    if total <= 0:
        return (0.0, 1.0)
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return (max(0.0, centre - half), min(1.0, centre + half))


def paired_difference(right_a, right_b, z=1.96):
    """(mean, half width of its 95% normal interval) of the per-item difference of two 0/1 outcomes
    on the same items: how much better a is than b, paired."""
    difference = right_a.astype(float) - right_b.astype(float)
    if len(difference) < 2:
        return float(difference.mean()) if len(difference) else 0.0, float("nan")
    return float(difference.mean()), z * float(difference.std(ddof=1)) / math.sqrt(len(difference))
