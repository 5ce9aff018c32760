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

"""On-demand DRAM end to end on the sandbox's two-tier kernel.

The real agent (built from its configuration alone: kernel topology,
DAMON tracker, process watcher, real mover) runs its loop and RPC server
in threads of this test process, on oslo.messaging's in-memory transport
(the sandbox has no broker; the same RPC over RabbitMQ is
tests/functional/test_rabbit_rpc.py).  Two workloads are registered like
guests: S (static, floor 32 MiB) and D (on_demand, floor 32 MiB,
ceiling 96 MiB, 64 MiB hot).  The host reserve is set so that 96 MiB of
DRAM is spare above the floors:

* while it is free, D's budget and its DRAM grow past its floor toward
  its hot demand;
* ``reserve_dram`` for a third guest, taking all of the spare, answers
  ``ok`` only once D is back at its floor, and the pages really are;
* S never leaves its share; no budget ever falls below a floor (checked
  in every interval); both workloads' memory keeps its checksum.
"""

import logging
import uuid

import numpy as np

from loki_nova.memtier import agent as agent_mod
from loki_nova.memtier import mover
from loki_nova.memtier import rpc
from tests import agentbus
from tests import workloads
from tests.sandbox import INSIDE_ONLY

pytestmark = INSIDE_ONLY

MiB = 1024 * 1024
FLOOR = 32
CEILING = 96
HOT = 64
SPARE = 96
CHUNK_MB = 2
MAX_INTERVALS = 40


def node0_mb(w):
    pages = np.arange(w.start, w.end, 4096, dtype=np.uint64)
    nodes = mover.move_pages(w.pid, pages)
    return float((nodes == 0).sum()) * 4096 / MiB


class Timeline:
    """Every interval's budgets and DRAM, as the agent reports them, and
    every floor violation seen."""

    def __init__(self):
        self.rows = []
        self.violations = []

    def __call__(self, report):
        row = {'interval': report.number}
        for key, st in report.guests.items():
            if not st.tiered:   # (an interval cut short by the stop)
                continue
            row[key] = (round(st.budget_mb), round(st.dram_mb),
                        round(st.hot_mb))
            if st.budget_mb < st.floor_mb:
                self.violations.append((report.number, key, st.budget_mb))
        self.rows.append(row)


def wait_until(running, predicate, what, log, limit=MAX_INTERVALS):
    """Bounded by ``limit`` of the agent's intervals from now."""
    start = running.agent.number
    while not predicate():
        n = running.agent.number
        assert n - start < limit, (what, running.agent.last_report,
                                   log.text[-6000:])
        try:
            running.wait_interval(n + 1, timeout=120)
        except AssertionError:
            raise AssertionError(log.text[-6000:])


def test_on_demand_grows_then_gives_way_to_a_reservation(tmp_path, caplog):
    caplog.set_level(logging.DEBUG, logger='loki_nova')
    reg = tmp_path / 'guests'
    conf = agentbus.make_conf(tmp_path, interval=1.0, tracker='damon',
                              usage_interval=0, host='sandbox')
    agent = agent_mod.Agent(conf.memtier)
    fast = agent.topology.fast_mb
    conf.set_override('dram_reserve_mb', fast - 2 * FLOOR - SPARE,
                      group='memtier')
    timeline = Timeline()
    agent.listeners.append(timeline)
    common = ('--register-dir', reg, '--pause-ms', 20)
    with workloads.Workload('--size-mb', 96, '--hot-mb', 16, '--name', 'S',
                            '--policy', 'static', '--floor-mb', FLOOR,
                            *common, timeout=120) as s, \
            workloads.Workload('--size-mb', 160, '--hot-mb', HOT,
                               '--name', 'D', '--policy', 'on_demand',
                               '--floor-mb', FLOOR, '--ceiling-mb',
                               CEILING, *common, timeout=120) as d, \
            agentbus.Running(conf, agent=agent) as running:

        def report(key):
            r = running.agent.last_report
            return r.guests.get(key) if r else None

        def grown():
            st = report('D')
            return (st is not None and st.budget_mb >= FLOOR + 16
                    and node0_mb(d) >= FLOOR + 16)
        wait_until(running, grown, 'D grows past its floor', caplog)
        grown_at = len(timeline.rows)
        before = (report('D').budget_mb, node0_mb(d))

        new = str(uuid.uuid4())
        answer = running.client.reserve_dram({'request_id': 'req-e2e'},
                                             'sandbox', new, SPARE, 120)
        at_answer = node0_mb(d), node0_mb(s), report('D').budget_mb
        print('reserve_dram answer:', answer)
        assert answer['status'] == rpc.OK, answer
        assert answer['intervals'] >= 1
        assert at_answer[2] == FLOOR
        assert at_answer[0] <= FLOOR + CHUNK_MB, at_answer
        assert abs(at_answer[1] - FLOOR) <= CHUNK_MB, at_answer

        # The reservation stays held (no guest with its uuid appears), so
        # D stays at its floor while S keeps its share.
        settle = running.agent.number
        running.wait_interval(settle + 3, timeout=120)
        assert report('D').budget_mb == FLOOR
        assert node0_mb(d) <= FLOOR + CHUNK_MB
        assert abs(node0_mb(s) - FLOOR) <= CHUNK_MB
        assert s.checksum_ok() and d.checksum_ok()
        # The interval running when the agent is stopped may be cut short
        # after its demotions, before its promotions (the checksums just
        # read all of both workloads, so it may well move): the checks of
        # every interval below are of the ones before the stop.
        before_stop = len(timeline.rows)

    print('D before the reservation: budget %d MiB, %.0f MiB in DRAM'
          % before)
    print('timeline (interval: guest = (budget, DRAM, hot) MiB):')
    for row in timeline.rows:
        print(row)
    assert timeline.violations == []
    # S's budget is its floor in every interval it was tiered in.
    assert {row['S'][0] for row in timeline.rows if 'S' in row} == {FLOOR}
    assert max(row['D'][0] for row in timeline.rows if 'D' in row) \
        >= FLOOR + 16
    assert new in agent.reservations
    # From the moment D had grown, S held its floor in every interval.
    assert all(abs(row['S'][1] - FLOOR) <= CHUNK_MB
               for row in timeline.rows[grown_at:before_stop]
               if 'S' in row), timeline.rows


def test_on_demand_gives_way_to_dram_taken_outside_the_agent(
        tmp_path, caplog):
    """[memtier] dram_free_min_mb on the real kernel: an unmanaged
    process (an untiered guest, the host) takes DRAM on the DRAM node and
    the on-demand guest is dialled back to its floor, its pages really
    demoted; when the process exits it grows again.  The static guest
    keeps its floor throughout."""
    caplog.set_level(logging.INFO, logger='loki_nova')
    conf = agentbus.make_conf(tmp_path, interval=1.0, tracker='damon',
                              usage_interval=0, host='sandbox')
    agent = agent_mod.Agent(conf.memtier)
    timeline = Timeline()
    agent.listeners.append(timeline)
    floor, hot, hog_mb = 16, 48, 128
    common = ('--register-dir', tmp_path / 'guests', '--pause-ms', 20)
    with workloads.Workload('--size-mb', 32, '--hot-mb', 8, '--name', 'S',
                            '--policy', 'static', '--floor-mb', floor,
                            *common, timeout=120) as s, \
            workloads.Workload('--size-mb', 96, '--hot-mb', hot,
                               '--name', 'D', '--policy', 'on_demand',
                               '--floor-mb', floor, '--ceiling-mb', 64,
                               *common, timeout=120) as d, \
            agentbus.Running(conf, agent=agent) as running:

        def report(key):
            r = running.agent.last_report
            return r.guests.get(key) if r else None

        def at_wish():
            st = report('D')
            return (st is not None and st.budget_mb >= hot - 8
                    and node0_mb(d) >= hot - 8)
        wait_until(running, at_wish, 'D grows to its hot demand', caplog)
        # Keep all but 24 MiB of what the DRAM node has available now:
        # D keeps its DRAM, with a little room for noise.
        available = agent.host_stats()['fast_available_mb']
        conf.set_override('dram_free_min_mb', available - 24,
                          group='memtier')
        running.wait_interval(running.agent.number + 2, timeout=120)
        assert report('D').budget_mb >= hot - 8, timeline.rows[-3:]
        assert not agent.host_stats()['held_back_by_free_dram']

        # An unmanaged process takes 128 MiB of the DRAM node.
        with workloads.Workload('--size-mb', hog_mb, '--hot-mb', 8,
                                '--pause-ms', 20, timeout=120) as hog:
            assert node0_mb(hog) >= hog_mb - 16, node0_mb(hog)

            def at_floor():
                st = report('D')
                return (st is not None and st.budget_mb == floor
                        and node0_mb(d) <= floor + CHUNK_MB)
            wait_until(running, at_floor, 'D dialled back to its floor',
                       caplog)
            assert agent.host_stats()['held_back_by_free_dram']
            assert abs(node0_mb(s) - floor) <= CHUNK_MB
            assert 'DRAM above the floors is limited by available DRAM' \
                in caplog.text
        # The process is gone: its DRAM is available again.
        wait_until(running, at_wish, 'D grows again', caplog)
        assert 'no longer limited by available DRAM' in caplog.text
        assert s.checksum_ok() and d.checksum_ok()
        assert not agent.host_stats()['held_back_by_free_dram']

    print('available DRAM at the start: %d MiB' % available)
    print('timeline (interval: guest = (budget, DRAM, hot) MiB):')
    for row in timeline.rows:
        print(row)
    assert timeline.violations == []
