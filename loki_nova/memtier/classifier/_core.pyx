# cython: language_level=3, boundscheck=False, wraparound=False
# cython: cdivision=True, initializedcheck=False
#
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

"""Compiled classifier kernel; ``reference.py`` is its specification.

Two passes over the per-chunk arrays, both without the GIL:

* pass 1 updates heat and counts chunks per (tier, heat) into histograms;
* the move counts and the boundary heat levels come from walks over the
  histograms (65536 levels, independent of N);
* pass 2 scatters the selected chunks into the promote/demote lists at
  offsets precomputed from the histograms -- a counting sort, so the lists
  come out ordered without a comparison sort.  Pass 2 is skipped when
  nothing moves and stops once every selected chunk has been placed.
"""

import numpy as np

from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t
from libc.stdlib cimport calloc, free

from loki_nova.memtier.classifier import _common

cdef enum:
    LEVELS = 65536
    HEAT_MAX = 65535
    ROW_FAST = 0
    ROW_SLOW = 1
    ROW_ABSENT = 2
    # Histogram copies used in pass 1: consecutive chunks often share a heat
    # level (cold memory is mostly heat 0), and incrementing the same
    # counter back to back serialises on store-to-load forwarding.
    # Alternating copies breaks that chain.
    COPIES = 2


cdef inline int64_t _min(int64_t a, int64_t b) nogil:
    return a if a < b else b


cdef void _update_and_count(const uint8_t[::1] access,
                            const uint8_t[::1] tier,
                            uint16_t[::1] heat,
                            int decay_shift, uint32_t weight,
                            uint32_t *hist) noexcept nogil:
    cdef uint32_t row_of[256]
    cdef Py_ssize_t i, n = heat.shape[0]
    cdef uint32_t h
    for i in range(256):
        row_of[i] = ROW_SLOW * LEVELS
    row_of[0] = ROW_FAST * LEVELS
    row_of[255] = ROW_ABSENT * LEVELS
    for i in range(n):
        h = heat[i]
        h = h - (h >> decay_shift) + access[i] * weight
        if h > HEAT_MAX:
            h = HEAT_MAX
        heat[i] = <uint16_t>h
        hist[(i & (COPIES - 1)) * 3 * LEVELS + row_of[tier[i]] + h] += 1


cdef int64_t _skip_down(const int64_t *hist, int64_t *level, int64_t *left,
                        int64_t count) noexcept nogil:
    """Consume ``count`` chunks walking from hot to cold."""
    cdef int64_t take
    while count > 0 and level[0] >= 0:
        if left[0] == 0:
            level[0] -= 1
            if level[0] >= 0:
                left[0] = hist[level[0]]
            continue
        take = _min(count, left[0])
        left[0] -= take
        count -= take
    return count


cdef int64_t _skip_up(const int64_t *hist, int64_t *level, int64_t *left,
                      int64_t count) noexcept nogil:
    """Consume ``count`` chunks walking from cold to hot."""
    cdef int64_t take
    while count > 0 and level[0] < LEVELS:
        if left[0] == 0:
            level[0] += 1
            if level[0] < LEVELS:
                left[0] = hist[level[0]]
            continue
        take = _min(count, left[0])
        left[0] -= take
        count -= take
    return count


cdef int64_t _count_swaps(const int64_t *slow, const int64_t *fast,
                          int64_t fills, int64_t forced, int64_t limit,
                          int64_t hysteresis) noexcept nogil:
    """Pairs (next hottest slow, next coldest fast) with a heat gap above
    the hysteresis, walking both histograms in step."""
    cdef int64_t s_level = HEAT_MAX, s_left = slow[HEAT_MAX]
    cdef int64_t f_level = 0, f_left = fast[0]
    cdef int64_t swaps = 0, take
    _skip_down(slow, &s_level, &s_left, fills)
    _skip_up(fast, &f_level, &f_left, forced)
    while swaps < limit:
        while s_left == 0 and s_level > 0:
            s_level -= 1
            s_left = slow[s_level]
        while f_left == 0 and f_level < HEAT_MAX:
            f_level += 1
            f_left = fast[f_level]
        if s_left == 0 or f_left == 0 or s_level <= f_level + hysteresis:
            break
        take = _min(_min(s_left, f_left), limit - swaps)
        swaps += take
        s_left -= take
        f_left -= take
    return swaps


cdef void _scatter(const uint8_t[::1] tier, const uint16_t[::1] heat,
                   int64_t *promote_at, int64_t promote_level,
                   int64_t promote_ties, int64_t[::1] promote,
                   int64_t *demote_at, int64_t demote_level,
                   int64_t demote_ties, int64_t[::1] demote) noexcept nogil:
    """Pass 2: place each selected chunk at its slot.

    ``promote_at[h]`` is the next free slot for heat level h (levels >=
    promote_level); at promote_level only the first ``promote_ties``
    chunks (by index) are selected.  Likewise for demotions at levels <=
    demote_level.
    """
    cdef Py_ssize_t i, n = heat.shape[0]
    cdef int64_t remaining = promote.shape[0] + demote.shape[0]
    cdef int64_t h
    cdef uint8_t t
    for i in range(n):
        if remaining == 0:
            break
        t = tier[i]
        h = heat[i]
        if t == 0:
            if h < demote_level or (h == demote_level and demote_ties > 0):
                if h == demote_level:
                    demote_ties -= 1
                demote[demote_at[h]] = i
                demote_at[h] += 1
                remaining -= 1
        elif t != 255:
            if h > promote_level or (h == promote_level and promote_ties > 0):
                if h == promote_level:
                    promote_ties -= 1
                promote[promote_at[h]] = i
                promote_at[h] += 1
                remaining -= 1


def classify(const uint8_t[::1] access, const uint8_t[::1] tier,
             uint16_t[::1] heat, int64_t budget, int64_t move_cap,
             params):
    """Run one interval of the kernel (arguments already validated)."""
    cdef int decay_shift = params.decay_shift
    cdef uint32_t weight = params.access_weight
    cdef int64_t hysteresis = min(params.hysteresis, HEAT_MAX)
    cdef int64_t fill_min = min(params.fill_min, LEVELS)
    cdef int64_t n = heat.shape[0]
    cdef uint32_t *counts = <uint32_t *>calloc(COPIES * 3 * LEVELS,
                                               sizeof(uint32_t))
    cdef int64_t *fast = <int64_t *>calloc(2 * LEVELS, sizeof(int64_t))
    cdef int64_t *slow = fast + LEVELS
    if counts == NULL or fast == NULL:
        free(counts)
        free(fast)
        raise MemoryError()

    histogram = np.zeros(LEVELS, dtype=np.uint32)
    cdef uint32_t[::1] hist_view = histogram
    cdef int64_t fast_chunks = 0, slow_chunks = 0, level, c, row
    cdef int64_t threshold = 1, hotter = 0
    cdef int64_t cap_left, forced, free_chunks, eligible, fills, swaps
    cdef int64_t limit, promote_count, demote_count
    cdef int64_t promote_level = LEVELS, promote_ties = 0
    cdef int64_t demote_level = -1, demote_ties = 0, left, offset
    cdef int64_t[::1] promote_view, demote_view

    try:
        with nogil:
            _update_and_count(access, tier, heat, decay_shift, weight,
                              counts)
            for level in range(LEVELS):
                for c in range(COPIES):
                    row = c * 3 * LEVELS
                    fast[level] += counts[row + ROW_FAST * LEVELS + level]
                    slow[level] += counts[row + ROW_SLOW * LEVELS + level]
                hist_view[level] = <uint32_t>(fast[level] + slow[level])
                fast_chunks += fast[level]
                slow_chunks += slow[level]

            for level in range(HEAT_MAX, 0, -1):
                if hotter + hist_view[level] > budget:
                    threshold = level + 1
                    break
                hotter += hist_view[level]

            cap_left = move_cap
            forced = _min(fast_chunks - budget if fast_chunks > budget
                          else 0, cap_left)
            cap_left -= forced
            free_chunks = budget - fast_chunks if budget > fast_chunks else 0
            eligible = 0
            for level in range(fill_min, LEVELS):
                eligible += slow[level]
            fills = _min(_min(free_chunks, eligible), cap_left)
            cap_left -= fills
            swaps = 0
            if fast_chunks - forced + fills >= budget:
                limit = _min(_min(cap_left // 2, slow_chunks - fills),
                             fast_chunks - forced)
                if limit > 0:
                    swaps = _count_swaps(slow, fast, fills, forced, limit,
                                         hysteresis)
            promote_count = fills + swaps
            demote_count = forced + swaps

            # Boundary levels and the per-level start slots (reusing the
            # histograms as offset tables).
            left = promote_count
            offset = 0
            level = HEAT_MAX
            while left > 0:
                if slow[level] >= left:
                    promote_level = level
                    promote_ties = left
                    slow[level] = offset
                    left = 0
                else:
                    c = slow[level]
                    slow[level] = offset
                    offset += c
                    left -= c
                    level -= 1
            left = demote_count
            offset = 0
            level = 0
            while left > 0:
                if fast[level] >= left:
                    demote_level = level
                    demote_ties = left
                    fast[level] = offset
                    left = 0
                else:
                    c = fast[level]
                    fast[level] = offset
                    offset += c
                    left -= c
                    level += 1

        promote = np.empty(promote_count, dtype=np.int64)
        demote = np.empty(demote_count, dtype=np.int64)
        promote_view = promote
        demote_view = demote
        if promote_count or demote_count:
            with nogil:
                _scatter(tier, heat, slow, promote_level, promote_ties,
                         promote_view, fast, demote_level, demote_ties,
                         demote_view)
    finally:
        free(counts)
        free(fast)

    return _common.Classification(
        histogram=histogram, threshold=threshold, promote=promote,
        demote=demote, fast_chunks=fast_chunks, slow_chunks=slow_chunks)
