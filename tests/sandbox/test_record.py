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

"""``loki-memtier record`` on the sandbox's real DAMON: a workload process
recorded for a few intervals, and the recording replayed."""

import os
import subprocess
import sys

import pytest

from loki_nova.memtier import kernfs
from loki_nova.memtier.sim import engine
from loki_nova.memtier.sim import tracefile
from loki_nova.memtier.trackers import damon
from tests import workloads
from tests.sandbox import INSIDE_ONLY

pytestmark = INSIDE_ONLY
MiB = 1 << 20


@pytest.mark.sandbox(seconds=120)
def test_record_a_process_and_replay_it(tmp_path):
    out = str(tmp_path / 'workload.npz')
    script = os.path.join(os.path.dirname(sys.executable), 'loki-memtier')
    with workloads.Workload('--size-mb', 32, '--hot-mb', 8) as w:
        done = subprocess.run(
            [script, 'record', '--pid', str(w.pid), '--output', out,
             '--intervals', '6', '--interval-s', '1', '--snapshots', '2',
             '--range', '%#x-%#x' % (w.start, w.end), '--note', 'test'],
            capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        assert w.checksum_ok()
    assert 'recorded 6 interval(s)' in done.stdout
    # The recorder's kdamond is gone.
    assert kernfs.KernelFS().read_int(damon.KDAMONDS + '/nr_kdamonds') == 0
    rec = tracefile.load(out)
    assert rec.intervals == 6 and len(rec.snapshot_interval) == 12
    assert rec.ranges.tolist() == [[w.start, w.end]]
    assert rec.meta['pid'] == w.pid and rec.meta['note'] == 'test'
    trace = tracefile.RecordedTrace(rec)
    assert trace.chunks == 16
    # DAMON sees the 8 MiB hot region (chunks 0-3) hotter than the rest.
    hot, cold = trace.totals[:4], trace.totals[4:]
    assert hot.min() > 4 * max(cold.mean(), 1), trace.totals
    result = engine.run(
        [engine.GuestSpec('w', 0, floor=0.25, trace_file=out)],
        engine.SimConfig(intervals=6, warmup=1, dram_share=0.25,
                         interval_s=1.0))
    assert result.policy('oracle').hit_ratio > 0.5
