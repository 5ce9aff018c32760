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

"""The real agent (``loki-memtier-agent``, DAMON tracker, process watcher,
real mover) tiering a real workload on the sandbox's two-tier kernel.

A workload of 256 MiB with a 32 MiB hot region is registered with a
static DRAM budget of 64 MiB.  Within a bounded number of the agent's
intervals at least 90 % of the hot pages must be on node0 while the
workload's node0 pages stay within the budget; then the hot region moves
and the pages must follow; the memory's checksum must hold, and SIGTERM
must stop the agent cleanly.  Once per DAMON source (``damon_source``):
the tried regions of the last aggregation, and DAMON's trace event."""

import os
import time

import numpy as np
import pytest

from loki_nova.memtier import kernfs
from loki_nova.memtier import mover
from loki_nova.memtier.trackers import damon
from loki_nova.memtier.trackers import damontrace
from tests import workloads
from tests.sandbox import INSIDE_ONLY
from tests.sandbox.agentproc import AgentProcess

pytestmark = INSIDE_ONLY

MiB = 1024 * 1024
BUDGET_MB = 64
HOT_MB = 32
MAX_INTERVALS = 20


def placement(w, hot_offset_mb):
    pages = np.arange(w.start, w.end, 4096, dtype=np.uint64)
    nodes = mover.move_pages(w.pid, pages)
    hot = slice(hot_offset_mb * 256, (hot_offset_mb + HOT_MB) * 256)
    hot_on_0 = float((nodes[hot] == 0).mean())
    dram_mb = (nodes == 0).sum() * 4096 / MiB
    return hot_on_0, dram_mb


def wait_for_tiering(agent, w, hot_offset_mb, history):
    """Bounded by MAX_INTERVALS of the agent's intervals from now."""
    start = agent.intervals()
    while True:
        n = agent.intervals()
        hot_on_0, dram_mb = placement(w, hot_offset_mb)
        history.append((n, round(hot_on_0, 3), dram_mb))
        # The budget must hold at every look once the first cut is done.
        if n - start >= 3:
            assert dram_mb <= BUDGET_MB, history
        if hot_on_0 >= 0.9 and dram_mb <= BUDGET_MB:
            return n - start
        assert agent.proc.poll() is None, agent.text()[-3000:]
        assert n - start < MAX_INTERVALS, (history, agent.text()[-3000:])
        # wait for the agent's next interval (bounded)
        deadline = time.monotonic() + 180
        while agent.intervals() == n:
            assert time.monotonic() < deadline, agent.text()[-3000:]
            time.sleep(0.05)


@pytest.mark.parametrize('source', damon.SOURCES)
def test_agent_keeps_the_hot_set_in_dram_and_follows_it(tmp_path, source):
    history = []
    with workloads.Workload('--size-mb', 256, '--hot-mb', HOT_MB,
                            '--register-dir', tmp_path / 'guests',
                            '--name', 'e2e', '--policy', 'static',
                            '--floor-mb', BUDGET_MB, '--pause-ms', 20,
                            timeout=120) as w:
        # The service with its RPC server on (the in-memory transport:
        # nobody calls it here, the point is that serving RPC and tiering
        # go together in the real process).
        agent = AgentProcess(tmp_path, default={'transport_url': 'fake:/'},
                             rpc_enabled=True, usage_interval=0,
                             damon_source=source)
        try:
            first = wait_for_tiering(agent, w, 0, history)
            assert w.command('hot 160') == 'ok'
            second = wait_for_tiering(agent, w, 160, history)
            assert w.checksum_ok()
        finally:
            status = agent.stop()
        text = agent.text()
        print('intervals to tier: %d, to follow the move: %d'
              % (first, second))
        print('history (interval, hot share on node0, node0 MiB):',
              history)
        print('\n'.join(line for line in text.splitlines()
                        if 'guest e2e:' in line or 'interval ' in line))
    assert status == 0, text[-3000:]
    assert 'managing guest e2e' in text
    assert 'serving RPC as' in text
    # oslo.messaging's timers run on oslo.service's threading backend.
    assert "Loading backend: threading" in text
    assert 'Loading backend: eventlet' not in text
    assert 'stopped after' in text
    assert 'Traceback' not in text
    assert ('from the damon_aggregated trace event' in text) == \
        (source == 'trace')
    # DAMON's intervals left unset: each source's defaults for the
    # agent's 1 s interval (the trace: 160 checks an interval, at least
    # 5 ms apart, in aggregations of a fifth of it).
    sample = damon.default_sample_us(source, 1.0)
    aggr = damon.default_aggr_us(source, sample, 1.0)
    assert (sample, aggr) == ((6250, 200000) if source == 'trace'
                              else (5000, 100000))
    assert 'DAMON: sampling every %d us, aggregating every %d us' % (
        sample, aggr) in text
    assert 'reading each kdamond\'s tried regions instead' not in text
    assert kernfs.KernelFS().read_int(
        damon.KDAMONDS + '/nr_kdamonds') == 0
    tracefs = kernfs.KernelFS().path(damontrace.TRACEFS[0])
    assert not os.path.exists(os.path.join(
        tracefs, 'instances', damontrace.DEFAULT_INSTANCE))
