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

"""The real ``loki-memtier-agent`` on the sandbox's two-tier kernel, run
as its systemd unit runs it -- root with only the unit's capabilities --
tiering a workload owned by user nobody (as QEMU is libvirt-qemu's) with
the DAMON tracker, and serving metrics: they must show the guest tiered
within its budget by real demotions, the page placement must agree, and
SIGTERM must stop the agent and free the port."""

import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np

from loki_nova.memtier import guest
from loki_nova.memtier import mover
from loki_nova.memtier.watcher import process
from tests.sandbox import INSIDE_ONLY
from tests.unit import test_metrics
from tests.unit.test_systemd_unit import GRANTED
from tests.unit.test_systemd_unit import NobodysWorkload

pytestmark = INSIDE_ONLY

MiB = 1024 * 1024
SIZE_MB = 64
BUDGET_MB = 24
CHUNK = 2 * MiB


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_the_service_tiers_and_reports_with_the_units_capabilities(
        tmp_path):
    port = free_port()
    log = tmp_path / 'agent.log'
    conf = tmp_path / 'memtier.conf'
    conf.write_text(
        '[DEFAULT]\nlog_file = %s\n[memtier]\ninterval = 1.0\n'
        'tracker = damon\nwatchers = process\nregistration_dir = %s\n'
        'state_dir = %s\ndram_reserve_mb = 0\ndram_free_min_mb = 0\n'
        'rpc_enabled = false\n'
        'metrics_listen = 127.0.0.1:%d\n'
        % (log, tmp_path / 'guests', tmp_path / 'state', port))
    caps = ','.join(['-all'] + ['+' + c[len('CAP_'):].lower()
                                for c in sorted(GRANTED)])

    class Server:
        url = 'http://127.0.0.1:%d/metrics' % port

    def text():
        return log.read_text() if log.exists() else ''

    with NobodysWorkload('--size-mb', SIZE_MB, '--hot-mb', 8,
                         '--pause-ms', 20, timeout=120) as w:
        process.register(str(tmp_path / 'guests'), 'nobodys', w.pid,
                         [(w.start, w.end)], guest.Policy('static',
                                                          BUDGET_MB))
        agent = subprocess.Popen(
            ['setpriv', '--bounding-set=' + caps, '--inh-caps=-all',
             '--no-new-privs',
             os.path.join(os.path.dirname(sys.executable),
                          'loki-memtier-agent'),
             '--config-file', str(conf)])
        g = dict(instance_uuid='nobodys', policy='static')
        try:
            deadline = time.monotonic() + 300
            while True:
                assert agent.poll() is None, text()[-3000:]
                assert time.monotonic() < deadline, text()[-3000:]
                try:
                    s = test_metrics.Scrape(Server)
                except OSError:
                    s = None    # not listening yet
                if s is not None and s.series(
                        'loki_memtier_guest_dram_bytes') and \
                        s.value('loki_memtier_guest_dram_bytes', **g) <= \
                        BUDGET_MB * MiB + CHUNK and \
                        s.value('loki_memtier_intervals_total') >= 3:
                    break
                time.sleep(0.5)
            nodes = mover.move_pages(
                w.pid, np.arange(w.start, w.end, 4096, dtype=np.uint64))
        finally:
            if agent.poll() is None:
                agent.send_signal(signal.SIGTERM)
            rc = agent.wait(120)
    assert rc == 0, text()[-3000:]
    assert 'serving Prometheus metrics at %s' % Server.url in text()
    assert s.value('loki_memtier_guest_tiered', **g) == 1
    assert s.value('loki_memtier_guest_budget_bytes', **g) == BUDGET_MB * MiB
    assert s.value('loki_memtier_guest_dram_bytes', **g) + \
        s.value('loki_memtier_guest_slow_bytes', **g) == SIZE_MB * MiB
    # it all started in DRAM: what is slow now got there by demotion
    demoted = s.value('loki_memtier_demoted_bytes_total',
                      instance_uuid='nobodys')
    assert demoted >= s.value('loki_memtier_guest_slow_bytes', **g) > 0
    assert s.value('loki_memtier_guest_errors_total',
                   instance_uuid='nobodys') == 0
    # the kernel agrees: the workload's DRAM pages are within the budget
    assert (nodes == 0).sum() * 4096 <= BUDGET_MB * MiB + CHUNK
    assert s.value('loki_memtier_tier_capacity_bytes', tier=1,
                   nodes='1') > 0
    # stopped: nothing listens any more
    try:
        socket.create_connection(('127.0.0.1', port), timeout=5).close()
    except OSError:
        pass
    else:
        raise AssertionError('port %d still open after SIGTERM' % port)
