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

With several threads each takes a contiguous run of blocks for both passes;
the boundary walk is global, and every part gets its own start slots and
its share of the boundary level's ties, earlier parts first, so the result
is the same as on one thread.
"""

import threading

import numpy as np

from libc.stdint cimport int64_t, uint8_t, uint16_t, uint32_t
from libc.stdlib cimport calloc, free, malloc
from libc.string cimport memset

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
        LOKI_MAX_THREADS
    ctypedef struct loki_part:
        int64_t start, n
        const uint8_t *access
        const uint8_t *tier
        uint16_t *heat
        int decay_shift
        uint32_t weight
        uint16_t *block_fast_min
        uint16_t *block_slow_max
        uint32_t *hist
        int64_t fast_total, slow_total
        int64_t *promote_at
        int64_t promote_level, promote_ties, promote_count
        int64_t *demote_at
        int64_t demote_level, demote_ties, demote_count
        int64_t *promote
        int64_t *demote
    void *loki_pass1_part(void *arg) nogil
    void *loki_pass2_part(void *arg) nogil
    void loki_run_parts(void *(*fn)(void *) noexcept nogil,
                        loki_part *parts, int count) nogil

MAX_THREADS = LOKI_MAX_THREADS

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
                          int64_t hysteresis, int64_t fill_min,
                          int64_t cold) noexcept nogil:
    """Pairs (next hottest slow, next coldest fast) with a heat gap above
    the hysteresis, or with a cold fast chunk (heat below ``cold``) and a
    hotter slow one of at least ``fill_min``, walking both histograms in
    step."""
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
        if s_left == 0 or f_left == 0:
            break
        if s_level <= f_level + hysteresis and not (
                f_level < cold and s_level > f_level
                and s_level >= fill_min):
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


cdef void _part_offsets(const int64_t *level_counts, int parts, const int64_t *slots, int64_t first,
                        int64_t last, int64_t step, int64_t boundary_ties,
                        int64_t *part_slots, int64_t *part_ties,
                        int64_t *part_counts) noexcept nogil:
    """Split the selection at levels ``first``..``last`` (walking by
    ``step``; ``last`` is the boundary level) among the parts, in index
    order: part k's slot at each level starts after the chunks of parts
    before it; at the boundary only ``boundary_ties`` chunks are taken, the
    earlier parts first."""
    cdef int64_t level = first, k, offset, taken, ties_left
    while True:
        offset = slots[level]
        ties_left = boundary_ties
        for k in range(parts):
            part_slots[k * LEVELS + level] = offset
            taken = level_counts[k * LEVELS + level]
            if level == last:
                taken = _min(taken, ties_left)
                ties_left -= taken
                part_ties[k] = taken
            part_counts[k] += taken
            offset += taken
        if level == last:
            break
        level += step



# Scratch memory of the last call, kept for the next: a fresh multi-MiB
# allocation comes from mmap and costs a page fault per 4 KiB, several
# times the work of classifying a small guest.  One caller at a time uses
# it (the lock is only tried, never waited on); a concurrent caller gets
# its own allocation.
cdef char *_pool = NULL
cdef size_t _pool_size = 0
_pool_lock = threading.Lock()


cdef char *_scratch(size_t size, bint *pooled):
    """``size`` zeroed bytes; call with the GIL held."""
    global _pool, _pool_size
    if _pool_lock.acquire(False):
        if _pool_size < size:
            free(_pool)
            _pool = <char *>malloc(size)
            _pool_size = size if _pool != NULL else 0
        if _pool != NULL:
            memset(_pool, 0, size)
            pooled[0] = True
            return _pool
        _pool_lock.release()
    pooled[0] = False
    return <char *>calloc(size, 1)


cdef void _release(char *scratch, bint pooled):
    if pooled:
        _pool_lock.release()
    else:
        free(scratch)

def classify(const uint8_t[::1] access, const uint8_t[::1] tier,
             uint16_t[::1] heat, int64_t budget, int64_t move_cap,
             params, int threads=1):
    """Run one interval of the kernel (arguments already validated) on
    ``threads`` threads; the result does not depend on their number."""
    cdef int decay_shift = params.decay_shift
    cdef uint32_t weight = params.access_weight
    cdef int64_t hysteresis = min(params.hysteresis, HEAT_MAX)
    cdef int64_t fill_min = min(params.fill_min, LEVELS)
    # A DRAM chunk below this heat is cold.
    cdef int64_t cold = _common.cold_below(params)
    cdef int64_t n = heat.shape[0]
    cdef int64_t blocks = (n + LOKI_BLOCK - 1) // LOKI_BLOCK
    cdef int parts = <int>max(1, min(threads, LOKI_MAX_THREADS, blocks))
    cdef int64_t blocks_per_part = (blocks + parts - 1) // parts if blocks \
        else 0
    cdef loki_part part[LOKI_MAX_THREADS]
    # Python objects first: nothing below may raise before ``try``
    # except the allocations, which clean up after themselves.
    histogram = np.zeros(LEVELS, dtype=np.uint32)
    cdef uint32_t[::1] hist_view = histogram
    # One zeroed scratch block: per part the fast and slow chunks per
    # level and the per-level slots, the merged fast/slow levels, then
    # the per-part histogram copies.
    cdef size_t levels_bytes = 4 * parts * LEVELS * sizeof(int64_t)
    cdef size_t fast_bytes = 2 * LEVELS * sizeof(int64_t)
    cdef bint pooled = False
    cdef char *scratch = _scratch(
        levels_bytes + fast_bytes
        + parts * LOKI_COPIES * LOKI_STRIDE * sizeof(uint32_t), &pooled)
    cdef uint16_t *block_stats = <uint16_t *>calloc(2 * blocks + 2,
                                                    sizeof(uint16_t))
    if scratch == NULL or block_stats == NULL:
        _release(scratch, pooled)
        free(block_stats)
        raise MemoryError()
    cdef int64_t *levels = <int64_t *>scratch
    cdef int64_t *fast = <int64_t *>(scratch + levels_bytes)
    cdef uint32_t *counts = <uint32_t *>(scratch + levels_bytes + fast_bytes)
    cdef int64_t *slow = fast + LEVELS
    cdef int64_t *part_fast = levels
    cdef int64_t *part_slow = levels + parts * LEVELS
    cdef int64_t *promote_slots = levels + 2 * parts * LEVELS
    cdef int64_t *demote_slots = levels + 3 * parts * LEVELS
    cdef uint16_t *block_fast_min = block_stats
    cdef uint16_t *block_slow_max = block_stats + blocks + 1

    cdef int64_t fast_chunks = 0, slow_chunks = 0, level, c, k, first
    cdef int64_t threshold = 1, hotter = 0
    cdef int64_t cap_left, forced, free_chunks, eligible, fills, swaps
    cdef int64_t limit, promote_count, demote_count
    cdef int64_t promote_level = LEVELS, promote_ties = 0
    cdef int64_t demote_level = -1, demote_ties = 0
    cdef int64_t[::1] promote_view, demote_view
    cdef uint32_t *hist
    cdef int64_t ties[LOKI_MAX_THREADS]
    cdef int64_t selected[LOKI_MAX_THREADS]

    memset(part, 0, sizeof(part))
    for k in range(parts):
        first = k * blocks_per_part
        part[k].start = min(first * LOKI_BLOCK, n)
        part[k].n = min((first + blocks_per_part) * LOKI_BLOCK, n) \
            - part[k].start
        part[k].access = &access[0] if n else NULL
        part[k].tier = &tier[0] if n else NULL
        part[k].heat = &heat[0] if n else NULL
        part[k].decay_shift = decay_shift
        part[k].weight = weight
        part[k].block_fast_min = block_fast_min + first
        part[k].block_slow_max = block_slow_max + first
        part[k].hist = counts + k * LOKI_COPIES * LOKI_STRIDE
        part[k].promote_at = promote_slots + k * LEVELS
        part[k].demote_at = demote_slots + k * LEVELS

    try:
        with nogil:
            loki_run_parts(loki_pass1_part, part, parts)
            for k in range(parts):
                hist = part[k].hist
                for c in range(LOKI_COPIES):
                    for level in range(1, LEVELS):
                        part_fast[k * LEVELS + level] += hist[
                            c * LOKI_STRIDE + LOKI_ROW_FAST + level]
                        part_slow[k * LEVELS + level] += hist[
                            c * LOKI_STRIDE + LOKI_ROW_SLOW + level]
                # Heat-0 chunks were not histogrammed (see _kernel.h).
                part_fast[k * LEVELS] = part[k].fast_total
                part_slow[k * LEVELS] = part[k].slow_total
                for level in range(1, LEVELS):
                    part_fast[k * LEVELS] -= part_fast[k * LEVELS + level]
                    part_slow[k * LEVELS] -= part_slow[k * LEVELS + level]
                    fast[level] += part_fast[k * LEVELS + level]
                    slow[level] += part_slow[k * LEVELS + level]
                fast[0] += part_fast[k * LEVELS]
                slow[0] += part_slow[k * LEVELS]
                fast_chunks += part[k].fast_total
                slow_chunks += part[k].slow_total
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
                                         hysteresis, fill_min, cold)
            promote_count = fills + swaps
            demote_count = forced + swaps
            if promote_count:
                promote_level = _boundary(slow, promote_count, HEAT_MAX, -1,
                                          &promote_ties)
                memset(ties, 0, sizeof(ties))
                memset(selected, 0, sizeof(selected))
                _part_offsets(part_slow, parts, slow, HEAT_MAX,
                              promote_level, -1, promote_ties,
                              promote_slots, ties, selected)
                for k in range(parts):
                    part[k].promote_ties = ties[k]
                    part[k].promote_count = selected[k]
            if demote_count:
                demote_level = _boundary(fast, demote_count, 0, 1,
                                         &demote_ties)
                memset(ties, 0, sizeof(ties))
                memset(selected, 0, sizeof(selected))
                _part_offsets(part_fast, parts, fast, 0,
                              demote_level, 1, demote_ties, demote_slots,
                              ties, selected)
                for k in range(parts):
                    part[k].demote_ties = ties[k]
                    part[k].demote_count = selected[k]

        promote = np.empty(promote_count, dtype=np.int64)
        demote = np.empty(demote_count, dtype=np.int64)
        promote_view = promote
        demote_view = demote
        if promote_count or demote_count:
            for k in range(parts):
                part[k].promote_level = promote_level
                part[k].demote_level = demote_level
                part[k].promote = &promote_view[0] if promote_count else NULL
                part[k].demote = &demote_view[0] if demote_count else NULL
            with nogil:
                loki_run_parts(loki_pass2_part, part, parts)
    finally:
        _release(scratch, pooled)
        free(block_stats)

    return _common.Classification(
        histogram=histogram, threshold=threshold, promote=promote,
        demote=demote, fast_chunks=fast_chunks, slow_chunks=slow_chunks)
