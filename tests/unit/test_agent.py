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

"""The agent's loop on this machine: real workload processes, the process
watcher, the real mover in query mode (this machine has one NUMA node, so
nothing may move), topology from a fixture tree and the replay tracker
(this machine's kernel has no usable tracker).  The loop on a real
two-tier kernel is tests/sandbox/test_agent_e2e.py."""

import logging
import os
import subprocess
import sys
import threading
import time
import uuid

import numpy as np
from oslo_config import cfg
import pytest

from loki_nova.conf import memtier as memtier_conf
from loki_nova.memtier import agent as agent_mod
from loki_nova.memtier import kernfs
from loki_nova.memtier import mover
from loki_nova.memtier import topology
from loki_nova.memtier import trackers
from loki_nova.memtier.trackers import replay

FIXTURES = os.path.join(os.path.dirname(__file__), '..', 'fixtures',
                        'kernfs')


def make_conf(tmp_path, **overrides):
    settings = dict(dram_reserve_mb=0, dram_free_min_mb=0,
                    watchers='process',
                    registration_dir=tmp_path / 'guests',
                    state_dir=tmp_path / 'state', interval=1.0)
    settings.update(overrides)
    path = tmp_path / 'memtier.conf'
    path.write_text('[memtier]\n' + ''.join(
        '%s = %s\n' % kv for kv in settings.items()))
    conf = cfg.ConfigOpts()
    memtier_conf.register_opts(conf)
    conf(['--config-file', str(path)], project='loki-nova')
    return conf.memtier


def make_agent(conf, source):
    topo = topology.discover(kernfs.KernelFS(os.path.join(FIXTURES,
                                                          'two_tier')))
    return agent_mod.Agent(
        conf, topology=topo, tracker=replay.ReplayTracker(source),
        mover=mover.Mover(mover.RateLimiter(1 << 30), query_only=True))


def test_hysteresis_defaults_by_how_much_of_the_interval_is_seen(
        tmp_path):
    source = hot_first(8)
    assert make_agent(make_conf(tmp_path), source).params.hysteresis == 256
    whole = replay.ReplayTracker(source)
    whole.damon_source = 'trace'
    topo = topology.discover(kernfs.KernelFS(os.path.join(FIXTURES,
                                                          'two_tier')))
    agent = agent_mod.Agent(
        make_conf(tmp_path), topology=topo, tracker=whole,
        mover=mover.Mover(mover.RateLimiter(1 << 30), query_only=True))
    assert agent.params.hysteresis == agent_mod.WHOLE_INTERVAL_HYSTERESIS \
        == 64
    # What the operator sets wins either way.
    agent = agent_mod.Agent(
        make_conf(tmp_path, hysteresis=300), topology=topo, tracker=whole,
        mover=mover.Mover(mover.RateLimiter(1 << 30), query_only=True))
    assert agent.params.hysteresis == 300


def test_heat_per_access_is_per_unit_of_the_common_scale(
        tmp_path, two_guests, caplog):
    """A tracker with a finer scale (DAMON's trace: 0-160) adds less heat
    per unit, the same for the same share of accesses; a chunk is hot
    with at least one unit of the common 0-20 scale."""
    def source(g, layout, n):
        out = np.zeros(len(layout), np.uint8)
        out[:4] = 8       # 1/20 of the checks on 0-160
        out[4:8] = 4      # 1/40
        return out

    topo = topology.discover(kernfs.KernelFS(os.path.join(FIXTURES,
                                                          'two_tier')))
    reports = {}
    for scale in (trackers.SAMPLE_SCALE, 160):
        tracker = replay.ReplayTracker(source)
        tracker.scale = scale
        agent = agent_mod.Agent(
            make_conf(tmp_path), topology=topo, tracker=tracker,
            mover=mover.Mover(mover.RateLimiter(1 << 30), query_only=True))
        assert agent.params.access_weight == 64 * trackers.SAMPLE_SCALE \
            // scale
        assert agent.params.unit == 64
        reports[scale] = agent.run_interval().guests['static1']
    # On 0-20 both groups count as at least one access: 8 chunks hot.
    assert reports[trackers.SAMPLE_SCALE].hot_mb == 16
    # On 0-160 the chunks seen at 1/40 of the checks are not.
    assert reports[160].hot_mb == 8
    # A heat_per_access that 160 / 20 does not divide is rounded, and the
    # agent says what it counts as.
    tracker = replay.ReplayTracker(source)
    tracker.scale = 160
    with caplog.at_level(logging.WARNING):
        agent = agent_mod.Agent(
            make_conf(tmp_path, heat_per_access=100), topology=topo,
            tracker=tracker,
            mover=mover.Mover(mover.RateLimiter(1 << 30), query_only=True))
    assert (agent.params.access_weight, agent.params.unit) == (13, 104)
    assert 'heat_per_access 100 is not a multiple of 8: with samples of ' \
        '0-160 it counts as 104' in caplog.text


def hot_first(mb):
    def source(g, layout, n):
        out = np.zeros(len(layout), np.uint8)
        out[:mb // 2] = 20
        return out
    return source


def test_one_interval_budgets_and_plans_every_guest(tmp_path, two_guests):
    agent = make_agent(make_conf(tmp_path), hot_first(16))
    first = agent.run_interval()
    assert set(first.guests) == {'static1', 'od1'}
    assert first.guests['static1'].budget_mb == 8
    # on_demand starts at its floor: no hot demand known yet
    assert first.guests['od1'].budget_mb == 4
    second = agent.run_interval()
    st, od = second.guests['static1'], second.guests['od1']
    assert st.budget_mb == 8 and st.hot_mb == 16
    # 16 MiB hot, DRAM free: on_demand grows to its hot demand
    assert od.budget_mb == 16
    # all pages are on node 0 here: the plan demotes down to the budget
    assert st.dram_mb == 8 and st.slow_mb == 24 and st.error is None
    assert second.cpu_s > 0 and second.number == 2


def test_one_guests_failure_does_not_stop_the_others(tmp_path, two_guests,
                                                     caplog):
    def source(g, layout, n):
        if g.key == 'od1':
            raise RuntimeError('tracker broke for od1')
        return np.zeros(len(layout), np.uint8)
    agent = make_agent(make_conf(tmp_path), source)
    report = agent.run_interval()
    assert report.guests['od1'].error == 'tracker broke for od1'
    assert report.guests['static1'].error is None
    assert report.guests['static1'].budget_mb == 8
    assert 'guest od1: sampling failed' in caplog.text


def test_a_guest_with_no_sample_is_left_as_it_is_with_a_warning(
        tmp_path, two_guests, caplog):
    """No sample (DAMON's trace brought nothing) is not "all cold": the
    guest is not tiered this interval, and the log says why without a
    traceback."""
    def source(g, layout, n):
        if g.key == 'od1':
            raise trackers.NoSample('no whole aggregation of its kdamond')
        return np.zeros(len(layout), np.uint8)
    agent = make_agent(make_conf(tmp_path), source)
    report = agent.run_interval()
    assert report.guests['od1'].error == \
        'no whole aggregation of its kdamond'
    assert not report.guests['od1'].tiered
    assert report.guests['static1'].tiered
    assert 'guest od1: not tiered this interval: no whole aggregation' \
        in caplog.text
    assert 'Traceback' not in caplog.text


def test_an_exited_guest_is_dropped_and_the_rest_go_on(tmp_path,
                                                       two_guests, caplog):
    a, b = two_guests
    agent = make_agent(make_conf(tmp_path), hot_first(4))
    agent.run_interval()
    caplog.set_level(logging.INFO)
    a.kill()   # gone without unregistering
    report = agent.run_interval()
    assert set(report.guests) == {'od1'}
    assert 'static1' not in agent.guests
    assert 'exited' in caplog.text or 'no longer listed' in caplog.text


def test_floors_that_do_not_fit_are_scaled_and_logged(tmp_path, two_guests,
                                                      caplog):
    # fast tier of the fixture is 1024 MiB; reserve all but 6 MiB
    agent = make_agent(make_conf(tmp_path, dram_reserve_mb=1018),
                       hot_first(4))
    report = agent.run_interval()
    assert report.guests['static1'].budget_mb == pytest.approx(4)
    assert report.guests['od1'].budget_mb == pytest.approx(2)
    assert 'MiB short' in caplog.text and 'scaled by 0.50' in caplog.text


class SteppedClock:
    """``time`` for the agent module with a monotonic clock that moves only
    when the test says (wall-clock and CPU time stay real)."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self):
        return self.now

    @staticmethod
    def process_time():
        return time.process_time()

    @staticmethod
    def time():
        return time.time()


class ClockedEvent:
    """A ``threading.Event`` stand-in whose waits move a SteppedClock
    instead of blocking (it is never set)."""

    def __init__(self, clock):
        self.clock = clock

    def is_set(self):
        return False

    def wait(self, timeout):
        self.clock.now += timeout
        return False

    def clear(self):
        pass


def test_between_intervals_the_tracker_collects_when_it_asks_to(
        tmp_path, two_guests, monkeypatch):
    clock = SteppedClock()
    monkeypatch.setattr(agent_mod, 'time', clock)
    tracker = replay.ReplayTracker(hot_first(8))
    collected = []

    def collect():
        collected.append(clock.now)
        if len(collected) == 2:
            raise OSError('the next sample reports this')

    tracker.collect = collect
    topo = topology.discover(kernfs.KernelFS(os.path.join(FIXTURES,
                                                          'two_tier')))
    agent = agent_mod.Agent(
        make_conf(tmp_path, interval=5.0), topology=topo, tracker=tracker,
        mover=mover.Mover(mover.RateLimiter(1 << 30), query_only=True))
    agent.wake = ClockedEvent(clock)
    # A tracker that does not ask is not called: one wait to the next
    # interval.
    started = clock.now
    agent._rest(started)
    assert clock.now == started + 5.0 and collected == []
    # Every collect_every_s until the interval is due; a failure does not
    # end the wait.
    tracker.collect_every_s = 0.5
    started = clock.now
    agent._rest(started)
    assert clock.now == pytest.approx(started + 5.0)
    assert collected == pytest.approx([started + 0.5 * k
                                       for k in range(1, 10)])
    # ... and after each guest's moves in an interval.
    del collected[:]
    agent.run_interval()
    assert len(collected) == 2


def test_a_paced_move_collects_for_a_tracker_that_asks_to(tmp_path):
    """The agent's own mover waits for its rate cap collecting what the
    tracker asks to collect (DAMON's trace buffer), not only between
    intervals; a tracker that does not ask is left alone."""
    tracker = replay.ReplayTracker(hot_first(8))
    collected = []
    tracker.collect = lambda: collected.append(1)
    topo = topology.discover(kernfs.KernelFS(os.path.join(FIXTURES,
                                                          'two_tier')))
    conf = make_conf(tmp_path, move_rate_mb_per_s=1)
    agent = agent_mod.Agent(conf, topology=topo, tracker=tracker)
    assert agent.mover.limiter.meanwhile is None
    tracker.collect_every_s = 0.01
    agent = agent_mod.Agent(conf, topology=topo, tracker=tracker)
    limiter = agent.mover.limiter
    assert limiter.meanwhile_every_s == 0.01
    limiter.acquire(256 << 10)
    assert limiter.acquire(256 << 10)    # a 0.25 s wait for its slot
    assert len(collected) >= 5


def test_measuring_that_takes_half_the_interval_is_warned_once(
        tmp_path, two_guests, caplog, monkeypatch):
    clock = SteppedClock()
    monkeypatch.setattr(agent_mod, 'time', clock)
    per_guest = {'s': 1.5}

    def source(g, layout, n):
        clock.now += per_guest['s']
        return np.zeros(len(layout), np.uint8)

    agent = make_agent(make_conf(tmp_path, interval=5.0), source)
    caplog.set_level(logging.WARNING)
    first = agent.run_interval()
    assert first.measure_s == pytest.approx(3.0)
    warned = [r.getMessage() for r in caplog.records
              if 'measuring' in r.getMessage()]
    assert warned == ['measuring 2 guest(s) took 3.0 s of the 5.0 s '
                      'interval, leaving little of it for moving pages. '
                      'Raise [memtier] interval.']
    # The same again: not repeated.
    agent.run_interval()
    # 2 x 1.2 s is under half of 5 s: quiet, and a later slow one warns
    # anew.
    per_guest['s'] = 1.2
    assert agent.run_interval().measure_s == pytest.approx(2.4)
    per_guest['s'] = 1.5
    agent.run_interval()
    warned = [r.getMessage() for r in caplog.records
              if 'measuring' in r.getMessage()]
    assert len(warned) == 2
    # With DAMON the warning says why it grows with the guests.
    damon_like = make_agent(make_conf(tmp_path, interval=5.0), source)
    damon_like.tracker.name = 'damon'
    damon_like.tracker.attrs = {'aggr_us': 100000}
    damon_like.run_interval()
    assert 'waits for the end of a DAMON aggregation interval (100000 ' \
        'us' in caplog.records[-1].getMessage()
    assert caplog.records[-1].getMessage().endswith(
        'set [memtier] damon_source = trace (reads that do not wait), '
        'raise interval or lower damon_aggr_us.')
    # Reading DAMON's trace waits for nothing: the advice differs.
    traced = make_agent(make_conf(tmp_path, interval=5.0), source)
    traced.tracker.name, traced.tracker.damon_source = 'damon', 'trace'
    traced.run_interval()
    message = caplog.records[-1].getMessage()
    assert 'read without waiting' in message and \
        message.endswith('Raise [memtier] interval.')


def run_service(tmp_path, conf_text):
    path = tmp_path / 'memtier.conf'
    path.write_text(conf_text)
    return subprocess.run(
        [os.path.join(os.path.dirname(sys.executable), 'loki-memtier-agent'),
         '--config-file', str(path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        timeout=120)


def test_service_refuses_a_malformed_option_naming_it(tmp_path):
    res = run_service(tmp_path, '[memtier]\ninterval = soon\n'
                                'tracker = soft_dirty\n')
    assert res.returncode == 1
    assert 'cannot start' in res.stdout and 'interval' in res.stdout
    assert 'soon' in res.stdout


@pytest.mark.skipif(os.environ.get('LOKI_SANDBOX') == '1',
                    reason='the sandbox has a slow tier')
def test_service_refuses_a_host_without_a_slow_tier(tmp_path):
    res = run_service(tmp_path, '[memtier]\ntracker = soft_dirty\n'
                                'watchers = process\n'
                                'registration_dir = %s\n' % tmp_path)
    assert res.returncode == 1
    assert 'cannot start' in res.stdout
    assert 'no slow memory tier' in res.stdout or \
        'no memory tiers' in res.stdout


def test_a_changed_policy_is_taken_without_losing_the_guest(
        tmp_path, two_guests, caplog):
    from loki_nova.memtier import guest
    from loki_nova.memtier.watcher import process
    a, _ = two_guests
    agent = make_agent(make_conf(tmp_path), hot_first(4))
    agent.run_interval()
    planner = agent.guests['static1'].planner
    caplog.set_level(logging.INFO)
    process.register(str(tmp_path / 'guests'), 'static1', a.pid,
                     [(a.start, a.end)], guest.Policy('static', 12))
    report = agent.run_interval()
    assert report.guests['static1'].budget_mb == 12
    assert agent.guests['static1'].planner is planner
    assert 'guest static1: policy changed' in caplog.text


def test_a_watcher_failure_is_contained(tmp_path, two_guests, caplog):
    agent = make_agent(make_conf(tmp_path), hot_first(4))
    agent.run_interval()

    class Broken:
        def scan(self):
            raise PermissionError(13, 'registration_dir unreadable')
    agent.watchers = [Broken()] + agent.watchers
    report = agent.run_interval()
    assert set(report.guests) == {'static1', 'od1'}
    assert 'Broken failed' in caplog.text


def reserve_in_thread(agent, instance_uuid, mb, timeout=30):
    """``agent.reserve_dram`` from another thread, as the RPC server calls
    it; the thread's ``answer`` holds what it returned."""
    thread = threading.Thread(daemon=True, target=lambda: setattr(
        thread, 'answer', agent.reserve_dram(instance_uuid, mb, timeout)))
    thread.start()
    deadline = time.monotonic() + 30
    while instance_uuid not in agent.reservations:
        assert time.monotonic() < deadline, 'no reservation was made'
        time.sleep(0.01)
    return thread


def test_a_reservation_made_before_the_first_interval_meets_the_floors(
        tmp_path, two_guests):
    # fast tier 1024 MiB - reserve 1000 - floors 12 leaves 12 MiB
    agent = make_agent(make_conf(tmp_path, dram_reserve_mb=1000),
                       hot_first(4))
    # The agent has not listed its guests yet: the RPC thread sees no floor.
    waiter = reserve_in_thread(agent, str(uuid.uuid4()), 20)
    report = agent.run_interval()
    waiter.join(30)
    assert waiter.answer['status'] == 'insufficient', waiter.answer
    assert 'DRAM floors of 12 MiB of the 2 guest(s) running' in \
        waiter.answer['reason']
    assert 'leave 12 MiB' in waiter.answer['reason']
    assert agent.reservations == {}
    assert {k: st.budget_mb for k, st in report.guests.items()} == \
        {'static1': 8, 'od1': 4}


def test_a_reservation_released_while_its_caller_waits_is_answered(
        tmp_path, two_guests):
    agent = make_agent(make_conf(tmp_path), hot_first(4))
    new = str(uuid.uuid4())
    waiter = reserve_in_thread(agent, new, 64)
    # No interval runs: only the release can answer the caller.
    assert agent.release_dram(new.upper()) == {
        'status': 'released', 'instance_uuid': new, 'mb': 64,
        'reason': 'the reservation of 64 MiB was dropped'}
    waiter.join(30)
    assert waiter.answer['status'] == 'released', waiter.answer
    assert 'nothing is held' in waiter.answer['reason']
    assert agent.release_dram(new)['status'] == 'unknown'
    assert agent.reservations == {}


def _node0_meminfo(root, free_kb, active_file_kb=0, inactive_file_kb=0,
                   slab_kb=0):
    (root / 'sys/devices/system/node/node0/meminfo').write_text(
        'Node 0 MemTotal:        1048576 kB\n'
        'Node 0 MemFree:         %8d kB\n'
        'Node 0 Active(anon):      65536 kB\n'
        'Node 0 Active(file):    %8d kB\n'
        'Node 0 Inactive(file):  %8d kB\n'
        'Node 0 Shmem:             65536 kB\n'
        'Node 0 SReclaimable:    %8d kB\n'
        'Node 0 SUnreclaim:        40960 kB\n'
        % (free_kb, active_file_kb, inactive_file_kb, slab_kb))


def _sysfs_copy(tmp_path):
    """A copy of the two-tier fixture the test may change."""
    import shutil
    root = tmp_path / 'sysfs'
    if not root.exists():
        shutil.copytree(os.path.join(FIXTURES, 'two_tier'), root)
    return root


def _agent_on_sysfs_copy(tmp_path, **settings):
    """An agent on all-hot samples whose /sys is ``_sysfs_copy``."""
    from tests.agentbus import FixtureSysFS
    root = _sysfs_copy(tmp_path)
    return root, agent_mod.Agent(
        make_conf(tmp_path, **settings), kfs=FixtureSysFS(str(root)),
        topology=topology.discover(kernfs.KernelFS(str(root))),
        tracker=replay.ReplayTracker(lambda g, layout, n: np.full(
            len(layout), 20, np.uint8)),
        mover=mover.Mover(mover.RateLimiter(1 << 30), query_only=True))


def test_on_demand_guests_grow_only_into_available_dram(
        tmp_path, two_guests, caplog):
    """DRAM above the floors comes out of what the DRAM nodes have
    available (free, page cache, reclaimable slab) beyond
    dram_free_min_mb: when
    something the agent does not manage takes DRAM, on-demand guests are
    dialled back towards their floors; floors are never cut."""
    root, agent = _agent_on_sysfs_copy(tmp_path, dram_free_min_mb=100)

    def budgets():
        # A guest's hot demand is the previous interval's: the second
        # interval after a change shows it.  This machine has one node,
        # the fixture's DRAM: the guests hold all their 64 MiB there
        # whatever the plan says.
        agent.run_interval()
        report = agent.run_interval()
        return {k: s.budget_mb for k, s in report.guests.items()}

    caplog.set_level(logging.INFO, logger='loki_nova')
    # 768 MiB free: every hot MiB fits (od1 to its ceiling, 24).
    assert budgets() == {'static1': 8, 'od1': 24}
    # Something else takes DRAM: 8 MiB free, 100 must stay free, so the
    # guests may hold no more than their floors.
    _node0_meminfo(root, 8 * 1024)
    assert budgets() == {'static1': 8, 'od1': 4}
    assert 'DRAM above the floors is limited by available DRAM: managed ' \
        'guests hold 64 MiB and the DRAM nodes have 8 MiB available' \
        in caplog.text
    assert 'budgets add up to at most 12 MiB (floors 12 MiB)' in caplog.text
    stats = agent.host_stats()
    assert stats['held_back_by_free_dram'] is True
    assert stats['dram_free_min_mb'] == 100
    assert stats['fast_available_mb'] == 8
    # 8 free + 20 + 22 of page cache + 10 of reclaimable slab (anonymous,
    # shared and unreclaimable memory do not count): 64 + 60 - 100 = 24
    # MiB in all, 12 above the floors for od1.
    _node0_meminfo(root, 8 * 1024, 20 * 1024, 22 * 1024, 10 * 1024)
    assert budgets() == {'static1': 8, 'od1': 16}
    # Plenty again: back to the whole demand, and the log says so.
    _node0_meminfo(root, 768 * 1024)
    assert budgets() == {'static1': 8, 'od1': 24}
    assert 'no longer limited by available DRAM' in caplog.text
    assert agent.host_stats()['held_back_by_free_dram'] is False
    # Without a meminfo to read nothing is held back; one warning.
    (root / 'sys/devices/system/node/node0/meminfo').unlink()
    caplog.clear()
    assert budgets() == {'static1': 8, 'od1': 24}
    assert budgets() == {'static1': 8, 'od1': 24}
    assert caplog.text.count('cannot read the DRAM nodes\' meminfo') == 1


def test_dram_free_min_mb_zero_leaves_the_free_dram_to_guests(
        tmp_path, two_guests):
    _node0_meminfo(_sysfs_copy(tmp_path), 0)

    def od1_budget(free_min):
        _, agent = _agent_on_sysfs_copy(tmp_path, dram_free_min_mb=free_min)
        agent.run_interval()
        return agent.run_interval().guests['od1'].budget_mb

    # Nothing available, but the guests hold 64 MiB: with 0 kept free they
    # keep it, room for every wish (8 + 24).
    assert od1_budget(0) == 24
    # Keeping 60 MiB free out of nothing leaves them 4: the floors (12).
    assert od1_budget(60) == 4


def test_reservations_and_the_host_reserve_come_out_of_available_dram(
        tmp_path, two_guests):
    root, agent = _agent_on_sysfs_copy(tmp_path, dram_free_min_mb=100,
                                       dram_reserve_mb=10)
    agent.run_interval()
    agent.run_interval()          # od1's hot demand: 32 MiB, ceiling 24
    held = {'static1': 32, 'od1': 32}
    keys = ['static1', 'od1']
    # 64 held + 100 available - 100 kept free = 64 MiB for the guests and
    # the 40 MiB reserved for a guest about to start: floors 12, 12 left.
    _node0_meminfo(root, 100 * 1024)
    assert agent.budgets(keys, 40, held) == {'static1': 8, 'od1': 16}
    assert agent.host_stats()['held_back_by_free_dram'] is True
    # The host reserve (10 MiB) is not taken twice: without the free-DRAM
    # limit (meminfo unreadable) the capacity alone leaves od1 its wish.
    assert agent.budgets(keys, 40, None) == {'static1': 8, 'od1': 24}
    # Only the reservation is squeezed (od1 wants nothing more): no
    # on-demand guest is held back.
    agent.guests['od1'].hot_mb = 0
    assert agent.budgets(keys, 80, held) == {'static1': 8, 'od1': 4}
    assert agent.host_stats()['held_back_by_free_dram'] is False
    # Never below the floors, however little is available.
    _node0_meminfo(root, 0)
    agent.guests['od1'].hot_mb = 32
    assert agent.budgets(keys, 0, held) == {'static1': 8, 'od1': 4}


def test_a_loop_short_of_cpu_rests_rather_than_running_back_to_back(
        tmp_path, caplog, monkeypatch):
    """An interval whose work took more than MAX_BUSY_SHARE of the
    interval is followed by a rest that keeps the loop to that share of a
    CPU (a host short of CPU is not made shorter by the agent)."""
    agent = make_agent(make_conf(tmp_path, interval=1.0), hot_first(8))
    clock = SteppedClock()
    monkeypatch.setattr(agent_mod, 'time', clock)
    agent.wake = ClockedEvent(clock)
    assert agent_mod.MAX_BUSY_SHARE == 0.5
    caplog.set_level(logging.INFO, logger='loki_nova')
    # 0.8 s of work: the next interval starts 1.6 s after this one did,
    # not 1.0 s.
    started = clock.now - 0.8
    agent._rest(started)
    assert clock.now == pytest.approx(started + 1.6)
    assert caplog.text.count('took 0.8 s of work, more than 50% of the '
                             '1.0 s interval') == 1
    # Again: no second warning.
    started = clock.now - 0.9
    agent._rest(started)
    assert clock.now == pytest.approx(started + 1.8)
    assert caplog.text.count('more than 50% of the') == 1
    # Light work again: the usual interval, and the log says so.
    started = clock.now - 0.1
    agent._rest(started)
    assert clock.now == pytest.approx(started + 1.0)
    assert 'intervals are 1.0 s apart again' in caplog.text
