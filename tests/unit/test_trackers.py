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

"""Trackers on directory trees that stand in for the kernel files (the
real kernels are in tests/sandbox/test_kernel.py), and tracker choice."""

import gzip
import os
import shutil

import numpy as np
import pytest

from loki_nova.memtier import guest
from loki_nova.memtier import kernfs
from loki_nova.memtier import trackers
from loki_nova.memtier.trackers import damon
from loki_nova.memtier.trackers import damontrace
from loki_nova.memtier.trackers import idlepage
from loki_nova.memtier.trackers import pagemap
from loki_nova.memtier.trackers import softdirty

PID = 4242
BASE = 0x7f0000000000


def make_guest(pages):
    ident = guest.Identity(PID, 1)
    return guest.Guest('g', ident,
                       (guest.RamRange(BASE, BASE + pages * 4096),),
                       guest.Policy('static', 0), 'process')


def write_pagemap(root, entries):
    """The stand-in process PID: its pagemap, and a stat line with the
    start time ``make_guest`` gives it."""
    path = root / ('proc/%d/pagemap' % PID)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, 'wb') as f:
        f.seek(BASE // 4096 * 8)
        f.write(np.asarray(entries, dtype=np.uint64).tobytes())
    (path.parent / 'stat').write_text(
        '%d (qemu (x)) S' % PID + ' 0' * 18 + ' 1 0 0\n')


def test_idle_page_tracker_on_a_stand_in_tree(tmp_path):
    # 16 pages in 4 chunks of 4; page 15 not present; frames 100..114
    pfns = np.arange(100, 115, dtype=np.uint64)
    entries = list(pfns | pagemap.PRESENT) + [0]
    write_pagemap(tmp_path, entries)
    bitmap = tmp_path / idlepage.BITMAP
    bitmap.parent.mkdir(parents=True)
    bitmap.write_bytes(b'\0' * 64)
    kfs = kernfs.KernelFS(str(tmp_path))
    t = idlepage.IdlePageTracker(kfs)
    g = make_guest(16)
    layout = guest.ChunkLayout(g.ranges, 4 * 4096)
    t.update({'g': (g, layout)})
    words = np.frombuffer(bitmap.read_bytes(), dtype=np.uint64)
    marked = [b for b in range(512) if words[b // 64] >> np.uint64(b % 64)
              & np.uint64(1)]
    # exactly our frames were marked idle, nothing else
    assert marked == list(range(100, 115))
    # the "kernel" clears idle bits of accessed frames: all of chunk 0,
    # half of chunk 1
    bits = words.copy()
    for pfn in (100, 101, 102, 103, 104, 105):
        bits[pfn // 64] &= ~(np.uint64(1) << np.uint64(pfn % 64))
    bitmap.write_bytes(bits.tobytes())
    sample = t.sample(g, layout)
    assert sample.tolist() == [20, 10, 0, 0]
    # and everything is marked idle again for the next interval
    again = np.frombuffer(bitmap.read_bytes(), dtype=np.uint64)
    assert again.tolist() == words.tolist()


def test_idle_page_tracker_needs_frame_numbers(tmp_path):
    write_pagemap(tmp_path, [pagemap.PRESENT] * 4)
    (tmp_path / idlepage.BITMAP).parent.mkdir(parents=True)
    (tmp_path / idlepage.BITMAP).write_bytes(b'\0' * 8)
    t = idlepage.IdlePageTracker(kernfs.KernelFS(str(tmp_path)))
    g = make_guest(4)
    with pytest.raises(PermissionError, match='CAP_SYS_ADMIN'):
        t.update({'g': (g, guest.ChunkLayout(g.ranges, 4096))})


@pytest.mark.parametrize('cap_eff,available', [
    ('000001ffffffffff', True),      # root: every capability
    ('0000000000080002', False),     # CAP_SYS_PTRACE + CAP_DAC_OVERRIDE
    (None, True),                    # no status file: checked per sample
])
def test_idle_page_tracker_is_unavailable_without_cap_sys_admin(
        tmp_path, cap_eff, available):
    (tmp_path / idlepage.BITMAP).parent.mkdir(parents=True)
    (tmp_path / idlepage.BITMAP).write_bytes(b'')
    if cap_eff is not None:
        status = tmp_path / idlepage.STATUS
        status.parent.mkdir(parents=True)
        status.write_text('Name:\tagent\nCapInh:\t0000000000000000\n'
                          'CapEff:\t%s\n' % cap_eff)
    kfs = kernfs.KernelFS(str(tmp_path))
    if available:
        assert idlepage.IdlePageTracker(kfs).name == 'idle_page'
    else:
        with pytest.raises(trackers.TrackerUnavailable,
                           match='lacks CAP_SYS_ADMIN'):
            idlepage.IdlePageTracker(kfs)


def test_soft_dirty_counts_from_the_pagemap_bits(tmp_path):
    entries = [pagemap.PRESENT | pagemap.SOFT_DIRTY] * 3 + \
        [pagemap.PRESENT] * 5
    write_pagemap(tmp_path, entries)
    g = make_guest(8)
    layout = guest.ChunkLayout(g.ranges, 4 * 4096)
    with kernfs.KernelFS(str(tmp_path)).process_dir(PID) as proc:
        entries = pagemap.read_layout(proc, layout)
    counts = pagemap.per_chunk(layout, (entries & pagemap.SOFT_DIRTY) != 0)
    assert counts.tolist() == [3, 0]
    assert pagemap.scale(counts, layout).tolist() == [15, 0]


def damon_tree(root, nr):
    d = root / damon.KDAMONDS
    d.mkdir(parents=True)
    (d / 'nr_kdamonds').write_text('%d\n' % nr)
    for i in range(nr):
        (d / str(i)).mkdir()
        (d / str(i) / 'pid').write_text('%d\n' % (900 + i))
        (d / str(i) / 'state').write_text('on\n')
    return d


def snapshot(root):
    return {str(p): p.read_bytes() for p in root.rglob('*') if p.is_file()}


def test_damon_in_someone_elses_hands_is_left_alone(tmp_path):
    damon_tree(tmp_path, 1)
    before = snapshot(tmp_path)
    with pytest.raises(trackers.TrackerUnavailable,
                       match='1 kdamond.* did not create'):
        damon.DamonTracker(kernfs.KernelFS(str(tmp_path)),
                           state_dir=str(tmp_path / 'state'))
    assert snapshot(tmp_path) == before


def test_damon_state_file_must_match_the_running_kdamonds(tmp_path):
    damon_tree(tmp_path, 2)
    state = tmp_path / 'state'
    state.mkdir()
    (state / damon.STATE_FILE).write_text('{"kdamond_pids": [900, 777]}')
    before = snapshot(tmp_path)
    with pytest.raises(trackers.TrackerUnavailable, match='did not create'):
        damon.DamonTracker(kernfs.KernelFS(str(tmp_path)),
                           state_dir=str(state))
    assert snapshot(tmp_path) == before


def test_damon_regions_map_onto_chunks_hottest_wins():
    g = make_guest(8 * 512)   # 16 MiB: 8 chunks of 2 MiB
    layout = guest.ChunkLayout(g.ranges, 2 << 20)
    mb = 1 << 20
    regions = np.array([
        [BASE - 8 * mb, BASE + 3 * mb, 4],       # starts before RAM
        [BASE + 3 * mb, BASE + 5 * mb, 20],      # chunks 1 and 2
        [BASE + 5 * mb, BASE + 16 * mb, 0],
        [BASE + 16 * mb, BASE + 64 * mb, 20],    # after RAM: ignored
    ], dtype=np.uint64)
    out = damon.regions_to_chunks(regions, layout, max_accesses=20,
                                  rule='hottest')
    assert out.tolist() == [4, 20, 20, 0, 0, 0, 0, 0]
    half = damon.regions_to_chunks(regions, layout, max_accesses=40,
                                   rule='hottest')
    assert half.tolist() == [2, 10, 10, 0, 0, 0, 0, 0]


def test_damon_regions_map_onto_chunks_weighted_by_bytes():
    """The default rule: each chunk's mean over its bytes, rounded up."""
    g = make_guest(8 * 512)   # 16 MiB: 8 chunks of 2 MiB
    layout = guest.ChunkLayout(g.ranges, 2 << 20)
    mb = 1 << 20
    regions = np.array([
        [BASE - 8 * mb, BASE + 3 * mb, 4],       # chunk 0, half of 1
        [BASE + 3 * mb, BASE + 5 * mb, 20],      # halves of chunks 1, 2
        [BASE + 5 * mb, BASE + 6 * mb, 0],
        [BASE + 6 * mb, BASE + 6 * mb + 4096, 20],   # one page of chunk 3
        [BASE + 16 * mb, BASE + 64 * mb, 20],    # after RAM: ignored
    ], dtype=np.uint64)
    assert damon.DEFAULT_CHUNK_RULE == 'bytes'
    out = damon.regions_to_chunks(regions, layout, max_accesses=20)
    # chunk 1: (4 + 20) / 2; chunk 2: 20 / 2; chunk 3: 20 / 512 -> 1
    assert out.tolist() == [4, 12, 10, 1, 0, 0, 0, 0]
    # The hottest region would put chunk 3 level with chunk 1.
    hottest = damon.regions_to_chunks(regions, layout, 20, rule='hottest')
    assert hottest[3] == hottest[1] == 20
    with pytest.raises(ValueError, match='rule must be one of'):
        damon.regions_to_chunks(regions, layout, 20, rule='max')


def test_damon_regions_of_several_aggregations_give_their_mean():
    """The trace source hands over the regions of many aggregations
    together: each chunk's value is its mean over them."""
    g = make_guest(4 * 512)
    layout = guest.ChunkLayout(g.ranges, 2 << 20)
    mb = 1 << 20
    first = [[BASE, BASE + 8 * mb, 20]]
    second = [[BASE, BASE + 2 * mb, 20], [BASE + 2 * mb, BASE + 8 * mb, 0]]
    both = np.array(first + second, dtype=np.uint64)
    out = damon.regions_to_chunks(both, layout, 20, aggregations=2)
    assert out.tolist() == [20, 10, 10, 10]
    assert damon.regions_to_chunks(both, layout, 20).tolist() == \
        [20, 20, 20, 20]          # as if one aggregation: clipped
    for bad in (0, 1.5, -1):
        with pytest.raises(ValueError, match='aggregations must be'):
            damon.regions_to_chunks(both, layout, 20, aggregations=bad)
    with pytest.raises(ValueError, match="1 for rule 'hottest'"):
        damon.regions_to_chunks(both, layout, 20, 'hottest', 2)


def test_a_finer_sample_scale_keeps_apart_what_0_20_rounds_together():
    """Means over many aggregations are mostly small: on 0-20 they round
    up to the same 1, on DAMON's trace scale (0-160) they keep their
    order, and the heat per unit shrinks in step."""
    g = make_guest(4 * 512)
    layout = guest.ChunkLayout(g.ranges, 2 << 20)
    mb = 1 << 20
    # Over 10 aggregations of 20 checks: 1, 5, 9 and 200 sampled accesses.
    regions = np.array([[BASE, BASE + 2 * mb, 1],
                        [BASE + 2 * mb, BASE + 4 * mb, 5],
                        [BASE + 4 * mb, BASE + 6 * mb, 9],
                        [BASE + 6 * mb, BASE + 8 * mb, 200]],
                       dtype=np.uint64)
    common = damon.regions_to_chunks(regions, layout, 20, aggregations=10)
    fine = damon.regions_to_chunks(regions, layout, 20, aggregations=10,
                                   scale=damon.TRACE_SCALE)
    assert common.tolist() == [1, 1, 1, 20]
    # 1/200, 5/200 and 9/200 of 160, rounded up; all of it is 160.
    assert fine.tolist() == [1, 4, 8, 160]
    # The same heat for the same share: 64 per 1/20 is 8 per 1/160.
    assert trackers.access_weight(64, trackers.SAMPLE_SCALE) == 64
    assert trackers.access_weight(64, damon.TRACE_SCALE) == 8
    assert trackers.access_weight(100, damon.TRACE_SCALE) == 13
    assert trackers.access_weight(1, damon.TRACE_SCALE) == 1
    for bad in (0, 256, 2.5):
        with pytest.raises(ValueError, match='scale must be a whole number '
                                             'of 1-255'):
            damon.regions_to_chunks(regions, layout, 20, scale=bad)
    with pytest.raises(ValueError, match='sample scale must be a whole '
                                         'number of at least 1'):
        trackers.access_weight(64, 0)
    # Rounded half up, not to even.
    assert [trackers.access_weight(h, 160) for h in (20, 28, 36)] == \
        [3, 4, 5]


TRACE_TEXT = b"""\
       kdamond.0-172     [000] .....    35.101: damon_aggregated: \
target_id=0 nr_regions=3 4096-8192: 5 1
       kdamond.0-172     [000] .....    35.101: damon_aggregated: \
target_id=0 nr_regions=3 8192-16384: 0 4
       kdamond.0-172     [000] .....    35.101: damon_aggregated: \
target_id=0 nr_regions=3 16384-20480: 20 0
  kdamond.my-pal-99      [001] .....    35.150: damon_aggregated: \
target_id=0 nr_regions=1 4096-8192: 7 0
       kdamond.1-173     [001] d..1.    35.160: damon_aggregated: \
target_id=0 nr_regions=2 4096-12288: 1 0
       kdamond.0-172     [000] .....    35.201: damon_aggregated: \
target_id=0 nr_regions=2 4096-12288: 3 2
"""


def test_damon_trace_lines_are_parsed_per_kdamond():
    out = damontrace.parse(TRACE_TEXT, {172, 173})
    assert set(out) == {172, 173}           # 99 is not watched
    assert out[172].tolist() == [[3, 4096, 8192, 5], [3, 8192, 16384, 0],
                                 [3, 16384, 20480, 20],
                                 [2, 4096, 12288, 3]]
    assert out[173].tolist() == [[2, 4096, 12288, 1]]
    assert damontrace.parse(TRACE_TEXT, {99})[99].tolist() == \
        [[1, 4096, 8192, 7]]
    assert damontrace.parse(b'', {172}) == {}


def rows(*groups):
    """parse() rows of aggregations given as lists of region starts (each
    region 4 KiB, nr_accesses = its start in KiB, nr_regions = the
    aggregation's length unless given as (n, starts))."""
    out = []
    for g in groups:
        n, starts = g if isinstance(g, tuple) else (len(g), g)
        out += [[n, a * 4096, a * 4096 + 4096, a * 4] for a in starts]
    return np.array(out, dtype=np.uint64).reshape(-1, 4)


def test_only_whole_aggregations_are_handed_out():
    whole = damontrace.whole_aggregations
    # two whole ones, then one still arriving (3 of 4 regions)
    regions, count, rest = whole(rows([1, 2], [1, 2], (4, [1, 2, 3])))
    assert count == 2
    assert regions[:, 0].tolist() == [4096, 8192, 4096, 8192]
    assert rest.tolist() == rows((4, [1, 2, 3])).tolist()
    # ... which is whole once its last region has come
    regions, count, rest = whole(np.concatenate([rest, rows((4, [9]))]))
    assert count == 1 and len(rest) == 0
    assert regions[:, 2].tolist() == [4, 8, 12, 36]
    # the tail of one begun before watching is dropped
    regions, count, rest = whole(rows((3, [2, 3]), [1, 5, 6]))
    assert count == 1 and regions[:, 0].tolist() == [4096, 20480, 24576]
    # one region each: every event is an aggregation of its own
    regions, count, rest = whole(rows([1], [1], [1]))
    assert count == 3 and len(rest) == 0
    # nothing whole yet
    regions, count, rest = whole(rows((2, [1])))
    assert count == 0 and len(regions) == 0 and len(rest) == 1
    regions, count, rest = whole(rows())
    assert count == 0 and len(regions) == 0
    # Events lost between two aggregations of 3 regions: the head of one
    # and the tail of the next make 3 events that are no aggregation.
    joined = rows((3, [1]), (3, [6, 7]), [1, 2, 3])
    joined[1:3, 1] = [2 * 4096, 3 * 4096]       # starts follow on ...
    joined[1:3, 2] = [3 * 4096, 4 * 4096]
    joined[2, 0] = 2                            # ... one count differs
    assert whole(joined)[1] == 1
    overlapping = rows([1, 2, 3])
    overlapping[0, 2] = 3 * 4096                # region 1 covers 2
    assert whole(overlapping)[1] == 0


class StandInTrace(damontrace.TraceStream):
    """Stands in for the kernel's tracefs instance: a directory with the
    files the stream writes, and a FIFO as its trace_pipe that the test
    writes events into."""

    def _make_instance(self):
        os.mkdir(self.dir)
        os.makedirs(os.path.join(self.dir, damontrace.EVENT))
        os.mkdir(os.path.join(self.dir, 'options'))
        for name in ('record-tgid', 'overwrite', 'context-info'):
            with open(os.path.join(self.dir, 'options', name), 'w') as f:
                f.write('1\n' if name == 'record-tgid' else '0\n')
        os.mkfifo(os.path.join(self.dir, 'trace_pipe'))

    def _remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def events(pid, *groups):
    return b''.join(
        b'  kdamond.0-%d  [000] .....  1.0: damon_aggregated: target_id=0 '
        b'nr_regions=%d %d-%d: %d 0\n' % (pid, n, a, b, acc)
        for n, a, b, acc in rows(*groups).tolist())


def fake_event(base, fmt=damontrace.PRINT_FMT):
    (base / damontrace.EVENT).mkdir(parents=True)
    (base / damontrace.EVENT / 'format').write_text(
        'name: damon_aggregated\nformat:\n\n%s, REC->target_id\n' % fmt)


@pytest.fixture
def stand_in_tracefs(tmp_path):
    base = tmp_path / 'sys/kernel/tracing'
    (base / 'instances').mkdir(parents=True)
    fake_event(base)
    return kernfs.KernelFS(str(tmp_path))


def test_damon_trace_stream_hands_each_kdamond_its_whole_aggregations(
        stand_in_tracefs):
    stream = StandInTrace(stand_in_tracefs, buffer_kb=64)
    path = stream.dir

    def setting(rel):
        with open(os.path.join(path, rel)) as f:
            return f.read().strip()

    writer = os.open(os.path.join(path, 'trace_pipe'),
                     os.O_WRONLY | os.O_NONBLOCK)
    try:
        # the machine's options are not the stream's
        assert setting('options/record-tgid') == '0'
        assert setting('options/overwrite') == '1'
        assert setting('options/context-info') == '1'
        assert setting('buffer_size_kb') == '64'
        # Switched on once, when made (no kdamond runs then), and the
        # kernel is not asked to hook task switches for a pid list.
        assert setting(damontrace.EVENT + '/enable') == '1'
        stream.watch([173, 172])
        assert not os.path.exists(os.path.join(path, 'set_event_pid'))
        text = (events(172, [1, 2], [1, 2]) + events(99, [1])
                + events(173, [5]) + events(172, (3, [1, 2])))
        # a line cut in two between reads
        os.write(writer, text[:-20])
        assert stream.pending(172) == 2
        os.write(writer, text[-20:])
        regions, count = stream.take(172)
        assert count == 2 and regions[:, 0].tolist() == [4096, 8192] * 2
        regions, count = stream.take(173)
        assert count == 1 and regions.tolist() == [[20480, 24576, 20]]
        # the one still arriving comes with the next read
        os.write(writer, events(172, (3, [3])))
        regions, count = stream.take(172)
        assert count == 1
        assert regions[:, 0].tolist() == [4096, 8192, 12288]
        # nothing: a bounded wait, then none
        regions, count = stream.take(172, wait_s=0.1)
        assert count == 0 and regions.shape == (0, 3)
        with pytest.raises(KeyError, match='kdamond 99 is not watched'):
            stream.take(99)
        # new kdamonds: what was held for the old ones is gone
        os.write(writer, events(172, [1]))
        stream.watch([180])
        with pytest.raises(KeyError):
            stream.take(172)
    finally:
        os.close(writer)
        stream.close()
    assert not os.path.exists(path)


def test_damon_trace_reports_lost_events(stand_in_tracefs, monkeypatch,
                                         caplog):
    monkeypatch.setattr(damontrace, 'LOST_CHECK_S', 0)
    stream = StandInTrace(stand_in_tracefs)
    try:
        stats = []
        for cpu, text in enumerate(('overrun: 3\n', 'overrun: 0\n'
                                    'dropped events: 4\n')):
            d = os.path.join(stream.dir, 'per_cpu', 'cpu%d' % cpu)
            os.makedirs(d)
            stats.append(os.path.join(d, 'stats'))
            with open(stats[-1], 'w') as f:
                f.write('entries: 10\n' + text)
        assert stream.check_lost() == 7
        assert '7 events were overwritten' in caplog.text
        assert stream.check_lost() == 0
        with open(stats[0], 'w') as f:
            f.write('overrun: 5\n')
        assert stream.check_lost() == 2
    finally:
        stream.close()


def test_damon_trace_needs_tracefs_with_the_damon_event(tmp_path):
    kfs = kernfs.KernelFS(str(tmp_path))
    with pytest.raises(damontrace.TraceUnavailable, match='not mounted'):
        damontrace.find_tracefs(kfs)
    (tmp_path / 'sys/kernel/tracing/instances').mkdir(parents=True)
    with pytest.raises(damontrace.TraceUnavailable,
                       match='without DAMON.s trace events'):
        damontrace.find_tracefs(kfs)
    fake_event(tmp_path / 'sys/kernel/tracing', fmt='print fmt: '
               '"target_id=%lu nr_regions=%u %lu-%lu: %u %u %u"')
    with pytest.raises(damontrace.TraceUnavailable,
                       match='a format this agent does not read'):
        damontrace.find_tracefs(kfs)
    (tmp_path / 'sys/kernel/tracing' / damontrace.EVENT / 'format'
     ).write_text(damontrace.PRINT_FMT + ', REC->target_id\n')
    assert damontrace.find_tracefs(kfs) == 'sys/kernel/tracing'


def test_damon_source_and_rule_are_checked_before_anything(tmp_path):
    damon_tree(tmp_path, 0)
    before = snapshot(tmp_path)
    kfs = kernfs.KernelFS(str(tmp_path))
    with pytest.raises(ValueError, match='source must be one of '
                                         'tried_regions, trace'):
        damon.DamonTracker(kfs, source='perf')
    with pytest.raises(ValueError, match='chunk_rule "bytes" only'):
        damon.DamonTracker(kfs, source='trace', chunk_rule='hottest')
    with pytest.raises(ValueError, match=r'aggregation interval \(1000 us\) '
                                         r'must be at least its sampling '
                                         r'interval \(5000 us\)'):
        damon.DamonTracker(kfs, sample_us=5000, aggr_us=1000)
    assert snapshot(tmp_path) == before


def test_damon_aggregation_defaults_by_source_and_interval():
    # Tried regions: a read waits for the end of one, so it stays short.
    assert damon.default_aggr_us('tried_regions', 5000) == 100000
    assert damon.default_aggr_us('tried_regions', 5000, 1.0) == 100000
    # The trace: 1 s (a tenth of the events of 100 ms), but at most a
    # fifth of the time between samples; never below the sampling.
    assert damon.default_aggr_us('trace', 5000) == 1000000
    assert damon.default_aggr_us('trace', 5000, 5.0) == 1000000
    assert damon.default_aggr_us('trace', 5000, 1.0) == 200000
    assert damon.default_aggr_us('trace', 5000, 0.01) == 5000


def test_damon_sampling_defaults_to_one_check_per_unit_of_the_trace():
    # Tried regions, or no interval known: DAMON's usual 5 ms.
    assert damon.default_sample_us('tried_regions') == 5000
    assert damon.default_sample_us('tried_regions', 5.0) == 5000
    assert damon.default_sample_us('trace') == 5000
    # The trace: 160 checks an interval (one per unit of its 0-160
    # scale), never below 5 ms.
    assert damon.default_sample_us('trace', 5.0) == 31250
    assert damon.default_sample_us('trace', 2.0) == 12500
    assert damon.default_sample_us('trace', 0.5) == 5000
    assert 5.0 * 1e6 / damon.default_sample_us('trace', 5.0) == \
        damon.TRACE_SCALE
    # With the default aggregation a 5 s interval's checks come to the
    # scale: 5 aggregations of 32.
    sample = damon.default_sample_us('trace', 5.0)
    aggr = damon.default_aggr_us('trace', sample, 5.0)
    assert (aggr // sample) * (5.0 * 1e6 / aggr) == damon.TRACE_SCALE


def test_damon_intervals_resolve_what_is_unset():
    r = damon.resolve_intervals
    # Both unset: each source's defaults.
    assert r('tried_regions', interval_s=5.0) == (5000, 100000)
    assert r('trace', interval_s=5.0) == (31250, 1000000)
    # At 7 s the aggregation is a whole number of samples (22 of
    # 43.75 ms), as DAMON counts them.
    assert r('trace', interval_s=7.0) == (43750, 962500)
    # Set values are used as they are.
    assert r('trace', 10000, 50000, 5.0) == (10000, 50000)
    # A set aggregation caps the default sampling, never below 5 ms.
    assert r('trace', None, 20000, 5.0) == (20000, 20000)
    assert r('trace', None, 5000, 5.0) == (5000, 5000)
    with pytest.raises(ValueError, match=r'aggregation interval \(4000 us\) '
                                         r'must be at least its sampling '
                                         r'interval \(5000 us\)'):
        r('trace', None, 4000, 5.0)
    with pytest.raises(ValueError, match=r'\(20000 us\) must be at least '
                                         r'its sampling interval '
                                         r'\(30000 us\)'):
        r('tried_regions', 30000, 20000)


def test_weighted_accesses_match_a_page_by_page_count():
    rng = np.random.default_rng(5)
    page = 4096
    ranges = (guest.RamRange(BASE, BASE + 40 * page),
              guest.RamRange(BASE + 100 * page, BASE + 107 * page))
    layout = guest.ChunkLayout(ranges, 8 * page)
    owner = layout.chunk_of(BASE + np.arange(-20, 130) * page)
    for _ in range(50):
        n = rng.integers(1, 12)
        first = rng.integers(-20, 120, n)
        pages = rng.integers(1, 30, n)
        value = rng.integers(0, 30, n)
        regions = np.stack([BASE + first * page,
                            BASE + (first + pages) * page, value], 1)
        expected = np.zeros(len(layout), dtype=np.int64)
        for lo, hi, v in zip(first, first + pages, value):
            for p in range(lo, hi):
                c = owner[p + 20] if -20 <= p < 130 else -1
                if c >= 0:
                    expected[c] += v
        got = damon.weighted_accesses(regions.astype(np.uint64), layout)
        assert got.tolist() == expected.tolist()


def test_auto_falls_back_and_names_every_reason(tmp_path):
    damon_tree(tmp_path, 1)
    with pytest.raises(trackers.TrackerUnavailable) as err:
        trackers.create('auto', kernfs.KernelFS(str(tmp_path)),
                        damon={'state_dir': str(tmp_path / 's')})
    text = str(err.value)
    assert 'damon: DAMON is in use' in text
    assert 'idle_page: the kernel has no' in text
    assert 'soft_dirty: ' in text


def test_auto_picks_the_idle_page_tracker_when_damon_is_taken(tmp_path):
    damon_tree(tmp_path, 1)
    (tmp_path / idlepage.BITMAP).parent.mkdir(parents=True)
    (tmp_path / idlepage.BITMAP).write_bytes(b'')
    t = trackers.create('auto', kernfs.KernelFS(str(tmp_path)),
                        damon={'state_dir': str(tmp_path / 's')})
    assert t.name == 'idle_page'


def test_unknown_tracker_kind_is_refused():
    with pytest.raises(ValueError, match='tracker must be auto or one of'):
        trackers.create('magic', kernfs.KernelFS('/nonexistent'))


def _kernel_config(option):
    try:
        with gzip.open('/proc/config.gz', 'rt') as f:
            return ('%s=y\n' % option) in f.read()
    except OSError:
        pytest.skip('this kernel does not publish /proc/config.gz')


def test_soft_dirty_probe_agrees_with_the_kernel_config():
    """The probe writes to and reads only this test process's own pages."""
    if _kernel_config('CONFIG_MEM_SOFT_DIRTY'):
        assert softdirty.SoftDirtyTracker(kernfs.KernelFS()).name == \
            'soft_dirty'
    else:
        with pytest.raises(trackers.TrackerUnavailable,
                           match='CONFIG_MEM_SOFT_DIRTY'):
            softdirty.SoftDirtyTracker(kernfs.KernelFS())


def test_no_damon_write_without_vaddr_in_the_kernel_config(tmp_path):
    damon_tree(tmp_path, 0)
    (tmp_path / 'proc').mkdir()
    with gzip.open(tmp_path / 'proc/config.gz', 'wt') as f:
        f.write('CONFIG_DAMON=y\nCONFIG_DAMON_PADDR=y\n'
                '# CONFIG_DAMON_VADDR is not set\n')
    before = snapshot(tmp_path)
    with pytest.raises(trackers.TrackerUnavailable,
                       match='without CONFIG_DAMON_VADDR'):
        damon.DamonTracker(kernfs.KernelFS(str(tmp_path)))
    assert snapshot(tmp_path) == before


def test_no_damon_write_while_a_kernel_module_runs_damon(tmp_path):
    damon_tree(tmp_path, 0)
    param = tmp_path / 'sys/module/damon_reclaim/parameters/enabled'
    param.parent.mkdir(parents=True)
    param.write_text('Y\n')
    before = snapshot(tmp_path)
    with pytest.raises(trackers.TrackerUnavailable,
                       match="kernel's damon_reclaim"):
        damon.DamonTracker(kernfs.KernelFS(str(tmp_path)))
    assert snapshot(tmp_path) == before
