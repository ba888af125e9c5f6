"""Which pictures of a prediction run go through the networks (MD5-aware inference).

A picture whose MD5 the training dictionary answers under the chosen --md5-dict-type gets the
dictionary's probability whatever the networks say, and a picture that repeats an earlier
one of the run (the same bytes, so the same MD5) would get the same image mean again. One
pass over the run's pictures hashes them all before the workers start, so that the workers
never decode either kind, and so that the predictor knows how often each repeated picture
is used: it keeps the first occurrence's image mean (predict.repeat_spill, on disk) only until
its last use. The plan keeps those digests: the reader sends them with the pictures, so each
picture is hashed once a run.

Each repeated picture is a group, numbered in order of first occurrence. Every group is admitted,
so each distinct picture is forwarded once at any distance, unless the most groups live at once
(`peak_rows`: first occurrence to last use, in file order) exceed `capacity` rows: then groups are
admitted in file order while the live set stays under it, and a picture not admitted is forwarded
every time it occurs.
"""
import numpy as np

from data.md5_dict import digests_in_file_order


class ForwardPlan:
    """Per picture of products [start, stop): its MD5 (S16), forwarded or not, first occurrence of a reused
    picture (a source) or a repeat taking a source's image mean, and its admitted group (-1: none);
    `uses[group]`: the repeats of each admitted group's source."""

    def __init__(self, digests, first_image, skipped_answered, forward, source, group, uses, peak_rows,
                 num_repeated, peak_rows_needed, found=None):
        self.digests = digests
        self.found = found  # per picture: its position in the MD5 dictionary's table (-1: absent), or None
        self.first_image = first_image  # per product row: its first picture's position in the run
        self.forward, self.source = forward, source
        self.repeat = ~forward & ~skipped_answered  # not forwarded and not answered: a repeat
        self.group, self.uses = group, uses
        self.peak_rows = peak_rows  # the most admitted groups live at once, in file order
        self.num_repeated = num_repeated  # distinct pictures that occur more than once (and need means)
        self.peak_rows_needed = peak_rows_needed  # peak_rows had every repeated picture been admitted
        self.num_images = len(forward)
        self.num_skipped_answered = int(skipped_answered.sum())
        self.num_repeats = int(self.repeat.sum())

    def forwarded(self, first_image, position):
        return bool(self.forward[first_image + position])

    def repeats_in(self, first_image, num_images):
        return np.flatnonzero(self.repeat[first_image:first_image + num_images])

    def sources_in(self, first_image, num_images):
        return np.flatnonzero(self.source[first_image:first_image + num_images])


def peak_live(first, last):
    """The most groups live at once, a group being live from its first to its last position."""
    if not len(first):
        return 0
    delta = np.zeros(int(max(last.max(), first.max())) + 2, dtype=np.int64)
    np.add.at(delta, first, 1)
    np.add.at(delta, last + 1, -1)
    return int(np.cumsum(delta).max())


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


def build_plan(digests, first_image, answered, forward_answered, capacity=None, found=None):
    """The plan for a run whose pictures have `digests`; `answered`: the dictionary's answer per picture;
    `forward_answered`: forward those too (the probability store needs every picture's model means);
    `capacity`: the most repeated pictures live at once (None: no bound); `found`: each picture's position in
    the MD5 dictionary's table, kept for the predictor's overrides."""
    candidates = np.flatnonzero(~answered | forward_answered)  # the pictures that need model means
    forward = np.zeros(len(digests), dtype=bool)
    forward[candidates] = True
    source = np.zeros(len(digests), dtype=bool)
    group = np.full(len(digests), -1, dtype=np.int32)
    uses = np.zeros(0, dtype=np.int32)
    peak_rows = peak_needed = num_repeated = 0
    if len(candidates):
        _, first_at, inverse, counts = np.unique(digests[candidates], return_index=True, return_inverse=True,
                                                 return_counts=True)
        last_at = len(candidates) - 1 - np.unique(digests[candidates][::-1], return_index=True)[1]
        repeated = np.flatnonzero(counts >= 2)
        repeated = repeated[np.argsort(first_at[repeated], kind="stable")]  # groups in order of first occurrence
        num_repeated = len(repeated)
        peak_needed = peak_live(first_at[repeated], last_at[repeated])
        admitted = np.zeros(len(counts), dtype=bool)
        if capacity is None or peak_needed <= capacity:
            admitted[repeated] = True
            kept, peak_rows = repeated, peak_needed
        else:
            admitted[repeated] = admitted_groups(first_at[repeated], last_at[repeated], capacity)
            kept = repeated[admitted[repeated]]
            peak_rows = peak_live(first_at[kept], last_at[kept])
        group_of_unique = np.full(len(counts), -1, dtype=np.int32)
        group_of_unique[kept] = np.arange(len(kept), dtype=np.int32)
        is_first = np.arange(len(candidates)) == first_at[inverse]
        source[candidates] = admitted[inverse] & is_first
        forward[candidates] = ~admitted[inverse] | is_first
        group[candidates] = group_of_unique[inverse]
        uses = (counts[kept] - 1).astype(np.int32)
    skipped_answered = answered & ~forward_answered
    return ForwardPlan(digests, first_image, skipped_answered, forward, source, group, uses, peak_rows,
                       num_repeated, peak_needed, found)


def plan_run(index, start, stop, md5_override, forward_answered, capacity=None):
    """Hash the pictures of products [start, stop) and plan which to forward (see build_plan)."""
    first_image = index.first_images_in(start, stop)
    digests = digests_in_file_order(index, start, stop, desc="md5 of the run's pictures")
    found, answered = None, np.zeros(len(digests), bool)
    if md5_override is not None:
        # found once for the run: the predictor's overrides take it instead of searching the table again
        found = md5_override.table.find(digests).astype(np.int32 if len(md5_override.table.keys) < 2 ** 31 else np.int64)
        answered = md5_override.answered(digests, found)
    return build_plan(digests, first_image, answered, forward_answered, capacity, found)
