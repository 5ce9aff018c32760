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

"""DRAM hidden in chunks that look slow: the real agent finds it.

A guest that touches memory for the first time after the agent demoted
it gets those pages in DRAM, inside chunks whose other pages are slow
(the nested-VM test met it: a guest filling its memory while being
tiered ended 5 MiB over its budget).  Here, before the agent starts,
every 2 MiB chunk of a registered workload gets its first page on node1
and the other 511 on node0 -- a chunk that a probe of its first page
alone reads as slow.  The workload uses 4 KiB pages only, as a guest's
memfd RAM does (``move_pages`` of one page of a transparent huge page
moves all of it).  The workload is static with a 16 MiB budget: the
agent must bring its node0 pages to the budget, measured by
``move_pages`` queries of every page (not the agent's own view)."""

import time

import numpy as np

from loki_nova.memtier import mover
from tests import workloads
from tests.sandbox import INSIDE_ONLY
from tests.sandbox.agentproc import AgentProcess

pytestmark = INSIDE_ONLY

MiB = 1024 * 1024
PAGE = 4096
SIZE_MB = 64
BUDGET_MB = 16
CHUNK_PAGES = 512
MAX_INTERVALS = 15


def test_dram_inside_chunks_that_look_slow_is_found_and_demoted(tmp_path):
    with workloads.Workload('--size-mb', SIZE_MB, '--hot-mb', 2,
                            '--register-dir', tmp_path / 'guests',
                            '--name', 'strays', '--policy', 'static',
                            '--floor-mb', BUDGET_MB, '--pause-ms', 20,
                            '--small-pages', timeout=120) as w:
        pages = np.arange(w.start, w.end, PAGE, dtype=np.uint64)
        assert len(pages) == SIZE_MB * 256
        firsts = pages[::CHUNK_PAGES]
        rest = np.setdiff1d(pages, firsts)
        assert (mover.move_pages(w.pid, rest, 0) == 0).all()
        assert (mover.move_pages(w.pid, firsts, 1) == 1).all()

        def dram_mb():
            return (mover.move_pages(w.pid, pages) == 0).sum() * PAGE / MiB

        before = dram_mb()
        assert before > SIZE_MB - 1
        agent = AgentProcess(tmp_path, usage_interval=0)
        history = []
        try:
            while True:
                n = agent.intervals()
                history.append((n, dram_mb()))
                if history[-1][1] <= BUDGET_MB + 2:
                    break
                assert agent.proc.poll() is None, agent.text()[-3000:]
                assert n < MAX_INTERVALS, (history, agent.text()[-3000:])
                deadline = time.monotonic() + 120
                while agent.intervals() == n:
                    assert time.monotonic() < deadline, agent.text()[-3000:]
                    time.sleep(0.05)
            assert w.checksum_ok()
        finally:
            status = agent.stop()
        print('node0 MiB by agent interval:', history)
    assert status == 0, agent.text()[-3000:]
