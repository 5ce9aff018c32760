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

cdef extern from "_kernel.h":
    enum:
        LOKI_LEVELS
        LOKI_HEAT_MAX
        LOKI_BLOCK
        LOKI_ROW_FAST
        LOKI_ROW_SLOW
        LOKI_STRIDE
        LOKI_COPIES
    void loki_update_and_count(const uint8_t *access, const uint8_t *tier,
                               uint16_t *heat, int64_t n, int decay_shift,
                               uint32_t weight, uint32_t *hist,
                               uint16_t *block_fast_min,
                               uint16_t *block_slow_max,
                               int64_t *fast_total,
                               int64_t *slow_total) nogil
    void loki_scatter(const uint8_t *tier, const uint16_t *heat, int64_t n,
                      const uint16_t *block_fast_min,
                      const uint16_t *block_slow_max,
                      int64_t *promote_at, int64_t promote_level,
                      int64_t promote_ties, int64_t *promote,
                      int64_t promote_count,
                      int64_t *demote_at, int64_t demote_level,
                      int64_t demote_ties, int64_t *demote,
                      int64_t demote_count) nogil

cdef enum:
    LEVELS = LOKI_LEVELS
    HEAT_MAX = LOKI_HEAT_MAX


cdef inline int64_t _min(int64_t a, int64_t b) noexcept nogil:
    return a if a < b else b


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


cdef int64_t _boundary(int64_t *hist, int64_t count, int64_t first,
                      int64_t step, int64_t *ties) noexcept nogil:
    """Walk ``hist`` from level ``first`` in direction ``step`` until
    ``count`` chunks are covered; return the boundary level and how many
    chunks it contributes (``ties``).  The visited entries become the start
    slot of their level in the output list (a counting sort's offsets)."""
    cdef int64_t level = first, offset = 0, here
    while True:
        here = hist[level]
        hist[level] = offset
        if here >= count:
            ties[0] = count
            return level
        offset += here
        count -= here
        level += step


def classify(const uint8_t[::1] access, const uint8_t[::1] tier,
             uint16_t[::1] heat, int64_t budget, int64_t move_cap,
             params):
    """Run one interval of the kernel (arguments already validated)."""
    cdef int decay_shift = params.decay_shift
    cdef uint32_t weight = params.access_weight
    cdef int64_t hysteresis = min(params.hysteresis, HEAT_MAX)
    cdef int64_t fill_min = min(params.fill_min, LEVELS)
    cdef int64_t n = heat.shape[0]
    cdef int64_t blocks = (n + LOKI_BLOCK - 1) // LOKI_BLOCK
    cdef const uint8_t *access_p = &access[0] if n else NULL
    cdef const uint8_t *tier_p = &tier[0] if n else NULL
    cdef uint16_t *heat_p = &heat[0] if n else NULL
    cdef uint32_t *counts = <uint32_t *>calloc(LOKI_COPIES * LOKI_STRIDE,
                                               sizeof(uint32_t))
    cdef int64_t *fast = <int64_t *>calloc(2 * LEVELS, sizeof(int64_t))
    cdef int64_t *slow = fast + LEVELS if fast != NULL else NULL
    cdef uint16_t *block_stats = <uint16_t *>calloc(2 * blocks + 2,
                                                    sizeof(uint16_t))
    cdef uint16_t *block_fast_min = block_stats
    cdef uint16_t *block_slow_max = block_stats + blocks + 1
    if counts == NULL or fast == NULL or block_stats == NULL:
        free(counts)
        free(fast)
        free(block_stats)
        raise MemoryError()

    histogram = np.zeros(LEVELS, dtype=np.uint32)
    cdef uint32_t[::1] hist_view = histogram
    cdef int64_t fast_chunks = 0, slow_chunks = 0, level, c
    cdef int64_t threshold = 1, hotter = 0
    cdef int64_t cap_left, forced, free_chunks, eligible, fills, swaps
    cdef int64_t limit, promote_count, demote_count
    cdef int64_t promote_level = LEVELS, promote_ties = 0
    cdef int64_t demote_level = -1, demote_ties = 0
    cdef int64_t[::1] promote_view, demote_view

    try:
        with nogil:
            loki_update_and_count(access_p, tier_p, heat_p, n, decay_shift,
                              weight, counts, block_fast_min,
                              block_slow_max, &fast_chunks, &slow_chunks)
            for c in range(LOKI_COPIES):
                for level in range(1, LEVELS):
                    fast[level] += counts[c * LOKI_STRIDE + LOKI_ROW_FAST
                                          + level]
                    slow[level] += counts[c * LOKI_STRIDE + LOKI_ROW_SLOW
                                          + level]
            fast[0] = fast_chunks
            slow[0] = slow_chunks
            for level in range(1, LEVELS):
                fast[0] -= fast[level]
                slow[0] -= slow[level]
            for level in range(LEVELS):
                hist_view[level] = <uint32_t>(fast[level] + slow[level])

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
            if promote_count:
                promote_level = _boundary(slow, promote_count, HEAT_MAX, -1,
                                          &promote_ties)
            if demote_count:
                demote_level = _boundary(fast, demote_count, 0, 1,
                                         &demote_ties)

        promote = np.empty(promote_count, dtype=np.int64)
        demote = np.empty(demote_count, dtype=np.int64)
        promote_view = promote
        demote_view = demote
        if promote_count or demote_count:
            with nogil:
                loki_scatter(tier_p, heat_p, n, block_fast_min, block_slow_max,
                         slow, promote_level, promote_ties,
                         &promote_view[0] if promote_count else NULL,
                         promote_count,
                         fast, demote_level, demote_ties,
                         &demote_view[0] if demote_count else NULL,
                         demote_count)
    finally:
        free(counts)
        free(fast)
        free(block_stats)

    return _common.Classification(
        histogram=histogram, threshold=threshold, promote=promote,
        demote=demote, fast_chunks=fast_chunks, slow_chunks=slow_chunks)
