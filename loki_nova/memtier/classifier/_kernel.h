/*
 * Copyright 2026 The loki-nova developers
 *
 * Licensed under the Apache License, Version 2.0 (the "License"); you may
 * not use this file except in compliance with the License. You may obtain
 * a copy of the License at
 *
 *      http://www.apache.org/licenses/LICENSE-2.0
 *
 * Unless required by applicable law or agreed to in writing, software
 * distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
 * WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
 * License for the specific language governing permissions and limitations
 * under the License.
 *
 * The two passes over per-chunk memory of the classifier kernel (see
 * _core.pyx and, for the contract, reference.py).  Plain C so that the
 * compiler sees branch-free loops it can vectorise; x86-64 builds get an
 * AVX2 clone picked at load time, other CPUs the baseline.
 */
#ifndef LOKI_CLASSIFIER_KERNEL_H
#define LOKI_CLASSIFIER_KERNEL_H

#include <pthread.h>
#include <stdint.h>
#include <string.h>

#define LOKI_LEVELS 65536
#define LOKI_HEAT_MAX 65535
/* Chunks per block of the block summaries used to skip work in pass 2. */
#define LOKI_BLOCK 2048
/*
 * Pass 1 histogram layout: a fast row, a slow row and DUMMY slots.
 * Consecutive chunks often share a heat level (cold memory mostly sits at
 * heat 0), and incrementing one counter back to back serialises on
 * store-to-load forwarding.  So heat-0 chunks (and absent ones) go to
 * rotating dummy slots -- the heat-0 counts are derived from the tier
 * totals -- and COPIES interleaved histograms take the other levels.
 */
#define LOKI_DUMMY 64
#define LOKI_ROW_FAST 0
#define LOKI_ROW_SLOW LOKI_LEVELS
#define LOKI_ROW_DUMMY (2 * LOKI_LEVELS)
#define LOKI_STRIDE (2 * LOKI_LEVELS + LOKI_DUMMY)
#define LOKI_COPIES 4
/* Most threads one call may use. */
#define LOKI_MAX_THREADS 8

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define LOKI_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define LOKI_CLONES
#endif
/*
 * Pass 1 over one block of ``len`` chunks, branch-free so it vectorises:
 * update heat, count the tiers, find the coldest fast-tier and the hottest
 * slow-tier heat (the block summary), and compute each chunk's histogram
 * slot into keys[] -- copy, row and level, or a dummy slot for heat 0 and
 * absent chunks -- so that only the increments remain scalar.  Indices are
 * 32-bit and block-relative (blocks start at multiples of LOKI_DUMMY) to
 * keep the vector lanes narrow.
 */
LOKI_CLONES static void
loki_update_block(const uint8_t *access, const uint8_t *tier, uint16_t *heat,
                  uint32_t len, int decay_shift, uint32_t weight,
                  uint32_t *keys, uint16_t *coldest_fast,
                  uint16_t *hottest_slow, int64_t *fast_total,
                  int64_t *slow_total)
{
    uint32_t cold = LOKI_HEAT_MAX, hot = 0, fast = 0, slow = 0;
    for (uint32_t j = 0; j < len; j++) {
        uint32_t h = heat[j];
        h = h - (h >> decay_shift) + (uint32_t)access[j] * weight;
        h = h < LOKI_HEAT_MAX ? h : LOKI_HEAT_MAX;
        heat[j] = (uint16_t)h;
        uint32_t t = tier[j];
        uint32_t is_fast = t == 0;
        /* 1..254: a slow tier (0 is fast, 255 absent). */
        uint32_t is_slow = (uint32_t)(uint8_t)(t - 1) < 254;
        uint32_t fast_mask = -is_fast;
        uint32_t slow_mask = -is_slow;
        uint32_t fast_heat = (h & fast_mask) | (LOKI_HEAT_MAX & ~fast_mask);
        uint32_t slow_heat = h & slow_mask;
        fast += is_fast;
        slow += is_slow;
        cold = fast_heat < cold ? fast_heat : cold;
        hot = slow_heat > hot ? slow_heat : hot;
        uint32_t copy = (j & (LOKI_COPIES - 1)) * LOKI_STRIDE;
        uint32_t row = (LOKI_ROW_SLOW & slow_mask) + h;
        uint32_t dummy = LOKI_ROW_DUMMY + (j & (LOKI_DUMMY - 1));
        uint32_t counted = -(uint32_t)(((is_fast | is_slow) & (h != 0)));
        keys[j] = copy + ((row & counted) | (dummy & ~counted));
    }
    *coldest_fast = (uint16_t)cold;
    *hottest_slow = (uint16_t)hot;
    *fast_total += fast;
    *slow_total += slow;
}

/*
 * Pass 1: update heat, count tiers, summarise each block and count
 * non-zero heat per tier into LOKI_COPIES histograms of LOKI_STRIDE.
 */
static void
loki_update_and_count(const uint8_t *access, const uint8_t *tier,
                      uint16_t *heat, int64_t n, int decay_shift,
                      uint32_t weight, uint32_t *hist,
                      uint16_t *block_fast_min, uint16_t *block_slow_max,
                      int64_t *fast_total, int64_t *slow_total)
{
    uint32_t keys[LOKI_BLOCK];
    *fast_total = 0;
    *slow_total = 0;
    int64_t block = 0;
    for (int64_t start = 0; start < n; start += LOKI_BLOCK, block++) {
        int64_t end = start + LOKI_BLOCK < n ? start + LOKI_BLOCK : n;
        loki_update_block(access + start, tier + start, heat + start,
                          (uint32_t)(end - start), decay_shift, weight, keys,
                          &block_fast_min[block], &block_slow_max[block],
                          fast_total, slow_total);
        for (int64_t i = 0; i < end - start; i++)
            hist[keys[i]]++;
    }
}

/* Flag values of the pass 2 filter. */
#define LOKI_FLAG_DEMOTE 1
#define LOKI_FLAG_PROMOTE 2

/*
 * Pass 2 filter: flags[j] says whether chunk j of the block may be
 * selected -- LOKI_FLAG_DEMOTE for a fast chunk at heat <= demote_ceiling,
 * LOKI_FLAG_PROMOTE for a slow one at heat >= promote_floor, else 0.
 * Returns whether any flag is set.
 */
LOKI_CLONES static uint32_t
loki_flag_candidates(const uint8_t *tier, const uint16_t *heat, uint32_t len,
                     int32_t demote_ceiling, int32_t promote_floor,
                     uint8_t *flags)
{
    uint32_t any = 0;
    for (uint32_t j = 0; j < len; j++) {
        int32_t t = tier[j];
        int32_t h = heat[j];
        uint32_t demotable = (t == 0) & (h <= demote_ceiling);
        uint32_t promotable = (t != 0) & (t != 255) & (h >= promote_floor);
        uint32_t flag = demotable * LOKI_FLAG_DEMOTE
            + promotable * LOKI_FLAG_PROMOTE;
        flags[j] = (uint8_t)flag;
        any |= flag;
    }
    return any;
}

/*
 * Pass 2: place each selected chunk at its slot.
 *
 * promote_at[h] is the next free slot of heat level h (levels >=
 * promote_level); at promote_level only the first promote_ties chunks (by
 * index) are selected.  Likewise for demotions at levels <= demote_level.
 * promote_floor / demote_ceiling are the inclusive limits still open: they
 * tighten once the boundary level's ties are used up and close once a list
 * is complete.  Blocks whose summaries fall outside them are skipped; in
 * the others a vectorised filter flags candidates, and only those are
 * visited (re-checked, since the limits may tighten within the block).
 */
static void
loki_scatter(const uint8_t *tier, const uint16_t *heat, int64_t n,
             int64_t index_base,
             const uint16_t *block_fast_min, const uint16_t *block_slow_max,
             int64_t *promote_at, int64_t promote_level, int64_t promote_ties,
             int64_t *promote, int64_t promote_count,
             int64_t *demote_at, int64_t demote_level, int64_t demote_ties,
             int64_t *demote, int64_t demote_count)
{
    /* A part of a parallel call may have no ties at the boundary level. */
    int32_t promote_floor = !promote_count ? LOKI_LEVELS
        : (int32_t)(promote_ties ? promote_level : promote_level + 1);
    int32_t demote_ceiling = !demote_count ? -1
        : (int32_t)(demote_ties ? demote_level : demote_level - 1);
    uint8_t flags[LOKI_BLOCK];
    int64_t block = 0;
    for (int64_t start = 0;
         start < n && (promote_count > 0 || demote_count > 0);
         start += LOKI_BLOCK, block++) {
        if (block_slow_max[block] < promote_floor
                && block_fast_min[block] > demote_ceiling)
            continue;
        uint32_t len = (uint32_t)(start + LOKI_BLOCK < n ? LOKI_BLOCK
                                  : n - start);
        if (!loki_flag_candidates(tier + start, heat + start, len,
                                  demote_ceiling, promote_floor, flags))
            continue;
        /* Zero padding so the block's tail reads as whole words. */
        memset(flags + len, 0, LOKI_BLOCK - len);
        for (uint32_t word = 0; word < len; word += 8) {
            uint64_t eight;
            memcpy(&eight, flags + word, 8);
            if (!eight)
                continue;
            for (uint32_t j = word; j < word + 8; j++) {
                if (!flags[j])
                    continue;
                int64_t i = start + j;
                int32_t h = heat[i];
                int64_t index = index_base + i;
                if (flags[j] == LOKI_FLAG_DEMOTE) {
                    if (h > demote_ceiling)
                        continue;
                    demote[demote_at[h]++] = index;
                    if (h == demote_level && --demote_ties == 0)
                        demote_ceiling = (int32_t)demote_level - 1;
                    if (--demote_count == 0)
                        demote_ceiling = -1;
                } else {
                    if (h < promote_floor)
                        continue;
                    promote[promote_at[h]++] = index;
                    if (h == promote_level && --promote_ties == 0)
                        promote_floor = (int32_t)promote_level + 1;
                    if (--promote_count == 0)
                        promote_floor = LOKI_LEVELS;
                }
            }
        }
    }
}

/* Arguments of one part of a call, for both passes. */
typedef struct {
    /* The part's chunks: [start, start + n) of the whole arrays. */
    int64_t start, n;
    const uint8_t *access, *tier;
    uint16_t *heat;
    int decay_shift;
    uint32_t weight;
    uint16_t *block_fast_min, *block_slow_max;   /* the part's blocks */
    /* Pass 1 output. */
    uint32_t *hist;
    int64_t fast_total, slow_total;
    /* Pass 2 input. */
    int64_t *promote_at, promote_level, promote_ties, promote_count;
    int64_t *demote_at, demote_level, demote_ties, demote_count;
    int64_t *promote, *demote;
} loki_part;

static void *
loki_pass1_part(void *arg)
{
    loki_part *p = arg;
    loki_update_and_count(p->access + p->start, p->tier + p->start,
                          p->heat + p->start, p->n, p->decay_shift,
                          p->weight, p->hist, p->block_fast_min,
                          p->block_slow_max, &p->fast_total, &p->slow_total);
    return NULL;
}

static void *
loki_pass2_part(void *arg)
{
    loki_part *p = arg;
    if (p->promote_count || p->demote_count)
        loki_scatter(p->tier + p->start, p->heat + p->start, p->n, p->start,
                     p->block_fast_min, p->block_slow_max, p->promote_at,
                     p->promote_level, p->promote_ties, p->promote,
                     p->promote_count, p->demote_at, p->demote_level,
                     p->demote_ties, p->demote, p->demote_count);
    return NULL;
}

/*
 * Run fn on parts[0..count): parts 1.. on threads of their own, part 0 on
 * the caller's.  A part whose thread cannot be created runs on the caller's
 * thread too, so the result never depends on threads being available.
 */
static void
loki_run_parts(void *(*fn)(void *), loki_part *parts, int count)
{
    pthread_t threads[LOKI_MAX_THREADS];
    int started[LOKI_MAX_THREADS] = {0};
    for (int k = 1; k < count; k++)
        started[k] = pthread_create(&threads[k], NULL, fn, &parts[k]) == 0;
    fn(&parts[0]);
    for (int k = 1; k < count; k++) {
        if (started[k])
            pthread_join(threads[k], NULL);
        else
            fn(&parts[k]);
    }
}

#endif
