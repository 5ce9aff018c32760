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

"""The agent's hands on a real two-tier kernel: topology, trackers and the
mover, inside the sandbox (node0 DRAM with the CPUs, node1 memory-only;
see tools/sandbox.py).  Each test starts its own workload processes and
moves pages only of those."""

import errno
import os
import select
import threading
import time

import numpy as np
import pytest

from loki_nova.memtier import guest
from loki_nova.memtier import kernfs
from loki_nova.memtier import mover
from loki_nova.memtier import topology
from loki_nova.memtier import trackers
from loki_nova.memtier.trackers import damon
from loki_nova.memtier.trackers import damontrace
from loki_nova.memtier.trackers import idlepage
from loki_nova.memtier.trackers import softdirty
from tests import workloads
from tests.sandbox import INSIDE_ONLY

pytestmark = INSIDE_ONLY

MiB = 1024 * 1024
KFS = kernfs.KernelFS()
CHUNK = 2 * MiB


def as_guest(w, key='w'):
    return guest.Guest(key, guest.identify(KFS, w.pid),
                       (guest.RamRange(w.start, w.end),),
                       guest.Policy('static', 0), 'process')


def all_pages(w):
    return np.arange(w.start, w.end, 4096, dtype=np.uint64)


def nodes_of(w, pages=None):
    return mover.move_pages(w.pid, all_pages(w) if pages is None else pages)


def test_topology_of_the_real_kernel():
    topo = topology.discover(KFS)
    assert [n.id for n in topo.fast_nodes] == [0]
    assert [n.id for n in topo.slow_nodes] == [1]
    assert topo.node(1).cpus == () and topo.node(0).cpus
    assert topo.node(0).kernel_tier < topo.node(1).kernel_tier
    assert topo.source == 'kernel memory tiers'
    assert 900 < topo.node(1).total_mb <= 1024


def sample_sum(tracker, g, layout, rounds):
    total = np.zeros(len(layout), dtype=np.int64)
    for _ in range(rounds):
        total += tracker.sample(g, layout)
    return total


def assert_hot_hotter(total, hot_chunks):
    hot = total[:hot_chunks]
    cold = total[hot_chunks:]
    assert hot.mean() > 4 * max(cold.mean(), 0.5), (hot, cold)
    assert np.median(hot) > np.percentile(cold, 90), (hot, cold)


def test_damon_sees_the_hot_region_hotter_than_the_cold(tmp_path):
    with workloads.Workload('--size-mb', 64, '--hot-mb', 16) as w:
        g = as_guest(w)
        layout = guest.ChunkLayout(g.ranges, CHUNK)
        t = damon.DamonTracker(KFS, state_dir=str(tmp_path))
        try:
            t.update({'w': (g, layout)})
            assert KFS.read_int(damon.KDAMONDS + '/nr_kdamonds') == 1
            # DAMON adapts its regions over a few aggregation intervals;
            # each sample waits for one.  Bounded number of samples.
            for _ in range(60):
                total = sample_sum(t, g, layout, 10)
                hot, cold = total[:8], total[8:]
                if hot.mean() > 4 * max(cold.mean(), 0.5):
                    break
            assert_hot_hotter(total, 8)
        finally:
            t.close()
        assert KFS.read_int(damon.KDAMONDS + '/nr_kdamonds') == 0
        assert not os.path.exists(tmp_path / damon.STATE_FILE)


def test_damon_reads_wait_for_an_aggregation_and_run_one_at_a_time(
        tmp_path):
    """What the agent's timing rests on (and its warning about slow
    measuring says): a read of a guest's regions waits for the kdamond
    to end an aggregation (not a copy of cached counts), and the kernel
    takes one read at a time across all kdamonds -- a second one
    meanwhile is refused with EBUSY, so reads of several guests add up.

    One read may take a little less than an aggregation interval (CI:
    0.28 s at 300 ms, the wait ends at the kdamond's next boundary), so
    the bound is on the three reads together."""
    aggr_us = 300000
    with workloads.Workload('--size-mb', 16, '--hot-mb', 4) as a, \
            workloads.Workload('--size-mb', 16, '--hot-mb', 4) as b:
        ga, gb = as_guest(a, 'a'), as_guest(b, 'b')
        t = damon.DamonTracker(KFS, state_dir=str(tmp_path),
                               aggr_us=aggr_us)
        try:
            t.update({'a': (ga, None), 'b': (gb, None)})
            started = time.monotonic()
            for g in (ga, gb, ga):
                assert len(t.regions(g)) >= 1
            assert time.monotonic() - started >= aggr_us / 1e6, \
                'three reads returned within one aggregation interval'

            def both_at_once():
                results = {}
                barrier = threading.Barrier(2, timeout=30)

                def read(g):
                    barrier.wait()
                    start = time.monotonic()
                    try:
                        t.regions(g)
                        outcome = 'ok'
                    except kernfs.KernelFSError as exc:
                        outcome = exc.errno
                    results[g.key] = (outcome, start, time.monotonic())

                threads = [threading.Thread(target=read, args=(g,))
                           for g in (ga, gb)]
                for th in threads:
                    th.start()
                for th in threads:
                    th.join(timeout=30)
                assert not any(th.is_alive() for th in threads)
                return results['a'], results['b']

            # Released together, the two requests overlap unless a thread
            # was held up: a read's request stays pending in the kernel
            # (refusing others) while it waits for the kdamond (about
            # 0.3 s here), then the regions' files are read without it, so
            # only reads started within a small part of that wait surely
            # overlap in the kernel; a few tries.
            for _ in range(5):
                (oa, sa, ea), (ob, sb, eb) = both_at_once()
                if abs(sa - sb) < aggr_us / 1e6 / 6:
                    break
            else:
                pytest.fail('the two reads never started together')
            assert sorted(map(str, (oa, ob))) == \
                sorted(['ok', str(errno.EBUSY)]), (oa, ob)
        finally:
            t.close()


def wait_for_aggregations(t, key, count, timeout=60):
    """Until DAMON's trace has delivered ``count`` aggregations of the
    guest ``key`` since its last sample (bounded)."""
    pid = t._kdamonds[key]
    deadline = time.monotonic() + timeout
    while t._trace.pending(pid) < count:
        assert time.monotonic() < deadline, \
            'DAMON reported fewer than %d aggregations in %d s' % (
                count, timeout)
        select.select([], [], [], 0.05)


def test_damon_trace_sees_the_whole_interval_tried_regions_only_its_end(
        tmp_path):
    """With source='trace' a sample covers every aggregation since the
    last one: a hot spell that has ended before the read still shows,
    where the tried regions (the last aggregation) show it cold.  The
    tracing instance is the tracker's own and is gone after close."""
    tracefs = damontrace.find_tracefs(KFS)
    top_enable = KFS.read_text(tracefs + '/' + damontrace.EVENT + '/enable')
    with workloads.Workload('--size-mb', 96, '--hot-mb', 16) as w:
        g = as_guest(w)
        layout = guest.ChunkLayout(g.ranges, CHUNK)
        # The spells below are counted in aggregations of 100 ms.
        t = damon.DamonTracker(KFS, state_dir=str(tmp_path),
                               source='trace', aggr_us=100000)
        assert t.damon_source == 'trace'
        instance = t._trace.dir
        assert os.path.isdir(instance)
        try:
            t.update({'w': (g, layout)})
            # DAMON splits its regions over a few aggregations; until the
            # first 16 MiB read hot over a whole sample (bounded).
            for _ in range(60):
                wait_for_aggregations(t, 'w', 5)
                first = t.sample(g, layout)
                if first[:8].min() > 2 * max(first[8:].max(), 1):
                    break
            else:
                pytest.fail('DAMON never told the hot 16 MiB apart: %s'
                            % first)
            # A spell at 32-48 MiB, then back to 0-16 MiB for long
            # enough that the last aggregations see only that.
            assert w.command('hot 32') == 'ok'
            wait_for_aggregations(t, 'w', 10)
            assert w.command('hot 0') == 'ok'
            # The previous spell's regions keep their counts for up to
            # an aggregation; then a few more without them.
            wait_for_aggregations(t, 'w', 16)
            last = damon.regions_to_chunks(t.regions(g), layout,
                                           t.max_accesses)
            whole = t.sample(g, layout)
            spell = slice(16, 24)
            assert last[spell].max() == 0, last
            # Against the last 24 MiB, never hot.  (DAMON's regions
            # straddle the edges of what is hot: chunks beside them, and
            # up to a few MiB further, read a little.)
            never = max(whole[36:].mean(), 1)
            assert whole[spell].mean() > 2 * never, whole
            assert whole[:8].mean() > 2 * never, whole
        finally:
            t.close()
        assert not os.path.exists(instance)
        assert KFS.read_text(
            tracefs + '/' + damontrace.EVENT + '/enable') == top_enable


def test_damon_trace_falls_back_without_tracefs_and_silence_is_no_sample(
        tmp_path, monkeypatch, caplog):
    """Without tracefs the tracker reads tried regions (and says so); with
    it, a trace that brings nothing fails the sample instead of reporting
    every chunk cold."""
    with workloads.Workload('--size-mb', 16, '--hot-mb', 4) as w:
        g = as_guest(w)
        layout = guest.ChunkLayout(g.ranges, CHUNK)
        with monkeypatch.context() as m:
            m.setattr(damontrace, 'TRACEFS', ('sys/kernel/no-tracing',))
            t = damon.DamonTracker(KFS, state_dir=str(tmp_path),
                                   source='trace')
        aggr = damon.KDAMONDS + '/0/contexts/0/monitoring_attrs/' \
            'intervals/aggr_us'
        try:
            assert t.damon_source == 'tried_regions'
            assert 'reading each kdamond\'s tried regions instead' in \
                caplog.text
            t.update({'w': (g, layout)})
            assert t.sample(g, layout).shape == (len(layout),)
            # ... with the tried regions' aggregation interval.
            assert KFS.read_int(aggr) == 100000
        finally:
            t.close()
        t = damon.DamonTracker(KFS, state_dir=str(tmp_path),
                               source='trace', interval_s=2.0)
        try:
            t.update({'w': (g, layout)})
            # The trace's: 1 s, capped at a fifth of the interval.
            assert KFS.read_int(aggr) == 400000
            wait_for_aggregations(t, 'w', 1)
            t.sample(g, layout)
            # The events stop (as if someone switched them off).
            with open(os.path.join(t._trace.dir, damontrace.EVENT,
                                   'enable'), 'w') as f:
                f.write('0\n')
            t._trace.take(t._kdamonds['w'])     # what came before
            with pytest.raises(damon.TraceSilent,
                               match='no whole aggregation'):
                t.sample(g, layout)
        finally:
            t.close()


def test_damon_leaves_a_kdamond_it_did_not_create_and_auto_falls_back(
        tmp_path):
    admin = kernfs.KernelFS(allow_damon_writes=True)
    # someone else's kdamond, configured but idle
    admin.write_text(damon.KDAMONDS + '/nr_kdamonds', 1)
    admin.write_text(damon.KDAMONDS + '/0/contexts/nr_contexts', 1)
    admin.write_text(damon.KDAMONDS + '/0/contexts/0/operations', 'paddr')
    try:
        with pytest.raises(trackers.TrackerUnavailable,
                           match='did not create'):
            damon.DamonTracker(KFS, state_dir=str(tmp_path))
        t = trackers.create('auto', KFS,
                            damon={'state_dir': str(tmp_path)})
        assert t.name == 'soft_dirty'
        assert KFS.read_int(damon.KDAMONDS + '/nr_kdamonds') == 1
        assert KFS.read_text(
            damon.KDAMONDS + '/0/contexts/0/operations') == 'paddr'
    finally:
        admin.write_text(damon.KDAMONDS + '/nr_kdamonds', 0)


def test_soft_dirty_sees_the_written_region(tmp_path):
    with workloads.Workload('--size-mb', 32, '--hot-mb', 8,
                            '--write') as w:
        g = as_guest(w)
        layout = guest.ChunkLayout(g.ranges, CHUNK)
        t = softdirty.SoftDirtyTracker(KFS)
        t.update({'w': (g, layout)})
        # the workload keeps writing its hot region: the next samples
        # see it, and nothing else (the cold pages are never written)
        deadline = time.monotonic() + 60
        while True:
            total = sample_sum(t, g, layout, 3)
            if total[:4].min() > 0 or time.monotonic() > deadline:
                break
        assert total[:4].min() > 0
        assert total[4:].max() == 0


def test_idle_page_tracking_is_missing_and_said_so():
    """No Debian kernel enables CONFIG_IDLE_PAGE_TRACKING; the tracker is
    tested on a stand-in tree in tests/unit/test_trackers.py."""
    with pytest.raises(trackers.TrackerUnavailable,
                       match='CONFIG_IDLE_PAGE_TRACKING'):
        idlepage.IdlePageTracker(KFS)


def test_pages_go_to_node1_and_back_with_contents_intact():
    with workloads.Workload('--size-mb', 64, '--hot-mb', 4) as w:
        pages = all_pages(w)
        assert (nodes_of(w) == 0).all()
        m = mover.Mover(mover.RateLimiter(1 << 40))
        res = m.move(w.pid, pages, 1)
        assert res.placed == len(pages) and res.failed == 0
        assert (nodes_of(w) == 1).all()
        assert w.checksum_ok()
        res = m.move(w.pid, pages, 0)
        assert res.placed == len(pages) and res.failed == 0
        assert (nodes_of(w) == 0).all()
        assert w.checksum_ok()


def test_the_rate_cap_holds_within_ten_percent():
    # A mostly idle workload, so that the mover has the vCPU to itself.
    with workloads.Workload('--size-mb', 32, '--hot-mb', 1,
                            '--pause-ms', 200) as w:
        pages = all_pages(w)
        # What this (emulated, shared) machine can do right now, uncapped
        raw = mover.Mover(mover.RateLimiter(1 << 40)).move(w.pid, pages, 1)
        raw_rate = raw.bytes_placed / raw.seconds
        # a cap well below that, for about four seconds of moving
        cap = min(raw_rate / 8, 8 * MiB)
        res = mover.Mover(mover.RateLimiter(cap)).move(w.pid, pages, 0)
        assert res.placed == len(pages) and (nodes_of(w) == 0).all()
        rate = res.bytes_placed / res.seconds
        assert abs(rate / cap - 1) <= 0.10, (rate / MiB, cap / MiB,
                                             raw_rate / MiB)


def test_a_process_exiting_mid_move_stops_the_move_cleanly():
    with workloads.Workload('--size-mb', 64, '--hot-mb', 4) as w:
        g = as_guest(w)
        pages = all_pages(w)
        m = mover.Mover(mover.RateLimiter(16 * MiB))
        outcome = {}

        def move():
            try:
                outcome['result'] = m.move(
                    w.pid, pages, 1,
                    verify=lambda: guest.verify(KFS, g))
            except Exception as exc:
                outcome['error'] = exc
        th = threading.Thread(target=move)
        th.start()
        deadline = time.monotonic() + 60
        while not (nodes_of(w) == 1).any():
            assert time.monotonic() < deadline, 'no page moved in 60 s'
        w.kill()
        th.join(60)
        assert not th.is_alive()
        err = outcome.get('error')
        assert isinstance(err, (guest.GuestGone, ProcessLookupError)), \
            outcome


def test_a_recycled_identity_moves_nothing():
    with workloads.Workload('--size-mb', 16, '--hot-mb', 4) as w:
        g = as_guest(w)
        stale = guest.Guest(g.key, guest.Identity(
            w.pid, g.identity.start_time + 1), g.ranges, g.policy, g.source)
        with pytest.raises(guest.GuestGone, match='recycled'):
            mover.Mover(mover.RateLimiter(1 << 40)).move(
                w.pid, all_pages(w), 1,
                verify=lambda: guest.verify(KFS, stale))
        assert (nodes_of(w) == 0).all()


def test_a_node_the_cpuset_forbids_is_a_clear_error(tmp_path):
    cg = '/sys/fs/cgroup'
    if not os.path.exists(cg + '/cgroup.controllers'):
        assert os.system('mount -t cgroup2 none %s' % cg) == 0
    with open(cg + '/cgroup.subtree_control', 'w') as f:
        f.write('+cpuset')
    child = cg + '/loki-test'
    os.makedirs(child, exist_ok=True)
    with workloads.Workload('--size-mb', 16, '--hot-mb', 4) as w:
        try:
            with open(child + '/cpuset.mems', 'w') as f:
                f.write('0')
            with open(child + '/cgroup.procs', 'w') as f:
                f.write(str(w.pid))
            with pytest.raises(mover.NodeNotAllowed,
                               match='not allowed by the cpuset'):
                mover.Mover(mover.RateLimiter(1 << 40)).move(
                    w.pid, all_pages(w), 1)
            assert (nodes_of(w) == 0).all()
        finally:
            with open(cg + '/cgroup.procs', 'w') as f:
                f.write(str(w.pid))
    os.rmdir(child)
