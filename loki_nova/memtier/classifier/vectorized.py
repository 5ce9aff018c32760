# Copyright 2026 The loki-nova developers
#
# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""The classifier kernel in the fastest NumPy formulation we know.

Same contract as ``reference.py``, but O(N) like the compiled kernel: one
``bincount`` builds per-tier heat histograms, the move counts come from
cumulative histograms, and only the selected chunks are sorted.  It is the
fallback when the extension is not built and the baseline of
``benchmarks/bench_classifier.py``.
"""

import numpy as np

from loki_nova.memtier.classifier import _common

_LEVELS = _common.HEAT_LEVELS
# Histogram row per tier code: 0 fast, 1 slow, 2 absent.
_TIER_ROW = np.ones(256, dtype=np.intp)
_TIER_ROW[_common.TIER_FAST] = 0
_TIER_ROW[_common.TIER_ABSENT] = 2


def _nth_hottest(at_or_above, n):
    """Heat of the n-th hottest (1-based) chunk; ``at_or_above`` is the
    non-increasing count of chunks with heat >= level."""
    # Largest level whose count reaches n.
    return int(np.searchsorted(-at_or_above, -n, side='right')) - 1


def _nth_coldest(at_or_below, n):
    """Heat of the n-th coldest (1-based) chunk."""
    return int(np.searchsorted(at_or_below, n, side='left'))


def _count_swaps(slow_above, fast_below, fills, forced, limit, hysteresis,
                 fill_min, cold):
    """Largest k <= limit with p > d + hysteresis, or d < cold and p > d
    and p >= fill_min, where p is p_(fills+k) and d is d_(forced+k).

    p is non-increasing and d non-decreasing in k, so the predicate holds
    for a prefix of k and a binary search finds its end.
    """
    low, high = 0, limit
    while low < high:
        mid = (low + high + 1) // 2
        p = _nth_hottest(slow_above, fills + mid)
        d = _nth_coldest(fast_below, forced + mid)
        if p > d + hysteresis or (d < cold and p > d and p >= fill_min):
            low = mid
        else:
            high = mid - 1
    return low


def _pick(candidates, heat, count, hottest_first):
    """The ``count`` hottest (or coldest) of ``candidates``, ties by index."""
    if count == 0:
        return np.empty(0, dtype=np.int64)
    values = heat[candidates].astype(np.int32)
    order = np.argsort(-values if hottest_first else values, kind='stable')
    return candidates[order[:count]].astype(np.int64)


def classify(access, tier, heat, budget, move_cap, params):
    """Run one interval of the kernel (arguments already validated)."""
    new_heat = heat.astype(np.uint32)
    new_heat -= new_heat >> params.decay_shift
    new_heat += access.astype(np.uint32) * np.uint32(params.access_weight)
    np.minimum(new_heat, _common.HEAT_MAX, out=new_heat)
    heat[:] = new_heat

    rows = _TIER_ROW[tier]
    counts = np.bincount(rows * _LEVELS + heat, minlength=3 * _LEVELS)
    fast_hist = counts[:_LEVELS]
    slow_hist = counts[_LEVELS:2 * _LEVELS]
    histogram = (fast_hist + slow_hist).astype(np.uint32)
    fast_chunks = int(fast_hist.sum())
    slow_chunks = int(slow_hist.sum())

    at_or_above = np.cumsum(histogram[::-1].astype(np.int64))[::-1]
    fitting = np.flatnonzero(at_or_above[1:] <= budget)
    threshold = int(fitting[0]) + 1 if fitting.size else _LEVELS

    slow_above = np.cumsum(slow_hist[::-1])[::-1]
    fast_below = np.cumsum(fast_hist)

    cap_left = move_cap
    forced = min(max(fast_chunks - budget, 0), cap_left)
    cap_left -= forced
    free = max(budget - fast_chunks, 0)
    eligible = int(slow_above[params.fill_min]) \
        if params.fill_min < _LEVELS else 0
    fills = min(free, eligible, cap_left)
    cap_left -= fills
    swaps = 0
    if fast_chunks - forced + fills >= budget:
        limit = min(cap_left // 2, slow_chunks - fills, fast_chunks - forced)
        swaps = _count_swaps(slow_above, fast_below, fills, forced,
                             max(limit, 0), params.hysteresis,
                             params.fill_min, _common.cold_below(params))

    promote_count = fills + swaps
    demote_count = forced + swaps
    promote = demote = np.empty(0, dtype=np.int64)
    if promote_count:
        coolest = _nth_hottest(slow_above, promote_count)
        candidates = np.flatnonzero((heat >= coolest) & (rows == 1))
        promote = _pick(candidates, heat, promote_count, hottest_first=True)
    if demote_count:
        warmest = _nth_coldest(fast_below, demote_count)
        candidates = np.flatnonzero((heat <= warmest) & (rows == 0))
        demote = _pick(candidates, heat, demote_count, hottest_first=False)
    return _common.Classification(
        histogram=histogram, threshold=threshold, promote=promote,
        demote=demote, fast_chunks=fast_chunks, slow_chunks=slow_chunks)
