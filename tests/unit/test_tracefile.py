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

"""Recorded DAMON traces: the file format, its errors, and the replay."""

import json
import os
import zipfile

import numpy as np
import pytest

from loki_nova.memtier.sim import engine
from loki_nova.memtier.sim import tracefile
from loki_nova.memtier.trackers import damon

MiB = 1 << 20
BASE = 0x7f0000000000
DATA = os.path.join(os.path.dirname(os.path.dirname(__file__)), 'data',
                    'traces')
META = dict(sample_us=5000, aggr_us=100000, interval_s=1.0,
            chunk_size=2 * MiB, note='hand-built')


def region(lo_mb, hi_mb, nr_accesses, age=0):
    return [BASE + int(lo_mb * MiB), BASE + int(hi_mb * MiB), nr_accesses,
            age]


def small_recording():
    """8 MiB recorded (4 chunks of 2 MiB) plus 2 MiB never touched, two
    intervals of two snapshots each."""
    snapshots = [
        (0, 0.5, [region(-4, 1, 20, 3), region(1, 8, 0, 7)]),
        (0, 1.0, [region(-4, 2, 10), region(2, 8, 2)]),
        (1, 1.5, [region(0, 6.5, 4)]),
        # Chunk 1: one hot 256 KiB region; chunk 2: warm all through.
        (1, 2.0, [region(2, 2.25, 20), region(2.25, 4, 0),
                  region(4, 6, 6), region(6, 8, 0)]),
    ]
    return tracefile.from_snapshots(
        snapshots, [(BASE, BASE + 8 * MiB), (BASE + 16 * MiB,
                                             BASE + 18 * MiB)],
        META, present_start=[(BASE, BASE + 4 * MiB)],
        present_end=[(BASE, BASE + 6 * MiB)])


def test_a_recording_survives_the_round_trip(tmp_path):
    rec = small_recording()
    path = str(tmp_path / 'r.npz')
    tracefile.save(path, rec)
    back = tracefile.load(path)
    assert back.regions.tolist() == rec.regions.tolist()
    assert back.offsets.tolist() == [0, 2, 4, 5, 9]
    assert back.snapshot_interval.tolist() == [0, 0, 1, 1]
    assert back.snapshot_time == pytest.approx([0.5, 1.0, 1.5, 2.0])
    assert back.ranges.tolist() == rec.ranges.tolist()
    assert back.present_start.tolist() == rec.present_start.tolist()
    assert back.present_end.tolist() == rec.present_end.tolist()
    assert back.meta == rec.meta
    assert back.intervals == 2 and back.max_accesses == 20
    # Written in one piece: no temporary file is left beside it.
    assert os.listdir(tmp_path) == ['r.npz']


def test_regions_keep_their_place_across_snapshots_and_far_addresses(
        tmp_path):
    # Gaps are stored from the previous region's end, restarting at each
    # snapshot; far-apart areas (heap and mmap) must come back exactly.
    heap, mmap = 0x55d000000000, 0x7ffd00000000
    snaps = [(0, 1.0, [[heap, heap + 4096, 1, 1],
                       [mmap, mmap + 8192, 2, 2]]),
             (0, 2.0, []),
             (1, 3.0, [[heap + 8192, heap + 3 * 4096, 3, 3]])]
    rec = tracefile.from_snapshots(snaps, [(heap, heap + MiB)], META)
    tracefile.save(str(tmp_path / 'r.npz'), rec)
    back = tracefile.load(str(tmp_path / 'r.npz'))
    assert back.regions.tolist() == rec.regions.tolist()
    assert [back.snapshot(k).tolist() for k in range(3)] == \
        [rec.snapshot(k).tolist() for k in range(3)]


def _npz(path, **arrays):
    with open(path, 'wb') as f:
        np.savez_compressed(f, **arrays)


def _text(path, arrays):
    with open(path, 'w') as f:
        f.write('start,end\n1,2\n')


def _bare_array(path, arrays):
    with open(path, 'wb') as f:
        np.save(f, np.arange(3))


def _saved_arrays(tmp_path):
    path = str(tmp_path / 'good.npz')
    tracefile.save(path, small_recording())
    with np.load(path) as archive:
        return {k: archive[k] for k in archive.files}


@pytest.mark.parametrize('make, said', [
    (lambda p, a: None, 'cannot read it'),
    (_text, 'not a loki-memtier trace (not a NumPy .npz archive)'),
    (_bare_array, 'a bare NumPy array'),
    (lambda p, a: _npz(p, regions=np.zeros((2, 4))),
     'not a loki-memtier trace (it has no "format: loki-memtier-trace"'),
    (lambda p, a: _npz(p, **dict(a, version=np.array(2))),
     'format version 2; this loki-nova reads version 1'),
    (lambda p, a: _npz(p, **{k: v for k, v in a.items()
                             if k != 'region_age'}),
     'is damaged'),
    (lambda p, a: _npz(p, **dict(a, snapshot_offsets=np.array([0, 2, 4]))),
     'is damaged'),
    (lambda p, a: _npz(p, **dict(a, meta=np.array('[1, 2]'))),
     'metadata is not a JSON object'),
    (lambda p, a: _npz(p, **dict(a, meta=np.array(json.dumps(
        dict(META, interval_s=-1))))),
     'bad metadata'),
    (lambda p, a: _npz(p, **dict(a, ranges=np.zeros((0, 2), np.uint64))),
     'names no address range'),
])
def test_what_is_not_a_readable_trace_is_refused_naming_the_file(
        tmp_path, make, said):
    arrays = _saved_arrays(tmp_path)
    path = str(tmp_path / 'bad.npz')
    make(path, arrays)
    with pytest.raises(tracefile.TraceFileError) as err:
        tracefile.load(path)
    assert str(err.value).startswith(path + ': ')
    assert said in str(err.value)


def test_a_truncated_archive_is_refused(tmp_path):
    path = str(tmp_path / 'r.npz')
    tracefile.save(path, small_recording())
    with open(path, 'rb') as f:
        data = f.read()
    with open(path, 'wb') as f:
        f.write(data[:len(data) // 2])
    with pytest.raises(tracefile.TraceFileError, match='r.npz: '):
        tracefile.load(path)
    assert zipfile.is_zipfile(path) is False


def test_save_refuses_an_inconsistent_recording(tmp_path):
    rec = small_recording()
    rec.snapshot_interval = np.array([0, 0, 2, 2])
    with pytest.raises(tracefile.TraceFileError, match='run 0, 1, 2'):
        tracefile.save(str(tmp_path / 'r.npz'), rec)
    assert not os.listdir(tmp_path)


def test_replay_scores_every_snapshot_and_observes_the_last():
    trace = tracefile.RecordedTrace(small_recording(), rule='bytes')
    # Chunks 0-3 of the first range; the second range was never present
    # or accessed, so it holds no memory.
    assert trace.chunks == 4 and trace.memory_mb == 8
    assert trace.intervals == 2 and trace.interval_s == 1.0
    pages = 512                                   # 4 KiB pages per chunk
    # Interval 0: snapshot 1 (chunk 0 half at 20, rest 0) + snapshot 2
    # (chunk 0 at 10, the others at 2).
    assert trace.accesses(0).tolist() == [
        20 * 256 + 10 * pages, 2 * pages, 2 * pages, 2 * pages]
    # The tracker reads only the interval's last snapshot.
    assert trace.samples(0).tolist() == [10, 2, 2, 2]
    assert trace.accesses(1).tolist() == [
        4 * pages, 4 * pages + 20 * 64, 4 * pages + 6 * pages, 4 * 128]
    assert trace.samples(1).tolist() == [0, 3, 6, 0]
    # Present at the start: chunks 0 and 1.  Present at the end but never
    # accessed: none (chunk 2 was accessed).
    assert trace.initial.tolist() == [True, True, False, False]
    with pytest.raises(IndexError, match='has 2 intervals'):
        trace.accesses(2)


def test_the_two_chunk_rules_differ_where_a_small_region_is_hot():
    """Chunk 1 holds one hot 256 KiB region, chunk 2 is warm all through:
    the hottest-region rule ranks chunk 1 first, though DAMON counted
    more than twice the accesses in chunk 2; weighting by bytes keeps
    that order."""
    rec = small_recording()
    hottest = tracefile.RecordedTrace(rec, rule='hottest')
    by_bytes = tracefile.RecordedTrace(rec, rule='bytes')
    last = rec.snapshot(3)
    counted = damon.weighted_accesses(last, by_bytes.layout)
    assert counted[2] > 2 * counted[1] > 0
    assert hottest.samples(1).tolist() == [0, 20, 6, 0]
    assert by_bytes.samples(1).tolist() == [0, 3, 6, 0]
    with pytest.raises(ValueError, match='chunk rule'):
        tracefile.RecordedTrace(rec, rule='mean')


def test_a_longer_tracker_window_sees_more_of_the_interval():
    """With ``window`` 2 (here all of an interval) the tracker's one read
    stands for an aggregation twice as long: the counts of both
    snapshots against twice the most one can count."""
    rec = small_recording()
    pages = 512
    for window in (2, 3, tracefile.WINDOW_INTERVAL):
        trace = tracefile.RecordedTrace(rec, rule='bytes', window=window)
        # Interval 0, chunk 0: 20 on half of it, then 10 on all of it --
        # 20 * 256 + 10 * 512 of 2 * 20 * 512 -> 10 of 20.  Chunks 1-3:
        # 0 then 2 -> 1 of 20.
        assert trace.samples(0).tolist() == [10, 1, 1, 1]
        # Interval 1: the page-weighted counts of ``accesses(1)`` over
        # 2 * 20 * 512, rounded up.
        assert trace.samples(1).tolist() == [2, 4, 5, 1]
        assert trace.accesses(1).tolist() == [
            4 * pages, 4 * pages + 20 * 64, 10 * pages, 4 * 128]
    # Hottest region: each snapshot's hottest, then their mean (rounded
    # up): [4, 4, 4, 4] and [0, 20, 6, 0].
    hottest = tracefile.RecordedTrace(rec, rule='hottest', window=2)
    assert hottest.samples(1).tolist() == [2, 12, 5, 2]
    # The default is one snapshot, the last.
    assert tracefile.RecordedTrace(rec, rule='bytes').samples(1).tolist() \
        == [0, 3, 6, 0]


def test_each_tracker_window_reads_its_own_snapshots():
    """One interval of three snapshots over two chunks: windows 1, 2 and
    the whole interval each see something else, and means are rounded
    up."""
    rec = tracefile.from_snapshots(
        [(0, 1.0, [region(0, 2, 20), region(2, 4, 0)]),
         (0, 2.0, [region(0, 2, 0), region(2, 4, 10)]),
         # Chunk 1: one hot 256 KiB region.
         (0, 3.0, [region(0, 2, 5), region(2, 2.25, 20),
                   region(2.25, 4, 0)])],
        [(BASE, BASE + 4 * MiB)], META,
        present_start=[(BASE, BASE + 4 * MiB)])
    expected = {
        # bytes: chunk 1 in the last snapshot is 20 on 64 of 512 pages.
        ('bytes', 1): [5, 3],
        ('bytes', 2): [3, 7],             # 2.5 and 6.25, rounded up
        ('bytes', 'interval'): [9, 5],    # 25 / 3 and 12.5 / 3
        ('hottest', 1): [5, 20],
        ('hottest', 2): [3, 15],          # (0 + 5) / 2, (10 + 20) / 2
        ('hottest', 'interval'): [9, 10],
    }
    for (rule, window), values in expected.items():
        trace = tracefile.RecordedTrace(rec, rule=rule, window=window)
        assert trace.samples(0).tolist() == values, (rule, window)
    # On DAMON's trace scale, as the agent reads it: 25 / 3 and 12.5 / 3
    # of 20 are 66.7 and 33.3 of 160, rounded up.
    fine = tracefile.RecordedTrace(rec, rule='bytes', window='interval',
                                   scale=damon.TRACE_SCALE)
    assert fine.samples(0).tolist() == [67, 34]


@pytest.mark.parametrize('window', [0, -1, 1.5, '2', 'all', True, None])
def test_a_tracker_window_that_is_not_a_count_is_refused(window):
    with pytest.raises(ValueError, match="whole number of snapshots >= 1 "
                                         "or 'interval', got"):
        tracefile.RecordedTrace(small_recording(), window=window)
    with pytest.raises(ValueError, match='tracker window'):
        engine.SimConfig(tracker_window=window)


def test_the_engine_observes_through_the_tracker_window(tmp_path):
    """The simulation's policies observe what the configured window
    reports, and are scored against the same accesses either way."""
    path = str(tmp_path / 'small.npz')
    tracefile.save(path, small_recording())
    seen = {}
    for window in (1, tracefile.WINDOW_INTERVAL):
        config = engine.SimConfig(intervals=2, warmup=0, dram_share=0.5,
                                  interval_s=1.0, tracker_window=window)
        host, sampler = engine._start(
            [engine.GuestSpec('g', 0, floor=0.5, trace_file=path)], config)
        accesses, sampled, _ = host.draw(1, sampler)
        seen[window] = (accesses.tolist(), sampled.tolist())
    assert seen[1][1] == [0, 3, 6, 0]
    # The whole interval is DAMON's trace, on its scale of 0-160; on 0-20
    # it would be [2, 4, 5, 1].
    assert seen['interval'][1] == [16, 26, 40, 4]
    assert seen[1][0] == seen['interval'][0]
    config = engine.SimConfig(intervals=2, warmup=0, dram_share=0.5,
                              interval_s=1.0, tracker_window='interval',
                              sample_scale=20)
    host, sampler = engine._start(
        [engine.GuestSpec('g', 0, floor=0.5, trace_file=path)], config)
    assert host.draw(1, sampler)[1].tolist() == [2, 4, 5, 1]


def test_replays_run_loki_as_the_agent_sets_it_for_the_tracker():
    """The engine's default parameters are the agent's for the tracker a
    window stands for: tried regions (common scale, hysteresis 256) or
    DAMON's trace (0-160: 8 heat per unit, hot and cold levels one
    common unit, hysteresis 64)."""
    last = engine.default_params(engine.SimConfig())
    assert (last.access_weight, last.unit, last.hysteresis) == (64, 64, 256)
    whole = engine.default_params(engine.SimConfig(tracker_window='interval'))
    assert (whole.access_weight, whole.unit, whole.hysteresis) == (8, 64, 64)
    assert engine.default_params(engine.SimConfig(), 32).hysteresis == 32
    for bad in (0, 30, 260, 160.0):
        with pytest.raises(ValueError, match='sample_scale must be a '
                                             'multiple of 20 up to 255'):
            engine.SimConfig(sample_scale=bad)


def test_synthetic_samples_are_spread_onto_a_finer_scale():
    """Synthetic samples count units of the common scale; on a finer one
    each is worth as many of its units."""
    guest = engine.GuestSpec('g', 64, trace='zipf')
    drawn = {}
    for scale in (20, 160):
        config = engine.SimConfig(intervals=2, warmup=0, seed=3,
                                  sample_scale=scale)
        host, sampler = engine._start([guest], config)
        drawn[scale] = host.draw(1, sampler)[1].astype(int)
    assert drawn[20].max() > 0
    assert (drawn[160] == np.minimum(drawn[20] * 8, 255)).all()


def test_a_recording_replays_through_the_engine(tmp_path):
    path = str(tmp_path / 'small.npz')
    tracefile.save(path, small_recording())
    config = engine.SimConfig(intervals=2, warmup=0, dram_share=0.5,
                              interval_s=1.0)
    result = engine.run([engine.GuestSpec('g', 0, floor=0.5,
                                          trace_file=path)], config)
    assert result.guests[0].trace == 'file:small.npz'
    assert result.guests[0].memory_mb == 8
    oracle = result.policy('oracle')
    for policy in result.policies:
        assert all(h <= o + 1e-12 for h, o in
                   zip(policy.hit_per_interval, oracle.hit_per_interval))
    with pytest.raises(ValueError, match='holds 2 intervals, fewer than'):
        engine.run([engine.GuestSpec('g', 0, trace_file=path)],
                   engine.SimConfig(intervals=3, warmup=0))


@pytest.mark.skipif(not os.path.isdir(DATA), reason='no recorded traces')
@pytest.mark.parametrize('name', sorted(
    n for n in (os.listdir(DATA) if os.path.isdir(DATA) else ())
    if n.endswith('.npz')))
def test_the_recorded_test_data_loads_and_has_accesses(name):
    rec = tracefile.load(os.path.join(DATA, name))
    assert rec.intervals >= 40
    assert rec.meta['note']
    trace = tracefile.RecordedTrace(rec)
    assert trace.chunks >= 32 and trace.totals.sum() > 0
