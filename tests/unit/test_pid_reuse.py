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

"""A guest's pid given to another process.

A real workload process exits and is reaped, and the kernel is steered
(``/proc/sys/kernel/ns_last_pid``, as CRIU restores pids) to give its pid
to the next process this test starts.  Whatever the agent held of the
first process -- its /proc/PID directory, its identity -- must then reach
nothing, and no move_pages call may name the pid again."""

import logging
import os
import subprocess

import pytest

from loki_nova.memtier import agent as agent_mod
from loki_nova.memtier import guest
from loki_nova.memtier import kernfs
from loki_nova.memtier import mover
from loki_nova.memtier.trackers import pagemap
from loki_nova.memtier.trackers import replay
from loki_nova.memtier.trackers import softdirty
from loki_nova.memtier.watcher import process
from tests.unit.test_agent import FIXTURES
from tests.unit.test_agent import hot_first
from tests.unit.test_agent import make_conf
from tests import workloads

NS_LAST_PID = '/proc/sys/kernel/ns_last_pid'
KFS = kernfs.KernelFS()


def take_pid(pid, tries=20):
    """A process of this test (``sleep``) holding ``pid``, which must be
    free: the kernel hands out ns_last_pid + 1 next, unless another
    process forks in between, so it is tried a few times."""
    for _ in range(tries):
        try:
            with open(NS_LAST_PID, 'w') as f:
                f.write(str(pid - 1))
        except OSError as exc:
            pytest.skip('cannot steer the next pid (%s): %s'
                        % (NS_LAST_PID, exc))
        p = subprocess.Popen(['sleep', '300'])
        if p.pid == pid:
            return p
        p.kill()
        p.wait()
    pytest.skip('another process took pid %d each time' % pid)


@pytest.fixture
def successors():
    """Calls ``take_pid``; every process it started is ended after."""
    started = []

    def take(pid):
        started.append(take_pid(pid))
        return started[-1]
    yield take
    for p in started:
        p.kill()
        p.wait()


def attached_workload_guest(w, key='a1'):
    g = guest.Guest(key, guest.identify(KFS, w.pid),
                    (guest.RamRange(w.start, w.end),),
                    guest.Policy('static', 1), 'process')
    return guest.attach(KFS, g)


def test_the_held_proc_dir_never_reaches_the_next_holder_of_the_pid(
        successors):
    with workloads.Workload('--size-mb', 4, '--hot-mb', 1) as w:
        g = attached_workload_guest(w)
        proc = g.proc
        assert proc.stat()[1] == g.identity.start_time
        assert pagemap.read(proc, w.start, 1)[0] & pagemap.PRESENT
        w.kill()     # exits and is reaped
    b = successors(w.pid)
    # the pid names the new process now, as /proc/PID says
    assert KFS.process_start_time(w.pid) != g.identity.start_time
    # and nothing held of the old one reaches it
    for use in (proc.stat, proc.cmdline, proc.maps,
                lambda: pagemap.read(proc, w.start, 1),
                lambda: proc.write_text('clear_refs', '4')):
        with pytest.raises(ProcessLookupError):
            use()
    with pytest.raises(guest.GuestGone, match='process %d exited' % w.pid):
        guest.verify(KFS, g)
    assert b.poll() is None
    guest.release(g)


def test_the_soft_dirty_tracker_leaves_the_next_holder_alone(
        successors, monkeypatch):
    # This kernel keeps no soft-dirty bits, so the start-up probe would
    # refuse the tracker; what it does with a guest's files is the same.
    monkeypatch.setattr(softdirty, '_probe', lambda kfs: None)
    tracker = softdirty.SoftDirtyTracker(KFS)
    with workloads.Workload('--size-mb', 4, '--hot-mb', 1) as w:
        g = attached_workload_guest(w)
        layout = guest.ChunkLayout(g.ranges, 2 << 20)
        tracker.update({'a1': (g, layout)})
        assert len(tracker.sample(g, layout)) == len(layout)
        w.kill()
    successors(w.pid)
    # before, this read the new process's pagemap and wrote its
    # clear_refs
    with pytest.raises(guest.GuestGone, match='exited'):
        tracker.sample(g, layout)
    guest.release(g)


def test_a_guest_whose_process_exits_during_move_pages_is_dropped_at_once(
        tmp_path, successors, monkeypatch, caplog):
    """The process exits while move_pages runs on it (the interval's one
    move call) and its pid goes to another process right away: the check
    after the call drops the guest in that interval, and no call names
    the pid again."""
    from loki_nova.memtier import topology
    caplog.set_level(logging.INFO)
    reg = str(tmp_path / 'guests')
    real = mover.move_pages
    calls = []
    reused = []

    def move_pages(pid, pages, node=None, status=None):
        calls.append((pid, len(pages), bool(reused)))
        out = real(pid, pages, node, status)
        # the first call with more pages than the guest has chunks is the
        # move batch (probes ask one page per chunk)
        if armed and not reused and len(pages) > 16:
            w.kill()
            reused.append(successors(pid))
        return out

    with workloads.Workload('--size-mb', 32, '--hot-mb', 4,
                            '--register-dir', reg, '--name', 'a1',
                            '--floor-mb', 8) as w:
        topo = topology.discover(kernfs.KernelFS(
            os.path.join(FIXTURES, 'two_tier')))
        agent = agent_mod.Agent(
            make_conf(tmp_path), topology=topo,
            tracker=replay.ReplayTracker(hot_first(16)),
            # one batch: the move is the interval's last call
            mover=mover.Mover(mover.RateLimiter(1 << 30),
                              batch_pages=1 << 20, query_only=True))
        armed = False
        monkeypatch.setattr(mover, 'move_pages', move_pages)
        first = agent.run_interval()
        assert first.guests['a1'].tiered
        assert len(agent.guests['a1'].layout) == 16
        armed = True
        second = agent.run_interval()
        assert reused, 'no move batch in the second interval'
        assert 'a1' not in agent.guests and 'a1' not in second.guests
        assert 'guest a1 dropped: guest a1 is gone: process %d exited' \
            % w.pid in caplog.text
        assert [c for c in calls if c[2]] == []
        third = agent.run_interval()
        assert third.guests == {} and [c for c in calls if c[2]] == []
        agent.close()
    # the registration is stale now; the new holder of the pid ran on
    assert process.ProcessWatcher(reg, KFS).scan() == {}
    assert reused[0].poll() is None
