"""Which pictures of a prediction run go through the networks (MD5-aware inference).

A picture whose MD5 the training dictionary answers under the chosen --md5-dict-type gets the
dictionary's probability whatever the networks say, and a picture that repeats an earlier
one of the run (the same bytes, so the same MD5) would get the same image mean again. One
pass over the run's pictures hashes them all before the workers start, so that the workers
never decode either kind, and so that the predictor knows how often each repeated picture
is used: it keeps the first occurrence's image mean only until its last use. The plan keeps
those digests: the reader sends them with the pictures, so each picture is hashed once a run.

The cache holds one (models x classes) float32 row per picture between its first and its
last occurrence. The plan admits repeated pictures in BSON order while that live set stays
under --reuse-cache-mb; a picture not admitted is forwarded every time it occurs, so memory
stays bounded whatever the test set.
"""
import logging

import numpy as np

from data.md5_dict import digests_in_file_order

log = logging.getLogger(__name__)


class ForwardPlan:
    """Per picture of products [start, stop): its MD5 (S16), forwarded or not, first occurrence of a reused
    picture (a source) or a repeat taking a source's image mean; `uses[digest]`: the repeats of each source."""

    def __init__(self, digests, first_image, skipped_answered, forward, source, uses):
        self.digests = digests
        self.first_image = first_image  # per product row: its first picture's position in the run
        self.forward, self.source = forward, source
        self.repeat = ~forward & ~skipped_answered  # not forwarded and not answered: a repeat
        self.uses = uses
        self.num_images = len(forward)
        self.num_skipped_answered = int(skipped_answered.sum())
        self.num_repeats = int(self.repeat.sum())

    def forwarded(self, first_image, position):
        return bool(self.forward[first_image + position])

    def repeats_in(self, first_image, num_images):
        return np.flatnonzero(self.repeat[first_image:first_image + num_images])

    def sources_in(self, first_image, num_images):
        return np.flatnonzero(self.source[first_image:first_image + num_images])


def admitted_groups(first, last, capacity):
    """Which repeated pictures (first and last occurrence positions) the cache takes, in order of first
    occurrence, while at most `capacity` of them are live at once."""
    if len(first) <= capacity:
        return np.ones(len(first), dtype=bool)
    admitted = np.zeros(len(first), dtype=bool)
    events = sorted([(int(p), 1, g) for g, p in enumerate(first)] + [(int(p), 0, g) for g, p in enumerate(last)])
    live = 0
    for _, is_first, group in events:  # a last use (0) sorts before a first occurrence at the same position
        if is_first and live < capacity:
            admitted[group] = True
            live += 1
        elif not is_first and admitted[group]:
            live -= 1
    return admitted


def build_plan(digests, first_image, answered, forward_answered, cache_entries):
    """The plan for a run whose pictures have `digests`; `answered`: the dictionary's answer per picture;
    `forward_answered`: forward those too (the probability store needs every picture's model means)."""
    candidates = np.flatnonzero(~answered | forward_answered)  # the pictures that need model means
    forward = np.zeros(len(digests), dtype=bool)
    forward[candidates] = True
    source = np.zeros(len(digests), dtype=bool)
    uses = {}
    if len(candidates):
        groups, first_at, inverse, counts = np.unique(digests[candidates], return_index=True,
                                                      return_inverse=True, return_counts=True)
        last_at = len(candidates) - 1 - np.unique(digests[candidates][::-1], return_index=True)[1]
        repeated = np.flatnonzero(counts >= 2)
        admitted = np.zeros(len(groups), dtype=bool)
        admitted[repeated] = admitted_groups(first_at[repeated], last_at[repeated], cache_entries)
        is_first = np.arange(len(candidates)) == first_at[inverse]
        source[candidates] = admitted[inverse] & is_first
        forward[candidates] = ~admitted[inverse] | is_first
        uses = {bytes(groups[g]).ljust(16, b"\0"): int(counts[g]) - 1 for g in np.flatnonzero(admitted).tolist()}
        if len(repeated) > admitted.sum():
            log.warning("%d of %d repeated pictures do not fit --reuse-cache-mb: forwarded each time",
                        len(repeated) - int(admitted.sum()), len(repeated))
    skipped_answered = answered & ~forward_answered
    return ForwardPlan(digests, first_image, skipped_answered, forward, source, uses)


def plan_run(index, start, stop, md5_override, forward_answered, cache_entries):
    """Hash the pictures of products [start, stop) and plan which to forward (see build_plan)."""
    first_image = index.first_images_in(start, stop)
    digests = digests_in_file_order(index, start, stop, desc="md5 of the run's pictures")
    answered = md5_override.answered(digests) if md5_override is not None else np.zeros(len(digests), bool)
    return build_plan(digests, first_image, answered, forward_answered, cache_entries)
