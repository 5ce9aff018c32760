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

"""Guest identity, chunk layout, the process watcher and the mover, on
this machine's kernel (one NUMA node: moves are to node 0, where the pages
already are; real cross-node moves are in tests/sandbox)."""

import dataclasses
import errno
import json
import logging
import mmap
import os
import subprocess
import sys

import numpy as np
import pytest

from loki_nova.memtier import guest
from loki_nova.memtier import kernfs
from loki_nova.memtier import mover
from loki_nova.memtier.watcher import process
from tests import workloads

MiB = 1024 * 1024
KFS = kernfs.KernelFS()


def own_guest(ranges=((0x1000, 0x3000),), uuid=None):
    return guest.Guest(
        'me', guest.identify(KFS, os.getpid(), uuid),
        tuple(guest.RamRange(*r) for r in ranges),
        guest.Policy('static', 1), 'process')


@pytest.fixture
def exited_pid():
    p = subprocess.Popen([sys.executable, '-c', 'pass'])
    p.wait()
    return p.pid


# -- identity ---------------------------------------------------------------

def test_verify_accepts_the_same_process():
    guest.verify(KFS, own_guest())


def test_verify_refuses_a_recycled_pid():
    g = own_guest()
    stale = dataclasses.replace(g.identity,
                                start_time=g.identity.start_time - 1)
    with pytest.raises(guest.GuestGone, match='was recycled'):
        guest.verify(KFS, dataclasses.replace(g, identity=stale))


def test_verify_refuses_an_exited_process(exited_pid):
    g = own_guest()
    gone = guest.Identity(exited_pid, g.identity.start_time)
    with pytest.raises(guest.GuestGone, match='exited'):
        guest.verify(KFS, dataclasses.replace(g, identity=gone))


def test_verify_checks_the_domain_uuid_on_the_command_line():
    uuid = 'c0ffee00-0000-4000-8000-000000000001'
    p = subprocess.Popen([sys.executable, '-c',
                          'import sys; print("up", flush=True); '
                          'sys.stdin.read()', '-uuid', uuid],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert p.stdout.readline() == b'up\n'
        ident = guest.identify(KFS, p.pid, uuid)
        g = dataclasses.replace(own_guest(), identity=ident)
        guest.verify(KFS, g)
        other = dataclasses.replace(
            ident, uuid='c0ffee00-0000-4000-8000-000000000002')
        with pytest.raises(guest.GuestGone, match='is not domain'):
            guest.verify(KFS, dataclasses.replace(g, identity=other))
    finally:
        p.stdin.close()
        p.wait(30)


@pytest.mark.parametrize('args,said', [
    (('dynamic', 1), 'policy must be one of static, on_demand'),
    (('static', -1), 'floor_mb must be an integer >= 0'),
    (('static', 1, 5), 'a static policy has no ceiling'),
    (('on_demand', 4), 'needs ceiling_mb'),
    (('on_demand', 4, 2), 'ceiling_mb must be an integer >= floor_mb'),
])
def test_bad_policies_are_refused(args, said):
    with pytest.raises(ValueError, match=said):
        guest.Policy(*args)


@pytest.mark.parametrize('start,end', [(0x1001, 0x3000), (0x3000, 0x3000),
                                       (0x3000, 0x1000)])
def test_ram_ranges_must_be_page_aligned_and_non_empty(start, end):
    with pytest.raises(ValueError, match='page aligned'):
        guest.RamRange(start, end)


def test_chunk_layout_cuts_each_range_and_finds_pages():
    ranges = (guest.RamRange(0x200000, 0x600000),
              guest.RamRange(0x1000000, 0x1003000))
    layout = guest.ChunkLayout(ranges, 2 * MiB)
    assert len(layout) == 3
    assert layout.sizes.tolist() == [2 * MiB, 2 * MiB, 0x3000]
    pages = layout.pages([2, 0])
    assert pages[:3].tolist() == [0x1000000, 0x1001000, 0x1002000]
    assert len(pages) == 3 + 512 and pages[3] == 0x200000
    addrs, owner = layout.probes(4)
    assert owner.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2]
    assert addrs[1] == 0x200000 + 128 * 4096
    # Shifted probes move along and wrap within their chunk: one probe per
    # chunk visits every page of a 512-page chunk over 512 odd shifts.
    shifted, owner = layout.probes(4, shift=130)
    assert shifted[:4].tolist() == [0x200000 + p * 4096
                                    for p in (130, 258, 386, 2)]
    assert shifted[8:].tolist() == [0x1001000, 0x1002000, 0x1000000]
    seen = {int(layout.probes(1, [0], shift=37 * n)[0][0])
            for n in range(512)}
    assert len(seen) == 512
    assert layout.chunk_of([0x1ff000, 0x200000, 0x5ff000, 0x1002fff,
                            0x1003000]).tolist() == [-1, 0, 1, 2, -1]


# -- process watcher --------------------------------------------------------

def test_process_watcher_finds_a_registered_workload(tmp_path):
    with workloads.Workload('--size-mb', 8, '--hot-mb', 2,
                            '--register-dir', tmp_path, '--name', 'w1',
                            '--policy', 'on_demand', '--floor-mb', 2,
                            '--ceiling-mb', 6) as w:
        found = process.ProcessWatcher(str(tmp_path)).scan()
        g = found['w1']
        assert g.identity.pid == w.pid and g.source == 'process'
        assert g.ranges == (guest.RamRange(w.start, w.end),)
        assert g.policy == guest.Policy('on_demand', 2, 6)
    # the workload unregisters itself on exit
    assert process.ProcessWatcher(str(tmp_path)).scan() == {}


def test_process_watcher_ignores_stale_and_broken_registrations(
        tmp_path, exited_pid, caplog):
    good = process.register(str(tmp_path), 'good', os.getpid(),
                            [(r.start, r.end) for r in _mapped_ranges()],
                            guest.Policy('static', 1))
    doc = json.load(open(good))
    for name, change in [('recycled', {'start_time': 1}),
                         ('exited', {'pid': exited_pid}),
                         ('badpolicy', {'policy': 'sometimes'}),
                         ('unmapped', {'ranges': [[4096, 8192]]})]:
        bad = dict(doc, name=name, **change)
        (tmp_path / (name + '.json')).write_text(json.dumps(bad))
    (tmp_path / 'garbage.json').write_text('{not json')
    caplog.set_level(logging.WARNING)
    w = process.ProcessWatcher(str(tmp_path))
    assert list(w.scan()) == ['good']
    text = caplog.text
    for said in ('recycled.json', 'was recycled', 'exited.json',
                 'policy must be one of', 'not mapped in process',
                 'garbage.json'):
        assert said in text
    # Logged once per problem, not every scan.
    caplog.clear()
    w.scan()
    assert caplog.text == ''


def _mapped_ranges():
    buf = mmap.mmap(-1, 4 * 4096)
    _KEEP.append(buf)
    addr = np.frombuffer(buf, dtype=np.uint8).ctypes.data
    return [guest.RamRange(addr, addr + 4 * 4096)]


_KEEP = []


def test_register_refuses_bad_input(tmp_path, exited_pid):
    pol = guest.Policy('static', 1)
    with pytest.raises(process.RegistrationError, match='guest name'):
        process.register(str(tmp_path), '../evil', os.getpid(),
                         [(0x1000, 0x2000)], pol)
    with pytest.raises(process.RegistrationError, match='not mapped'):
        process.register(str(tmp_path), 'x', os.getpid(),
                         [(0x1000, 0x2000)], pol)
    with pytest.raises(ProcessLookupError):
        process.register(str(tmp_path), 'x', exited_pid,
                         [(0x1000, 0x2000)], pol)
    assert os.listdir(tmp_path) == []


# -- mover --------------------------------------------------------------

@pytest.fixture
def pages():
    """16 pages of our own: the first 8 touched, the rest never."""
    buf = mmap.mmap(-1, 16 * 4096)
    arr = np.frombuffer(buf, dtype=np.uint8)
    arr[:8 * 4096] = 1
    base = arr.ctypes.data
    yield np.arange(16, dtype=np.uint64) * np.uint64(4096) + np.uint64(base)
    del arr


def test_query_says_where_pages_are_and_which_are_absent(pages):
    status = mover.move_pages(os.getpid(), pages)
    assert status[:8].tolist() == [0] * 8
    assert status[8:].tolist() == [-errno.ENOENT] * 8


def test_move_places_present_pages_and_skips_absent_ones(pages):
    m = mover.Mover(mover.RateLimiter(1 << 30))
    res = m.move(os.getpid(), pages, 0)
    assert (res.requested, res.placed, res.absent, res.failed) == \
        (16, 8, 8, 0)


def test_a_node_that_does_not_exist_is_a_clear_error(pages):
    with pytest.raises(mover.NoSuchNode, match='node 7 does not exist'):
        mover.Mover(mover.RateLimiter(1 << 30)).move(os.getpid(), pages, 7)


def test_an_exited_process_is_reported(pages, exited_pid):
    with pytest.raises(ProcessLookupError):
        mover.move_pages(exited_pid, pages, 0)


def test_failed_identity_check_moves_nothing(pages, monkeypatch):
    calls = []
    monkeypatch.setattr(mover, 'move_pages',
                        lambda *a, **k: calls.append(a))

    def gone():
        raise guest.GuestGone('me', 'pid recycled')
    with pytest.raises(guest.GuestGone):
        mover.Mover(mover.RateLimiter(1 << 30)).move(
            os.getpid(), pages, 0, verify=gone)
    assert calls == []


def test_non_final_status_is_requeried_and_retried(monkeypatch):
    """The kernel can answer -EBUSY for a page it did move (seen in the
    sandbox for 194 of 100k pages) and -EAGAIN for one it will move on a
    retry; this scripted move_pages stands in for that rare behaviour."""
    target = 1
    where = {a: 0 for a in range(10)}
    busy_but_moved = {1, 2}
    eagain_once = {3}
    shared = {4}
    absent = {5}
    calls = []

    def fake(pid, pages, node=None, status=None):
        calls.append((None if node is None else node, list(pages)))
        out = []
        for a in (int(p) for p in pages):
            if a in absent:
                out.append(-errno.ENOENT)
            elif a in shared:
                out.append(-errno.EACCES)
            elif node is None:
                out.append(where[a])
            elif a in busy_but_moved:
                where[a] = node
                busy_but_moved.discard(a)
                out.append(-errno.EBUSY)
            elif a in eagain_once:
                eagain_once.discard(a)
                out.append(-errno.EAGAIN)
            else:
                where[a] = node
                out.append(node)
        return np.array(out, dtype=np.int32)
    monkeypatch.setattr(mover, 'move_pages', fake)
    res = mover.Mover(mover.RateLimiter(1 << 30)).move(
        1, np.arange(10, dtype=np.uint64), target)
    assert (res.placed, res.absent, res.shared, res.failed) == (8, 1, 1, 0)
    # one move, one re-query of the three non-final pages, one retry of
    # the page that was not moved
    assert calls[1] == (None, [1, 2, 3]) and calls[2] == (target, [3])
    assert len(calls) == 3 and res.retries == 1


class _Clock:
    """Virtual time for the rate limiter: waiting advances it."""

    def __init__(self):
        self.now = 100.0
        self.waits = []

    def __call__(self):
        return self.now

    def wait(self, seconds):
        self.waits.append(seconds)
        self.now += seconds
        return False

    def is_set(self):
        return False


def test_rate_limiter_paces_bytes_to_the_cap():
    clock = _Clock()
    lim = mover.RateLimiter(100 * MiB, clock=clock, stop=clock)
    for _ in range(50):
        assert lim.acquire(4 * MiB)
    # 200 MiB at 100 MiB/s: the last batch starts at 1.96 s
    assert clock.now - 100.0 == pytest.approx(1.96)


def test_rate_limiter_catches_up_after_slow_batches_not_after_idling():
    clock = _Clock()
    lim = mover.RateLimiter(100 * MiB, catch_up_s=0.25, clock=clock,
                            stop=clock)
    lim.acquire(10 * MiB)          # slot 0.0-0.1
    clock.now += 0.15              # the batch itself took 0.15 s
    lim.acquire(10 * MiB)          # behind by 0.05: goes at once
    assert clock.waits == []
    lim.acquire(10 * MiB)          # scheduled at 0.2, now 0.15: waits
    assert clock.waits == [pytest.approx(0.05)]
    clock.now += 10                # idle between intervals
    lim.acquire(10 * MiB)          # no burst: schedule restarts now
    start = clock.now
    lim.acquire(10 * MiB)
    assert clock.now - start == pytest.approx(0.1)


def test_rate_limiter_calls_meanwhile_through_a_long_wait():
    clock = _Clock()
    calls = []
    lim = mover.RateLimiter(10 * MiB, clock=clock, stop=clock,
                            meanwhile=lambda: calls.append(clock.now),
                            meanwhile_every_s=0.5)
    assert lim.acquire(20 * MiB)       # the first goes at once
    assert calls == []
    assert lim.acquire(20 * MiB)       # waits 2 s for its slot
    assert clock.now - 100.0 == pytest.approx(2.0)
    assert [c - 100.0 for c in calls] == pytest.approx([0.5, 1.0, 1.5, 2.0])
    assert max(clock.waits) <= 0.5
    with pytest.raises(ValueError, match='meanwhile_every_s'):
        mover.RateLimiter(1, meanwhile=calls.append)


def test_rate_limiter_calls_meanwhile_every_so_often_over_many_sends():
    """Over a move of many batches, every ``meanwhile_every_s``: not after
    each wait, and also when the sends never wait (each batch takes
    longer than its slot)."""
    clock = _Clock()
    calls = []
    lim = mover.RateLimiter(10 * MiB, clock=clock, stop=clock,
                            meanwhile=lambda: calls.append(clock.now),
                            meanwhile_every_s=0.5)
    for _ in range(100):
        assert lim.acquire(1 * MiB)     # 0.1 s slots: 9.9 s of waits
    assert clock.now - 100.0 == pytest.approx(9.9)
    assert len(calls) == 19
    assert all(b - a == pytest.approx(0.5) for a, b in zip(calls, calls[1:]))
    slow = _Clock()
    calls = []
    lim = mover.RateLimiter(1 << 40, clock=slow, stop=slow,
                            meanwhile=lambda: calls.append(slow.now),
                            meanwhile_every_s=0.5)
    for _ in range(100):
        assert lim.acquire(1 * MiB)
        slow.now += 0.1                 # the batch itself
    assert slow.waits == []
    # Checked before each batch: at most one batch (0.1 s) late.
    assert len(calls) == 16
    assert all(0.5 - 1e-9 <= b - a <= 0.6 + 1e-9
               for a, b in zip(calls, calls[1:]))


def test_rate_limiter_meanwhile_stops_with_the_wait():
    class Stopping(_Clock):
        def wait(self, seconds):
            super().wait(seconds)
            return len(self.waits) >= 2

    clock = Stopping()
    calls = []
    lim = mover.RateLimiter(1 * MiB, clock=clock, stop=clock,
                            meanwhile=lambda: calls.append(clock.now),
                            meanwhile_every_s=0.25)
    lim.acquire(1 * MiB)
    assert lim.acquire(1 * MiB) is False
    assert len(calls) == 1 and len(clock.waits) == 2


def test_rate_limiter_zero_sends_nothing_and_stop_interrupts():
    assert mover.RateLimiter(0).acquire(4096) is False
    lim = mover.RateLimiter(1)
    lim.stop.set()
    assert lim.acquire(1 << 20) is False
    with pytest.raises(ValueError, match='bytes_per_s'):
        mover.RateLimiter(-1)


def test_query_only_mover_changes_nothing(pages, monkeypatch):
    seen = []
    real = mover.move_pages

    def spy(pid, p, node=None, status=None):
        seen.append(node)
        return real(pid, p, node, status)
    monkeypatch.setattr(mover, 'move_pages', spy)
    res = mover.Mover(mover.RateLimiter(1 << 30), query_only=True).move(
        os.getpid(), pages, 0)
    assert seen == [None] and res.placed == 8 and res.absent == 8


def test_unwritten_status_slots_are_requeried_and_retries_reverify(
        monkeypatch):
    """move_pages can stop early and return how many pages it did not
    migrate, leaving their status slots unwritten (UNKNOWN here); those
    pages must be re-queried, and every retry re-checks identity."""
    where = {a: 0 for a in range(4)}
    first = [True]
    events = []

    def fake(pid, pages, node=None, status=None):
        events.append('move' if node is not None else 'query')
        out = []
        for a in (int(p) for p in pages):
            if node is None:
                out.append(where[a])
            elif first[0] and a >= 2:
                out.append(mover.UNKNOWN)      # not attempted
            else:
                where[a] = node
                out.append(node)
        if node is not None:
            first[0] = False
        return np.array(out, dtype=np.int32)
    monkeypatch.setattr(mover, 'move_pages', fake)
    res = mover.Mover(mover.RateLimiter(1 << 30)).move(
        1, np.arange(4, dtype=np.uint64), 1,
        verify=lambda: events.append('check'))
    assert (res.placed, res.failed, res.retries) == (4, 0, 1)
    assert where == {0: 1, 1: 1, 2: 1, 3: 1}
    # every call, the re-query and the retry too, is checked before and
    # after: the pid still named the guest's process all through it
    assert events == ['check', 'move', 'check', 'check', 'query', 'check',
                      'check', 'move', 'check']


def test_the_kernel_status_buffer_starts_unknown(pages):
    status = np.zeros(len(pages), dtype=np.int32)
    out = mover.move_pages(os.getpid(), pages[:0], None, status[:0])
    assert len(out) == 0
    out = mover.move_pages(os.getpid(), pages, None, status)
    assert out is status and mover.UNKNOWN not in out.tolist()


def test_layout_takes_ranges_in_address_order_and_refuses_overlaps():
    hi = guest.RamRange(0x800000, 0xa00000)
    lo = guest.RamRange(0x200000, 0x400000)
    layout = guest.ChunkLayout((hi, lo), 2 * MiB)
    assert layout.starts.tolist() == [0x200000, 0x800000]
    assert layout.chunk_of([0x800000, 0x200000]).tolist() == [1, 0]
    with pytest.raises(ValueError, match='overlap'):
        guest.ChunkLayout((lo, guest.RamRange(0x300000, 0x500000)), 2 * MiB)
    with pytest.raises(IndexError, match='out of range'):
        layout.pages([-1])
    empty = guest.ChunkLayout((), 2 * MiB)
    assert empty.chunk_of([0x1000]).tolist() == [-1]


def test_registrations_others_could_write_are_refused(tmp_path, caplog):
    reg = tmp_path / 'guests'
    with workloads.Workload('--size-mb', 4, '--hot-mb', 1,
                            '--register-dir', reg, '--name', 'w') as w:
        assert w.pid and list(process.ProcessWatcher(str(reg)).scan()) \
            == ['w']
        (reg / 'w.json').chmod(0o666)
        assert process.ProcessWatcher(str(reg)).scan() == {}
        assert 'not be writable by group or others' in caplog.text
        (reg / 'w.json').chmod(0o644)
        reg.chmod(0o777)
        caplog.clear()
        assert process.ProcessWatcher(str(reg)).scan() == {}
        assert 'ignoring every registration' in caplog.text
        reg.chmod(0o755)
        (reg / 'link.json').symlink_to(reg / 'w.json')
        caplog.clear()
        assert list(process.ProcessWatcher(str(reg)).scan()) == ['w']
        assert 'link.json' in caplog.text      # not followed
