"""What every network builder shares: a name scope that makes a graph's automatic names reproducible.

The builders return features only; the classifier head is train.finetune.attach_classifier's.
"""
import mxnet as mx


def fresh_names():
    """A name scope whose automatic names (`_plus0`, `reshape0`, ...) start from 0 again, so a
    network built twice in one process gets the same node names as the published graphs."""
    return mx.name.NameManager()
