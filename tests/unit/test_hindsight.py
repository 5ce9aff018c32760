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

"""The hindsight references the recorded replays are read against."""

import os

import numpy as np
import pytest

from loki_nova.memtier.sim import engine
from loki_nova.memtier.sim import hindsight
from loki_nova.memtier.sim import tracefile

TRACES = os.path.join(os.path.dirname(__file__), os.pardir, 'data',
                      'traces')

#: Two chunks, equally hot over the trace, taking turns; DRAM holds one.
TURNS = np.array([[3, 1], [1, 3], [3, 1], [1, 3]])


def test_static_in_sample_profits_from_the_scored_intervals():
    refs = hindsight.references(TURNS, TURNS, warmup=0, k=1)
    # Totals tie (8 and 8): chunk 0, which has 3 of the 4 in every other
    # interval -- half of all accesses.
    assert refs['static_in_sample'] == pytest.approx(0.5)
    # Every other interval favours the other chunk: 1 of 4 each time.
    assert refs['static_leave_one_out'] == pytest.approx(0.25)
    # Each half ties too: chunk 0 throughout.
    assert refs['static_held_out'] == pytest.approx(0.5)
    c = refs['causal_exact']
    # Interval 0 knows nothing (chunk 0: 3), then the last one's hottest
    # is always the wrong one (1, 1, 1).
    assert c['previous-interval'] == pytest.approx(6 / 16)
    # The sums so far: [0 0] -> 0 (3), [3 1] -> 0 (1), [4 4] -> 0 (3),
    # [7 5] -> 0 (1).
    assert c['cumulative'] == pytest.approx(8 / 16)
    assert hindsight.best(c) == ('cumulative', pytest.approx(0.5))
    # Halved each interval: [0 0] -> 0 (3), [3 1] -> 0 (1),
    # [2.5 3.5] -> 1 (1), [4.25 2.75] -> 0 (1).
    assert c['halved-1'] == pytest.approx(6 / 16)


def test_held_out_halves_pick_from_the_other_half():
    # The hot chunk changes half-way: each half's pick is the other one's
    # cold chunk.
    shift = np.array([[3, 0], [3, 0], [0, 3], [0, 3]])
    refs = hindsight.references(shift, shift, warmup=0, k=1)
    assert refs['static_held_out'] == 0.0
    assert refs['static_in_sample'] == pytest.approx(0.5)
    # The other three intervals hold two of the other chunk's: 0 too.
    assert refs['static_leave_one_out'] == 0.0


@pytest.mark.parametrize('later, expected', [
    # A chunk used 10 times, then another used `later` times; which one
    # the estimators put in DRAM for the third interval (scored: only
    # the second chunk is used then) shows the share of heat each keeps.
    (7.2, {'previous-interval': 1.0, 'cumulative': 0.0, 'halved-1': 1.0,
           'halved-2': 1.0, 'halved-4': 0.0}),       # 10 x 0.707 < 7.2
    (4, {'previous-interval': 1.0, 'cumulative': 0.0, 'halved-1': 0.0,
         'halved-2': 0.0, 'halved-4': 0.0}),         # 10 x 0.5 > 4
])
def test_each_estimator_keeps_its_share_of_the_past(later, expected):
    accesses = np.array([[10, 0], [0, later], [0, 1]])
    refs = hindsight.references(accesses, accesses, warmup=2, k=1)
    assert refs['causal_exact'] == expected
    assert refs['causal'] == expected


def test_causal_estimators_see_samples_and_only_the_past():
    accesses = np.array([[0, 5, 0], [0, 5, 0], [4, 0, 0]])
    # The tracker saw chunk 2 where the accesses were to chunk 1.
    samples = np.array([[0, 0, 9], [0, 0, 9], [0, 0, 9]])
    refs = hindsight.references(accesses, samples, warmup=1, k=1)
    # Scored: intervals 1 and 2 (9 accesses).  The samples put chunk 2 in
    # DRAM, which is never accessed.
    assert refs['causal']['previous-interval'] == 0.0
    # The true accesses put chunk 1 there: 5 of 9 (interval 2's accesses
    # to chunk 0 come unannounced).
    assert refs['causal_exact']['previous-interval'] == pytest.approx(5 / 9)
    # With hindsight, interval 2's chunk 0 (4) loses to chunk 1 (10).
    assert refs['static_in_sample'] == pytest.approx(5 / 9)
    # Without interval 1, chunk 1's 5 still beats chunk 0's 4; without
    # interval 2 chunk 1 wins: the same 5 of 9.
    assert refs['static_leave_one_out'] == pytest.approx(5 / 9)


def test_only_replays_of_recordings_with_static_best_have_references():
    config = engine.SimConfig(intervals=4, warmup=1)
    synthetic = engine.run([engine.GuestSpec('g', 64, 'zipf')], config)
    assert synthetic.hindsight is None
    path = os.path.join(TRACES, 'sqlite-zipf.npz')
    replay = engine.run([engine.GuestSpec('g', 0, trace_file=path)], config,
                        policy_names=('loki', 'oracle'))
    assert replay.hindsight is None


def test_no_access_scores_nothing():
    quiet = np.zeros((3, 2))
    refs = hindsight.references(quiet, quiet, warmup=1, k=1)
    assert refs['static_in_sample'] == 0.0
    assert set(refs['causal'].values()) == {0.0}


@pytest.mark.parametrize('kwargs, match', [
    (dict(samples=np.zeros((4, 3))), 'same shape'),
    (dict(accesses=TURNS[:1], samples=TURNS[:1]),
     'at least 2 intervals.*got 1'),
    (dict(warmup=4), r'warmup must be 0 to 3'),
    (dict(warmup=-1), r'warmup must be 0 to 3'),
    (dict(warmup=0.5), r'warmup must be a whole number, got 0.5'),
    (dict(k=3), r'k must be 0 to 2'),
    (dict(k=1.5), r'k must be a whole number, got 1.5'),
])
def test_bad_arguments_are_named(kwargs, match):
    args = dict(accesses=TURNS, samples=TURNS, warmup=0, k=1)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        hindsight.references(**args)


@pytest.mark.parametrize('name, share', [('redis-zipf.npz', 0.25),
                                         ('pgbench-tpcb.npz', 0.125)])
def test_in_sample_reference_is_the_simulators_static_best(name, share):
    path = os.path.join(TRACES, name)
    recording = tracefile.load(path)
    n = recording.intervals
    config = engine.SimConfig(
        intervals=n, warmup=n // 10, interval_s=float(
            recording.meta['interval_s']),
        chunk_size=int(recording.meta['chunk_size']), dram_share=share,
        tracker_window=tracefile.WINDOW_INTERVAL)
    result = engine.run([engine.GuestSpec('g', 0, floor=share,
                                          trace_file=path)], config,
                        policy_names=('static-best', 'previous-interval'))
    trace = tracefile.RecordedTrace(path, config.chunk_size,
                                    config.chunk_rule, config.tracker_window,
                                    config.sample_scale)
    refs = hindsight.references(
        [trace.accesses(i) for i in range(n)],
        [trace.samples(i) for i in range(n)], config.warmup,
        int(trace.chunks * share))
    assert refs['static_in_sample'] == pytest.approx(
        result.policy('static-best').hit_ratio, abs=1e-12)
    # The replay gives the same references, from what it drew.
    assert result.hindsight == refs
    # Leave-one-out, worked out independently: each scored interval
    # against the k chunks with the most accesses in all the others
    # (ties to the lower index).
    accesses = [trace.accesses(i) for i in range(n)]
    k = int(trace.chunks * share)
    hits = total = 0.0
    for i in range(config.warmup, n):
        others = [sum(float(a[c]) for j, a in enumerate(accesses) if j != i)
                  for c in range(trace.chunks)]
        pick = sorted(range(trace.chunks),
                      key=lambda c: (-others[c], c))[:k]
        hits += sum(float(accesses[i][c]) for c in pick)
        total += float(accesses[i].sum())
    assert refs['static_leave_one_out'] == pytest.approx(hits / total)
    # And here (as on every trace) it is no more than static-best.
    assert refs['static_leave_one_out'] <= refs['static_in_sample']
