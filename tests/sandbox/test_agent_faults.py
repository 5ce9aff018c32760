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

"""Faults in the middle of moving pages, with the real agent
(``loki-memtier-agent``, DAMON tracker, process watcher, real mover) on
the sandbox's two-tier kernel.

* The agent is killed with SIGKILL while it demotes a workload at a low
  rate cap.  No page of the workload may be lost and its memory must
  still read back; the kdamond the dead agent left running must be
  taken back by the restarted agent (it recorded it in ``state_dir``);
  the restarted agent must pick the registration up in its first
  interval and finish the demotion to the budget.
* A guest is killed while the agent demotes its pages and another
  guest's.  The agent must drop it without a traceback and go on tiering
  the other guest to its budget.

Both end with SIGTERM: exit 0 and no kdamond left.

"Mid-move" is judged from outside, by move_pages queries of the
workload: its node1 pages grew since the last look and stand part-way
between two intervals' worth of moves (at the cap each interval demotes
a fixed number of chunks, in batches of a tenth of a second), so the
agent is inside ``Mover.move`` -- in a batch or in the pause between
two -- when the signal lands."""

import json
import re
import time

import numpy as np

from loki_nova.memtier import guest
from loki_nova.memtier import kernfs
from loki_nova.memtier import mover
from loki_nova.memtier.watcher import process
from loki_nova.memtier.trackers import damon
from tests import workloads
from tests.sandbox import INSIDE_ONLY
from tests.sandbox.agentproc import AgentProcess

pytestmark = INSIDE_ONLY

MiB = 1024 * 1024
PAGE = 4096
CHUNK_MB = 2
RATE_MB = 16        # move cap, MiB/s; the interval is 1 s
#: Intervals beyond the ideal count (MiB to move / cap) a demotion may
#: take: the first interval of a run, TCG slowness, a split chunk.
SLACK_INTERVALS = 6
#: Bound, in seconds, on waits that include a start of the agent: its
#: imports alone took 80 s in the sandbox on a busy host, and three
#: minutes at worst.
START_S = 480


def placement(w, looks=10):
    """move_pages query of every page of workload ``w``: its node, or
    -errno for a page that is not present.  A page being migrated reads
    -ENOENT for a moment, so pages with a negative status are asked
    again, up to ``looks`` times 50 ms apart; what stays negative is not
    there."""
    pages = np.arange(w.start, w.end, PAGE, dtype=np.uint64)
    status = mover.move_pages(w.pid, pages)
    for _ in range(looks):
        odd = np.flatnonzero(status < 0)
        if not len(odd):
            break
        time.sleep(0.05)
        status[odd] = mover.move_pages(w.pid, pages[odd])
    return status


def missing(status):
    return int(np.count_nonzero(status < 0))


def mib(status, node):
    return int(np.count_nonzero(status == node)) * PAGE / MiB


def kdamonds():
    kfs = kernfs.KernelFS()
    n = kfs.read_int(damon.KDAMONDS + '/nr_kdamonds')
    return [(kfs.read_text('%s/%d/state' % (damon.KDAMONDS, i)),
             kfs.read_text('%s/%d/pid' % (damon.KDAMONDS, i)),
             kfs.read_text('%s/%d/contexts/0/targets/0/pid_target'
                           % (damon.KDAMONDS, i)))
            for i in range(n)]


def note(history, agent, status, label=''):
    """Record (interval, node0 MiB, node1 MiB) when it changed."""
    entry = (label, agent.intervals(), mib(status, 0), mib(status, 1))
    if not history or history[-1][1:] != entry[1:]:
        history.append(entry)


def wait_mid_move(agent, w, base_mb, step_mb, limit_mb, history,
                  timeout=240, within_interval=True):
    """Until the agent is part-way through one interval's demotion of
    ``w``: at least one interval's worth (``step_mb``) is on node1 beyond
    ``base_mb``, the node1 pages grew since the last look, and the
    interval's moves are between an eighth and a half done (each interval
    moves ``step_mb``, or a multiple of it), so that a good part is still
    to come.  Without ``within_interval``, any look that sees the
    demotion under way (grown since the last look, at least ``step_mb``
    done, more to come) will do: on a quiet machine one interval's share
    can be moved faster than the looks come.  Bounded by ``timeout``
    seconds and by ``limit_mb`` moved."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        status = placement(w)
        note(history, agent, status, w.name)
        moved = mib(status, 1) - base_mb
        assert moved < limit_mb, ('no look caught the agent mid-move',
                                  history)
        if last is not None and moved > last and moved >= step_mb and (
                not within_interval or
                step_mb / 8 <= moved % step_mb <= step_mb / 2):
            return moved
        assert agent.proc.poll() is None, agent.text()[-3000:]
        assert time.monotonic() < deadline, (history, agent.text()[-3000:])
        last = moved
        time.sleep(0.02)


def wait_managed(agent, *names, timeout=START_S):
    """Until the agent has finished an interval after managing all of
    ``names`` (bounded by ``timeout`` seconds).  Polls the log only, at
    a slow pace: a Python start under TCG needs the CPU."""
    deadline = time.monotonic() + timeout
    while True:
        text = agent.text()
        at = [text.find('managing guest %s ' % n) for n in names]
        if min(at) >= 0 and re.search(r'interval \d+:', text[max(at):]):
            return agent.intervals()
        assert agent.proc.poll() is None, text[-3000:]
        assert time.monotonic() < deadline, text[-3000:]
        time.sleep(0.2)


def wait_for_budget(agent, w, limit_mb, max_intervals, history):
    """Until ``w`` has at most ``limit_mb`` MiB on node0, within
    ``max_intervals`` of the agent's intervals from now.  Returns the
    intervals it took and the last placement."""
    start = agent.intervals()
    while True:
        n = agent.intervals()
        status = placement(w)
        note(history, agent, status, w.name)
        if mib(status, 0) <= limit_mb:
            return n - start, status
        assert n - start < max_intervals, (history, agent.text()[-3000:])
        agent.wait_interval_after(n)


def demotion_intervals(fast_mb, floor_mb, rate_mb):
    return int(np.ceil(max(0, fast_mb - floor_mb) / rate_mb)) \
        + SLACK_INTERVALS


def start_workload(tmp_path, name, size_mb, hot_mb, floor_mb):
    w = workloads.Workload('--size-mb', size_mb, '--hot-mb', hot_mb,
                           '--register-dir', tmp_path / 'guests',
                           '--name', name, '--policy', 'static',
                           '--floor-mb', floor_mb, '--pause-ms', 20,
                           timeout=120)
    w.name = name
    return w


def print_log(text, *keys):
    print('\n'.join(line for line in text.splitlines()
                    if 'interval ' in line or 'DAMON' in line
                    or any(k in line for k in keys)))


def check_stopped(agent, status):
    """After SIGTERM: exit 0, a clean stop, no kdamond left."""
    text = agent.text()
    assert status == 0, text[-3000:]
    assert 'stopped after' in text
    assert kdamonds() == []
    return text


class Clock:
    """Seconds since the test started, at named moments."""

    def __init__(self):
        self.t0 = time.monotonic()
        self.marks = []

    def mark(self, what):
        self.marks.append((what, round(time.monotonic() - self.t0, 1)))


# ---------------------------------------------------------------------------

SIZE_MB = 128
HOT_MB = 16
FLOOR_MB = 32


def test_agent_killed_mid_move_restarts_and_finishes(tmp_path):
    history, clock = [], Clock()
    # The agent first: its start (the longest part of this test under
    # TCG) overlaps the workload's; it picks the registration up.
    agent = AgentProcess(tmp_path, move_rate_mb_per_s=RATE_MB)
    w = status = None
    try:
        w = start_workload(tmp_path, 'crash', SIZE_MB, HOT_MB, FLOOR_MB)
        clock.mark('workload ready')
        before = placement(w)
        assert missing(before) == 0, 'the workload has pages not present'
        history.append(('start', 0, mib(before, 0), mib(before, 1)))
        base = mib(before, 1)
        wait_managed(agent, 'crash')
        clock.mark('first run tiering (interval %d)' % agent.intervals())
        # One interval moves RATE_MB (8 chunks) while far from the budget.
        moved = wait_mid_move(agent, w, base, RATE_MB,
                              SIZE_MB - FLOOR_MB - RATE_MB, history)
        clock.mark('first run killed mid-move (interval %d)'
                   % agent.intervals())
        assert agent.kill() == -9
        first = agent.text()
        after = placement(w)
        history.append(('killed', None, mib(after, 0), mib(after, 1)))

        # The kill cut one interval's demotion short...
        assert (mib(after, 1) - base) % RATE_MB, (
            'the agent finished its moves before the kill', history)
        # ...and lost nothing: every page is still present, and the
        # memory reads back as written.
        assert missing(after) == 0, (
            '%d pages no longer present after the kill' % missing(after))
        assert w.checksum_ok()
        # The dead agent's kdamond still monitors the workload, and the
        # state file names it.  (Read only while no agent runs: DAMON's
        # sysfs answers EBUSY to one user while another holds it.)
        left = kdamonds()
        assert [(s, t) for s, _, t in left] == [('on', str(w.pid))], left
        with open(tmp_path / 'state' / damon.STATE_FILE) as fh:
            assert json.load(fh)['kdamond_pids'] == [int(left[0][1])]
        clock.mark('checked after the kill')

        agent.start()
        agent.wait_interval_after(1, timeout=START_S)
        clock.mark('second run at interval 2')
        second = agent.text()
        # Its own kdamond is recognised and taken over, not refused.
        assert 'taking back the 1 kdamond(s)' in second, second[-3000:]
        assert 'DAMON is in use' not in second
        # The registration survived: managed in the first interval.
        managed = second.find('managing guest crash ')
        assert 0 <= managed < second.find('interval 1:'), second[-3000:]

        bound = demotion_intervals(mib(after, 0), FLOOR_MB, RATE_MB)
        took, final = wait_for_budget(agent, w, FLOOR_MB + CHUNK_MB,
                                      bound, history)
        clock.mark('second run at the budget')
        assert missing(final) == 0, (
            '%d pages no longer present' % missing(final))
        assert w.checksum_ok()
        assert agent.proc.poll() is None
    finally:
        status = agent.stop()
        if w is not None:
            w.close()
    clock.mark('stopped')
    text = check_stopped(agent, status)
    print('killed %.1f MiB into the demotion; the restarted agent reached '
          'the budget after %d of at most %d intervals' % (moved, took,
                                                           bound))
    print('times (s):', clock.marks)
    print('placement (label, interval, node0 MiB, node1 MiB):', history)
    print('--- first run')
    print_log(first, 'guest crash')
    print('--- second run')
    print_log(text, 'guest crash')
    assert 'Traceback' not in first + text
    assert ' ERROR ' not in first + text


# ---------------------------------------------------------------------------

PAIR_MB = 96
PAIR_HOT_MB = 8
PAIR_FLOOR_MB = 16


def test_guest_killed_mid_move_is_dropped_and_others_go_on(tmp_path):
    history, clock = [], Clock()
    agent = AgentProcess(tmp_path, move_rate_mb_per_s=RATE_MB)
    a = b = status = None
    try:
        # guest-a starts with all of its memory as its floor, so nothing
        # of it moves until the test lowers the floor below, under its
        # watch (on a quiet machine the demotion could otherwise be over
        # before the first look).
        a = start_workload(tmp_path, 'guest-a', PAIR_MB, PAIR_HOT_MB,
                           PAIR_MB)
        b = start_workload(tmp_path, 'guest-b', PAIR_MB, PAIR_HOT_MB,
                           PAIR_FLOOR_MB)
        assert missing(placement(b)) == 0
        clock.mark('workloads ready')
        wait_managed(agent, 'guest-a', 'guest-b')
        clock.mark('both tiered (interval %d)' % agent.intervals())
        base = mib(placement(a), 1)
        process.register(str(tmp_path / 'guests'), 'guest-a', a.pid,
                         [(a.start, a.end)],
                         guest.Policy('static', PAIR_FLOOR_MB))
        # The guests share the cap: RATE_MB / 2 each per interval,
        # guest-a's first (the watcher lists them by name).
        moved = wait_mid_move(agent, a, base, RATE_MB / 2,
                              PAIR_MB - PAIR_FLOOR_MB - RATE_MB, history,
                              within_interval=False)
        a_pid = a.pid
        killed_at = agent.intervals()
        a.kill()
        clock.mark('guest-a killed (interval %d)' % killed_at)
        history.append(('guest-a killed', killed_at, None, None))

        deadline = time.monotonic() + 120
        while 'guest guest-a dropped' not in agent.text():
            assert agent.proc.poll() is None, agent.text()[-3000:]
            assert agent.intervals() <= killed_at + 2, agent.text()[-3000:]
            assert time.monotonic() < deadline, agent.text()[-3000:]
            time.sleep(0.05)
        clock.mark('guest-a dropped (interval %d)' % agent.intervals())

        bound = demotion_intervals(mib(placement(b), 0), PAIR_FLOOR_MB,
                                   RATE_MB)
        took, final = wait_for_budget(agent, b, PAIR_FLOOR_MB + CHUNK_MB,
                                      bound, history)
        clock.mark('guest-b at the budget')
        assert missing(final) == 0, (
            '%d pages of guest-b no longer present' % missing(final))
        assert b.checksum_ok()
        assert agent.proc.poll() is None
    finally:
        status = agent.stop()
        for w in (a, b):
            if w is not None:
                w.close()
    clock.mark('stopped')
    text = check_stopped(agent, status)
    print('guest-a (pid %d) killed %.1f MiB into its demotion; guest-b at '
          'its budget after %d more of at most %d intervals'
          % (a_pid, moved, took, bound))
    print('times (s):', clock.marks)
    print('placement (label, interval, node0 MiB, node1 MiB):', history)
    print_log(text, 'guest guest-a', 'guest guest-b', 'registration',
              'ERROR', 'WARNING')
    # Gone is not an error (move_pages says EINVAL to a process that is
    # exiting: the mover must read that as gone).
    assert 'Traceback' not in text
    assert ' ERROR ' not in text
    assert text.count('managing guest guest-a ') == 1
    # Dropped at once, never tiered again.
    dropped = text.index('guest guest-a dropped')
    assert 'guest guest-a:' not in text[dropped:], text[dropped:][-3000:]
