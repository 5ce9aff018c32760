#!/usr/bin/env python3
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

"""Classifier kernel speed: compiled vs NumPy vs the memory-bandwidth floor.

The input is one steady-state interval of a guest of ``--chunks`` chunks
(16 Mi by default: a 64 GiB guest at 4 KiB): Zipf(0.99) accesses seen
through the DAMON-like sampler, after a few warm-up intervals in which the
kernel's own plans were applied, DRAM budget 25 %, move cap as the agent's
defaults give it.

Measured in one run, interleaved, median of ``--repeat`` repetitions:

* ``cython_s`` -- the compiled kernel with its default threads
  (``threads``: one per CPU here); ``cython_1thread_s`` -- on one thread;
* ``numpy_s`` -- the histogram-based NumPy formulation (vectorized.py);
* ``floor_s`` -- one memcpy of the bytes the kernel must touch: it has to
  read access (1 B), tier (1 B) and heat (2 B) and write heat (2 B) per
  chunk, so the floor copies a 6-byte-per-chunk buffer.

``fraction_of_floor`` = floor_s / cython_s; ``speedup_vs_numpy`` =
numpy_s / cython_s (and the same on one thread).  All runs must produce
the same result, checked every repetition.
"""

import argparse
import statistics
import sys
import time

import numpy as np

import _report
from loki_nova.memtier import classifier
from loki_nova.memtier.sim import sampler as sampler_mod
from loki_nova.memtier.sim import traces

# The agent's defaults: 256 MiB/s of moves, 5 s intervals, 4 KiB chunks.
DEFAULT_MOVE_CAP = 256 * 1024 * 1024 * 5 // 4096


def steady_state_interval(chunks, seed, dram_share=0.25, warmup=6):
    """Return (access, tier, heat) of an interval after ``warmup`` ones."""
    rng = np.random.default_rng(seed)
    trace = traces.ZipfTrace(chunks, rng, alpha=0.99)
    sampler = sampler_mod.AccessSampler(rng)
    budget = int(chunks * dram_share)
    tier = np.full(chunks, classifier.TIER_SLOW, dtype=np.uint8)
    tier[rng.permutation(chunks)[:budget]] = classifier.TIER_FAST
    heat = np.zeros(chunks, dtype=np.uint16)
    for interval in range(warmup):
        access = sampler.sample(trace.accesses(interval))
        plan = classifier.classify(access, tier, heat, budget, chunks)
        tier[plan.demote] = classifier.TIER_SLOW
        tier[plan.promote] = classifier.TIER_FAST
    access = sampler.sample(trace.accesses(warmup))
    return access, tier, heat, budget


def _timed(function):
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def run(chunks, repeat, seed, move_cap):
    access, tier, heat, budget = steady_state_interval(chunks, seed)
    work = heat.copy()
    floor_src = np.ones(chunks * 6, dtype=np.uint8)
    floor_dst = np.zeros_like(floor_src)   # touched before timing
    times = {'cython': [], 'cython1': [], 'numpy': [], 'floor': []}
    plans = {}

    def kernel(backend, threads=None):
        def call():
            return classifier.classify(access, tier, work, budget, move_cap,
                                       backend=backend, threads=threads)
        return call

    runs = [('cython', kernel('compiled')),
            ('cython1', kernel('compiled', threads=1)),
            ('numpy', kernel('vectorized')),
            ('floor', lambda: np.copyto(floor_dst, floor_src))]
    for rep in range(repeat):
        # Rotate the order so that no contender always runs first.
        shift = rep % len(runs)
        for name, call in runs[shift:] + runs[:shift]:
            np.copyto(work, heat)
            seconds, result = _timed(call)
            times[name].append(seconds)
            if name != 'floor':
                plans[name] = (result, work.copy())
        _check_same(plans['cython'], plans['numpy'])
        _check_same(plans['cython1'], plans['numpy'])

    medians = {name: statistics.median(values)
               for name, values in times.items()}
    result = plans['cython'][0]
    return {
        'chunks': chunks,
        'repeat': repeat,
        'budget_chunks': budget,
        'move_cap_chunks': move_cap,
        'promote': len(result.promote),
        'demote': len(result.demote),
        'threads': classifier.default_threads(chunks),
        'cython_s': medians['cython'],
        'cython_1thread_s': medians['cython1'],
        'numpy_s': medians['numpy'],
        'floor_s': medians['floor'],
        'floor_bytes': int(floor_src.nbytes),
        'speedup_vs_numpy': medians['numpy'] / medians['cython'],
        'fraction_of_floor': medians['floor'] / medians['cython'],
        'speedup_vs_numpy_1thread': medians['numpy'] / medians['cython1'],
        'fraction_of_floor_1thread': medians['floor'] / medians['cython1'],
        'metadata_bytes_per_chunk': classifier.METADATA_BYTES_PER_CHUNK,
    }


def _check_same(compiled, vectorized):
    (a, heat_a), (b, heat_b) = compiled, vectorized
    same = (np.array_equal(heat_a, heat_b)
            and np.array_equal(a.histogram, b.histogram)
            and a.threshold == b.threshold
            and np.array_equal(a.promote, b.promote)
            and np.array_equal(a.demote, b.demote))
    if not same:
        raise SystemExit('compiled and NumPy classifiers disagree')


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--chunks', type=int, default=16 * 1024 * 1024)
    parser.add_argument('--repeat', type=int, default=5)
    parser.add_argument('--seed', type=int, default=1)
    parser.add_argument('--move-cap', type=int, default=DEFAULT_MOVE_CAP)
    parser.add_argument('--json', action='store_true',
                        help='print one JSON object')
    args = parser.parse_args(argv)
    if args.chunks < 1 or args.repeat < 1:
        parser.error('--chunks and --repeat must be >= 1')
    report = run(args.chunks, args.repeat, args.seed, args.move_cap)
    _report.emit(report, args.json)
    return 0


if __name__ == '__main__':
    sys.exit(main())
